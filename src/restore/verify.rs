//! Proving the restore: every restored claim Bound to its original disk, every LoadBalancer
//! Service on its recorded address, every bucket claim on its original bucket — and nothing
//! new: no disk, address or bucket the snapshot did not record. The cluster-side count works
//! on any cloud; where the cloud keeps a ledger (the simulated cloud) it is counted too.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Serialize;
use serde_json::Value;

use super::Recorded;

/// The verification counts a restore reports.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Verification {
    pub volumes_expected: usize,
    pub volumes_reused: usize,
    pub ips_expected: usize,
    pub ips_reused: usize,
    pub buckets_expected: usize,
    pub buckets_reused: usize,
    pub new_disks: usize,
    pub new_ips: usize,
    pub new_buckets: usize,
    /// Whether a cloud ledger was consulted (the simulated cloud keeps one).
    pub cloud_ledger: bool,
    pub problems: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && self.volumes_reused == self.volumes_expected
            && self.ips_reused == self.ips_expected
            && self.buckets_reused == self.buckets_expected
            && self.new_disks == 0
            && self.new_ips == 0
            && self.new_buckets == 0
    }
}

fn api(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::all_with(client.clone(), &ar)
}

fn disk_key(handle: &str) -> String {
    handle.rsplit('/').next().unwrap_or(handle).to_owned()
}

async fn list(api: &Api<DynamicObject>) -> Vec<DynamicObject> {
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn key(o: &DynamicObject) -> (Option<String>, String) {
    (
        o.metadata.namespace.clone(),
        o.metadata.name.clone().unwrap_or_default(),
    )
}

/// One pass over the cluster; no problems means everything matched. `disks`, when the
/// cloud's inventory is known, also proves each recorded disk still exists.
async fn check(
    client: &kube::Client,
    recorded: &Recorded,
    disks: Option<&HashSet<String>>,
) -> Verification {
    let mut v = Verification {
        volumes_expected: recorded
            .volumes
            .iter()
            .filter(|x| x.claim.is_some())
            .count(),
        ips_expected: recorded.addresses.len(),
        buckets_expected: recorded.buckets.len(),
        ..Default::default()
    };
    let pvs = list(&api(
        client,
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
    ))
    .await;
    let pvcs = list(&api(
        client,
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
    ))
    .await;
    let services = list(&api(client, "", "v1", "Service", "services")).await;
    let handle_of = |pv: &DynamicObject| {
        pv.data
            .pointer("/spec/csi/volumeHandle")
            .or_else(|| pv.data.pointer("/spec/awsElasticBlockStore/volumeID"))
            .and_then(Value::as_str)
            .map(disk_key)
    };
    let recorded_disks: HashSet<String> =
        recorded.volumes.iter().map(|x| disk_key(&x.disk)).collect();
    for rec in &recorded.volumes {
        let Some((ns, name)) = &rec.claim else {
            continue;
        };
        let pvc = pvcs
            .iter()
            .find(|c| key(c) == (Some(ns.clone()), name.clone()));
        let Some(pvc) = pvc else {
            v.problems.push(format!("PVC {ns}/{name} is missing"));
            continue;
        };
        let phase = pvc
            .data
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending");
        let bound_to = pvc
            .data
            .pointer("/spec/volumeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let pv = pvs
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(bound_to));
        let disk = pv.and_then(handle_of);
        let exists = disks.is_none_or(|d| d.contains(&disk_key(&rec.disk)));
        if phase == "Bound" && disk.as_deref() == Some(disk_key(&rec.disk).as_str()) && exists {
            v.volumes_reused += 1;
        } else if !exists {
            v.problems.push(format!(
                "PVC {ns}/{name}: disk {} no longer exists in the cloud (deleted with the old cluster?)",
                rec.disk
            ));
        } else {
            v.problems.push(format!(
                "PVC {ns}/{name} is {phase} on {} (disk {}), expected disk {}",
                if bound_to.is_empty() {
                    "no volume"
                } else {
                    bound_to
                },
                disk.as_deref().unwrap_or("none"),
                rec.disk
            ));
        }
    }
    v.new_disks = pvs
        .iter()
        .filter_map(handle_of)
        .filter(|h| !recorded_disks.contains(h))
        .count();
    let recorded_ips: HashSet<&str> = recorded.addresses.iter().map(|a| a.ip.as_str()).collect();
    for rec in &recorded.addresses {
        let svc = services
            .iter()
            .find(|s| key(s) == (Some(rec.namespace.clone()), rec.name.clone()));
        let ip = svc.and_then(|s| {
            s.data
                .pointer("/status/loadBalancer/ingress/0/ip")
                .and_then(Value::as_str)
        });
        if ip == Some(rec.ip.as_str()) {
            v.ips_reused += 1;
        } else {
            v.problems.push(format!(
                "Service {}/{} answers on {}, expected {}",
                rec.namespace,
                rec.name,
                ip.unwrap_or("no address yet"),
                rec.ip
            ));
        }
    }
    v.new_ips = services
        .iter()
        .filter_map(|s| {
            s.data
                .pointer("/status/loadBalancer/ingress/0/ip")
                .and_then(Value::as_str)
        })
        .filter(|ip| !recorded_ips.contains(ip))
        .count();
    let recorded_buckets: HashSet<&str> =
        recorded.buckets.iter().map(|b| b.bucket.as_str()).collect();
    let cosi = list(&api(
        client,
        "objectstorage.k8s.io",
        "v1alpha1",
        "BucketClaim",
        "bucketclaims",
    ))
    .await;
    let crossplane = list(&api(
        client,
        "s3.aws.upbound.io",
        "v1beta1",
        "Bucket",
        "buckets",
    ))
    .await;
    let bucket_of = |o: &DynamicObject| -> Option<String> {
        o.data
            .pointer("/status/bucketName")
            .and_then(Value::as_str)
            .filter(|_| o.data.pointer("/status/bucketReady") == Some(&Value::Bool(true)))
            .map(str::to_owned)
            .or_else(|| {
                let ready = o
                    .data
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    });
                ready.then(|| {
                    o.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("crossplane.io/external-name").cloned())
                        .or_else(|| o.metadata.name.clone())
                })?
            })
    };
    for rec in &recorded.buckets {
        let pool = if rec.kind == "BucketClaim" {
            &cosi
        } else {
            &crossplane
        };
        let found = pool
            .iter()
            .find(|o| key(o) == (rec.namespace.clone(), rec.name.clone()));
        match found.and_then(bucket_of) {
            Some(b) if b == rec.bucket => v.buckets_reused += 1,
            other => v.problems.push(format!(
                "{} {}{} is on {}, expected bucket {}",
                rec.kind,
                rec.namespace
                    .as_deref()
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default(),
                rec.name,
                other.as_deref().unwrap_or("no bucket yet"),
                rec.bucket
            )),
        }
    }
    v.new_buckets = cosi
        .iter()
        .chain(crossplane.iter())
        .filter_map(bucket_of)
        .filter(|b| !recorded_buckets.contains(b.as_str()))
        .count();
    v
}

/// Verify, waiting up to `timeout` for claims to bind and addresses to appear.
pub async fn verify(
    client: &kube::Client,
    recorded: &Recorded,
    ledger_mark: Option<u64>,
    timeout: Duration,
) -> Verification {
    let deadline = Instant::now() + timeout;
    let cloud_disks: Option<HashSet<String>> = sim_cloud(client)
        .await
        .map(|c| c.disks.keys().cloned().collect());
    let mut v = loop {
        let v = check(client, recorded, cloud_disks.as_ref()).await;
        let settled = v.problems.is_empty();
        if settled || Instant::now() >= deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(mark) = ledger_mark
        && let Some(n) = sim_ledger_created_since(client, mark).await
    {
        v.cloud_ledger = true;
        v.new_disks = v.new_disks.max(n.disks);
        v.new_ips = v.new_ips.max(n.ips);
        v.new_buckets = v.new_buckets.max(n.buckets);
    }
    v
}

async fn sim_cloud(client: &kube::Client) -> Option<coldstart_sim::cloud::CloudState> {
    let req = http::Request::get("/sim/v1/cloud").body(Vec::new()).ok()?;
    let text = client.request_text(req).await.ok()?;
    serde_json::from_str(&text).ok()
}

/// The cloud ledger's position, when the cluster is a simulated one (None elsewhere).
pub async fn sim_ledger_position(client: &kube::Client) -> Option<u64> {
    sim_cloud(client)
        .await
        .map(|c| c.ledger.last().map_or(0, |e| e.seq))
}

/// What the simulated cloud created after `mark`.
pub async fn sim_ledger_created_since(
    client: &kube::Client,
    mark: u64,
) -> Option<coldstart_sim::cloud::NewResources> {
    let mut c = sim_cloud(client).await?;
    // The position is not serialized; the ledger carries it.
    c.ledger.retain(|e| e.seq > mark);
    Some(c.created_since(0))
}
