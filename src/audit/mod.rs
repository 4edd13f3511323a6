//! The retention audit: "if this cluster were deleted now, what would be lost?" The rules
//! are pure functions over the cluster's objects (and the newest snapshot, when there is
//! one); collecting those objects is a thin layer of LISTs.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Serialize;
use serde_json::Value;

use crate::restore::Recorded;
use crate::restore::plan::is_pinned;

/// How bad a finding is; `--fail-on` compares against this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What kind of loss a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    VolumeDeletedWithCluster,
    AddressReleasedWithCluster,
    BucketDeletedWithCluster,
    NoSnapshot,
    StaleSnapshot,
    BindingChanged,
    /// The cloud says a binding is already missing, attached elsewhere or moved: a cold
    /// start could not bring it back.
    BindingBroken,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub kind: FindingKind,
    /// The exact object, `kind namespace/name`.
    pub object: String,
    pub message: String,
    /// What `coldstart stop` (or the user) does about it.
    pub fix: String,
}

/// What the rules look at.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub persistent_volumes: Vec<Value>,
    pub services: Vec<Value>,
    pub cosi_claims: Vec<Value>,
    pub cosi_classes: Vec<Value>,
    pub crossplane_buckets: Vec<Value>,
    pub ack_buckets: Vec<Value>,
    pub newest_snapshot: Option<SnapshotFacts>,
}

/// What the audit needs to know about the newest snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotFacts {
    pub id: String,
    pub taken_at: DateTime<Utc>,
    pub recorded: Recorded,
}

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn name(v: &Value) -> String {
    match (s(v, "/metadata/namespace"), s(v, "/metadata/name")) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.to_owned(),
        _ => "?".to_owned(),
    }
}

fn disk_of(pv: &Value) -> String {
    s(pv, "/spec/csi/volumeHandle")
        .or_else(|| s(pv, "/spec/awsElasticBlockStore/volumeID"))
        .or_else(|| s(pv, "/spec/azureDisk/diskURI"))
        .or_else(|| s(pv, "/spec/gcePersistentDisk/pdName"))
        .unwrap_or("unknown disk")
        .to_owned()
}

/// Apply every rule. `now` and `rpo_target` are injected so the rules stay pure.
pub fn audit(inputs: &Inputs, now: DateTime<Utc>, rpo_target: Duration) -> Vec<Finding> {
    let mut out = Vec::new();
    for pv in &inputs.persistent_volumes {
        if s(pv, "/spec/persistentVolumeReclaimPolicy").unwrap_or("Delete") == "Delete" {
            let claim = match (
                s(pv, "/spec/claimRef/namespace"),
                s(pv, "/spec/claimRef/name"),
            ) {
                (Some(ns), Some(c)) => format!(" (claim {ns}/{c})"),
                _ => String::new(),
            };
            out.push(Finding {
                severity: Severity::High,
                kind: FindingKind::VolumeDeletedWithCluster,
                object: format!("PersistentVolume {}", name(pv)),
                message: format!(
                    "disk {}{claim} has reclaim policy Delete: deleting the cluster deletes it",
                    disk_of(pv)
                ),
                fix: "set persistentVolumeReclaimPolicy: Retain".into(),
            });
        }
    }
    for svc in &inputs.services {
        if s(svc, "/spec/type") != Some("LoadBalancer") || is_pinned(svc) {
            continue;
        }
        let ip = s(svc, "/status/loadBalancer/ingress/0/ip")
            .or_else(|| s(svc, "/status/loadBalancer/ingress/0/hostname"))
            .unwrap_or("(no address yet)");
        out.push(Finding {
            severity: Severity::High,
            kind: FindingKind::AddressReleasedWithCluster,
            object: format!("Service {}", name(svc)),
            message: format!("address {ip} was allocated by the load-balancer controller and is not pinned: it is released with the cluster"),
            fix: format!("pin the Service to {ip} (coldstart stop does it)"),
        });
    }
    let class_policy: BTreeMap<String, String> = inputs
        .cosi_classes
        .iter()
        .filter_map(|c| {
            Some((
                s(c, "/metadata/name")?.to_owned(),
                s(c, "/deletionPolicy").unwrap_or("Delete").to_owned(),
            ))
        })
        .collect();
    for claim in &inputs.cosi_claims {
        let adopted = claim.pointer("/spec/existingBucketName").is_some();
        let class = s(claim, "/spec/bucketClassName");
        let deletes = class.is_some_and(|c| class_policy.get(c).is_none_or(|p| p == "Delete"));
        if deletes {
            out.push(Finding {
                severity: if adopted {
                    Severity::Medium
                } else {
                    Severity::High
                },
                kind: FindingKind::BucketDeletedWithCluster,
                object: format!("BucketClaim {}", name(claim)),
                message: format!(
                    "bucket {} follows BucketClass {} with deletionPolicy Delete",
                    s(claim, "/status/bucketName")
                        .or(s(claim, "/spec/existingBucketName"))
                        .unwrap_or("?"),
                    class.unwrap_or("?")
                ),
                fix: "set the COSI Bucket's deletionPolicy to Retain".into(),
            });
        }
    }
    for b in &inputs.crossplane_buckets {
        let observe =
            b.pointer("/spec/managementPolicies") == Some(&serde_json::json!(["Observe"]));
        if !observe && s(b, "/spec/deletionPolicy").unwrap_or("Delete") == "Delete" {
            let external = s(b, "/metadata/annotations/crossplane.io~1external-name")
                .or(s(b, "/metadata/name"))
                .unwrap_or("?");
            out.push(Finding {
                severity: Severity::High,
                kind: FindingKind::BucketDeletedWithCluster,
                object: format!("Bucket {}", name(b)),
                message: format!("bucket {external} has deletionPolicy Delete: deleting the managed resource deletes the bucket"),
                fix: "set spec.deletionPolicy: Orphan".into(),
            });
        }
    }
    for b in &inputs.ack_buckets {
        if s(b, "/metadata/annotations/services.k8s.aws~1deletion-policy") != Some("retain") {
            out.push(Finding {
                severity: Severity::High,
                kind: FindingKind::BucketDeletedWithCluster,
                object: format!("Bucket {}", name(b)),
                message: "ACK deletes the bucket with the resource (no services.k8s.aws/deletion-policy: retain)".into(),
                fix: "annotate services.k8s.aws/deletion-policy=retain".into(),
            });
        }
    }
    match &inputs.newest_snapshot {
        None => out.push(Finding {
            severity: Severity::Critical,
            kind: FindingKind::NoSnapshot,
            object: "snapshot store".into(),
            message: "there is no snapshot of this cluster: everything would be lost".into(),
            fix: "run coldstart snapshot".into(),
        }),
        Some(snap) => {
            let age = (now - snap.taken_at).to_std().unwrap_or_default();
            if age > rpo_target {
                out.push(Finding {
                    severity: Severity::High,
                    kind: FindingKind::StaleSnapshot,
                    object: format!("snapshot {}", snap.id),
                    message: format!(
                        "the newest snapshot is {} old, beyond the RPO target of {}",
                        humantime(age),
                        humantime(rpo_target)
                    ),
                    fix: "run coldstart snapshot (or check the schedule)".into(),
                });
            }
            out.extend(binding_drift(inputs, snap));
        }
    }
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.object.cmp(&b.object)));
    out
}

/// Bindings in the snapshot that no longer match the cluster.
fn binding_drift(inputs: &Inputs, snap: &SnapshotFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    for v in &snap.recorded.volumes {
        let now = inputs
            .persistent_volumes
            .iter()
            .find(|pv| s(pv, "/metadata/name") == Some(v.pv.as_str()));
        let changed = match now {
            None => Some("no longer exists".to_owned()),
            Some(pv) => {
                let d = disk_of(pv);
                let key = |x: &str| x.rsplit('/').next().unwrap_or(x).to_owned();
                (key(&d) != key(&v.disk)).then(|| format!("is now on disk {d}"))
            }
        };
        if let Some(what) = changed {
            out.push(Finding {
                severity: Severity::Medium,
                kind: FindingKind::BindingChanged,
                object: format!("PersistentVolume {}", v.pv),
                message: format!(
                    "snapshot {} recorded disk {}; the volume {what}",
                    snap.id, v.disk
                ),
                fix: "take a new snapshot".into(),
            });
        }
    }
    for a in &snap.recorded.addresses {
        let now = inputs.services.iter().find(|svc| {
            s(svc, "/metadata/namespace") == Some(a.namespace.as_str())
                && s(svc, "/metadata/name") == Some(a.name.as_str())
        });
        let ip = now.and_then(|svc| s(svc, "/status/loadBalancer/ingress/0/ip"));
        if ip != Some(a.ip.as_str()) {
            out.push(Finding {
                severity: Severity::Medium,
                kind: FindingKind::BindingChanged,
                object: format!("Service {}/{}", a.namespace, a.name),
                message: format!(
                    "snapshot {} recorded address {}; the Service now answers on {}",
                    snap.id,
                    a.ip,
                    ip.unwrap_or("nothing")
                ),
                fix: "take a new snapshot".into(),
            });
        }
    }
    out
}

/// `90s`, `15m`, `2h5m`, `3d`.
pub fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 120 {
        format!("{secs}s")
    } else if secs < 7200 {
        format!("{}m", secs / 60)
    } else if secs < 172_800 {
        let (h, m) = (secs / 3600, (secs % 3600) / 60);
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{m}m")
        }
    } else {
        format!("{}d", secs / 86400)
    }
}

/// Why the cluster's objects could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("failed to list {what}: {source}")]
    List {
        what: &'static str,
        source: kube::Error,
    },
}

async fn list_opt(
    client: &kube::Client,
    gvk: (&str, &str, &str),
    plural: &str,
    what: &'static str,
) -> Result<Vec<Value>, AuditError> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2), plural);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    match api.list(&ListParams::default()).await {
        Ok(l) => Ok(l
            .items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect()),
        // A type the cluster does not serve has nothing to lose.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(source) => Err(AuditError::List { what, source }),
    }
}

/// Collect what the rules look at from the cluster.
pub async fn collect(
    client: &kube::Client,
    newest_snapshot: Option<SnapshotFacts>,
) -> Result<Inputs, AuditError> {
    Ok(Inputs {
        persistent_volumes: list_opt(
            client,
            ("", "v1", "PersistentVolume"),
            "persistentvolumes",
            "PersistentVolumes",
        )
        .await?,
        services: list_opt(client, ("", "v1", "Service"), "services", "Services").await?,
        cosi_claims: list_opt(
            client,
            ("objectstorage.k8s.io", "v1alpha1", "BucketClaim"),
            "bucketclaims",
            "BucketClaims",
        )
        .await?,
        cosi_classes: list_opt(
            client,
            ("objectstorage.k8s.io", "v1alpha1", "BucketClass"),
            "bucketclasses",
            "BucketClasses",
        )
        .await?,
        crossplane_buckets: list_opt(
            client,
            ("s3.aws.upbound.io", "v1beta1", "Bucket"),
            "buckets",
            "Crossplane Buckets",
        )
        .await?,
        ack_buckets: list_opt(
            client,
            ("s3.services.k8s.aws", "v1alpha1", "Bucket"),
            "buckets",
            "ACK Buckets",
        )
        .await?,
        newest_snapshot,
    })
}

/// The preflight's problems as findings: each broken binding is critical, because a
/// shutdown now would come back without it.
pub fn binding_findings(pre: &crate::preflight::Preflight) -> Vec<Finding> {
    pre.rows
        .iter()
        .filter_map(|r| {
            let problem = r.problem?;
            Some(Finding {
                severity: Severity::Critical,
                kind: FindingKind::BindingBroken,
                object: format!("{} {}", r.kind.as_str(), r.subject),
                message: format!("{} is {}: {}", r.target, problem.as_str(), r.reason),
                fix: "bring it back (restore the disk, re-allocate or release the address, recreate the bucket) before stopping, or accept it with --accept-missing".into(),
            })
        })
        .collect()
}

/// The bindings the live cluster holds now, from the audit's inputs (what `audit` and
/// `stop` check against the cloud).
pub fn live_bindings(inputs: &Inputs) -> crate::bindings::Bindings {
    let mut c = crate::bindings::Collector::default();
    // List items carry no apiVersion/kind: say what each list is.
    let lists = [
        (
            &inputs.persistent_volumes,
            "",
            "persistentvolumes",
            "PersistentVolume",
        ),
        (&inputs.services, "", "services", "Service"),
        (
            &inputs.cosi_classes,
            "objectstorage.k8s.io",
            "bucketclasses",
            "BucketClass",
        ),
        (
            &inputs.cosi_claims,
            "objectstorage.k8s.io",
            "bucketclaims",
            "BucketClaim",
        ),
        (
            &inputs.crossplane_buckets,
            "s3.aws.upbound.io",
            "buckets",
            "Bucket",
        ),
        (
            &inputs.ack_buckets,
            "s3.services.k8s.aws",
            "buckets",
            "Bucket",
        ),
    ];
    for (objects, group, resource, kind) in lists {
        for o in objects {
            c.observe(group, resource, kind, o);
        }
    }
    c.finish()
}

/// Whether any finding is at or above `threshold`.
pub fn fails(findings: &[Finding], threshold: Severity) -> bool {
    findings.iter().any(|f| f.severity >= threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::RecordedAddress;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn snapshot(age_secs: i64) -> SnapshotFacts {
        SnapshotFacts {
            id: "s1".into(),
            taken_at: now() - chrono::Duration::seconds(age_secs),
            recorded: Recorded::default(),
        }
    }

    fn kinds(f: &[Finding]) -> Vec<FindingKind> {
        f.iter().map(|x| x.kind).collect()
    }

    #[test]
    fn delete_policy_volumes_unpinned_addresses_and_deleting_buckets_are_findings() {
        let inputs = Inputs {
            persistent_volumes: vec![
                json!({"metadata": {"name": "a"}, "spec": {"persistentVolumeReclaimPolicy": "Delete", "csi": {"volumeHandle": "vol-1"}}}),
                json!({"metadata": {"name": "b"}, "spec": {"persistentVolumeReclaimPolicy": "Retain"}}),
            ],
            services: vec![
                json!({"metadata": {"name": "mqtt", "namespace": "t"}, "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
                json!({"metadata": {"name": "pinned", "namespace": "t"}, "spec": {"type": "LoadBalancer", "loadBalancerIP": "5.6.7.8"}}),
                json!({"metadata": {"name": "internal", "namespace": "t"}, "spec": {"type": "ClusterIP"}}),
            ],
            crossplane_buckets: vec![
                json!({"metadata": {"name": "tmp"}, "spec": {"deletionPolicy": "Delete"}}),
                json!({"metadata": {"name": "logs"}, "spec": {"deletionPolicy": "Orphan"}}),
            ],
            cosi_claims: vec![
                json!({"metadata": {"name": "c", "namespace": "t"}, "spec": {"bucketClassName": "std"}}),
            ],
            cosi_classes: vec![json!({"metadata": {"name": "std"}, "deletionPolicy": "Delete"})],
            newest_snapshot: Some(snapshot(60)),
            ..Default::default()
        };
        let f = audit(&inputs, now(), Duration::from_secs(900));
        let mut k = kinds(&f);
        k.sort();
        assert_eq!(
            k,
            vec![
                FindingKind::VolumeDeletedWithCluster,
                FindingKind::AddressReleasedWithCluster,
                FindingKind::BucketDeletedWithCluster,
                FindingKind::BucketDeletedWithCluster,
            ]
        );
        assert!(f.iter().any(|x| x.message.contains("vol-1")));
        assert!(f.iter().any(|x| x.message.contains("1.2.3.4")));
    }

    #[test]
    fn a_missing_or_stale_snapshot_is_a_finding_and_a_fresh_one_is_not() {
        let cases = [
            (None, Some(FindingKind::NoSnapshot)),
            (Some(7200), Some(FindingKind::StaleSnapshot)),
            (Some(60), None),
        ];
        for (age, want) in cases {
            let inputs = Inputs {
                newest_snapshot: age.map(snapshot),
                ..Default::default()
            };
            let f = audit(&inputs, now(), Duration::from_secs(900));
            assert_eq!(f.first().map(|x| x.kind), want, "age {age:?}");
        }
    }

    #[test]
    fn bindings_that_moved_since_the_snapshot_are_reported() {
        let mut snap = snapshot(10);
        snap.recorded.addresses.push(RecordedAddress {
            namespace: "t".into(),
            name: "api".into(),
            ip: "1.1.1.1".into(),
            allocation_id: None,
            hostnames: vec![],
        });
        let inputs = Inputs {
            services: vec![
                json!({"metadata": {"name": "api", "namespace": "t"}, "spec": {"type": "LoadBalancer", "loadBalancerIP": "2.2.2.2"},
                "status": {"loadBalancer": {"ingress": [{"ip": "2.2.2.2"}]}}}),
            ],
            newest_snapshot: Some(snap),
            ..Default::default()
        };
        let f = audit(&inputs, now(), Duration::from_secs(900));
        assert_eq!(kinds(&f), vec![FindingKind::BindingChanged]);
    }

    #[test]
    fn fail_on_compares_severities() {
        let f = vec![Finding {
            severity: Severity::Medium,
            kind: FindingKind::BindingChanged,
            object: "x".into(),
            message: "m".into(),
            fix: "f".into(),
        }];
        assert!(fails(&f, Severity::Low));
        assert!(fails(&f, Severity::Medium));
        assert!(!fails(&f, Severity::High));
    }

    #[test]
    fn durations_read_like_an_operator_writes_them() {
        for (s, want) in [(30, "30s"), (900, "15m"), (7500, "2h5m"), (3 * 86400, "3d")] {
            assert_eq!(humantime(Duration::from_secs(s)), want);
        }
    }

    #[test]
    fn the_live_bindings_come_from_list_items_that_carry_no_kind() {
        let inputs = Inputs {
            persistent_volumes: vec![json!({"metadata": {"name": "pv-1"},
                "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"},
                         "claimRef": {"namespace": "shop", "name": "data"}}})],
            cosi_claims: vec![json!({"metadata": {"name": "media", "namespace": "shop"},
                "spec": {"existingBucketName": "shop-media"}})],
            ..Default::default()
        };
        let b = live_bindings(&inputs);
        assert_eq!(b.volumes.len(), 1);
        assert_eq!(b.volumes[0].disk_id, "vol-1");
        assert_eq!(b.buckets.len(), 1);
        assert_eq!(b.buckets[0].bucket.as_deref(), Some("shop-media"));
    }
}
