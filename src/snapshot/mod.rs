//! Snapshots: capture every object a cold start needs, and the bindings behind them, into
//! a snapshot store; read them back verified; keep only what retention asks for.
//!
//! ```text
//!  discovery ─▶ paged LISTs (N resources in flight, retried) ─▶ exclude ─▶ bindings ─▶ sanitize
//!      ─▶ compact JSON ─▶ keyed hash ─▶ (new blobs only) packer ─▶ zstd ─▶ AEAD ─▶ packs/
//!      ─▶ per-(resource, namespace) tree chunks ─▶ index/ ─▶ cloud snapshots of volumes whose
//!      data policy asks for them (volumes.rs) ─▶ manifest (conditional create, last)
//! ```
//!
//! A snapshot is complete when its manifest exists and invisible until then; one writer at
//! a time holds the store's lock ([`crate::store::lock`]). [`write::take`] writes one,
//! [`read::open`] reads and verifies one in full for a restore, [`prune::prune`] applies
//! retention and collects garbage. The format is described in `docs/snapshot-format.md`.

pub mod capture;
pub mod crypto;
pub mod format;
pub mod key_source;
pub mod prune;
pub mod read;
pub mod rules;
pub mod volumes;
pub mod write;

use bytes::Bytes;

use self::crypto::Keys;
use self::format::StoreSettings;
use crate::store::{Created, Store, StoreError, layout};

/// Why a store's settings do not match the key given.
#[derive(Debug, thiserror::Error)]
pub enum StoreKeyError {
    #[error(
        "failed to open the snapshot store {url}: it is encrypted with a different key (wrong encryption key? check COLDSTART_ENCRYPTION_KEY / --encryption-key-file / --encryption-key-secret)"
    )]
    WrongKey { url: String },
    #[error(
        "failed to open the snapshot store {url}: it is encrypted and no key was given; set COLDSTART_ENCRYPTION_KEY, --encryption-key-file or --encryption-key-secret"
    )]
    KeyRequired { url: String },
    #[error(
        "failed to open the snapshot store {url}: it was created without encryption; use a new store (--store) for encrypted snapshots"
    )]
    Unencrypted { url: String },
    #[error("failed to parse the snapshot store's config in {url}: {source}")]
    Parse {
        url: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Check the store's settings against the key; with `init`, create them if absent (the
/// first snapshot). Returns false if the store has never held a snapshot.
pub async fn check_store(store: &Store, keys: &Keys, init: bool) -> Result<bool, StoreKeyError> {
    let mine = StoreSettings::for_keys(keys);
    let existing = match store.get_opt(layout::CONFIG).await? {
        Some(b) => b,
        None if init => {
            let body = Bytes::from(serde_json::to_vec_pretty(&mine).unwrap_or_default());
            if store.create(layout::CONFIG, body).await? == Created::Written {
                return Ok(true);
            }
            store.get(layout::CONFIG).await?
        }
        None => return Ok(false),
    };
    let theirs: StoreSettings =
        serde_json::from_slice(&existing).map_err(|source| StoreKeyError::Parse {
            url: store.url().to_owned(),
            source,
        })?;
    let url = store.url().to_owned();
    match (theirs.key_check.as_deref(), mine.key_check.as_deref()) {
        (Some(a), Some(b)) if a == b => Ok(true),
        (Some(_), Some(_)) => Err(StoreKeyError::WrongKey { url }),
        (Some(_), None) => Err(StoreKeyError::KeyRequired { url }),
        (None, Some(_)) => Err(StoreKeyError::Unencrypted { url }),
        (None, None) => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_remembers_its_key_and_names_a_wrong_one() {
        let store = Store::memory();
        let k1 = Keys::from_master(&[1; 32]);
        assert!(!check_store(&store, &k1, false).await.unwrap());
        assert!(check_store(&store, &k1, true).await.unwrap());
        assert!(check_store(&store, &k1, false).await.unwrap());
        let wrong = check_store(&store, &Keys::from_master(&[2; 32]), false).await;
        assert!(matches!(wrong, Err(StoreKeyError::WrongKey { .. })));
        let none = check_store(&store, &Keys::plaintext(), true).await;
        assert!(matches!(none, Err(StoreKeyError::KeyRequired { .. })));
        let plain = Store::memory();
        check_store(&plain, &Keys::plaintext(), true).await.unwrap();
        let keyed = check_store(&plain, &k1, true).await;
        assert!(matches!(keyed, Err(StoreKeyError::Unencrypted { .. })));
    }
}
