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
use super::crypto::{BlobId, Keys, Role};
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
    #[error("failed to read the snapshot: an internal task stopped ({0})")]
    Task(String),
}

/// Every index in the store, each checked against its name.
pub async fn load_indexes(store: &Store, keys: &Keys) -> Result<Vec<(String, Index)>, ReadError> {
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
                format::decode_json(keys, Role::Index, &sealed, &format!("index {name}"))?;
            Ok((name, index))
        })
        .buffer_unordered(PACKS_IN_FLIGHT)
        .collect()
        .await;
    loaded.into_iter().collect()
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
    Ok(format::decode_json(
        keys,
        Role::Manifest,
        &sealed,
        &format!("manifest of snapshot {id}"),
    )?)
}

/// Every complete snapshot, oldest first.
pub async fn list(store: &Store, keys: &Keys) -> Result<Vec<Manifest>, ReadError> {
    if !super::check_store(store, keys, false).await? {
        return Ok(Vec::new());
    }
    let ids = store.ids(layout::SNAPSHOTS).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(manifest(store, keys, &id).await?);
    }
    Ok(out)
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
        let payload = Bytes::from(format::decode(&keys, Role::Pack, &sealed, &what)?);
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
