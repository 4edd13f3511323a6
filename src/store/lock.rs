//! The single-writer lock: one snapshot or prune at a time per store.
//!
//! The lock is a sequence of generations, `locks/writers/<n>`; the highest one present is
//! the lock. Each generation is written with a conditional create, so of two writers that
//! both find the lock free, or both find its holder dead, exactly one creates the next
//! generation: a takeover is one atomic step, never delete-then-create. This needs only
//! `PutMode::Create`, which every backend coldstart opens supports (local files, memory,
//! S3 and S3-compatible stores, Azure, GCS); `PutMode::Update` is not offered by the local
//! file store, so the design does not rely on it.
//!
//! Liveness: the holder renews its generation every third of the TTL, and a generation
//! whose last renewal is older than the TTL belongs to a writer that died: the next writer
//! takes over. Before committing (a manifest), the holder checks it still holds the lock
//! ([`WriterLock::ensure_held`]): a writer that was paused past its TTL and taken over
//! stops instead of writing next to the new holder.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Created, Store, StoreError, layout};

/// How long a lock stays valid without a renewal. Renewed every 10 s, so a slow store or a
/// paused process has two renewals of slack; a writer that died blocks the next one for at
/// most 30 s, not a scheduled run.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// Why the lock could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "failed to take the snapshot store's writer lock: {holder} holds it for {purpose} since {acquired} (renewed until {expires}); wait for it to finish, or if that process is gone run `coldstart snapshots unlock`"
    )]
    Held {
        holder: String,
        purpose: String,
        acquired: DateTime<Utc>,
        expires: DateTime<Utc>,
    },
    #[error(
        "failed to keep the snapshot store's writer lock: it was taken over by {holder} (this process stopped renewing it for longer than its TTL); nothing was committed, run again"
    )]
    Lost { holder: String },
    #[error("failed to take the snapshot store's writer lock: {0}")]
    Store(#[from] StoreError),
}

/// What a lock generation records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockInfo {
    /// Host and process id of the holder, plus a random token that tells two holders apart.
    pub holder: String,
    pub purpose: String,
    pub acquired: DateTime<Utc>,
    /// Last renewal plus the TTL.
    pub expires: DateTime<Utc>,
    /// Its holder let it go when done (expired at that moment). Absent in locks written
    /// before the field existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

/// A lock is stale once its last renewal is older than its TTL; an unreadable lock is
/// stale too (a writer that died while writing it).
pub fn is_stale(info: Option<&LockInfo>, now: DateTime<Utc>) -> bool {
    info.is_none_or(|i| i.expires <= now)
}

/// A held lock. Renewed in the background until released or dropped.
#[derive(Debug)]
pub struct WriterLock {
    store: Store,
    generation: u64,
    info: LockInfo,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
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
    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30))
}

/// The generations present, highest last.
async fn generations(store: &Store) -> Result<Vec<u64>, StoreError> {
    let mut gens: Vec<u64> = store
        .list(layout::WRITER_LOCK)
        .await?
        .iter()
        .filter_map(|l| layout::name_of(&l.key).parse().ok())
        .collect();
    gens.sort_unstable();
    Ok(gens)
}

async fn read(store: &Store, generation: u64) -> Result<Option<LockInfo>, StoreError> {
    Ok(store
        .get_opt(&layout::writer_lock(generation))
        .await?
        .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok()))
}

/// The current lock: its generation and what it records (None: unreadable), if any.
async fn current(store: &Store) -> Result<Option<(u64, Option<LockInfo>)>, StoreError> {
    let Some(&top) = generations(store).await?.last() else {
        return Ok(None);
    };
    Ok(Some((top, read(store, top).await?)))
}

fn held(c: LockInfo) -> LockError {
    LockError::Held {
        holder: c.holder,
        purpose: c.purpose,
        acquired: c.acquired,
        expires: c.expires,
    }
}

/// Take the store's writer lock for `purpose`, taking over a stale one.
pub async fn acquire(store: &Store, purpose: &str, ttl: Duration) -> Result<WriterLock, LockError> {
    let now = Utc::now();
    let mut info = LockInfo {
        holder: holder(),
        purpose: purpose.to_owned(),
        acquired: now,
        expires: now + ttl_chrono(ttl),
        released: false,
    };
    let next = match current(store).await? {
        None => 1,
        Some((_, Some(c))) if !is_stale(Some(&c), Utc::now()) => return Err(held(c)),
        Some((top, c)) => {
            // A lock its holder released is the normal case; only one left to expire says
            // a writer died (or was paused past its TTL).
            if c.as_ref().is_some_and(|c| c.released) {
                tracing::debug!(previous = ?c, "taking the writer lock its previous holder released");
            } else {
                tracing::warn!(previous = ?c, "taking over a stale writer lock (its holder stopped renewing it)");
            }
            top + 1
        }
    };
    info.expires = Utc::now() + ttl_chrono(ttl);
    if store
        .create(&layout::writer_lock(next), encode(&info))
        .await?
        == Created::AlreadyExists
    {
        // Another writer created this generation first: it holds the lock.
        let winner = read(store, next).await?.unwrap_or_else(|| info.clone());
        return Err(held(winner));
    }
    // Older generations are history now; removing them keeps listings short.
    // Keep the generation just below ours: a LIST racing with this cleanup may miss the
    // entries being removed and the one just created, but never that unchanged one, so a
    // racing taker's next generation is at least ours and its create collides with ours.
    for g in generations(store)
        .await?
        .into_iter()
        .filter(|g| g + 1 < next)
    {
        if let Err(e) = store.delete(&layout::writer_lock(g)).await {
            tracing::debug!(error = %e, generation = g, "failed to remove an old lock generation");
        }
    }
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = tokio::spawn(renew(store.clone(), next, info.clone(), ttl, lost.clone()));
    Ok(WriterLock {
        store: store.clone(),
        generation: next,
        info,
        lost,
        renewer,
    })
}

/// Whether `generation` is still the lock and ours: no higher generation exists and ours
/// still names us.
async fn still_ours(store: &Store, generation: u64, holder: &str) -> Result<bool, StoreError> {
    let top = generations(store).await?.last().copied();
    if top != Some(generation) {
        return Ok(false);
    }
    Ok(read(store, generation)
        .await?
        .is_some_and(|c| c.holder == holder))
}

async fn renew(
    store: Store,
    generation: u64,
    mut info: LockInfo,
    ttl: Duration,
    lost: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        // Only renew a lock that is still ours: one taken over while this process was
        // paused must not be overwritten.
        match still_ours(&store, generation, &info.holder).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!("the writer lock was taken over by another process");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to check the writer lock; retrying at the next renewal");
                continue;
            }
        }
        info.expires = Utc::now() + ttl_chrono(ttl);
        if let Err(e) = store
            .put(&layout::writer_lock(generation), encode(&info))
            .await
        {
            tracing::warn!(error = %e, "failed to renew the writer lock");
        }
    }
}

impl WriterLock {
    /// Who holds the lock (this process).
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Fail with [`LockError::Lost`] unless this process still holds the lock: called
    /// before committing, so a writer taken over while paused commits nothing.
    pub async fn ensure_held(&self) -> Result<(), LockError> {
        if !self.lost.load(Ordering::SeqCst)
            && still_ours(&self.store, self.generation, &self.info.holder).await?
        {
            return Ok(());
        }
        self.lost.store(true, Ordering::SeqCst);
        let holder = current(&self.store)
            .await?
            .and_then(|(_, c)| c)
            .map(|c| c.holder)
            .unwrap_or_else(|| "nobody (it was removed)".to_owned());
        Err(LockError::Lost { holder })
    }

    /// Release the lock (only if it is still ours).
    pub async fn release(self) -> Result<(), StoreError> {
        self.renewer.abort();
        // Released by expiring it, not deleting it: generation numbers only grow, so a
        // taker whose LIST misses a concurrent change can never create a generation that
        // existed before (which a deletion would allow).
        if still_ours(&self.store, self.generation, &self.info.holder).await? {
            let mut info = self.info.clone();
            info.expires = Utc::now();
            info.released = true;
            self.store
                .put(&layout::writer_lock(self.generation), encode(&info))
                .await?;
        }
        Ok(())
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Fail with [`LockError::Held`] if a live writer holds the lock now (a check before a
/// caller commits to work that ends in a snapshot; it does not take the lock).
pub async fn check_free(store: &Store) -> Result<(), LockError> {
    match current(store).await? {
        Some((_, Some(c))) if !is_stale(Some(&c), Utc::now()) => Err(held(c)),
        _ => Ok(()),
    }
}

/// Remove the lock whoever holds it (`coldstart snapshots unlock`); returns what it held.
pub async fn force_unlock(store: &Store) -> Result<Option<LockInfo>, StoreError> {
    let held = current(store).await?.and_then(|(_, c)| c);
    for g in generations(store).await? {
        store.delete(&layout::writer_lock(g)).await?;
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_lock_is_stale_once_its_last_renewal_is_older_than_its_ttl_or_it_cannot_be_read() {
        let info = LockInfo {
            holder: "h".into(),
            purpose: "snapshot".into(),
            acquired: at("2025-01-01T00:00:00Z"),
            expires: at("2025-01-01T00:00:30Z"),
            released: false,
        };
        let cases = [
            ("before expiry", Some(&info), "2025-01-01T00:00:29Z", false),
            ("at expiry", Some(&info), "2025-01-01T00:00:30Z", true),
            ("after expiry", Some(&info), "2025-01-01T01:00:00Z", true),
            ("unreadable", None, "2025-01-01T00:00:00Z", true),
        ];
        for (name, info, now, stale) in cases {
            assert_eq!(is_stale(info, at(now)), stale, "{name}");
        }
    }

    #[tokio::test]
    async fn a_released_lock_says_so_and_the_next_writer_takes_it_at_once() {
        let store = Store::memory();
        let first = acquire(&store, "snapshot", DEFAULT_TTL).await.unwrap();
        first.release().await.unwrap();
        let (_, left) = current(&store).await.unwrap().expect("a generation");
        assert!(left.expect("readable").released, "marked released");
        let second = acquire(&store, "snapshot", DEFAULT_TTL).await.unwrap();
        assert!(!second.info().released);
        second.release().await.unwrap();
    }

    #[test]
    fn a_dead_writer_blocks_the_next_one_for_at_most_half_a_minute() {
        assert!(DEFAULT_TTL <= Duration::from_secs(30), "{DEFAULT_TTL:?}");
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
    async fn a_live_writer_keeps_its_lock_by_renewing_it_past_its_ttl() {
        let store = Store::memory();
        let ttl = Duration::from_millis(150);
        let first = acquire(&store, "snapshot", ttl).await.unwrap();
        tokio::time::sleep(ttl * 4).await;
        let err = acquire(&store, "snapshot", ttl).await.unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        first.ensure_held().await.unwrap();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_many_writers_taking_over_a_stale_lock_at_once_exactly_one_wins() {
        for trial in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
            let crashed = acquire(&store, "snapshot", Duration::from_millis(1))
                .await
                .unwrap();
            std::mem::drop(crashed);
            tokio::time::sleep(Duration::from_millis(5)).await;
            let takers: Vec<_> = (0..8)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move { acquire(&store, "snapshot", DEFAULT_TTL).await })
                })
                .collect();
            let mut won = Vec::new();
            for t in takers {
                if let Ok(lock) = t.await.unwrap() {
                    won.push(lock);
                }
            }
            assert_eq!(
                won.len(),
                1,
                "trial {trial}: exactly one writer holds the lock"
            );
        }
    }

    #[tokio::test]
    async fn a_writer_taken_over_while_paused_learns_it_before_committing() {
        let store = Store::memory();
        let ttl = Duration::from_millis(300);
        let paused = acquire(&store, "snapshot", ttl).await.unwrap();
        // The pause: its renewals stop, its lock goes stale, another writer takes over.
        paused.renewer.abort();
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        let next = acquire(&store, "snapshot", DEFAULT_TTL).await.unwrap();
        let err = paused.ensure_held().await.unwrap_err();
        assert!(
            matches!(&err, LockError::Lost { holder } if *holder == next.info().holder),
            "{err}"
        );
        paused.release().await.unwrap();
        next.ensure_held().await.unwrap();
    }
}
