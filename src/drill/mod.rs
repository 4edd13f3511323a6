//! Drills: rehearse a cold start without touching production, measure it, and keep the
//! result. A restore that was never rehearsed will need manual fixes on the day.
//!
//! One drill:
//!
//! ```text
//!  1 verify the snapshot (every pack, hash, decryption — as `snapshots verify`)
//!  2 restore it into a scratch target in rehearsal mode (rehearsal.rs):
//!      shadow simulated cluster with stand-ins (default) │ real scratch cluster, nothing attachable
//!    → rto_ms, rpo_s, objects per tier, failures, the restore's own verification
//!  3 verify the snapshot's bindings against the real cloud (crate::cloud)
//!  4 seal the DrillReport into the store at drills/<id>; the status page shows the history
//! ```
//!
//! A drill fails when the snapshot does not verify, the rehearsal restore does not verify,
//! or a binding is missing, moved or in use elsewhere. A binding in use by production is
//! expected and does not fail it; an unverifiable one is reported, never counted as fine.

pub mod rehearsal;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::bindings::Bindings;
use crate::cloud::snapshots::DataCheck;
use crate::cloud::{CloudVerifier, Tally, Verdict};
use crate::progress::Progress;
use crate::restore::{self, RestoreOptions, RestoreReport, source};
use crate::snapshot::crypto::{Keys, Role};
use crate::snapshot::{format, read};
use crate::store::{Store, StoreError, layout};
use coldstart_sim::{self as sim, Sim, SimConfig};

/// Where the rehearsal restore goes.
#[derive(Clone)]
pub enum DrillTarget {
    /// An in-process simulated cluster with stand-ins for production's cloud resources.
    Shadow,
    /// A real scratch cluster (`--target-kubeconfig`), described by `label` in the report.
    Cluster { client: kube::Client, label: String },
}

impl std::fmt::Debug for DrillTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrillTarget::Shadow => f.write_str("Shadow"),
            DrillTarget::Cluster { label, .. } => write!(f, "Cluster({label})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub target: DrillTarget,
    /// How the rehearsal restore runs (timeouts, concurrency, plan shape).
    pub restore: RestoreOptions,
}

impl Default for DrillOptions {
    fn default() -> Self {
        DrillOptions {
            target: DrillTarget::Shadow,
            restore: RestoreOptions::default(),
        }
    }
}

/// One step of a drill and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillStep {
    /// `verify-snapshot`, `rehearse-restore`, `verify-bindings`.
    pub name: String,
    pub ok: bool,
    pub ms: u64,
    pub detail: String,
}

/// Objects of one restore tier (a stable, storable copy of the restore's counts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierSummary {
    pub total: usize,
    pub created: usize,
    pub existing: usize,
    pub updated: usize,
    pub failed: usize,
}

/// What a drill found, as stored in `drills/<id>` and shown on the status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillReport {
    pub id: String,
    pub snapshot: String,
    /// The cluster the snapshot came from.
    pub cluster: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub passed: bool,
    /// `shadow` or the scratch cluster's label.
    pub target: String,
    /// The cloud provider bindings were verified against (`aws`, `sim`, `none`).
    pub cloud: String,
    pub steps: Vec<DrillStep>,
    /// Wall time of the rehearsal restore, milliseconds (none if it did not run).
    pub rto_ms: Option<u64>,
    /// Age of the snapshot when the rehearsal restore finished, seconds.
    pub rpo_s: Option<i64>,
    /// Hydration still ahead of disks restored from cloud snapshots when it finished, ms.
    #[serde(default)]
    pub hydration_ms: Option<u64>,
    /// Objects the rehearsal restore applied.
    pub objects: usize,
    pub tiers: BTreeMap<String, TierSummary>,
    /// Objects the rehearsal restore could not apply, and what its verification found.
    pub restore_problems: Vec<String>,
    /// What the rehearsal left out on purpose (scratch-cluster mode).
    pub left_out: Vec<String>,
    pub verdicts: Vec<Verdict>,
    pub tally: Tally,
    /// Why the drill failed, one line per cause, each naming the object or binding.
    pub failures: Vec<String>,
    /// Volumes restored from their cloud snapshots in the scratch cluster, and whether
    /// each new disk holds the snapshot's data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<VolumeData>,
}

/// One volume a scratch drill restored from its cloud snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeData {
    pub pv: String,
    pub snapshot: String,
    /// The drill's own disk, created from the snapshot (never production's).
    pub disk: String,
    pub check: DataCheck,
}

impl DrillReport {
    /// The verdicts that fail the drill.
    pub fn failing_verdicts(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.status.fails())
    }
}

/// Why a drill could not be run or recorded (a drill that runs and fails is a report).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("failed to start the shadow cluster for the rehearsal: {0}")]
    Shadow(std::io::Error),
    #[error("failed to connect to the shadow cluster: {0}")]
    Connect(#[from] crate::k8s::connect::ConnectError),
    #[error("failed to record the drill report in the store: {0}")]
    Record(#[from] StoreError),
    #[error("failed to read drill report {id}: {source}")]
    Read {
        id: String,
        source: format::FormatError,
    },
    #[error("failed to list snapshots for the drill: {0}")]
    Snapshots(#[from] read::ReadError),
    #[error("failed to find a snapshot to drill in {0}: take one with `coldstart snapshot`")]
    NoSnapshot(String),
}

/// A new drill id: UTC time (so ids sort by age) and a random suffix, in the snapshot-id
/// grammar.
pub fn new_drill_id(now: DateTime<Utc>) -> String {
    format::new_snapshot_id(now)
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// The newest complete snapshot's id.
pub async fn newest_snapshot(store: &Store, keys: &Keys) -> Result<String, DrillError> {
    read::list(store, keys)
        .await?
        .into_iter()
        .max_by_key(|m| m.started_at)
        .map(|m| m.id)
        .ok_or_else(|| DrillError::NoSnapshot(store.url().to_owned()))
}

/// Whether a scheduled drill is due (for `coldstart serve`): never run, or the last one
/// started `every` or longer ago. A clock that went backwards is not a reason to drill.
pub fn is_due(
    last_started: Option<DateTime<Utc>>,
    every: chrono::Duration,
    now: DateTime<Utc>,
) -> bool {
    last_started.is_none_or(|last| now - last >= every)
}

/// Run one drill of snapshot `snapshot_id` and record its report in the store.
pub async fn run_drill(
    store: &Store,
    keys: &Keys,
    snapshot_id: &str,
    opts: &DrillOptions,
    verifier: &dyn CloudVerifier,
    progress: &Arc<Mutex<Progress>>,
) -> Result<DrillReport, DrillError> {
    let started_at = Utc::now();
    let id = new_drill_id(started_at);
    let mut steps = Vec::new();
    let mut failures = Vec::new();

    // 1. The snapshot, read and verified in full.
    let t = Instant::now();
    let opened = read::open(store, keys, snapshot_id).await;
    let (snap, bindings, cluster) = match opened {
        Ok(s) => {
            steps.push(DrillStep {
                name: "verify-snapshot".into(),
                ok: true,
                ms: ms(t),
                detail: format!(
                    "{} objects, {} packs, {} bytes read and verified",
                    s.object_count(),
                    s.manifest.packs.len(),
                    s.bytes_read
                ),
            });
            let b = s.bindings().clone();
            let c = s.manifest.cluster.name.clone();
            (Some(s), b, c)
        }
        Err(e) => {
            steps.push(DrillStep {
                name: "verify-snapshot".into(),
                ok: false,
                ms: ms(t),
                detail: e.to_string(),
            });
            failures.push(format!("snapshot {snapshot_id} does not verify: {e}"));
            // The bindings can still be checked if the manifest reads.
            match read::manifest(store, keys, snapshot_id).await {
                Ok(m) => (None, m.bindings, m.cluster.name),
                Err(_) => (None, Bindings::default(), String::new()),
            }
        }
    };

    // 2. The rehearsal restore.
    let mut rehearsal: Option<RestoreReport> = None;
    let mut left_out = Vec::new();
    let mut data = Vec::new();
    let target_label = match &opts.target {
        DrillTarget::Shadow => "shadow".to_owned(),
        DrillTarget::Cluster { label, .. } => label.clone(),
    };
    if let Some(snap) = &snap {
        let t = Instant::now();
        let src = source::from_snapshot(snap);
        let outcome = match &opts.target {
            DrillTarget::Shadow => {
                rehearse_in_shadow(&id, &src, &bindings, &opts.restore, progress).await
            }
            DrillTarget::Cluster { client, .. } => match rehearsal::for_scratch_cluster(&src).await
            {
                Ok((src, out)) => {
                    left_out = out;
                    let ropts = RestoreOptions {
                        scale_operators: false,
                        // The drill's disks from cloud snapshots are its own, never a
                        // production restore's.
                        disk_tag: Some(format!("drill-{id}")),
                        ..opts.restore.clone()
                    };
                    restore::run(client, &src, &ropts, progress)
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            },
        };
        // The data of every volume restored from its cloud snapshot, checked on the
        // drill's own new disk.
        if let (Ok(r), DrillTarget::Cluster { client, .. }) = (&outcome, &opts.target) {
            let t = Instant::now();
            let restored: Vec<_> = r
                .data
                .iter()
                .filter_map(|d| Some((d, d.new_disk.as_ref()?, d.snapshot.as_ref()?)))
                .collect();
            if !restored.is_empty() {
                let provider =
                    crate::cloud::snapshots::provider(opts.restore.cloud, Some(client.clone()))
                        .await;
                for (d, disk, snap) in restored {
                    let check = match &provider {
                        Some(p) => p
                            .check_data(disk, snap)
                            .await
                            .unwrap_or_else(|e| DataCheck::Differs(e.to_string())),
                        None => DataCheck::Unverifiable("no cloud to ask (--cloud none)".into()),
                    };
                    if let DataCheck::Differs(why) = &check {
                        failures.push(format!(
                            "data of PV {} restored from cloud snapshot {snap}: {why}",
                            d.pv
                        ));
                    }
                    data.push(VolumeData {
                        pv: d.pv.clone(),
                        snapshot: snap.clone(),
                        disk: disk.clone(),
                        check,
                    });
                }
                let matched = data
                    .iter()
                    .filter(|v| v.check == DataCheck::Matches)
                    .count();
                steps.push(DrillStep {
                    name: "verify-data".into(),
                    ok: data
                        .iter()
                        .all(|v| !matches!(v.check, DataCheck::Differs(_))),
                    ms: ms(t),
                    detail: format!(
                        "{matched} of {} volumes restored from cloud snapshots hold the snapshot's data",
                        data.len()
                    ),
                });
            }
        }
        match outcome {
            Ok(r) => {
                for f in &r.failures {
                    failures.push(format!(
                        "rehearsal restore: {} ({}): {}",
                        f.object,
                        f.tier.name(),
                        f.reason
                    ));
                }
                for p in &r.verification.problems {
                    failures.push(format!("rehearsal restore: {p}"));
                }
                if !r.succeeded && r.failures.is_empty() && r.verification.problems.is_empty() {
                    failures.push(format!(
                        "rehearsal restore: provisioned {} new disks, {} new addresses, {} new buckets",
                        r.new_disks, r.new_ips, r.new_buckets
                    ));
                }
                steps.push(DrillStep {
                    name: "rehearse-restore".into(),
                    ok: r.succeeded,
                    ms: ms(t),
                    detail: format!(
                        "{} objects into {target_label} in {} ms; volumes {}/{}, addresses {}/{}, buckets {}/{} reused; new: {} disks, {} addresses, {} buckets",
                        r.objects,
                        r.rto_ms,
                        r.volumes_reused,
                        r.verification.volumes_expected,
                        r.ips_reused,
                        r.verification.ips_expected,
                        r.buckets_reused,
                        r.verification.buckets_expected,
                        r.new_disks,
                        r.new_ips,
                        r.new_buckets
                    ),
                });
                rehearsal = Some(r);
            }
            Err(e) => {
                failures.push(format!("rehearsal restore could not run: {e}"));
                steps.push(DrillStep {
                    name: "rehearse-restore".into(),
                    ok: false,
                    ms: ms(t),
                    detail: e,
                });
            }
        }
    }

    // 3. The bindings against the cloud.
    let t = Instant::now();
    let verdicts = verifier.verify(&bindings).await;
    let tally = Tally::of(&verdicts);
    failures.extend(
        verdicts
            .iter()
            .filter(|v| v.status.fails())
            .map(Verdict::line),
    );
    steps.push(DrillStep {
        name: "verify-bindings".into(),
        ok: tally.failing() == 0,
        ms: ms(t),
        detail: format!(
            "{} bindings on {}: {} ok, {} in use by production, {} unprotected, {} missing, {} in use elsewhere, {} moved, {} unverifiable",
            verdicts.len(),
            verifier.name(),
            tally.ok,
            tally.in_use,
            tally.unprotected,
            tally.missing,
            tally.in_use_elsewhere,
            tally.moved,
            tally.unverifiable
        ),
    });

    // 4. The report, sealed into the store.
    let passed = failures.is_empty() && steps.iter().all(|s| s.ok);
    let report = DrillReport {
        id,
        snapshot: snapshot_id.to_owned(),
        cluster,
        started_at,
        finished_at: Utc::now(),
        passed,
        target: target_label,
        cloud: verifier.name().to_owned(),
        steps,
        rto_ms: rehearsal.as_ref().map(|r| r.rto_ms),
        rpo_s: rehearsal.as_ref().map(|r| r.rpo_s),
        hydration_ms: rehearsal.as_ref().map(|r| r.hydration_ms),
        objects: rehearsal.as_ref().map_or(0, |r| r.objects),
        tiers: rehearsal
            .as_ref()
            .map(|r| {
                r.tiers
                    .iter()
                    .map(|(t, c)| {
                        (
                            t.name().to_owned(),
                            TierSummary {
                                total: c.total,
                                created: c.created,
                                existing: c.existing,
                                updated: c.updated,
                                failed: c.failed,
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        restore_problems: rehearsal
            .as_ref()
            .map(|r| {
                r.failures
                    .iter()
                    .map(|f| format!("{}: {}", f.object, f.reason))
                    .chain(r.verification.problems.iter().cloned())
                    .collect()
            })
            .unwrap_or_default(),
        left_out,
        verdicts,
        tally,
        failures,
        data,
    };
    record(store, keys, &report).await?;
    tracing::info!(drill = %report.id, snapshot = %report.snapshot, passed = report.passed,
        rto_ms = ?report.rto_ms, "drill finished");
    Ok(report)
}

/// Restore `src` into a fresh in-process simulated cluster whose cloud holds stand-ins for
/// the snapshot's disks, addresses and buckets; stop it afterwards.
async fn rehearse_in_shadow(
    id: &str,
    src: &restore::RestoreSource,
    bindings: &Bindings,
    opts: &RestoreOptions,
    progress: &Arc<Mutex<Progress>>,
) -> Result<RestoreReport, String> {
    let shadow = Sim::new(SimConfig {
        cluster_name: format!("drill-{id}"),
        ..Default::default()
    });
    rehearsal::install_stand_ins(&mut shadow.cloud.lock(), bindings);
    let running = sim::start(shadow, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| DrillError::Shadow(e).to_string())?;
    // The shadow's cloud is simulated: its ledger shows anything the rehearsal created.
    let opts = &RestoreOptions {
        cloud: crate::cloud::CloudChoice::Sim,
        ..opts.clone()
    };
    let result = async {
        let dir = tempfile::tempdir().map_err(|e| DrillError::Shadow(e).to_string())?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, running.kubeconfig())
            .map_err(|e| DrillError::Shadow(e).to_string())?;
        let client = crate::k8s::connect::connect(Some(&kubeconfig), None)
            .await
            .map_err(|e| DrillError::Connect(e).to_string())?;
        restore::run(&client, src, opts, progress)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    running.stop().await;
    result
}

/// Seal a drill report into the store.
pub async fn record(store: &Store, keys: &Keys, report: &DrillReport) -> Result<(), DrillError> {
    let sealed = format::encode_json(keys, Role::Report, report);
    store
        .put(&layout::drill(&report.id), Bytes::from(sealed))
        .await?;
    Ok(())
}

/// Every drill report in the store, oldest first: the status page's drill history.
pub async fn history(store: &Store, keys: &Keys) -> Result<Vec<DrillReport>, DrillError> {
    let ids = store.ids(layout::DRILLS).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(load(store, keys, &id).await?);
    }
    out.sort_by_key(|r| r.started_at);
    Ok(out)
}

/// One drill report.
pub async fn load(store: &Store, keys: &Keys, id: &str) -> Result<DrillReport, DrillError> {
    let sealed = store.get(&layout::drill(id)).await?;
    format::decode_json(keys, Role::Report, &sealed, &format!("drill report {id}")).map_err(
        |source| DrillError::Read {
            id: id.to_owned(),
            source,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{Kind, Status};

    fn report(id: &str, passed: bool) -> DrillReport {
        DrillReport {
            id: id.into(),
            snapshot: "20250101T000000000Z-aaaaaaaa".into(),
            cluster: "prod".into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            passed,
            target: "shadow".into(),
            cloud: "none".into(),
            steps: vec![],
            rto_ms: Some(1200),
            rpo_s: Some(60),
            hydration_ms: None,
            objects: 10,
            tiers: BTreeMap::new(),
            restore_problems: vec![],
            left_out: vec![],
            verdicts: vec![Verdict {
                kind: Kind::Volume,
                subject: "pv-1".into(),
                target: "vol-1".into(),
                status: Status::Missing,
                reason: "gone".into(),
                holders: vec![],
            }],
            tally: Tally::default(),
            failures: vec![],
            data: vec![],
        }
    }

    #[test]
    fn a_scheduled_drill_is_due_when_never_run_or_its_interval_has_passed() {
        let now = Utc::now();
        let day = chrono::Duration::hours(24);
        let cases = [
            ("never run", None, true),
            (
                "ran an hour ago",
                Some(now - chrono::Duration::hours(1)),
                false,
            ),
            ("ran exactly a day ago", Some(now - day), true),
            ("several runs missed", Some(now - day * 5), true),
            (
                "clock went backwards",
                Some(now + chrono::Duration::hours(1)),
                false,
            ),
        ];
        for (name, last, want) in cases {
            assert_eq!(is_due(last, day, now), want, "{name}");
        }
    }

    #[tokio::test]
    async fn drill_reports_are_sealed_in_the_store_and_listed_oldest_first() {
        let store = Store::memory();
        let keys = Keys::from_master(&[3; 32]);
        let a = report("20250101T000000000Z-00000001", true);
        let mut b = report("20250102T000000000Z-00000002", false);
        b.started_at = a.started_at + chrono::Duration::seconds(5);
        record(&store, &keys, &b).await.unwrap();
        record(&store, &keys, &a).await.unwrap();
        let all = history(&store, &keys).await.unwrap();
        assert_eq!(all, vec![a.clone(), b]);
        assert_eq!(all[1].failing_verdicts().count(), 1);
        let wrong = history(&store, &Keys::from_master(&[4; 32])).await;
        assert!(
            matches!(wrong, Err(DrillError::Read { .. })),
            "sealed with the store's key"
        );
    }
}
