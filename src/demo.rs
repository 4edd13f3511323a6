//! `coldstart demo`: the whole story on a laptop. A simulated cluster and cloud seeded with
//! a multi-tenant data platform, a local encrypted snapshot store, then audit → stop →
//! cluster deleted → start, and a verdict: the same disks (with their data), addresses,
//! DNS names and buckets before and after, and nothing new in the cloud's ledger.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audit::{self, Finding};
use crate::lifecycle::{self, StartOptions, StartReport, StopOptions, StopReport};
use crate::progress::Progress;
use crate::restore::RestoreOptions;
use crate::snapshot::crypto::Keys;
use crate::snapshot::write;
use crate::store::Store;
use coldstart_sim::cloud::{Cloud, CloudState};
use coldstart_sim::control_plane::launch::Launched;
use coldstart_sim::seed::{self, Seed};
use coldstart_sim::{self as sim, Running, Sim, SimConfig};

/// Which API server the demo's cluster has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlPlane {
    /// coldstart's simulated API server, with the simulated cloud in the same process.
    #[default]
    Embedded,
    /// Kubernetes' own (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok,
    /// from `$COLDSTART_KUBE_BIN`), with the simulated cloud's controllers beside it.
    Kubernetes,
}

/// The demo's cluster and cloud, kept running for `--keep`; [`DemoCluster::stop`] ends it.
#[derive(Debug)]
pub enum DemoCluster {
    Embedded { sim: Arc<Sim>, running: Running },
    Kubernetes(Box<Launched>),
}

impl DemoCluster {
    async fn start(plane: ControlPlane) -> Result<Self, DemoError> {
        Ok(match plane {
            ControlPlane::Embedded => {
                let sim = Sim::new(SimConfig {
                    cluster_name: "demo".into(),
                    ..Default::default()
                });
                seed::load(&sim, Seed::Platform);
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                let running = sim::start(sim.clone(), addr)
                    .await
                    .map_err(DemoError::Start)?;
                DemoCluster::Embedded { sim, running }
            }
            ControlPlane::Kubernetes => {
                let bin = sim::control_plane::locate_binaries()
                    .map_err(|e| DemoError::Launch(e.to_string()))?;
                let launched = Launched::start(
                    sim::control_plane::Config::new("demo", bin),
                    Arc::new(Cloud::default()),
                    Seed::Platform,
                )
                .await
                .map_err(|e| DemoError::Launch(e.to_string()))?;
                DemoCluster::Kubernetes(Box::new(launched))
            }
        })
    }

    pub fn url(&self) -> String {
        match self {
            DemoCluster::Embedded { running, .. } => running.url(),
            DemoCluster::Kubernetes(l) => l.url.clone(),
        }
    }

    async fn kubeconfig(&self) -> String {
        match self {
            DemoCluster::Embedded { running, .. } => running.kubeconfig(),
            DemoCluster::Kubernetes(l) => l.kubeconfig().await,
        }
    }

    fn cloud(&self) -> CloudState {
        match self {
            DemoCluster::Embedded { sim, .. } => sim.cloud.snapshot(),
            DemoCluster::Kubernetes(l) => l.cloud.snapshot(),
        }
    }

    async fn teardown(&self) -> Result<(), DemoError> {
        match self {
            DemoCluster::Embedded { sim, .. } => {
                sim.teardown();
                Ok(())
            }
            DemoCluster::Kubernetes(l) => {
                l.teardown().await.map(|_| ()).map_err(DemoError::Teardown)
            }
        }
    }

    pub async fn stop(self) {
        match self {
            DemoCluster::Embedded { running, .. } => running.stop().await,
            DemoCluster::Kubernetes(l) => l.shutdown().await,
        }
    }
}

/// What the demo shows as it goes: each step, as it starts and ends.
pub trait Narrator: Send + Sync {
    fn step(&self, title: &str);
    fn done(&self, summary: &str, elapsed: Duration);
}

/// A narrator that says nothing (tests, `--json`).
#[derive(Debug)]
pub struct Quiet;

impl Narrator for Quiet {
    fn step(&self, _: &str) {}
    fn done(&self, _: &str, _: Duration) {}
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the snapshot store and the kubeconfig go.
    pub dir: PathBuf,
    pub settle_timeout: Duration,
    pub control_plane: ControlPlane,
}

/// A cloud resource before and after.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Row {
    pub kind: &'static str,
    pub name: String,
    pub before: String,
    pub after: String,
    pub same: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub verified: bool,
    pub rows: Vec<Row>,
    pub volumes_reused: usize,
    pub ips_reused: usize,
    pub buckets_reused: usize,
    pub dns_names_same: usize,
    pub new_disks: usize,
    pub new_ips: usize,
    pub new_buckets: usize,
    pub objects_restored: usize,
    pub findings_before_stop: usize,
    pub changes_made_by_stop: usize,
    pub snapshot: String,
    pub rto_ms: u64,
    pub rpo_s: i64,
    pub phase_ms: BTreeMap<String, u64>,
    pub kubeconfig: String,
    pub store: String,
    #[serde(skip)]
    pub findings: Vec<Finding>,
    #[serde(skip)]
    pub stop: Option<StopReport>,
    #[serde(skip)]
    pub start: Option<StartReport>,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("failed to start the simulated cluster: {0}")]
    Start(std::io::Error),
    #[error("failed to start the Kubernetes control plane: {0}")]
    Launch(String),
    #[error("failed to tear the cluster down: {0}")]
    Teardown(String),
    #[error("failed to read the cluster's workloads: {0}")]
    Workloads(kube::Error),
    #[error("failed to prepare {0}: {1}")]
    Prepare(String, String),
    #[error("the simulated platform did not settle within {0:?}")]
    Settle(Duration),
    #[error(transparent)]
    Connect(#[from] crate::k8s::connect::ConnectError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Lifecycle(#[from] lifecycle::LifecycleError),
}

/// Resource inventory of the cloud, keyed for comparison.
fn rows_of(cloud: &CloudState) -> BTreeMap<(&'static str, String), String> {
    let mut m = BTreeMap::new();
    for d in cloud.disks.values() {
        m.insert(
            ("disk", d.id.clone()),
            format!("{} ({}, data {:?})", d.id, d.zone, d.data_token),
        );
    }
    for lb in cloud.load_balancers.values() {
        m.insert(("address", lb.service.clone()), lb.ip.clone());
    }
    for r in cloud.dns.values() {
        m.insert(("dns", r.name.clone()), r.target.clone());
    }
    for b in cloud.buckets.values() {
        m.insert(
            ("bucket", b.name.clone()),
            format!("{} (data {:?})", b.name, b.data_token),
        );
    }
    m
}

/// Settled: every load balancer up and every StatefulSet ready (read through the API, so
/// the same on either control plane).
async fn settled(cluster: &DemoCluster, client: &kube::Client) -> Result<bool, DemoError> {
    if cluster.cloud().load_balancers.len() < 4 {
        return Ok(false);
    }
    let api: kube::Api<k8s_openapi::api::apps::v1::StatefulSet> = kube::Api::all(client.clone());
    let list = api
        .list(&Default::default())
        .await
        .map_err(DemoError::Workloads)?;
    Ok(list.items.iter().all(|s| {
        let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        s.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            == want
    }))
}

async fn wait_settled(
    cluster: &DemoCluster,
    client: &kube::Client,
    timeout: Duration,
) -> Result<(), DemoError> {
    let deadline = Instant::now() + timeout;
    while !settled(cluster, client).await? {
        if Instant::now() > deadline {
            return Err(DemoError::Settle(timeout));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the last status writes land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// Run the demo; the cluster stays up in the returned [`DemoCluster`] (for `--keep`).
pub async fn run(
    opts: &DemoOptions,
    narrator: &dyn Narrator,
    progress: &Arc<Mutex<Progress>>,
) -> Result<(DemoReport, DemoCluster), DemoError> {
    let prep =
        |what: &str, e: &dyn std::fmt::Display| DemoError::Prepare(what.to_owned(), e.to_string());
    std::fs::create_dir_all(&opts.dir).map_err(|e| prep(&opts.dir.display().to_string(), &e))?;
    let mut phase_ms = BTreeMap::new();

    let t = Instant::now();
    narrator.step("starting a simulated cluster and cloud with the `platform` seed");
    let cluster = DemoCluster::start(opts.control_plane).await?;
    let kubeconfig = opts.dir.join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig().await).map_err(|e| prep("kubeconfig", &e))?;
    let client = crate::k8s::connect::connect(Some(&kubeconfig), None).await?;
    wait_settled(&cluster, &client, opts.settle_timeout).await?;
    let cloud = cluster.cloud();
    narrator.done(
        &format!(
            "demo at {}: {} disks, {} load balancers, {} DNS names, {} buckets",
            cluster.url(),
            cloud.disks.len(),
            cloud.load_balancers.len(),
            cloud.dns.len(),
            cloud.buckets.len()
        ),
        t.elapsed(),
    );
    phase_ms.insert("setup".into(), t.elapsed().as_millis() as u64);

    let store_dir = opts.dir.join("store");
    std::fs::create_dir_all(&store_dir).map_err(|e| prep("store", &e))?;
    let store_url = format!("file://{}", store_dir.display());
    let store = Store::open(&store_url).map_err(|e| prep("store", &e))?;
    // A fresh key per demo run; a real installation keeps its key outside the cluster.
    let key: [u8; 32] = rand::random();
    let keys = Keys::from_master(&key);

    let t = Instant::now();
    narrator.step("audit: what would be lost if this cluster were deleted now?");
    let inputs = audit::collect(&client, None).await?;
    let findings: Vec<Finding> =
        audit::audit(&inputs, chrono::Utc::now(), Duration::from_secs(900));
    narrator.done(&format!("{} findings", findings.len()), t.elapsed());
    phase_ms.insert("audit".into(), t.elapsed().as_millis() as u64);

    let t = Instant::now();
    narrator.step("stop: make nothing losable, quiesce apps → operators → data, final snapshot");
    let stop_opts = StopOptions {
        snapshot: write::Options {
            cluster_name: "demo".into(),
            server: cluster.url(),
            ..Default::default()
        },
        quiesce_timeout: Duration::from_secs(60),
        // The same cloud preflight as `coldstart stop` on a simulated cluster.
        cloud: crate::cloud::CloudChoice::Sim,
        ..Default::default()
    };
    let stopped = lifecycle::stop(&client, &store, &keys, &stop_opts, progress).await?;
    narrator.done(
        &format!(
            "{} changes, {} workloads quiesced, snapshot {} ({} objects)",
            stopped.changes.len(),
            stopped
                .steps
                .iter()
                .map(|s| s.workloads.len())
                .sum::<usize>(),
            stopped.snapshot.as_deref().unwrap_or("?"),
            stopped.snapshot_objects
        ),
        t.elapsed(),
    );
    phase_ms.insert("stop".into(), t.elapsed().as_millis() as u64);
    let before = cluster.cloud();

    let t = Instant::now();
    narrator.step("deleting the cluster the way a cloud does (nodes, objects, load balancers)");
    cluster.teardown().await?;
    let mark = cluster.cloud().position();
    narrator.done(
        &format!("a new, empty cluster answers at {}", cluster.url()),
        t.elapsed(),
    );

    let t = Instant::now();
    narrator.step("start: restore behind the gate, verify, bring data → operators → apps back");
    let start_opts = StartOptions {
        restore: RestoreOptions {
            verify_timeout: Duration::from_secs(60),
            cloud: crate::cloud::CloudChoice::Sim,
            ..Default::default()
        },
        snapshot: None,
        ready_timeout: Duration::from_secs(60),
        consent: Default::default(),
    };
    let started = lifecycle::start(&client, &store, &keys, &start_opts, progress).await?;
    narrator.done(
        &format!(
            "{} objects restored, verification {}",
            started.restore.objects,
            if started.restore.succeeded {
                "passed"
            } else {
                "FAILED"
            }
        ),
        t.elapsed(),
    );
    phase_ms.insert("start".into(), t.elapsed().as_millis() as u64);

    let after_cloud = cluster.cloud();
    let created = after_cloud.created_since(mark);
    let (b, a) = (rows_of(&before), rows_of(&after_cloud));
    let mut rows = Vec::new();
    for (key, before_v) in &b {
        let after_v = a.get(key).cloned().unwrap_or_else(|| "(gone)".to_owned());
        rows.push(Row {
            kind: key.0,
            name: key.1.clone(),
            same: *before_v == after_v,
            before: before_v.clone(),
            after: after_v,
        });
    }
    for (key, after_v) in &a {
        if !b.contains_key(key) {
            rows.push(Row {
                kind: key.0,
                name: key.1.clone(),
                before: "(none)".into(),
                after: after_v.clone(),
                same: false,
            });
        }
    }
    let r = &started.restore;
    let report = DemoReport {
        verified: r.succeeded
            && rows.iter().all(|x| x.same)
            && created.disks + created.ips + created.buckets == 0,
        dns_names_same: rows.iter().filter(|x| x.kind == "dns" && x.same).count(),
        rows,
        volumes_reused: r.volumes_reused,
        ips_reused: r.ips_reused,
        buckets_reused: r.buckets_reused,
        new_disks: r.new_disks.max(created.disks),
        new_ips: r.new_ips.max(created.ips),
        new_buckets: r.new_buckets.max(created.buckets),
        objects_restored: r.objects,
        findings_before_stop: findings.len(),
        changes_made_by_stop: stopped.changes.len(),
        snapshot: started.snapshot.clone(),
        rto_ms: started.rto_ms,
        rpo_s: r.rpo_s,
        phase_ms,
        kubeconfig: kubeconfig.display().to_string(),
        store: store_url,
        findings,
        stop: Some(stopped),
        start: Some(started),
    };
    Ok((report, cluster))
}
