//! What the status page, the JSON API and `/metrics` show: plain serializable data the
//! service loop fills in. Nothing here can carry a secret value: there is no field for one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Everything a replica knows about its cluster's recoverability.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceView {
    pub cluster: ClusterView,
    pub replica: ReplicaView,
    pub ready: Readiness,
    /// Maximum acceptable age of the last good snapshot.
    pub rpo_target_seconds: u64,
    /// Newest first.
    pub snapshots: Vec<SnapshotRow>,
    pub schedules: Vec<ScheduleRow>,
    pub bindings: Vec<BindingRow>,
    pub audit: AuditView,
    /// Newest first.
    pub drills: Vec<DrillRow>,
    /// The job running now, if any (its detailed progress is in `Progress`).
    pub running: Option<RunningJob>,
    /// Recent job outcomes, newest first, bounded.
    pub events: Vec<Event>,
}

/// A cluster is identified by its kube-system namespace UID; a recreated cluster has a new
/// one, which is how a cold start shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterView {
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaView {
    /// This replica (the pod name).
    pub identity: String,
    /// This replica runs the jobs.
    pub leading: bool,
    /// The leader as last seen on the Lease.
    pub leader: Option<String>,
}

/// `/readyz`: false until a cold-start restore is verified (or no restore was needed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotRow {
    pub id: String,
    pub taken_at: DateTime<Utc>,
    pub objects: u64,
    /// Logical size of the snapshot.
    pub bytes_total: u64,
    /// Bytes this snapshot added to the store (incremental).
    pub bytes_written: u64,
    pub duration_ms: u64,
    /// The manifest was written: the snapshot is whole.
    pub complete: bool,
    /// Read back and checked (hashes, decryption).
    pub verified: bool,
    /// `schedule`, `manual`, `stop` …
    pub trigger: String,
}

impl SnapshotRow {
    /// A snapshot one can restore from.
    pub fn is_good(&self) -> bool {
        self.complete
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScheduleRow {
    /// `snapshot`, `drill`, `audit`.
    pub job: String,
    pub cron: String,
    pub time_zone: String,
    pub last_run: Option<DateTime<Utc>>,
    pub next_run: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum BindingKind {
    /// PersistentVolume → cloud disk.
    Volume,
    /// LoadBalancer Service → IP and DNS names.
    Address,
    /// Bucket claim → bucket.
    Bucket,
}

impl BindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::Volume => "volume",
            BindingKind::Address => "address",
            BindingKind::Bucket => "bucket",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum BindingState {
    /// The cloud resource exists and is what the binding says.
    Ok,
    /// The cloud resource is gone.
    Missing,
    /// Not checked (yet, or cannot be from here).
    Unverified,
}

impl BindingState {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingState::Ok => "ok",
            BindingState::Missing => "missing",
            BindingState::Unverified => "unverified",
        }
    }
}

/// One binding: a Kubernetes object and the cloud resource behind it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BindingRow {
    pub kind: BindingKind,
    /// e.g. `PersistentVolume pvc-1234` or `Service ingress/public`.
    pub object: String,
    /// Disk id, `IP (host, host)`, or bucket name.
    pub target: String,
    pub verification: BindingState,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum FindingLevel {
    Critical,
    Warning,
    Info,
}

impl FindingLevel {
    pub const ALL: [FindingLevel; 3] = [
        FindingLevel::Critical,
        FindingLevel::Warning,
        FindingLevel::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingLevel::Critical => "critical",
            FindingLevel::Warning => "warning",
            FindingLevel::Info => "info",
        }
    }
}

/// "What would be lost if this cluster were deleted now."
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FindingRow {
    pub severity: FindingLevel,
    /// e.g. `delete-reclaim-policy`, `unpinned-address`, `bucket-deleted-with-claim`.
    pub kind: String,
    pub object: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditView {
    pub at: Option<DateTime<Utc>>,
    pub findings: Vec<FindingRow>,
}

/// A restore drill: restore into a scratch cluster, verify, measure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DrillRow {
    pub id: String,
    pub at: DateTime<Utc>,
    pub snapshot_id: String,
    /// Wall time of the restore up to verified.
    pub rto_ms: u64,
    /// Age of the snapshot restored.
    pub rpo_s: u64,
    /// Hydration still ahead of the disks restored from cloud snapshots when the restore
    /// was verified: the RTO until every disk runs at full speed is `rto_ms` plus this.
    #[serde(default)]
    pub hydration_ms: u64,
    pub passed: bool,
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunningJob {
    pub job: String,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Stopped before it finished (shutdown, lost leadership); nothing half-done is visible.
    Abandoned,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub job: String,
    pub outcome: Outcome,
    pub message: String,
}

/// RPO traffic light.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RpoLevel {
    /// Last good snapshot younger than the target.
    Green,
    /// Older than the target, younger than twice the target.
    Amber,
    /// Older than twice the target, or no good snapshot at all.
    Red,
}

impl RpoLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RpoLevel::Green => "green",
            RpoLevel::Amber => "amber",
            RpoLevel::Red => "red",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RpoStatus {
    pub target_seconds: u64,
    /// Age of the last good snapshot; None if there is none.
    pub age_seconds: Option<u64>,
    pub level: RpoLevel,
    pub last_good: Option<String>,
}

/// How many events the page keeps.
pub const MAX_EVENTS: usize = 50;

impl ServiceView {
    /// The newest snapshot one can restore from.
    pub fn last_good_snapshot(&self) -> Option<&SnapshotRow> {
        self.snapshots
            .iter()
            .filter(|s| s.is_good())
            .max_by_key(|s| s.taken_at)
    }

    /// RPO now: the age of the last good snapshot against the target.
    pub fn rpo(&self, now: DateTime<Utc>) -> RpoStatus {
        let last = self.last_good_snapshot();
        let age = last.map(|s| u64::try_from((now - s.taken_at).num_seconds().max(0)).unwrap_or(0));
        let t = self.rpo_target_seconds;
        let level = match age {
            Some(a) if a <= t => RpoLevel::Green,
            Some(a) if a <= t.saturating_mul(2) => RpoLevel::Amber,
            _ => RpoLevel::Red,
        };
        RpoStatus {
            target_seconds: t,
            age_seconds: age,
            level,
            last_good: last.map(|s| s.id.clone()),
        }
    }

    pub fn push_event(&mut self, event: Event) {
        self.events.insert(0, event);
        self.events.truncate(MAX_EVENTS);
    }

    /// Findings per severity, every severity present.
    pub fn findings_by_severity(&self) -> Vec<(FindingLevel, usize)> {
        FindingLevel::ALL
            .iter()
            .map(|s| {
                (
                    *s,
                    self.audit
                        .findings
                        .iter()
                        .filter(|f| f.severity == *s)
                        .count(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, at: &str, complete: bool) -> SnapshotRow {
        SnapshotRow {
            id: id.to_owned(),
            taken_at: DateTime::parse_from_rfc3339(at)
                .expect("time")
                .with_timezone(&Utc),
            objects: 1,
            bytes_total: 1,
            bytes_written: 1,
            duration_ms: 1,
            complete,
            verified: complete,
            trigger: "schedule".to_owned(),
        }
    }

    #[test]
    fn rpo_is_green_within_target_amber_within_twice_and_red_beyond() {
        let now = DateTime::parse_from_rfc3339("2025-01-10T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let mut v = ServiceView {
            rpo_target_seconds: 900,
            ..Default::default()
        };
        assert_eq!(v.rpo(now).level, RpoLevel::Red, "no snapshot at all is red");
        v.snapshots = vec![snap("s1", "2025-01-10T11:50:00Z", true)];
        assert_eq!(v.rpo(now).level, RpoLevel::Green);
        assert_eq!(v.rpo(now).age_seconds, Some(600));
        v.snapshots = vec![snap("s1", "2025-01-10T11:40:00Z", true)];
        assert_eq!(v.rpo(now).level, RpoLevel::Amber);
        v.snapshots = vec![
            snap("s2", "2025-01-10T11:59:00Z", false),
            snap("s1", "2025-01-10T11:20:00Z", true),
        ];
        let rpo = v.rpo(now);
        assert_eq!(
            rpo.level,
            RpoLevel::Red,
            "an incomplete snapshot does not count"
        );
        assert_eq!(rpo.last_good.as_deref(), Some("s1"));
    }
}
