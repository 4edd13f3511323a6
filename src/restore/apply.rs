//! Carrying out a plan against a cluster: tier by tier (each a barrier), many creates in
//! flight within a tier, backoff on 429 and 5xx, CRDs waited on until `Established`,
//! existing objects skipped or updated, every object's outcome recorded. Re-running after a
//! crash converges: what exists is skipped, what is missing is created.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::discovery::{Discovery, Scope};
use serde::Serialize;
use serde_json::{Value, json};

use super::plan::{ORIGINAL_OWNERS, Plan, Planned, Tier};
use super::progress::Progress;

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
    /// Give up on an object after retrying 429/5xx for this long.
    pub retry_budget: Duration,
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
            retry_budget: Duration::from_secs(120),
            crd_timeout: Duration::from_secs(60),
        }
    }
}

/// One object's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome", content = "reason")]
pub enum Outcome {
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
    #[error("failed to discover the cluster's resources: {0}")]
    Discovery(kube::Error),
    #[error("failed to wait for CRDs to become Established: {0} not established after {1:?}")]
    CrdTimeout(String, Duration),
}

/// (group, version, kind) → how to reach it.
pub type ResourceMap = HashMap<(String, String, String), (ApiResource, bool)>;

/// Every served (group, version, kind) and how to reach it.
pub async fn discover(client: &kube::Client) -> Result<ResourceMap, ApplyError> {
    let d = Discovery::new(client.clone())
        .run()
        .await
        .map_err(ApplyError::Discovery)?;
    let mut map = HashMap::new();
    for g in d.groups() {
        for v in g.versions() {
            for (ar, caps) in g.versioned_resources(v) {
                map.insert(
                    (ar.group.clone(), ar.version.clone(), ar.kind.clone()),
                    (ar, caps.scope == Scope::Namespaced),
                );
            }
        }
    }
    Ok(map)
}

fn split_api_version(api_version: &str) -> (String, String) {
    api_version
        .rsplit_once('/')
        .map_or((String::new(), api_version.to_owned()), |(g, v)| {
            (g.to_owned(), v.to_owned())
        })
}

/// The API for an object of `api_version`/`kind` (in `namespace` when namespaced), if the
/// cluster serves its type.
pub fn api_for(
    client: &kube::Client,
    map: &ResourceMap,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Option<Api<DynamicObject>> {
    let (g, v) = split_api_version(api_version);
    let (ar, namespaced) = map.get(&(g, v, kind.to_owned()))?;
    Some(match (namespace, namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, ar),
        _ => Api::all_with(client.clone(), ar),
    })
}

/// The API for a planned object, if the cluster serves its type.
pub fn api_of(client: &kube::Client, map: &ResourceMap, p: &Planned) -> Option<Api<DynamicObject>> {
    api_for(client, map, &p.api_version, &p.kind, p.namespace.as_deref())
}

/// Status codes worth retrying: throttling and server-side trouble.
fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({}): {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

/// Exponential backoff with full jitter: 50 ms doubling to 5 s.
fn backoff(attempt: u32) -> Duration {
    let cap = 5_000u64.min(50u64 << attempt.min(7));
    Duration::from_millis(rand::random_range(cap / 2..=cap))
}

/// Run `op`, retrying throttling and server errors with backoff for up to `budget`.
pub async fn with_retry<T, F, Fut>(budget: Duration, mut op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let start = Instant::now();
    let mut attempt = 0;
    loop {
        match op().await {
            Err(e) if retryable(&e) && start.elapsed() < budget => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn apply_one(
    client: &kube::Client,
    map: &ResourceMap,
    p: &Planned,
    opts: &ApplyOptions,
) -> Outcome {
    let Some(api) = api_of(client, map, p) else {
        return Outcome::Failed(format!(
            "{} {} is not served by this cluster (missing CRD or API)",
            p.api_version, p.kind
        ));
    };
    let obj: DynamicObject = match serde_json::from_value(p.object.clone()) {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(format!("failed to decode object: {e}")),
    };
    let pp = PostParams {
        field_manager: Some("coldstart".into()),
        ..Default::default()
    };
    match with_retry(opts.retry_budget, || api.create(&pp, &obj)).await {
        Ok(_) => Outcome::Created,
        Err(kube::Error::Api(s)) if s.code == 409 => match opts.existing {
            Existing::Skip => Outcome::Existing,
            Existing::Update => {
                let patch = Patch::Apply(&p.object);
                let params = PatchParams::apply("coldstart").force();
                match with_retry(opts.retry_budget, || api.patch(&p.name, &params, &patch)).await {
                    Ok(_) => Outcome::Updated,
                    Err(e) => Outcome::Failed(format!(
                        "failed to update existing object: {}",
                        describe(&e)
                    )),
                }
            }
        },
        Err(e) => Outcome::Failed(describe(&e)),
    }
}

async fn wait_established(
    client: &kube::Client,
    map: &ResourceMap,
    crds: &[Planned],
    timeout: Duration,
) -> Result<(), ApplyError> {
    let deadline = Instant::now() + timeout;
    for p in crds {
        let Some(api) = api_of(client, map, p) else {
            continue;
        };
        loop {
            let ok = api.get(&p.name).await.ok().is_some_and(|crd| {
                crd.data
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    })
            });
            if ok {
                break;
            }
            if Instant::now() > deadline {
                return Err(ApplyError::CrdTimeout(p.name.clone(), timeout));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Apply every tier of `plan`, in order.
pub async fn apply(
    client: &kube::Client,
    plan: &Plan,
    opts: &ApplyOptions,
    progress: &Arc<Mutex<Progress>>,
) -> Result<ApplyReport, ApplyError> {
    let mut map = discover(client).await?;
    let mut report = ApplyReport::default();
    for tier in Tier::ALL {
        let Some(items) = plan.tiers.get(&tier) else {
            continue;
        };
        if let Ok(mut p) = progress.lock() {
            p.start_tier(tier, items.len());
        }
        // Indices, not `iter()`, so the future stays `Send` for callers that spawn it.
        let results: Vec<(usize, Outcome)> = futures::stream::iter(0..items.len())
            .map(|i| {
                let p = &items[i];
                let map = &map;
                async move { (i, apply_one(client, map, p, opts).await) }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .inspect(|(_, o)| {
                if let Ok(mut p) = progress.lock() {
                    p.object_done(tier, matches!(o, Outcome::Failed(_)));
                }
            })
            .collect()
            .await;
        let counts = report.tiers.entry(tier).or_default();
        counts.total = items.len();
        for (i, outcome) in results {
            match outcome {
                Outcome::Created => counts.created += 1,
                Outcome::Existing => counts.existing += 1,
                Outcome::Updated => counts.updated += 1,
                Outcome::Failed(reason) => {
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
            wait_established(client, &map, items, opts.crd_timeout).await?;
            // Custom resources are only discoverable once their CRDs are served.
            map = discover(client).await?;
        }
    }
    report.owners_relinked = relink_owners(client, &map, plan, opts).await;
    Ok(report)
}

/// Give parked owner references their owners' new uids, now that owners exist.
async fn relink_owners(
    client: &kube::Client,
    map: &ResourceMap,
    plan: &Plan,
    opts: &ApplyOptions,
) -> usize {
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
                None => match api_of(client, map, &owner) {
                    Some(api) => api.get(name).await.ok().and_then(|o| o.metadata.uid),
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
        let Some(api) = api_of(client, map, p) else {
            continue;
        };
        let patch =
            json!({"metadata": {"ownerReferences": refs, "annotations": {ORIGINAL_OWNERS: null}}});
        let patch = Patch::Merge(&patch);
        let params = PatchParams::default();
        if with_retry(opts.retry_budget, || api.patch(&p.name, &params, &patch))
            .await
            .is_ok()
        {
            relinked += 1;
        }
    }
    relinked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        for attempt in 0..20 {
            let d = backoff(attempt);
            assert!(d <= Duration::from_secs(5), "attempt {attempt}: {d:?}");
            assert!(d >= Duration::from_millis(25));
        }
        assert!(backoff(10) >= Duration::from_millis(2500));
    }

    #[test]
    fn throttling_and_server_errors_are_retried_and_client_errors_are_not() {
        let api = |code: u16| {
            kube::Error::Api(
                serde_json::from_value(
                    json!({"status": "Failure", "message": "m", "reason": "r", "code": code}),
                )
                .expect("status"),
            )
        };
        for (code, want) in [
            (429, true),
            (500, true),
            (503, true),
            (409, false),
            (422, false),
            (403, false),
        ] {
            assert_eq!(retryable(&api(code)), want, "{code}");
        }
    }
}
