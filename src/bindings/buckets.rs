//! Bucket bindings: which bucket each claim owns, whether it adopts an existing bucket or
//! asks for a new one, and what deleting the claim does to the bucket. Recognised: COSI
//! (`BucketClaim`, `Bucket`), Crossplane bucket managed resources (`*.upbound.io`,
//! `*.crossplane.io`; v2 namespaced `*.m.upbound.io`), ACK S3 `Bucket` and Rook/NooBaa
//! `ObjectBucketClaim`. What each API does to its bucket when the cluster goes
//! ([`BucketBinding::deleted_with_cluster`]), and the change that keeps the bucket
//! ([`retain_fix`]), live here too: audit, stop and the gate ask, none of them knows.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{owned, str_at};

/// Which API a bucket claim belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BucketKind {
    CosiBucketClaim,
    CosiBucket,
    /// Crossplane v1: cluster-scoped, `spec.deletionPolicy`.
    Crossplane,
    /// Crossplane v2: namespaced (`*.m.upbound.io`), no `deletionPolicy`: what happens on
    /// deletion is `spec.managementPolicies`.
    CrossplaneNamespaced,
    Ack,
    RookObc,
}

/// One API whose objects bind buckets: what audit lists and the gate covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketApi {
    pub group: &'static str,
    /// A version every release of the API serves.
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub bucket_kind: BucketKind,
}

/// Every bucket API coldstart knows, with a version to list it at.
pub const APIS: &[BucketApi] = &[
    BucketApi {
        group: "objectstorage.k8s.io",
        version: "v1alpha1",
        plural: "bucketclaims",
        kind: "BucketClaim",
        bucket_kind: BucketKind::CosiBucketClaim,
    },
    BucketApi {
        group: "objectstorage.k8s.io",
        version: "v1alpha1",
        plural: "buckets",
        kind: "Bucket",
        bucket_kind: BucketKind::CosiBucket,
    },
    BucketApi {
        group: "s3.aws.upbound.io",
        version: "v1beta1",
        plural: "buckets",
        kind: "Bucket",
        bucket_kind: BucketKind::Crossplane,
    },
    BucketApi {
        group: "s3.aws.crossplane.io",
        version: "v1beta1",
        plural: "buckets",
        kind: "Bucket",
        bucket_kind: BucketKind::Crossplane,
    },
    BucketApi {
        group: "s3.aws.m.upbound.io",
        version: "v1beta1",
        plural: "buckets",
        kind: "Bucket",
        bucket_kind: BucketKind::CrossplaneNamespaced,
    },
    BucketApi {
        group: "s3.services.k8s.aws",
        version: "v1alpha1",
        plural: "buckets",
        kind: "Bucket",
        bucket_kind: BucketKind::Ack,
    },
    BucketApi {
        group: "objectbucket.io",
        version: "v1alpha1",
        plural: "objectbucketclaims",
        kind: "ObjectBucketClaim",
        bucket_kind: BucketKind::RookObc,
    },
];

/// Crossplane management policies that leave the external resource alone on deletion
/// (everything but `Delete`): what a v2 namespaced resource, which has no
/// `deletionPolicy`, offers to keep its bucket.
pub const KEEP_POLICIES: [&str; 4] = ["Observe", "Create", "Update", "LateInitialize"];

/// A change that keeps a bucket when its object is deleted, with its undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainFix {
    pub description: String,
    pub patch: Value,
    pub undo: Value,
}

/// One bucket claim and the bucket behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketBinding {
    pub kind: BucketKind,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
    /// The bucket's name or id in the cloud, when known.
    pub bucket: Option<String>,
    /// What deleting the claim does (`Delete`, `Retain`, `Orphan`, …), when known.
    pub deletion_policy: Option<String>,
    /// Whether the claim names an existing bucket rather than asking for a new one.
    pub adopted: bool,
    /// The COSI class a claim asks for (its deletion policy is resolved from it).
    pub bucket_class: Option<String>,
    /// Crossplane management policies (`["Observe"]` adopts read-only).
    pub management_policies: Vec<String>,
}

/// The cluster-scoped `ObjectBucket` a lib-bucket-provisioner (Rook, NooBaa) creates for
/// every `ObjectBucketClaim` it serves. It carries the bucket and the `reclaimPolicy` copied
/// from the claim's StorageClass when the bucket was provisioned; deleting the claim obeys
/// the ObjectBucket's policy, not the class's (a StorageClass is immutable, the
/// ObjectBucket is not), so it is what `stop` changes.
pub const OBJECT_BUCKET_API_VERSION: &str = "objectbucket.io/v1alpha1";
pub const OBJECT_BUCKET_KIND: &str = "ObjectBucket";
pub const OBJECT_BUCKET_PLURAL: &str = "objectbuckets";

/// The name lib-bucket-provisioner gives the `ObjectBucket` of claim `namespace/name`
/// (`obc-<namespace>-<name>`, its `objectBucketNameFormat`).
pub fn object_bucket_name(namespace: &str, claim: &str) -> String {
    format!("obc-{namespace}-{claim}")
}

/// The `ObjectBucket` a claim is bound to: `spec.objectBucketName` once provisioned, else
/// the name the provisioner will give it.
pub fn object_bucket_of_claim(obc: &Value) -> Option<String> {
    if let Some(n) = str_at(obc, "/spec/objectBucketName") {
        return Some(n.to_owned());
    }
    Some(object_bucket_name(
        str_at(obc, "/metadata/namespace")?,
        str_at(obc, "/metadata/name")?,
    ))
}

/// An `ObjectBucket`'s name and reclaim policy. A missing policy makes the provisioner
/// refuse to delete anything ("missing reclaimPolicy"), so it reads as `Retain`.
pub fn object_bucket_policy(ob: &Value) -> Option<(String, String)> {
    Some((
        str_at(ob, "/metadata/name")?.to_owned(),
        str_at(ob, "/spec/reclaimPolicy")
            .unwrap_or("Retain")
            .to_owned(),
    ))
}

/// The change that keeps the bucket behind an `ObjectBucket` when its claim (or the
/// cluster) is deleted: `spec.reclaimPolicy: Retain` makes the provisioner revoke access
/// instead of deleting the bucket. `None` when the policy already keeps it.
pub fn object_bucket_retain_fix(ob: &Value) -> Option<RetainFix> {
    let policy = str_at(ob, "/spec/reclaimPolicy")?;
    if !policy.eq_ignore_ascii_case("delete") {
        return None;
    }
    Some(RetainFix {
        description: format!("ObjectBucket reclaimPolicy {policy} → Retain"),
        patch: json!({"spec": {"reclaimPolicy": "Retain"}}),
        undo: json!({"spec": {"reclaimPolicy": policy}}),
    })
}

/// Which bucket API an object of `(group, kind)` belongs to.
pub fn kind_of(group: &str, kind: &str) -> Option<BucketKind> {
    match (group, kind) {
        (g, "Bucket") if g.ends_with(".m.upbound.io") || g.ends_with(".m.crossplane.io") => {
            Some(BucketKind::CrossplaneNamespaced)
        }
        ("objectstorage.k8s.io", "BucketClaim") => Some(BucketKind::CosiBucketClaim),
        ("objectstorage.k8s.io", "Bucket") => Some(BucketKind::CosiBucket),
        ("s3.services.k8s.aws", "Bucket") => Some(BucketKind::Ack),
        ("objectbucket.io", "ObjectBucketClaim") => Some(BucketKind::RookObc),
        (g, "Bucket") if g.ends_with(".upbound.io") || g.ends_with(".crossplane.io") => {
            Some(BucketKind::Crossplane)
        }
        _ => None,
    }
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The binding of one bucket claim, if the object is one.
pub fn extract(group: &str, resource: &str, kind: &str, obj: &Value) -> Option<BucketBinding> {
    let kind = kind_of(group, kind)?;
    let mut b = BucketBinding {
        kind,
        group: group.to_owned(),
        resource: resource.to_owned(),
        namespace: owned(str_at(obj, "/metadata/namespace")),
        name: str_at(obj, "/metadata/name")?.to_owned(),
        bucket: None,
        deletion_policy: None,
        adopted: false,
        bucket_class: None,
        management_policies: Vec::new(),
    };
    match kind {
        BucketKind::CosiBucketClaim => {
            let existing = str_at(obj, "/spec/existingBucketName");
            b.adopted = existing.is_some();
            b.bucket = owned(existing.or_else(|| str_at(obj, "/status/bucketName")));
            b.bucket_class = owned(str_at(obj, "/spec/bucketClassName"));
        }
        BucketKind::CosiBucket => {
            let existing = str_at(obj, "/spec/existingBucketID");
            b.adopted = existing.is_some();
            b.bucket = owned(existing.or_else(|| str_at(obj, "/status/bucketID")));
            b.deletion_policy = owned(str_at(obj, "/spec/deletionPolicy"));
            b.bucket_class = owned(str_at(obj, "/spec/bucketClassName"));
        }
        BucketKind::Crossplane | BucketKind::CrossplaneNamespaced => {
            let external = annotation(obj, "crossplane.io/external-name");
            b.adopted = external.is_some();
            // A managed resource is named after its bucket unless the external name says
            // otherwise.
            b.bucket = owned(external).or_else(|| Some(b.name.clone()));
            b.management_policies = obj
                .pointer("/spec/managementPolicies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            let may_delete = b.management_policies.is_empty()
                || b.management_policies
                    .iter()
                    .any(|p| p == "*" || p == "Delete");
            // v1's default deletionPolicy is Delete; v2 has none. Either way, management
            // policies without Delete keep the bucket.
            let policy = match kind {
                BucketKind::Crossplane => str_at(obj, "/spec/deletionPolicy").unwrap_or("Delete"),
                _ => "Delete",
            };
            b.deletion_policy = Some(if may_delete { policy } else { "Orphan" }.to_owned());
        }
        BucketKind::Ack => {
            b.adopted = annotation(obj, "services.k8s.aws/adoption-policy") == Some("adopt");
            // An adopting resource names its bucket in `adoption-fields` (its spec may be
            // empty until ACK fills it in).
            let adopted_name = annotation(obj, "services.k8s.aws/adoption-fields")
                .and_then(|f| serde_json::from_str::<Value>(f).ok())
                .and_then(|f| f.get("name").and_then(Value::as_str).map(str::to_owned));
            b.bucket = owned(str_at(obj, "/spec/name")).or(adopted_name);
            // ACK deletes the AWS resource with its object unless told to retain it.
            b.deletion_policy = Some(
                annotation(obj, "services.k8s.aws/deletion-policy")
                    .unwrap_or("delete")
                    .to_owned(),
            );
        }
        BucketKind::RookObc => {
            let generated = str_at(obj, "/spec/generateBucketName").is_some();
            let name = str_at(obj, "/spec/bucketName");
            b.adopted = name.is_some() && !generated;
            b.bucket = owned(name);
            // Its deletion policy is its StorageClass's reclaimPolicy (resolved by the
            // collector).
            b.bucket_class = owned(str_at(obj, "/spec/storageClassName"));
        }
    }
    Some(b)
}

/// Whether the object's controller reports it bound to its bucket, in its API's terms.
pub fn bucket_ready(kind: BucketKind, obj: &Value) -> bool {
    let condition = |ty: &str| {
        obj.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
    };
    match kind {
        BucketKind::CosiBucketClaim | BucketKind::CosiBucket => {
            obj.pointer("/status/bucketReady") == Some(&Value::Bool(true))
        }
        BucketKind::Crossplane | BucketKind::CrossplaneNamespaced => condition("Ready"),
        BucketKind::Ack => condition("ACK.ResourceSynced"),
        // lib-bucket-provisioner takes `spec.objectBucketName` for "provisioning complete"
        // and never writes such a claim's status again: a restored claim (its status
        // dropped, its ObjectBucket restored beside it) is bound by its spec alone.
        BucketKind::RookObc => match str_at(obj, "/status/phase") {
            Some(phase) => phase == "Bound",
            None => str_at(obj, "/spec/objectBucketName").is_some(),
        },
    }
}

impl BucketBinding {
    /// Whether deleting the cluster (and so this object) deletes the bucket. A policy not
    /// known (a claim whose class was not seen) counts as Delete: the cautious answer.
    pub fn deleted_with_cluster(&self) -> bool {
        let policy = self.deletion_policy.as_deref().unwrap_or("Delete");
        policy.eq_ignore_ascii_case("delete")
    }
}

/// The change that keeps the bucket behind `obj` when the object (or the cluster) is
/// deleted, using the mechanism its API offers; `None` when nothing needs changing or
/// the API offers nothing on this object (a COSI claim: its `Bucket` object is changed; an
/// OBC: its `ObjectBucket` is, with [`object_bucket_retain_fix`]).
pub fn retain_fix(binding: &BucketBinding, obj: &Value) -> Option<RetainFix> {
    if !binding.deleted_with_cluster() {
        return None;
    }
    match binding.kind {
        BucketKind::CosiBucket => {
            let current = obj.pointer("/spec/deletionPolicy").cloned();
            Some(RetainFix {
                description: "COSI Bucket deletionPolicy Delete → Retain".into(),
                patch: json!({"spec": {"deletionPolicy": "Retain"}}),
                undo: json!({"spec": {"deletionPolicy": current.unwrap_or(Value::Null)}}),
            })
        }
        BucketKind::Crossplane => {
            let current = obj.pointer("/spec/deletionPolicy").cloned();
            Some(RetainFix {
                description: "deletionPolicy Delete → Orphan".into(),
                patch: json!({"spec": {"deletionPolicy": "Orphan"}}),
                undo: json!({"spec": {"deletionPolicy": current.unwrap_or(Value::Null)}}),
            })
        }
        BucketKind::CrossplaneNamespaced => {
            let current = obj.pointer("/spec/managementPolicies").cloned();
            Some(RetainFix {
                description: format!(
                    "managementPolicies → {KEEP_POLICIES:?} (no Delete: a namespaced resource has no deletionPolicy)"
                ),
                patch: json!({"spec": {"managementPolicies": KEEP_POLICIES}}),
                undo: json!({"spec": {"managementPolicies": current.unwrap_or(Value::Null)}}),
            })
        }
        BucketKind::Ack => {
            let key = "services.k8s.aws/deletion-policy";
            let current = obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(key))
                .cloned();
            Some(RetainFix {
                description: "ACK deletion-policy → retain".into(),
                patch: json!({"metadata": {"annotations": {key: "retain"}}}),
                undo: json!({"metadata": {"annotations": {key: current.unwrap_or(Value::Null)}}}),
            })
        }
        BucketKind::CosiBucketClaim | BucketKind::RookObc => None,
    }
}

/// Where a Crossplane bucket's own policies wait while a restore adopts it read-only;
/// restore puts them back once the bucket is verified.
pub const ORIGINAL_MANAGEMENT: &str = "coldstart.dev/original-management";

/// Rewrite a restored bucket object of any known API so its operator adopts `bucket` (the
/// recorded one) instead of creating a new one; returns what was changed, for the plan.
pub fn adopt_bucket(obj: &mut Value, bucket: Option<&str>) -> Vec<String> {
    let mut transforms = Vec::new();
    let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, kind.as_str()) {
        ("objectstorage.k8s.io", "BucketClaim") => {
            if obj.pointer("/spec/existingBucketName").is_none()
                && let Some(b) = bucket
            {
                obj["spec"]["existingBucketName"] = json!(b);
                transforms.push(format!("adopts bucket {b} (spec.existingBucketName)"));
            }
        }
        ("objectstorage.k8s.io", "Bucket") => {
            if obj.pointer("/spec/existingBucketID").is_none()
                && let Some(b) = bucket
            {
                obj["spec"]["existingBucketID"] = json!(b);
                transforms.push(format!("adopts bucket {b} (spec.existingBucketID)"));
            }
        }
        ("objectbucket.io", "ObjectBucketClaim") => {
            if let Some(b) = bucket {
                if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                    if spec.remove("generateBucketName").is_some() {
                        transforms.push("generateBucketName removed".into());
                    }
                    spec.insert("bucketName".into(), json!(b));
                }
                transforms.push(format!("adopts bucket {b} (spec.bucketName)"));
            }
        }
        (g, _) if g.ends_with(".services.k8s.aws") || g == "s3.services.k8s.aws" => {
            let a = annotations_mut(obj);
            a.insert("services.k8s.aws/adoption-policy".into(), json!("adopt"));
            a.insert("services.k8s.aws/deletion-policy".into(), json!("retain"));
            transforms.push("ACK adoption-policy adopt, deletion-policy retain".into());
        }
        (g, "Bucket") if g.contains("upbound.io") || g.contains("crossplane.io") => {
            // Read-only adoption until verified: a missing bucket must show as missing, not
            // be created anew; the original policies come back after verification.
            let original = json!({
                "managementPolicies": obj.pointer("/spec/managementPolicies").cloned().unwrap_or(Value::Null),
                "deletionPolicy": obj.pointer("/spec/deletionPolicy").cloned().unwrap_or(Value::Null),
            });
            if obj.pointer("/spec/managementPolicies") != Some(&json!(["Observe"])) {
                annotations_mut(obj)
                    .insert(ORIGINAL_MANAGEMENT.into(), json!(original.to_string()));
                obj["spec"]["managementPolicies"] = json!(["Observe"]);
                obj["spec"]["deletionPolicy"] = json!("Orphan");
                transforms.push(
                    "managementPolicies [Observe], deletionPolicy Orphan until verified".into(),
                );
            }
            let name = bucket.map(str::to_owned).or_else(|| {
                obj.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            if let Some(b) = name {
                let a = annotations_mut(obj);
                if a.get("crossplane.io/external-name").and_then(Value::as_str) != Some(b.as_str())
                {
                    a.insert("crossplane.io/external-name".into(), json!(b));
                    transforms.push(format!("adopts bucket {b} (crossplane.io/external-name)"));
                }
            }
        }
        _ => {}
    }
    transforms
}

fn annotations_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations was just made an object")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bucket_claims_of_every_style_adopt_their_recorded_bucket() {
        let cases = [
            (
                json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "BucketClaim", "metadata": {"name": "c"}, "spec": {"bucketClassName": "std"}}),
                "/spec/existingBucketName",
            ),
            (
                json!({"apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucketClaim", "metadata": {"name": "c"}, "spec": {"generateBucketName": "x"}}),
                "/spec/bucketName",
            ),
            (
                json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket", "metadata": {"name": "c"}, "spec": {}}),
                "/metadata/annotations/crossplane.io~1external-name",
            ),
        ];
        let mut xp = json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket", "metadata": {"name": "c"}, "spec": {"deletionPolicy": "Delete"}});
        adopt_bucket(&mut xp, Some("b-1"));
        assert_eq!(
            xp["spec"]["managementPolicies"],
            json!(["Observe"]),
            "adopted read-only until verified"
        );
        assert_eq!(xp["spec"]["deletionPolicy"], "Orphan");
        for (mut obj, ptr) in cases {
            adopt_bucket(&mut obj, Some("b-1"));
            assert_eq!(obj.pointer(ptr), Some(&json!("b-1")), "{obj}");
        }
        let mut ack = json!({"apiVersion": "s3.services.k8s.aws/v1alpha1", "kind": "Bucket", "metadata": {"name": "c"}, "spec": {}});
        adopt_bucket(&mut ack, Some("c"));
        assert_eq!(
            ack["metadata"]["annotations"]["services.k8s.aws/adoption-policy"],
            "adopt"
        );
        assert_eq!(
            ack["metadata"]["annotations"]["services.k8s.aws/deletion-policy"],
            "retain"
        );
    }

    #[test]
    fn every_bucket_api_yields_bucket_policy_and_adoption() {
        // (case, group, resource, kind, object, bucket, deletion policy, adopted)
        let cases = [
            (
                "cosi claim adopting",
                "objectstorage.k8s.io",
                "bucketclaims",
                "BucketClaim",
                json!({"metadata": {"name": "data", "namespace": "t"}, "spec": {"existingBucketName": "t-data", "bucketClassName": "retained"}}),
                Some("t-data"),
                None,
                true,
            ),
            (
                "cosi claim creating",
                "objectstorage.k8s.io",
                "bucketclaims",
                "BucketClaim",
                json!({"metadata": {"name": "s", "namespace": "t"}, "spec": {"bucketClassName": "standard"}, "status": {"bucketName": "s-123"}}),
                Some("s-123"),
                None,
                false,
            ),
            (
                "cosi bucket adopting",
                "objectstorage.k8s.io",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "b"}, "spec": {"existingBucketID": "arn:b", "deletionPolicy": "Retain"}}),
                Some("arn:b"),
                Some("Retain"),
                true,
            ),
            (
                "crossplane orphan",
                "s3.aws.upbound.io",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "logs", "annotations": {"crossplane.io/external-name": "platform-logs"}},
                       "spec": {"deletionPolicy": "Orphan", "managementPolicies": ["Observe"]}}),
                Some("platform-logs"),
                Some("Orphan"),
                true,
            ),
            (
                "crossplane default delete",
                "storage.gcp.upbound.io",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "new"}, "spec": {}}),
                Some("new"),
                Some("Delete"),
                false,
            ),
            (
                "crossplane v1 delete but management policies without Delete",
                "s3.aws.upbound.io",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "kept"}, "spec": {"managementPolicies": ["Observe", "Create", "Update", "LateInitialize"]}}),
                Some("kept"),
                Some("Orphan"),
                false,
            ),
            (
                "crossplane v2 namespaced, default management policies",
                "s3.aws.m.upbound.io",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "rw-xp-ns", "namespace": "upbound-system"}, "spec": {"forProvider": {"region": "us-west-1"}}}),
                Some("rw-xp-ns"),
                Some("Delete"),
                false,
            ),
            (
                "ack adopting by adoption-fields before ACK fills spec.name",
                "s3.services.k8s.aws",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "rw-ack-adopt", "namespace": "t", "annotations": {
                    "services.k8s.aws/adoption-policy": "adopt",
                    "services.k8s.aws/adoption-fields": "{\"name\": \"rw-ack-existing-bucket\"}",
                    "services.k8s.aws/deletion-policy": "retain"}}}),
                Some("rw-ack-existing-bucket"),
                Some("retain"),
                true,
            ),
            (
                "ack adopt retain",
                "s3.services.k8s.aws",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "b", "namespace": "t", "annotations": {
                    "services.k8s.aws/adoption-policy": "adopt", "services.k8s.aws/deletion-policy": "retain"}},
                    "spec": {"name": "acme-b"}}),
                Some("acme-b"),
                Some("retain"),
                true,
            ),
            (
                "ack new",
                "s3.services.k8s.aws",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "b", "namespace": "t"}, "spec": {"name": "acme-c"}}),
                Some("acme-c"),
                Some("delete"),
                false,
            ),
            (
                "rook obc named",
                "objectbucket.io",
                "objectbucketclaims",
                "ObjectBucketClaim",
                json!({"metadata": {"name": "o", "namespace": "t"}, "spec": {"bucketName": "fixed", "storageClassName": "rgw"}}),
                Some("fixed"),
                None,
                true,
            ),
            (
                "rook obc generated",
                "objectbucket.io",
                "objectbucketclaims",
                "ObjectBucketClaim",
                json!({"metadata": {"name": "o", "namespace": "t"}, "spec": {"generateBucketName": "o", "bucketName": "o-5f2a"}}),
                Some("o-5f2a"),
                None,
                false,
            ),
        ];
        for (name, g, r, k, obj, bucket, policy, adopted) in cases {
            let b = extract(g, r, k, &obj).unwrap_or_else(|| panic!("{name}: no binding"));
            assert_eq!(b.bucket.as_deref(), bucket, "{name}");
            assert_eq!(b.deletion_policy.as_deref(), policy, "{name}");
            assert_eq!(b.adopted, adopted, "{name}");
        }
    }

    #[test]
    fn every_deleting_bucket_kind_has_a_fix_with_its_own_mechanism_and_an_undo() {
        // (case, group, resource, kind, object, patched pointer, patched value)
        let cases = [
            (
                "cosi bucket",
                "objectstorage.k8s.io",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "b"}, "spec": {"deletionPolicy": "Delete"}}),
                "/spec/deletionPolicy",
                json!("Retain"),
            ),
            (
                "crossplane v1",
                "s3.aws.upbound.io",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "b"}, "spec": {}}),
                "/spec/deletionPolicy",
                json!("Orphan"),
            ),
            (
                "crossplane v2 namespaced",
                "s3.aws.m.upbound.io",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "b", "namespace": "n"}, "spec": {}}),
                "/spec/managementPolicies",
                json!(KEEP_POLICIES),
            ),
            (
                "ack",
                "s3.services.k8s.aws",
                "buckets",
                "Bucket",
                json!({"metadata": {"name": "b", "namespace": "n"}, "spec": {"name": "b"}}),
                "/metadata/annotations/services.k8s.aws~1deletion-policy",
                json!("retain"),
            ),
        ];
        for (name, g, r, k, obj, ptr, want) in cases {
            let b = extract(g, r, k, &obj).unwrap_or_else(|| panic!("{name}"));
            assert!(b.deleted_with_cluster(), "{name}");
            let fix = retain_fix(&b, &obj).unwrap_or_else(|| panic!("{name}: no fix"));
            assert_eq!(fix.patch.pointer(ptr), Some(&want), "{name}");
            let mut fixed = obj.clone();
            json_patch_merge(&mut fixed, &fix.patch);
            let after = extract(g, r, k, &fixed).unwrap_or_else(|| panic!("{name}"));
            assert!(
                !after.deleted_with_cluster(),
                "{name}: the fix keeps the bucket"
            );
            assert_eq!(
                retain_fix(&after, &fixed),
                None,
                "{name}: a fixed object needs nothing"
            );
        }
    }

    fn json_patch_merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        json_patch_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    #[test]
    fn other_kinds_named_bucket_are_not_bucket_claims() {
        assert_eq!(kind_of("example.com", "Bucket"), None);
        assert_eq!(kind_of("objectstorage.k8s.io", "BucketClass"), None);
    }
}
