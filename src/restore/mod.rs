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
//! The snapshot is read and verified in full before this module sees it, and the preflight
//! runs before the first write, so a bad snapshot or a missing disk changes nothing. If
//! verification fails the gate stays up: nothing new can be created while someone looks.

pub mod apply;
pub mod gate;
pub mod plan;
pub mod progress;
pub mod source;
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
use self::plan::{ORIGINAL_MANAGEMENT, ORIGINAL_REPLICAS, Plan, PlanOptions, Tier};
use self::progress::Progress;
use self::verify::Verification;
use crate::bindings::Bindings;
use crate::cloud::{self, Provider};
use crate::preflight::{self, AcceptMissing, Preflight};

/// A volume the snapshot recorded: its PV, the disk behind it, the claim it served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedVolume {
    pub pv: String,
    pub disk: String,
    pub claim: Option<(String, String)>,
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

/// A verified, decrypted snapshot, ready to restore.
#[derive(Debug, Clone)]
pub struct RestoreSource {
    pub snapshot_id: String,
    pub taken_at: DateTime<Utc>,
    pub objects: Vec<Value>,
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
    pub cloud: Provider,
    /// Broken bindings to start without; any other one refuses the restore.
    pub accept_missing: AcceptMissing,
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
            cloud: Provider::None,
            accept_missing: AcceptMissing::default(),
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
    #[error("failed to record restore state in kube-system/coldstart-restore: {0}")]
    State(kube::Error),
    #[error(transparent)]
    Verifier(#[from] cloud::VerifierError),
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    #[error(
        "failed to bring back {0}, held by an earlier restore: {1}; scale it to its coldstart.dev/original-replicas by hand"
    )]
    Release(String, kube::Error),
    #[error("refused at preflight, nothing was written: {}", .0.refusal())]
    Refused(Box<Preflight>),
}

/// ConfigMap recording a restore's state in the cluster (cold-start detection reads it).
pub const STATE_CONFIGMAP: &str = "coldstart-restore";

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

/// Plan a restore without touching a cluster.
pub fn plan_for(source: &RestoreSource, opts: &PlanOptions) -> Plan {
    plan::plan(source.objects.clone(), &source.recorded, opts)
}

/// Restore `source` into the cluster `client` points at.
pub async fn run(
    client: &kube::Client,
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
    let mut plan = plan_for(source, &opts.plan);
    pre.hold(&mut plan);
    let ledger = verify::sim_ledger_position(client).await;
    record_state(
        client,
        json!({"snapshot": source.snapshot_id, "phase": "restoring",
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
    let applied: ApplyReport = apply::apply(client, &plan, &opts.apply, progress).await?;
    mark("apply", &mut t);
    set_phase(progress, "verifying");
    let scope = pre.verify_scope(&source.recorded);
    let verification = verify::verify(client, &scope, ledger, opts.verify_timeout).await;
    mark("verify", &mut t);
    let succeeded = verification.ok() && applied.failures.is_empty();
    let mut operators = Vec::new();
    let gate_final = if succeeded {
        if opts.gate {
            set_phase(progress, "lifting gate");
            gate::lift_except(client, &kept_policies(&pre)).await?;
        }
        restore_management(client, &plan).await;
        release_held(client, &plan).await?;
        if opts.scale_operators {
            set_phase(progress, "scaling operators up");
            operators = scale_operators_up(client, &plan, opts.operator_timeout).await;
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
        "phase": if succeeded { "verified" } else { "failed" },
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
        verification,
        partly_up: succeeded && pre.degraded(),
        preflight: pre,
        phase_ms,
    })
}

/// Bring back the workloads an earlier, degraded run held and this one does not: a re-run
/// once the missing binding is back is how a partly-up cluster becomes whole.
async fn release_held(client: &kube::Client, plan: &Plan) -> Result<usize, RestoreError> {
    let Some(workloads) = plan.tiers.get(&Tier::Workloads) else {
        return Ok(0);
    };
    let map = apply::discover(client).await?;
    let mut n = 0;
    for p in workloads {
        // Held in this run: its object carries the annotation already.
        if p.object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(preflight::HELD))
            .is_some()
        {
            continue;
        }
        let Some(api) = apply::api_of(client, &map, p) else {
            continue;
        };
        let what = || format!("{} {}", p.kind, p.key());
        let Some(live) = api
            .get_opt(&p.name)
            .await
            .map_err(|e| RestoreError::Release(what(), e))?
        else {
            continue;
        };
        let live = serde_json::to_value(&live)
            .map_err(|e| RestoreError::Release(what(), kube::Error::SerdeError(e)))?;
        let Some(patch) = preflight::release_patch(&p.kind, &live) else {
            continue;
        };
        api.patch(&p.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| RestoreError::Release(what(), e))?;
        n += 1;
    }
    Ok(n)
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

/// Scale every operator back to its recorded replicas, one at a time, waiting for each.
async fn scale_operators_up(client: &kube::Client, plan: &Plan, timeout: Duration) -> Vec<String> {
    let Ok(map) = apply::discover(client).await else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for op in plan.operators() {
        let replicas: i64 = op
            .object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ORIGINAL_REPLICAS))
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let Some(api) = apply::api_of(client, &map, op) else {
            continue;
        };
        let patch = json!({"spec": {"replicas": replicas}, "metadata": {"annotations": {ORIGINAL_REPLICAS: null}}});
        if api
            .patch(&op.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .is_err()
        {
            continue;
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let ready = api.get(&op.name).await.ok().and_then(|d| {
                d.data
                    .pointer("/status/readyReplicas")
                    .and_then(Value::as_i64)
            });
            if ready.unwrap_or(0) >= replicas {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
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
async fn restore_management(client: &kube::Client, plan: &Plan) -> usize {
    let Ok(map) = apply::discover(client).await else {
        return 0;
    };
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
        let Some(api) = apply::api_of(client, &map, p) else {
            continue;
        };
        let patch =
            json!({"spec": original, "metadata": {"annotations": {ORIGINAL_MANAGEMENT: null}}});
        if api
            .patch(&p.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .is_ok()
        {
            n += 1;
        }
    }
    n
}
