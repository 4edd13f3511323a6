//! Carrying out a plan against a cluster: tier by tier (each a barrier), many creates in
//! flight within a tier (the client's retry layer rides out 429 and 5xx), CRDs watched
//! until `Established`,
//! existing objects skipped or updated, every object's outcome recorded. Re-running after a
//! crash converges: what exists is skipped, what is missing is created.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use serde::Serialize;
use serde_json::{Value, json};

use super::plan::{ORIGINAL_OWNERS, Plan, Planned, Tier};
use crate::k8s::{self, K8sError, Resources};
use crate::progress::Progress;

/// What to do with an object that already exists in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Existing {
    /// Leave it as it is (recorded as `existing`).
    #[default]
    Skip,
    /// Replace it with the snapshot's version.
    Update,
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Creates in flight within a tier.
    pub concurrency: usize,
    pub existing: Existing,
    /// How long to wait for CRDs to become Established.
    pub crd_timeout: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            // Enough to keep an API server busy without tripping its max-in-flight limit
            // (400 mutating requests by default).
            concurrency: 64,
            existing: Existing::Skip,
            crd_timeout: Duration::from_secs(60),
        }
    }
}

/// One object's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome", content = "reason")]
pub enum ObjectOutcome {
    Created,
    Existing,
    Updated,
    Failed(String),
}

/// Counts for one tier.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TierCounts {
    pub total: usize,
    pub created: usize,
    pub existing: usize,
    pub updated: usize,
    pub failed: usize,
}

/// A failed object, with why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub object: String,
    pub tier: Tier,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub tiers: BTreeMap<Tier, TierCounts>,
    pub failures: Vec<Failure>,
    pub owners_relinked: usize,
}

impl ApplyReport {
    pub fn objects(&self) -> usize {
        self.tiers.values().map(|t| t.total).sum()
    }
}

/// Why applying could not even proceed (per-object failures are in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Discovery(#[from] K8sError),
    #[error("failed to wait for CRDs to become Established: {0} not established after {1:?}")]
    CrdTimeout(String, Duration),
    #[error("failed to wait for CRD {0} to become Established: {1}")]
    CrdWatch(String, #[source] k8s::wait::WaitError),
}

/// The API for a planned object, if the cluster serves its type.
pub fn api_of(
    client: &kube::Client,
    resources: &Resources,
    p: &Planned,
) -> Option<Api<DynamicObject>> {
    resources.api(client, &p.api_version, &p.kind, p.namespace.as_deref())
}

async fn apply_one(
    client: &kube::Client,
    resources: &Resources,
    p: &Planned,
    opts: &ApplyOptions,
) -> ObjectOutcome {
    let Some(api) = api_of(client, resources, p) else {
        return ObjectOutcome::Failed(format!(
            "{} {} is not served by this cluster (missing CRD or API)",
            p.api_version, p.kind
        ));
    };
    let obj: DynamicObject = match serde_json::from_value(p.object.clone()) {
        Ok(o) => o,
        Err(e) => return ObjectOutcome::Failed(format!("failed to decode object: {e}")),
    };
    let pp = PostParams {
        field_manager: Some("coldstart".into()),
        ..Default::default()
    };
    // 429s and 5xx are retried by the client's retry layer, within its budget.
    match api.create(&pp, &obj).await {
        Ok(_) => ObjectOutcome::Created,
        Err(kube::Error::Api(s)) if s.code == 409 => match opts.existing {
            Existing::Skip => ObjectOutcome::Existing,
            Existing::Update => {
                let patch = Patch::Apply(&p.object);
                let params = PatchParams::apply("coldstart").force();
                match api.patch(&p.name, &params, &patch).await {
                    Ok(_) => ObjectOutcome::Updated,
                    Err(e) => ObjectOutcome::Failed(format!(
                        "failed to update existing object: {}",
                        k8s::describe(&e)
                    )),
                }
            }
        },
        Err(e) => ObjectOutcome::Failed(k8s::describe(&e)),
    }
}

/// Wait until every CRD in `crds` is Established (watched, not polled), within `timeout`
/// overall.
async fn wait_established(
    client: &kube::Client,
    crds: &[Planned],
    timeout: Duration,
) -> Result<(), ApplyError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for p in crds {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match k8s::wait::until(api.clone(), &p.name, left, conditions::is_crd_established()).await {
            Ok(_) => {}
            Err(k8s::wait::WaitError::Timeout(_)) => {
                return Err(ApplyError::CrdTimeout(p.name.clone(), timeout));
            }
            Err(e) => return Err(ApplyError::CrdWatch(p.name.clone(), e)),
        }
    }
    Ok(())
}

/// Apply every tier of `plan`, in order. `resources` is the run's discovery; it is
/// refreshed once the CRDs tier is Established, since custom resources are only servable
/// then.
pub async fn apply(
    client: &kube::Client,
    resources: &mut Resources,
    plan: &Plan,
    opts: &ApplyOptions,
    progress: &Arc<Mutex<Progress>>,
) -> Result<ApplyReport, ApplyError> {
    let mut report = ApplyReport::default();
    for tier in Tier::ALL {
        let Some(items) = plan.tiers.get(&tier) else {
            continue;
        };
        if let Ok(mut p) = progress.lock() {
            p.start_tier(tier, items.len());
        }
        // Indices, not `iter()`, so the future stays `Send` for callers that spawn it.
        let results: Vec<(usize, ObjectOutcome)> = futures::stream::iter(0..items.len())
            .map(|i| {
                let p = &items[i];
                let resources = &*resources;
                async move { (i, apply_one(client, resources, p, opts).await) }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .inspect(|(_, o)| {
                if let Ok(mut p) = progress.lock() {
                    p.object_done(tier, matches!(o, ObjectOutcome::Failed(_)));
                }
            })
            .collect()
            .await;
        let counts = report.tiers.entry(tier).or_default();
        counts.total = items.len();
        for (i, outcome) in results {
            match outcome {
                ObjectOutcome::Created => counts.created += 1,
                ObjectOutcome::Existing => counts.existing += 1,
                ObjectOutcome::Updated => counts.updated += 1,
                ObjectOutcome::Failed(reason) => {
                    counts.failed += 1;
                    report.failures.push(Failure {
                        object: items[i].key(),
                        tier,
                        reason,
                    });
                }
            }
        }
        if tier == Tier::Crds {
            wait_established(client, items, opts.crd_timeout).await?;
            // Custom resources are only discoverable once their CRDs are served.
            *resources = Resources::discover(client).await?;
        }
    }
    report.owners_relinked = relink_owners(client, resources, plan).await;
    Ok(report)
}

/// Give parked owner references their owners' new uids, now that owners exist.
async fn relink_owners(client: &kube::Client, resources: &Resources, plan: &Plan) -> usize {
    let mut uids: HashMap<(String, String, Option<String>, String), String> = HashMap::new();
    let mut relinked = 0;
    for p in plan.tiers.values().flatten() {
        let Some(parked) = p
            .object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ORIGINAL_OWNERS))
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str::<Vec<Value>>(s).ok())
        else {
            continue;
        };
        let mut refs = Vec::new();
        for r in parked {
            let (Some(av), Some(kind), Some(name)) = (
                r["apiVersion"].as_str(),
                r["kind"].as_str(),
                r["name"].as_str(),
            ) else {
                continue;
            };
            let owner = Planned {
                tier: p.tier,
                api_version: av.to_owned(),
                kind: kind.to_owned(),
                namespace: p.namespace.clone(),
                name: name.to_owned(),
                object: Value::Null,
                transforms: Vec::new(),
                operator: false,
            };
            let key = (
                av.to_owned(),
                kind.to_owned(),
                p.namespace.clone(),
                name.to_owned(),
            );
            let uid = match uids.get(&key) {
                Some(u) => Some(u.clone()),
                None => match api_of(client, resources, &owner) {
                    // An owner that was not restored (404) leaves the reference parked, as
                    // it was recorded; any other failure is logged and leaves it parked too:
                    // relinking is best effort and changes nothing verification counts.
                    Some(api) => match api.get_opt(name).await {
                        Ok(o) => o.and_then(|o| o.metadata.uid),
                        Err(e) => {
                            tracing::warn!(owner = name, error = %k8s::describe(&e), "failed to read an owner to relink");
                            None
                        }
                    },
                    None => None,
                },
            };
            if let Some(uid) = uid {
                uids.insert(key, uid.clone());
                let mut r = r.clone();
                r["uid"] = json!(uid);
                refs.push(r);
            }
        }
        if refs.is_empty() {
            continue;
        }
        let Some(api) = api_of(client, resources, p) else {
            continue;
        };
        let patch =
            json!({"metadata": {"ownerReferences": refs, "annotations": {ORIGINAL_OWNERS: null}}});
        let patch = Patch::Merge(&patch);
        let params = PatchParams::default();
        if api.patch(&p.name, &params, &patch).await.is_ok() {
            relinked += 1;
        }
    }
    relinked
}
