//! Taking a snapshot. Pages stream from the API server through exclusion, binding
//! extraction and sanitizing into content-addressed blobs; only blobs the store does not
//! already hold go to the packer, so an unchanged cluster costs a few KiB. Memory stays flat:
//! a few pages and packs in flight, plus 32 bytes of id per object for the trees.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt as _;
use tokio::sync::mpsc;

use super::capture::{self, CaptureError};
use super::crypto::{BlobId, Keys, Role, ShortId};
use super::format::{
    self, ClusterIdentity, FORMAT_VERSION, Index, Manifest, PackEntry, ResourceRef, Stats,
    TreeEntry,
};
use super::read::{self, ReadError};
use super::rules::{self, Selection};
use super::{StoreKeyError, check_store};
use crate::bindings::{self, Collector, DataPolicy};
use crate::k8s::RetryPolicy;
use crate::store::lock::{self, LockError};
use crate::store::{Created, Store, StoreError, layout};

/// Uncompressed bytes per pack: 8 MiB of config-like JSON stores as ~2 MiB, so 100k objects
/// make about forty PUTs, and two packs in flight (each held as plain, compressed and
/// sealed copies) stay well inside the memory goal.
pub const PACK_SIZE: usize = 8 << 20;
/// Packs sealed and uploaded at once.
const UPLOADS_IN_FLIGHT: usize = 2;
/// Packs an index covers. The packer writes an index as soon as this many packs are
/// stored, so what it holds of the index is bounded (~20k blob entries, ~2 MiB of JSON
/// while encoding) whatever the cluster's size; one index for a whole 300k-object run was
/// 27 MiB of JSON at its end, the snapshot's peak.
const PACKS_PER_INDEX: usize = 8;

/// Why a snapshot failed. A failed snapshot leaves no manifest: it does not exist.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Config(#[from] StoreKeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    ReadExisting(#[from] ReadError),
    #[error(
        "failed to start the snapshot: Secrets would be stored unencrypted; give a key (COLDSTART_ENCRYPTION_KEY, --encryption-key-file, --encryption-key-secret), exclude secrets (--exclude-resources secrets), or pass --allow-plaintext-secrets"
    )]
    PlaintextSecrets,
    #[error(
        "failed to prove the snapshot store {url} usable: {detail}; nothing was changed. Check --store, its credentials and that it is writable"
    )]
    Probe { url: String, detail: String },
    #[error(
        "failed to start the snapshot: {0}; a snapshot now would hold a half-restored cluster and become the newest. Wait for the restore to finish, or finish it (`coldstart restore` again, then `coldstart gate off` once verified)"
    )]
    RestoreUnfinished(crate::restore::Unfinished),
    #[error("failed to check for a restore in progress: {0}")]
    RestoreState(Box<crate::restore::RestoreError>),
    #[error("failed to write manifest {id}: a snapshot with that id already exists")]
    ManifestExists { id: String },
    #[error("failed to {what}: an internal task stopped ({detail})")]
    Task { what: String, detail: String },
    #[error(
        "failed to take the snapshot: {}",
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    DataPolicy(Vec<bindings::InvalidPolicy>),
    #[error(transparent)]
    CloudSnapshot(#[from] super::volumes::VolumeSnapshotError),
}

/// What to capture and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub selection: Selection,
    /// The cluster's name for the manifest (kubeconfig cluster name by default).
    pub cluster_name: String,
    /// The API server URL, recorded with the cluster's identity.
    pub server: String,
    /// Resources listed at once.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub allow_plaintext_secrets: bool,
    pub pack_size: usize,
    pub lock_ttl: Duration,
    /// The data policy of volumes whose claim names none.
    pub data_policy: DataPolicy,
    /// The cloud that takes snapshots of volumes whose data policy asks for them.
    pub cloud: crate::cloud::CloudChoice,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            selection: Selection::default(),
            cluster_name: "unknown".to_owned(),
            server: String::new(),
            concurrency: 4,
            retry: RetryPolicy::default(),
            allow_plaintext_secrets: false,
            pack_size: PACK_SIZE,
            lock_ttl: lock::DEFAULT_TTL,
            data_policy: DataPolicy::Transfer,
            cloud: crate::cloud::CloudChoice::Auto,
        }
    }
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct CaptureProgress {
    pub objects: AtomicU64,
    pub bytes_written: AtomicU64,
    pub resources_total: AtomicU64,
    pub resources_done: AtomicU64,
}

/// Blobs the store already holds (from its indexes), and the packs they live in.
#[derive(Debug, Default)]
struct Known {
    /// (blob, pack number), sorted by blob: 20 bytes a blob by short id (the same 128 bits
    /// the verifying pass finds blobs by; 36 with whole ids), where a hash map took ~64
    /// once its table doubled (19 MiB for a 300k-object store). It holds every blob of
    /// every snapshot in the store, so it grows with their history too.
    blobs: Vec<(ShortId, u32)>,
    packs: Vec<(String, u64)>,
}

impl Known {
    /// The pack number of a stored blob.
    fn pack_of(&self, blob: &BlobId) -> Option<u32> {
        let blob = blob.short();
        self.blobs
            .binary_search_by(|(b, _)| b.cmp(&blob))
            .ok()
            .map(|i| self.blobs[i].1)
    }
}

/// New blobs on their way to the packer: their bytes back to back in one buffer, each as
/// (id, offset, length). One allocation per page, not one per object: the packer frees a
/// page's blobs at once, and no blob carries a doubling buffer's spare capacity.
#[derive(Debug, Default)]
struct Batch {
    data: Vec<u8>,
    blobs: Vec<(BlobId, u32, u32)>,
}

impl Batch {
    fn push(&mut self, id: BlobId, data: &[u8]) {
        self.blobs
            .push((id, self.data.len() as u32, data.len() as u32));
        self.data.extend_from_slice(data);
    }

    fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

/// What listing one resource produced.
#[derive(Debug, Default)]
struct Listed {
    entries: Vec<TreeEntry>,
    existing_packs: HashSet<u32>,
    objects: u64,
    bytes: u64,
}

/// Check that a snapshot with these options can be taken, before a caller (a planned stop)
/// changes anything: the cluster's resources can be discovered, Secrets would not be
/// stored unencrypted, the store accepts this key (its key check), is writable and gives
/// back what was written (a sealed probe, read back and opened), and no live writer holds
/// the lock. Writes only the probe (deleted again) and, on a new store, its config.
pub async fn preflight(
    client: &kube::Client,
    store: &Store,
    keys: &Keys,
    opts: &Options,
) -> Result<(), WriteError> {
    let discovered = capture::discover(client, &opts.retry).await?;
    let secrets = discovered.resources.iter().any(|r| {
        r.group.is_empty()
            && r.resource == "secrets"
            && rules::excluded_resource(&r.group, &r.resource).is_none()
            && opts.selection.wants_resource(&r.group, &r.resource)
    });
    if secrets && !keys.is_encrypted() && !opts.allow_plaintext_secrets {
        return Err(WriteError::PlaintextSecrets);
    }
    refuse_during_restore(client).await?;
    check_store(store, keys, true).await?;
    capture::cluster_uid(client, &opts.retry).await?;
    probe(store, keys).await?;
    lock::check_free(store).await?;
    Ok(())
}

async fn refuse_during_restore(client: &kube::Client) -> Result<(), WriteError> {
    match crate::restore::unfinished(client).await {
        Ok(None) => Ok(()),
        Ok(Some(u)) => Err(WriteError::RestoreUnfinished(u)),
        Err(e) => Err(WriteError::RestoreState(Box::new(e))),
    }
}

/// Seal a random value, write it, read it back, open it and compare; then delete it.
async fn probe(store: &Store, keys: &Keys) -> Result<(), WriteError> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let key = layout::probe(&token);
    let fail = |detail: String| WriteError::Probe {
        url: store.url().to_owned(),
        detail,
    };
    store
        .put(&key, Bytes::from(keys.seal(Role::Probe, token.as_bytes())))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let back = store.get(&key).await.map_err(|e| fail(e.to_string()));
    // Delete before judging: a failed probe must not leave litter either.
    if let Err(e) = store.delete(&key).await {
        tracing::warn!(error = %e, key = %key, "failed to delete the store probe");
    }
    let opened = keys
        .open(Role::Probe, &back?, "the store probe")
        .map_err(|e| fail(e.to_string()))?;
    if opened != token.as_bytes() {
        return Err(fail(
            "the probe read back differs from what was written".to_owned(),
        ));
    }
    Ok(())
}

/// Take a snapshot: capture the cluster into the store and return its manifest.
pub async fn take(
    client: &kube::Client,
    store: &Store,
    keys: &Keys,
    opts: &Options,
    progress: Arc<CaptureProgress>,
) -> Result<Manifest, WriteError> {
    let lock = lock::acquire(store, "snapshot", opts.lock_ttl).await?;
    let result = take_locked(client, store, keys, opts, progress, &lock).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "failed to release the writer lock; the next writer will take it over once it expires");
    }
    result
}

async fn take_locked(
    client: &kube::Client,
    store: &Store,
    keys: &Keys,
    opts: &Options,
    progress: Arc<CaptureProgress>,
    lock: &lock::WriterLock,
) -> Result<Manifest, WriteError> {
    let started_at = Utc::now();
    let id = format::new_snapshot_id(started_at);
    let discovered = capture::discover(client, &opts.retry).await?;
    for u in &discovered.unavailable {
        tracing::warn!(group_version = %u.group_version, error = %u.error, "API unavailable; its objects are not in this snapshot");
    }
    let resources: Vec<ResourceRef> = discovered
        .resources
        .into_iter()
        .filter(|r| match rules::excluded_resource(&r.group, &r.resource) {
            Some(why) => {
                tracing::debug!(resource = %r.qualified(), why, "resource excluded");
                false
            }
            None => opts.selection.wants_resource(&r.group, &r.resource),
        })
        .collect();
    let secrets = resources
        .iter()
        .any(|r| r.group.is_empty() && r.resource == "secrets");
    if secrets && !keys.is_encrypted() && !opts.allow_plaintext_secrets {
        return Err(WriteError::PlaintextSecrets);
    }
    refuse_during_restore(client).await?;
    check_store(store, keys, true).await?;
    let uid = capture::cluster_uid(client, &opts.retry).await?;
    let known = Arc::new(load_known(store, keys).await?);
    progress
        .resources_total
        .store(resources.len() as u64, Ordering::Relaxed);

    // A batch is a page's new blobs (~1 MiB at PAGE_SIZE); the listers wait rather than
    // queue pages while the packer waits for an upload slot.
    let (tx, rx) = mpsc::channel::<Batch>(2);
    let packer = tokio::spawn(pack_blobs(
        rx,
        store.clone(),
        keys.clone(),
        opts.pack_size,
        progress.clone(),
    ));
    let collector = Arc::new(Mutex::new(Collector::with_default_policy(opts.data_policy)));
    let listed: Vec<Result<Listed, WriteError>> = futures::stream::iter(resources)
        .map(|r| {
            let ctx = ListCtx {
                client,
                keys,
                opts,
                known: &known,
                tx: tx.clone(),
                collector: &collector,
                progress: &progress,
            };
            async move { list_resource(ctx, r).await }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    drop(tx);
    let packed = packer.await.map_err(|e| WriteError::Task {
        what: "write packs".to_owned(),
        detail: e.to_string(),
    });
    // A lister fails with `Task` when the packer stopped; the packer's error is the cause.
    let new_packs = packed??;
    let mut entries = Vec::new();
    let mut existing = HashSet::new();
    let mut stats = Stats::default();
    for l in listed {
        let l = l?;
        entries.extend(l.entries);
        existing.extend(l.existing_packs);
        stats.objects += l.objects;
        stats.bytes_total += l.bytes;
    }
    entries.sort_by(|a, b| (&a.resource, &a.namespace).cmp(&(&b.resource, &b.namespace)));

    // The packer's uploads and indexes are in; only the manifest is left to write.
    let bytes_written = progress.bytes_written.load(Ordering::Relaxed);
    let mut packs: Vec<(String, u64)> = existing
        .into_iter()
        .filter_map(|i| known.packs.get(i as usize).cloned())
        .collect();
    packs.extend(new_packs);
    packs.sort();
    packs.dedup();
    stats.bytes_stored = packs.iter().map(|(_, s)| s).sum();
    let (mut bindings, invalid) = Arc::try_unwrap(collector)
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .unwrap_or_default()
        .finish();
    if !invalid.is_empty() {
        return Err(WriteError::DataPolicy(invalid));
    }
    if super::volumes::wanted(&bindings) {
        let provider = crate::cloud::snapshots::provider(opts.cloud, Some(client.clone())).await;
        super::volumes::take(client, provider.as_deref(), &id, &mut bindings).await?;
    }
    let mut manifest = Manifest {
        format: FORMAT_VERSION,
        id: id.clone(),
        coldstart_version: env!("CARGO_PKG_VERSION").to_owned(),
        cluster: ClusterIdentity {
            name: opts.cluster_name.clone(),
            uid,
            server: opts.server.clone(),
        },
        started_at,
        finished_at: Utc::now(),
        encryption: format::StoreSettings::for_keys(keys).encryption,
        plaintext_secrets: secrets && !keys.is_encrypted(),
        resources: entries,
        packs: packs.into_iter().map(|(p, _)| p).collect(),
        bindings,
        unavailable: discovered.unavailable,
        stats,
    };
    // The manifest's own size is part of what this run wrote; estimate it from a first
    // encoding (it differs by a few bytes at most).
    let draft = format::encode_json(keys, Role::Manifest, &manifest);
    manifest.stats.bytes_written = bytes_written + draft.len() as u64;
    let sealed = format::encode_json(keys, Role::Manifest, &manifest);
    // Commit only while still the writer: a run paused past its lock's TTL and taken over
    // leaves its packs as garbage for prune, not a manifest next to the new writer's.
    lock.ensure_held().await?;
    if store
        .create(&layout::manifest(&id), Bytes::from(sealed))
        .await?
        == Created::AlreadyExists
    {
        return Err(WriteError::ManifestExists { id });
    }
    Ok(manifest)
}

async fn load_known(store: &Store, keys: &Keys) -> Result<Known, WriteError> {
    let mut known = Known::default();
    // Each pack's list by short id as its index is decoded, then one list
    // (`read::flatten_packs`).
    let mut listed: Vec<Vec<ShortId>> = Vec::new();
    read::for_each_index(store, keys, |_, index| {
        for p in index.packs {
            known.packs.push((p.id, p.size));
            listed.push(p.blobs.iter().map(|(b, _, _)| b.short()).collect());
        }
    })
    .await?;
    known.blobs = read::flatten_packs(listed, |pack, blob| (blob, pack)).0;
    // A blob stored twice is found in either pack: keep one (rare enough that the spare
    // capacity is not worth a copy to trim).
    known.blobs.sort_unstable();
    known.blobs.dedup_by_key(|(b, _)| *b);
    Ok(known)
}

struct ListCtx<'a> {
    client: &'a kube::Client,
    keys: &'a Keys,
    opts: &'a Options,
    known: &'a Arc<Known>,
    tx: mpsc::Sender<Batch>,
    collector: &'a Arc<Mutex<Collector>>,
    progress: &'a Arc<CaptureProgress>,
}

/// One page after exclusion, sanitizing and hashing.
struct Processed {
    entries: Vec<(Option<String>, String, BlobId)>,
    new_blobs: Batch,
    existing: Vec<u32>,
    bytes: u64,
    next: Option<String>,
}

fn process_page(
    body: &[u8],
    r: &ResourceRef,
    keys: &Keys,
    selection: &Selection,
    known: &Known,
    collector: &Mutex<Collector>,
) -> Result<Processed, CaptureError> {
    let relevant = bindings::is_relevant(&r.group, &r.resource, &r.kind);
    let api_version = r.api_version();
    let mut out = Processed {
        entries: Vec::with_capacity(capture::PAGE_SIZE as usize),
        new_blobs: Batch::default(),
        existing: Vec::new(),
        bytes: 0,
        next: None,
    };
    let what = format!("decode a page of {}", r.qualified());
    let next = capture::for_each_item(body, &what, |mut obj| {
        let name = obj
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let namespace = obj
            .pointer("/metadata/namespace")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let ns_of_object = if r.group.is_empty() && r.resource == "namespaces" {
            Some(name.as_str())
        } else {
            namespace.as_deref()
        };
        if !selection.wants_namespace(ns_of_object) {
            return;
        }
        if let Some(why) = rules::excluded_object(&r.group, &r.resource, &obj) {
            tracing::trace!(resource = %r.qualified(), ?namespace, name, why, "object excluded");
            return;
        }
        if relevant {
            collector.lock().unwrap_or_else(|e| e.into_inner()).observe(
                &r.group,
                &r.resource,
                &r.kind,
                &obj,
            );
        }
        rules::sanitize(&mut obj, &api_version, &r.kind);
        // Written straight after the page's other new blobs; taken back if the store has it.
        let batch = &mut out.new_blobs;
        let start = batch.data.len();
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut batch.data, &obj);
        let len = batch.data.len() - start;
        let id = keys.blob_id(&batch.data[start..]);
        out.bytes += len as u64;
        match known.pack_of(&id) {
            Some(p) => {
                out.existing.push(p);
                batch.data.truncate(start);
            }
            None => batch.blobs.push((id, start as u32, len as u32)),
        }
        out.entries.push((namespace, name, id));
    })?;
    out.next = next;
    Ok(out)
}

/// One namespace's objects of a resource being listed: their blob ids in the order the API
/// server listed them, which is name order from Kubernetes' API server (etcd and its watch
/// cache list in key order, `/registry/<resource>/<namespace>/<name>`). The names are not
/// kept (they were ~40 of the ~90 bytes an object the listing held, all the resources being
/// listed at once growing with the cluster): only the last one, to notice a server that
/// lists out of name order. Its ids are then sorted by id instead, so the same objects
/// make the same tree chunks, snapshot after snapshot, in either case.
#[derive(Default)]
struct NamespaceObjects {
    ids: Vec<BlobId>,
    last_name: String,
    out_of_order: bool,
}

impl NamespaceObjects {
    fn push(&mut self, name: &str, id: BlobId) {
        if !self.ids.is_empty() && name <= self.last_name.as_str() {
            self.out_of_order = true;
        }
        self.last_name.clear();
        self.last_name.push_str(name);
        self.ids.push(id);
    }

    /// The ids in the order their tree lists them.
    fn into_tree_order(mut self) -> Vec<BlobId> {
        if self.out_of_order {
            self.ids.sort_unstable();
        }
        self.ids
    }
}

async fn list_resource(ctx: ListCtx<'_>, r: ResourceRef) -> Result<Listed, WriteError> {
    let mut by_ns: BTreeMap<Option<String>, NamespaceObjects> = BTreeMap::new();
    let mut listed = Listed::default();
    let mut token: Option<String> = None;
    let packer_gone = || WriteError::Task {
        what: "hand objects to the packer".to_owned(),
        detail: "the packer stopped".to_owned(),
    };
    loop {
        let path = capture::list_path(
            &r,
            ctx.opts.selection.label_selector.as_deref(),
            token.as_deref(),
        );
        let what = format!("list {}", r.qualified());
        let body = capture::get(ctx.client, &path, &what, &ctx.opts.retry).await?;
        let (keys, selection, known, collector, r2) = (
            ctx.keys.clone(),
            ctx.opts.selection.clone(),
            ctx.known.clone(),
            ctx.collector.clone(),
            r.clone(),
        );
        let page = tokio::task::spawn_blocking(move || {
            process_page(&body, &r2, &keys, &selection, &known, &collector)
        })
        .await
        .map_err(|e| WriteError::Task {
            what: format!("process a page of {}", r.qualified()),
            detail: e.to_string(),
        })??;
        listed.objects += page.entries.len() as u64;
        listed.bytes += page.bytes;
        listed.existing_packs.extend(page.existing);
        ctx.progress
            .objects
            .fetch_add(page.entries.len() as u64, Ordering::Relaxed);
        for (ns, name, id) in page.entries {
            by_ns.entry(ns).or_default().push(&name, id);
        }
        if !page.new_blobs.is_empty() {
            ctx.tx
                .send(page.new_blobs)
                .await
                .map_err(|_| packer_gone())?;
        }
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut tree_blobs = Batch::default();
    for (namespace, objs) in by_ns {
        let ids = objs.into_tree_order();
        let mut trees = Vec::new();
        for chunk in format::chunk_tree(&ids) {
            let id = ctx.keys.blob_id(&chunk);
            match ctx.known.pack_of(&id) {
                Some(p) => {
                    listed.existing_packs.insert(p);
                }
                None => tree_blobs.push(id, &chunk),
            }
            trees.push(id);
        }
        listed.entries.push(TreeEntry {
            resource: r.clone(),
            namespace,
            count: ids.len() as u64,
            trees,
        });
    }
    if !tree_blobs.is_empty() {
        ctx.tx.send(tree_blobs).await.map_err(|_| packer_gone())?;
    }
    ctx.progress.resources_done.fetch_add(1, Ordering::Relaxed);
    Ok(listed)
}

/// Group new blobs into packs, seal and upload them, and index them [`PACKS_PER_INDEX`] at a
/// time; returns the packs written, as (id, stored size).
///
/// A blob seen twice within [`PACKS_PER_INDEX`] packs is stored once; further apart it is
/// stored twice, which readers accept (any copy serves) and which only identical objects
/// listed twice can cause: remembering every blob of the run instead would grow with the
/// cluster.
async fn pack_blobs(
    mut rx: mpsc::Receiver<Batch>,
    store: Store,
    keys: Keys,
    pack_size: usize,
    progress: Arc<CaptureProgress>,
) -> Result<Vec<(String, u64)>, WriteError> {
    let mut seen: HashSet<BlobId> = HashSet::new();
    let mut buf: Vec<u8> = Vec::with_capacity(pack_size + (1 << 20));
    let mut blobs: Vec<(BlobId, u32, u32)> = Vec::new();
    let mut uploads = tokio::task::JoinSet::new();
    // Uploaded packs not yet in an index, and every pack written.
    let mut unindexed: Vec<PackEntry> = Vec::new();
    let mut written: Vec<(String, u64)> = Vec::new();
    let mut sealed_packs = 0;
    let mut next = rx.recv().await;
    loop {
        let finished = next.is_none();
        if let Some(batch) = next.take() {
            for (id, offset, len) in batch.blobs {
                if !seen.insert(id) {
                    continue;
                }
                blobs.push((id, buf.len() as u32, len));
                let (from, to) = (offset as usize, (offset + len) as usize);
                buf.extend_from_slice(&batch.data[from..to]);
            }
        }
        if buf.len() >= pack_size || (finished && !buf.is_empty()) {
            while uploads.len() >= UPLOADS_IN_FLIGHT {
                if let Some(r) = uploads.join_next().await {
                    unindexed.push(joined(r)?);
                }
            }
            if unindexed.len() >= PACKS_PER_INDEX {
                write_index(&store, &keys, &progress, &mut unindexed, &mut written).await?;
            }
            let payload = std::mem::replace(&mut buf, Vec::with_capacity(pack_size + (1 << 20)));
            let entries = std::mem::take(&mut blobs);
            sealed_packs += 1;
            if sealed_packs % PACKS_PER_INDEX == 0 {
                seen.clear();
            }
            let (store, keys, progress) = (store.clone(), keys.clone(), progress.clone());
            uploads.spawn(async move {
                let sealed = tokio::task::spawn_blocking(move || {
                    format::encode(&keys, Role::Pack, &payload)
                })
                .await
                .map_err(|e| WriteError::Task {
                    what: "seal a pack".to_owned(),
                    detail: e.to_string(),
                })?;
                let id = format::stored_hash(&sealed);
                let size = sealed.len() as u64;
                store.put(&layout::pack(&id), Bytes::from(sealed)).await?;
                progress.bytes_written.fetch_add(size, Ordering::Relaxed);
                Ok::<_, WriteError>(PackEntry {
                    id,
                    size,
                    blobs: entries,
                })
            });
        }
        if finished {
            break;
        }
        next = rx.recv().await;
    }
    while let Some(r) = uploads.join_next().await {
        unindexed.push(joined(r)?);
    }
    write_index(&store, &keys, &progress, &mut unindexed, &mut written).await?;
    Ok(written)
}

/// Write an index of the uploaded packs in `unindexed` (none when it is empty), moving them
/// to `written`. An index names only packs already stored, so a run that fails later leaves
/// packs a later snapshot can reuse or prune can delete, never an index of a missing pack.
async fn write_index(
    store: &Store,
    keys: &Keys,
    progress: &CaptureProgress,
    unindexed: &mut Vec<PackEntry>,
    written: &mut Vec<(String, u64)>,
) -> Result<(), WriteError> {
    if unindexed.is_empty() {
        return Ok(());
    }
    written.extend(unindexed.iter().map(|p| (p.id.clone(), p.size)));
    let index = Index {
        format: FORMAT_VERSION,
        packs: std::mem::take(unindexed),
    };
    let sealed = format::encode_json(keys, Role::Index, &index);
    drop(index);
    progress
        .bytes_written
        .fetch_add(sealed.len() as u64, Ordering::Relaxed);
    let hash = format::stored_hash(&sealed);
    store
        .put(&layout::index(&hash), Bytes::from(sealed))
        .await?;
    Ok(())
}

fn joined(
    r: Result<Result<PackEntry, WriteError>, tokio::task::JoinError>,
) -> Result<PackEntry, WriteError> {
    r.map_err(|e| WriteError::Task {
        what: "upload a pack".to_owned(),
        detail: e.to_string(),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BlobId {
        BlobId([n; 32])
    }

    fn listed(objects: &[(&str, u8)]) -> Vec<BlobId> {
        let mut ns = NamespaceObjects::default();
        for (name, n) in objects {
            ns.push(name, id(*n));
        }
        ns.into_tree_order()
    }

    #[test]
    fn objects_listed_in_name_order_keep_the_servers_order() {
        // Byte order, as etcd keys sort: "app" before "app-1" before "b".
        let ids = listed(&[("app", 9), ("app-1", 1), ("b", 5)]);
        assert_eq!(ids, vec![id(9), id(1), id(5)]);
    }

    #[test]
    fn objects_listed_out_of_name_order_make_the_same_tree_whatever_the_order() {
        let one = listed(&[("b", 5), ("app", 9), ("app-1", 1)]);
        let other = listed(&[("app-1", 1), ("b", 5), ("app", 9)]);
        assert_eq!(one, vec![id(1), id(5), id(9)]);
        assert_eq!(one, other);
    }

    #[test]
    fn a_name_listed_twice_is_out_of_order() {
        assert_eq!(listed(&[("a", 9), ("a", 1)]), vec![id(1), id(9)]);
    }
}
