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
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::Value;

use super::StoreKeyError;
use super::crypto::{BlobId, CryptoError, Keys, Role, ShortId};
use super::format::{self, FormatError, Index, Manifest, ResourceRef, TreeEntry};
use crate::bindings::Bindings;
use crate::store::{Store, StoreError, layout};

/// Packs downloaded and checked at once.
const PACKS_IN_FLIGHT: usize = 4;

/// Of the packs in flight, how many are decrypted and decompressed at once: one per core.
/// A pack waiting for its turn is held sealed (compressed, a fifth of its payload); one
/// being opened holds its whole payload ([`super::write::PACK_SIZE`]), so opening more
/// than the cores can work on adds memory and no speed.
fn packs_opened_at_once() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(PACKS_IN_FLIGHT)
}

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
    for_each_index(store, keys, |name, index| good.push((name, index))).await?;
    Ok(good)
}

/// [`load_indexes`] one index at a time: `each` gets every readable index as it is loaded
/// (up to [`PACKS_IN_FLIGHT`] loading at once), so a caller that keeps a few bytes of each
/// blob never holds every index whole (40 bytes a blob, decoded: 12 MiB at 300k objects).
pub async fn for_each_index(
    store: &Store,
    keys: &Keys,
    mut each: impl FnMut(String, Index),
) -> Result<(), ReadError> {
    let listed = store.list(layout::INDEX).await?;
    let mut loaded = futures::stream::iter(listed)
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
        .buffer_unordered(PACKS_IN_FLIGHT);
    while let Some(l) = loaded.next().await {
        match l {
            Ok((name, index)) => each(name, index),
            Err(e) if e.is_damage() => tracing::warn!(error = %e, "skipping a damaged index"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
    newest(store, keys, wanted, |id| async move {
        open(store, keys, &id).await
    })
    .await
}

/// [`open_newest`], verified but left in the store ([`open_stored`]): what a restore uses.
pub async fn open_newest_stored(
    store: &Store,
    keys: &Keys,
    wanted: impl Fn(&Manifest) -> bool,
) -> Result<Option<StoredSnapshot>, ReadError> {
    newest(store, keys, wanted, |id| async move {
        open_stored(store, keys, &id).await
    })
    .await
}

async fn newest<T, F: Future<Output = Result<T, ReadError>>>(
    store: &Store,
    keys: &Keys,
    wanted: impl Fn(&Manifest) -> bool,
    opener: impl Fn(String) -> F,
) -> Result<Option<T>, ReadError> {
    let mut all = list(store, keys).await?;
    all.retain(|m| wanted(m));
    all.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    let mut newest_damage = None;
    while let Some(m) = all.pop() {
        match opener(m.id.clone()).await {
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

/// The objects of one resource in one namespace, verified, in name order (by blob id from
/// a server that lists out of name order: see `write::NamespaceObjects`).
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

/// Read, decrypt and verify a whole snapshot and keep every object in memory (see the
/// module docs). A restore uses [`open_stored`] instead, which keeps only where each
/// object lies; this is for small snapshots and for showing one.
pub async fn open(store: &Store, keys: &Keys, id: &str) -> Result<Snapshot, ReadError> {
    let stored = open_stored(store, keys, id).await?;
    let mut objects: Vec<Vec<Bytes>> = stored
        .locations
        .iter()
        .map(|l| vec![Bytes::new(); l.len()])
        .collect();
    let mut read = stored.read(store, keys, |_| true);
    while let Some(o) = read.next().await {
        let o = o?;
        objects[o.entry][o.position] = o.raw;
    }
    let resources = stored
        .manifest
        .resources
        .iter()
        .zip(objects)
        .map(|(entry, objects)| ResourceObjects {
            resource: entry.resource.clone(),
            namespace: entry.namespace.clone(),
            objects,
        })
        .collect();
    Ok(Snapshot {
        bytes_read: stored.bytes_read,
        manifest: stored.manifest,
        resources,
    })
}

/// Where one object lies: which of the manifest's packs, and where in its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    pack: u32,
    offset: u32,
    len: u32,
}

/// Where an entry's objects lie, in tree order: runs of objects laid out one after the
/// other in a pack, and each object's length. A snapshot writes an entry's new objects
/// in tree order, so an entry is a run or a few; an unchanged object kept from an older
/// snapshot's pack starts a new one. 4 bytes an object (a `Loc` each was 12: 3.6 MiB of
/// a 300k-object restore's floor) and 12 a run; 16 an object at worst, no run at all.
#[derive(Debug, Clone, Default)]
struct Places {
    runs: Vec<Run>,
    lens: Vec<u32>,
    /// Where the last run ends in its pack's payload (an object starting there joins it).
    end: u32,
}

/// `count` objects lying one after the other from `offset` in pack `pack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    pack: u32,
    offset: u32,
    count: u32,
}

impl Places {
    fn with_capacity(objects: usize) -> Places {
        Places {
            lens: Vec::with_capacity(objects),
            ..Places::default()
        }
    }

    /// The next object in tree order.
    fn push(&mut self, loc: Loc) {
        match self.runs.last_mut() {
            Some(run) if run.pack == loc.pack && self.end == loc.offset => run.count += 1,
            _ => self.runs.push(Run {
                pack: loc.pack,
                offset: loc.offset,
                count: 1,
            }),
        }
        self.lens.push(loc.len);
        self.end = loc.offset + loc.len;
    }

    fn len(&self) -> usize {
        self.lens.len()
    }

    fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// The lowest and highest pack the objects lie in.
    fn packs(&self) -> (u32, u32) {
        self.runs.iter().fold((u32::MAX, 0), |(lo, hi), r| {
            (lo.min(r.pack), hi.max(r.pack))
        })
    }

    /// The objects in `pack`, each with its position in tree order.
    fn in_pack(&self, pack: u32) -> Vec<(usize, Loc)> {
        let mut first = 0;
        let mut out = Vec::new();
        for run in &self.runs {
            let lens = &self.lens[first..first + run.count as usize];
            if run.pack == pack {
                let mut offset = run.offset;
                out.extend(lens.iter().enumerate().map(|(k, &len)| {
                    let loc = Loc { pack, offset, len };
                    offset += len;
                    (first + k, loc)
                }));
            }
            first += run.count as usize;
        }
        out
    }
}

/// An object to read back from a pack: its entry, its place in the entry's tree order, and
/// where it lies.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    entry: usize,
    position: usize,
    loc: Loc,
}

/// A snapshot verified in full whose objects were left in the store: the manifest and
/// where each object lies ([`Places`], 4 bytes an object), so a restore reads back one
/// tier at a time instead of holding the snapshot in memory.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub manifest: Manifest,
    /// Per entry of `manifest.resources`, its objects in tree order; shared with the
    /// streams [`StoredSnapshot::read`] returns, which walk it pack by pack.
    locations: Arc<Vec<Places>>,
    /// Stored bytes read by the verifying pass (packs).
    pub bytes_read: u64,
}

/// One object read back from a [`StoredSnapshot`].
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// Which entry of `manifest.resources` it belongs to.
    pub entry: usize,
    /// Its place in the entry's tree order (objects come in pack order).
    pub position: usize,
    /// The object as stored: compact JSON, checked to parse when the snapshot was opened.
    pub raw: Bytes,
}

/// Packs read ahead of the consumer of [`StoredSnapshot::read`]: one being consumed, one
/// arriving. Each is at most a pack payload ([`super::write::PACK_SIZE`] of JSON) in memory.
const READ_AHEAD: usize = 2;

impl StoredSnapshot {
    pub fn bindings(&self) -> &Bindings {
        &self.manifest.bindings
    }

    pub fn object_count(&self) -> usize {
        self.locations.iter().map(Places::len).sum()
    }

    /// How many objects the entries `select` picks hold.
    pub fn count(&self, select: impl Fn(&TreeEntry) -> bool) -> usize {
        self.manifest
            .resources
            .iter()
            .zip(self.locations.iter())
            .filter(|(e, _)| select(e))
            .map(|(_, l)| l.len())
            .sum()
    }

    /// Read back the objects of the entries `select` picks, pack by pack (each pack read
    /// once, at most [`READ_AHEAD`] ahead of the consumer), in no particular order. Each
    /// pack is checked against its name again: one replaced since the snapshot was opened
    /// is an error, never used.
    pub fn read(
        &self,
        store: &Store,
        keys: &Keys,
        select: impl Fn(&TreeEntry) -> bool,
    ) -> futures::stream::BoxStream<'static, Result<StoredObject, ReadError>> {
        // Which packs each picked entry's objects lie in, lowest to highest. Finding a
        // pack's objects compares the pack with every span (one comparison per entry) and
        // walks only the entries that span it: an entry's objects are mostly in one or two
        // packs. Each pack's list is made only when the stream comes to it, so the stream
        // holds the objects' places of READ_AHEAD packs, not of the whole tier.
        let spans: Vec<(usize, u32, u32)> = self
            .manifest
            .resources
            .iter()
            .zip(self.locations.iter())
            .enumerate()
            .filter(|(_, (entry, locs))| !locs.is_empty() && select(entry))
            .map(|(i, (_, places))| {
                let (lo, hi) = places.packs();
                (i, lo, hi)
            })
            .collect();
        let locations = self.locations.clone();
        let in_pack = move |pack: u32| -> Vec<Wanted> {
            spans
                .iter()
                .filter(|(_, lo, hi)| (*lo..=*hi).contains(&pack))
                .flat_map(|&(i, _, _)| {
                    locations[i]
                        .in_pack(pack)
                        .into_iter()
                        .map(move |(position, loc)| Wanted {
                            entry: i,
                            position,
                            loc,
                        })
                })
                .collect()
        };
        let by_pack =
            futures::stream::iter(0..self.manifest.packs.len() as u32).filter_map(move |pack| {
                let locs = in_pack(pack);
                async move { (!locs.is_empty()).then_some((pack, locs)) }
            });
        let (store, keys, id) = (store.clone(), keys.clone(), self.manifest.id.clone());
        let packs = self.manifest.packs.clone();
        by_pack
            .map(move |(pack, locs)| {
                let (store, keys, id) = (store.clone(), keys.clone(), id.clone());
                let name = packs[pack as usize].clone();
                async move { read_objects(&store, &keys, &id, &name, locs).await }
            })
            .buffered(READ_AHEAD)
            .flat_map(|r| match r {
                Ok(objects) => futures::stream::iter(objects.into_iter().map(Ok)).left_stream(),
                Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
            })
            .boxed()
    }
}

/// Packs' blob lists as their indexes are decoded (copied by the caller, exactly sized,
/// into what it keeps of a blob: a decoded list has a doubling buffer's spare capacity),
/// made one list sized to their total, pack by pack in order, each
/// pack's list freed as it is moved in; returns the list and each pack's (from, to) slice
/// of it. Grown as the indexes come instead, the list doubles and is copied (for 300k blobs
/// of 36 bytes, 27 MiB at once against 11), and no count known up front bounds it: packs
/// shared with older snapshots also hold blobs a snapshot no longer references.
pub(crate) fn flatten_packs<B, T>(
    lists: Vec<Vec<B>>,
    mut each: impl FnMut(u32, B) -> T,
) -> (Vec<T>, Vec<(usize, usize)>) {
    let mut out = Vec::with_capacity(lists.iter().map(Vec::len).sum());
    let mut ranges = Vec::with_capacity(lists.len());
    for (pack, blobs) in lists.into_iter().enumerate() {
        let from = out.len();
        out.extend(blobs.into_iter().map(|blob| each(pack as u32, blob)));
        ranges.push((from, out.len()));
    }
    (out, ranges)
}

/// A tree chunk as the verifying pass keeps it, resolved as soon as its pack is checked:
/// where each object it lists is in the blob list (4 bytes an object, where the chunk's
/// ids would be 16 kept as short ids and 32 whole).
#[derive(Debug, Clone)]
enum Tree {
    /// Each object's position in the id-sorted blob list, in the chunk's order.
    Objects(Vec<u32>),
    /// The first object it lists that no pack of the snapshot holds.
    Missing(ShortId),
    /// Its length is not whole ids.
    NotWhole,
}

impl Tree {
    fn resolve(chunk: &[u8], located: &[(ShortId, Loc)]) -> Tree {
        if !chunk.len().is_multiple_of(32) {
            return Tree::NotWhole;
        }
        let mut objects = Vec::with_capacity(chunk.len() / 32);
        for id in chunk.chunks_exact(32).map(super::crypto::short_of) {
            match located.binary_search_by_key(&id, |(b, _)| *b) {
                Ok(i) => objects.push(i as u32),
                Err(_) => return Tree::Missing(id),
            }
        }
        Tree::Objects(objects)
    }
}

/// Verify a whole snapshot without keeping it: read the manifest, every index and every
/// referenced pack ([`PACKS_IN_FLIGHT`] at a time); check each pack's hash, decrypt and
/// decompress it, check every blob's keyed hash and that every object parses as JSON, and
/// resolve every tree. What is kept is where each object lies ([`Places`], 4 bytes an
/// object) and, while the packs are read, a blob list sorted by [`ShortId`] (28 bytes a
/// blob), each pack's blobs in it (4 bytes a blob, freed as the pack is checked) and the
/// trees resolved to positions in the list (4 bytes an object), each freed once used.
/// Memory grows with the object count by bytes per object, not by the objects themselves:
/// 36 bytes an object at most (whole ids and tree chunks were 88; short ids and unresolved
/// chunks 48).
pub async fn open_stored(
    store: &Store,
    keys: &Keys,
    id: &str,
) -> Result<StoredSnapshot, ReadError> {
    let manifest = manifest(store, keys, id).await?;
    let pack_no: HashMap<&str, u32> = manifest
        .packs
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i as u32))
        .collect();
    // Every blob of this snapshot's packs as their indexes list them, by short id from the
    // start (see `flatten_packs`).
    let mut listed: Vec<Vec<(ShortId, u32, u32)>> = vec![Vec::new(); manifest.packs.len()];
    for_each_index(store, keys, |_, index| {
        for p in index.packs {
            if let Some(&pack) = pack_no.get(p.id.as_str())
                && listed[pack as usize].is_empty()
            {
                listed[pack as usize] = p
                    .blobs
                    .iter()
                    .map(|(b, o, l)| (b.short(), *o, *l))
                    .collect();
            }
        }
    })
    .await?;
    // Then one list sorted by id, a sorted Vec and not a map for the smallest footprint per
    // blob, so a tree chunk is resolved the moment its pack is checked; and each pack's
    // blobs as positions in it, in the pack's order.
    let (mut located, ranges) = flatten_packs(listed, |pack, (b, offset, len)| {
        (b, Loc { pack, offset, len })
    });
    located.sort_unstable_by_key(|(b, _)| *b);
    let mut in_pack: Vec<Vec<u32>> = ranges
        .iter()
        .map(|(from, to)| Vec::with_capacity(to - from))
        .collect();
    for (i, (_, loc)) in located.iter().enumerate() {
        in_pack[loc.pack as usize].push(i as u32);
    }
    for blobs in &mut in_pack {
        blobs.sort_unstable_by_key(|&i| located[i as usize].1.offset);
    }
    // How many entries list each tree chunk: a chunk is freed after its last use.
    let mut tree_uses: HashMap<ShortId, u32> = HashMap::new();
    for tree in manifest.resources.iter().flat_map(|e| e.trees.iter()) {
        *tree_uses.entry(tree.short()).or_default() += 1;
    }
    let trees: Arc<std::collections::HashSet<ShortId>> =
        Arc::new(tree_uses.keys().copied().collect());
    let located = Arc::new(located);
    let opening = tokio::sync::Semaphore::new(packs_opened_at_once());
    let checked: Vec<Result<PackCheck, ReadError>> =
        futures::stream::iter(in_pack.into_iter().enumerate())
            .map(|(i, blobs)| {
                check_pack(
                    store,
                    keys,
                    id,
                    &manifest.packs[i],
                    located.clone(),
                    blobs,
                    trees.clone(),
                    &opening,
                )
            })
            .buffer_unordered(PACKS_IN_FLIGHT)
            .collect()
            .await;
    let mut chunks: HashMap<ShortId, Tree> = HashMap::new();
    let mut not_json: HashMap<u32, serde_json::Error> = HashMap::new();
    let mut bytes_read = 0;
    for c in checked {
        let c = c?;
        bytes_read += c.size;
        chunks.extend(c.trees);
        not_json.extend(c.not_json);
    }
    let missing = |blob: &ShortId, what: String| ReadError::MissingBlob {
        id: id.to_owned(),
        blob: short_hex(blob),
        what,
    };
    let mut locations = Vec::with_capacity(manifest.resources.len());
    for entry in &manifest.resources {
        let what = format!(
            "{} in {}",
            entry.resource.qualified(),
            entry.namespace.as_deref().unwrap_or("(cluster)")
        );
        let mut places = Places::with_capacity(entry.count as usize);
        for tree in entry.trees.iter().map(BlobId::short) {
            let uses = tree_uses.get_mut(&tree).map(|n| {
                *n -= 1;
                *n
            });
            let chunk = match uses {
                Some(0) => chunks.remove(&tree),
                _ => chunks.get(&tree).cloned(),
            }
            .ok_or_else(|| missing(&tree, format!("tree of {what}")))?;
            let objects = match chunk {
                Tree::Objects(objects) => objects,
                Tree::Missing(obj) => return Err(missing(&obj, format!("object of {what}"))),
                Tree::NotWhole => return Err(FormatError::Tree { what: what.clone() }.into()),
            };
            for obj in objects {
                let (blob, loc) = located[obj as usize];
                if let Some(source) = not_json.remove(&obj) {
                    return Err(ReadError::Object {
                        blob: short_hex(&blob),
                        what: what.clone(),
                        source,
                    });
                }
                places.push(loc);
            }
        }
        places.runs.shrink_to_fit();
        locations.push(places);
    }
    Ok(StoredSnapshot {
        manifest,
        locations: Arc::new(locations),
        bytes_read,
    })
}

/// A short id as an error shows it: the hex of a blob id's first half, marked as a prefix.
fn short_hex(blob: &ShortId) -> String {
    format!("{}…", hex::encode(blob))
}

/// What the verifying pass keeps of one pack.
struct PackCheck {
    size: u64,
    /// The snapshot's tree chunks found in it, resolved (the payload is dropped).
    trees: Vec<(ShortId, Tree)>,
    /// Blobs that are not JSON, by position in the blob list: the tree chunks of this and
    /// other snapshots, and damage if a tree lists one of them as an object.
    not_json: Vec<(u32, serde_json::Error)>,
}

/// Download one pack, check it whole (see [`open_stored`]) and keep only its tree chunks,
/// resolved. `blobs` are its blobs' positions in `located`, in the pack's order.
async fn check_pack(
    store: &Store,
    keys: &Keys,
    id: &str,
    pack: &str,
    located: Arc<Vec<(ShortId, Loc)>>,
    blobs: Vec<u32>,
    trees: Arc<std::collections::HashSet<ShortId>>,
    opening: &tokio::sync::Semaphore,
) -> Result<PackCheck, ReadError> {
    let sealed = get_pack(store, id, pack).await?;
    let size = sealed.len() as u64;
    let (keys, pack) = (keys.clone(), pack.to_owned());
    let _turn = opening
        .acquire()
        .await
        .map_err(|e| ReadError::Task(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let what = format!("pack {pack}");
        let mut out = PackCheck {
            size,
            trees: Vec::new(),
            not_json: Vec::new(),
        };
        let mut check = |i: u32, data: &[u8]| {
            let blob = &located[i as usize].0;
            // The index's short id against the content's: 128 bits of a keyed hash (the
            // pack's own hash and its decryption have checked every byte already).
            if keys.blob_id(data).short() != *blob {
                return Err(ReadError::Hash {
                    what: format!("blob {} in {what}", short_hex(blob)),
                });
            }
            if trees.contains(blob) {
                out.trees.push((*blob, Tree::resolve(data, &located)));
            } else if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(data) {
                out.not_json.push((i, e));
            }
            Ok(())
        };
        let laid_out = blobs.iter().map(|&i| located[i as usize].1);
        if one_after_another(laid_out) {
            check_streamed(&keys, &pack, sealed, &located, &blobs, &mut check)?;
        } else {
            let payload = open_pack(&keys, &pack, &sealed)?;
            drop(sealed);
            for &i in &blobs {
                check(i, slice(&payload, &located[i as usize].1, &what)?)?;
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| ReadError::Task(e.to_string()))?
}

/// Whether blobs in a pack's order never overlap, so one pass front to back reads them all.
/// A snapshot writes each blob once after the last; an index saying otherwise is read the
/// slow way, from the whole payload, and checked just the same.
fn one_after_another(mut locs: impl Iterator<Item = Loc>) -> bool {
    let mut end = 0u64;
    locs.all(|loc| {
        let fits = u64::from(loc.offset) >= end;
        end = u64::from(loc.offset) + u64::from(loc.len);
        fits
    })
}

/// Check a pack's blobs (`blobs`, positions in `located` in the pack's order, laid out one
/// after another) as its payload is decompressed: one blob in memory at a time beside the
/// decompressor's window, not the payload (two packs opened at once held 17 MiB of payload).
fn check_streamed(
    keys: &Keys,
    pack: &str,
    sealed: Bytes,
    located: &[(ShortId, Loc)],
    blobs: &[u32],
    mut check: impl FnMut(u32, &[u8]) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    use std::io::Read as _;
    let what = format!("pack {pack}");
    if format::stored_hash(&sealed) != pack {
        return Err(ReadError::Hash { what });
    }
    let mut payload = format::decode_reader(keys, Role::Pack, &sealed, &what).map_err(decoded)?;
    drop(sealed);
    let damaged = |source| {
        decoded(FormatError::Decompress {
            what: what.clone(),
            source,
        })
    };
    let past_end = || ReadError::Hash {
        what: format!("{what} (a blob lies past its end)"),
    };
    let (mut at, mut data) = (0u64, Vec::new());
    for &i in blobs {
        let loc = located[i as usize].1;
        let gap = u64::from(loc.offset) - at;
        if std::io::copy(&mut payload.by_ref().take(gap), &mut std::io::sink()).map_err(damaged)?
            < gap
        {
            return Err(past_end());
        }
        // Read to the blob's end or the payload's, whichever comes first: the buffer grows
        // with what arrives, never to a length an index claims past the payload.
        data.clear();
        let len = u64::from(loc.len);
        if payload
            .by_ref()
            .take(len)
            .read_to_end(&mut data)
            .map_err(damaged)? as u64
            != len
        {
            return Err(past_end());
        }
        at = u64::from(loc.offset) + u64::from(loc.len);
        check(i, &data)?;
    }
    Ok(())
}

/// Read one pack again and slice out the objects at `locs`.
async fn read_objects(
    store: &Store,
    keys: &Keys,
    id: &str,
    pack: &str,
    wanted: Vec<Wanted>,
) -> Result<Vec<StoredObject>, ReadError> {
    let sealed = get_pack(store, id, pack).await?;
    let (keys, pack) = (keys.clone(), pack.to_owned());
    tokio::task::spawn_blocking(move || {
        let payload = Bytes::from(open_pack(&keys, &pack, &sealed)?);
        let what = format!("pack {pack}");
        wanted
            .into_iter()
            .map(
                |Wanted {
                     entry,
                     position,
                     loc,
                 }| {
                    slice(&payload, &loc, &what)?;
                    let start = loc.offset as usize;
                    Ok(StoredObject {
                        entry,
                        position,
                        raw: payload.slice(start..start + loc.len as usize),
                    })
                },
            )
            .collect()
    })
    .await
    .map_err(|e| ReadError::Task(e.to_string()))?
}

async fn get_pack(store: &Store, id: &str, pack: &str) -> Result<Bytes, ReadError> {
    match store.get(&layout::pack(pack)).await {
        Ok(b) => Ok(b),
        Err(StoreError::NotFound { .. }) => Err(ReadError::MissingPack {
            id: id.to_owned(),
            pack: pack.to_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// A pack's payload: its hash checked against its name, decrypted, decompressed.
fn open_pack(keys: &Keys, pack: &str, sealed: &[u8]) -> Result<Vec<u8>, ReadError> {
    let what = format!("pack {pack}");
    if format::stored_hash(sealed) != pack {
        return Err(ReadError::Hash { what });
    }
    format::decode(keys, Role::Pack, sealed, &what).map_err(decoded)
}

fn slice<'a>(payload: &'a [u8], loc: &Loc, what: &str) -> Result<&'a [u8], ReadError> {
    let start = loc.offset as usize;
    payload
        .get(start..start + loc.len as usize)
        .ok_or_else(|| ReadError::Hash {
            what: format!("{what} (a blob lies past its end)"),
        })
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
    let snap = open_stored(store, keys, id).await?;
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

    /// A store holding one snapshot, "s-1", of `groups` (kind, plural, object names in tree
    /// order), each group's objects (in name order, each once) and tree in a pack of its
    /// own. Returns the store and the packs.
    async fn stored_groups(groups: &[(&str, &str, &[&str])]) -> (Store, Vec<String>) {
        let (store, keys) = (Store::memory(), keys());
        super::super::check_store(&store, &keys, true)
            .await
            .unwrap();
        let (mut resources, mut packs, mut entries) = (Vec::new(), Vec::new(), Vec::new());
        for (kind, plural, names) in groups {
            let (mut payload, mut blobs, mut ids) = (Vec::new(), Vec::new(), Vec::new());
            let mut put = |bytes: &[u8], payload: &mut Vec<u8>| {
                let id = keys.blob_id(bytes);
                blobs.push((id, payload.len() as u32, bytes.len() as u32));
                payload.extend_from_slice(bytes);
                id
            };
            let object = |n: &str| {
                serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": kind,
                    "metadata": {"name": n, "namespace": "n"}}))
                .unwrap()
            };
            // Laid out in name order, each object once (as a snapshot stores identical
            // objects); the tree lists them in the order given.
            let mut laid_out: Vec<&str> = names.to_vec();
            laid_out.sort_unstable();
            laid_out.dedup();
            for n in laid_out {
                put(&object(n), &mut payload);
            }
            ids.extend(names.iter().map(|n| keys.blob_id(&object(n))));
            let trees: Vec<BlobId> = format::chunk_tree(&ids)
                .iter()
                .map(|c| put(c, &mut payload))
                .collect();
            let sealed = format::encode(&keys, Role::Pack, &payload);
            let pack = format::stored_hash(&sealed);
            store
                .put(&layout::pack(&pack), Bytes::from(sealed))
                .await
                .unwrap();
            entries.push(PackEntry {
                id: pack.clone(),
                size: 0,
                blobs,
            });
            resources.push(format::TreeEntry {
                resource: ResourceRef {
                    group: String::new(),
                    version: "v1".into(),
                    resource: (*plural).into(),
                    kind: (*kind).into(),
                    namespaced: true,
                },
                namespace: Some("n".into()),
                count: names.len() as u64,
                trees,
            });
            packs.push(pack);
        }
        let index = format::encode_json(
            &keys,
            Role::Index,
            &Index {
                format: FORMAT_VERSION,
                packs: entries,
            },
        );
        store
            .put(
                &layout::index(&format::stored_hash(&index)),
                Bytes::from(index),
            )
            .await
            .unwrap();
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let m = Manifest {
            format: FORMAT_VERSION,
            id: "s-1".into(),
            coldstart_version: "test".into(),
            cluster: ClusterIdentity {
                name: "c".into(),
                uid: "u".into(),
                server: String::new(),
            },
            started_at: at,
            finished_at: at,
            encryption: "xchacha20poly1305".into(),
            plaintext_secrets: false,
            resources,
            packs: packs.clone(),
            bindings: Bindings::default(),
            unavailable: vec![],
            stats: Stats::default(),
        };
        store
            .put(
                &layout::manifest("s-1"),
                Bytes::from(format::encode_json(&keys, Role::Manifest, &m)),
            )
            .await
            .unwrap();
        (store, packs)
    }

    async fn names_read(
        snap: &StoredSnapshot,
        store: &Store,
        kind: &str,
    ) -> Result<Vec<String>, ReadError> {
        let mut read = snap.read(store, &keys(), |e| e.resource.kind == kind);
        let mut out = Vec::new();
        while let Some(o) = read.next().await {
            let v: Value = serde_json::from_slice(&o?.raw).unwrap();
            out.push(v["metadata"]["name"].as_str().unwrap().to_owned());
        }
        out.sort();
        Ok(out)
    }

    #[tokio::test]
    async fn a_stored_snapshot_reads_back_one_group_without_touching_the_packs_of_the_others() {
        let (store, packs) = stored_groups(&[
            ("Namespace", "namespaces", &["a", "b"]),
            ("ConfigMap", "configmaps", &["c1", "c2", "c3"]),
        ])
        .await;
        let snap = open_stored(&store, &keys(), "s-1").await.unwrap();
        assert_eq!(snap.object_count(), 5);
        assert_eq!(snap.count(|e| e.resource.kind == "ConfigMap"), 3);
        // Once verified, the ConfigMaps' pack goes away: reading the namespaces does not
        // need it (a tier is read from its own packs only), reading the ConfigMaps fails.
        store.delete(&layout::pack(&packs[1])).await.unwrap();
        assert_eq!(
            names_read(&snap, &store, "Namespace").await.unwrap(),
            ["a", "b"]
        );
        let err = names_read(&snap, &store, "ConfigMap").await.unwrap_err();
        assert!(matches!(err, ReadError::MissingPack { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_pack_replaced_after_the_snapshot_verified_is_refused_when_read_back() {
        let (store, packs) = stored_groups(&[("ConfigMap", "configmaps", &["c1", "c2"])]).await;
        let snap = open_stored(&store, &keys(), "s-1").await.unwrap();
        damage(&store, &layout::pack(&packs[0]), |b| {
            let mid = b.len() / 2;
            b[mid] ^= 0xff;
        })
        .await;
        let err = names_read(&snap, &store, "ConfigMap").await.unwrap_err();
        assert!(matches!(err, ReadError::Hash { .. }), "{err}");
    }

    #[tokio::test]
    async fn open_reads_every_object_back_in_name_order_per_group() {
        let (store, _) = stored_groups(&[
            ("Namespace", "namespaces", &["a", "b"]),
            ("ConfigMap", "configmaps", &["c1", "c2", "c3"]),
        ])
        .await;
        let snap = open(&store, &keys(), "s-1").await.unwrap();
        let names: Vec<Vec<String>> = snap
            .resources()
            .iter()
            .map(|r| {
                r.objects()
                    .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .collect();
        assert_eq!(names, [vec!["a", "b"], vec!["c1", "c2", "c3"]]);
    }

    #[tokio::test]
    async fn objects_come_back_in_tree_order_though_the_pack_lays_them_out_otherwise() {
        // c1 listed twice: one blob in the pack, two objects read back.
        let (store, _) =
            stored_groups(&[("ConfigMap", "configmaps", &["c3", "c1", "c2", "c1"])]).await;
        let snap = open(&store, &keys(), "s-1").await.unwrap();
        let names: Vec<String> = snap.resources()[0]
            .objects()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["c3", "c1", "c2", "c1"]);
    }

    /// A blob as a pack's index lists it: (blob, offset, length).
    type Listed = (BlobId, u32, u32);

    /// ConfigMaps "c1" and "c2" stored in one pack, its index's blob list rewritten by `f`
    /// (and re-sealed under its new name): an index that disagrees with its pack, as a bug
    /// or a damaged store would leave one. Returns the store and the verifying pass's answer.
    async fn opened_with_index(
        f: impl FnOnce(&mut Vec<Listed>),
    ) -> (Store, Result<StoredSnapshot, ReadError>) {
        let (store, _) = stored_groups(&[("ConfigMap", "configmaps", &["c1", "c2"])]).await;
        let mut indexes = load_indexes(&store, &keys()).await.unwrap();
        assert_eq!(indexes.len(), 1);
        let (name, mut index) = indexes.pop().unwrap();
        f(&mut index.packs[0].blobs);
        store.delete(&layout::index(&name)).await.unwrap();
        let sealed = format::encode_json(&keys(), Role::Index, &index);
        store
            .put(
                &layout::index(&format::stored_hash(&sealed)),
                Bytes::from(sealed),
            )
            .await
            .unwrap();
        let opened = open_stored(&store, &keys(), "s-1").await;
        (store, opened)
    }

    #[tokio::test]
    async fn an_index_placing_a_blob_past_its_packs_end_is_refused_by_the_verifying_pass() {
        // Moved past the end, or grown to 4 GiB (which must not be allocated to find out).
        // The last blob in the pack: the others stay where they are, in order, so the pass
        // reads front to back up to it.
        let moves: [fn(&mut Listed); 2] = [|b| b.1 += 1 << 20, |b| b.2 = u32::MAX];
        for moved in moves {
            let (_, opened) =
                opened_with_index(|blobs| moved(blobs.iter_mut().max_by_key(|b| b.1).unwrap()))
                    .await;
            let err = opened.unwrap_err();
            assert!(
                matches!(&err, ReadError::Hash { what } if what.contains("past its end")),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn an_index_swapping_two_blobs_places_is_refused_by_the_verifying_pass() {
        // "c1" and "c2" serialize to the same length: the swapped places are in bounds, in
        // order, and each holds the other's content.
        let (_, opened) = opened_with_index(|blobs| {
            let (a, b) = (blobs[0].1, blobs[1].1);
            (blobs[0].1, blobs[1].1) = (b, a);
        })
        .await;
        let err = opened.unwrap_err();
        assert!(
            matches!(&err, ReadError::Hash { what } if what.starts_with("blob ")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_index_listing_a_blob_twice_over_itself_still_verifies_and_reads_back() {
        // Overlapping places cannot be read in one pass front to back: the pack is checked
        // from its whole payload instead, just as strictly.
        let (store, opened) = opened_with_index(|blobs| blobs.push(blobs[0])).await;
        assert_eq!(
            names_read(&opened.unwrap(), &store, "ConfigMap")
                .await
                .unwrap(),
            ["c1", "c2"]
        );
    }

    #[tokio::test]
    async fn a_tree_listing_an_object_no_pack_holds_names_the_object_and_its_group() {
        let (_, opened) = opened_with_index(|blobs| {
            blobs.remove(0);
        })
        .await;
        let err = opened.unwrap_err();
        assert!(
            matches!(&err, ReadError::MissingBlob { what, .. } if what == "object of configmaps in n"),
            "{err}"
        );
    }

    #[test]
    fn blobs_are_read_front_to_back_unless_one_overlaps_the_one_before() {
        let after = |locs: &[Loc]| one_after_another(locs.iter().copied());
        assert!(after(&[]));
        assert!(after(&[loc(0, 0, 10), loc(0, 10, 5), loc(0, 40, 1)]));
        assert!(!after(&[loc(0, 0, 10), loc(0, 9, 5)]));
        assert!(!after(&[loc(0, 0, 10), loc(0, 0, 10)]));
    }

    fn loc(pack: u32, offset: u32, len: u32) -> Loc {
        Loc { pack, offset, len }
    }

    #[test]
    fn objects_laid_out_one_after_the_other_make_one_run_and_any_break_starts_another() {
        let mut places = Places::default();
        let all = [
            loc(0, 0, 10),
            loc(0, 10, 5),
            loc(0, 15, 7),
            loc(1, 22, 3), // another pack, though the offset follows on
            loc(1, 40, 4), // a gap
            loc(1, 40, 4), // the same blob listed twice
            loc(0, 22, 1), // back to the first pack, right after its run
        ];
        for l in all {
            places.push(l);
        }
        assert_eq!(places.len(), 7);
        assert_eq!(places.runs.len(), 5);
        assert_eq!(places.packs(), (0, 1));
        let listed =
            |positions: &[usize]| positions.iter().map(|&k| (k, all[k])).collect::<Vec<_>>();
        assert_eq!(places.in_pack(0), listed(&[0, 1, 2, 6]));
        assert_eq!(places.in_pack(1), listed(&[3, 4, 5]));
        assert!(places.in_pack(2).is_empty());
    }
}
