//! Reading snapshots back. [`open`] is what a restore calls: it downloads every pack the
//! snapshot references, checks each pack's hash, decrypts and decompresses it, checks every
//! blob's keyed hash and every object's JSON, and resolves every tree, all *before*
//! returning. A snapshot that opens is whole; one that does not names what is wrong.
//!
//! ```no_run
//! # async fn f(store: coldstart::store::Store, keys: coldstart::snapshot::crypto::Keys) -> Result<(), Box<dyn std::error::Error>> {
//! let snap = coldstart::snapshot::read::open(&store, &keys, "20250101T000000Z-1a2b3c4d").await?;
//! for group in snap.resources() {
//!     // group.resource: group/version/plural/kind; group.namespace; objects in name order
//!     for obj in group.objects() { let _ = obj; }
//! }
//! let _disks = &snap.bindings().volumes;
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::Value;

use super::StoreKeyError;
use super::crypto::{BlobId, CryptoError, Keys, Role};
use super::format::{self, FormatError, Index, Manifest, ResourceRef};
use crate::bindings::Bindings;
use crate::store::{Store, StoreError, layout};

/// A pack's stored size and its verified blobs.
type PackBlobs = (u64, Vec<(BlobId, Bytes)>);

/// Packs downloaded and checked at once.
const PACKS_IN_FLIGHT: usize = 4;

/// Why a snapshot could not be read, or is not whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Config(#[from] StoreKeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(
        "failed to read snapshot {id}: it has no manifest in {url}, so it never completed or was pruned; run `coldstart snapshots list` to see complete snapshots"
    )]
    MissingManifest { id: String, url: String },
    #[error("failed to read snapshot {id:?}: not a snapshot id")]
    InvalidId { id: String },
    #[error(
        "failed to read pack {pack}: it is missing from the store; snapshot {id} is damaged (take a new snapshot; older ones may still verify)"
    )]
    MissingPack { id: String, pack: String },
    #[error(
        "failed to verify {what}: its content does not match its hash (truncated or tampered with); take a new snapshot"
    )]
    Hash { what: String },
    #[error(
        "failed to find blob {blob} ({what}) in any pack; snapshot {id} is damaged (take a new snapshot)"
    )]
    MissingBlob {
        id: String,
        blob: String,
        what: String,
    },
    #[error("failed to parse object {blob} of {what}: {source}")]
    Object {
        blob: String,
        what: String,
        source: serde_json::Error,
    },
    #[error(
        "failed to read {what}: it does not decrypt although the key is right (it matches the store's key check), so the object is damaged (truncated or tampered with); take a new snapshot, older ones may still verify"
    )]
    Damaged { what: String },
    #[error(
        "failed to read snapshot {id}: its manifest file holds snapshot {found} (manifests swapped or replaced); the store was tampered with, run `coldstart snapshots list` to see which snapshots still verify"
    )]
    ManifestMismatch { id: String, found: String },
    #[error("failed to read the snapshot: an internal task stopped ({0})")]
    Task(String),
}

impl ReadError {
    /// Whether the error is damage to stored data (skip this snapshot, an older one may be
    /// whole) rather than a store, key or usage problem (which would fail for every
    /// snapshot, so it must be reported, never skipped).
    pub fn is_damage(&self) -> bool {
        match self {
            ReadError::Format(_)
            | ReadError::Hash { .. }
            | ReadError::MissingPack { .. }
            | ReadError::MissingBlob { .. }
            | ReadError::Object { .. }
            | ReadError::Damaged { .. }
            | ReadError::ManifestMismatch { .. } => true,
            ReadError::Config(_)
            | ReadError::Store(_)
            | ReadError::MissingManifest { .. }
            | ReadError::InvalidId { .. }
            | ReadError::Task(_) => false,
        }
    }
}

/// A decoding error, read once the store's key check passed: a key that matches the key
/// check cannot be the wrong key, so a failed decryption is damage.
fn decoded(e: FormatError) -> ReadError {
    match e {
        FormatError::Crypto(CryptoError::Decrypt { what }) => ReadError::Damaged { what },
        e => ReadError::Format(e),
    }
}

/// A snapshot that could not be read, and why (a listing shows it rather than fail).
#[derive(Debug)]
pub struct Unreadable {
    pub id: String,
    pub error: ReadError,
}

/// The complete snapshots of a store, and the manifests that are damaged.
#[derive(Debug, Default)]
pub struct Listing {
    /// Oldest first.
    pub snapshots: Vec<Manifest>,
    pub damaged: Vec<Unreadable>,
}

/// Every readable index in the store, each checked against its name. A damaged index is
/// skipped with a warning: only the snapshots whose blobs it locates are affected, and
/// reading those fails naming the missing blobs; a store error fails the whole load.
pub async fn load_indexes(store: &Store, keys: &Keys) -> Result<Vec<(String, Index)>, ReadError> {
    let mut good = Vec::new();
    for loaded in load_indexes_all(store, keys).await? {
        match loaded {
            Ok(index) => good.push(index),
            Err(e) => tracing::warn!(error = %e, "skipping a damaged index"),
        }
    }
    Ok(good)
}

/// Every index, each loaded or with the damage that stopped it; fails on a store error.
async fn load_indexes_all(
    store: &Store,
    keys: &Keys,
) -> Result<Vec<Result<(String, Index), ReadError>>, ReadError> {
    let listed = store.list(layout::INDEX).await?;
    let loaded: Vec<Result<(String, Index), ReadError>> = futures::stream::iter(listed)
        .map(|l| async move {
            let name = layout::name_of(&l.key).to_owned();
            let sealed = store.get(&l.key).await?;
            if format::stored_hash(&sealed) != name {
                return Err(ReadError::Hash {
                    what: format!("index {name}"),
                });
            }
            let index: Index =
                format::decode_json(keys, Role::Index, &sealed, &format!("index {name}"))
                    .map_err(decoded)?;
            Ok((name, index))
        })
        .buffer_unordered(PACKS_IN_FLIGHT)
        .collect()
        .await;
    let mut out = Vec::with_capacity(loaded.len());
    for l in loaded {
        match l {
            Err(e) if !e.is_damage() => return Err(e),
            l => out.push(l),
        }
    }
    Ok(out)
}

/// Read one manifest.
pub async fn manifest(store: &Store, keys: &Keys, id: &str) -> Result<Manifest, ReadError> {
    if !layout::is_snapshot_id(id) {
        return Err(ReadError::InvalidId { id: id.to_owned() });
    }
    super::check_store(store, keys, false).await?;
    let sealed =
        store
            .get_opt(&layout::manifest(id))
            .await?
            .ok_or_else(|| ReadError::MissingManifest {
                id: id.to_owned(),
                url: store.url().to_owned(),
            })?;
    let m: Manifest = format::decode_json(
        keys,
        Role::Manifest,
        &sealed,
        &format!("manifest of snapshot {id}"),
    )
    .map_err(decoded)?;
    // The id inside the sealed (authenticated) manifest binds it to its file name: a
    // manifest moved or copied over another's is refused, not silently used.
    if m.id != id {
        return Err(ReadError::ManifestMismatch {
            id: id.to_owned(),
            found: m.id,
        });
    }
    Ok(m)
}

/// Every complete snapshot, oldest first; damaged manifests are skipped with a warning
/// (see [`list_all`] to show them). A store or key problem is an error.
pub async fn list(store: &Store, keys: &Keys) -> Result<Vec<Manifest>, ReadError> {
    let listing = list_all(store, keys).await?;
    for d in &listing.damaged {
        tracing::warn!(snapshot = %d.id, error = %d.error, "skipping a damaged snapshot");
    }
    Ok(listing.snapshots)
}

/// Every snapshot: the readable manifests, oldest first, and the damaged ones.
pub async fn list_all(store: &Store, keys: &Keys) -> Result<Listing, ReadError> {
    let mut out = Listing::default();
    if !super::check_store(store, keys, false).await? {
        return Ok(out);
    }
    for id in store.ids(layout::SNAPSHOTS).await? {
        match manifest(store, keys, &id).await {
            Ok(m) => out.snapshots.push(m),
            Err(error) if error.is_damage() => out.damaged.push(Unreadable { id, error }),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Open the newest whole snapshot `wanted` accepts, skipping (with a warning) any newer one
/// that is damaged; None if there is no snapshot. If every one is damaged, the newest's
/// damage is the error. A store or key problem is an error.
pub async fn open_newest(
    store: &Store,
    keys: &Keys,
    wanted: impl Fn(&Manifest) -> bool,
) -> Result<Option<Snapshot>, ReadError> {
    let mut all = list(store, keys).await?;
    all.retain(|m| wanted(m));
    all.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    let mut newest_damage = None;
    while let Some(m) = all.pop() {
        match open(store, keys, &m.id).await {
            Ok(snap) => return Ok(Some(snap)),
            Err(e) if e.is_damage() => {
                tracing::warn!(snapshot = %m.id, error = %e, "skipping a damaged snapshot; trying the next older one");
                newest_damage.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    newest_damage.map_or(Ok(None), Err)
}

/// The objects of one resource in one namespace, in name order, verified.
#[derive(Debug, Clone)]
pub struct ResourceObjects {
    pub resource: ResourceRef,
    /// None for cluster-scoped resources.
    pub namespace: Option<String>,
    objects: Vec<Bytes>,
}

impl ResourceObjects {
    /// The objects (sanitized, with `apiVersion` and `kind`).
    pub fn objects(&self) -> impl Iterator<Item = Value> + '_ {
        // Every object parsed during `open`, so nothing is skipped here.
        self.objects
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
    }

    /// The objects as stored: compact JSON.
    pub fn raw(&self) -> &[Bytes] {
        &self.objects
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// A snapshot read and verified in full.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub manifest: Manifest,
    resources: Vec<ResourceObjects>,
    /// Stored bytes read (packs and manifest).
    pub bytes_read: u64,
}

impl Snapshot {
    /// Objects grouped by (resource, namespace), sorted by group, version, resource, namespace.
    pub fn resources(&self) -> &[ResourceObjects] {
        &self.resources
    }

    /// The groups of one resource (every namespace).
    pub fn resource<'a>(
        &'a self,
        group: &'a str,
        resource: &'a str,
    ) -> impl Iterator<Item = &'a ResourceObjects> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.resource.group == group && r.resource.resource == resource)
    }

    pub fn bindings(&self) -> &Bindings {
        &self.manifest.bindings
    }

    pub fn object_count(&self) -> usize {
        self.resources.iter().map(ResourceObjects::len).sum()
    }
}

/// Read, decrypt and verify a whole snapshot (see the module docs).
pub async fn open(store: &Store, keys: &Keys, id: &str) -> Result<Snapshot, ReadError> {
    let manifest = manifest(store, keys, id).await?;
    let mut where_: HashMap<&str, Vec<(BlobId, u32, u32)>> = HashMap::new();
    let indexes = load_indexes(store, keys).await?;
    for (_, index) in &indexes {
        for p in &index.packs {
            where_
                .entry(p.id.as_str())
                .or_default()
                .extend(p.blobs.iter().copied());
        }
    }
    // Indices, not `iter()`: a closure over borrowed items makes this future non-`Send`
    // for callers that spawn it (the higher-ranked lifetime of the item).
    let fetched: Vec<Result<PackBlobs, ReadError>> = futures::stream::iter(0..manifest.packs.len())
        .map(|i| {
            let pack = &manifest.packs[i];
            let entries = where_.get(pack.as_str()).cloned().unwrap_or_default();
            read_pack(store, keys, id, pack, entries)
        })
        .buffer_unordered(PACKS_IN_FLIGHT)
        .collect()
        .await;
    let mut blobs: HashMap<BlobId, Bytes> = HashMap::new();
    let mut bytes_read = 0;
    for f in fetched {
        let (size, got) = f?;
        bytes_read += size;
        blobs.extend(got);
    }
    let missing = |blob: &BlobId, what: String| ReadError::MissingBlob {
        id: id.to_owned(),
        blob: blob.to_hex(),
        what,
    };
    let mut resources = Vec::with_capacity(manifest.resources.len());
    for entry in &manifest.resources {
        let what = format!(
            "{} in {}",
            entry.resource.qualified(),
            entry.namespace.as_deref().unwrap_or("(cluster)")
        );
        let mut objects = Vec::with_capacity(entry.count as usize);
        for tree in &entry.trees {
            let chunk = blobs
                .get(tree)
                .ok_or_else(|| missing(tree, format!("tree of {what}")))?;
            for obj in format::parse_tree(chunk, &what)? {
                let raw = blobs
                    .get(&obj)
                    .ok_or_else(|| missing(&obj, format!("object of {what}")))?;
                serde_json::from_slice::<serde::de::IgnoredAny>(raw).map_err(|source| {
                    ReadError::Object {
                        blob: obj.to_hex(),
                        what: what.clone(),
                        source,
                    }
                })?;
                objects.push(raw.clone());
            }
        }
        resources.push(ResourceObjects {
            resource: entry.resource.clone(),
            namespace: entry.namespace.clone(),
            objects,
        });
    }
    Ok(Snapshot {
        manifest,
        resources,
        bytes_read,
    })
}

async fn read_pack(
    store: &Store,
    keys: &Keys,
    id: &str,
    pack: &str,
    entries: Vec<(BlobId, u32, u32)>,
) -> Result<PackBlobs, ReadError> {
    let sealed = match store.get(&layout::pack(pack)).await {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => {
            return Err(ReadError::MissingPack {
                id: id.to_owned(),
                pack: pack.to_owned(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let size = sealed.len() as u64;
    let (keys, pack) = (keys.clone(), pack.to_owned());
    tokio::task::spawn_blocking(move || {
        let what = format!("pack {pack}");
        if format::stored_hash(&sealed) != pack {
            return Err(ReadError::Hash { what });
        }
        let payload =
            Bytes::from(format::decode(&keys, Role::Pack, &sealed, &what).map_err(decoded)?);
        let mut out = Vec::with_capacity(entries.len());
        for (blob, off, len) in entries {
            let (start, end) = (off as usize, off as usize + len as usize);
            let data = payload
                .get(start..end)
                .map(|_| payload.slice(start..end))
                .ok_or_else(|| ReadError::Hash {
                    what: format!("{what} (blob {} lies past its end)", blob.to_hex()),
                })?;
            if keys.blob_id(&data) != blob {
                return Err(ReadError::Hash {
                    what: format!("blob {} in {what}", blob.to_hex()),
                });
            }
            out.push((blob, data));
        }
        Ok((size, out))
    })
    .await
    .map_err(|e| ReadError::Task(e.to_string()))?
}

/// What `verify` checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub objects: usize,
    pub packs: usize,
    pub bytes_read: u64,
}

/// Re-read every byte of a snapshot and check every hash and decryption.
pub async fn verify(store: &Store, keys: &Keys, id: &str) -> Result<Verified, ReadError> {
    let snap = open(store, keys, id).await?;
    Ok(Verified {
        objects: snap.object_count(),
        packs: snap.manifest.packs.len(),
        bytes_read: snap.bytes_read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::format::{ClusterIdentity, FORMAT_VERSION, PackEntry, Stats};

    fn keys() -> Keys {
        Keys::from_master(&[9; 32])
    }

    /// A store holding one pack with one blob, and the manifests of snapshots `ids` (each
    /// naming that pack), written the way a snapshot writes them.
    async fn store_with(ids: &[&str]) -> Store {
        let (store, keys) = (Store::memory(), keys());
        super::super::check_store(&store, &keys, true)
            .await
            .unwrap();
        let blob = keys.blob_id(b"{}");
        let sealed = format::encode(&keys, Role::Pack, b"{}");
        let pack = format::stored_hash(&sealed);
        store
            .put(&layout::pack(&pack), Bytes::from(sealed))
            .await
            .unwrap();
        let index = Index {
            format: FORMAT_VERSION,
            packs: vec![PackEntry {
                id: pack.clone(),
                size: 0,
                blobs: vec![(blob, 0, 2)],
            }],
        };
        let sealed = format::encode_json(&keys, Role::Index, &index);
        store
            .put(
                &layout::index(&format::stored_hash(&sealed)),
                Bytes::from(sealed),
            )
            .await
            .unwrap();
        for (n, id) in ids.iter().enumerate() {
            let m = Manifest {
                format: FORMAT_VERSION,
                id: (*id).to_owned(),
                coldstart_version: "test".into(),
                cluster: ClusterIdentity {
                    name: "c".into(),
                    uid: "u".into(),
                    server: String::new(),
                },
                started_at: chrono::DateTime::from_timestamp(1_700_000_000 + n as i64, 0).unwrap(),
                finished_at: chrono::DateTime::from_timestamp(1_700_000_000 + n as i64, 0).unwrap(),
                encryption: "xchacha20poly1305".into(),
                plaintext_secrets: false,
                resources: vec![format::TreeEntry {
                    resource: ResourceRef {
                        group: String::new(),
                        version: "v1".into(),
                        resource: "configmaps".into(),
                        kind: "ConfigMap".into(),
                        namespaced: true,
                    },
                    namespace: Some("n".into()),
                    count: 0,
                    trees: vec![],
                }],
                packs: vec![pack.clone()],
                bindings: Bindings::default(),
                unavailable: vec![],
                stats: Stats::default(),
            };
            store
                .put(
                    &layout::manifest(id),
                    Bytes::from(format::encode_json(&keys, Role::Manifest, &m)),
                )
                .await
                .unwrap();
        }
        store
    }

    async fn damage(store: &Store, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = store.get(key).await.unwrap().to_vec();
        f(&mut bytes);
        store.put(key, Bytes::from(bytes)).await.unwrap();
    }

    #[tokio::test]
    async fn swapped_manifests_are_detected_not_silently_used() {
        let store = store_with(&["a-1", "b-2"]).await;
        let a = store.get(&layout::manifest("a-1")).await.unwrap();
        let b = store.get(&layout::manifest("b-2")).await.unwrap();
        store.put(&layout::manifest("a-1"), b).await.unwrap();
        store.put(&layout::manifest("b-2"), a).await.unwrap();
        for (id, other) in [("a-1", "b-2"), ("b-2", "a-1")] {
            let err = open(&store, &keys(), id).await.unwrap_err();
            assert!(
                matches!(&err, ReadError::ManifestMismatch { found, .. } if found == other),
                "{err}"
            );
            assert!(err.is_damage());
        }
        assert!(list(&store, &keys()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_truncated_manifest_is_reported_as_damaged_not_as_a_wrong_key() {
        let store = store_with(&["a-1"]).await;
        damage(&store, &layout::manifest("a-1"), |b| {
            b.truncate(b.len() - 7)
        })
        .await;
        let err = manifest(&store, &keys(), "a-1").await.unwrap_err();
        assert!(matches!(err, ReadError::Damaged { .. }), "{err}");
        assert!(!err.to_string().contains("wrong encryption key"), "{err}");
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[tokio::test]
    async fn a_damaged_manifest_is_skipped_by_the_listing_and_the_newest_good_one_opens() {
        let store = store_with(&["a-1", "b-2", "c-3"]).await;
        damage(&store, &layout::manifest("c-3"), |b| {
            let mid = b.len() / 2;
            b[mid] ^= 0xff;
        })
        .await;
        let listing = list_all(&store, &keys()).await.unwrap();
        let good: Vec<_> = listing.snapshots.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(good, ["a-1", "b-2"]);
        assert_eq!(listing.damaged.len(), 1);
        assert_eq!(listing.damaged[0].id, "c-3");
        let newest = open_newest(&store, &keys(), |_| true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(newest.manifest.id, "b-2");
    }

    #[tokio::test]
    async fn a_damaged_index_is_skipped_and_a_snapshot_that_does_not_need_it_still_opens() {
        let store = store_with(&["a-1"]).await;
        // Another run's index, damaged: this snapshot never needed it.
        let sealed = format::encode_json(&keys(), Role::Index, &Index::default());
        let mut bad = sealed.clone();
        bad.truncate(bad.len() - 1);
        store
            .put(&layout::index(&format::stored_hash(&bad)), Bytes::from(bad))
            .await
            .unwrap();
        let snap = open(&store, &keys(), "a-1").await.unwrap();
        assert_eq!(snap.manifest.id, "a-1");
    }

    #[tokio::test]
    async fn a_wrong_key_is_never_skipped_as_damage() {
        let store = store_with(&["a-1"]).await;
        let wrong = Keys::from_master(&[1; 32]);
        let err = list(&store, &wrong).await.unwrap_err();
        assert!(matches!(err, ReadError::Config(_)), "{err}");
        let err = open_newest(&store, &wrong, |_| true).await.unwrap_err();
        assert!(!err.is_damage(), "{err}");
    }
}
