//! The long-running service behind `coldstart serve`.
//!
//! ```text
//!  Lease election ─▶ leading? ─no─▶ follow: mirror readiness from the Lease, refresh the
//!        │                           inventory for the page now and then
//!       yes
//!        ▼
//!  cold-start check (once; restores if configured) ─▶ ready ─▶ every tick:
//!        manual action queued?  or  scheduler says a job is due (pure `next_due`)
//!        ─▶ run ONE job at a time through `Jobs` ─▶ update ServiceView + metrics
//! ```
//!
//! The work itself (snapshot, prune, drill, audit, restore) sits behind the [`Jobs`] trait,
//! so this loop is tested with a fake and the real implementation plugs in unchanged.
//!
//! Nothing is scheduled until the cold-start question is settled: snapshotting a freshly
//! recreated, empty cluster and then pruning by retention would push the last good
//! snapshots out of the store.
//!
//! Shutdown (SIGTERM): the job in progress gets `shutdown_grace` to finish, then it is
//! dropped. Snapshots write their manifest last, so an abandoned one is never seen as
//! complete; the event list records it as abandoned. Losing the lease abandons a job the
//! same way, before another replica can start one.

pub mod jobs;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Retention, Settings};
use crate::schedule::leader::LeaderState;
use crate::schedule::{Decision, JobState, Schedule, next_due};
use crate::web::view::{
    AuditView, BindingRow, ClusterView, DrillRow, Event, FindingRow, Outcome, Readiness,
    RunningJob, ScheduleRow, SnapshotRow,
};
use crate::web::{Action, AppState};

/// What the store already holds, for the page and to seed the schedules.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    pub snapshots: Vec<SnapshotRow>,
    pub drills: Vec<DrillRow>,
    pub bindings: Vec<BindingRow>,
}

/// The result of an audit: findings, and the bindings with their verification state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    pub findings: Vec<FindingRow>,
    pub bindings: Vec<BindingRow>,
}

/// What retention removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Ids of the snapshots deleted.
    pub deleted: Vec<String>,
    pub bytes_freed: u64,
}

/// The answer of the cold-start check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ColdStart {
    /// The cluster holds its state: nothing to restore.
    Warm,
    /// A cold start was detected and the latest snapshot restored.
    Restored {
        snapshot_id: String,
        verified: bool,
        message: String,
    },
    /// A cold start was detected and auto-restore is off: someone must run the restore.
    NeedsRestore { message: String },
}

/// Why a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Schedule,
    Manual,
    Startup,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Startup => "startup",
        }
    }
}

/// Why a job failed. Each variant is the step that failed, with its module's typed error;
/// the loop shows it on the page and in the logs, and the web layer alone decides what
/// HTTP makes of it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("failed to {what}: {source}")]
    Cluster {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Read(#[from] crate::snapshot::read::ReadError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::write::WriteError),
    #[error(transparent)]
    Prune(#[from] crate::snapshot::prune::PruneError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Drill(#[from] crate::drill::DrillError),
    #[error(transparent)]
    Restore(#[from] crate::restore::RestoreError),
    #[error(transparent)]
    Cloud(#[from] crate::cloud::VerifierError),
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::LifecycleError),
    #[error("no snapshot of this cluster to drill yet")]
    NoSnapshot,
    #[error(
        "failed to restore: no snapshot of {cluster} in {store} is whole (see `coldstart snapshots list`)"
    )]
    NoWholeSnapshot { cluster: String, store: String },
}

/// The work the service schedules, each returning its typed [`JobError`].
///
/// Each method may take long; the service runs one at a time and may drop the future
/// (shutdown, lost leadership), so implementations must leave nothing half-visible.
pub trait Jobs: Send + Sync + 'static {
    /// Name (from the cluster, if it has one) and kube-system UID.
    fn cluster_identity(&self) -> impl Future<Output = Result<ClusterView, JobError>> + Send;
    /// Snapshots, drills and bindings already recorded in the store.
    fn inventory(&self) -> impl Future<Output = Result<Inventory, JobError>> + Send;
    /// Take a snapshot; the row describes it (complete once its manifest is written).
    fn snapshot(
        &self,
        trigger: Trigger,
    ) -> impl Future<Output = Result<SnapshotRow, JobError>> + Send;
    /// Apply retention after a successful snapshot. Must never delete the newest complete
    /// snapshot.
    fn prune(
        &self,
        retention: Retention,
    ) -> impl Future<Output = Result<PruneReport, JobError>> + Send;
    /// Restore the latest snapshot into a scratch target, verify, measure RTO/RPO. Writes
    /// live progress into `progress`.
    fn drill(
        &self,
        progress: Arc<std::sync::Mutex<crate::progress::Progress>>,
    ) -> impl Future<Output = Result<DrillRow, JobError>> + Send;
    /// What would be lost if the cluster were deleted now, and the bindings' state.
    fn audit(&self) -> impl Future<Output = Result<AuditReport, JobError>> + Send;
    /// Is this a cold start? If so and `auto_restore`, restore (writing `progress`).
    fn cold_start_check(
        &self,
        auto_restore: bool,
        progress: Arc<std::sync::Mutex<crate::progress::Progress>>,
    ) -> impl Future<Output = Result<ColdStart, JobError>> + Send;
}

/// The service's own settings (a subset of [`Settings`] plus timing).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// This replica's identity (pod name).
    pub identity: String,
    pub cluster_name: Option<String>,
    pub snapshot: Schedule,
    pub drill: Option<Schedule>,
    pub audit: Option<Schedule>,
    pub retention: Retention,
    pub auto_restore: bool,
    pub rpo_target: Duration,
    pub shutdown_grace: Duration,
    /// How often the loop looks at the clock.
    pub tick: Duration,
    /// How often the inventory is re-read for the page when no job updates it.
    pub inventory_refresh: Duration,
    /// Wait before retrying a failed cold-start check or identity lookup.
    pub retry_after: Duration,
}

/// A second is fine-grained enough for minute-granular cron schedules.
const DEFAULT_TICK: Duration = Duration::from_secs(1);
/// Followers show what the leader wrote within half a minute.
const DEFAULT_INVENTORY_REFRESH: Duration = Duration::from_secs(30);
const DEFAULT_RETRY: Duration = Duration::from_secs(10);

impl ServiceConfig {
    pub fn from_settings(s: &Settings, identity: &str) -> Self {
        ServiceConfig {
            identity: identity.to_owned(),
            cluster_name: s.cluster_name.clone(),
            snapshot: s.snapshot.clone(),
            drill: s.drill.clone(),
            audit: s.audit.clone(),
            retention: s.retention,
            auto_restore: s.auto_restore,
            rpo_target: s.rpo_target,
            shutdown_grace: s.shutdown_grace,
            tick: DEFAULT_TICK,
            inventory_refresh: DEFAULT_INVENTORY_REFRESH,
            retry_after: DEFAULT_RETRY,
        }
    }
}

/// Where the time comes from (tests inject a controllable clock).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// Annotations the leader publishes on the Lease for the followers.
pub const READY_ANNOTATION: &str = "coldstart.dev/ready";
pub const READY_REASON_ANNOTATION: &str = "coldstart.dev/ready-reason";

/// A leadership channel for a single replica without election: always leading.
pub fn sole_leader(identity: &str) -> watch::Receiver<LeaderState> {
    // The sender is dropped: the state never changes, and the loop stops watching.
    let (_tx, rx) = watch::channel(LeaderState {
        leading: true,
        holder: Some(identity.to_owned()),
        annotations: BTreeMap::new(),
    });
    rx
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum JobKind {
    ColdStart,
    Snapshot,
    Audit,
    Drill,
}

impl JobKind {
    fn name(self) -> &'static str {
        match self {
            JobKind::ColdStart => "cold-start",
            JobKind::Snapshot => "snapshot",
            JobKind::Audit => "audit",
            JobKind::Drill => "drill",
        }
    }
}

enum Done {
    Snapshot(Result<(SnapshotRow, Result<PruneReport, JobError>), JobError>),
    Audit(Result<AuditReport, JobError>),
    Drill(Result<DrillRow, JobError>),
    ColdStart(Result<ColdStart, JobError>),
}

struct Running {
    kind: JobKind,
    started: Instant,
    handle: JoinHandle<Done>,
}

/// How the service ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The job that was dropped unfinished at shutdown, if any.
    pub abandoned: Option<String>,
}

/// The service loop.
pub struct Service<J: Jobs> {
    jobs: Arc<J>,
    cfg: ServiceConfig,
    state: AppState,
    clock: Clock,
    publish: watch::Sender<BTreeMap<String, String>>,
    sched: BTreeMap<JobKind, JobState>,
    seeded: bool,
    cold_start_settled: bool,
    retry_at: Option<Instant>,
    identity_known: bool,
    last_inventory: Option<Instant>,
    running: Option<Running>,
}

impl<J: Jobs> Service<J> {
    /// `publish` carries the annotations the leader keeps on its Lease (give its receiver
    /// to the elector).
    pub fn new(
        jobs: Arc<J>,
        cfg: ServiceConfig,
        state: AppState,
        clock: Clock,
        publish: watch::Sender<BTreeMap<String, String>>,
    ) -> Self {
        {
            let mut v = state.view.write().unwrap_or_else(|e| e.into_inner());
            v.rpo_target_seconds = cfg.rpo_target.as_secs();
            v.replica.identity = cfg.identity.clone();
            if let Some(name) = &cfg.cluster_name {
                v.cluster.name = name.clone();
            }
            v.ready = Readiness {
                ready: false,
                reason: "starting: the cold-start check has not run yet".to_owned(),
            };
        }
        Service {
            jobs,
            cfg,
            state,
            clock,
            publish,
            sched: BTreeMap::new(),
            seeded: false,
            cold_start_settled: false,
            retry_at: None,
            identity_known: false,
            last_inventory: None,
            running: None,
        }
    }

    fn edit<R>(&self, f: impl FnOnce(&mut crate::web::view::ServiceView) -> R) -> R {
        let mut v = self.state.view.write().unwrap_or_else(|e| e.into_inner());
        f(&mut v)
    }

    /// Run until `shutdown`; then finish or abandon the job in progress.
    pub async fn run(
        mut self,
        mut leader: watch::Receiver<LeaderState>,
        mut actions: mpsc::Receiver<Action>,
        shutdown: CancellationToken,
    ) -> Stopped {
        let mut watching = true;
        loop {
            let ls = leader.borrow_and_update().clone();
            self.observe_leadership(&ls);
            if !self.identity_known && self.retry_due() {
                self.load_identity().await;
            }
            if self.running.is_none() && self.inventory_due() {
                self.load_inventory().await;
            }
            if ls.leading && self.running.is_none() {
                self.start_next(&mut actions);
            }
            self.show_schedules();

            let tick = tokio::time::sleep(self.cfg.tick);
            match self.running.as_mut() {
                Some(r) => {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        done = &mut r.handle => {
                            let r = self.running.take();
                            self.finish(r, done);
                        }
                        changed = leader.changed(), if watching => watching = changed.is_ok(),
                        () = tick => {}
                    }
                }
                None => {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        changed = leader.changed(), if watching => watching = changed.is_ok(),
                        () = tick => {}
                    }
                }
            }
        }
        self.shut_down().await
    }

    async fn shut_down(mut self) -> Stopped {
        let Some(mut r) = self.running.take() else {
            return Stopped { abandoned: None };
        };
        let name = r.kind.name();
        tracing::info!(job = name, grace = ?self.cfg.shutdown_grace, "shutting down: waiting for the job in progress");
        match tokio::time::timeout(self.cfg.shutdown_grace, &mut r.handle).await {
            Ok(done) => {
                self.finish(Some(r), done);
                Stopped { abandoned: None }
            }
            Err(_) => {
                r.handle.abort();
                self.abandon(
                    r.kind,
                    "shutdown: the grace period ended before the job finished",
                );
                Stopped {
                    abandoned: Some(name.to_owned()),
                }
            }
        }
    }

    fn retry_due(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    fn inventory_due(&self) -> bool {
        self.last_inventory
            .is_none_or(|t| t.elapsed() >= self.cfg.inventory_refresh)
    }

    async fn load_identity(&mut self) {
        match self.jobs.cluster_identity().await {
            Ok(id) => {
                self.identity_known = true;
                let name = self.cfg.cluster_name.clone();
                self.edit(|v| {
                    v.cluster.uid = id.uid;
                    v.cluster.name = name.unwrap_or(id.name);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to read the cluster identity");
                self.retry_at = Some(Instant::now() + self.cfg.retry_after);
            }
        }
    }

    async fn load_inventory(&mut self) {
        self.last_inventory = Some(Instant::now());
        match self.jobs.inventory().await {
            Ok(inv) => {
                if !self.seeded {
                    self.seed(&inv);
                }
                self.edit(|v| {
                    let mut snaps = inv.snapshots;
                    snaps.sort_by_key(|s| std::cmp::Reverse(s.taken_at));
                    v.snapshots = snaps;
                    let mut drills = inv.drills;
                    drills.sort_by_key(|d| std::cmp::Reverse(d.at));
                    v.drills = drills;
                    if !inv.bindings.is_empty() || v.audit.at.is_none() {
                        v.bindings = inv.bindings;
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "failed to read the inventory"),
        }
    }

    /// The schedules start from what the store says ran last. A drill that never ran waits
    /// for its first slot instead of starting with the service: drills are heavy.
    fn seed(&mut self, inv: &Inventory) {
        let now = (self.clock)();
        let last_snapshot = inv
            .snapshots
            .iter()
            .filter(|s| s.is_good())
            .map(|s| s.taken_at)
            .max();
        let last_drill = inv.drills.iter().map(|d| d.at).max().or(Some(now));
        self.sched.insert(
            JobKind::Snapshot,
            JobState {
                last_run: last_snapshot,
                running: false,
            },
        );
        self.sched.insert(
            JobKind::Drill,
            JobState {
                last_run: last_drill,
                running: false,
            },
        );
        self.sched.insert(JobKind::Audit, JobState::default());
        self.seeded = true;
    }

    fn observe_leadership(&mut self, ls: &LeaderState) {
        let was_leading = self.state.view().replica.leading;
        if !was_leading && ls.leading {
            // The previous leader may have run jobs since we last looked: schedule from
            // what the store says now, not from what we saw as a follower.
            self.last_inventory = None;
            self.seeded = false;
        }
        if was_leading && !ls.leading {
            if let Some(r) = self.running.take() {
                r.handle.abort();
                self.abandon(r.kind, "lost leadership: another replica may run jobs now");
            }
            // A new term starts with a fresh look at the store.
            self.last_inventory = None;
            self.seeded = false;
        }
        let annotations = ls.annotations.clone();
        let settled = self.cold_start_settled;
        self.edit(|v| {
            v.replica.leading = ls.leading;
            v.replica.leader = ls.holder.clone();
            if !ls.leading && !settled {
                // Followers answer /readyz as the leader does.
                v.ready = match annotations.get(READY_ANNOTATION).map(String::as_str) {
                    Some("true") => Readiness {
                        ready: true,
                        reason: annotations
                            .get(READY_REASON_ANNOTATION)
                            .cloned()
                            .unwrap_or_default(),
                    },
                    _ => Readiness {
                        ready: false,
                        reason: annotations
                            .get(READY_REASON_ANNOTATION)
                            .cloned()
                            .unwrap_or_else(|| {
                                "waiting for the leader's cold-start check".to_owned()
                            }),
                    },
                };
            }
        });
    }

    fn start_next(&mut self, actions: &mut mpsc::Receiver<Action>) {
        if !self.cold_start_settled {
            if self.retry_due() {
                let jobs = self.jobs.clone();
                let progress = self.state.progress.clone();
                let auto = self.cfg.auto_restore;
                self.spawn(JobKind::ColdStart, Trigger::Startup, async move {
                    Done::ColdStart(jobs.cold_start_check(auto, progress).await)
                });
            }
            return;
        }
        if !self.seeded {
            return;
        }
        if let Ok(action) = actions.try_recv() {
            let kind = match action {
                Action::Snapshot => JobKind::Snapshot,
                Action::Drill => JobKind::Drill,
            };
            self.start(kind, Trigger::Manual);
            return;
        }
        let now = (self.clock)();
        for kind in [JobKind::Snapshot, JobKind::Audit, JobKind::Drill] {
            let Some(schedule) = self.schedule_of(kind) else {
                continue;
            };
            let st = self.sched.get(&kind).copied().unwrap_or_default();
            if let Decision::Run { slot, missed } = next_due(schedule, &st, now) {
                if missed > 0 {
                    tracing::warn!(
                        job = kind.name(),
                        missed,
                        "scheduled runs were missed; running once for the latest slot"
                    );
                }
                self.sched.insert(
                    kind,
                    JobState {
                        last_run: Some(slot),
                        running: true,
                    },
                );
                self.start(kind, Trigger::Schedule);
                return;
            }
        }
    }

    fn schedule_of(&self, kind: JobKind) -> Option<&Schedule> {
        match kind {
            JobKind::Snapshot => Some(&self.cfg.snapshot),
            JobKind::Audit => self.cfg.audit.as_ref(),
            JobKind::Drill => self.cfg.drill.as_ref(),
            JobKind::ColdStart => None,
        }
    }

    fn start(&mut self, kind: JobKind, trigger: Trigger) {
        let jobs = self.jobs.clone();
        let progress = self.state.progress.clone();
        let retention = self.cfg.retention;
        match kind {
            JobKind::Snapshot => self.spawn(kind, trigger, async move {
                let result = match jobs.snapshot(trigger).await {
                    Ok(row) => {
                        let pruned = if row.is_good() {
                            jobs.prune(retention).await
                        } else {
                            Ok(PruneReport::default())
                        };
                        Ok((row, pruned))
                    }
                    Err(e) => Err(e),
                };
                Done::Snapshot(result)
            }),
            JobKind::Audit => self.spawn(
                kind,
                trigger,
                async move { Done::Audit(jobs.audit().await) },
            ),
            JobKind::Drill => self.spawn(kind, trigger, async move {
                Done::Drill(jobs.drill(progress).await)
            }),
            JobKind::ColdStart => {}
        }
    }

    fn spawn(
        &mut self,
        kind: JobKind,
        trigger: Trigger,
        fut: impl Future<Output = Done> + Send + 'static,
    ) {
        tracing::info!(job = kind.name(), trigger = trigger.as_str(), "job started");
        let now = (self.clock)();
        self.edit(|v| {
            v.running = Some(RunningJob {
                job: kind.name().to_owned(),
                trigger: trigger.as_str().to_owned(),
                started_at: now,
            });
        });
        self.running = Some(Running {
            kind,
            started: Instant::now(),
            handle: tokio::spawn(fut),
        });
    }

    fn event(&self, job: &str, outcome: Outcome, message: String) {
        match outcome {
            Outcome::Succeeded => tracing::info!(job, %message, "job succeeded"),
            Outcome::Failed => tracing::warn!(job, %message, "job failed"),
            Outcome::Abandoned => tracing::warn!(job, %message, "job abandoned"),
        }
        self.state.metrics.count_run(job, outcome);
        let at = (self.clock)();
        self.edit(|v| {
            v.push_event(Event {
                at,
                job: job.to_owned(),
                outcome,
                message,
            });
        });
    }

    fn abandon(&mut self, kind: JobKind, why: &str) {
        if let Some(st) = self.sched.get_mut(&kind) {
            st.running = false;
        }
        self.edit(|v| v.running = None);
        self.event(kind.name(), Outcome::Abandoned, why.to_owned());
    }

    fn finish(&mut self, running: Option<Running>, done: Result<Done, tokio::task::JoinError>) {
        let Some(r) = running else { return };
        if let Some(st) = self.sched.get_mut(&r.kind) {
            st.running = false;
        }
        self.edit(|v| v.running = None);
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                let msg = if e.is_panic() {
                    "the job panicked".to_owned()
                } else {
                    "the job was cancelled".to_owned()
                };
                if r.kind == JobKind::ColdStart {
                    self.retry_at = Some(Instant::now() + self.cfg.retry_after);
                }
                self.event(r.kind.name(), Outcome::Failed, msg);
                return;
            }
        };
        let took = r.started.elapsed();
        match done {
            Done::Snapshot(Ok((row, pruned))) => {
                self.state
                    .metrics
                    .observe_snapshot_duration(took.as_secs_f64());
                let msg = format!(
                    "snapshot {} of {} objects in {} ms",
                    row.id, row.objects, row.duration_ms
                );
                let complete = row.is_good();
                self.edit(|v| {
                    v.snapshots.retain(|s| s.id != row.id);
                    v.snapshots.insert(0, row);
                });
                self.event(
                    "snapshot",
                    if complete {
                        Outcome::Succeeded
                    } else {
                        Outcome::Failed
                    },
                    msg,
                );
                match pruned {
                    Ok(p) if !p.deleted.is_empty() => {
                        let msg = format!("retention removed {} snapshot(s)", p.deleted.len());
                        self.edit(|v| v.snapshots.retain(|s| !p.deleted.contains(&s.id)));
                        self.event("prune", Outcome::Succeeded, msg);
                    }
                    Ok(_) => {}
                    Err(e) => self.event("prune", Outcome::Failed, e.to_string()),
                }
            }
            Done::Snapshot(Err(e)) => self.event("snapshot", Outcome::Failed, e.to_string()),
            Done::Audit(Ok(report)) => {
                let at = (self.clock)();
                let n = report.findings.len();
                self.edit(|v| {
                    v.audit = AuditView {
                        at: Some(at),
                        findings: report.findings,
                    };
                    v.bindings = report.bindings;
                });
                self.event("audit", Outcome::Succeeded, format!("{n} finding(s)"));
            }
            Done::Audit(Err(e)) => self.event("audit", Outcome::Failed, e.to_string()),
            Done::Drill(Ok(d)) => {
                let msg = format!(
                    "drill {}: RTO {} ms, RPO {} s, {}",
                    d.id,
                    d.rto_ms,
                    d.rpo_s,
                    if d.passed { "passed" } else { "failed" }
                );
                let outcome = if d.passed {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                };
                self.edit(|v| {
                    v.drills.retain(|x| x.id != d.id);
                    v.drills.insert(0, d);
                });
                self.event("drill", outcome, msg);
            }
            Done::Drill(Err(e)) => self.event("drill", Outcome::Failed, e.to_string()),
            Done::ColdStart(result) => self.settle_cold_start(result),
        }
    }

    fn settle_cold_start(&mut self, result: Result<ColdStart, JobError>) {
        let (ready, reason, outcome) = match &result {
            Ok(ColdStart::Warm) => (
                true,
                "no cold start: the cluster holds its state".to_owned(),
                Outcome::Succeeded,
            ),
            Ok(ColdStart::Restored {
                snapshot_id,
                verified: true,
                ..
            }) => (
                true,
                format!("cold start: restore of {snapshot_id} verified"),
                Outcome::Succeeded,
            ),
            Ok(ColdStart::Restored {
                snapshot_id,
                verified: false,
                message,
            }) => (
                false,
                format!("cold start: restore of {snapshot_id} NOT verified: {message}"),
                Outcome::Failed,
            ),
            Ok(ColdStart::NeedsRestore { message }) => (
                false,
                format!("cold start detected, auto-restore is off: {message}"),
                Outcome::Failed,
            ),
            Err(e) => (
                false,
                format!("cold-start check failed: {e}"),
                Outcome::Failed,
            ),
        };
        // Settled means the question is answered for good; a failed check or an unverified
        // restore is retried.
        let settled = matches!(
            result,
            Ok(ColdStart::Warm
                | ColdStart::Restored { verified: true, .. }
                | ColdStart::NeedsRestore { .. })
        );
        if settled {
            self.cold_start_settled = ready;
        }
        if !ready {
            self.retry_at = Some(Instant::now() + self.cfg.retry_after);
        }
        self.edit(|v| {
            v.ready = Readiness {
                ready,
                reason: reason.clone(),
            };
        });
        self.publish.send_replace(BTreeMap::from([
            (READY_ANNOTATION.to_owned(), ready.to_string()),
            (READY_REASON_ANNOTATION.to_owned(), reason.clone()),
        ]));
        self.event("cold-start", outcome, reason);
    }

    fn show_schedules(&self) {
        let now = (self.clock)();
        let mut rows = Vec::new();
        for kind in [JobKind::Snapshot, JobKind::Audit, JobKind::Drill] {
            let Some(s) = self.schedule_of(kind) else {
                continue;
            };
            let st = self.sched.get(&kind).copied().unwrap_or_default();
            let next = match next_due(s, &st, now) {
                Decision::Wait { next } => Some(next),
                Decision::Run { .. } | Decision::Busy { .. } => Some(now),
                Decision::Never => None,
            };
            rows.push(ScheduleRow {
                job: kind.name().to_owned(),
                cron: s.expr().to_owned(),
                time_zone: s.time_zone().name().to_owned(),
                last_run: st.last_run,
                next_run: if self.cold_start_settled { next } else { None },
            });
        }
        self.edit(|v| v.schedules = rows);
    }
}
