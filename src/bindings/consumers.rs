//! Who uses a binding: the workloads whose pods mount a volume's claim, the workloads a
//! LoadBalancer Service sends its traffic to, the workloads that read a bucket claim's
//! credentials. When a restore cannot bring a binding back, it holds exactly these and lets
//! everything else start.
//!
//! Pure functions over a snapshot's objects. Only workloads that can be held without
//! deleting anything are named: Deployments and StatefulSets (0 replicas) and CronJobs
//! (suspended).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BucketBinding, BucketKind};

/// A workload, by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl WorkloadRef {
    /// `Kind namespace/name`.
    pub fn display(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    /// Whether `obj` is this workload.
    pub fn is(&self, obj: &Value) -> bool {
        workload_of(obj).as_ref() == Some(self)
    }
}

/// The workload an object is, with the pointer to its pod spec, if it is one we can hold.
fn pod_spec_path(obj: &Value) -> Option<&'static str> {
    match (
        obj["apiVersion"].as_str().unwrap_or_default(),
        obj["kind"].as_str().unwrap_or_default(),
    ) {
        ("apps/v1", "Deployment" | "StatefulSet") => Some("/spec/template/spec"),
        ("batch/v1", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

fn workload_of(obj: &Value) -> Option<WorkloadRef> {
    pod_spec_path(obj)?;
    Some(WorkloadRef {
        api_version: obj["apiVersion"].as_str()?.to_owned(),
        kind: obj["kind"].as_str()?.to_owned(),
        namespace: obj.pointer("/metadata/namespace")?.as_str()?.to_owned(),
        name: obj.pointer("/metadata/name")?.as_str()?.to_owned(),
    })
}

/// Every holdable workload in `namespace` whose pod spec satisfies `uses`.
fn workloads_where(
    objects: &[Value],
    namespace: &str,
    uses: impl Fn(&Value, &Value) -> bool,
) -> Vec<WorkloadRef> {
    let mut out: Vec<WorkloadRef> = objects
        .iter()
        .filter(|o| o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace))
        .filter_map(|o| {
            let pod = o.pointer(pod_spec_path(o)?)?;
            uses(o, pod).then(|| workload_of(o)).flatten()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn each<'a>(v: &'a Value, ptr: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The workloads whose pods mount the claim `namespace/claim`: through a pod volume, or
/// as one of a StatefulSet's per-replica claims (`<template>-<set>-<ordinal>`).
pub fn claim_users(objects: &[Value], namespace: &str, claim: &str) -> Vec<WorkloadRef> {
    workloads_where(objects, namespace, |obj, pod| {
        let mounted = each(pod, "/volumes")
            .any(|v| v.pointer("/persistentVolumeClaim/claimName") == Some(&claim.into()));
        let templated = obj["kind"] == "StatefulSet"
            && each(obj, "/spec/volumeClaimTemplates").any(|t| {
                let (Some(tpl), Some(set)) = (
                    t.pointer("/metadata/name").and_then(Value::as_str),
                    obj.pointer("/metadata/name").and_then(Value::as_str),
                ) else {
                    return false;
                };
                claim
                    .strip_prefix(&format!("{tpl}-{set}-"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
        mounted || templated
    })
}

/// The workloads a Service sends traffic to: pod labels matching its selector. A Service
/// without a selector (endpoints managed by hand) has none we can name.
pub fn service_backends(objects: &[Value], namespace: &str, service: &str) -> Vec<WorkloadRef> {
    let Some(selector) = objects
        .iter()
        .find(|o| {
            o["apiVersion"] == "v1"
                && o["kind"] == "Service"
                && o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(service)
        })
        .and_then(|s| s.pointer("/spec/selector"))
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty())
    else {
        return Vec::new();
    };
    workloads_where(objects, namespace, |obj, _| {
        let labels = obj
            .pointer(if obj["kind"] == "CronJob" {
                "/spec/jobTemplate/spec/template/metadata/labels"
            } else {
                "/spec/template/metadata/labels"
            })
            .and_then(Value::as_object);
        labels.is_some_and(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v)))
    })
}

/// Where a bucket claim's consumers read its credentials and endpoint, per bucket kind:
/// `(namespace, Secret names, ConfigMap names)`.
fn bucket_credentials(
    objects: &[Value],
    b: &BucketBinding,
) -> Option<(String, Vec<String>, Vec<String>)> {
    match b.kind {
        // COSI: each BucketAccess for the claim writes its own Secret.
        BucketKind::CosiBucketClaim => {
            let ns = b.namespace.clone()?;
            let secrets = objects
                .iter()
                .filter(|o| {
                    o["kind"] == "BucketAccess"
                        && o["apiVersion"]
                            .as_str()
                            .is_some_and(|a| a.starts_with("objectstorage.k8s.io/"))
                        && o.pointer("/metadata/namespace").and_then(Value::as_str)
                            == Some(ns.as_str())
                        && o.pointer("/spec/bucketClaimName").and_then(Value::as_str)
                            == Some(b.name.as_str())
                })
                .filter_map(|o| o.pointer("/spec/credentialsSecretName")?.as_str())
                .map(str::to_owned)
                .collect();
            Some((ns, secrets, Vec::new()))
        }
        // Rook/NooBaa: a Secret and a ConfigMap named after the claim.
        BucketKind::RookObc => {
            let ns = b.namespace.clone()?;
            Some((ns, vec![b.name.clone()], vec![b.name.clone()]))
        }
        // Crossplane and ACK: the connection secret the resource writes, if it names one.
        BucketKind::Crossplane | BucketKind::CrossplaneNamespaced | BucketKind::Ack => {
            let obj = objects.iter().find(|o| {
                o["kind"] == "Bucket"
                    && o["apiVersion"]
                        .as_str()
                        .is_some_and(|a| a.starts_with(&format!("{}/", b.group)))
                    && o.pointer("/metadata/name").and_then(Value::as_str) == Some(b.name.as_str())
                    && o.pointer("/metadata/namespace").and_then(Value::as_str)
                        == b.namespace.as_deref()
            })?;
            let secret = obj
                .pointer("/spec/writeConnectionSecretToRef/name")?
                .as_str()?
                .to_owned();
            let ns = obj
                .pointer("/spec/writeConnectionSecretToRef/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| b.namespace.clone())?;
            Some((ns, vec![secret], Vec::new()))
        }
        // A cluster-scoped COSI Bucket is used through its claim.
        BucketKind::CosiBucket => None,
    }
}

/// Whether a pod spec reads the Secret (`secret == true`) or ConfigMap named `name`, as a
/// volume, a projected source, an env var or an envFrom.
fn pod_reads(pod: &Value, name: &str, secret: bool) -> bool {
    let (vol, proj, key_ref, from) = if secret {
        (
            "/secret/secretName",
            "/secret/name",
            "/valueFrom/secretKeyRef/name",
            "/secretRef/name",
        )
    } else {
        (
            "/configMap/name",
            "/configMap/name",
            "/valueFrom/configMapKeyRef/name",
            "/configMapRef/name",
        )
    };
    let is = |v: Option<&Value>| v.and_then(Value::as_str) == Some(name);
    each(pod, "/volumes")
        .any(|v| is(v.pointer(vol)) || each(v, "/projected/sources").any(|s| is(s.pointer(proj))))
        || ["/containers", "/initContainers"].iter().any(|c| {
            each(pod, c).any(|c| {
                each(c, "/env").any(|e| is(e.pointer(key_ref)))
                    || each(c, "/envFrom").any(|e| is(e.pointer(from)))
            })
        })
}

/// The workloads that read a bucket claim's credentials.
pub fn bucket_users(objects: &[Value], b: &BucketBinding) -> Vec<WorkloadRef> {
    let Some((ns, secrets, config_maps)) = bucket_credentials(objects, b) else {
        return Vec::new();
    };
    workloads_where(objects, &ns, |_, pod| {
        secrets.iter().any(|s| pod_reads(pod, s, true))
            || config_maps.iter().any(|c| pod_reads(pod, c, false))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(ns: &str, name: &str, labels: Value, pod: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"namespace": ns, "name": name},
               "spec": {"template": {"metadata": {"labels": labels}, "spec": pod}}})
    }

    fn names(w: &[WorkloadRef]) -> Vec<String> {
        w.iter().map(WorkloadRef::display).collect()
    }

    #[test]
    fn a_claim_is_used_by_the_pods_that_mount_it_in_its_namespace_only() {
        let pod =
            json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]});
        let objects = vec![
            deployment("shop", "db", json!({}), pod.clone()),
            deployment("other", "db", json!({}), pod),
            deployment("shop", "web", json!({}), json!({"volumes": []})),
        ];
        assert_eq!(
            names(&claim_users(&objects, "shop", "data")),
            ["Deployment shop/db"]
        );
    }

    #[test]
    fn a_statefulset_uses_each_of_its_per_replica_claims() {
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"namespace": "kafka", "name": "zk"},
            "spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}}],
                     "template": {"spec": {}}}});
        let objects = vec![sts];
        assert_eq!(
            names(&claim_users(&objects, "kafka", "data-zk-2")),
            ["StatefulSet kafka/zk"]
        );
        assert!(claim_users(&objects, "kafka", "data-zk-x").is_empty());
        assert!(claim_users(&objects, "kafka", "data-zookeeper-0").is_empty());
    }

    #[test]
    fn a_services_backends_are_the_workloads_its_selector_matches() {
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "shop", "name": "api"},
            "spec": {"type": "LoadBalancer", "selector": {"app": "api"}}});
        let objects = vec![
            svc,
            deployment(
                "shop",
                "api",
                json!({"app": "api", "tier": "web"}),
                json!({}),
            ),
            deployment("shop", "worker", json!({"app": "worker"}), json!({})),
        ];
        assert_eq!(
            names(&service_backends(&objects, "shop", "api")),
            ["Deployment shop/api"]
        );
        assert!(service_backends(&objects, "shop", "missing").is_empty());
    }

    #[test]
    fn an_obcs_users_read_its_secret_or_config_map_and_a_cosi_claims_users_its_access_secret() {
        let obc = BucketBinding {
            kind: BucketKind::RookObc,
            group: "objectbucket.io".into(),
            resource: "objectbucketclaims".into(),
            namespace: Some("media".into()),
            name: "uploads".into(),
            bucket: Some("uploads-1234".into()),
            deletion_policy: None,
            adopted: false,
            bucket_class: None,
            management_policies: vec![],
        };
        let cosi = BucketBinding {
            kind: BucketKind::CosiBucketClaim,
            group: "objectstorage.k8s.io".into(),
            resource: "bucketclaims".into(),
            name: "scratch".into(),
            ..obc.clone()
        };
        let objects = vec![
            deployment(
                "media",
                "env",
                json!({}),
                json!({"containers": [{"name": "c",
                "envFrom": [{"configMapRef": {"name": "uploads"}}]}]}),
            ),
            deployment(
                "media",
                "vol",
                json!({}),
                json!({"volumes": [{"name": "s",
                "secret": {"secretName": "uploads"}}]}),
            ),
            deployment(
                "media",
                "cosi",
                json!({}),
                json!({"containers": [{"name": "c",
                "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "scratch-creds", "key": "k"}}}]}]}),
            ),
            json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "BucketAccess",
                "metadata": {"namespace": "media", "name": "scratch-access"},
                "spec": {"bucketClaimName": "scratch", "credentialsSecretName": "scratch-creds"}}),
        ];
        assert_eq!(
            names(&bucket_users(&objects, &obc)),
            ["Deployment media/env", "Deployment media/vol"]
        );
        assert_eq!(
            names(&bucket_users(&objects, &cosi)),
            ["Deployment media/cosi"]
        );
    }
}
