//! Chainable fixture builders for tests, shared by unit tests (`cfg(test)`) and the
//! integration tests (the `testing` feature, which `tests/` turns on): say what matters
//! about an object and get the rest of its shape right, instead of a `json!` literal per
//! test.
//!
//! ```ignore
//! let claim = pvc("db", "data").bound_to("pv-data").build();
//! let svc = lb_service("edge", "mqtt").ingress_ip("203.0.113.7").build();
//! ```

use serde_json::{Value, json};

/// An object under construction. Every builder below starts one; `build` hands it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Object(Value);

impl Object {
    /// Any object: `apiVersion`, `kind`, namespace (None: cluster-scoped) and name.
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        let mut v = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
        if let Some(ns) = namespace {
            v["metadata"]["namespace"] = json!(ns);
        }
        Object(v)
    }

    /// Set the value at a JSON pointer, creating the objects on the way (a numeric part
    /// indexes an existing array).
    pub fn set(mut self, pointer: &str, value: Value) -> Self {
        let mut at = &mut self.0;
        for part in pointer.trim_start_matches('/').split('/') {
            let part = part.replace("~1", "/").replace("~0", "~");
            at = match at {
                Value::Array(items) => {
                    let i: usize = part
                        .parse()
                        .unwrap_or_else(|_| panic!("{pointer}: {part} indexes an array"));
                    &mut items[i]
                }
                other => {
                    if !other.is_object() {
                        *other = json!({});
                    }
                    match other {
                        Value::Object(m) => m.entry(part).or_insert(Value::Null),
                        _ => unreachable!("made an object above"),
                    }
                }
            };
        }
        *at = value;
        self
    }

    pub fn label(self, key: &str, value: &str) -> Self {
        let key = key.replace('~', "~0").replace('/', "~1");
        self.set(&format!("/metadata/labels/{key}"), json!(value))
    }

    pub fn annotation(self, key: &str, value: &str) -> Self {
        let key = key.replace('~', "~0").replace('/', "~1");
        self.set(&format!("/metadata/annotations/{key}"), json!(value))
    }

    pub fn spec(self, field: &str, value: Value) -> Self {
        self.set(&format!("/spec/{field}"), value)
    }

    // PersistentVolume

    /// A CSI volume on `handle` (a disk id, or a provider's full handle).
    pub fn csi_disk(self, handle: &str) -> Self {
        self.set(
            "/spec/csi",
            json!({"driver": "ebs.csi.aws.com", "volumeHandle": handle}),
        )
    }

    /// An in-tree AWS EBS volume.
    pub fn ebs_volume(self, volume_id: &str) -> Self {
        self.set("/spec/awsElasticBlockStore", json!({"volumeID": volume_id}))
    }

    /// Claimed by the PVC `namespace/name` (spec.claimRef).
    pub fn claimed_by(self, namespace: &str, name: &str) -> Self {
        self.spec("claimRef", json!({"namespace": namespace, "name": name}))
    }

    pub fn reclaim(self, policy: &str) -> Self {
        self.spec("persistentVolumeReclaimPolicy", json!(policy))
    }

    // PersistentVolumeClaim

    /// Bound to the PV `pv` (spec and status).
    pub fn bound_to(self, pv: &str) -> Self {
        self.spec("volumeName", json!(pv))
            .set("/status/phase", json!("Bound"))
    }

    // Service

    /// Answering on `ip` (status.loadBalancer.ingress).
    pub fn ingress_ip(self, ip: &str) -> Self {
        self.set("/status/loadBalancer/ingress", json!([{"ip": ip}]))
    }

    /// Pinned with `spec.loadBalancerIP`.
    pub fn load_balancer_ip(self, ip: &str) -> Self {
        self.spec("loadBalancerIP", json!(ip))
    }

    // Bucket claims

    /// A COSI claim whose bucket is ready.
    pub fn ready_on(self, bucket: &str) -> Self {
        self.set("/status/bucketReady", json!(true))
            .set("/status/bucketName", json!(bucket))
    }

    /// A Crossplane managed resource reporting Ready.
    pub fn ready(self) -> Self {
        self.set(
            "/status/conditions",
            json!([{"type": "Ready", "status": "True"}]),
        )
    }

    // Workloads

    pub fn replicas(self, n: i64) -> Self {
        self.spec("replicas", json!(n))
    }

    // CustomResourceDefinition

    /// Cluster-scoped instead of namespaced.
    pub fn cluster_scoped(self) -> Self {
        self.spec("scope", json!("Cluster"))
    }

    /// With a `status` subresource on its (first) version.
    pub fn status_subresource(self) -> Self {
        self.set("/spec/versions/0/subresources", json!({"status": {}}))
    }

    pub fn build(self) -> Value {
        self.0
    }

    /// As a YAML document (for `kubectl apply -f -`).
    pub fn yaml(self) -> String {
        serde_yaml::to_string(&self.0).unwrap_or_else(|e| panic!("a JSON value is YAML: {e}"))
    }
}

pub fn pv(name: &str) -> Object {
    Object::new("v1", "PersistentVolume", None, name)
}

pub fn pvc(namespace: &str, name: &str) -> Object {
    Object::new("v1", "PersistentVolumeClaim", Some(namespace), name)
}

pub fn service(namespace: &str, name: &str) -> Object {
    Object::new("v1", "Service", Some(namespace), name)
}

pub fn lb_service(namespace: &str, name: &str) -> Object {
    service(namespace, name).spec("type", json!("LoadBalancer"))
}

pub fn bucket_claim(namespace: &str, name: &str) -> Object {
    Object::new(
        "objectstorage.k8s.io/v1alpha1",
        "BucketClaim",
        Some(namespace),
        name,
    )
}

/// A Crossplane (Upbound provider-aws) S3 Bucket, cluster-scoped.
pub fn crossplane_bucket(name: &str) -> Object {
    Object::new("s3.aws.upbound.io/v1beta1", "Bucket", None, name)
}

/// A Rook/NooBaa `ObjectBucketClaim` of StorageClass `class`.
pub fn obc(namespace: &str, name: &str, class: &str) -> Object {
    Object::new(
        "objectbucket.io/v1alpha1",
        "ObjectBucketClaim",
        Some(namespace),
        name,
    )
    .spec("storageClassName", json!(class))
}

/// A StorageClass served by `provisioner`, with its reclaim policy.
pub fn storage_class(name: &str, provisioner: &str, reclaim: &str) -> Object {
    Object::new("storage.k8s.io/v1", "StorageClass", None, name)
        .set("/provisioner", json!(provisioner))
        .set("/reclaimPolicy", json!(reclaim))
}

pub fn deployment(namespace: &str, name: &str) -> Object {
    Object::new("apps/v1", "Deployment", Some(namespace), name)
}

pub fn statefulset(namespace: &str, name: &str) -> Object {
    Object::new("apps/v1", "StatefulSet", Some(namespace), name)
}

/// A namespaced CustomResourceDefinition for `kind` in `group` (served and stored at
/// `version`, any fields allowed): the CRD several tests used to paste. A CRD in a
/// `*.k8s.io` group carries the API-review approval kube-apiserver requires of it.
pub fn crd(group: &str, version: &str, kind: &str, plural: &str) -> Object {
    let crd = Object::new(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        None,
        &format!("{plural}.{group}"),
    );
    let crd = if group.ends_with(".k8s.io") {
        crd.annotation(
            "api-approved.kubernetes.io",
            "https://github.com/kubernetes-sigs/container-object-storage-interface-api/pull/2",
        )
    } else {
        crd
    };
    crd.set(
        "/spec",
        json!({
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": [{"name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]
        }),
    )
}

/// The COSI `BucketClaim` CRD (objectstorage.k8s.io/v1alpha1, with a status subresource).
pub fn cosi_bucket_claim_crd() -> Object {
    crd(
        "objectstorage.k8s.io",
        "v1alpha1",
        "BucketClaim",
        "bucketclaims",
    )
    .status_subresource()
}

/// The COSI `Bucket` CRD (cluster-scoped, with a status subresource).
pub fn cosi_bucket_crd() -> Object {
    crd("objectstorage.k8s.io", "v1alpha1", "Bucket", "buckets")
        .cluster_scoped()
        .status_subresource()
}

/// The COSI `BucketClass` CRD (cluster-scoped).
pub fn cosi_bucket_class_crd() -> Object {
    crd(
        "objectstorage.k8s.io",
        "v1alpha1",
        "BucketClass",
        "bucketclasses",
    )
    .cluster_scoped()
}

/// The lib-bucket-provisioner `ObjectBucketClaim` CRD (objectbucket.io/v1alpha1).
pub fn object_bucket_claim_crd() -> Object {
    crd(
        "objectbucket.io",
        "v1alpha1",
        "ObjectBucketClaim",
        "objectbucketclaims",
    )
    .status_subresource()
}

/// The lib-bucket-provisioner `ObjectBucket` CRD (cluster-scoped).
pub fn object_bucket_crd() -> Object {
    crd(
        "objectbucket.io",
        "v1alpha1",
        "ObjectBucket",
        "objectbuckets",
    )
    .cluster_scoped()
    .status_subresource()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_chain_into_the_object_a_literal_would_have_spelled_out() {
        assert_eq!(
            pvc("db", "data")
                .bound_to("pv-1")
                .label("app", "pg")
                .build(),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": "db", "labels": {"app": "pg"}},
                "spec": {"volumeName": "pv-1"}, "status": {"phase": "Bound"}})
        );
        let crd = cosi_bucket_claim_crd().build();
        assert_eq!(
            crd["spec"]["versions"][0]["subresources"],
            json!({"status": {}})
        );
        assert_eq!(crd["metadata"]["name"], "bucketclaims.objectstorage.k8s.io");
        assert_eq!(
            crossplane_bucket("b")
                .annotation("crossplane.io/external-name", "ext")
                .build()["metadata"]["annotations"]["crossplane.io/external-name"],
            "ext"
        );
    }
}
