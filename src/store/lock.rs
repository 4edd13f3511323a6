//! The single-writer lock: one snapshot or prune at a time per store. It is an object
//! created with a conditional put (create-if-absent), so two writers racing for it cannot
//! both win. The holder refreshes its expiry while it works; a lock whose expiry has passed
//! belongs to a writer that crashed and is taken over (stale-lock recovery).

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Created, Store, StoreError, layout};

/// How long a lock stays valid without a refresh. Long enough to ride out a slow store or a
/// paused process; short enough that a crashed writer blocks the next scheduled run only once.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "failed to take the snapshot store's writer lock: {holder} holds it for {purpose} since {acquired} (until {expires}); wait for it to finish, or if that process is gone run `coldstart snapshots unlock`"
    )]
    Held {
        holder: String,
        purpose: String,
        acquired: DateTime<Utc>,
        expires: DateTime<Utc>,
    },
    #[error("failed to take the snapshot store's writer lock: {0}")]
    Store(#[from] StoreError),
}

/// What the lock object records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockInfo {
    /// Host and process id of the holder, plus a random token that tells two holders apart.
    pub holder: String,
    pub purpose: String,
    pub acquired: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// A lock is stale once its expiry has passed; an unreadable lock is stale too (a writer
/// that died while writing it).
pub fn is_stale(info: Option<&LockInfo>, now: DateTime<Utc>) -> bool {
    info.is_none_or(|i| i.expires <= now)
}

/// A held lock. Refreshed in the background until released or dropped.
#[derive(Debug)]
pub struct WriterLock {
    store: Store,
    info: LockInfo,
    refresher: tokio::task::JoinHandle<()>,
}

fn holder() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!(
        "{host}/pid-{}/{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn encode(info: &LockInfo) -> Bytes {
    Bytes::from(serde_json::to_vec(info).unwrap_or_default())
}

fn ttl_chrono(ttl: Duration) -> chrono::Duration {
    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(300))
}

/// Take the store's writer lock for `purpose`, taking over a stale one.
pub async fn acquire(store: &Store, purpose: &str, ttl: Duration) -> Result<WriterLock, LockError> {
    let now = Utc::now();
    let info = LockInfo {
        holder: holder(),
        purpose: purpose.to_owned(),
        acquired: now,
        expires: now + ttl_chrono(ttl),
    };
    if store.create(layout::WRITER_LOCK, encode(&info)).await? == Created::AlreadyExists {
        let current = store
            .get_opt(layout::WRITER_LOCK)
            .await?
            .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok());
        if !is_stale(current.as_ref(), Utc::now()) {
            let c = current.unwrap_or_else(|| info.clone());
            return Err(LockError::Held {
                holder: c.holder,
                purpose: c.purpose,
                acquired: c.acquired,
                expires: c.expires,
            });
        }
        tracing::warn!(previous = ?current, "taking over a stale writer lock (its holder stopped refreshing it)");
        store.delete(layout::WRITER_LOCK).await?;
        if store.create(layout::WRITER_LOCK, encode(&info)).await? == Created::AlreadyExists {
            let c = store
                .get_opt(layout::WRITER_LOCK)
                .await?
                .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok())
                .unwrap_or_else(|| info.clone());
            return Err(LockError::Held {
                holder: c.holder,
                purpose: c.purpose,
                acquired: c.acquired,
                expires: c.expires,
            });
        }
    }
    let refresher = {
        let store = store.clone();
        let mut info = info.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                // Only refresh a lock that is still ours: a lock taken over while this
                // process was paused must not be overwritten.
                let current = store
                    .get_opt(layout::WRITER_LOCK)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok());
                if current.as_ref().map(|c| &c.holder) != Some(&info.holder) {
                    tracing::error!("the writer lock was taken over by another process");
                    return;
                }
                info.expires = Utc::now() + ttl_chrono(ttl);
                if let Err(e) = store.put(layout::WRITER_LOCK, encode(&info)).await {
                    tracing::warn!(error = %e, "failed to refresh the writer lock");
                }
            }
        })
    };
    Ok(WriterLock {
        store: store.clone(),
        info,
        refresher,
    })
}

impl WriterLock {
    /// Who holds the lock (this process).
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Release the lock (only if it is still ours).
    pub async fn release(self) -> Result<(), StoreError> {
        self.refresher.abort();
        let current = self
            .store
            .get_opt(layout::WRITER_LOCK)
            .await?
            .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok());
        if current.is_none_or(|c| c.holder == self.info.holder) {
            self.store.delete(layout::WRITER_LOCK).await?;
        }
        Ok(())
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// Remove the lock whoever holds it (`coldstart snapshots unlock`); returns what it held.
pub async fn force_unlock(store: &Store) -> Result<Option<LockInfo>, StoreError> {
    let current = store
        .get_opt(layout::WRITER_LOCK)
        .await?
        .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok());
    store.delete(layout::WRITER_LOCK).await?;
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_lock_is_stale_once_its_expiry_has_passed_or_it_cannot_be_read() {
        let info = LockInfo {
            holder: "h".into(),
            purpose: "snapshot".into(),
            acquired: at("2025-01-01T00:00:00Z"),
            expires: at("2025-01-01T00:05:00Z"),
        };
        let cases = [
            ("before expiry", Some(&info), "2025-01-01T00:04:59Z", false),
            ("at expiry", Some(&info), "2025-01-01T00:05:00Z", true),
            ("after expiry", Some(&info), "2025-01-01T01:00:00Z", true),
            ("unreadable", None, "2025-01-01T00:00:00Z", true),
        ];
        for (name, info, now, stale) in cases {
            assert_eq!(is_stale(info, at(now)), stale, "{name}");
        }
    }

    #[tokio::test]
    async fn a_second_writer_is_refused_while_the_first_holds_the_lock() {
        let store = Store::memory();
        let first = acquire(&store, "snapshot", DEFAULT_TTL).await.unwrap();
        let err = acquire(&store, "prune", DEFAULT_TTL).await.unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(err.to_string().contains("coldstart snapshots unlock"));
        first.release().await.unwrap();
        acquire(&store, "prune", DEFAULT_TTL).await.unwrap();
    }

    #[tokio::test]
    async fn a_stale_lock_left_by_a_crashed_writer_is_taken_over() {
        let store = Store::memory();
        let crashed = acquire(&store, "snapshot", Duration::from_millis(1))
            .await
            .unwrap();
        std::mem::drop(crashed);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let next = acquire(&store, "snapshot", DEFAULT_TTL).await.unwrap();
        assert_eq!(next.info().purpose, "snapshot");
    }
}
