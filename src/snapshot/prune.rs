//! Retention and garbage collection. Which snapshots to keep is a pure function of their
//! times, the policy and the clock ([`keep`]); which stored objects are garbage is a pure
//! function of what the kept manifests reference ([`garbage`]). [`prune`] applies both under
//! the writer lock, so a concurrent snapshot never loses a pack it is about to reference;
//! unreferenced objects younger than a grace period are left alone as well, in case a
//! writer whose lock was taken over as stale is still running.
//!
//! Order of deletions, so a crash at any point leaves a consistent store: forgotten
//! manifests first (their snapshots disappear), then the cloud snapshots of volumes only
//! they named ([`cloud_garbage`]; a crash leaves them behind, tagged with the cluster
//! snapshot's id, never a kept snapshot pointing at a deleted one), then a rewritten
//! index without the doomed packs, then the old indexes, then the packs.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Datelike as _, Utc};

use super::StoreKeyError;
use super::crypto::{Keys, Role};
use super::format::{self, FORMAT_VERSION, Index};
use super::read::{self, ReadError};
use crate::cloud::snapshots::DiskSnapshots;
use crate::store::lock::{self, LockError};
use crate::store::{Listed, Store, StoreError, layout};

/// Why pruning failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Config(#[from] StoreKeyError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "failed to prune: the policy keeps nothing; give at least one of --keep-last, --keep-daily, --keep-weekly"
    )]
    EmptyPolicy,
    #[error(transparent)]
    CloudSnapshot(#[from] crate::cloud::snapshots::SnapshotError),
}

/// How many snapshots to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// The newest N.
    pub keep_last: usize,
    /// The newest of each of the last N days that have a snapshot.
    pub keep_daily: usize,
    /// The newest of each of the last N ISO weeks that have a snapshot.
    pub keep_weekly: usize,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0 && self.keep_daily == 0 && self.keep_weekly == 0
    }
}

/// The ids to keep, given (id, time) of every snapshot. `now` only bounds the future:
/// snapshots dated after it (clock skew) are always kept.
pub fn keep(
    snapshots: &[(String, DateTime<Utc>)],
    policy: Policy,
    now: DateTime<Utc>,
) -> BTreeSet<String> {
    let mut newest_first: Vec<&(String, DateTime<Utc>)> = snapshots.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut kept: BTreeSet<String> = newest_first
        .iter()
        .filter(|(_, t)| *t > now)
        .map(|(id, _)| id.clone())
        .collect();
    kept.extend(
        newest_first
            .iter()
            .take(policy.keep_last)
            .map(|(id, _)| id.clone()),
    );
    let mut bucketed = |n: usize, bucket: &dyn Fn(&DateTime<Utc>) -> (i32, u32)| {
        let mut seen = Vec::new();
        for (id, t) in &newest_first {
            let b = bucket(t);
            if seen.contains(&b) {
                continue;
            }
            if seen.len() == n {
                break;
            }
            seen.push(b);
            kept.insert(id.clone());
        }
    };
    bucketed(policy.keep_daily, &|t| (t.year(), t.ordinal()));
    bucketed(policy.keep_weekly, &|t| {
        let w = t.iso_week();
        (w.year(), w.week())
    });
    kept
}

/// Stored objects no kept snapshot needs and old enough to delete.
pub fn garbage<'a>(
    stored: &'a [Listed],
    referenced: &HashSet<&str>,
    grace: Duration,
    now: DateTime<Utc>,
) -> Vec<&'a Listed> {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::hours(1));
    stored
        .iter()
        .filter(|l| !referenced.contains(layout::name_of(&l.key)) && l.modified + grace <= now)
        .collect()
}

/// Cloud snapshots the forgotten manifests name and no kept one does (pure).
pub fn cloud_garbage(manifests: &[format::Manifest], kept: &BTreeSet<String>) -> Vec<String> {
    let ids = |keep: bool| -> BTreeSet<String> {
        manifests
            .iter()
            .filter(|m| kept.contains(&m.id) == keep)
            .flat_map(|m| m.bindings.volumes.iter())
            .filter_map(|v| v.cloud_snapshot.as_ref().map(|c| c.id.clone()))
            .collect()
    };
    let still = ids(true);
    ids(false)
        .into_iter()
        .filter(|id| !still.contains(id))
        .collect()
}

/// What `prune` did (or would do, with `dry_run`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub kept: Vec<String>,
    pub forgotten: Vec<String>,
    pub packs_deleted: usize,
    pub bytes_freed: u64,
    /// Cloud snapshots of volumes deleted with the snapshots that named them.
    pub cloud_snapshots_deleted: Vec<String>,
    /// Cloud snapshots that should go but were left: no cloud to delete them with.
    pub cloud_snapshots_left: Vec<String>,
}

/// Forget snapshots the policy does not keep and delete data no kept snapshot references,
/// including the cloud snapshots only they named (through `cloud`; without one they are
/// reported as left).
pub async fn prune(
    store: &Store,
    keys: &Keys,
    policy: Policy,
    grace: Duration,
    dry_run: bool,
    cloud: Option<&dyn DiskSnapshots>,
) -> Result<Report, PruneError> {
    if policy.is_empty() {
        return Err(PruneError::EmptyPolicy);
    }
    let lock = lock::acquire(store, "prune", lock::DEFAULT_TTL).await?;
    let result = prune_locked(store, keys, policy, grace, dry_run, cloud, &lock).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "failed to release the writer lock");
    }
    result
}

async fn prune_locked(
    store: &Store,
    keys: &Keys,
    policy: Policy,
    grace: Duration,
    dry_run: bool,
    cloud: Option<&dyn DiskSnapshots>,
    lock: &lock::WriterLock,
) -> Result<Report, PruneError> {
    let now = Utc::now();
    let manifests = read::list(store, keys).await?;
    let times: Vec<(String, DateTime<Utc>)> = manifests
        .iter()
        .map(|m| (m.id.clone(), m.started_at))
        .collect();
    let kept = keep(&times, policy, now);
    let mut report = Report {
        kept: kept.iter().cloned().collect(),
        forgotten: times
            .iter()
            .filter(|(id, _)| !kept.contains(id))
            .map(|(id, _)| id.clone())
            .collect(),
        ..Default::default()
    };
    let referenced: HashSet<&str> = manifests
        .iter()
        .filter(|m| kept.contains(&m.id))
        .flat_map(|m| m.packs.iter().map(String::as_str))
        .collect();
    let packs = store.list(layout::PACKS).await?;
    let doomed: Vec<&Listed> = garbage(&packs, &referenced, grace, now);
    report.packs_deleted = doomed.len();
    report.bytes_freed = doomed.iter().map(|l| l.size).sum();
    let cloud_doomed = cloud_garbage(&manifests, &kept);
    if dry_run {
        report.cloud_snapshots_deleted = cloud_doomed;
        return Ok(report);
    }
    lock.ensure_held().await?;
    for id in &report.forgotten {
        store.delete(&layout::manifest(id)).await?;
    }
    match cloud {
        Some(cloud) => {
            for id in cloud_doomed {
                cloud.delete(&id).await?;
                report.cloud_snapshots_deleted.push(id);
            }
        }
        None => report.cloud_snapshots_left = cloud_doomed,
    }
    let doomed_ids: HashSet<&str> = doomed.iter().map(|l| layout::name_of(&l.key)).collect();
    let indexes = read::load_indexes(store, keys).await?;
    let touched: Vec<&(String, Index)> = indexes
        .iter()
        .filter(|(_, idx)| idx.packs.iter().any(|p| doomed_ids.contains(p.id.as_str())))
        .collect();
    if !touched.is_empty() {
        let merged = Index {
            format: FORMAT_VERSION,
            packs: touched
                .iter()
                .flat_map(|(_, idx)| idx.packs.iter())
                .filter(|p| !doomed_ids.contains(p.id.as_str()))
                .cloned()
                .collect(),
        };
        if !merged.packs.is_empty() {
            let sealed = format::encode_json(keys, Role::Index, &merged);
            let hash = format::stored_hash(&sealed);
            store
                .put(&layout::index(&hash), Bytes::from(sealed))
                .await?;
        }
        for (name, _) in &touched {
            store.delete(&layout::index(name)).await?;
        }
    }
    for l in doomed {
        store.delete(&l.key).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn snaps(times: &[&str]) -> Vec<(String, DateTime<Utc>)> {
        times.iter().map(|t| ((*t).to_owned(), at(t))).collect()
    }

    #[test]
    fn retention_keeps_the_newest_per_rule() {
        let all = snaps(&[
            "2025-03-01T01:00:00Z",
            "2025-03-01T13:00:00Z",
            "2025-03-02T01:00:00Z",
            "2025-03-02T13:00:00Z",
            "2025-03-03T13:00:00Z",
            "2025-03-10T13:00:00Z",
            "2025-03-17T13:00:00Z",
        ]);
        let now = at("2025-03-18T00:00:00Z");
        let p = |l, d, w| Policy {
            keep_last: l,
            keep_daily: d,
            keep_weekly: w,
        };
        let cases: [(&str, Policy, &[&str]); 5] = [
            (
                "keep last 2",
                p(2, 0, 0),
                &["2025-03-10T13:00:00Z", "2025-03-17T13:00:00Z"],
            ),
            (
                "keep daily 3: newest of each of the last 3 days with snapshots",
                p(0, 3, 0),
                &[
                    "2025-03-03T13:00:00Z",
                    "2025-03-10T13:00:00Z",
                    "2025-03-17T13:00:00Z",
                ],
            ),
            (
                "keep daily 5 reaches back over a missed day",
                p(0, 5, 0),
                &[
                    "2025-03-01T13:00:00Z",
                    "2025-03-02T13:00:00Z",
                    "2025-03-03T13:00:00Z",
                    "2025-03-10T13:00:00Z",
                    "2025-03-17T13:00:00Z",
                ],
            ),
            (
                "keep weekly 2 (ISO weeks start on Monday)",
                p(0, 0, 2),
                &["2025-03-10T13:00:00Z", "2025-03-17T13:00:00Z"],
            ),
            (
                "rules add up (2025-03-03 is the newest of its Monday-to-Sunday week)",
                p(1, 0, 3),
                &[
                    "2025-03-03T13:00:00Z",
                    "2025-03-10T13:00:00Z",
                    "2025-03-17T13:00:00Z",
                ],
            ),
        ];
        for (name, policy, want) in cases {
            let got = keep(&all, policy, now);
            let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn snapshots_from_the_future_are_always_kept() {
        let all = snaps(&["2025-03-01T00:00:00Z", "2030-01-01T00:00:00Z"]);
        let got = keep(
            &all,
            Policy {
                keep_last: 1,
                ..Default::default()
            },
            at("2025-03-02T00:00:00Z"),
        );
        assert!(got.contains("2030-01-01T00:00:00Z"));
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn garbage_is_unreferenced_and_older_than_the_grace_period() {
        let now = at("2025-03-01T12:00:00Z");
        let l = |k: &str, t: &str| Listed {
            key: k.to_owned(),
            size: 1,
            modified: at(t),
        };
        let stored = vec![
            l("packs/aa/aa1", "2025-03-01T00:00:00Z"),
            l("packs/bb/bb1", "2025-03-01T00:00:00Z"),
            l("packs/cc/cc1", "2025-03-01T11:59:00Z"),
        ];
        let referenced: HashSet<&str> = ["aa1"].into_iter().collect();
        let got: Vec<&str> = garbage(&stored, &referenced, Duration::from_secs(3600), now)
            .into_iter()
            .map(|l| l.key.as_str())
            .collect();
        assert_eq!(got, ["packs/bb/bb1"], "referenced and too-young packs stay");
    }
}
