//! Every key coldstart writes in a snapshot store, and nothing else: the one place that
//! knows the store's layout (after Velero's `object_store_layout.go`).
//!
//! ```text
//! <prefix>/config                 store settings: format version, encryption, key check (plain JSON)
//! <prefix>/locks/writers/<gen>    the single-writer lock, one object per generation (plain JSON)
//! <prefix>/packs/<aa>/<hash>      packs of objects and trees (sealed: zstd + AEAD)
//! <prefix>/index/<hash>           which blob lives where in which pack (sealed)
//! <prefix>/snapshots/<id>         one manifest per complete snapshot, written last (sealed)
//! <prefix>/markers/stopped        a planned stop's record: final snapshot, changes, replicas (sealed)
//! <prefix>/drills/<id>            one report per drill (sealed)
//! <prefix>/probes/<random>        a writer's probe, deleted as soon as it was read back (sealed)
//! ```
//!
//! Keys are relative to the store's prefix; `Store` adds the prefix.

/// The store's settings object.
pub const CONFIG: &str = "config";
/// Directory of the single-writer lock's generations: the highest one is the lock.
pub const WRITER_LOCK: &str = "locks/writers";

/// Where generation `gen` of the writer lock lives (zero-padded so names sort by number).
pub fn writer_lock(generation: u64) -> String {
    format!("{WRITER_LOCK}/{generation:020}")
}
/// Directory of packs (two-character fan-out keeps directory listings short on file systems).
pub const PACKS: &str = "packs";
/// Directory of indexes.
pub const INDEX: &str = "index";
/// Directory of manifests.
pub const SNAPSHOTS: &str = "snapshots";

/// A planned stop's marker: which snapshot to start from, and what to bring back.
pub const STOP_MARKER: &str = "markers/stopped";
/// Directory of drill reports.
pub const DRILLS: &str = "drills";

/// Directory of probes (see [`probe`]).
pub const PROBES: &str = "probes";

/// Where a probe lives: a writer seals a random value, writes it, reads it back and opens
/// it before its first change, to know the store is writable and the key right.
pub fn probe(token: &str) -> String {
    format!("{PROBES}/{token}")
}

/// Where the report of this drill lives.
pub fn drill(id: &str) -> String {
    format!("{DRILLS}/{id}")
}

/// Where the pack with this hash lives.
pub fn pack(hash: &str) -> String {
    format!("{PACKS}/{}/{hash}", &hash[..2.min(hash.len())])
}

/// Where the index with this hash lives.
pub fn index(hash: &str) -> String {
    format!("{INDEX}/{hash}")
}

/// Where the manifest of this snapshot lives.
pub fn manifest(id: &str) -> String {
    format!("{SNAPSHOTS}/{id}")
}

/// The hash (or id) an object under `dir` is named by: its last path segment.
pub fn name_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// Whether `s` could be a snapshot id (so a listing ignores stray files, and an id given on
/// the command line cannot escape the snapshots directory).
pub fn is_snapshot_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_fan_out_by_their_first_two_hash_characters() {
        assert_eq!(pack("abcdef"), "packs/ab/abcdef");
        assert_eq!(index("abcdef"), "index/abcdef");
        assert_eq!(
            manifest("20250101T000000Z-1a2b"),
            "snapshots/20250101T000000Z-1a2b"
        );
    }

    #[test]
    fn the_name_of_a_key_is_its_last_segment() {
        assert_eq!(name_of("packs/ab/abcdef"), "abcdef");
        assert_eq!(name_of("config"), "config");
    }

    #[test]
    fn snapshot_ids_cannot_name_other_paths() {
        assert!(is_snapshot_id("20250101T000000Z-1a2b3c4d"));
        assert!(!is_snapshot_id("../config"));
        assert!(!is_snapshot_id(""));
        assert!(!is_snapshot_id("a/b"));
    }
}
