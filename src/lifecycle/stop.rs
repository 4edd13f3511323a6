//! A planned stop: make nothing losable, then quiesce in order. The changes are computed by
//! pure functions from the audit's inputs ([`plan_fixes`], [`plan_quiesce`]); each change
//! carries its undo, and everything applied is recorded so it can be shown and undone.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use kube::runtime::watcher;

use kube::api::{DynamicObject, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::Inputs;
use crate::bindings::PinStyle;
use crate::bindings::azure::{DISK_MOVED_TO, InNodeGroup, PIP_RESOURCE_GROUP};
use crate::bindings::{AWS_EIPS, is_pinned};
use crate::k8s::{self, K8sError, Resources};
use crate::restore::plan::{ORIGINAL_RECLAIM, ORIGINAL_REPLICAS};

/// An object, addressed the way the API is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    fn of(v: &Value) -> Self {
        ObjectRef {
            api_version: v["apiVersion"].as_str().unwrap_or("v1").to_owned(),
            kind: v["kind"].as_str().unwrap_or_default().to_owned(),
            namespace: v
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: v
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// The same object as a workload reference (namespace `""` when cluster-scoped).
    pub fn workload(&self) -> crate::bindings::consumers::WorkloadRef {
        crate::bindings::consumers::WorkloadRef {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: self.name.clone(),
        }
    }

    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// One change `stop` makes, with the merge patch that undoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub object: ObjectRef,
    pub description: String,
    pub patch: Value,
    pub undo: Value,
}

/// Annotation marking a Service pinned by `stop` (so `undo` knows what it added).
pub const PINNED_BY_STOP: &str = "coldstart.dev/pinned-by-stop";
/// Annotation marking a CronJob suspended by `stop`: `start` resumes exactly those (the
/// snapshot carries it, so a start from any copy of the snapshot knows).
pub const SUSPENDED_BY_STOP: &str = "coldstart.dev/suspended-by-stop";

/// The addresses whose `spec.loadBalancerIP` AWS ignores (the audit's
/// [`PinProblem::IgnoredOnAws`](crate::bindings::PinProblem)) and that carry no Elastic IP
/// pin yet: `stop` asks the cloud for their allocations and rewrites them.
pub fn ignored_aws_pins(inputs: &Inputs) -> Vec<String> {
    inputs
        .services
        .iter()
        .filter(|svc| !has_eip_pin(svc))
        .flat_map(crate::bindings::pin_problems)
        .filter_map(|p| match p {
            crate::bindings::PinProblem::IgnoredOnAws { address } => Some(address),
            _ => None,
        })
        .collect()
}

fn has_eip_pin(svc: &Value) -> bool {
    svc.pointer("/metadata/annotations")
        .and_then(|a| a.get(AWS_EIPS))
        .and_then(Value::as_str)
        .is_some_and(|v| !v.trim().is_empty())
}

/// What to change so that deleting the cluster loses nothing: PVs to `Retain`, every
/// LoadBalancer Service pinned to its current address, a `spec.loadBalancerIP` AWS ignores
/// rewritten to the Elastic IP allocation the cloud names for it (`allocations`: IP →
/// allocation id), buckets orphaned/retained.
pub fn plan_fixes(
    inputs: &Inputs,
    pin_style: PinStyle,
    allocations: &BTreeMap<String, String>,
) -> Vec<Change> {
    let mut out = Vec::new();
    for pv in &inputs.persistent_volumes {
        let policy = pv["spec"]["persistentVolumeReclaimPolicy"]
            .as_str()
            .unwrap_or("Delete");
        if policy != "Retain" {
            out.push(Change {
                object: ObjectRef::of(pv),
                description: format!("reclaim policy {policy} → Retain"),
                patch: json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"},
                              "metadata": {"annotations": {ORIGINAL_RECLAIM: policy}}}),
                undo: json!({"spec": {"persistentVolumeReclaimPolicy": policy},
                             "metadata": {"annotations": {ORIGINAL_RECLAIM: null}}}),
            });
        }
    }
    for svc in &inputs.services {
        if svc["spec"]["type"].as_str() != Some("LoadBalancer") || is_pinned(svc) {
            continue;
        }
        let Some(ip) = svc
            .pointer("/status/loadBalancer/ingress/0/ip")
            .and_then(Value::as_str)
        else {
            continue;
        };
        // On AWS the pin is the address's Elastic IP allocation. An NLB's own address has
        // none and cannot be turned into one: nothing to patch; the audit keeps reporting it.
        let allocation = allocations.get(ip).map(String::as_str);
        let Ok(pin) = pin_style.for_service(svc).pin(ip, allocation) else {
            continue;
        };
        let (mut patch, mut undo) = (pin.patch, pin.undo);
        // The marker says the pin is stop's, so `start` takes it off again.
        patch["metadata"]["annotations"][PINNED_BY_STOP] = json!(ip);
        undo["metadata"]["annotations"][PINNED_BY_STOP] = Value::Null;
        out.push(Change {
            object: ObjectRef::of(svc),
            description: format!("pinned to its current address {ip}"),
            patch,
            undo,
        });
    }
    // AWS's controllers ignore spec.loadBalancerIP: pin with what they read instead, the
    // allocation of the address the Service was meant to keep.
    for svc in &inputs.services {
        if has_eip_pin(svc) {
            continue;
        }
        let ignored = crate::bindings::pin_problems(svc)
            .into_iter()
            .find_map(|p| match p {
                crate::bindings::PinProblem::IgnoredOnAws { address } => Some(address),
                _ => None,
            });
        let Some((ip, allocation)) =
            ignored.and_then(|ip| allocations.get(&ip).map(|a| (ip.clone(), a.clone())))
        else {
            continue;
        };
        out.push(Change {
            object: ObjectRef::of(svc),
            description: format!(
                "spec.loadBalancerIP {ip} (ignored on AWS) → {AWS_EIPS}: {allocation}"
            ),
            patch: json!({"spec": {"loadBalancerIP": null},
                          "metadata": {"annotations": {AWS_EIPS: allocation, PINNED_BY_STOP: ip}}}),
            undo: json!({"spec": {"loadBalancerIP": ip},
                         "metadata": {"annotations": {AWS_EIPS: null, PINNED_BY_STOP: null}}}),
        });
    }
    // Nothing fires while the platform is down or half-restored.
    for job in &inputs.cronjobs {
        if job.pointer("/spec/suspend").and_then(Value::as_bool) != Some(true) {
            out.push(Change {
                object: ObjectRef::of(job),
                description: "suspended (start resumes it)".into(),
                patch: json!({"spec": {"suspend": true}, "metadata": {"annotations": {SUSPENDED_BY_STOP: "true"}}}),
                undo: json!({"spec": {"suspend": false}, "metadata": {"annotations": {SUSPENDED_BY_STOP: null}}}),
            });
        }
    }
    // Every bucket kind, with the mechanism its API offers (bindings knows which). An
    // ObjectBucketClaim's bucket is kept through its ObjectBucket.
    let claims = crate::audit::bucket_bindings(inputs);
    let claim_fixes = claims
        .iter()
        .filter_map(|(b, obj)| Some((crate::bindings::retain_fix(b, obj)?, ObjectRef::of(obj))));
    let object_bucket_fixes = inputs.object_buckets.iter().filter_map(|ob| {
        let mut object = ObjectRef::of(ob);
        // List items carry no apiVersion/kind.
        object.api_version = crate::bindings::OBJECT_BUCKET_API_VERSION.into();
        object.kind = crate::bindings::OBJECT_BUCKET_KIND.into();
        Some((crate::bindings::object_bucket_retain_fix(ob)?, object))
    });
    for (fix, object) in claim_fixes.chain(object_bucket_fixes) {
        out.push(Change {
            object,
            description: fix.description,
            patch: fix.patch,
            undo: fix.undo,
        });
    }
    out
}

/// The changes that record resources moved out of the node resource group: a PV names its
/// disk's new id (its `volumeHandle` cannot change; bindings and the restore plan read the
/// annotation), a Service names its public IP's new group. A move is not undone by
/// `stop --undo`: the resources stay where they were moved, and so do the annotations
/// saying where that is.
pub fn moved_changes(
    moved_out: &[InNodeGroup],
    moved: &BTreeMap<String, String>,
    group: &str,
) -> Vec<Change> {
    moved_out
        .iter()
        .filter_map(|b| {
            let now = moved.get(b.target())?;
            Some(match b {
                InNodeGroup::Disk { pv, disk_id, .. } => Change {
                    object: ObjectRef {
                        api_version: "v1".into(),
                        kind: "PersistentVolume".into(),
                        namespace: None,
                        name: pv.clone(),
                    },
                    description: format!(
                        "disk {disk_id} moved out of the node resource group {}: now {now}",
                        b.group()
                    ),
                    patch: json!({"metadata": {"annotations": {DISK_MOVED_TO: now}}}),
                    undo: json!({}),
                },
                InNodeGroup::PublicIp {
                    namespace,
                    service,
                    address,
                    ..
                } => Change {
                    object: ObjectRef {
                        api_version: "v1".into(),
                        kind: "Service".into(),
                        namespace: Some(namespace.clone()),
                        name: service.clone(),
                    },
                    description: format!(
                        "public IP {address} moved out of the node resource group {} to {group}",
                        b.group()
                    ),
                    patch: json!({"metadata": {"annotations": {PIP_RESOURCE_GROUP: group}}}),
                    undo: json!({}),
                },
            })
        })
        .collect()
}

/// The groups a stop quiesces, in order (and a start brings back in reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// Workloads that are neither operators nor data stores.
    Apps,
    /// Workloads labelled `coldstart.dev/operator: "true"`.
    Operators,
    /// StatefulSets and workloads labelled `coldstart.dev/tier: data`.
    Data,
}

pub const DEFAULT_ORDER: [Group; 3] = [Group::Apps, Group::Operators, Group::Data];

/// A workload to scale to zero, and the replicas to bring back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quiesced {
    pub object: ObjectRef,
    pub replicas: i64,
}

/// One quiesce step: a group, scaled down together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuiesceStep {
    pub group: Group,
    pub workloads: Vec<Quiesced>,
}

fn group_of(w: &Value) -> Group {
    let label = |k: &str| {
        w.pointer("/metadata/labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
    };
    if label("coldstart.dev/operator") == Some("true") {
        Group::Operators
    } else if label("coldstart.dev/tier") == Some("data") || w["kind"] == "StatefulSet" {
        Group::Data
    } else {
        Group::Apps
    }
}

/// What [`plan_quiesce`] reads of a workload, and nothing else: which object, its quiesce
/// group, its replicas and the original a previous stop recorded. Typed, not a trimmed JSON
/// view: thirty thousand such views held 60 MiB (every map and string of a `Value` its own
/// allocation); these take ~200 bytes each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalable {
    pub object: ObjectRef,
    pub group: Group,
    /// `spec.replicas`, 1 when unset (the API's default).
    pub replicas: i64,
    /// The replicas an interrupted stop recorded before scaling the workload to 0.
    pub recorded: Option<i64>,
}

impl Scalable {
    pub fn of(w: &Value) -> Self {
        Scalable {
            object: ObjectRef::of(w),
            group: group_of(w),
            replicas: w
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1),
            recorded: w
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(ORIGINAL_REPLICAS))
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok()),
        }
    }
}

/// Group the scalable workloads (Deployments, StatefulSets) in quiesce order. A workload
/// already at 0 that carries a recorded original (an interrupted stop) keeps that original.
pub fn plan_quiesce(workloads: Vec<Scalable>, order: &[Group]) -> Vec<QuiesceStep> {
    let mut steps: Vec<QuiesceStep> = order
        .iter()
        .map(|g| QuiesceStep {
            group: *g,
            workloads: Vec::new(),
        })
        .collect();
    for w in workloads {
        if let Some(step) = steps.iter_mut().find(|s| s.group == w.group) {
            let replicas = match w.replicas {
                0 => w.recorded.unwrap_or(0),
                current => current,
            };
            step.workloads.push(Quiesced {
                object: w.object,
                replicas,
            });
        }
    }
    steps
}

/// Why a stop step failed.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(transparent)]
    Discovery(#[from] K8sError),
    #[error("failed to change {object}: {source}")]
    Patch { object: String, source: kube::Error },
    #[error("failed to list {what}: {source}")]
    List {
        what: &'static str,
        source: kube::Error,
    },
    #[error("failed to watch {what}: {source}")]
    Watch {
        what: String,
        source: k8s::wait::WaitError,
    },
    #[error(
        "failed to quiesce within {timeout:?}; still running or attached: {stuck:?}. Check those workloads (a PodDisruptionBudget? a stuck finalizer?) and re-run `coldstart stop`: it continues where it stopped"
    )]
    Stuck {
        timeout: Duration,
        stuck: Vec<String>,
    },
}

async fn patch(
    client: &kube::Client,
    resources: &Resources,
    o: &ObjectRef,
    p: &Value,
) -> Result<(), StopError> {
    let api = resources
        .api(client, &o.api_version, &o.kind, o.namespace.as_deref())
        .ok_or_else(|| StopError::Patch {
            object: o.display(),
            source: kube::Error::Discovery(kube::error::DiscoveryError::MissingResource(
                o.kind.clone(),
            )),
        })?;
    let params = PatchParams::default();
    // 429s and 5xx are retried by the client's retry layer, within its budget.
    api.patch(&o.name, &params, &Patch::Merge(p))
        .await
        .map(|_| ())
        .map_err(|source| StopError::Patch {
            object: o.display(),
            source,
        })
}

/// Whether `start` resumes this CronJob: `stop` suspended it ([`SUSPENDED_BY_STOP`]) and
/// the preflight does not hold it ([`HELD`](crate::preflight::HELD): it uses a binding
/// that did not come back; it keeps both marks, so a later start resumes it).
pub fn resumable(job: &Value) -> bool {
    let marked = |k: &str| {
        job.pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .is_some()
    };
    marked(SUSPENDED_BY_STOP) && !marked(crate::preflight::HELD)
}

/// Resume the CronJobs `stop` suspended, except those the preflight holds ([`resumable`]).
pub async fn resume_cronjobs(
    client: &kube::Client,
    resources: &Resources,
) -> Result<usize, StopError> {
    let ar = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("batch", "v1", "CronJob"),
        "cronjobs",
    );
    let api: kube::Api<DynamicObject> = kube::Api::all_with(client.clone(), &ar);
    // Listed page by page, keeping only the few `stop` suspended.
    let jobs = k8s::list_kept(
        &api,
        &kube::api::ListParams::default(),
        ("batch/v1", "CronJob"),
        resumable,
    )
    .await
    .map_err(|source| StopError::List {
        what: "CronJobs",
        source,
    })?;
    let mut n = 0;
    for job in &jobs {
        let o = ObjectRef {
            api_version: "batch/v1".into(),
            kind: "CronJob".into(),
            namespace: job
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: job
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
        patch(
            client,
            resources,
            &o,
            &json!({"spec": {"suspend": false}, "metadata": {"annotations": {SUSPENDED_BY_STOP: null}}}),
        )
        .await?;
        n += 1;
    }
    Ok(n)
}

/// Apply changes (or their undos).
pub async fn apply_changes(
    client: &kube::Client,
    resources: &Resources,
    changes: &[Change],
    undo: bool,
) -> Result<usize, StopError> {
    for c in changes {
        patch(
            client,
            resources,
            &c.object,
            if undo { &c.undo } else { &c.patch },
        )
        .await?;
    }
    Ok(changes.len())
}

/// Scale a step's workloads to `replicas` (None: back to each one's recorded count).
pub async fn scale_step(
    client: &kube::Client,
    resources: &Resources,
    step: &QuiesceStep,
    to_zero: bool,
) -> Result<(), StopError> {
    // A group is scaled together: its patches go out PATCHES_IN_FLIGHT at a time (ten
    // thousand one after another took minutes on a real API server); the first refusal
    // stops the step, and re-running continues where it stopped.
    // Made as they are sent, not all up front (by index: a closure over `&Quiesced` trips
    // the compiler's higher-ranked lifetime check where the future must be Send).
    let patches = (0..step.workloads.len())
        .map(|i| scale_one(client, resources, &step.workloads[i], to_zero));
    futures::stream::iter(patches)
        .buffer_unordered(PATCHES_IN_FLIGHT)
        .try_collect::<()>()
        .await
}

async fn scale_one(
    client: &kube::Client,
    resources: &Resources,
    w: &Quiesced,
    to_zero: bool,
) -> Result<(), StopError> {
    let p = if to_zero {
        json!({"spec": {"replicas": 0}, "metadata": {"annotations": {ORIGINAL_REPLICAS: w.replicas.to_string()}}})
    } else {
        json!({"spec": {"replicas": w.replicas}, "metadata": {"annotations": {ORIGINAL_REPLICAS: null}}})
    };
    patch(client, resources, &w.object, &p).await
}

/// Workload patches sent at once by [`scale_step`].
const PATCHES_IN_FLIGHT: usize = 16;

/// A kind with at most this many workloads in a step is watched object by object (a
/// field-selected watch each); more share one watch over the whole kind.
const WATCHED_ONE_BY_ONE: usize = 16;

/// Stuck workloads a failed wait reads back to say how far each got; the rest are counted.
const STUCK_SHOWN: usize = 20;

fn ready_replicas(o: Option<&DynamicObject>) -> i64 {
    o.and_then(|o| {
        o.data
            .pointer("/status/readyReplicas")
            .and_then(Value::as_i64)
    })
    .unwrap_or(0)
}

/// Wait (watching) until a step's workloads report the wanted readiness: none ready
/// (stopping), or all ready (starting), all within `timeout`. Memory stays small whatever
/// the step's size: a kind with many workloads is one watch, its objects judged as they
/// stream by and dropped.
pub async fn wait_step(
    client: &kube::Client,
    resources: &Resources,
    step: &QuiesceStep,
    stopping: bool,
    timeout: Duration,
) -> Result<(), StopError> {
    let mut by_kind: BTreeMap<(&str, &str), Vec<&Quiesced>> = BTreeMap::new();
    for w in &step.workloads {
        by_kind
            .entry((&w.object.api_version, &w.object.kind))
            .or_default()
            .push(w);
    }
    let done = move |wanted: &i64, d: Option<&DynamicObject>| {
        let ready = ready_replicas(d);
        if stopping {
            ready == 0
        } else {
            ready >= *wanted
        }
    };
    let mut waits = Vec::new();
    for ((api_version, kind), ws) in by_kind {
        let wanted = |ws: &[&Quiesced]| -> HashMap<k8s::wait::Key, i64> {
            ws.iter()
                .map(|w| {
                    (
                        (w.object.namespace.clone(), w.object.name.clone()),
                        w.replicas,
                    )
                })
                .collect()
        };
        if ws.len() > WATCHED_ONE_BY_ONE {
            if let Some(api) = resources.api(client, api_version, kind, None) {
                let config = watcher::Config::default();
                waits.push(k8s::wait::until_all(
                    api,
                    wanted(&ws),
                    config,
                    timeout,
                    done,
                ));
            }
            continue;
        }
        for w in ws {
            let o = &w.object;
            if let Some(api) = resources.api(client, api_version, kind, o.namespace.as_deref()) {
                let config =
                    watcher::Config::default().fields(&format!("metadata.name={}", o.name));
                waits.push(k8s::wait::until_all(
                    api,
                    wanted(&[w]),
                    config,
                    timeout,
                    done,
                ));
            }
        }
    }
    let mut stuck = Vec::new();
    for waited in futures::future::join_all(waits).await {
        match waited {
            Ok(()) => {}
            Err(k8s::wait::AllError::Remaining { left, .. }) => stuck.extend(left),
            Err(k8s::wait::AllError::Wait(source)) => {
                return Err(StopError::Watch {
                    what: format!("the {:?} workloads", step.group).to_lowercase(),
                    source,
                });
            }
        }
    }
    if stuck.is_empty() {
        return Ok(());
    }
    let mut shown = Vec::new();
    let of = |(ns, name): &k8s::wait::Key| {
        step.workloads
            .iter()
            .find(|w| w.object.namespace == *ns && w.object.name == *name)
    };
    for w in stuck.iter().take(STUCK_SHOWN).filter_map(of) {
        let o = &w.object;
        // Say how far it got; the count is only for the message.
        let ready = match resources.api(client, &o.api_version, &o.kind, o.namespace.as_deref()) {
            Some(api) => match api.get_opt(&o.name).await {
                Ok(d) => ready_replicas(d.as_ref()).to_string(),
                Err(e) => format!("unknown: {}", k8s::describe(&e)),
            },
            None => "unknown".to_owned(),
        };
        shown.push(format!("{} ({ready} ready)", o.display()));
    }
    if stuck.len() > shown.len() {
        shown.push(format!("and {} more", stuck.len() - shown.len()));
    }
    Err(StopError::Stuck {
        timeout,
        stuck: shown,
    })
}

/// Wait (watching) until no volume is attached to a node any more (no VolumeAttachments
/// left).
pub async fn wait_detached(client: &kube::Client, timeout: Duration) -> Result<(), StopError> {
    use k8s_openapi::api::storage::v1::VolumeAttachment;
    let api: kube::Api<VolumeAttachment> = kube::Api::all(client.clone());
    match k8s::wait::until_none_left(api, timeout).await {
        Ok(()) => Ok(()),
        Err(k8s::wait::NoneLeftError::Remaining { objects, .. }) => Err(StopError::Stuck {
            timeout,
            stuck: objects
                .iter()
                .map(|va| {
                    format!(
                        "volume {} attached to {}",
                        va.spec
                            .source
                            .persistent_volume_name
                            .as_deref()
                            .unwrap_or("?"),
                        va.spec.node_name
                    )
                })
                .collect(),
        }),
        Err(k8s::wait::NoneLeftError::Wait(source)) => Err(StopError::Watch {
            what: "VolumeAttachments".to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_retain_volumes_pin_addresses_and_orphan_buckets_each_with_its_undo() {
        let inputs = Inputs {
            persistent_volumes: vec![
                json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "a"}, "spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
                json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "b"}, "spec": {"persistentVolumeReclaimPolicy": "Retain"}}),
            ],
            services: vec![
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mqtt", "namespace": "t"},
                       "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pinned", "namespace": "t"},
                       "spec": {"type": "LoadBalancer", "loadBalancerIP": "5.5.5.5"}}),
            ],
            bucket_objects: vec![
                json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket", "metadata": {"name": "tmp"}, "spec": {"deletionPolicy": "Delete"}}),
            ],
            ..Default::default()
        };
        let changes = plan_fixes(&inputs, PinStyle::LoadBalancerIp, &BTreeMap::new());
        let described: Vec<_> = changes
            .iter()
            .map(|c| (c.object.display(), c.description.clone()))
            .collect();
        assert_eq!(
            described,
            vec![
                (
                    "PersistentVolume a".to_owned(),
                    "reclaim policy Delete → Retain".to_owned()
                ),
                (
                    "Service t/mqtt".to_owned(),
                    "pinned to its current address 1.2.3.4".to_owned()
                ),
                (
                    "Bucket tmp".to_owned(),
                    "deletionPolicy Delete → Orphan".to_owned()
                ),
            ]
        );
        assert_eq!(
            changes[0].undo["spec"]["persistentVolumeReclaimPolicy"],
            "Delete"
        );
        assert_eq!(changes[1].patch["spec"]["loadBalancerIP"], "1.2.3.4");
        assert!(changes[1].undo["spec"]["loadBalancerIP"].is_null());
    }

    #[test]
    fn a_load_balancer_ip_aws_ignores_becomes_the_eip_allocation_the_cloud_names() {
        let aws = |name: &str| {
            crate::testing::lb_service("web", name)
                .annotation(
                    "service.beta.kubernetes.io/aws-load-balancer-type",
                    "external",
                )
                .load_balancer_ip("203.0.113.7")
                .ingress_ip("203.0.113.7")
        };
        let inputs = Inputs {
            services: vec![
                aws("front").build(),
                // Already pinned the AWS way: its loadBalancerIP is only redundant.
                aws("pinned").annotation(AWS_EIPS, "eipalloc-9").build(),
            ],
            ..Default::default()
        };
        assert_eq!(ignored_aws_pins(&inputs), vec!["203.0.113.7".to_owned()]);
        let unknown = plan_fixes(&inputs, PinStyle::Aws, &BTreeMap::new());
        assert!(
            unknown.is_empty(),
            "no allocation known, nothing invented: {unknown:#?}"
        );
        let allocations = BTreeMap::from([("203.0.113.7".to_owned(), "eipalloc-1".to_owned())]);
        let changes = plan_fixes(&inputs, PinStyle::Aws, &allocations);
        assert_eq!(changes.len(), 1, "{changes:#?}");
        let c = &changes[0];
        assert_eq!(c.object.display(), "Service web/front");
        assert_eq!(c.patch["metadata"]["annotations"][AWS_EIPS], "eipalloc-1");
        assert!(c.patch["spec"]["loadBalancerIP"].is_null());
        assert_eq!(c.undo["spec"]["loadBalancerIP"], "203.0.113.7");
        assert!(c.undo["metadata"]["annotations"][AWS_EIPS].is_null());
        let mut fixed = inputs.services[0].clone();
        json_patch::merge(&mut fixed, &c.patch);
        assert!(
            crate::bindings::pin_problems(&fixed).is_empty(),
            "the audit no longer flags it"
        );
    }

    #[test]
    fn an_unpinned_aws_service_on_an_elastic_ip_is_pinned_to_its_allocation_and_an_nlb_address_is_left()
     {
        let inputs = Inputs {
            services: vec![
                crate::testing::lb_service("web", "on-eip")
                    .ingress_ip("203.0.113.7")
                    .build(),
                crate::testing::lb_service("web", "nlb-own")
                    .ingress_ip("198.51.100.9")
                    .build(),
                // MetalLB reads its own pin, whatever the cluster-wide style says.
                crate::testing::lb_service("lan", "metallb")
                    .annotation("metallb.io/address-pool", "lan")
                    .ingress_ip("10.0.0.5")
                    .build(),
            ],
            ..Default::default()
        };
        let allocations = BTreeMap::from([("203.0.113.7".to_owned(), "eipalloc-1".to_owned())]);
        let changes = plan_fixes(&inputs, PinStyle::Aws, &allocations);
        let pinned: Vec<(String, Value)> = changes
            .iter()
            .map(|c| {
                (
                    c.object.display(),
                    c.patch["metadata"]["annotations"].clone(),
                )
            })
            .collect();
        assert_eq!(
            pinned,
            vec![
                (
                    "Service web/on-eip".to_owned(),
                    json!({AWS_EIPS: "eipalloc-1", PINNED_BY_STOP: "203.0.113.7"})
                ),
                (
                    "Service lan/metallb".to_owned(),
                    json!({"metallb.io/loadBalancerIPs": "10.0.0.5", PINNED_BY_STOP: "10.0.0.5"})
                ),
            ]
        );
        assert_eq!(
            changes[0].undo["metadata"]["annotations"],
            json!({AWS_EIPS: null, PINNED_BY_STOP: null})
        );
    }

    #[test]
    fn a_cronjob_the_preflight_holds_is_not_resumed_by_start() {
        let job = |annotations: Value| {
            json!({"apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": "backup", "namespace": "db", "annotations": annotations},
                "spec": {"suspend": true}})
        };
        assert!(resumable(&job(json!({SUSPENDED_BY_STOP: "true"}))));
        assert!(!resumable(&job(
            json!({SUSPENDED_BY_STOP: "true", crate::preflight::HELD: "disk vol-1 is missing"})
        )));
        assert!(
            !resumable(&job(json!({}))),
            "suspended by its owner, not by stop"
        );
    }

    #[test]
    fn quiesce_groups_apps_then_operators_then_data_and_remembers_replicas() {
        let w = |kind: &str, name: &str, labels: Value, replicas: i64, ann: Value| {
            json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": "n", "labels": labels, "annotations": ann},
                   "spec": {"replicas": replicas}})
        };
        let workloads = [
            w("StatefulSet", "kafka", json!({}), 3, json!({})),
            w(
                "Deployment",
                "op",
                json!({"coldstart.dev/operator": "true"}),
                1,
                json!({}),
            ),
            w("Deployment", "web", json!({}), 2, json!({})),
            w(
                "Deployment",
                "pg",
                json!({"coldstart.dev/tier": "data"}),
                0,
                json!({ORIGINAL_REPLICAS: "2"}),
            ),
        ];
        let steps = plan_quiesce(workloads.iter().map(Scalable::of).collect(), &DEFAULT_ORDER);
        let names: Vec<Vec<(String, i64)>> = steps
            .iter()
            .map(|s| {
                s.workloads
                    .iter()
                    .map(|q| (q.object.name.clone(), q.replicas))
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            vec![
                vec![("web".to_owned(), 2)],
                vec![("op".to_owned(), 1)],
                vec![("kafka".to_owned(), 3), ("pg".to_owned(), 2)],
            ],
            "an interrupted stop keeps the replicas it recorded"
        );
    }
}
