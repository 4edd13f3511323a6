//! `/metrics` in the Prometheus (OpenMetrics) text format. Names start with `coldstart_`.
//!
//! Gauges are set from the [`ServiceView`] and the live [`Progress`] at scrape time, so
//! the page, the API and the metrics never disagree. Only what cannot be rebuilt from the
//! view is recorded as it happens: the snapshot duration histogram and the run counters.

use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::view::{BindingKind, BindingState, FindingLevel, Outcome, ServiceView};
use crate::progress::Progress;

type FGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BindingLabels {
    kind: String,
    verification: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabels {
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    job: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

/// The registry and every metric in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    snapshot_last_success: FGauge,
    snapshot_duration: Histogram,
    snapshot_objects: Gauge,
    snapshot_bytes: Family<BytesLabels, Gauge>,
    snapshots_stored: Gauge,
    rpo: FGauge,
    rpo_target: FGauge,
    bindings: Family<BindingLabels, Gauge>,
    audit_findings: Family<SeverityLabels, Gauge>,
    audit_last: FGauge,
    restore_done: Gauge,
    restore_total: Gauge,
    restore_failed: Gauge,
    restore_elapsed: FGauge,
    restore_running: Family<OperationLabels, Gauge>,
    drill_rto: FGauge,
    drill_rpo: FGauge,
    drill_passed: Gauge,
    drill_last: FGauge,
    ready: Gauge,
    leader: Gauge,
    runs: Family<RunLabels, Counter>,
}

/// Snapshot durations from a second to an hour: an incremental snapshot of an unchanged
/// cluster takes seconds, a first snapshot of 100k objects tens of seconds, a slow store
/// minutes.
const DURATION_BUCKETS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 600.0, 3600.0];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Metrics {
            snapshot_last_success: FGauge::default(),
            snapshot_duration: Histogram::new(DURATION_BUCKETS),
            snapshot_objects: Gauge::default(),
            snapshot_bytes: Family::default(),
            snapshots_stored: Gauge::default(),
            rpo: FGauge::default(),
            rpo_target: FGauge::default(),
            bindings: Family::default(),
            audit_findings: Family::default(),
            audit_last: FGauge::default(),
            restore_done: Gauge::default(),
            restore_total: Gauge::default(),
            restore_failed: Gauge::default(),
            restore_elapsed: FGauge::default(),
            restore_running: Family::default(),
            drill_rto: FGauge::default(),
            drill_rpo: FGauge::default(),
            drill_passed: Gauge::default(),
            drill_last: FGauge::default(),
            ready: Gauge::default(),
            leader: Gauge::default(),
            runs: Family::default(),
            registry: Registry::default(),
        };
        r.register(
            "coldstart_snapshot_last_success_timestamp_seconds",
            "Unix time the last complete snapshot was taken",
            m.snapshot_last_success.clone(),
        );
        r.register(
            "coldstart_snapshot_duration_seconds",
            "Wall time of snapshot runs",
            m.snapshot_duration.clone(),
        );
        r.register(
            "coldstart_snapshot_objects",
            "Objects in the last complete snapshot",
            m.snapshot_objects.clone(),
        );
        r.register(
            "coldstart_snapshot_bytes",
            "Size of the last complete snapshot: kind=total (logical) or written (added to the store)",
            m.snapshot_bytes.clone(),
        );
        r.register(
            "coldstart_snapshots_stored",
            "Snapshots currently kept in the store",
            m.snapshots_stored.clone(),
        );
        r.register(
            "coldstart_rpo_seconds",
            "Age of the last complete snapshot (what a cold start now would lose)",
            m.rpo.clone(),
        );
        r.register(
            "coldstart_rpo_target_seconds",
            "Configured RPO target",
            m.rpo_target.clone(),
        );
        r.register(
            "coldstart_bindings",
            "Bindings recorded, by kind and verification state",
            m.bindings.clone(),
        );
        r.register(
            "coldstart_audit_findings",
            "Findings of the last audit, by severity",
            m.audit_findings.clone(),
        );
        r.register(
            "coldstart_audit_last_timestamp_seconds",
            "Unix time of the last audit",
            m.audit_last.clone(),
        );
        r.register(
            "coldstart_restore_objects_done",
            "Objects handled by the restore/stop/start in progress or last run",
            m.restore_done.clone(),
        );
        r.register(
            "coldstart_restore_objects_total",
            "Objects to handle in the restore/stop/start in progress or last run",
            m.restore_total.clone(),
        );
        r.register(
            "coldstart_restore_objects_failed",
            "Objects that failed in the restore/stop/start in progress or last run",
            m.restore_failed.clone(),
        );
        r.register(
            "coldstart_restore_elapsed_seconds",
            "Elapsed time of the restore/stop/start in progress or last run",
            m.restore_elapsed.clone(),
        );
        r.register(
            "coldstart_restore_in_progress",
            "1 while an operation (restore, stop, start, drill) runs",
            m.restore_running.clone(),
        );
        r.register(
            "coldstart_drill_last_rto_seconds",
            "Recovery time measured by the last drill",
            m.drill_rto.clone(),
        );
        r.register(
            "coldstart_drill_last_rpo_seconds",
            "Snapshot age at the last drill",
            m.drill_rpo.clone(),
        );
        r.register(
            "coldstart_drill_last_success",
            "1 if the last drill passed",
            m.drill_passed.clone(),
        );
        r.register(
            "coldstart_drill_last_timestamp_seconds",
            "Unix time of the last drill",
            m.drill_last.clone(),
        );
        r.register(
            "coldstart_ready",
            "1 once a cold-start restore is verified or none was needed (/readyz)",
            m.ready.clone(),
        );
        r.register(
            "coldstart_leader",
            "1 on the replica that holds the leader lease",
            m.leader.clone(),
        );
        r.register(
            "coldstart_job_runs",
            "Job runs by job and outcome",
            m.runs.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Record a finished snapshot run's wall time.
    pub fn observe_snapshot_duration(&self, seconds: f64) {
        self.snapshot_duration.observe(seconds);
    }

    /// Count a finished job run.
    pub fn count_run(&self, job: &str, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Abandoned => "abandoned",
        };
        self.runs
            .get_or_create(&RunLabels {
                job: job.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Set the gauges from the view and progress, then encode.
    pub fn render(&self, view: &ServiceView, progress: &Progress, now: DateTime<Utc>) -> String {
        let rpo = view.rpo(now);
        self.rpo_target.set(rpo.target_seconds as f64);
        // No good snapshot: everything would be lost; report the age as +Inf so an alert
        // on `coldstart_rpo_seconds > target` fires.
        self.rpo
            .set(rpo.age_seconds.map_or(f64::INFINITY, |a| a as f64));
        if let Some(s) = view.last_good_snapshot() {
            self.snapshot_last_success
                .set(s.taken_at.timestamp_millis() as f64 / 1000.0);
            self.snapshot_objects.set(to_i64(s.objects));
            self.snapshot_bytes
                .get_or_create(&BytesLabels {
                    kind: "total".to_owned(),
                })
                .set(to_i64(s.bytes_total));
            self.snapshot_bytes
                .get_or_create(&BytesLabels {
                    kind: "written".to_owned(),
                })
                .set(to_i64(s.bytes_written));
        }
        self.snapshots_stored
            .set(to_i64(view.snapshots.len() as u64));
        for kind in [
            BindingKind::Volume,
            BindingKind::Address,
            BindingKind::Bucket,
        ] {
            for v in [
                BindingState::Ok,
                BindingState::Missing,
                BindingState::Unverified,
            ] {
                let n = view
                    .bindings
                    .iter()
                    .filter(|b| b.kind == kind && b.verification == v)
                    .count();
                self.bindings
                    .get_or_create(&BindingLabels {
                        kind: kind.as_str().to_owned(),
                        verification: v.as_str().to_owned(),
                    })
                    .set(to_i64(n as u64));
            }
        }
        for (sev, n) in view.findings_by_severity() {
            self.audit_findings
                .get_or_create(&SeverityLabels {
                    severity: sev.as_str().to_owned(),
                })
                .set(to_i64(n as u64));
        }
        if let Some(at) = view.audit.at {
            self.audit_last.set(at.timestamp() as f64);
        }
        self.restore_done.set(to_i64(progress.done() as u64));
        self.restore_total.set(to_i64(progress.total() as u64));
        self.restore_failed.set(to_i64(
            progress.tiers.values().map(|t| t.failed as u64).sum(),
        ));
        let elapsed = progress
            .started_at
            .map_or(0.0, |s| (now - s).num_milliseconds().max(0) as f64 / 1000.0);
        self.restore_elapsed.set(elapsed);
        for op in ["restore", "stop", "start", "drill"] {
            let running =
                progress.operation == op && progress.started_at.is_some() && !progress.finished;
            self.restore_running
                .get_or_create(&OperationLabels {
                    operation: op.to_owned(),
                })
                .set(i64::from(running));
        }
        if let Some(d) = view.drills.iter().max_by_key(|d| d.at) {
            self.drill_rto.set(d.rto_ms as f64 / 1000.0);
            self.drill_rpo.set(d.rpo_s as f64);
            self.drill_passed.set(i64::from(d.passed));
            self.drill_last.set(d.at.timestamp() as f64);
        }
        self.ready.set(i64::from(view.ready.ready));
        self.leader.set(i64::from(view.replica.leading));
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The finding levels exported for the dashboard test and docs.
pub fn severities() -> impl Iterator<Item = &'static str> {
    FindingLevel::ALL.iter().map(|s| s.as_str())
}
