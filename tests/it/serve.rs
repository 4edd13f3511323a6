//! The service loop against a fake `Jobs`, an injected clock and the real router.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use coldstart::config::Retention;
use coldstart::progress::Progress;
use coldstart::schedule::Schedule;
use coldstart::schedule::leader::LeaderState;
use coldstart::serve::{
    AuditReport, Clock, ColdStart, Inventory, JobError, Jobs, PruneReport, Service, ServiceConfig,
    Stopped, Trigger,
};
use coldstart::web::metrics::Metrics;
use coldstart::web::view::{
    BindingKind, BindingRow, BindingState, ClusterView, DrillRow, FindingLevel, FindingRow,
    Outcome, ServiceView, SnapshotRow,
};
use coldstart::web::{Action, AppState, Auth};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::helpers::wait_until;

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

/// A clock the test moves by hand.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(t: &str) -> Self {
        ManualClock(Arc::new(Mutex::new(at(t))))
    }
    pub fn set(&self, t: &str) {
        *self.0.lock().expect("clock") = at(t);
    }
    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock")
    }
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Arc::new(move || me.now())
    }
}

/// Records what the service asked for; a snapshot takes `snapshot_delay`.
pub struct FakeJobs {
    pub clock: ManualClock,
    pub snapshot_delay: Duration,
    pub cold_start: Mutex<ColdStart>,
    pub inventory: Inventory,
    /// Snapshots taken, as the store holds them (shared between replicas in HA tests).
    pub store: Arc<Mutex<Vec<SnapshotRow>>>,
    pub snapshots: AtomicUsize,
    pub prunes: AtomicUsize,
    pub audits: AtomicUsize,
    pub drills: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub triggers: Mutex<Vec<Trigger>>,
}

impl FakeJobs {
    pub fn new(clock: &ManualClock) -> Self {
        FakeJobs {
            clock: clock.clone(),
            snapshot_delay: Duration::from_millis(10),
            cold_start: Mutex::new(ColdStart::Warm),
            inventory: Inventory::default(),
            store: Arc::new(Mutex::new(Vec::new())),
            snapshots: AtomicUsize::new(0),
            prunes: AtomicUsize::new(0),
            audits: AtomicUsize::new(0),
            drills: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            triggers: Mutex::new(Vec::new()),
        }
    }

    fn enter(&self) {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(n, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Jobs for FakeJobs {
    async fn cluster_identity(&self) -> Result<ClusterView, JobError> {
        Ok(ClusterView {
            name: "sim".to_owned(),
            uid: "2f1c5f0e-0000-4000-8000-000000000001".to_owned(),
        })
    }

    async fn inventory(&self) -> Result<Inventory, JobError> {
        let mut inv = self.inventory.clone();
        inv.snapshots
            .extend(self.store.lock().expect("store").iter().cloned());
        Ok(inv)
    }

    async fn snapshot(&self, trigger: Trigger) -> Result<SnapshotRow, JobError> {
        self.enter();
        self.triggers.lock().expect("triggers").push(trigger);
        tokio::time::sleep(self.snapshot_delay).await;
        let n = self.snapshots.fetch_add(1, Ordering::SeqCst) + 1;
        self.leave();
        let row = SnapshotRow {
            id: format!("snap-{n}"),
            taken_at: self.clock.now(),
            objects: 1200 + n as u64,
            bytes_total: 4_000_000,
            bytes_written: 40_000,
            duration_ms: 1500,
            complete: true,
            verified: true,
            trigger: trigger.as_str().to_owned(),
        };
        self.store.lock().expect("store").push(row.clone());
        Ok(row)
    }

    async fn prune(&self, _retention: Retention) -> Result<PruneReport, JobError> {
        self.prunes.fetch_add(1, Ordering::SeqCst);
        Ok(PruneReport::default())
    }

    async fn drill(&self, progress: Arc<Mutex<Progress>>) -> Result<DrillRow, JobError> {
        self.enter();
        progress.lock().expect("progress").begin("drill");
        let n = self.drills.fetch_add(1, Ordering::SeqCst) + 1;
        progress.lock().expect("progress").finish(true);
        self.leave();
        Ok(DrillRow {
            id: format!("drill-{n}"),
            at: self.clock.now(),
            snapshot_id: "snap-1".to_owned(),
            rto_ms: 95_000,
            rpo_s: 300,
            hydration_ms: 0,
            passed: true,
            failures: vec![],
        })
    }

    async fn audit(&self) -> Result<AuditReport, JobError> {
        self.enter();
        self.audits.fetch_add(1, Ordering::SeqCst);
        self.leave();
        Ok(AuditReport {
            findings: vec![FindingRow {
                severity: FindingLevel::Critical,
                kind: "delete-reclaim-policy".to_owned(),
                object: "PersistentVolume pvc-zk-0".to_owned(),
                message: "disk is deleted with the cluster".to_owned(),
            }],
            bindings: vec![BindingRow {
                kind: BindingKind::Volume,
                object: "PersistentVolume pvc-kafka-0".to_owned(),
                target: "vol-0a1b2c".to_owned(),
                verification: BindingState::Ok,
                reason: None,
            }],
        })
    }

    async fn cold_start_check(
        &self,
        _auto_restore: bool,
        _progress: Arc<Mutex<Progress>>,
    ) -> Result<ColdStart, JobError> {
        Ok(self.cold_start.lock().expect("cold start").clone())
    }
}

pub struct Harness {
    pub state: AppState,
    pub leader: watch::Sender<LeaderState>,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<Stopped>,
    pub published: watch::Receiver<BTreeMap<String, String>>,
}

impl Harness {
    pub fn view(&self) -> ServiceView {
        self.state.view()
    }
}

pub fn config(tweak: impl FnOnce(&mut ServiceConfig)) -> ServiceConfig {
    let mut cfg = ServiceConfig {
        identity: "coldstart-0".to_owned(),
        cluster_name: Some("prod-eu1".to_owned()),
        snapshot: Schedule::parse("*/15 * * * *", "UTC").expect("schedule"),
        drill: None,
        audit: None,
        retention: Retention {
            keep_last: 4,
            daily: 0,
            weekly: 0,
        },
        auto_restore: true,
        rpo_target: Duration::from_secs(900),
        shutdown_grace: Duration::from_secs(5),
        tick: Duration::from_millis(20),
        inventory_refresh: Duration::from_secs(3600),
        retry_after: Duration::from_millis(50),
    };
    tweak(&mut cfg);
    cfg
}

pub fn app_state(auth: Auth) -> (AppState, mpsc::Receiver<Action>) {
    AppState::new(auth, Arc::new(Metrics::new()))
}

pub fn start(jobs: Arc<FakeJobs>, clock: &ManualClock, cfg: ServiceConfig) -> Harness {
    let (state, rx) = app_state(Auth {
        token: Some("t0ken".to_owned()),
        protect_reads: false,
    });
    let (leader_tx, leader_rx) = watch::channel(LeaderState {
        leading: true,
        holder: Some(cfg.identity.clone()),
        annotations: BTreeMap::new(),
    });
    let (publish, published) = watch::channel(BTreeMap::new());
    let shutdown = CancellationToken::new();
    let service = Service::new(jobs, cfg, state.clone(), clock.clock(), publish);
    let handle = tokio::spawn(service.run(leader_rx, rx, shutdown.clone()));
    Harness {
        state,
        leader: leader_tx,
        shutdown,
        handle,
        published,
    }
}

pub fn snapshot_at(id: &str, t: &str) -> SnapshotRow {
    SnapshotRow {
        id: id.to_owned(),
        taken_at: at(t),
        objects: 1000,
        bytes_total: 1,
        bytes_written: 1,
        duration_ms: 1,
        complete: true,
        verified: true,
        trigger: "schedule".to_owned(),
    }
}

#[tokio::test]
async fn scheduled_snapshots_are_taken_at_each_slot_and_shown_by_the_api() {
    let clock = ManualClock::new("2025-01-10T10:07:00Z");
    let mut jobs = FakeJobs::new(&clock);
    jobs.inventory.snapshots = vec![snapshot_at("snap-0", "2025-01-10T10:00:00Z")];
    let jobs = Arc::new(jobs);
    let h = start(jobs.clone(), &clock, config(|_| {}));

    wait_until("the cold-start check settled", || h.view().ready.ready).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        jobs.snapshots.load(Ordering::SeqCst),
        0,
        "10:07 is not a slot"
    );
    let next = h.view().schedules[0].next_run;
    assert_eq!(next, Some(at("2025-01-10T10:15:00Z")));

    clock.set("2025-01-10T10:15:00Z");
    wait_until("the 10:15 snapshot is taken", || {
        jobs.snapshots.load(Ordering::SeqCst) == 1
    })
    .await;
    wait_until("the snapshot is on the view", || {
        h.view().snapshots.len() == 2
    })
    .await;
    assert_eq!(
        jobs.prunes.load(Ordering::SeqCst),
        1,
        "retention runs after a snapshot"
    );

    clock.set("2025-01-10T10:30:05Z");
    wait_until("the 10:30 snapshot is taken", || {
        h.view().snapshots.len() == 3
    })
    .await;
    assert_eq!(h.view().snapshots[0].id, "snap-2", "newest first");

    let (code, body) = super::web::get(&h.state, "/api/v1/snapshots").await;
    assert_eq!(code, 200);
    let ids: Vec<_> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, ["snap-2", "snap-1", "snap-0"]);
    let (_, metrics) = super::web::get_text(&h.state, "/metrics").await;
    assert!(
        metrics.contains("coldstart_snapshot_duration_seconds_count 2"),
        "{metrics}"
    );
    assert!(metrics.contains("coldstart_job_runs_total{job=\"snapshot\",outcome=\"succeeded\"} 2"));
    h.shutdown.cancel();
    assert_eq!(h.handle.await.expect("join").abandoned, None);
}

#[tokio::test]
async fn several_missed_slots_are_served_by_one_catch_up_run_and_runs_never_overlap() {
    let clock = ManualClock::new("2025-01-10T10:07:00Z");
    let mut jobs = FakeJobs::new(&clock);
    jobs.inventory.snapshots = vec![snapshot_at("snap-0", "2025-01-10T10:00:00Z")];
    jobs.snapshot_delay = Duration::from_millis(400);
    let jobs = Arc::new(jobs);
    let h = start(
        jobs.clone(),
        &clock,
        config(|c| c.audit = Some(Schedule::parse("*/5 * * * *", "UTC").expect("schedule"))),
    );
    wait_until("ready", || h.view().ready.ready).await;
    // The audit never ran: it runs at once.
    wait_until("the first audit ran", || {
        jobs.audits.load(Ordering::SeqCst) == 1
    })
    .await;

    // An hour passes at once (the node was suspended): four snapshot slots missed.
    clock.set("2025-01-10T11:05:00Z");
    wait_until("one catch-up snapshot started", || {
        jobs.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    // While it runs, another slot passes: nothing else starts.
    clock.set("2025-01-10T11:15:10Z");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(jobs.in_flight.load(Ordering::SeqCst), 1);
    wait_until("the catch-up run and the 11:15 run finished", || {
        jobs.snapshots.load(Ordering::SeqCst) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        jobs.snapshots.load(Ordering::SeqCst),
        2,
        "one run for 10:15–11:00, one for 11:15; missed slots are not replayed"
    );
    assert_eq!(
        jobs.max_in_flight.load(Ordering::SeqCst),
        1,
        "jobs never overlap"
    );
    h.shutdown.cancel();
    h.handle.await.expect("join");
}

#[tokio::test]
async fn shutdown_lets_a_short_run_finish() {
    let clock = ManualClock::new("2025-01-10T10:07:00Z");
    let mut jobs = FakeJobs::new(&clock);
    jobs.snapshot_delay = Duration::from_millis(300);
    let jobs = Arc::new(jobs);
    // No snapshot yet: one is due at once.
    let h = start(jobs.clone(), &clock, config(|_| {}));
    wait_until("the first snapshot started", || {
        jobs.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    h.shutdown.cancel();
    let stopped = h.handle.await.expect("join");
    assert_eq!(stopped.abandoned, None);
    let v = h.state.view();
    assert_eq!(v.snapshots.len(), 1, "the run finished and was recorded");
}

#[tokio::test]
async fn shutdown_abandons_a_run_that_outlives_the_grace_period() {
    let clock = ManualClock::new("2025-01-10T10:07:00Z");
    let mut jobs = FakeJobs::new(&clock);
    jobs.snapshot_delay = Duration::from_secs(30);
    let jobs = Arc::new(jobs);
    let h = start(
        jobs.clone(),
        &clock,
        config(|c| c.shutdown_grace = Duration::from_millis(200)),
    );
    wait_until("the first snapshot started", || {
        jobs.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    let t = std::time::Instant::now();
    h.shutdown.cancel();
    let stopped = h.handle.await.expect("join");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(stopped.abandoned.as_deref(), Some("snapshot"));
    let v = h.state.view();
    assert!(
        v.snapshots.is_empty(),
        "nothing half-done is shown as a snapshot"
    );
    assert_eq!(v.events[0].outcome, Outcome::Abandoned);
    assert!(v.running.is_none());
}

#[tokio::test]
async fn nothing_is_scheduled_while_a_detected_cold_start_waits_for_a_restore() {
    let clock = ManualClock::new("2025-01-10T10:07:00Z");
    let jobs = FakeJobs::new(&clock);
    *jobs.cold_start.lock().expect("lock") = ColdStart::NeedsRestore {
        message: "kube-system UID changed and the cluster is empty".to_owned(),
    };
    let jobs = Arc::new(jobs);
    let h = start(jobs.clone(), &clock, config(|c| c.auto_restore = false));
    wait_until("the cold start is reported", || {
        h.view().ready.reason.contains("auto-restore is off")
    })
    .await;
    clock.set("2025-01-10T12:00:00Z");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        jobs.snapshots.load(Ordering::SeqCst),
        0,
        "snapshotting the empty new cluster would push good snapshots out"
    );
    let (code, body) = super::web::get(&h.state, "/readyz").await;
    assert_eq!(code, 503);
    assert_eq!(body["ready"], false);
    assert_eq!(
        h.published
            .borrow()
            .get("coldstart.dev/ready")
            .map(String::as_str),
        Some("false"),
        "followers learn it from the lease"
    );
    h.shutdown.cancel();
    h.handle.await.expect("join");
}

#[tokio::test]
async fn a_verified_cold_start_restore_makes_the_service_ready() {
    let clock = ManualClock::new("2025-01-10T10:07:00Z");
    let jobs = FakeJobs::new(&clock);
    *jobs.cold_start.lock().expect("lock") = ColdStart::Restored {
        snapshot_id: "snap-41".to_owned(),
        verified: true,
        message: String::new(),
    };
    let h = start(Arc::new(jobs), &clock, config(|_| {}));
    wait_until("ready", || h.view().ready.ready).await;
    let (code, body) = super::web::get(&h.state, "/readyz").await;
    assert_eq!(code, 200);
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("snap-41")
    );
    assert_eq!(
        h.published
            .borrow()
            .get("coldstart.dev/ready")
            .map(String::as_str),
        Some("true")
    );
    h.shutdown.cancel();
    h.handle.await.expect("join");
}

#[tokio::test]
async fn a_manual_snapshot_from_the_api_runs_on_the_leader() {
    let clock = ManualClock::new("2025-01-10T10:07:00Z");
    let mut jobs = FakeJobs::new(&clock);
    jobs.inventory.snapshots = vec![snapshot_at("snap-0", "2025-01-10T10:00:00Z")];
    let jobs = Arc::new(jobs);
    let h = start(jobs.clone(), &clock, config(|_| {}));
    wait_until("ready", || h.view().ready.ready).await;
    let (code, _) = super::web::post(&h.state, "/api/v1/snapshots", Some("t0ken")).await;
    assert_eq!(code, 202);
    wait_until("the manual snapshot ran", || {
        jobs.snapshots.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(*jobs.triggers.lock().expect("lock"), [Trigger::Manual]);
    let (code, _) = super::web::post(&h.state, "/api/v1/drills", Some("t0ken")).await;
    assert_eq!(code, 202);
    wait_until("the drill ran", || h.view().drills.len() == 1).await;
    h.shutdown.cancel();
    h.handle.await.expect("join");
}

#[tokio::test]
async fn losing_leadership_abandons_the_run_and_followers_mirror_the_leaders_readiness() {
    let clock = ManualClock::new("2025-01-10T10:07:00Z");
    let mut jobs = FakeJobs::new(&clock);
    jobs.snapshot_delay = Duration::from_secs(30);
    let jobs = Arc::new(jobs);
    let h = start(jobs.clone(), &clock, config(|_| {}));
    wait_until("the first snapshot started", || {
        jobs.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    h.leader.send_replace(LeaderState {
        leading: false,
        holder: Some("coldstart-1".to_owned()),
        annotations: BTreeMap::from([
            ("coldstart.dev/ready".to_owned(), "true".to_owned()),
            (
                "coldstart.dev/ready-reason".to_owned(),
                "no cold start".to_owned(),
            ),
        ]),
    });
    wait_until("the run is abandoned", || {
        h.view()
            .events
            .first()
            .is_some_and(|e| e.outcome == Outcome::Abandoned)
    })
    .await;
    let v = h.view();
    assert!(!v.replica.leading);
    assert_eq!(v.replica.leader.as_deref(), Some("coldstart-1"));
    let (code, body) = super::web::post(&h.state, "/api/v1/snapshots", Some("t0ken")).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("coldstart-1")
    );
    h.shutdown.cancel();
    h.handle.await.expect("join");
}
