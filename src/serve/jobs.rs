//! The service's jobs, done for real: snapshots and retention against the store, the audit
//! against the cluster, and the cold-start check (an empty cluster with a snapshot of this
//! cluster in the store is restored when configured). Each job is a thin call into the
//! module that owns it; this file only translates results into the page's rows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;

use super::{AuditReport, ColdStart, Inventory, JobError, Jobs, PruneReport, Trigger};
use crate::audit::{self, SnapshotFacts};
use crate::bindings::Bindings;
use crate::config::Retention;
use crate::progress::Progress;
use crate::restore::{self, RestoreOptions};
use crate::snapshot::crypto::Keys;
use crate::snapshot::format::Manifest;
use crate::snapshot::{prune, read, write};
use crate::store::Store;
use crate::web::view::{
    BindingKind, BindingRow, BindingState, ClusterView, DrillRow, FindingLevel, FindingRow,
    SnapshotRow,
};

/// Retention never forgets snapshots younger than this, so a drill or restore reading one
/// is not pulled from under it.
const PRUNE_GRACE: Duration = Duration::from_secs(3600);

/// The jobs of a running `coldstart serve`.
#[derive(Clone)]
pub struct ClusterJobs {
    pub client: kube::Client,
    pub store: Store,
    pub keys: Keys,
    pub snapshot: write::Options,
    pub restore: RestoreOptions,
    /// The namespace coldstart itself runs in (not a sign of a warm cluster).
    pub own_namespace: Option<String>,
    pub rpo_target: Duration,
    /// Which cloud a drill verifies bindings against.
    pub cloud: crate::cloud::CloudChoice,
}

fn binding_rows(b: &Bindings) -> Vec<BindingRow> {
    let mut rows = Vec::new();
    for v in &b.volumes {
        rows.push(BindingRow {
            kind: BindingKind::Volume,
            object: match &v.claim {
                Some(c) => format!("{}/{} (PV {})", c.namespace, c.name, v.pv),
                None => format!("PV {}", v.pv),
            },
            target: format!("{} {}", v.disk_id, v.zone.as_deref().unwrap_or(""))
                .trim()
                .to_owned(),
            verification: BindingState::Unverified,
            reason: Some("recorded in the snapshot; a drill checks it against the cloud".into()),
        });
    }
    for lb in &b.load_balancers {
        let mut target = lb.ingress_ips.join(", ");
        if !lb.dns_names.is_empty() {
            target.push_str(&format!(" ({})", lb.dns_names.join(", ")));
        }
        rows.push(BindingRow {
            kind: BindingKind::Address,
            object: format!("{}/{}", lb.namespace, lb.name),
            target,
            verification: BindingState::Unverified,
            reason: Some(if lb.pinned {
                "pinned".into()
            } else {
                "controller-allocated: pinned on restore".into()
            }),
        });
    }
    for bk in &b.buckets {
        rows.push(BindingRow {
            kind: BindingKind::Bucket,
            object: match &bk.namespace {
                Some(ns) => format!("{ns}/{}", bk.name),
                None => bk.name.clone(),
            },
            target: bk
                .bucket
                .clone()
                .unwrap_or_else(|| "(not yet known)".into()),
            verification: BindingState::Unverified,
            reason: bk
                .deletion_policy
                .as_ref()
                .map(|p| format!("deletion policy {p}")),
        });
    }
    rows
}

fn row_of(m: &Manifest, trigger: &str) -> SnapshotRow {
    SnapshotRow {
        id: m.id.clone(),
        taken_at: m.started_at,
        objects: m.stats.objects,
        bytes_total: m.stats.bytes_total,
        bytes_written: m.stats.bytes_written,
        duration_ms: (m.finished_at - m.started_at).num_milliseconds().max(0) as u64,
        complete: true,
        verified: false,
        trigger: trigger.to_owned(),
    }
}

fn drill_row(r: &crate::drill::DrillReport) -> DrillRow {
    DrillRow {
        id: r.id.clone(),
        at: r.started_at,
        snapshot_id: r.snapshot.clone(),
        rto_ms: r.rto_ms.unwrap_or(0),
        rpo_s: r.rpo_s.unwrap_or(0).max(0) as u64,
        hydration_ms: r.hydration_ms.unwrap_or(0),
        passed: r.passed,
        failures: r.failures.clone(),
    }
}

fn severity(s: audit::Severity) -> FindingLevel {
    match s {
        audit::Severity::Critical | audit::Severity::High => FindingLevel::Critical,
        audit::Severity::Medium => FindingLevel::Warning,
        audit::Severity::Low | audit::Severity::Info => FindingLevel::Info,
    }
}

impl ClusterJobs {
    async fn manifests(&self) -> Result<Vec<Manifest>, JobError> {
        let mut all = read::list(&self.store, &self.keys).await?;
        all.retain(|m| m.cluster.name == self.snapshot.cluster_name);
        all.sort_by_key(|m| m.started_at);
        Ok(all)
    }
}

impl Jobs for ClusterJobs {
    async fn cluster_identity(&self) -> Result<ClusterView, JobError> {
        let ns = Api::<Namespace>::all(self.client.clone())
            .get("kube-system")
            .await
            .map_err(|source| JobError::Cluster {
                what: "read namespace kube-system".to_owned(),
                source,
            })?;
        Ok(ClusterView {
            name: self.snapshot.cluster_name.clone(),
            uid: ns.metadata.uid.unwrap_or_default(),
        })
    }

    async fn inventory(&self) -> Result<Inventory, JobError> {
        let manifests = self.manifests().await?;
        let bindings = manifests
            .last()
            .map(|m| binding_rows(&m.bindings))
            .unwrap_or_default();
        let drills = crate::drill::history(&self.store, &self.keys)
            .await?
            .iter()
            .map(drill_row)
            .collect();
        Ok(Inventory {
            snapshots: manifests.iter().map(|m| row_of(m, "recorded")).collect(),
            drills,
            bindings,
        })
    }

    async fn snapshot(&self, trigger: Trigger) -> Result<SnapshotRow, JobError> {
        let m = write::take(
            &self.client,
            &self.store,
            &self.keys,
            &self.snapshot,
            Arc::new(write::CaptureProgress::default()),
        )
        .await?;
        Ok(row_of(&m, trigger.as_str()))
    }

    async fn prune(&self, retention: Retention) -> Result<PruneReport, JobError> {
        let policy = prune::Policy {
            keep_last: (retention.keep_last as usize).max(1),
            keep_daily: retention.daily as usize,
            keep_weekly: retention.weekly as usize,
        };
        // Cloud snapshots go with the cluster snapshots that named them.
        let cloud =
            crate::cloud::snapshots::provider(self.snapshot.cloud, Some(self.client.clone())).await;
        let r = prune::prune(
            &self.store,
            &self.keys,
            policy,
            PRUNE_GRACE,
            false,
            cloud.as_deref(),
        )
        .await?;
        for id in &r.cloud_snapshots_left {
            tracing::warn!(snapshot = %id, "cloud snapshot no longer named by a kept snapshot, left: no cloud to delete it with (set --cloud)");
        }
        Ok(PruneReport {
            deleted: r.forgotten,
            bytes_freed: r.bytes_freed,
        })
    }

    async fn drill(&self, progress: Arc<Mutex<Progress>>) -> Result<DrillRow, JobError> {
        let newest = self.manifests().await?.pop().ok_or(JobError::NoSnapshot)?;
        let verifier = crate::cloud::verifier(self.cloud, Some(self.client.clone())).await?;
        let opts = crate::drill::DrillOptions {
            restore: self.restore.clone(),
            ..Default::default()
        };
        let report = crate::drill::run_drill(
            &self.store,
            &self.keys,
            &newest.id,
            &opts,
            verifier.as_ref(),
            &progress,
        )
        .await?;
        // run_drill records the report in the store itself.
        Ok(drill_row(&report))
    }

    async fn audit(&self) -> Result<AuditReport, JobError> {
        let newest = self.manifests().await?.pop();
        let bindings = newest
            .as_ref()
            .map(|m| binding_rows(&m.bindings))
            .unwrap_or_default();
        let facts = newest.map(|m| SnapshotFacts::of(&m.id, m.started_at, &m.bindings));
        let inputs = audit::collect(&self.client, facts).await?;
        let findings = audit::audit(&inputs, chrono::Utc::now(), self.rpo_target)
            .into_iter()
            .map(|f| FindingRow {
                severity: severity(f.severity),
                kind: serde_json::to_value(f.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                object: f.object,
                message: f.message,
            })
            .collect();
        Ok(AuditReport { findings, bindings })
    }

    async fn cold_start_check(
        &self,
        auto_restore: bool,
        progress: Arc<Mutex<Progress>>,
    ) -> Result<ColdStart, JobError> {
        // Warm or cold is judged from the cluster (its identity, its workloads, the restore
        // record), never from whether a namespace of a given name exists.
        let target = restore::target::observe(&self.client, self.own_namespace.as_deref())
            .await
            .map_err(|source| JobError::Cluster {
                what: "inspect the cluster".to_owned(),
                source,
            })?;
        let Some(newest) = self.manifests().await?.pop() else {
            // Nothing of this cluster in the store: a brand-new cluster.
            return Ok(ColdStart::Warm);
        };
        if !restore::target::is_cold(&newest.cluster, &target) {
            return Ok(ColdStart::Warm);
        }
        if !auto_restore {
            return Ok(ColdStart::NeedsRestore {
                message: format!(
                    "this cluster is empty and snapshot {} of {} exists: run `coldstart restore` (auto-restore is off)",
                    newest.id, newest.cluster.name
                ),
            });
        }
        if let Ok(mut p) = progress.lock() {
            p.begin("restore");
        }
        // A planned stop is brought back by the start sequence: its final snapshot holds
        // every workload at 0, and only the start scales them back in order.
        let marker = crate::lifecycle::read_marker(&self.store, &self.keys).await?;
        if let Some(m) =
            marker.filter(|m| m.cluster == self.snapshot.cluster_name && m.snapshot.is_some())
        {
            let started = Instant::now();
            let opts = crate::lifecycle::StartOptions {
                restore: self.restore.clone(),
                snapshot: m.snapshot.clone(),
                ready_timeout: self.restore.verify_timeout,
                consent: Default::default(),
            };
            let r =
                crate::lifecycle::start(&self.client, &self.store, &self.keys, &opts, &progress)
                    .await?;
            return Ok(ColdStart::Restored {
                snapshot_id: r.snapshot.clone(),
                verified: r.restore.succeeded,
                message: format!(
                    "started the stopped cluster: {}; {} groups scaled back",
                    restored_message(&r.restore, started.elapsed()),
                    r.scaled_up.len()
                ),
            });
        }
        let started = Instant::now();
        // The newest whole snapshot of this cluster: a damaged newer one is skipped.
        let cluster = &self.snapshot.cluster_name;
        let snap =
            read::open_newest_stored(&self.store, &self.keys, |m| &m.cluster.name == cluster)
                .await?
                .ok_or_else(|| JobError::NoWholeSnapshot {
                    cluster: cluster.clone(),
                    store: self.store.url().to_owned(),
                })?;
        let snapshot_id = snap.manifest.id.clone();
        let source = restore::source::from_stored(&self.store, &self.keys, snap);
        let report = restore::run(&self.client, &source, &self.restore, &progress).await?;
        Ok(ColdStart::Restored {
            snapshot_id,
            verified: report.succeeded,
            message: restored_message(&report, started.elapsed()),
        })
    }
}

/// One line on what a cold-start restore did, for the page.
fn restored_message(report: &restore::RestoreReport, took: Duration) -> String {
    format!(
        "restored {} objects in {:.1} s: {} volumes, {} addresses, {} buckets reused; {} new disks, {} new addresses, {} new buckets{}",
        report.objects,
        took.as_secs_f64(),
        report.volumes_reused,
        report.ips_reused,
        report.buckets_reused,
        report.new_disks,
        report.new_ips,
        report.new_buckets,
        if report.succeeded {
            String::new()
        } else {
            format!(
                "; NOT verified: {}",
                report.verification.problems.join("; ")
            )
        }
    )
}
