//! The retention audit: "if this cluster were deleted now, what would be lost?" The rules
//! are pure functions over the cluster's objects (and the newest snapshot, when there is
//! one); collecting those objects is a thin layer of LISTs.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::ListParams;
use serde::Serialize;
use serde_json::Value;

use crate::bindings::is_pinned;
use crate::bindings::{self, BucketBinding, BucketKind};
use crate::k8s::{K8sError, Resources};
use crate::restore::Recorded;

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
    /// A volume whose data policy asks for cloud snapshots has none in the newest
    /// snapshot, or only one older than the RPO target.
    CloudSnapshotStale,
    /// A transfer-policy volume on a single-zone disk with no cloud snapshot: the disk is
    /// the only copy of its data.
    SingleCopy,
    /// A claim's `coldstart.dev/data-policy` names no known policy.
    InvalidDataPolicy,
    /// A pin that does not hold: it names another address than the Service answers on,
    /// or a mechanism the provider ignores, or an address shared with other Services.
    PinNotHeld,
    /// The cloud says a binding is already missing, attached elsewhere or moved: a cold
    /// start could not bring it back.
    BindingBroken,
    /// A disk or public IP in a resource group the provider deletes with the cluster (an
    /// AKS node resource group), whatever its reclaim policy.
    DeletedWithNodeResourceGroup,
    /// A volume on one node's own storage (`hostPath`, `local`, a node-local CSI driver):
    /// deleting the cluster's nodes deletes its data, and coldstart brings the claim back
    /// empty.
    NodeLocalVolume,
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
    /// Claims carry their volume's data policy.
    pub persistent_volume_claims: Vec<Value>,
    /// The data policy of volumes whose claim names none.
    pub data_policy: bindings::DataPolicy,
    /// LoadBalancer Services: the others hold no cloud address.
    pub services: Vec<Value>,
    pub cosi_classes: Vec<Value>,
    pub storage_classes: Vec<Value>,
    /// Every object of every bucket API `bindings` knows, `apiVersion` and `kind` set.
    pub bucket_objects: Vec<Value>,
    /// Rook/NooBaa `ObjectBucket`s: an ObjectBucketClaim's deletion obeys its
    /// ObjectBucket's `reclaimPolicy` (what `stop` changes).
    pub object_buckets: Vec<Value>,
    /// The AKS node resource group, when the nodes name one (`kubernetes.azure.com/cluster`).
    pub node_resource_group: Option<String>,
    /// CronJobs (`stop` suspends them: nothing fires while the platform is down).
    pub cronjobs: Vec<Value>,
    pub newest_snapshot: Option<SnapshotFacts>,
}

/// What the audit needs to know about the newest snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotFacts {
    pub id: String,
    pub taken_at: DateTime<Utc>,
    pub recorded: Recorded,
    /// The volumes it recorded, with their cloud snapshots.
    pub volumes: Vec<bindings::VolumeBinding>,
}

impl SnapshotFacts {
    /// The facts of a snapshot, from its manifest's id, time and bindings.
    pub fn of(id: &str, taken_at: DateTime<Utc>, b: &bindings::Bindings) -> Self {
        SnapshotFacts {
            id: id.to_owned(),
            taken_at,
            recorded: Recorded::from_bindings(b),
            volumes: b.volumes.clone(),
        }
    }
}

/// The reclaim policy does not matter for a node-local volume: its data goes with the node.
fn node_local_finding(pv: &Value, local: &bindings::NodeLocal) -> Finding {
    let claim = match (
        s(pv, "/spec/claimRef/namespace"),
        s(pv, "/spec/claimRef/name"),
    ) {
        (Some(ns), Some(c)) => format!("claim {ns}/{c}"),
        _ => "no claim".to_owned(),
    };
    let place = match (&local.path, &local.node) {
        (Some(p), Some(n)) => format!("{p} on node {n}"),
        (Some(p), None) => format!("{p} on its node"),
        (None, Some(n)) => format!("node {n}"),
        (None, None) => "its node".to_owned(),
    };
    Finding {
        severity: Severity::High,
        kind: FindingKind::NodeLocalVolume,
        object: format!("PersistentVolume {}", name(pv)),
        message: format!(
            "its data ({claim}) is in {place} ({}): deleting the cluster's nodes deletes it, and a cold start brings the claim back empty",
            local.source
        ),
        fix: "move the data to a cloud disk (a StorageClass of a cloud CSI driver) before the stop, or back it up with the application's own tools".into(),
    }
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
    bindings::disk_id_of(pv).unwrap_or_else(|| "(no cloud disk)".to_owned())
}

/// Every bucket binding of the cluster with its object, deletion policies resolved the way
/// a snapshot resolves them. A COSI claim bound to a `Bucket` object in the list is left
/// out: the `Bucket` carries the policy (and is what `stop` changes), one verdict per
/// bucket.
pub fn bucket_bindings(inputs: &Inputs) -> Vec<(BucketBinding, &Value)> {
    let mut out: Vec<(BucketBinding, &Value)> = inputs
        .bucket_objects
        .iter()
        .filter_map(|o| {
            let av = s(o, "/apiVersion").unwrap_or_default();
            let group = av.split_once('/').map_or("", |(g, _)| g);
            let kind = s(o, "/kind").unwrap_or_default();
            let api = bindings::BUCKET_APIS
                .iter()
                .find(|a| a.group == group && a.kind == kind)?;
            Some((bindings::bucket_of(api, o)?, o))
        })
        .collect();
    let classes = |list: &[Value], field: &str| -> BTreeMap<String, String> {
        list.iter()
            .filter_map(|c| {
                Some((
                    s(c, "/metadata/name")?.to_owned(),
                    s(c, field).unwrap_or("Delete").to_owned(),
                ))
            })
            .collect()
    };
    let mut all: Vec<BucketBinding> = out.iter().map(|(b, _)| b.clone()).collect();
    bindings::resolve_bucket_policies(
        &mut all,
        &classes(&inputs.cosi_classes, "/deletionPolicy"),
        &classes(&inputs.storage_classes, "/reclaimPolicy"),
        &inputs
            .object_buckets
            .iter()
            .filter_map(bindings::object_bucket_policy)
            .collect(),
    );
    let cosi_buckets: Vec<String> = all
        .iter()
        .filter(|b| b.kind == BucketKind::CosiBucket)
        .map(|b| b.name.clone())
        .collect();
    for ((b, _), resolved) in out.iter_mut().zip(all) {
        *b = resolved;
    }
    out.retain(|(b, _)| {
        b.kind != BucketKind::CosiBucketClaim
            || !b.bucket.as_ref().is_some_and(|o| cosi_buckets.contains(o))
    });
    out
}

fn kind_label(b: &BucketBinding) -> &'static str {
    match b.kind {
        BucketKind::CosiBucketClaim => "BucketClaim",
        BucketKind::CosiBucket => "Bucket.objectstorage.k8s.io",
        BucketKind::Crossplane => "Bucket (Crossplane)",
        BucketKind::CrossplaneNamespaced => "Bucket (Crossplane, namespaced)",
        BucketKind::Ack => "Bucket (ACK)",
        BucketKind::RookObc => "ObjectBucketClaim",
    }
}

fn buckets_fix(b: &BucketBinding) -> String {
    match b.kind {
        BucketKind::CosiBucket => "set spec.deletionPolicy: Retain (coldstart stop does it)".into(),
        BucketKind::Crossplane => "set spec.deletionPolicy: Orphan (coldstart stop does it)".into(),
        BucketKind::CrossplaneNamespaced => {
            "drop Delete from spec.managementPolicies (coldstart stop does it)".into()
        }
        BucketKind::Ack => {
            "annotate services.k8s.aws/deletion-policy=retain (coldstart stop does it)".into()
        }
        BucketKind::CosiBucketClaim | BucketKind::RookObc => String::new(),
    }
}

/// Apply every rule. `now` and `rpo_target` are injected so the rules stay pure.
pub fn audit(inputs: &Inputs, now: DateTime<Utc>, rpo_target: Duration) -> Vec<Finding> {
    let mut out = Vec::new();
    for pv in &inputs.persistent_volumes {
        if let Some(local) = bindings::node_local(pv) {
            out.push(node_local_finding(pv, &local));
            continue;
        }
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
    for b in bindings::azure::in_node_group(
        &inputs.persistent_volumes,
        &inputs.services,
        inputs.node_resource_group.as_deref(),
    ) {
        let what = match &b {
            bindings::azure::InNodeGroup::Disk { .. } => "disk",
            bindings::azure::InNodeGroup::PublicIp { .. } => "public IP",
        };
        out.push(Finding {
            severity: Severity::High,
            kind: FindingKind::DeletedWithNodeResourceGroup,
            object: b.subject(),
            message: format!(
                "{what} {} lives in the AKS node resource group {}, which Azure deletes with the cluster whatever the reclaim policy",
                b.target(),
                b.group()
            ),
            fix: "move it to a resource group of your own (coldstart stop --move-to-resource-group RG does it where it can move resources)".into(),
        });
    }
    for svc in &inputs.services {
        for p in bindings::pin_problems(svc) {
            let (severity, message, fix) = match p {
                bindings::PinProblem::Mismatch { pinned, answers } => (
                    Severity::High,
                    format!(
                        "pinned to {} but answers on {}: a restore would move it",
                        pinned.join(", "),
                        answers.join(", ")
                    ),
                    "pin the address the Service answers on".to_owned(),
                ),
                bindings::PinProblem::IgnoredOnAws { address } => (
                    Severity::High,
                    format!(
                        "spec.loadBalancerIP {address} is ignored on AWS: the address is not pinned"
                    ),
                    "pin with service.beta.kubernetes.io/aws-load-balancer-eip-allocations"
                        .to_owned(),
                ),
                bindings::PinProblem::Shared { address, key } => (
                    Severity::Low,
                    format!("shares {address} with other Services (allow-shared-ip {key})"),
                    "nothing: restore keeps every Service on the key pinned to the same address"
                        .to_owned(),
                ),
            };
            out.push(Finding {
                severity,
                kind: FindingKind::PinNotHeld,
                object: format!("Service {}", name(svc)),
                message,
                fix,
            });
        }
    }
    for (b, _) in bucket_bindings(inputs) {
        if !b.deleted_with_cluster() {
            continue;
        }
        let subject = match &b.namespace {
            Some(ns) => format!("{} {ns}/{}", kind_label(&b), b.name),
            None => format!("{} {}", kind_label(&b), b.name),
        };
        let bucket = b.bucket.as_deref().unwrap_or("(not yet known)");
        let policy = b.deletion_policy.as_deref().unwrap_or("Delete");
        let (message, fix) = match b.kind {
            BucketKind::CosiBucketClaim => (
                format!(
                    "bucket {bucket} follows BucketClass {} with deletionPolicy {policy}",
                    b.bucket_class.as_deref().unwrap_or("?")
                ),
                "set the COSI Bucket's deletionPolicy to Retain (coldstart stop does it once the Bucket exists)".to_owned(),
            ),
            BucketKind::RookObc => (
                format!(
                    "bucket {bucket} follows StorageClass {} with reclaimPolicy {policy}: deleting the claim deletes it",
                    b.bucket_class.as_deref().unwrap_or("?")
                ),
                format!(
                    "set ObjectBucket {}'s spec.reclaimPolicy to Retain (coldstart stop does it once the ObjectBucket exists)",
                    b.namespace
                        .as_deref()
                        .map(|ns| bindings::object_bucket_name(ns, &b.name))
                        .unwrap_or_default()
                ),
            ),
            _ => (
                format!("bucket {bucket} is deleted with its resource ({policy})"),
                buckets_fix(&b),
            ),
        };
        out.push(Finding {
            severity: if b.adopted && b.kind == BucketKind::CosiBucketClaim {
                Severity::Medium
            } else {
                Severity::High
            },
            kind: FindingKind::BucketDeletedWithCluster,
            object: subject,
            message,
            fix,
        });
    }
    out.extend(data_policy_findings(inputs, now, rpo_target));
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

/// How many zones a PV's node affinity allows (a regional disk lists two or more).
fn zone_count(pv: &Value) -> usize {
    let mut zones = std::collections::BTreeSet::new();
    for term in pv
        .pointer("/spec/nodeAffinity/required/nodeSelectorTerms")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for e in term
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if e.get("key")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("/zone"))
            {
                zones.extend(
                    e.get("values")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str),
                );
            }
        }
    }
    zones.len()
}

/// The data policy rules: a snapshot-policy volume needs a fresh cloud snapshot; a
/// transfer-policy volume on one zonal disk with none has a single copy of its data.
fn data_policy_findings(inputs: &Inputs, now: DateTime<Utc>, rpo_target: Duration) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut volumes: Vec<bindings::VolumeBinding> = inputs
        .persistent_volumes
        .iter()
        .filter_map(bindings::volume_of)
        .collect();
    let claims = bindings::data_policy::claim_intents(&inputs.persistent_volume_claims);
    if let Err(invalid) = bindings::data_policy::resolve(&mut volumes, &claims, inputs.data_policy)
    {
        for i in invalid {
            out.push(Finding {
                severity: Severity::Medium,
                kind: FindingKind::InvalidDataPolicy,
                object: format!("PersistentVolumeClaim {}", i.claim),
                message: i.why.clone(),
                fix: format!(
                    "set {} to transfer, snapshot or transfer-or-snapshot (a snapshot refuses it until then)",
                    bindings::data_policy::DATA_POLICY
                ),
            });
        }
    }
    let newest_cloud_snapshot = |pv: &str| {
        inputs
            .newest_snapshot
            .as_ref()
            .and_then(|s| s.volumes.iter().find(|v| v.pv == pv))
            .and_then(|v| v.cloud_snapshot.as_ref())
    };
    for v in &volumes {
        let pv = inputs
            .persistent_volumes
            .iter()
            .find(|p| s(p, "/metadata/name") == Some(v.pv.as_str()));
        let object = format!("PersistentVolume {}", v.pv);
        let claim = v
            .claim
            .as_ref()
            .map(|c| format!(" (claim {}/{})", c.namespace, c.name))
            .unwrap_or_default();
        match (v.data_policy.wants_cloud_snapshot(), newest_cloud_snapshot(&v.pv)) {
            (true, None) => out.push(Finding {
                severity: Severity::High,
                kind: FindingKind::CloudSnapshotStale,
                object,
                message: format!(
                    "data policy {}{claim} but the newest snapshot has no cloud snapshot of disk {}: a cold start without the disk could not bring it back",
                    v.data_policy.as_str(),
                    v.disk_id
                ),
                fix: "run coldstart snapshot (it takes the cloud snapshot)".into(),
            }),
            (true, Some(cs)) => {
                let age = (now - cs.taken_at).to_std().unwrap_or_default();
                if age > rpo_target {
                    out.push(Finding {
                        severity: Severity::High,
                        kind: FindingKind::CloudSnapshotStale,
                        object,
                        message: format!(
                            "the newest cloud snapshot of disk {}{claim} ({}) is {} old, beyond the RPO target of {}",
                            v.disk_id,
                            cs.id,
                            humantime(age),
                            humantime(rpo_target)
                        ),
                        fix: "run coldstart snapshot (or check the schedule)".into(),
                    });
                }
            }
            (false, None) if pv.is_some_and(|p| zone_count(p) == 1) => out.push(Finding {
                severity: Severity::Low,
                kind: FindingKind::SingleCopy,
                object,
                message: format!(
                    "disk {}{claim} in {} is the only copy of its data (data policy transfer, no cloud snapshot): losing the disk or its zone loses the data",
                    v.disk_id,
                    v.zone.as_deref().unwrap_or("one zone")
                ),
                fix: format!(
                    "annotate the claim {}=transfer-or-snapshot to take a cloud snapshot with every cluster snapshot",
                    bindings::data_policy::DATA_POLICY
                ),
            }),
            _ => {}
        }
    }
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
    #[error(transparent)]
    Discovery(#[from] K8sError),
    #[error("failed to list {what}: {source}")]
    List {
        what: &'static str,
        source: kube::Error,
    },
}

/// Every object of `api_version`/`kind`; a type the cluster does not serve (discovery says
/// so) has nothing to lose.
/// Every object of a kind the cluster serves (none when it does not), listed page by page
/// and keeping only what `keep` picks, so a kind with many objects the rules ignore is
/// never held whole.
async fn list_served(
    client: &kube::Client,
    resources: &Resources,
    (api_version, kind): (&str, &str),
    what: &'static str,
    keep: impl FnMut(&Value) -> bool,
) -> Result<Vec<Value>, AuditError> {
    let Some(api) = resources.api(client, api_version, kind, None) else {
        return Ok(Vec::new());
    };
    crate::k8s::list_kept(&api, &ListParams::default(), (api_version, kind), keep)
        .await
        .map_err(|source| AuditError::List { what, source })
}

/// Collect what the rules look at from the cluster (discovering what it serves).
pub async fn collect(
    client: &kube::Client,
    newest_snapshot: Option<SnapshotFacts>,
) -> Result<Inputs, AuditError> {
    let resources = Resources::discover(client).await?;
    collect_with(client, &resources, newest_snapshot).await
}

/// Collect what the rules look at, with the run's discovery.
pub async fn collect_with(
    client: &kube::Client,
    resources: &Resources,
    newest_snapshot: Option<SnapshotFacts>,
) -> Result<Inputs, AuditError> {
    let (c, r) = (client, resources);
    let all = |_: &Value| true;
    Ok(Inputs {
        persistent_volumes: list_served(c, r, ("v1", "PersistentVolume"), "PersistentVolumes", all)
            .await?,
        persistent_volume_claims: list_served(
            c,
            r,
            ("v1", "PersistentVolumeClaim"),
            "PersistentVolumeClaims",
            all,
        )
        .await?,
        data_policy: bindings::DataPolicy::default(),
        // Only a LoadBalancer Service holds a cloud address; a cluster has thousands of
        // others.
        services: list_served(
            c,
            r,
            ("v1", "Service"),
            "Services",
            bindings::is_load_balancer,
        )
        .await?,
        cosi_classes: list_served(
            c,
            r,
            ("objectstorage.k8s.io/v1alpha1", "BucketClass"),
            "BucketClasses",
            all,
        )
        .await?,
        storage_classes: list_served(
            c,
            r,
            ("storage.k8s.io/v1", "StorageClass"),
            "StorageClasses",
            all,
        )
        .await?,
        object_buckets: list_served(
            c,
            r,
            (
                bindings::OBJECT_BUCKET_API_VERSION,
                bindings::OBJECT_BUCKET_KIND,
            ),
            "ObjectBuckets",
            all,
        )
        .await?,
        node_resource_group: bindings::azure::node_resource_group(
            &list_served(c, r, ("v1", "Node"), "Nodes", all).await?,
        ),
        cronjobs: list_served(c, r, ("batch/v1", "CronJob"), "CronJobs", all).await?,
        bucket_objects: {
            let mut all = Vec::new();
            for api in bindings::BUCKET_APIS {
                let api_version = format!("{}/{}", api.group, api.version);
                all.extend(
                    list_served(c, r, (&api_version, api.kind), "bucket objects", |_| true).await?,
                );
            }
            all
        },
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
    let mut c = crate::bindings::Collector::with_default_policy(inputs.data_policy);
    // List items carry no apiVersion/kind: say what each list is.
    let lists = [
        (
            &inputs.persistent_volumes,
            "",
            "persistentvolumes",
            "PersistentVolume",
        ),
        (
            &inputs.persistent_volume_claims,
            "",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
        ),
        (&inputs.services, "", "services", "Service"),
        (
            &inputs.cosi_classes,
            "objectstorage.k8s.io",
            "bucketclasses",
            "BucketClass",
        ),
        (
            &inputs.storage_classes,
            "storage.k8s.io",
            "storageclasses",
            "StorageClass",
        ),
        (
            &inputs.object_buckets,
            "objectbucket.io",
            bindings::OBJECT_BUCKET_PLURAL,
            bindings::OBJECT_BUCKET_KIND,
        ),
    ];
    for (objects, group, resource, kind) in lists {
        for o in objects {
            c.observe(group, resource, kind, o);
        }
    }
    // Bucket objects carry their apiVersion and kind (set when collected).
    for o in &inputs.bucket_objects {
        let api = bindings::BUCKET_APIS.iter().find(|a| {
            o["kind"] == a.kind && o["apiVersion"] == format!("{}/{}", a.group, a.version)
        });
        if let Some(a) = api {
            c.observe(a.group, a.plural, a.kind, o);
        }
    }
    c.finish().0
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
            volumes: vec![],
        }
    }

    fn kinds(f: &[Finding]) -> Vec<FindingKind> {
        f.iter().map(|x| x.kind).collect()
    }

    #[test]
    fn delete_policy_volumes_unpinned_addresses_and_deleting_buckets_are_findings() {
        let inputs = Inputs {
            persistent_volumes: vec![
                json!({"metadata": {"name": "a"}, "spec": {"persistentVolumeReclaimPolicy": "Delete", "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}}),
                json!({"metadata": {"name": "b"}, "spec": {"persistentVolumeReclaimPolicy": "Retain"}}),
            ],
            services: vec![
                json!({"metadata": {"name": "mqtt", "namespace": "t"}, "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
                json!({"metadata": {"name": "pinned", "namespace": "t"}, "spec": {"type": "LoadBalancer", "loadBalancerIP": "5.6.7.8"}}),
                json!({"metadata": {"name": "internal", "namespace": "t"}, "spec": {"type": "ClusterIP"}}),
            ],
            bucket_objects: vec![
                json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket", "metadata": {"name": "tmp"}, "spec": {"deletionPolicy": "Delete"}}),
                json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket", "metadata": {"name": "logs"}, "spec": {"deletionPolicy": "Orphan"}}),
                json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "BucketClaim", "metadata": {"name": "c", "namespace": "t"}, "spec": {"bucketClassName": "std"}}),
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
    fn a_host_path_volume_is_a_node_local_finding_whatever_its_reclaim_policy() {
        let inputs = Inputs {
            persistent_volumes: vec![
                crate::testing::pv("task-pv-volume")
                    .claimed_by("storage-demo", "task-pv-claim")
                    .reclaim("Retain")
                    .spec("hostPath", json!({"path": "/mnt/data"}))
                    .build(),
            ],
            newest_snapshot: Some(snapshot(60)),
            ..Default::default()
        };
        let f = audit(&inputs, now(), Duration::from_secs(3600));
        assert_eq!(kinds(&f), vec![FindingKind::NodeLocalVolume]);
        assert!(
            f[0].message.contains(
                "claim storage-demo/task-pv-claim) is in /mnt/data on its node (hostPath)"
            ),
            "{}",
            f[0].message
        );
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
            bucket_objects: vec![json!({"apiVersion": "objectstorage.k8s.io/v1alpha1",
                "kind": "BucketClaim", "metadata": {"name": "media", "namespace": "shop"},
                "spec": {"existingBucketName": "shop-media"}})],
            ..Default::default()
        };
        let b = live_bindings(&inputs);
        assert_eq!(b.volumes.len(), 1);
        assert_eq!(b.volumes[0].disk_id, "vol-1");
        assert_eq!(b.buckets.len(), 1);
        assert_eq!(b.buckets[0].bucket.as_deref(), Some("shop-media"));
    }

    fn zonal_pv(name: &str, disk: &str, claim: &str, zones: &[&str]) -> Value {
        crate::testing::pv(name)
            .csi_disk(disk)
            .claimed_by("t", claim)
            .reclaim("Retain")
            .spec(
                "nodeAffinity",
                json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": zones}]}]}}),
            )
            .build()
    }

    #[test]
    fn a_stale_or_missing_cloud_snapshot_and_a_single_copy_disk_are_findings() {
        use crate::bindings::data_policy::DATA_POLICY;
        use crate::testing::pvc;
        let pvs = vec![
            zonal_pv("pv-fresh", "vol-1", "fresh", &["eu-west-1a"]),
            zonal_pv("pv-stale", "vol-2", "stale", &["eu-west-1a"]),
            zonal_pv("pv-never", "vol-3", "never", &["eu-west-1a"]),
            zonal_pv("pv-kafka", "vol-4", "kafka", &["eu-west-1a"]),
            zonal_pv(
                "pv-regional",
                "vol-5",
                "regional",
                &["eu-west-1a", "eu-west-1b"],
            ),
            zonal_pv("pv-typo", "vol-6", "typo", &["eu-west-1a"]),
        ];
        let claims = vec![
            pvc("t", "fresh")
                .annotation(DATA_POLICY, "snapshot")
                .build(),
            pvc("t", "stale")
                .annotation(DATA_POLICY, "transfer-or-snapshot")
                .build(),
            pvc("t", "never")
                .annotation(DATA_POLICY, "snapshot")
                .build(),
            pvc("t", "kafka").build(),
            pvc("t", "regional").build(),
            pvc("t", "typo")
                .annotation(DATA_POLICY, "snapshots")
                .build(),
        ];
        let mut facts = snapshot(60);
        for (pv, age) in [("pv-fresh", 60), ("pv-stale", 7200)] {
            let mut v = crate::bindings::volume_of(
                pvs.iter()
                    .find(|p| p["metadata"]["name"] == pv)
                    .expect("pv"),
            )
            .expect("disk");
            v.cloud_snapshot = Some(crate::bindings::CloudSnapshot {
                id: format!("snap-{pv}"),
                taken_at: now() - chrono::Duration::seconds(age),
                size_gib: Some(10),
                road: crate::bindings::SnapshotRoad::Provider,
                volume_snapshot: None,
            });
            facts.volumes.push(v);
        }
        let inputs = Inputs {
            persistent_volumes: pvs,
            persistent_volume_claims: claims,
            newest_snapshot: Some(facts),
            ..Default::default()
        };
        let findings = audit(&inputs, now(), Duration::from_secs(900));
        let about = |kind: FindingKind| {
            let mut o: Vec<String> = findings
                .iter()
                .filter(|f| f.kind == kind)
                .map(|f| f.object.clone())
                .collect();
            o.sort();
            o
        };
        assert_eq!(
            about(FindingKind::CloudSnapshotStale),
            ["PersistentVolume pv-never", "PersistentVolume pv-stale"]
        );
        assert_eq!(
            about(FindingKind::SingleCopy),
            ["PersistentVolume pv-kafka", "PersistentVolume pv-typo"],
            "a regional disk has a second copy; a claim with a typo keeps the default"
        );
        assert_eq!(
            about(FindingKind::InvalidDataPolicy),
            ["PersistentVolumeClaim t/typo"]
        );
    }
}
