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
                from_snapshot: None,
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
        let buckets =
            b.buckets
                .iter()
                .filter(|x| x.kind != BucketKind::CosiBucket)
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
