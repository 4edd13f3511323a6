//! Rehearsal mode: restore a snapshot somewhere that is not production without ever
//! attaching production's disks, addresses or buckets — they can be used in one place at
//! a time, and production holds them.
//!
//! - **Shadow cluster** (the default): an in-process simulated cluster whose cloud holds a
//!   *stand-in* for every recorded disk, address and bucket — same ids, data token
//!   [`REHEARSAL_TOKEN`]. The restore runs unchanged (same plan, same transforms, same
//!   gate) and its verification passes exactly when the plan reuses every recorded id; the
//!   shadow cloud's ledger proves nothing new would have been provisioned. Production's
//!   cloud is never called.
//! - **A real scratch cluster** (`--target-kubeconfig`): there are no stand-ins, so the
//!   objects are rewritten ([`for_scratch_cluster`]) so that nothing can attach: PVs name
//!   a CSI driver no node runs, workloads come back at 0 replicas, LoadBalancer Services
//!   get a load-balancer class no controller serves, bucket claims are left out. The plan
//!   is still computed and checked; addresses and buckets are checked against the cloud
//!   by the verifier instead.

use serde_json::{Value, json};

use crate::bindings::{Bindings, Pin};
use crate::restore::RestoreSource;
use crate::restore::source::Objects;
use crate::snapshot::read::ReadError;
use coldstart_sim::cloud::{
    Address, Bucket, CloudState, Disk, Existing, ExistingAddress, ExistingBucket, ExistingDisk,
    ExistingSnapshot, ZONES,
};

/// What a stand-in "holds": tells a rehearsal's disks and buckets from real ones.
pub const REHEARSAL_TOKEN: &str = "rehearsal";
/// The CSI driver a rehearsed PV names on a real scratch cluster: no node runs it, so the
/// disk can never be attached there.
pub const REHEARSAL_DRIVER: &str = "rehearsal.coldstart.dev";
/// The load-balancer class a rehearsed Service gets on a real scratch cluster: no
/// controller serves it, so production's address is never requested.
pub const REHEARSAL_LB_CLASS: &str = "coldstart.dev/rehearsal";
/// Marks every object a rehearsal rewrote, with what it changed.
pub const REHEARSAL_ANNOTATION: &str = "coldstart.dev/rehearsal";

/// Documentation addresses (RFC 5737) for stand-ins of allocations whose IP the snapshot
/// did not record.
const PLACEHOLDER_NET: &str = "198.51.100";

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Whole GiB of a Kubernetes quantity (`20Gi`, `1Ti`); 1 when unreadable.
fn gib(q: Option<&str>) -> u64 {
    let q = q.unwrap_or("1Gi").trim();
    let (num, mult) = match (q.strip_suffix("Ti"), q.strip_suffix("Gi")) {
        (Some(n), _) => (n, 1024.0),
        (_, Some(n)) => (n, 1.0),
        _ => return 1,
    };
    num.parse::<f64>()
        .map_or(1, |v| ((v * mult).ceil() as u64).max(1))
}

/// The stand-ins [`install_stand_ins`] puts in, as what a cloud account already holds
/// (`POST /sim/v1/cloud`): for a scratch cluster whose cloud is reached through its admin
/// endpoint, not in-process.
pub fn stand_ins(bindings: &Bindings) -> Existing {
    let mut cloud = CloudState::default();
    install_stand_ins(&mut cloud, bindings);
    Existing {
        disks: cloud
            .disks
            .into_values()
            .map(|d| ExistingDisk {
                id: d.id,
                zone: d.zone,
                size_gib: d.size_gib,
                data: d.data_token,
            })
            .collect(),
        addresses: cloud
            .addresses
            .into_values()
            .map(|a| ExistingAddress {
                ip: a.ip,
                allocation_id: Some(a.allocation_id),
                pip_name: a.name,
                resource_group: a.resource_group,
            })
            .collect(),
        buckets: cloud
            .buckets
            .into_values()
            .map(|b| ExistingBucket {
                name: b.name,
                data: b.data_token,
            })
            .collect(),
        snapshots: cloud
            .snapshots
            .into_values()
            .map(|s| ExistingSnapshot {
                id: s.id,
                disk_id: s.disk_id,
                zone: s.zone,
                size_gib: s.size_gib,
                data: s.data_token,
            })
            .collect(),
        ..Default::default()
    }
}

/// Put a stand-in for every recorded disk, address and bucket into a shadow cloud, without
/// ledger entries (they are the cloud the shadow starts from, not something it created).
/// Returns how many of each.
pub fn install_stand_ins(cloud: &mut CloudState, bindings: &Bindings) -> (usize, usize, usize) {
    let at = now();
    let mut disks = 0;
    for v in &bindings.volumes {
        // The restore finds a disk by the last segment of its handle.
        let id = v
            .volume_handle
            .rsplit('/')
            .next()
            .unwrap_or(&v.disk_id)
            .to_owned();
        cloud.disks.entry(id.clone()).or_insert_with(|| {
            disks += 1;
            Disk {
                id,
                zone: v.zone.clone().unwrap_or_else(|| ZONES[0].to_owned()),
                size_gib: gib(v.size.as_deref()),
                data_token: REHEARSAL_TOKEN.to_owned(),
                attached_to: None,
                created_at: at.clone(),
                from_snapshot: None,
                hydrated_at: None,
                tags: Default::default(),
            }
        });
        // A volume restored by data policy comes from its cloud snapshot: stand one in.
        if let Some(s) = &v.cloud_snapshot {
            cloud
                .snapshots
                .entry(s.id.clone())
                .or_insert_with(|| coldstart_sim::cloud::Snapshot {
                    id: s.id.clone(),
                    disk_id: v.disk_id.clone(),
                    zone: v.zone.clone().unwrap_or_else(|| ZONES[0].to_owned()),
                    size_gib: s.size_gib.unwrap_or_else(|| gib(v.size.as_deref())),
                    data_token: REHEARSAL_TOKEN.to_owned(),
                    created_at: s.taken_at.to_rfc3339(),
                    fast_restore_zones: Vec::new(),
                    tags: Default::default(),
                });
        }
    }
    let mut addresses = 0;
    let mut placeholder = 0u8;
    for lb in &bindings.load_balancers {
        let mut ips = lb.ingress_ips.iter();
        let mut add = |ip: Option<String>, allocation: Option<String>, name: Option<String>| {
            let ip = ip.unwrap_or_else(|| {
                placeholder = placeholder.wrapping_add(1);
                format!("{PLACEHOLDER_NET}.{placeholder}")
            });
            cloud.addresses.entry(ip.clone()).or_insert_with(|| {
                addresses += 1;
                Address {
                    allocation_id: allocation
                        .unwrap_or_else(|| format!("eipalloc-rehearsal-{}", ip.replace('.', "-"))),
                    ip,
                    name,
                    reserved: true,
                    load_balancer: None,
                    pool: None,
                    resource_group: None,
                    created_at: at.clone(),
                }
            });
        };
        match &lb.pin {
            Some(Pin::AwsEip { allocations }) => {
                for a in allocations {
                    add(ips.next().cloned(), Some(a.clone()), None);
                }
            }
            Some(Pin::Azure { pip_name, ipv4, .. }) => {
                add(
                    ipv4.clone().or_else(|| ips.next().cloned()),
                    None,
                    pip_name.clone(),
                );
            }
            Some(Pin::LoadBalancerIp { address }) => add(Some(address.clone()), None, None),
            Some(Pin::Metallb { addresses }) => {
                for a in addresses {
                    add(Some(a.clone()), None, None);
                }
            }
            None => {
                for ip in lb.ingress_ips.iter() {
                    add(Some(ip.clone()), None, None);
                }
            }
        }
    }
    let mut buckets = 0;
    for b in &bindings.buckets {
        let Some(name) = crate::cloud::rules::bucket_target(b) else {
            continue;
        };
        cloud.buckets.entry(name.clone()).or_insert_with(|| {
            buckets += 1;
            Bucket {
                name,
                region: ZONES[0]
                    .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                    .to_owned(),
                versioning: true,
                data_token: REHEARSAL_TOKEN.to_owned(),
                managed_by: None,
                delete_with_claim: false,
                created_at: at.clone(),
            }
        });
    }
    (disks, addresses, buckets)
}

fn note(obj: &mut Value, what: &str) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(ann) = ann {
            let prev = ann
                .get(REHEARSAL_ANNOTATION)
                .and_then(Value::as_str)
                .map(|p| format!("{p}; "))
                .unwrap_or_default();
            ann.insert(REHEARSAL_ANNOTATION.into(), json!(format!("{prev}{what}")));
        }
    }
}

/// Rewrite a restore source for a real scratch cluster so that nothing of production's
/// can be attached there (see the module documentation). Returns the rewritten source
/// and what was left out, one line each. The rewritten copy is held in memory: a drill
/// rehearses in a scratch cluster, it is not the cold start that must fit a pod's limit.
pub async fn for_scratch_cluster(
    source: &RestoreSource,
) -> Result<(RestoreSource, Vec<String>), ReadError> {
    let all = source.objects.collect(|_| true).await?;
    let mut left_out = Vec::new();
    // Volumes with a cloud snapshot and a snapshot policy are restored from the snapshot
    // whatever the state of production's disk, which stays where it is.
    let mut bindings = source.bindings.clone();
    for v in bindings
        .volumes
        .iter_mut()
        .filter(|v| crate::restore::data_policy::recoverable(v))
    {
        v.data_policy = crate::bindings::DataPolicy::Snapshot;
        v.latency_critical = false;
    }
    let from_snapshot: Vec<String> = bindings
        .volumes
        .iter()
        .filter(|v| crate::restore::data_policy::recoverable(v))
        .map(|v| v.pv.clone())
        .collect();
    let mut objects = Vec::with_capacity(all.len());
    for obj in &all {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        let name = format!(
            "{kind} {}{}",
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            obj.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        );
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        if crate::bindings::bucket_kind_of(group, kind).is_some() {
            left_out.push(format!(
                "{name}: bucket claims are not restored in a rehearsal (they would adopt production's bucket); the bucket is checked in the cloud instead"
            ));
            continue;
        }
        let mut o = obj.clone();
        match (group, kind) {
            ("", "Pod") | ("batch", "Job") => {
                left_out.push(format!("{name}: not run in a rehearsal"));
                continue;
            }
            // A volume with a cloud snapshot comes back on the drill's own disk, created
            // from the snapshot: its PV keeps its driver (the restore points it there).
            ("", "PersistentVolume") if from_snapshot.contains(&obj_name(obj)) => {
                note(
                    &mut o,
                    "restored from its cloud snapshot onto the drill's own disk",
                );
            }
            ("", "PersistentVolume") => {
                let spec = o.get_mut("spec").and_then(Value::as_object_mut);
                if let Some(spec) = spec {
                    let from = rewrite_disk_source(spec);
                    if let Some(from) = from {
                        note(
                            &mut o,
                            &format!("CSI driver {from} replaced: never attached"),
                        );
                    }
                }
            }
            ("apps", "Deployment" | "StatefulSet" | "ReplicaSet")
            | ("", "ReplicationController")
                if o.pointer("/spec/replicas").and_then(Value::as_i64) != Some(0) =>
            {
                o["spec"]["replicas"] = json!(0);
                note(&mut o, "scaled to 0: nothing mounts production's disks");
            }
            ("batch", "CronJob") => {
                o["spec"]["suspend"] = json!(true);
                note(&mut o, "suspended");
            }
            ("", "Service")
                if o.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer") =>
            {
                o["spec"]["loadBalancerClass"] = json!(REHEARSAL_LB_CLASS);
                note(
                    &mut o,
                    "load-balancer class no controller serves: production's address is not requested",
                );
            }
            _ => {}
        }
        objects.push(o);
    }
    let mut recorded = source.recorded.clone();
    // Addresses and buckets cannot be taken in a rehearsal; the cloud verifier checks them.
    recorded.addresses.clear();
    recorded.buckets.clear();
    Ok((
        RestoreSource {
            snapshot_id: source.snapshot_id.clone(),
            taken_at: source.taken_at,
            objects: Objects::Loaded(objects),
            recorded,
            bindings,
        },
        left_out,
    ))
}

fn obj_name(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Point a PV's disk source at the rehearsal driver (in-tree sources become CSI with the
/// same handle). Returns the driver it had.
fn rewrite_disk_source(spec: &mut serde_json::Map<String, Value>) -> Option<String> {
    if let Some(csi) = spec.get_mut("csi").and_then(Value::as_object_mut) {
        let from = csi.get("driver").and_then(Value::as_str).map(str::to_owned);
        csi.insert("driver".into(), json!(REHEARSAL_DRIVER));
        return from;
    }
    let (key, handle, driver) = if let Some(v) = spec
        .get("awsElasticBlockStore")
        .and_then(|e| e.get("volumeID"))
        .and_then(Value::as_str)
    {
        (
            "awsElasticBlockStore",
            v.rsplit('/').next().unwrap_or(v).to_owned(),
            "kubernetes.io/aws-ebs",
        )
    } else if let Some(v) = spec
        .get("azureDisk")
        .and_then(|e| e.get("diskURI"))
        .and_then(Value::as_str)
    {
        ("azureDisk", v.to_owned(), "kubernetes.io/azure-disk")
    } else if let Some(v) = spec
        .get("gcePersistentDisk")
        .and_then(|e| e.get("pdName"))
        .and_then(Value::as_str)
    {
        ("gcePersistentDisk", v.to_owned(), "kubernetes.io/gce-pd")
    } else {
        return None;
    };
    spec.remove(key);
    spec.insert(
        "csi".into(),
        json!({"driver": REHEARSAL_DRIVER, "volumeHandle": handle}),
    );
    Some(driver.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::{Recorded, RecordedAddress, RecordedBucket};

    fn bindings() -> Bindings {
        serde_json::from_value(json!({
            "volumes": [{"pv": "pv-1", "provider": "aws", "csiDriver": "ebs.csi.aws.com", "source": "csi",
                "volumeHandle": "vol-0abc", "diskId": "vol-0abc", "zone": "eu-west-1b", "size": "20Gi",
                "storageClass": null, "reclaimPolicy": "Retain", "claim": null, "fsType": null}],
            "loadBalancers": [
                {"namespace": "shop", "name": "web", "pin": {"provider": "aws-eip", "allocations": ["eipalloc-1"]},
                 "pinned": true, "ingressIps": ["203.0.113.7"], "ingressHostnames": [], "dnsNames": [],
                 "dnsTargets": [], "loadBalancerClass": null},
                {"namespace": "iot", "name": "mqtt", "pin": null, "pinned": false, "ingressIps": ["203.0.113.9"],
                 "ingressHostnames": [], "dnsNames": [], "dnsTargets": [], "loadBalancerClass": null}],
            "buckets": [{"kind": "crossplane", "group": "s3.aws.upbound.io", "resource": "buckets", "namespace": null,
                "name": "tenant-scratch", "bucket": null, "deletionPolicy": "Orphan", "adopted": false,
                "bucketClass": null, "managementPolicies": []}]
        }))
        .expect("bindings")
    }

    #[test]
    fn every_recorded_disk_address_and_bucket_gets_a_stand_in_with_the_same_id() {
        let mut cloud = CloudState::default();
        assert_eq!(install_stand_ins(&mut cloud, &bindings()), (1, 2, 1));
        let disk = &cloud.disks["vol-0abc"];
        assert_eq!(
            (disk.zone.as_str(), disk.size_gib, disk.data_token.as_str()),
            ("eu-west-1b", 20, REHEARSAL_TOKEN)
        );
        assert_eq!(
            cloud.find_address("eipalloc-1").map(|a| a.ip.as_str()),
            Some("203.0.113.7")
        );
        assert!(cloud.addresses.contains_key("203.0.113.9"));
        assert!(cloud.buckets.contains_key("tenant-scratch"));
        assert!(
            cloud.ledger.is_empty(),
            "stand-ins are where the shadow starts, not something it created"
        );
        assert_eq!(
            install_stand_ins(&mut cloud, &bindings()),
            (0, 0, 0),
            "idempotent"
        );
    }

    #[tokio::test]
    async fn on_a_scratch_cluster_nothing_of_productions_can_be_attached() {
        let src = RestoreSource {
            snapshot_id: "s".into(),
            taken_at: chrono::Utc::now(),
            objects: Objects::Loaded(vec![
                json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-1"},
                       "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}}),
                json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-2"},
                       "spec": {"awsElasticBlockStore": {"volumeID": "aws://eu-west-1a/vol-2"}}}),
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "kafka", "namespace": "kafka"},
                       "spec": {"replicas": 3}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
                       "spec": {"type": "LoadBalancer"}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"},
                       "spec": {"type": "ClusterIP"}}),
                json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "BucketClaim",
                       "metadata": {"name": "data", "namespace": "t"}, "spec": {"existingBucketName": "t-data"}}),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug", "namespace": "shop"}}),
            ]),
            recorded: Recorded {
                volumes: vec![],
                addresses: vec![RecordedAddress {
                    namespace: "shop".into(),
                    name: "web".into(),
                    ip: "203.0.113.7".into(),
                    allocation_id: None,
                    hostnames: vec![],
                }],
                buckets: vec![RecordedBucket {
                    kind: "BucketClaim".into(),
                    namespace: Some("t".into()),
                    name: "data".into(),
                    bucket: "t-data".into(),
                }],
            },
            bindings: Default::default(),
        };
        let (out, left_out) = for_scratch_cluster(&src).await.unwrap();
        let Objects::Loaded(objects) = &out.objects else {
            panic!("a scratch copy is in memory")
        };
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "PersistentVolume",
                "PersistentVolume",
                "StatefulSet",
                "Service",
                "Service"
            ]
        );
        assert_eq!(objects[0]["spec"]["csi"]["driver"], REHEARSAL_DRIVER);
        assert_eq!(
            objects[1]["spec"]["csi"],
            json!({"driver": REHEARSAL_DRIVER, "volumeHandle": "vol-2"})
        );
        assert!(objects[1]["spec"].get("awsElasticBlockStore").is_none());
        assert_eq!(objects[2]["spec"]["replicas"], 0);
        assert_eq!(objects[3]["spec"]["loadBalancerClass"], REHEARSAL_LB_CLASS);
        assert!(objects[4]["spec"].get("loadBalancerClass").is_none());
        assert!(objects[0]["metadata"]["annotations"][REHEARSAL_ANNOTATION].is_string());
        assert_eq!(left_out.len(), 2, "{left_out:?}");
        assert!(out.recorded.addresses.is_empty() && out.recorded.buckets.is_empty());
    }
}
