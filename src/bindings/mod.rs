//! The bindings: which cloud disk backs each volume, which address and DNS names each
//! LoadBalancer Service answers on, which bucket each bucket claim owns. They are what a
//! cold start must reuse, so a snapshot records them as first-class data next to the
//! objects, extracted from the objects *before* sanitizing (status holds the current
//! load-balancer address and a claim's bucket name).
//!
//! Everything here is a pure function over `serde_json::Value`; capture feeds objects in,
//! [`Collector::finish`] gives the [`Bindings`] stored in the manifest.

pub mod azure;
mod buckets;
pub mod consumers;
pub mod data_policy;
mod load_balancers;
mod volumes;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use buckets::{
    APIS as BUCKET_APIS, BucketApi, BucketBinding, BucketKind, OBJECT_BUCKET_API_VERSION,
    OBJECT_BUCKET_KIND, OBJECT_BUCKET_PLURAL, ORIGINAL_MANAGEMENT, RetainFix, adopt_bucket,
    bucket_ready, object_bucket_name, object_bucket_of_claim, object_bucket_policy,
    object_bucket_retain_fix, retain_fix,
};
pub use data_policy::{CloudSnapshot, DataPolicy, InvalidPolicy, SnapshotRoad};
pub use load_balancers::{
    AWS_EIPS, LoadBalancerBinding, PIN_ANNOTATIONS, Pin, PinPatch, PinProblem, PinStyle,
    is_load_balancer, is_pinned, pin_of, pin_problems,
};
pub use volumes::{ClaimRef, IN_TREE_SOURCES, NodeLocal, Provider, VolumeBinding, node_local};

/// The binding of one PersistentVolume, if a cloud disk backs it.
pub fn volume_of(pv: &Value) -> Option<VolumeBinding> {
    volumes::extract(pv)
}

/// The cloud disk behind a PersistentVolume (CSI handle or any in-tree source), in the one
/// form every part of coldstart compares: `vol-…`, the Azure disk resource id, the GCE
/// disk name.
pub fn disk_id_of(pv: &Value) -> Option<String> {
    volumes::extract(pv).map(|v| v.disk_id)
}

/// A disk id or handle in the form every comparison uses (and a cloud's ledger lists):
/// an Azure disk by its whole resource id — its resource group is part of where it lives —
/// any other by its last path segment (`aws://zone/vol-1` → `vol-1`,
/// `projects/p/zones/z/disks/d` → `d`).
pub fn disk_key(id: &str) -> String {
    if azure::resource_group_of(id).is_some() {
        id.to_owned()
    } else {
        id.rsplit('/').next().unwrap_or(id).to_owned()
    }
}

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

/// Which bucket API an object of `(group, kind)` belongs to, if any: the one test every
/// part of coldstart asks (the restore plan, the drill, capture).
pub fn bucket_kind_of(group: &str, kind: &str) -> Option<BucketKind> {
    buckets::kind_of(group, kind)
}

/// The binding of one object of a bucket API.
pub fn bucket_of(api: &BucketApi, obj: &Value) -> Option<BucketBinding> {
    buckets::extract(api.group, api.plural, api.kind, obj)
}

/// Fill in the deletion policies bucket objects do not carry: a COSI claim follows the
/// `Bucket` object it is bound to (whose policy is the one that counts, and the one `stop`
/// changes), else its class; an ObjectBucketClaim follows its `ObjectBucket`
/// (`object_buckets`: name → reclaimPolicy; the one `stop` changes), else its StorageClass.
pub fn resolve_bucket_policies(
    buckets: &mut [BucketBinding],
    bucket_classes: &BTreeMap<String, String>,
    storage_classes: &BTreeMap<String, String>,
    object_buckets: &BTreeMap<String, String>,
) {
    let cosi_buckets: BTreeMap<String, Option<String>> = buckets
        .iter()
        .filter(|b| b.kind == BucketKind::CosiBucket)
        .map(|b| (b.name.clone(), b.deletion_policy.clone()))
        .collect();
    for b in buckets.iter_mut() {
        if b.deletion_policy.is_some() {
            continue;
        }
        b.deletion_policy = match b.kind {
            BucketKind::CosiBucketClaim => b
                .bucket
                .as_ref()
                .and_then(|o| cosi_buckets.get(o).cloned().flatten())
                .or_else(|| {
                    b.bucket_class
                        .as_ref()
                        .and_then(|c| bucket_classes.get(c).cloned())
                }),
            BucketKind::RookObc => b
                .namespace
                .as_ref()
                .and_then(|ns| {
                    object_buckets
                        .get(&object_bucket_name(ns, &b.name))
                        .cloned()
                })
                .or_else(|| {
                    b.bucket_class
                        .as_ref()
                        .and_then(|c| storage_classes.get(c).cloned())
                }),
            _ => None,
        };
    }
}

/// Collects bindings from objects as capture streams them (in any order, from any task).
#[derive(Debug, Default)]
pub struct Collector {
    bindings: Bindings,
    /// COSI BucketClass name → deletionPolicy, to say what deleting a claim would do.
    bucket_classes: BTreeMap<String, String>,
    /// StorageClass name → reclaimPolicy: an ObjectBucketClaim's bucket follows its class.
    storage_classes: BTreeMap<String, String>,
    /// Each claim's data policy annotations, joined to its volume at the end.
    claims: BTreeMap<(String, String), data_policy::ClaimIntent>,
    /// The policy of volumes whose claim names none.
    default_policy: DataPolicy,
    /// ObjectBucket name → reclaimPolicy: what an ObjectBucketClaim's deletion obeys.
    object_buckets: BTreeMap<String, String>,
}

/// Whether objects of this resource can carry bindings (so capture only looks at those).
pub fn is_relevant(group: &str, resource: &str, kind: &str) -> bool {
    matches!(
        (group, resource),
        ("", "persistentvolumes")
            | ("", "persistentvolumeclaims")
            | ("", "services")
            | ("objectstorage.k8s.io", "bucketclasses")
            | ("storage.k8s.io", "storageclasses")
            | ("objectbucket.io", OBJECT_BUCKET_PLURAL)
    ) || buckets::kind_of(group, kind).is_some()
}

impl Collector {
    /// A collector giving volumes whose claim names no data policy `default`.
    pub fn with_default_policy(default: DataPolicy) -> Self {
        Collector {
            default_policy: default,
            ..Default::default()
        }
    }

    /// Look at one object (unsanitized, status included).
    pub fn observe(&mut self, group: &str, resource: &str, kind: &str, obj: &Value) {
        match (group, resource) {
            ("", "persistentvolumeclaims") => {
                self.claims.extend(data_policy::claim_intents([obj]));
            }
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
            ("storage.k8s.io", "storageclasses") => {
                if let Some(name) = str_at(obj, "/metadata/name") {
                    let policy = str_at(obj, "/reclaimPolicy").unwrap_or("Delete");
                    self.storage_classes
                        .insert(name.to_owned(), policy.to_owned());
                }
            }
            ("objectbucket.io", OBJECT_BUCKET_PLURAL) => {
                if let Some((name, policy)) = object_bucket_policy(obj) {
                    self.object_buckets.insert(name, policy);
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
    /// their classes, volumes' data policies from their claims — with the claims whose
    /// annotation names no known policy (their volumes keep the default; a snapshot
    /// refuses them, the audit reports them).
    pub fn finish(mut self) -> (Bindings, Vec<InvalidPolicy>) {
        let invalid = data_policy::resolve(
            &mut self.bindings.volumes,
            &self.claims,
            self.default_policy,
        )
        .err()
        .unwrap_or_default();
        resolve_bucket_policies(
            &mut self.bindings.buckets,
            &self.bucket_classes,
            &self.storage_classes,
            &self.object_buckets,
        );
        let mut out = self.bindings;
        out.volumes.sort_by(|a, b| a.pv.cmp(&b.pv));
        out.load_balancers
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out.buckets.sort_by(|a, b| {
            (&a.group, &a.namespace, &a.name).cmp(&(&b.group, &b.namespace, &b.name))
        });
        (out, invalid)
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
        let (b, _) = c.finish();
        assert_eq!(b.buckets[0].deletion_policy.as_deref(), Some("Delete"));
        assert_eq!(b.buckets[0].bucket.as_deref(), Some("b-scratch"));
        assert!(!b.buckets[0].adopted);
    }

    #[test]
    fn a_cosi_claim_follows_its_bucket_object_and_an_obc_its_storage_class() {
        let mut c = Collector::default();
        c.observe(
            "objectstorage.k8s.io",
            "bucketclasses",
            "BucketClass",
            &json!({"metadata": {"name": "delete-bucket-class"}, "deletionPolicy": "Delete"}),
        );
        c.observe(
            "objectstorage.k8s.io",
            "bucketclaims",
            "BucketClaim",
            &json!({"metadata": {"name": "auto", "namespace": "cosi-demo"},
                    "spec": {"bucketClassName": "delete-bucket-class"},
                    "status": {"bucketName": "delete-bucket-class-uid"}}),
        );
        // `stop` changed the Bucket object's policy: the class no longer decides.
        c.observe(
            "objectstorage.k8s.io",
            "buckets",
            "Bucket",
            &json!({"metadata": {"name": "delete-bucket-class-uid"},
                    "spec": {"deletionPolicy": "Retain", "bucketClassName": "delete-bucket-class"},
                    "status": {"bucketID": "delete-bucket-class-uid"}}),
        );
        c.observe(
            "storage.k8s.io",
            "storageclasses",
            "StorageClass",
            &json!({"metadata": {"name": "rook-bucket"}, "reclaimPolicy": "Delete"}),
        );
        c.observe(
            "objectbucket.io",
            "objectbucketclaims",
            "ObjectBucketClaim",
            &json!({"metadata": {"name": "obc", "namespace": "t"},
                    "spec": {"generateBucketName": "obc", "storageClassName": "rook-bucket"}}),
        );
        let (b, _) = c.finish();
        let by = |k: BucketKind| b.buckets.iter().find(|x| x.kind == k).expect("bound");
        assert_eq!(
            by(BucketKind::CosiBucketClaim).deletion_policy.as_deref(),
            Some("Retain")
        );
        assert!(!by(BucketKind::CosiBucketClaim).deleted_with_cluster());
        assert_eq!(
            by(BucketKind::RookObc).deletion_policy.as_deref(),
            Some("Delete")
        );
        assert!(by(BucketKind::RookObc).deleted_with_cluster());
    }

    #[test]
    fn an_obc_follows_its_object_bucket_once_stop_changed_it_not_its_class() {
        let mut c = Collector::default();
        c.observe(
            "storage.k8s.io",
            "storageclasses",
            "StorageClass",
            &json!({"metadata": {"name": "rook-bucket"}, "reclaimPolicy": "Delete"}),
        );
        c.observe(
            "objectbucket.io",
            "objectbucketclaims",
            "ObjectBucketClaim",
            &json!({"metadata": {"name": "uploads", "namespace": "apps"},
                    "spec": {"generateBucketName": "uploads", "bucketName": "uploads-1",
                             "objectBucketName": "obc-apps-uploads", "storageClassName": "rook-bucket"}}),
        );
        let ob = json!({"metadata": {"name": "obc-apps-uploads"},
            "spec": {"reclaimPolicy": "Delete", "endpoint": {"bucketName": "uploads-1"}}});
        let fix = object_bucket_retain_fix(&ob).expect("Delete needs a fix");
        assert_eq!(fix.patch, json!({"spec": {"reclaimPolicy": "Retain"}}));
        assert_eq!(fix.undo, json!({"spec": {"reclaimPolicy": "Delete"}}));
        let retained = json!({"metadata": {"name": "obc-apps-uploads"},
            "spec": {"reclaimPolicy": "Retain"}});
        assert_eq!(object_bucket_retain_fix(&retained), None);
        c.observe(
            "objectbucket.io",
            OBJECT_BUCKET_PLURAL,
            OBJECT_BUCKET_KIND,
            &retained,
        );
        let (b, _) = c.finish();
        assert_eq!(b.buckets[0].deletion_policy.as_deref(), Some("Retain"));
        assert!(!b.buckets[0].deleted_with_cluster());
    }

    #[test]
    fn a_restored_obc_naming_its_object_bucket_is_bound_without_a_status() {
        let restored = json!({"spec": {"bucketName": "b", "objectBucketName": "obc-a-b"}});
        assert!(bucket_ready(BucketKind::RookObc, &restored));
        let pending = json!({"spec": {"bucketName": "b", "objectBucketName": "obc-a-b"},
            "status": {"phase": "Pending"}});
        assert!(!bucket_ready(BucketKind::RookObc, &pending));
        assert!(!bucket_ready(
            BucketKind::RookObc,
            &json!({"spec": {"bucketName": "b"}})
        ));
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
        assert!(
            is_relevant("", "persistentvolumeclaims", "PersistentVolumeClaim"),
            "a claim carries its volume's data policy"
        );
    }
}
