//! The bindings: which cloud disk backs each volume, which address and DNS names each
//! LoadBalancer Service answers on, which bucket each bucket claim owns. They are what a
//! cold start must reuse, so a snapshot records them as first-class data next to the
//! objects, extracted from the objects *before* sanitizing (status holds the current
//! load-balancer address and a claim's bucket name).
//!
//! Everything here is a pure function over `serde_json::Value`; capture feeds objects in,
//! [`Collector::finish`] gives the [`Bindings`] stored in the manifest.

mod buckets;
pub mod consumers;
mod load_balancers;
mod volumes;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use buckets::{BucketBinding, BucketKind};
pub use load_balancers::{LoadBalancerBinding, Pin};
pub use volumes::{ClaimRef, Provider, VolumeBinding};

/// Every binding of one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bindings {
    pub volumes: Vec<VolumeBinding>,
    pub load_balancers: Vec<LoadBalancerBinding>,
    pub buckets: Vec<BucketBinding>,
}

impl Bindings {
    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty() && self.load_balancers.is_empty() && self.buckets.is_empty()
    }
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

/// Collects bindings from objects as capture streams them (in any order, from any task).
#[derive(Debug, Default)]
pub struct Collector {
    bindings: Bindings,
    /// COSI BucketClass name → deletionPolicy, to say what deleting a claim would do.
    bucket_classes: BTreeMap<String, String>,
}

/// Whether objects of this resource can carry bindings (so capture only looks at those).
pub fn is_relevant(group: &str, resource: &str, kind: &str) -> bool {
    matches!(
        (group, resource),
        ("", "persistentvolumes") | ("", "services") | ("objectstorage.k8s.io", "bucketclasses")
    ) || buckets::kind_of(group, kind).is_some()
}

impl Collector {
    /// Look at one object (unsanitized, status included).
    pub fn observe(&mut self, group: &str, resource: &str, kind: &str, obj: &Value) {
        match (group, resource) {
            ("", "persistentvolumes") => {
                if let Some(v) = volumes::extract(obj) {
                    self.bindings.volumes.push(v);
                }
            }
            ("", "services") => {
                if let Some(lb) = load_balancers::extract(obj) {
                    self.bindings.load_balancers.push(lb);
                }
            }
            ("objectstorage.k8s.io", "bucketclasses") => {
                if let Some(name) = str_at(obj, "/metadata/name") {
                    let policy = str_at(obj, "/deletionPolicy").unwrap_or("Retain");
                    self.bucket_classes
                        .insert(name.to_owned(), policy.to_owned());
                }
            }
            _ => {
                if let Some(b) = buckets::extract(group, resource, kind, obj) {
                    self.bindings.buckets.push(b);
                }
            }
        }
    }

    /// The bindings, sorted for stable output, claims' deletion policies resolved from
    /// their classes.
    pub fn finish(mut self) -> Bindings {
        for b in &mut self.bindings.buckets {
            if b.deletion_policy.is_none()
                && let Some(class) = &b.bucket_class
            {
                b.deletion_policy = self.bucket_classes.get(class).cloned();
            }
        }
        let mut out = self.bindings;
        out.volumes.sort_by(|a, b| a.pv.cmp(&b.pv));
        out.load_balancers
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out.buckets.sort_by(|a, b| {
            (&a.group, &a.namespace, &a.name).cmp(&(&b.group, &b.namespace, &b.name))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_claims_deletion_policy_comes_from_its_bucket_class() {
        let mut c = Collector::default();
        c.observe(
            "objectstorage.k8s.io",
            "bucketclaims",
            "BucketClaim",
            &json!({"metadata": {"name": "scratch", "namespace": "b"},
                    "spec": {"bucketClassName": "standard"},
                    "status": {"bucketName": "b-scratch"}}),
        );
        c.observe(
            "objectstorage.k8s.io",
            "bucketclasses",
            "BucketClass",
            &json!({"metadata": {"name": "standard"}, "deletionPolicy": "Delete"}),
        );
        let b = c.finish();
        assert_eq!(b.buckets[0].deletion_policy.as_deref(), Some("Delete"));
        assert_eq!(b.buckets[0].bucket.as_deref(), Some("b-scratch"));
        assert!(!b.buckets[0].adopted);
    }

    #[test]
    fn only_resources_that_can_bind_are_relevant() {
        assert!(is_relevant("", "persistentvolumes", "PersistentVolume"));
        assert!(is_relevant("", "services", "Service"));
        assert!(is_relevant(
            "objectstorage.k8s.io",
            "bucketclaims",
            "BucketClaim"
        ));
        assert!(is_relevant("s3.aws.upbound.io", "buckets", "Bucket"));
        assert!(!is_relevant("", "configmaps", "ConfigMap"));
        assert!(!is_relevant(
            "",
            "persistentvolumeclaims",
            "PersistentVolumeClaim"
        ));
    }
}
