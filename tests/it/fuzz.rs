//! Bounded-time mutation fuzzing of everything coldstart parses from outside: the snapshot
//! reader (manifest, index, pack, as stored) and the `serve` configuration. Each case takes
//! well-formed input, damages it at random (bit flips, truncation, insertion, splices of
//! random bytes) and feeds it to the real reader: it must return an error or a value —
//! never panic, never hang, and never write to the store it reads.
//!
//! Seeded (`COLDSTART_FUZZ_SEED`) and bounded (`COLDSTART_FUZZ_CASES`, default 300 per
//! target) so the suite stays fast and a failure is reproducible; CI can raise the count.
//! cargo-fuzz needs a nightly toolchain and a sanitizer build of every dependency; this
//! runs on stable in the ordinary suite instead.

use std::sync::Arc;

use bytes::Bytes;
use coldstart::snapshot::crypto::{Keys, Role};
use coldstart::snapshot::format::{self, Index, PackEntry};
use coldstart::snapshot::read;
use coldstart::store::{Store, layout};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn cases() -> usize {
    std::env::var("COLDSTART_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

fn rng() -> StdRng {
    let seed = std::env::var("COLDSTART_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c01d);
    StdRng::seed_from_u64(seed)
}

/// One to four random damages to `input`.
fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = out.len();
        match rng.random_range(0..5) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => out.truncate(rng.random_range(0..len)),
            2 => {
                let i = rng.random_range(0..=len);
                let junk: Vec<u8> = (0..rng.random_range(1..64)).map(|_| rng.random()).collect();
                out.splice(i..i, junk);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(32));
                for b in &mut out[i..i + n] {
                    *b = rng.random();
                }
            }
            _ => {
                out = (0..rng.random_range(0..128))
                    .map(|_| rng.random())
                    .collect()
            }
        }
    }
    out
}

/// A store with one whole snapshot, written the way `snapshot` writes one; returns its id
/// and the stored keys of its manifest, index and pack.
async fn one_snapshot(keys: &Keys) -> (Store, String, [String; 3]) {
    let store = Store::memory();
    coldstart::snapshot::check_store(&store, keys, true)
        .await
        .expect("config");
    let objects = [
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"n"}}"#
            .as_slice(),
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"n"}}"#,
    ];
    let mut payload = Vec::new();
    let mut blobs = Vec::new();
    let mut ids = Vec::new();
    for o in objects {
        let id = keys.blob_id(o);
        blobs.push((id, payload.len() as u32, o.len() as u32));
        payload.extend_from_slice(o);
        ids.push(id);
    }
    ids.sort();
    let tree: Vec<u8> = format::chunk_tree(&ids).concat();
    let tree_id = keys.blob_id(&tree);
    blobs.push((tree_id, payload.len() as u32, tree.len() as u32));
    payload.extend_from_slice(&tree);
    let sealed = format::encode(keys, Role::Pack, &payload);
    let pack = format::stored_hash(&sealed);
    store
        .put(&layout::pack(&pack), Bytes::from(sealed.clone()))
        .await
        .expect("pack");
    let index = Index {
        format: format::FORMAT_VERSION,
        packs: vec![PackEntry {
            id: pack.clone(),
            size: sealed.len() as u64,
            blobs,
        }],
    };
    let sealed_index = format::encode_json(keys, Role::Index, &index);
    let index_key = layout::index(&format::stored_hash(&sealed_index));
    store
        .put(&index_key, Bytes::from(sealed_index))
        .await
        .expect("index");
    let id = "20250101T000000000Z-f0220000".to_owned();
    let manifest = serde_json::json!({
        "format": 1, "id": id, "coldstartVersion": "fuzz",
        "cluster": {"name": "c", "uid": "u", "server": ""},
        "startedAt": "2025-01-01T00:00:00Z", "finishedAt": "2025-01-01T00:00:01Z",
        "encryption": "xchacha20poly1305", "plaintextSecrets": false,
        "resources": [{"group": "", "version": "v1", "resource": "configmaps", "kind": "ConfigMap",
                       "namespaced": true, "namespace": "n", "count": 2, "trees": [tree_id]}],
        "packs": [pack], "bindings": coldstart::bindings::Bindings::default(), "unavailable": [], "stats": coldstart::snapshot::format::Stats::default()
    });
    let manifest_key = layout::manifest(&id);
    store
        .put(
            &manifest_key,
            Bytes::from(format::encode_json(keys, Role::Manifest, &manifest)),
        )
        .await
        .expect("manifest");
    read::open(&store, keys, &id)
        .await
        .expect("the fixture is a whole snapshot");
    (store, id, [manifest_key, index_key, layout::pack(&pack)])
}

async fn listing(store: &Store) -> Vec<(String, u64)> {
    let mut l: Vec<_> = store
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|l| (l.key, l.size))
        .collect();
    l.sort();
    l
}

#[tokio::test]
async fn damaged_manifests_indexes_and_packs_never_panic_the_reader_or_make_it_write() {
    let keys = Keys::from_master(&[4; 32]);
    let (store, id, targets) = one_snapshot(&keys).await;
    let mut rng = rng();
    for target in &targets {
        let original = store.get(target).await.expect("stored");
        for case in 0..cases() {
            let damaged = mutate(&mut rng, &original);
            store
                .put(target, Bytes::from(damaged.clone()))
                .await
                .expect("put");
            let before = listing(&store).await;
            let opened = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                read::open(&store, &keys, &id),
            )
            .await
            .unwrap_or_else(|_| panic!("{target} case {case}: the reader hung"));
            let _ = read::list_all(&store, &keys).await;
            let _ = read::open_newest(&store, &keys, |_| true).await;
            assert_eq!(
                listing(&store).await,
                before,
                "{target} case {case}: a read wrote"
            );
            if damaged != original {
                // Damage is detected (a flip inside a JSON string could in theory still
                // parse; sealing makes that impossible here).
                assert!(
                    opened.is_err(),
                    "{target} case {case}: damage went unnoticed"
                );
            }
        }
        store.put(target, original).await.expect("restore");
    }
    // The pure decoders, fed any bytes under every role.
    for _ in 0..cases() {
        let junk = mutate(&mut rng, b"CSK1\x01");
        for role in [
            Role::Pack,
            Role::Index,
            Role::Manifest,
            Role::Marker,
            Role::Report,
        ] {
            let _ = format::decode(&keys, role, &junk, "fuzz");
            let _ = format::decode(&Keys::plaintext(), role, &junk, "fuzz");
        }
        let _ = format::parse_tree(&junk, "fuzz");
    }
    let _ = Arc::new(());
}

#[test]
fn damaged_serve_configurations_never_panic_the_parser_or_the_validation() {
    let good = "cluster: { name: prod }\nlisten: 0.0.0.0:8080\nstore: { url: s3://b/p }\n\
                encryption: { key: env:COLDSTART_KEY }\nschedules:\n  snapshot: { cron: \"*/15 * * * *\", timeZone: Europe/Paris, jitter: 30s }\n  \
                drill: { cron: \"0 3 * * 0\" }\nretention: { keepLast: 24, daily: 7, weekly: 4 }\nrpo: { target: 20m }\n\
                ordering: { operatorSelector: coldstart.dev/operator=true }\n\
                coldStart: { autoRestore: true }\napi: { token: file:/t, protectReads: false }\n\
                leaderElection: { enabled: true, leaseDuration: 15s, renewDeadline: 10s, retryPeriod: 2s }\nshutdownGrace: 30s\n";
    coldstart::config::Config::from_yaml(good)
        .expect("the fixture parses")
        .validate()
        .expect("the fixture is valid");
    let mut rng = rng();
    for _ in 0..cases() * 3 {
        let damaged = mutate(&mut rng, good.as_bytes());
        let text = String::from_utf8_lossy(&damaged);
        if let Ok(c) = coldstart::config::Config::from_yaml(&text) {
            let _ = c.validate();
        }
    }
}
