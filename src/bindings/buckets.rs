//! Bucket bindings: which bucket each claim owns, whether it adopts an existing bucket or
//! asks for a new one, and what deleting the claim does to the bucket. Recognised: COSI
//! (`BucketClaim`, `Bucket`), Crossplane bucket managed resources (`*.upbound.io`,
//! `*.crossplane.io`), ACK S3 `Bucket` and Rook `ObjectBucketClaim`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{owned, str_at};

/// Which API a bucket claim belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BucketKind {
    CosiBucketClaim,
    CosiBucket,
    Crossplane,
    Ack,
    RookObc,
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

/// Which bucket API an object of `(group, kind)` belongs to.
pub fn kind_of(group: &str, kind: &str) -> Option<BucketKind> {
    match (group, kind) {
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
        BucketKind::Crossplane => {
            let external = annotation(obj, "crossplane.io/external-name");
            b.adopted = external.is_some();
            b.bucket = owned(external);
            // Crossplane's default is Delete.
            b.deletion_policy = Some(
                str_at(obj, "/spec/deletionPolicy")
                    .unwrap_or("Delete")
                    .to_owned(),
            );
            b.management_policies = obj
                .pointer("/spec/managementPolicies")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
        }
        BucketKind::Ack => {
            b.adopted = annotation(obj, "services.k8s.aws/adoption-policy") == Some("adopt");
            b.bucket = owned(str_at(obj, "/spec/name"));
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
            b.bucket_class = owned(str_at(obj, "/spec/storageClassName"));
        }
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
                None,
                Some("Delete"),
                false,
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
    fn other_kinds_named_bucket_are_not_bucket_claims() {
        assert_eq!(kind_of("example.com", "Bucket"), None);
        assert_eq!(kind_of("objectstorage.k8s.io", "BucketClass"), None);
    }
}
