//! Cold-start restore: bring a snapshot back into a fresh cluster so the platform resumes
//! "as though it had never been down" — same disks with their data, same addresses and DNS
//! names, same buckets — and prove that nothing new was provisioned.
//!
//! Lifecycle of one restore:
//!
//! ```text
//!  verified snapshot ─▶ preflight (every binding against the cloud; refuse, or hold
//!        what uses an accepted missing one) ─▶ plan (pure: tiers + transforms + holds)
//!        ─▶ install gate ─▶ apply tiers ─▶ relink owners ─▶ verify (bound disks,
//!        addresses, buckets, nothing new) ─▶ lift gate (but for held concerns)
//!        ─▶ scale operators up in order ─▶ report (RTO, RPO, counts, held)
//! ```
//!
//! The snapshot is verified in full before this module sees it (every pack, blob and tree;
//! [`crate::snapshot::read::open_stored`] keeps only where each object lies), and the
//! preflight runs before the first write, so a bad snapshot or a missing disk changes
//! nothing. Then each tier is read back from the store, planned in batches and applied as
//! it streams: memory holds a few packs and the objects in flight, never the snapshot. If
//! verification fails the gate stays up: nothing new can be created while someone looks.

pub mod apply;
pub mod data_policy;
pub mod gate;
pub mod plan;
pub mod source;
pub mod target;
pub mod verify;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use self::apply::{ApplyOptions, ApplyReport, Failure, TierCounts};
use futures::StreamExt as _;
use futures::stream::BoxStream;

use self::plan::{ORIGINAL_MANAGEMENT, ORIGINAL_REPLICAS, Plan, PlanOptions, Planned, Tier};
use self::verify::Verification;
use crate::bindings::Bindings;
use crate::cloud::{self, CloudChoice};
use crate::k8s::{self, Resources};
use crate::preflight::{self, AcceptMissing, Preflight};
use crate::progress::Progress;

/// A volume the snapshot recorded: its PV, the disk behind it, the claim it served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedVolume {
    pub pv: String,
    pub disk: String,
    pub claim: Option<(String, String)>,
    /// The cloud snapshot the disk was created from by data policy (it is new, on
    /// purpose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_snapshot: Option<String>,
}

/// The address a LoadBalancer Service answered on when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedAddress {
    pub namespace: String,
    pub name: String,
    pub ip: String,
    pub allocation_id: Option<String>,
    pub hostnames: Vec<String>,
}

/// The bucket a claim was bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedBucket {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub bucket: String,
}

/// What a restore must reuse, from the snapshot's bindings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub volumes: Vec<RecordedVolume>,
    pub addresses: Vec<RecordedAddress>,
    pub buckets: Vec<RecordedBucket>,
}

/// A verified snapshot, ready to restore.
#[derive(Debug, Clone)]
pub struct RestoreSource {
    pub snapshot_id: String,
    pub taken_at: DateTime<Utc>,
    pub objects: source::Objects,
    pub recorded: Recorded,
    /// Every binding the snapshot recorded, as the cloud is asked about them.
    pub bindings: Bindings,
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub plan: PlanOptions,
    pub apply: ApplyOptions,
    /// Install the admission gate (turning it off exists to show what goes wrong).
    pub gate: bool,
    /// How long verification waits for claims to bind and addresses to appear.
    pub verify_timeout: Duration,
    /// How long to wait for each operator to become ready after scaling it up.
    pub operator_timeout: Duration,
    /// Scale operators up after verification (a `start` does it itself, in order).
    pub scale_operators: bool,
    /// The cloud the preflight checks bindings against (`None`: every one unverifiable).
    pub cloud: CloudChoice,
    /// Broken bindings to start without; any other one refuses the restore.
    pub accept_missing: AcceptMissing,
    /// Fast Snapshot Restore, initialization rate: how disks restored from snapshots
    /// hydrate.
    pub hydration: data_policy::HydrationOptions,
    /// How long a latency-critical volume restored from a snapshot is waited for to
    /// hydrate before the restore reports (its workloads wait with it).
    pub hydration_timeout: Duration,
    /// Names this restore in the tags of the disks it creates from cloud snapshots, so a
    /// re-run finds them (default: the snapshot id; a drill uses its own id).
    pub disk_tag: Option<String>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            plan: PlanOptions::default(),
            apply: ApplyOptions::default(),
            gate: true,
            verify_timeout: Duration::from_secs(120),
            operator_timeout: Duration::from_secs(120),
            scale_operators: true,
            cloud: CloudChoice::None,
            accept_missing: AcceptMissing::default(),
            hydration: data_policy::HydrationOptions::default(),
            hydration_timeout: Duration::from_secs(600),
            disk_tag: None,
        }
    }
}

/// What a restore reports (`restore --json`).
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub succeeded: bool,
    pub objects: usize,
    pub tiers: BTreeMap<Tier, TierCounts>,
    pub failures: Vec<Failure>,
    pub owners_relinked: usize,
    /// Where the adaptive limit on creates in flight went (initial, lowest, highest, last).
    pub concurrency: Option<crate::k8s::concurrency::Range>,
    pub gate: String,
    pub operators_scaled_up: Vec<String>,
    /// Wall time of the restore, milliseconds.
    pub rto_ms: u64,
    /// Age of the snapshot when the restore finished, seconds.
    pub rpo_s: i64,
    pub volumes_reused: usize,
    pub ips_reused: usize,
    pub buckets_reused: usize,
    pub new_disks: usize,
    pub new_ips: usize,
    pub new_buckets: usize,
    /// Volumes brought back on a new disk from their cloud snapshot, by data policy.
    pub volumes_from_snapshot: usize,
    /// Per volume: transfer or from snapshot, and why.
    pub data: Vec<data_policy::VolumeDecision>,
    /// Hydration still ahead when the restore finished (the longest of its disks), ms.
    pub hydration_ms: u64,
    /// The RTO counting hydration: until every disk runs at full speed, ms.
    pub rto_with_hydration_ms: u64,
    pub verification: Verification,
    /// Every binding as the cloud saw it before the first write, and what was held.
    pub preflight: Preflight,
    /// Verified, but workloads are held for accepted missing bindings: exit code 3.
    pub partly_up: bool,
    pub phase_ms: BTreeMap<String, u64>,
}

/// Why a restore could not run at all (per-object failures are in the report).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "failed to learn coldstart's own identity (SelfSubjectReview): {0}; is the cluster reachable and Kubernetes ≥ 1.28?"
    )]
    WhoAmI(kube::Error),
    #[error(transparent)]
    Gate(#[from] gate::GateError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error(transparent)]
    Target(#[from] target::TargetError),
    #[error("failed to read or record restore state in kube-system/coldstart-restore: {0}")]
    State(kube::Error),
    #[error(transparent)]
    Cloud(#[from] cloud::VerifierError),
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    #[error(
        "failed to bring back {0}, held by an earlier restore: {1}; scale it to its coldstart.dev/original-replicas by hand"
    )]
    Release(String, kube::Error),
    #[error(
        "failed to give ResourceQuota {0} back its limits: {1}; set its spec.hard from its coldstart.dev/original-quota-hard annotation by hand, or run the restore again"
    )]
    Quota(String, kube::Error),
    #[error("refused at preflight, nothing was written: {}", .0.refusal())]
    Refused(Box<Preflight>),
    #[error(transparent)]
    Snapshot(#[from] cloud::snapshots::SnapshotError),
}

/// ConfigMap recording a restore's state in the cluster (cold-start detection reads it).
pub const STATE_CONFIGMAP: &str = "coldstart-restore";

/// Where a restore stands, as [`STATE_CONFIGMAP`] records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePhase {
    /// Started and not finished: interrupted, if nothing is running it.
    Restoring,
    /// Finished and verified: the cluster is warm.
    Verified,
    /// Finished and not verified: the gate is still up.
    Failed,
}

impl RestorePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RestorePhase::Restoring => "restoring",
            RestorePhase::Verified => "verified",
            RestorePhase::Failed => "failed",
        }
    }

    /// The phase a recorded value names. A value this version does not know (written by
    /// another one) is not "verified", so it counts as a restore that did not finish well.
    pub fn parse(s: &str) -> Self {
        match s {
            "verified" => RestorePhase::Verified,
            "restoring" => RestorePhase::Restoring,
            _ => RestorePhase::Failed,
        }
    }
}

/// The phase the last restore into this cluster recorded (None: no restore ever ran here).
pub async fn recorded_phase(client: &kube::Client) -> Result<Option<RestorePhase>, kube::Error> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "kube-system");
    Ok(api
        .get_opt(STATE_CONFIGMAP)
        .await?
        .and_then(|c| c.data)
        .and_then(|d| d.get("phase").map(|p| RestorePhase::parse(p))))
}

/// A restore that has not finished in this cluster, as its state record and gate say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unfinished {
    /// The state record's phase (`restoring`, `failed`), or None with only a gate up.
    pub phase: Option<String>,
    /// The snapshot being restored, if recorded.
    pub snapshot: Option<String>,
    /// Gate policies still installed.
    pub gate: Vec<String>,
}

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.phase, &self.snapshot) {
            (Some(p), Some(s)) => write!(f, "a restore of snapshot {s} is {p}")?,
            (Some(p), None) => write!(f, "a restore is {p}")?,
            (None, _) => write!(f, "a restore left its admission gate up")?,
        }
        if !self.gate.is_empty() {
            write!(f, " (gate installed: {})", self.gate.join(", "))?;
        }
        Ok(())
    }
}

/// Judge (pure) whether a restore is unfinished: its record says it is still `restoring`
/// (running, or killed), or its gate is still up (a failed verification keeps it up until
/// someone has looked and lifted it).
pub fn judge_unfinished(
    record: Option<&BTreeMap<String, String>>,
    gate: Vec<String>,
) -> Option<Unfinished> {
    let phase = record.and_then(|d| d.get("phase")).cloned();
    let snapshot = record.and_then(|d| d.get("snapshot")).cloned();
    let running = phase.as_deref() == Some("restoring");
    (running || !gate.is_empty()).then(|| Unfinished {
        phase: phase.filter(|_| running),
        snapshot,
        gate,
    })
}

/// Observe the restore state record and the gate, and judge whether a restore is
/// unfinished in this cluster (a snapshot now would capture a half-restored cluster).
pub async fn unfinished(client: &kube::Client) -> Result<Option<Unfinished>, RestoreError> {
    let record =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "kube-system")
            .get_opt(STATE_CONFIGMAP)
            .await
            .map_err(RestoreError::State)?
            .and_then(|c| c.data);
    let gate = match gate::status(client).await {
        // A cluster that does not serve ValidatingAdmissionPolicy cannot hold a gate.
        Err(gate::GateError::List(kube::Error::Api(e))) if e.code == 404 => Vec::new(),
        other => other?,
    };
    Ok(judge_unfinished(record.as_ref(), gate))
}

/// The username the cluster knows coldstart by.
pub async fn whoami(client: &kube::Client) -> Result<String, RestoreError> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("authentication.k8s.io", "v1", "SelfSubjectReview"),
        "selfsubjectreviews",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let review: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}
    }))
    .map_err(|e| RestoreError::WhoAmI(kube::Error::SerdeError(e)))?;
    let out = api
        .create(&Default::default(), &review)
        .await
        .map_err(RestoreError::WhoAmI)?;
    // The review answered: an absent username (an anonymous identity) exempts nobody
    // from the gate, which is the safe side.
    Ok(out
        .data
        .pointer("/status/userInfo/username")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

async fn record_state(client: &kube::Client, data: Value) -> Result<(), RestoreError> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "kube-system");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": STATE_CONFIGMAP, "labels": {"app.kubernetes.io/managed-by": "coldstart"}},
        "data": data});
    api.patch(
        STATE_CONFIGMAP,
        &PatchParams::apply("coldstart").force(),
        &Patch::Apply(&cm),
    )
    .await
    .map_err(RestoreError::State)?;
    Ok(())
}

/// Objects parsed and planned together, ahead of the creates in flight: the batch is what a
/// tier holds parsed beyond them. 500 Deployments parsed are ~25 MiB of `Value`s, the
/// restore's highest peaks (docs/benchmarks.md); 100 keep a batch to a few MiB.
const PLAN_BATCH: usize = 100;

/// One tier of `source`, read and planned in batches as the caller pulls it, each batch
/// passed through `adjust` (a restore applies its preflight's holds there). A restore and
/// `restore --dry-run` both stream a tier this way: a whole plan in memory is several times
/// the snapshot's size.
pub fn plan_tier<'a>(
    source: &'a RestoreSource,
    opts: &'a PlanOptions,
    tier: Tier,
    adjust: impl Fn(&mut Plan) + Send + 'a,
) -> BoxStream<'a, Result<Planned, crate::snapshot::read::ReadError>> {
    let recorded = plan::RecordedIndex::new(&source.recorded);
    source
        .objects
        .read(move |t| t == tier)
        .chunks(PLAN_BATCH)
        .flat_map(move |batch| {
            let planned = batch
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map(|objects| {
                    let mut plan = plan::plan_with(objects, &recorded, opts);
                    adjust(&mut plan);
                    plan.tiers.into_values().flatten().collect::<Vec<Planned>>()
                });
            match planned {
                Ok(items) => futures::stream::iter(items.into_iter().map(Ok)).left_stream(),
                Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
            }
        })
        .boxed()
}

/// One tier of `source`, read and planned as the apply pulls it: the preflight's holds
/// applied, withheld objects left out.
fn tier_objects<'a>(
    source: &'a RestoreSource,
    opts: &'a PlanOptions,
    pre: &'a Preflight,
    tier: Tier,
) -> apply::TierObjects<'a> {
    apply::TierObjects {
        count: source.objects.count(|t| t == tier),
        planned: plan_tier(source, opts, tier, move |plan| pre.hold(plan))
            .map(|p| p.map_err(apply::ApplyError::from))
            .boxed(),
    }
}

/// Restore `source` into the cluster `client` points at (discovering what it serves).
pub async fn run(
    client: &kube::Client,
    source: &RestoreSource,
    opts: &RestoreOptions,
    progress: &Arc<Mutex<Progress>>,
) -> Result<RestoreReport, RestoreError> {
    let mut resources = Resources::discover(client)
        .await
        .map_err(apply::ApplyError::from)?;
    run_in(client, &mut resources, source, opts, progress).await
}

/// Restore `source` with the run's discovery, which is refreshed once CRDs are in (so the
/// caller can go on using it: `start` scales workloads with it).
pub async fn run_in(
    client: &kube::Client,
    resources: &mut Resources,
    source: &RestoreSource,
    opts: &RestoreOptions,
    progress: &Arc<Mutex<Progress>>,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let mut phase_ms = BTreeMap::new();
    let mut mark = |name: &str, since: &mut Instant| {
        phase_ms.insert(name.to_owned(), since.elapsed().as_millis() as u64);
        *since = Instant::now();
    };
    let mut t = Instant::now();
    set_phase(progress, "preflight");
    // Everything known before the first write: a binding that is gone is refused (or
    // accepted and held) now, never waited for.
    let verifier = cloud::verifier(opts.cloud, Some(client.clone())).await?;
    let pre =
        preflight::check_source(client, verifier.as_ref(), source, &opts.accept_missing).await?;
    if !pre.refused().is_empty() {
        return Err(RestoreError::Refused(Box::new(pre)));
    }
    let me = whoami(client).await?;
    // Per volume: its disk, or a new one from its cloud snapshot. The new disks exist
    // before the ledger mark below, so they are new by policy, never by accident.
    let mut data = data_policy::decide_all(
        &source.bindings.volumes,
        &pre,
        verifier.name(),
        &opts.hydration,
    );
    let snapshots = if data
        .iter()
        .any(|d| d.source == data_policy::DataSource::FromSnapshot)
    {
        set_phase(progress, "restoring disks from snapshots");
        cloud::snapshots::provider(opts.cloud, Some(client.clone())).await
    } else {
        None
    };
    let rewritten;
    let source = if snapshots.is_some() {
        data_policy::materialize(
            snapshots.as_deref(),
            &source.bindings.volumes,
            &mut data,
            opts.disk_tag.as_deref().unwrap_or(&source.snapshot_id),
            &opts.hydration,
        )
        .await?;
        rewritten = data_policy::rewrite(source, &data);
        &rewritten
    } else {
        source
    };
    let hydrating_since = Instant::now();
    // Where the cloud's ledger stands before the first write: what it creates after this
    // mark is new.
    let ledger_mark = verifier
        .ledger()
        .await
        .map_err(verify::VerifyError::from)?
        .map(|l| l.position());
    record_state(
        client,
        json!({"snapshot": source.snapshot_id, "phase": RestorePhase::Restoring.as_str(),
        "startedAt": Utc::now().to_rfc3339()}),
    )
    .await?;
    mark("preflight", &mut t);
    let gate_state = if opts.gate {
        set_phase(progress, "installing gate");
        gate::install(client, &me).await?;
        "installed".to_owned()
    } else {
        "disabled".to_owned()
    };
    mark("gate", &mut t);
    // Each tier is read from the store, planned and applied as it streams: the snapshot
    // was verified whole above, and only what later steps need of each object is kept.
    let (applied, plan): (ApplyReport, Plan) = apply::apply(
        client,
        resources,
        |tier| tier_objects(source, &opts.plan, &pre, tier),
        &opts.apply,
        progress,
    )
    .await?;
    mark("apply", &mut t);
    set_phase(progress, "verifying");
    let scope = pre.verify_scope(&source.recorded);
    let verification = verify::verify(
        client,
        resources,
        &scope,
        verifier.as_ref(),
        ledger_mark,
        opts.verify_timeout,
    )
    .await?;
    mark("verify", &mut t);
    if verification.ok()
        && let Some(snapshots) = snapshots.as_deref()
    {
        set_phase(progress, "waiting for latency-critical volumes to hydrate");
        data_policy::wait_hydrated(snapshots, &data, opts.hydration_timeout).await?;
        mark("hydration", &mut t);
    }
    let succeeded = verification.ok() && applied.failures.is_empty();
    let mut operators = Vec::new();
    let gate_final = if succeeded {
        if opts.gate {
            set_phase(progress, "lifting gate");
            gate::lift_except(client, &kept_policies(&pre)).await?;
        }
        restore_management(client, resources, &plan).await;
        release_held(client, resources, &plan).await?;
        // A start brings the workloads back itself, in order, and then the quotas.
        if opts.scale_operators {
            put_back_quotas(client).await?;
        }
        if opts.scale_operators {
            set_phase(progress, "scaling operators up");
            operators = scale_operators_up(client, resources, &plan, opts.operator_timeout).await;
        }
        mark("operators", &mut t);
        if opts.gate {
            match kept_policies(&pre) {
                kept if kept.is_empty() => "lifted".to_owned(),
                kept => format!(
                    "lifted but for {}: bindings accepted as missing",
                    kept.join(", ")
                ),
            }
        } else {
            gate_state
        }
    } else if opts.gate {
        "kept up: verification failed".to_owned()
    } else {
        gate_state
    };
    record_state(
        client,
        json!({"snapshot": source.snapshot_id,
        "phase": if succeeded { RestorePhase::Verified } else { RestorePhase::Failed }.as_str(),
        "finishedAt": Utc::now().to_rfc3339()}),
    )
    .await?;
    if let Ok(mut p) = progress.lock() {
        p.finish(succeeded);
    }
    Ok(RestoreReport {
        snapshot: source.snapshot_id.clone(),
        succeeded,
        objects: applied.objects(),
        tiers: applied.tiers.clone(),
        failures: applied.failures.clone(),
        owners_relinked: applied.owners_relinked,
        concurrency: applied.concurrency,
        gate: gate_final,
        operators_scaled_up: operators,
        rto_ms: started.elapsed().as_millis() as u64,
        rpo_s: (Utc::now() - source.taken_at).num_seconds(),
        volumes_reused: verification.volumes_reused,
        ips_reused: verification.ips_reused,
        buckets_reused: verification.buckets_reused,
        new_disks: verification.new_disks,
        new_ips: verification.new_ips,
        new_buckets: verification.new_buckets,
        volumes_from_snapshot: verification.volumes_from_snapshot,
        hydration_ms: data_policy::hydration_left(&data, hydrating_since.elapsed()),
        rto_with_hydration_ms: started.elapsed().as_millis() as u64
            + data_policy::hydration_left(&data, hydrating_since.elapsed()),
        data,
        verification,
        partly_up: succeeded && pre.degraded(),
        preflight: pre,
        phase_ms,
    })
}

/// Reads of existing workloads in flight while releasing held ones: a re-run over a cluster
/// that is mostly there already checks every workload it found existing, and one at a time
/// that is ~10k sequential round trips at 100k objects.
const RELEASE_IN_FLIGHT: usize = 16;

/// Bring back the workloads an earlier, degraded run held and this one does not: a re-run
/// once the missing binding is back is how a partly-up cluster becomes whole. Only the
/// workloads this run found existing are read ([`apply::keep`]): one it created is what it
/// sent.
async fn release_held(
    client: &kube::Client,
    resources: &Resources,
    plan: &Plan,
) -> Result<usize, RestoreError> {
    let Some(workloads) = plan.tiers.get(&Tier::Workloads) else {
        return Ok(0);
    };
    // Held in this run: its object carries the annotation already. The futures are made
    // before they are driven: a stream of closures over borrowed objects, held across an
    // await, makes the caller's future not provably `Send`.
    let mut checks = Vec::new();
    for p in workloads {
        let held_now = p
            .object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(preflight::HELD))
            .is_some();
        if !held_now {
            checks.push(release_one(client, resources, p));
        }
    }
    let released: Vec<Result<bool, RestoreError>> = futures::stream::iter(checks)
        .buffer_unordered(RELEASE_IN_FLIGHT)
        .collect()
        .await;
    let mut n = 0;
    for r in released {
        n += usize::from(r?);
    }
    Ok(n)
}

/// Give every ResourceQuota the restore parked (`plan::ORIGINAL_QUOTA`) its limits back, once
/// its namespace's workloads have their pods again; returns how many.
pub async fn put_back_quotas(client: &kube::Client) -> Result<usize, RestoreError> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "ResourceQuota"),
        "resourcequotas",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let quota = |name: &str, e| RestoreError::Quota(name.to_owned(), e);
    let parked = |q: &Value| {
        q.pointer("/metadata/annotations")
            .and_then(|a| a.get(plan::ORIGINAL_QUOTA))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    // Page by page, keeping only the quotas a restore parked: a namespace per tenant has
    // its quota, and most were never parked.
    let quotas = k8s::list_kept(&api, &Default::default(), ("v1", "ResourceQuota"), |q| {
        parked(q).is_some()
    })
    .await
    .map_err(|e| quota("(list)", e))?;
    let mut n = 0;
    for q in quotas {
        let Some(hard) = parked(&q) else {
            continue;
        };
        let at = |f: &str| q.pointer(f).and_then(Value::as_str).unwrap_or_default();
        let (name, ns) = (at("/metadata/name"), at("/metadata/namespace"));
        let key = format!("{ns}/{name}");
        let hard: Value =
            serde_json::from_str(&hard).map_err(|e| quota(&key, kube::Error::SerdeError(e)))?;
        let patch = json!({"spec": {"hard": hard},
                           "metadata": {"annotations": {plan::ORIGINAL_QUOTA: null}}});
        Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(client.clone(), ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| quota(&key, e))?;
        n += 1;
    }
    Ok(n)
}

/// Release one workload if its live object is held; true if it was.
async fn release_one(
    client: &kube::Client,
    resources: &Resources,
    p: &Planned,
) -> Result<bool, RestoreError> {
    let Some(api) = apply::api_of(client, resources, p) else {
        return Ok(false);
    };
    let what = || format!("{} {}", p.kind, p.key());
    let Some(live) = api
        .get_opt(&p.name)
        .await
        .map_err(|e| RestoreError::Release(what(), e))?
    else {
        return Ok(false);
    };
    let live = serde_json::to_value(&live)
        .map_err(|e| RestoreError::Release(what(), kube::Error::SerdeError(e)))?;
    let Some(patch) = preflight::release_patch(&p.kind, &live) else {
        return Ok(false);
    };
    api.patch(&p.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| RestoreError::Release(what(), e))?;
    Ok(true)
}

/// The gate policies a degraded restore keeps up: one per kind of binding held.
fn kept_policies(pre: &Preflight) -> Vec<&'static str> {
    pre.held_concerns()
        .into_iter()
        .filter_map(gate::policy_for)
        .collect()
}

fn set_phase(progress: &Arc<Mutex<Progress>>, phase: &str) {
    if let Ok(mut p) = progress.lock() {
        p.phase(phase);
    }
}

/// Scale every operator back to its recorded replicas, one at a time, waiting (watching)
/// for each to be ready. An operator that cannot be scaled or is not ready in time is left
/// for the report's reader: the restore itself has already been verified.
async fn scale_operators_up(
    client: &kube::Client,
    resources: &Resources,
    plan: &Plan,
    timeout: Duration,
) -> Vec<String> {
    let mut done = Vec::new();
    for op in plan.operators() {
        let replicas: i64 = op
            .object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ORIGINAL_REPLICAS))
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let Some(api) = apply::api_of(client, resources, op) else {
            continue;
        };
        let patch = json!({"spec": {"replicas": replicas}, "metadata": {"annotations": {ORIGINAL_REPLICAS: null}}});
        if let Err(e) = api
            .patch(&op.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(operator = %op.key(), error = %e, "failed to scale an operator up");
            continue;
        }
        let ready = |o: Option<&DynamicObject>| {
            o.and_then(|d| {
                d.data
                    .pointer("/status/readyReplicas")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(0)
                >= replicas
        };
        if let Err(e) = k8s::wait::until(api, &op.name, timeout, ready).await {
            tracing::warn!(operator = %op.key(), error = %e, "operator not ready; going on to the next");
        }
        done.push(format!(
            "{}/{}",
            op.namespace.as_deref().unwrap_or(""),
            op.name
        ));
    }
    done
}

/// Give adopted managed resources back their original management and deletion policies.
async fn restore_management(client: &kube::Client, resources: &Resources, plan: &Plan) -> usize {
    let mut n = 0;
    for p in plan.tiers.values().flatten() {
        let Some(original) = p
            .object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ORIGINAL_MANAGEMENT))
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
        else {
            continue;
        };
        let Some(api) = apply::api_of(client, resources, p) else {
            continue;
        };
        let patch =
            json!({"spec": original, "metadata": {"annotations": {ORIGINAL_MANAGEMENT: null}}});
        match api
            .patch(&p.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => n += 1,
            Err(e) => {
                tracing::warn!(object = %p.key(), error = %e, "failed to give back original management")
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_restore_is_unfinished_while_it_records_restoring_or_its_gate_is_up() {
        let gate = || vec!["coldstart-restore-gate".to_owned()];
        let restoring = record(&[("phase", "restoring"), ("snapshot", "s1")]);
        let failed = record(&[("phase", "failed"), ("snapshot", "s1")]);
        let verified = record(&[("phase", "verified"), ("snapshot", "s1")]);
        type Record<'a> = Option<&'a BTreeMap<String, String>>;
        let cases: [(&str, Record<'_>, Vec<String>, bool); 6] = [
            ("no restore ever", None, vec![], false),
            ("running or killed", Some(&restoring), vec![], true),
            ("failed, gate kept up", Some(&failed), gate(), true),
            ("failed, gate lifted by hand", Some(&failed), vec![], false),
            ("verified", Some(&verified), vec![], false),
            ("a gate without a record", None, gate(), true),
        ];
        for (name, rec, gate, unfinished) in cases {
            assert_eq!(judge_unfinished(rec, gate).is_some(), unfinished, "{name}");
        }
        let u = judge_unfinished(Some(&restoring), vec![]).expect("unfinished");
        assert_eq!(u.to_string(), "a restore of snapshot s1 is restoring");
    }

    fn names(planned: &[Planned]) -> Vec<String> {
        planned.iter().map(Planned::key).collect()
    }

    #[tokio::test]
    async fn each_tier_is_read_and_planned_on_its_own_with_holds_applied() {
        use crate::testing::{deployment, pv, pvc};
        let source = RestoreSource {
            snapshot_id: "s".into(),
            taken_at: Utc::now(),
            objects: source::Objects::Loaded(vec![
                deployment("shop", "web").replicas(3).build(),
                pv("pv-1").reclaim("Delete").build(),
                pvc("shop", "data").build(),
                pvc("shop", "gone").build(),
            ]),
            recorded: Recorded {
                volumes: vec![RecordedVolume {
                    pv: "pv-1".into(),
                    disk: "vol-1".into(),
                    claim: Some(("shop".into(), "data".into())),
                    from_snapshot: None,
                }],
                ..Default::default()
            },
            bindings: Default::default(),
        };
        let pre = Preflight {
            withheld: vec![preflight::Withheld {
                group: String::new(),
                kind: "PersistentVolumeClaim".into(),
                namespace: Some("shop".into()),
                name: "gone".into(),
                because: "its disk is gone".into(),
            }],
            ..Default::default()
        };
        let opts = PlanOptions::default();
        let (source, opts, pre) = (&source, &opts, &pre);
        let read = |tier| async move {
            let t = tier_objects(source, opts, pre, tier);
            let planned: Vec<Planned> = t.planned.map(|p| p.expect("planned")).collect().await;
            (t.count, planned)
        };
        // A tier yields its own objects only, each planned (the PV retained, the claim
        // pre-bound), the withheld one left out; tiers with nothing yield nothing.
        let (count, claims) = read(Tier::PersistentVolumeClaims).await;
        assert_eq!(count, 2, "the count is what the snapshot holds");
        assert_eq!(names(&claims), ["v1/PersistentVolumeClaim/shop/data"]);
        assert_eq!(claims[0].object["spec"]["volumeName"], "pv-1");
        let (_, volumes) = read(Tier::PersistentVolumes).await;
        assert_eq!(names(&volumes), ["v1/PersistentVolume/pv-1"]);
        assert_eq!(
            volumes[0].object["spec"]["persistentVolumeReclaimPolicy"],
            "Retain"
        );
        let (_, workloads) = read(Tier::Workloads).await;
        assert_eq!(names(&workloads), ["apps/v1/Deployment/shop/web"]);
        let (count, none) = read(Tier::Crds).await;
        assert_eq!((count, none.len()), (0, 0));
    }

    #[test]
    fn after_the_apply_only_what_later_steps_read_is_kept_of_an_object() {
        use crate::testing::{deployment, service};
        let planned = |obj: Value| {
            plan::plan(vec![obj], &Recorded::default(), &PlanOptions::default())
                .tiers
                .into_values()
                .flatten()
                .next()
                .expect("planned")
        };
        let config = planned(service("shop", "web").build());
        assert!(
            apply::keep(config, true).is_none(),
            "a Service is dropped once created"
        );
        let workload = || planned(deployment("shop", "api").build());
        assert!(
            apply::keep(workload(), true).is_none(),
            "a workload this run created holds nothing of an earlier run's to release"
        );
        assert!(
            apply::keep(workload(), false).is_some(),
            "a workload that was there already may be one an earlier run held"
        );
        let owned = planned(
            deployment("shop", "web")
                .set(
                    "/metadata/ownerReferences",
                    json!([{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u"}]),
                )
                .annotation("big", &"x".repeat(10_000))
                .build(),
        );
        let kept = apply::keep(owned, true).expect("a workload with parked owners is kept");
        let annotations = kept.object["metadata"]["annotations"]
            .as_object()
            .expect("annotations");
        assert!(annotations.contains_key(plan::ORIGINAL_OWNERS));
        assert!(
            !annotations.contains_key("big"),
            "other annotations are dropped"
        );
        assert!(kept.object.get("spec").is_none(), "the spec is dropped");
    }
}
