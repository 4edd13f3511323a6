//! From a verified snapshot to what a restore needs: the objects, and the narrow view of
//! the bindings that says what must be reused (disk per volume, address per Service,
//! bucket per claim).

use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use serde_json::Value;

use super::plan::{Tier, tier_of};
use super::{Recorded, RecordedAddress, RecordedBucket, RecordedVolume, RestoreSource};
use crate::bindings::{Bindings, BucketKind, Pin};
use crate::snapshot::crypto::Keys;
use crate::snapshot::format::TreeEntry;
use crate::snapshot::read::{ReadError, Snapshot, StoredSnapshot};
use crate::store::Store;

/// The objects a restore brings back: in memory (a small snapshot, a test, a drill's
/// rewritten copy), or left in the store, verified, and read back one tier at a time, so a
/// restore's memory does not grow with the snapshot.
#[derive(Debug, Clone)]
pub enum Objects {
    Loaded(Vec<Value>),
    Stored(Arc<Stored>),
    /// Other objects with a rewrite applied to each as it is read (a volume moved to a disk
    /// restored from its cloud snapshot), so a rewrite costs no copy of the snapshot.
    Rewritten(Arc<Objects>, Rewrite),
}

/// A rewrite of single objects, applied as they are read. It must not change an object's
/// kind: the tier an object is counted in is the tier it is read in.
#[derive(Clone)]
pub struct Rewrite(pub Arc<dyn Fn(&mut Value) + Send + Sync>);

impl std::fmt::Debug for Rewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rewrite(..)")
    }
}

/// A verified snapshot left in its store, with what it takes to read it back.
#[derive(Clone)]
pub struct Stored {
    pub store: Store,
    pub keys: Keys,
    pub snapshot: StoredSnapshot,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("store", &self.store.url())
            .field("snapshot", &self.snapshot.manifest.id)
            .field("objects", &self.snapshot.object_count())
            .finish()
    }
}

fn entry_tier(e: &TreeEntry) -> Tier {
    tier_of(&e.resource.api_version(), &e.resource.kind)
}

fn object_tier(o: &Value) -> Tier {
    tier_of(
        o["apiVersion"].as_str().unwrap_or_default(),
        o["kind"].as_str().unwrap_or_default(),
    )
}

impl Objects {
    /// How many objects the tiers `wanted` picks hold.
    pub fn count(&self, wanted: impl Fn(Tier) -> bool) -> usize {
        match self {
            Objects::Loaded(all) => all.iter().filter(|o| wanted(object_tier(o))).count(),
            Objects::Stored(s) => s.snapshot.count(|e| wanted(entry_tier(e))),
            Objects::Rewritten(inner, _) => inner.count(wanted),
        }
    }

    /// The objects of the tiers `wanted` picks, as they are read (in no particular order).
    pub fn read(
        &self,
        wanted: impl Fn(Tier) -> bool,
    ) -> BoxStream<'static, Result<Value, ReadError>> {
        match self {
            Objects::Loaded(all) => {
                let picked: Vec<Result<Value, ReadError>> = all
                    .iter()
                    .filter(|o| wanted(object_tier(o)))
                    .cloned()
                    .map(Ok)
                    .collect();
                futures::stream::iter(picked).boxed()
            }
            Objects::Stored(s) => s
                .snapshot
                .read(&s.store, &s.keys, |e| wanted(entry_tier(e)))
                .map(|o| {
                    let o = o?;
                    // Every object parsed when the snapshot was opened; a failure here is
                    // the store changing underneath the restore.
                    serde_json::from_slice(&o.raw).map_err(|source| ReadError::Object {
                        blob: format!("entry {}", o.entry),
                        what: "an object read back during the restore".to_owned(),
                        source,
                    })
                })
                .boxed(),
            Objects::Rewritten(inner, rewrite) => {
                let rewrite = rewrite.clone();
                inner
                    .read(wanted)
                    .map(move |o| {
                        o.map(|mut o| {
                            (rewrite.0)(&mut o);
                            o
                        })
                    })
                    .boxed()
            }
        }
    }

    /// Every object of the tiers `wanted` picks, in memory.
    pub async fn collect(&self, wanted: impl Fn(Tier) -> bool) -> Result<Vec<Value>, ReadError> {
        let mut stream = self.read(wanted);
        let mut out = Vec::new();
        while let Some(o) = stream.next().await {
            out.push(o?);
        }
        Ok(out)
    }
}

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

/// Everything a restore needs from a snapshot read in full, in memory.
pub fn from_snapshot(snap: &Snapshot) -> RestoreSource {
    RestoreSource {
        snapshot_id: snap.manifest.id.clone(),
        taken_at: snap.manifest.started_at,
        objects: Objects::Loaded(snap.resources().iter().flat_map(|r| r.objects()).collect()),
        recorded: Recorded::from_bindings(snap.bindings()),
        bindings: snap.bindings().clone(),
    }
}

/// Everything a restore needs from a snapshot verified and left in the store
/// ([`crate::snapshot::read::open_stored`]): its objects are read back tier by tier.
pub fn from_stored(store: &Store, keys: &Keys, snap: StoredSnapshot) -> RestoreSource {
    RestoreSource {
        snapshot_id: snap.manifest.id.clone(),
        taken_at: snap.manifest.started_at,
        recorded: Recorded::from_bindings(snap.bindings()),
        bindings: snap.bindings().clone(),
        objects: Objects::Stored(Arc::new(Stored {
            store: store.clone(),
            keys: keys.clone(),
            snapshot: snap,
        })),
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
        let recorded = Recorded::from_bindings(&c.finish().0);
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
