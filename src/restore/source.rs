//! From a verified snapshot to what a restore needs: the objects, and the narrow view of
//! the bindings that says what must be reused (disk per volume, address per Service,
//! bucket per claim).

use crate::bindings::{Bindings, BucketKind, Pin};
use crate::snapshot::read::Snapshot;

use super::{Recorded, RecordedAddress, RecordedBucket, RecordedVolume, RestoreSource};

impl Recorded {
    /// What a restore must reuse, from a snapshot's bindings.
    pub fn from_bindings(b: &Bindings) -> Self {
        let volumes = b
            .volumes
            .iter()
            .map(|v| RecordedVolume {
                pv: v.pv.clone(),
                disk: v.disk_id.clone(),
                claim: v
                    .claim
                    .as_ref()
                    .map(|c| (c.namespace.clone(), c.name.clone())),
            })
            .collect();
        let addresses = b
            .load_balancers
            .iter()
            .filter_map(|lb| {
                let ip = lb.ingress_ips.first()?.clone();
                let allocation_id = match &lb.pin {
                    Some(Pin::AwsEip { allocations }) => allocations.first().cloned(),
                    _ => None,
                };
                Some(RecordedAddress {
                    namespace: lb.namespace.clone(),
                    name: lb.name.clone(),
                    ip,
                    allocation_id,
                    hostnames: lb.dns_names.clone(),
                })
            })
            .collect();
        // A COSI `Bucket` object is recorded beside the claim bound to it: restored, it
        // must name its cloud bucket (`existingBucketID`), or the driver creates a new one.
        let buckets =
            b.buckets
                .iter()
                .filter_map(|x| {
                    Some(RecordedBucket {
                        kind: match x.kind {
                            BucketKind::CosiBucketClaim => "BucketClaim",
                            BucketKind::RookObc => "ObjectBucketClaim",
                            _ => "Bucket",
                        }
                        .to_owned(),
                        namespace: x.namespace.clone(),
                        name: x.name.clone(),
                        // A Crossplane managed resource is named after its bucket unless
                        // `crossplane.io/external-name` says otherwise.
                        bucket: x.bucket.clone().or_else(|| {
                            (x.kind == BucketKind::Crossplane).then(|| x.name.clone())
                        })?,
                    })
                })
                .collect();
        Recorded {
            volumes,
            addresses,
            buckets,
        }
    }
}

/// Everything a restore needs from a verified snapshot.
pub fn from_snapshot(snap: &Snapshot) -> RestoreSource {
    RestoreSource {
        snapshot_id: snap.manifest.id.clone(),
        taken_at: snap.manifest.started_at,
        objects: snap.resources().iter().flat_map(|r| r.objects()).collect(),
        recorded: Recorded::from_bindings(snap.bindings()),
        bindings: snap.bindings().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::Collector;
    use crate::restore::plan;
    use serde_json::json;

    #[test]
    fn a_cosi_bucket_object_is_recorded_and_restored_naming_its_cloud_bucket() {
        let bucket = json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "Bucket",
            "metadata": {"name": "standard-uid1"},
            "spec": {"bucketClassName": "standard", "deletionPolicy": "Retain"},
            "status": {"bucketReady": true, "bucketID": "standard-uid1"}});
        let mut c = Collector::default();
        c.observe("objectstorage.k8s.io", "buckets", "Bucket", &bucket);
        c.observe(
            "objectstorage.k8s.io",
            "bucketclaims",
            "BucketClaim",
            &json!({"metadata": {"name": "data", "namespace": "t"},
                "spec": {"bucketClassName": "standard"},
                "status": {"bucketReady": true, "bucketName": "standard-uid1"}}),
        );
        let recorded = Recorded::from_bindings(&c.finish());
        let kinds: Vec<(&str, &str)> = recorded
            .buckets
            .iter()
            .map(|b| (b.kind.as_str(), b.name.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![("Bucket", "standard-uid1"), ("BucketClaim", "data")]
        );
        let p = plan::plan(vec![bucket], &recorded, &Default::default());
        let restored = p
            .tiers
            .values()
            .flatten()
            .find(|o| o.kind == "Bucket")
            .expect("planned");
        assert_eq!(
            restored.object["spec"]["existingBucketID"], "standard-uid1",
            "the restored Bucket adopts its bucket instead of asking the driver for a new one"
        );
    }
}
