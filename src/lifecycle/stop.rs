//! A planned stop: make nothing losable, then quiesce in order. The changes are computed by
//! pure functions from the audit's inputs ([`plan_fixes`], [`plan_quiesce`]); each change
//! carries its undo, and everything applied is recorded so it can be shown and undone.

use std::time::{Duration, Instant};

use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::Inputs;
use crate::restore::apply::{self, ResourceMap};
use crate::restore::plan::{ORIGINAL_RECLAIM, ORIGINAL_REPLICAS, PinStyle, is_pinned};

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

/// What to change so that deleting the cluster loses nothing: PVs to `Retain`, every
/// LoadBalancer Service pinned to its current address, buckets orphaned/retained.
pub fn plan_fixes(inputs: &Inputs, pin_style: PinStyle) -> Vec<Change> {
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
        let (patch, undo) = match pin_style {
            PinStyle::LoadBalancerIp => (
                json!({"spec": {"loadBalancerIP": ip}, "metadata": {"annotations": {PINNED_BY_STOP: ip}}}),
                json!({"spec": {"loadBalancerIP": null}, "metadata": {"annotations": {PINNED_BY_STOP: null}}}),
            ),
            PinStyle::Metallb => (
                json!({"metadata": {"annotations": {"metallb.io/loadBalancerIPs": ip, PINNED_BY_STOP: ip}}}),
                json!({"metadata": {"annotations": {"metallb.io/loadBalancerIPs": null, PINNED_BY_STOP: null}}}),
            ),
            PinStyle::Azure => (
                json!({"metadata": {"annotations": {"service.beta.kubernetes.io/azure-load-balancer-ipv4": ip, PINNED_BY_STOP: ip}}}),
                json!({"metadata": {"annotations": {"service.beta.kubernetes.io/azure-load-balancer-ipv4": null, PINNED_BY_STOP: null}}}),
            ),
            // An NLB address cannot be turned into an Elastic IP: nothing to patch; the
            // audit keeps reporting it.
            PinStyle::Aws => continue,
        };
        out.push(Change {
            object: ObjectRef::of(svc),
            description: format!("pinned to its current address {ip}"),
            patch,
            undo,
        });
    }
    for b in &inputs.crossplane_buckets {
        let observe = b.pointer("/spec/managementPolicies") == Some(&json!(["Observe"]));
        let policy = b["spec"]["deletionPolicy"].as_str().unwrap_or("Delete");
        if !observe && policy == "Delete" {
            out.push(Change {
                object: ObjectRef::of(b),
                description: "deletionPolicy Delete → Orphan".into(),
                patch: json!({"spec": {"deletionPolicy": "Orphan"}}),
                undo: json!({"spec": {"deletionPolicy": policy}}),
            });
        }
    }
    for b in &inputs.ack_buckets {
        let key = "services.k8s.aws/deletion-policy";
        let current = b
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .cloned();
        if current.as_ref().and_then(Value::as_str) != Some("retain") {
            out.push(Change {
                object: ObjectRef::of(b),
                description: "ACK deletion-policy → retain".into(),
                patch: json!({"metadata": {"annotations": {key: "retain"}}}),
                undo: json!({"metadata": {"annotations": {key: current.unwrap_or(Value::Null)}}}),
            });
        }
    }
    out
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
pub struct Step {
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

/// Group the scalable workloads (Deployments, StatefulSets) in quiesce order. A workload
/// already at 0 that carries a recorded original (an interrupted stop) keeps that original.
pub fn plan_quiesce(workloads: &[Value], order: &[Group]) -> Vec<Step> {
    order
        .iter()
        .map(|g| Step {
            group: *g,
            workloads: workloads
                .iter()
                .filter(|w| group_of(w) == *g)
                .map(|w| {
                    let current = w
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    let recorded = w
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(ORIGINAL_REPLICAS))
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok());
                    Quiesced {
                        object: ObjectRef::of(w),
                        replicas: if current == 0 {
                            recorded.unwrap_or(0)
                        } else {
                            current
                        },
                    }
                })
                .collect(),
        })
        .collect()
}

/// Why a stop step failed.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("failed to discover the cluster's resources: {0}")]
    Discovery(#[from] apply::ApplyError),
    #[error("failed to change {object}: {source}")]
    Patch { object: String, source: kube::Error },
    #[error("failed to list {what}: {source}")]
    List {
        what: &'static str,
        source: kube::Error,
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
    map: &ResourceMap,
    o: &ObjectRef,
    p: &Value,
) -> Result<(), StopError> {
    let api = apply::api_for(client, map, &o.api_version, &o.kind, o.namespace.as_deref())
        .ok_or_else(|| StopError::Patch {
            object: o.display(),
            source: kube::Error::Discovery(kube::error::DiscoveryError::MissingResource(
                o.kind.clone(),
            )),
        })?;
    let params = PatchParams::default();
    let pt = Patch::Merge(p);
    apply::with_retry(Duration::from_secs(60), || api.patch(&o.name, &params, &pt))
        .await
        .map(|_| ())
        .map_err(|source| StopError::Patch {
            object: o.display(),
            source,
        })
}

/// Apply changes (or their undos).
pub async fn apply_changes(
    client: &kube::Client,
    changes: &[Change],
    undo: bool,
) -> Result<usize, StopError> {
    let map = apply::discover(client).await?;
    for c in changes {
        patch(
            client,
            &map,
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
    step: &Step,
    to_zero: bool,
) -> Result<(), StopError> {
    let map = apply::discover(client).await?;
    for w in &step.workloads {
        let p = if to_zero {
            json!({"spec": {"replicas": 0}, "metadata": {"annotations": {ORIGINAL_REPLICAS: w.replicas.to_string()}}})
        } else {
            json!({"spec": {"replicas": w.replicas}, "metadata": {"annotations": {ORIGINAL_REPLICAS: null}}})
        };
        patch(client, &map, &w.object, &p).await?;
    }
    Ok(())
}

/// Wait until a step's workloads report the wanted readiness: none ready (stopping), or
/// all ready (starting).
pub async fn wait_step(
    client: &kube::Client,
    step: &Step,
    stopping: bool,
    timeout: Duration,
) -> Result<(), StopError> {
    let map = apply::discover(client).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let mut stuck = Vec::new();
        for w in &step.workloads {
            let Some(api) = apply::api_for(
                client,
                &map,
                &w.object.api_version,
                &w.object.kind,
                w.object.namespace.as_deref(),
            ) else {
                continue;
            };
            let ready = api
                .get(&w.object.name)
                .await
                .ok()
                .and_then(|o: DynamicObject| {
                    o.data
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(0);
            let done = if stopping {
                ready == 0
            } else {
                ready >= w.replicas
            };
            if !done {
                stuck.push(format!("{} ({ready} ready)", w.object.display()));
            }
        }
        if stuck.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StopError::Stuck { timeout, stuck });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until no volume is attached to a node any more (no VolumeAttachments left).
pub async fn wait_detached(client: &kube::Client, timeout: Duration) -> Result<(), StopError> {
    let ar = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("storage.k8s.io", "v1", "VolumeAttachment"),
        "volumeattachments",
    );
    let api: kube::Api<DynamicObject> = kube::Api::all_with(client.clone(), &ar);
    let deadline = Instant::now() + timeout;
    loop {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|source| StopError::List {
                what: "VolumeAttachments",
                source,
            })?;
        if list.items.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let stuck = list
                .items
                .iter()
                .map(|va| {
                    format!(
                        "volume {} attached to {}",
                        va.data
                            .pointer("/spec/source/persistentVolumeName")
                            .and_then(Value::as_str)
                            .unwrap_or("?"),
                        va.data
                            .pointer("/spec/nodeName")
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                    )
                })
                .collect();
            return Err(StopError::Stuck { timeout, stuck });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
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
            crossplane_buckets: vec![
                json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket", "metadata": {"name": "tmp"}, "spec": {"deletionPolicy": "Delete"}}),
            ],
            ..Default::default()
        };
        let changes = plan_fixes(&inputs, PinStyle::LoadBalancerIp);
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
    fn quiesce_groups_apps_then_operators_then_data_and_remembers_replicas() {
        let w = |kind: &str, name: &str, labels: Value, replicas: i64, ann: Value| {
            json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": "n", "labels": labels, "annotations": ann},
                   "spec": {"replicas": replicas}})
        };
        let workloads = vec![
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
        let steps = plan_quiesce(&workloads, &DEFAULT_ORDER);
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
