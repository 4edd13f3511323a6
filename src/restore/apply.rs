//! Carrying out a plan against a cluster: tier by tier (each a barrier), each tier's objects
//! applied as they are read and planned (nothing waits for the whole tier in memory), many
//! creates in flight within a tier under an adaptive limit ([`crate::k8s::concurrency`]:
//! grows while the server keeps up, halves on 429 and APF rejections; the client's retry
//! layer rides out each 429 and 5xx), CRDs watched until `Established`, existing objects
//! skipped or updated, every object's outcome recorded. Of each object only what the steps
//! after the apply need is kept ([`keep`]). Re-running after a crash converges: what exists
//! is skipped, what is missing is created.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use serde::Serialize;
use serde_json::{Value, json};

use super::plan::{ORIGINAL_MANAGEMENT, ORIGINAL_OWNERS, ORIGINAL_REPLICAS, Plan, Planned, Tier};
use crate::k8s::concurrency::{self, Adaptive};
use crate::k8s::{self, K8sError, Resources};
use crate::preflight::HELD;
use crate::progress::Progress;
use crate::snapshot::read::ReadError;

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
    /// The most creates in flight within a tier; the number in flight adapts below it.
    pub concurrency: usize,
    pub existing: Existing,
    /// How long to wait for CRDs to become Established.
    pub crd_timeout: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            // A ceiling, not a setting: the limit starts at INITIAL_CONCURRENCY and adapts
            // below it. More in flight than this bought no throughput and cost memory, on
            // both servers (docs/benchmarks.md, session 12): on kube-apiserver a ceiling of
            // 256 (the limit climbed to 155, never throttled) restored 10k ConfigMaps at
            // 1.43–1.54x the plain 64-worker client's time, 64 at 0.89–1.00x; on the embedded
            // server a 300k restore took 1.1x as long and held 18 MiB more. A larger control
            // plane can be given more with `--concurrency`.
            concurrency: INITIAL_CONCURRENCY,
            existing: Existing::Skip,
            crd_timeout: Duration::from_secs(60),
        }
    }
}

/// Creates in flight when a restore starts, and the default ceiling: what a default API
/// server handles without throttling and as many as the plain parallel-create client the
/// benchmarks compare with uses; the adaptive limit halves from there on throttling and
/// grows back.
pub const INITIAL_CONCURRENCY: usize = 64;
/// The floor the limit never halves below: a throttling server still gets some work.
const MIN_CONCURRENCY: usize = 4;

/// The adaptive limit a run's creates share, from its options.
pub fn limiter(opts: &ApplyOptions) -> Adaptive {
    let max = opts.concurrency.max(1);
    Adaptive::new(INITIAL_CONCURRENCY.min(max), MIN_CONCURRENCY.min(max), max)
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

/// What kube-apiserver's RBAC says when the restorer may not grant a role's permissions.
const RBAC_ESCALATION: &str = "is attempting to grant RBAC permissions not currently held";

/// A refusal, with what to do about it where coldstart knows.
fn with_remedy(reason: String) -> String {
    if reason.contains(RBAC_ESCALATION) {
        format!(
            "{reason}; to restore the cluster's roles and bindings coldstart's identity needs \
             `escalate` and `bind` on roles and clusterroles (deploy/base/rbac.yaml and the \
             Helm chart grant them)"
        )
    } else {
        reason
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub tiers: BTreeMap<Tier, TierCounts>,
    pub failures: Vec<Failure>,
    pub owners_relinked: usize,
    /// Where the adaptive limit on creates in flight went.
    pub concurrency: Option<concurrency::Range>,
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
    #[error(
        "failed to read the snapshot back during the restore (it verified before the first write, so the store changed or failed since): {0}"
    )]
    Read(#[from] ReadError),
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
    out: &Outgoing,
    opts: &ApplyOptions,
) -> ObjectOutcome {
    let p = &out.kept;
    let Some(api) = api_of(client, resources, p) else {
        return ObjectOutcome::Failed(format!(
            "{} {} is not served by this cluster (missing CRD or API)",
            p.api_version, p.kind
        ));
    };
    let pp = PostParams {
        field_manager: Some("coldstart".into()),
        ..Default::default()
    };
    // 429s and 5xx are retried by the client's retry layer, within its budget.
    match k8s::create_unread(client, &api, &pp, &out.body).await {
        Ok(()) => ObjectOutcome::Created,
        Err(kube::Error::Api(s)) if s.code == 409 => match opts.existing {
            Existing::Skip => ObjectOutcome::Existing,
            Existing::Update => {
                // The body is parsed again only here, for the few objects an update run
                // finds existing: what waits in flight stays serialized.
                let object: Value = match serde_json::from_slice(&out.body) {
                    Ok(o) => o,
                    Err(e) => {
                        return ObjectOutcome::Failed(format!(
                            "failed to re-read the object to update it: {e}"
                        ));
                    }
                };
                let patch = Patch::Apply(&object);
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
) -> Result<Vec<ServedKind>, ApplyError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut served = Vec::new();
    for p in crds {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match k8s::wait::until(api.clone(), &p.name, left, conditions::is_crd_established()).await {
            Ok(crd) => served.extend(crd.iter().flat_map(served_kinds)),
            Err(k8s::wait::WaitError::Timeout(_)) => {
                return Err(ApplyError::CrdTimeout(p.name.clone(), timeout));
            }
            Err(e) => return Err(ApplyError::CrdWatch(p.name.clone(), e)),
        }
    }
    Ok(served)
}

/// A kind a CRD serves, as `apiVersion` and `kind`.
type ServedKind = (String, String);

/// Every (apiVersion, kind) a CRD serves: its group at each version marked served.
fn served_kinds(crd: &CustomResourceDefinition) -> Vec<ServedKind> {
    let spec = &crd.spec;
    spec.versions
        .iter()
        .filter(|v| v.served)
        .map(|v| {
            (
                format!("{}/{}", spec.group, v.name),
                spec.names.kind.clone(),
            )
        })
        .collect()
}

/// The first of `served` that discovery does not list yet.
fn first_unserved<'a>(resources: &Resources, served: &'a [ServedKind]) -> Option<&'a ServedKind> {
    served
        .iter()
        .find(|(api_version, kind)| !resources.serves(api_version, kind))
}

/// Discovery once it lists every kind the restored CRDs serve, or at `timeout` as it is then.
/// kube-apiserver marks a CRD Established before its discovery lists the new group (another
/// controller publishes that), so one discovery run right after can miss it, and every
/// object of the kind would fail as not served (met with Strimzi's Kafka on kube-apiserver
/// 1.37). A kind still missing at the timeout fails its objects so, each named in the report.
async fn discover_serving(
    client: &kube::Client,
    served: &[ServedKind],
    timeout: Duration,
) -> Result<Resources, ApplyError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        let resources = Resources::discover(client).await?;
        let Some((api_version, kind)) = first_unserved(&resources, served) else {
            return Ok(resources);
        };
        if tokio::time::Instant::now() + pause > deadline {
            tracing::warn!(%api_version, %kind, "a restored CRD's kind is still not in discovery; its objects will fail as not served");
            return Ok(resources);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// One tier's objects, planned, as a stream: how many there are (for progress) and the
/// objects themselves, read and planned as the apply pulls them.
pub struct TierObjects<'a> {
    pub count: usize,
    pub planned: BoxStream<'a, Result<Planned, ApplyError>>,
}

/// Apply every tier, in order, each one's objects as `tier` yields them. `resources` is the
/// run's discovery; it is refreshed once the CRDs tier is Established, since custom
/// resources are only servable then. Returns the report and what was kept of each object
/// for the steps after the apply ([`keep`]).
pub async fn apply<'a>(
    client: &kube::Client,
    resources: &mut Resources,
    mut tier_objects: impl FnMut(Tier) -> TierObjects<'a>,
    opts: &ApplyOptions,
    progress: &Arc<Mutex<Progress>>,
) -> Result<(ApplyReport, Plan), ApplyError> {
    let mut report = ApplyReport::default();
    let mut kept = Plan::default();
    let limit = limiter(opts);
    for tier in Tier::ALL {
        let TierObjects { count, planned } = tier_objects(tier);
        if count == 0 {
            continue;
        }
        if let Ok(mut p) = progress.lock() {
            p.start_tier(tier, count);
        }
        apply_tier(
            client,
            resources,
            tier,
            planned,
            opts,
            &limit,
            progress,
            &mut report,
            &mut kept,
        )
        .await?;
        if tier == Tier::Crds {
            let crds = kept.tiers.get(&Tier::Crds).map_or(&[][..], Vec::as_slice);
            let served = wait_established(client, crds, opts.crd_timeout).await?;
            // Custom resources are only discoverable once their CRDs are served.
            *resources = discover_serving(client, &served, opts.crd_timeout).await?;
        }
    }
    report.owners_relinked = relink_owners(client, resources, &kept).await;
    report.concurrency = Some(limit.range(INITIAL_CONCURRENCY.min(opts.concurrency.max(1))));
    Ok((report, kept))
}

/// Apply one tier's objects as `planned` yields them, at most the adaptive limit in
/// flight; counts and failures go to `report`, what later steps need to `kept`.
#[allow(clippy::too_many_arguments)]
async fn apply_tier(
    client: &kube::Client,
    resources: &Resources,
    tier: Tier,
    planned: BoxStream<'_, Result<Planned, ApplyError>>,
    opts: &ApplyOptions,
    limit: &Adaptive,
    progress: &Arc<Mutex<Progress>>,
    report: &mut ApplyReport,
    kept: &mut Plan,
) -> Result<(), ApplyError> {
    // The buffer bounds the objects pulled ahead of the limit (each one parsed and
    // planned): the limit's ceiling, so the limit, not the buffer, decides what is in flight.
    let mut results = planned
        .map(|p| async move {
            // Serialized and stripped before it waits for a slot: up to the limit's ceiling
            // wait or fly at once, and a parsed object is several times its JSON.
            let out = Outgoing::from(p?);
            let permit = limit.acquire().await;
            let outcome = apply_one(client, resources, &out, opts).await;
            let throttled = matches!(&outcome, ObjectOutcome::Failed(r) if r.starts_with("429"));
            limit.release(permit, throttled);
            Ok::<_, ApplyError>((out.kept, outcome))
        })
        .buffer_unordered(limit.max());
    let counts = report.tiers.entry(tier).or_default();
    while let Some(done) = results.next().await {
        let (p, outcome) = done?;
        if let Ok(mut pr) = progress.lock() {
            pr.object_done(tier, matches!(outcome, ObjectOutcome::Failed(_)));
        }
        counts.total += 1;
        let created = outcome == ObjectOutcome::Created;
        match outcome {
            ObjectOutcome::Created => counts.created += 1,
            ObjectOutcome::Existing => counts.existing += 1,
            ObjectOutcome::Updated => counts.updated += 1,
            ObjectOutcome::Failed(reason) => {
                counts.failed += 1;
                report.failures.push(Failure {
                    object: p.key(),
                    tier,
                    reason: with_remedy(reason),
                });
            }
        }
        if follows_up(&p, created) {
            kept.tiers.entry(tier).or_default().push(p);
        }
    }
    Ok(())
}

/// The annotations the steps after the apply read (parked owners, adopted management,
/// recorded replicas, held workloads).
const KEPT_ANNOTATIONS: [&str; 4] = [
    ORIGINAL_OWNERS,
    ORIGINAL_MANAGEMENT,
    ORIGINAL_REPLICAS,
    HELD,
];

/// A planned object on its way to the API server: the body it sends, serialized once (a
/// parsed object is several times its JSON, and up to the limit's ceiling of them wait or
/// fly at once), and the object reduced to what [`keep`] keeps.
struct Outgoing {
    body: bytes::Bytes,
    kept: Planned,
}

impl From<Planned> for Outgoing {
    fn from(p: Planned) -> Self {
        // A `Value` always serializes: its map keys are strings and nothing in it can refuse.
        let body = serde_json::to_vec(&p.object).expect("a JSON value serializes");
        Outgoing {
            body: body.into(),
            kept: stripped(p),
        }
    }
}

/// What the steps after the apply (CRDs established, owners re-linked, management given
/// back, held workloads released, operators scaled up) need of an applied object: its
/// identity and coldstart's annotations, for the objects those steps look at — CRDs,
/// operators, objects with parked owners or adopted management, and workloads this run
/// did not create (one an earlier run held may be there, held: `created` says the object
/// is exactly what this run sent, so there is nothing of an earlier run's to release).
/// Every other object is dropped once created, so what a restore keeps grows by a few
/// hundred bytes per such object, not by the objects.
pub fn keep(p: Planned, created: bool) -> Option<Planned> {
    let p = stripped(p);
    follows_up(&p, created).then_some(p)
}

/// The object reduced to its identity and [`KEPT_ANNOTATIONS`].
fn stripped(mut p: Planned) -> Planned {
    let annotations = p
        .object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let kept: serde_json::Map<String, Value> = annotations
        .into_iter()
        .filter(|(k, _)| KEPT_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    p.object = json!({"metadata": {"annotations": kept}});
    p.transforms = Vec::new();
    p
}

/// Whether a step after the apply looks at this (stripped) object ([`keep`]).
fn follows_up(p: &Planned, created: bool) -> bool {
    let kept = |k: &str| {
        p.object
            .pointer("/metadata/annotations")
            .is_some_and(|a| a.get(k).is_some())
    };
    p.tier == Tier::Crds
        || (p.tier == Tier::Workloads && !created)
        || p.operator
        || kept(ORIGINAL_OWNERS)
        || kept(ORIGINAL_MANAGEMENT)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_waiting_for_its_create_holds_its_body_as_json_and_only_coldstarts_annotations_parsed()
     {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop",
                "annotations": {ORIGINAL_REPLICAS: "3", "note": "x".repeat(1_000)}},
            "spec": {"replicas": 0, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
        });
        let out = Outgoing::from(Planned {
            tier: Tier::Workloads,
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
            object: object.clone(),
            transforms: vec!["replicas 3 -> 0".into()],
            operator: false,
        });
        let sent: Value = serde_json::from_slice(&out.body).expect("the body is JSON");
        assert_eq!(
            sent, object,
            "the body is the whole object, annotations included"
        );
        assert_eq!(
            out.kept.object,
            json!({"metadata": {"annotations": {ORIGINAL_REPLICAS: "3"}}})
        );
        assert!(out.kept.transforms.is_empty());
        assert_eq!(out.kept.key(), "apps/v1/Deployment/shop/web");
        assert!(!follows_up(&out.kept, true) && follows_up(&out.kept, false));
    }

    #[test]
    fn a_refused_role_says_which_rbac_verbs_its_restore_needs() {
        let refused = format!(
            "403 (Forbidden): clusterroles.rbac.authorization.k8s.io \"kafka-operator\" is forbidden: user \"system:serviceaccount:coldstart:coldstart\" {RBAC_ESCALATION}"
        );
        assert!(with_remedy(refused).ends_with(
            "needs `escalate` and `bind` on roles and clusterroles (deploy/base/rbac.yaml and the Helm chart grant them)"
        ));
        assert_eq!(with_remedy("409 (Conflict)".into()), "409 (Conflict)");
    }

    fn crd(group: &str, kind: &str, versions: &[(&str, bool)]) -> CustomResourceDefinition {
        let versions: Vec<Value> = versions
            .iter()
            .map(|(name, served)| json!({"name": name, "served": served, "storage": *name == versions[0].0}))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{}s.{group}", kind.to_lowercase())},
            "spec": {"group": group, "scope": "Namespaced", "versions": versions,
                "names": {"kind": kind, "plural": format!("{}s", kind.to_lowercase())}},
        }))
        .expect("a CRD")
    }

    fn discovered(entries: &[(&str, &str, &str)]) -> Resources {
        Resources::from_resources(entries.iter().map(|(group, version, kind)| {
            let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
            (kube::core::ApiResource::from_gvk(&gvk), true)
        }))
    }

    #[test]
    fn a_restored_crds_kinds_are_waited_for_at_every_served_version_and_no_other() {
        let kafka = crd(
            "kafka.strimzi.io",
            "Kafka",
            &[("v1", true), ("v1beta2", true), ("v1beta1", false)],
        );
        let served = served_kinds(&kafka);
        assert_eq!(
            served,
            [
                ("kafka.strimzi.io/v1".to_owned(), "Kafka".to_owned()),
                ("kafka.strimzi.io/v1beta2".to_owned(), "Kafka".to_owned())
            ]
        );
        // Right after Established, discovery may list the group at one version, or not at all.
        let none = discovered(&[("apps", "v1", "Deployment")]);
        assert_eq!(first_unserved(&none, &served), Some(&served[0]));
        let one = discovered(&[("kafka.strimzi.io", "v1beta2", "Kafka")]);
        assert_eq!(first_unserved(&one, &served), Some(&served[0]));
        let both = discovered(&[
            ("kafka.strimzi.io", "v1", "Kafka"),
            ("kafka.strimzi.io", "v1beta2", "Kafka"),
        ]);
        assert_eq!(first_unserved(&both, &served), None);
    }
}
