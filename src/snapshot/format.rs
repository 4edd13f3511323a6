//! The snapshot format (see `docs/snapshot-format.md`): blobs (one sanitized object as
//! compact JSON, or one tree chunk listing object blobs) named by their keyed hash and
//! grouped in packs of a few MiB; indexes saying which blob lives where; a manifest per
//! snapshot listing its trees, packs, bindings and the cluster it came from.
//!
//! Every pack, index and manifest is zstd-compressed, then sealed (see `crypto`). A pack or
//! index is named by the BLAKE3 hash of its sealed bytes, so truncation and tampering are
//! caught before decryption is even tried.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::crypto::{BlobId, CryptoError, Keys, Role};
use crate::bindings::Bindings;

/// The format version every manifest, index and store config carries.
pub const FORMAT_VERSION: u32 = 1;

/// zstd level: level 3 compresses config-like JSON ~8x at several hundred MB/s on one core,
/// the best trade for a snapshot that must keep up with the API server.
const ZSTD_LEVEL: i32 = 3;

/// Why stored data could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(
        "failed to decompress {what}: {source} (the object is damaged; run `coldstart snapshots verify`)"
    )]
    Decompress {
        what: String,
        source: std::io::Error,
    },
    #[error("failed to parse {what}: {source} (the object is damaged or from a newer coldstart)")]
    Parse {
        what: String,
        source: serde_json::Error,
    },
    #[error("failed to read tree {what}: its length is not a whole number of blob ids")]
    Tree { what: String },
}

/// The largest payload decoded into a buffer sized from its frame header: well above a
/// pack ([`crate::snapshot::write::PACK_SIZE`]) or a 300k-object manifest.
const MAX_PRESIZED: usize = 256 << 20;

/// Compress then seal.
pub fn encode(keys: &Keys, role: Role, plain: &[u8]) -> Vec<u8> {
    // zstd only fails on allocation failure or invalid levels; neither applies here.
    let compressed = zstd::bulk::compress(plain, ZSTD_LEVEL).unwrap_or_default();
    keys.seal(role, &compressed)
}

/// Open then decompress.
pub fn decode(keys: &Keys, role: Role, sealed: &[u8], what: &str) -> Result<Vec<u8>, FormatError> {
    let compressed = keys.open(role, sealed, what)?;
    let failed = |source| FormatError::Decompress {
        what: what.to_owned(),
        source,
    };
    // The frame header carries the payload's size (bulk compression writes it): decode into
    // exactly that, not into a Vec that doubles as it grows (up to twice a pack in memory,
    // for each pack a restore verifies at once). A size past any pack's is not trusted.
    match zstd::zstd_safe::get_frame_content_size(&compressed) {
        Ok(Some(size)) if size <= MAX_PRESIZED as u64 => {
            zstd::bulk::decompress(&compressed, size as usize).map_err(failed)
        }
        _ => zstd::stream::decode_all(compressed.as_slice()).map_err(failed),
    }
}

/// Open, then decompress as the caller reads: a pass that looks at a payload once, front to
/// back, holds the compressed bytes and the decompressor's window (2 MiB at
/// [`ZSTD_LEVEL`]) instead of the whole payload ([`decode`]: a pack's 8 MiB).
pub fn decode_reader(
    keys: &Keys,
    role: Role,
    sealed: &[u8],
    what: &str,
) -> Result<impl std::io::Read + use<>, FormatError> {
    let compressed = keys.open(role, sealed, what)?;
    zstd::stream::read::Decoder::with_buffer(std::io::Cursor::new(compressed)).map_err(|source| {
        FormatError::Decompress {
            what: what.to_owned(),
            source,
        }
    })
}

/// Encode a JSON document (index, manifest).
pub fn encode_json<T: Serialize>(keys: &Keys, role: Role, doc: &T) -> Vec<u8> {
    encode(keys, role, &serde_json::to_vec(doc).unwrap_or_default())
}

/// Decode a JSON document.
pub fn decode_json<T: serde::de::DeserializeOwned>(
    keys: &Keys,
    role: Role,
    sealed: &[u8],
    what: &str,
) -> Result<T, FormatError> {
    let plain = decode(keys, role, sealed, what)?;
    serde_json::from_slice(&plain).map_err(|source| FormatError::Parse {
        what: what.to_owned(),
        source,
    })
}

/// The name of a sealed pack or index: the plain BLAKE3 hash of its stored bytes.
pub fn stored_hash(sealed: &[u8]) -> String {
    blake3::hash(sealed).to_hex().to_string()
}

/// The store's settings, written once by the first snapshot (plain JSON: it holds no
/// secret, and it must be readable to say "wrong key" before decrypting anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreSettings {
    pub format: u32,
    /// `xchacha20poly1305` or `none`.
    pub encryption: String,
    /// Identifies the key without revealing it.
    pub key_check: Option<String>,
}

impl StoreSettings {
    pub fn for_keys(keys: &Keys) -> Self {
        StoreSettings {
            format: FORMAT_VERSION,
            encryption: if keys.is_encrypted() {
                "xchacha20poly1305".to_owned()
            } else {
                "none".to_owned()
            },
            key_check: keys.key_check().map(str::to_owned),
        }
    }
}

/// Where blobs live: one index per snapshot run, listing the packs that run wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub format: u32,
    pub packs: Vec<PackEntry>,
}

/// One pack and the blobs in its (decompressed) payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    pub id: String,
    /// Stored (sealed) size in bytes.
    pub size: u64,
    /// (blob, offset, length) in the decompressed payload.
    pub blobs: Vec<(BlobId, u32, u32)>,
}

/// A resource as discovery served it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    pub group: String,
    pub version: String,
    /// Plural name, as in the URL.
    pub resource: String,
    pub kind: String,
    pub namespaced: bool,
}

impl ResourceRef {
    /// `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` for core resources, `plural.group` otherwise (kubectl's spelling).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// The objects of one resource in one namespace (cluster-scoped: `namespace` is None).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TreeEntry {
    #[serde(flatten)]
    pub resource: ResourceRef,
    pub namespace: Option<String>,
    pub count: u64,
    /// Tree chunks (blobs), in order; each lists object blobs sorted by object name.
    pub trees: Vec<BlobId>,
}

/// Who the snapshot is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIdentity {
    /// `--cluster-name`, by default the kubeconfig's current cluster name.
    pub name: String,
    /// UID of `kube-system` at snapshot time (a recreated cluster has a new one).
    pub uid: String,
    /// The API server URL the snapshot was taken from.
    pub server: String,
}

/// A discovered API that could not be read (reported, not fatal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unavailable {
    pub group_version: String,
    pub error: String,
}

/// Totals of one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub objects: u64,
    /// Bytes this snapshot run wrote to the store (packs, index, manifest).
    pub bytes_written: u64,
    /// Bytes of all objects as compact JSON (before compression and deduplication).
    pub bytes_total: u64,
    /// Stored size of every pack the snapshot references.
    pub bytes_stored: u64,
}

/// A complete snapshot. Written last, with a conditional create: a snapshot whose manifest
/// is missing does not exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub coldstart_version: String,
    pub cluster: ClusterIdentity,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `xchacha20poly1305`, or `none` when plaintext was allowed.
    pub encryption: String,
    /// Whether Secrets are stored unencrypted (only with `--allow-plaintext-secrets`).
    pub plaintext_secrets: bool,
    pub resources: Vec<TreeEntry>,
    /// Every pack holding a blob this snapshot references.
    pub packs: Vec<String>,
    pub bindings: Bindings,
    pub unavailable: Vec<Unavailable>,
    pub stats: Stats,
}

/// A new snapshot id: its UTC start time to the millisecond (so ids sort by age) and a
/// random suffix.
pub fn new_snapshot_id(now: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%S%3fZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Tree chunks end after an entry whose blob id's first byte is below this (1 in 32): the
/// boundaries depend on content, not position, so adding or changing one object rewrites
/// one or two chunks of ~32 ids instead of the whole namespace's list.
const CHUNK_BOUNDARY: u8 = 256u16.div_ceil(32) as u8;
/// Upper bound on a chunk, so a long run without a boundary stays small.
const CHUNK_MAX: usize = 256;

/// Split a (resource, namespace)'s object blobs, in name order (or by id, see
/// `write::NamespaceObjects`), into tree chunks.
pub fn chunk_tree(sorted: &[BlobId]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    for (n, id) in sorted.iter().enumerate() {
        cur.extend_from_slice(&id.0);
        let in_chunk = cur.len() / 32;
        if id.0[0] < CHUNK_BOUNDARY || in_chunk >= CHUNK_MAX || n + 1 == sorted.len() {
            chunks.push(std::mem::take(&mut cur));
        }
    }
    chunks
}

/// The object blobs a tree chunk lists.
pub fn parse_tree(chunk: &[u8], what: &str) -> Result<Vec<BlobId>, FormatError> {
    if !chunk.len().is_multiple_of(32) {
        return Err(FormatError::Tree {
            what: what.to_owned(),
        });
    }
    Ok(chunk
        .chunks_exact(32)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(c);
            BlobId(id)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<BlobId> {
        let k = Keys::plaintext();
        (0..n)
            .map(|i| k.blob_id(format!("obj-{i}").as_bytes()))
            .collect()
    }

    #[test]
    fn tree_chunks_round_trip_and_stay_small() {
        let all = ids(1000);
        let chunks = chunk_tree(&all);
        assert!(chunks.len() > 10, "{} chunks", chunks.len());
        let back: Vec<BlobId> = chunks
            .iter()
            .flat_map(|c| parse_tree(c, "t").unwrap())
            .collect();
        assert_eq!(back, all);
        assert!(chunks.iter().all(|c| c.len() / 32 <= CHUNK_MAX));
        assert!(chunk_tree(&[]).is_empty());
    }

    #[test]
    fn changing_one_object_rewrites_few_tree_chunks() {
        let all = ids(1000);
        let mut changed = all.clone();
        changed[500] = Keys::plaintext().blob_id(b"changed");
        let before: std::collections::HashSet<Vec<u8>> = chunk_tree(&all).into_iter().collect();
        let new = chunk_tree(&changed)
            .into_iter()
            .filter(|c| !before.contains(c))
            .count();
        assert!(new <= 2, "{new} chunks rewritten");
    }

    #[test]
    fn a_truncated_tree_is_refused() {
        assert!(parse_tree(&[0u8; 33], "t").is_err());
    }

    #[test]
    fn documents_round_trip_through_compression_and_sealing() {
        let keys = Keys::from_master(&[3; 32]);
        let idx = Index {
            format: FORMAT_VERSION,
            packs: vec![PackEntry {
                id: "ab".into(),
                size: 10,
                blobs: vec![(keys.blob_id(b"x"), 0, 1)],
            }],
        };
        let sealed = encode_json(&keys, Role::Index, &idx);
        let back: Index = decode_json(&keys, Role::Index, &sealed, "index").unwrap();
        assert_eq!(back, idx);
        assert!(decode_json::<Index>(&keys, Role::Manifest, &sealed, "index").is_err());
    }

    #[test]
    fn snapshot_ids_sort_by_time() {
        let a = new_snapshot_id("2025-01-01T00:00:00Z".parse().unwrap());
        let b = new_snapshot_id("2025-01-02T00:00:00Z".parse().unwrap());
        assert!(a < b);
        assert!(crate::store::layout::is_snapshot_id(&a));
    }
}
