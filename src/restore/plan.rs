//! The restore plan, as pure functions: which tier each object belongs to, and how each
//! object is rewritten so that a new cluster reuses every disk, address and bucket instead
//! of provisioning new ones. Nothing here touches a cluster; `restore --dry-run` prints it.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Value, json};

use super::{Recorded, RecordedAddress};

/// The tiers, in order; each is a barrier (the next starts when it is done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    Crds,
    Namespaces,
    Classes,
    PersistentVolumes,
    PersistentVolumeClaims,
    Config,
    Services,
    CustomResources,
    Workloads,
    Admission,
}

impl Tier {
    pub const ALL: [Tier; 10] = [
        Tier::Crds,
        Tier::Namespaces,
        Tier::Classes,
        Tier::PersistentVolumes,
        Tier::PersistentVolumeClaims,
        Tier::Config,
        Tier::Services,
        Tier::CustomResources,
        Tier::Workloads,
        Tier::Admission,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Crds => "crds",
            Tier::Namespaces => "namespaces",
            Tier::Classes => "classes",
            Tier::PersistentVolumes => "persistent-volumes",
            Tier::PersistentVolumeClaims => "persistent-volume-claims",
            Tier::Config => "config",
            Tier::Services => "services",
            Tier::CustomResources => "custom-resources",
            Tier::Workloads => "workloads",
            Tier::Admission => "admission",
        }
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Which tier an object is restored in. Admission webhooks and policies come last: a
/// webhook whose pods are not running yet would block everything after it (velero #4524).
pub fn tier_of(api_version: &str, kind: &str) -> Tier {
    match (group_of(api_version), kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Tier::Crds,
        ("", "Namespace") => Tier::Namespaces,
        ("storage.k8s.io", _)
        | ("scheduling.k8s.io", _)
        | ("networking.k8s.io", "IngressClass") => Tier::Classes,
        ("", "PersistentVolume") => Tier::PersistentVolumes,
        ("", "PersistentVolumeClaim") => Tier::PersistentVolumeClaims,
        ("rbac.authorization.k8s.io", _)
        | ("", "ServiceAccount" | "Secret" | "ConfigMap" | "ResourceQuota" | "LimitRange")
        | ("networking.k8s.io", "NetworkPolicy")
        | ("policy", _) => Tier::Config,
        ("", "Service" | "Endpoints") | ("networking.k8s.io", "Ingress") => Tier::Services,
        ("apps" | "batch", _) | ("", "Pod" | "ReplicationController") => Tier::Workloads,
        ("admissionregistration.k8s.io", _) => Tier::Admission,
        ("" | "coordination.k8s.io" | "discovery.k8s.io" | "autoscaling", _) => Tier::Config,
        _ => Tier::CustomResources,
    }
}

/// How a restore is shaped; every field has a sensible default.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Label selector (equality terms) marking operators, restored at 0 replicas.
    pub operator_selector: Vec<(String, String)>,
    /// Keep every nodePort, not only explicitly requested ones.
    pub preserve_node_ports: bool,
    /// Keep every clusterIP, not only explicitly requested ones.
    pub preserve_cluster_ips: bool,
    /// How to pin a LoadBalancer address on this cloud.
    pub pin_style: PinStyle,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            operator_selector: vec![("coldstart.dev/operator".to_owned(), "true".to_owned())],
            preserve_node_ports: false,
            preserve_cluster_ips: false,
            pin_style: PinStyle::LoadBalancerIp,
        }
    }
}

pub use crate::bindings::PinStyle;

/// Annotation recording what a transform replaced, so `start` can put it back.
pub const ORIGINAL_RECLAIM: &str = "coldstart.dev/original-reclaim-policy";
pub const ORIGINAL_REPLICAS: &str = "coldstart.dev/original-replicas";
pub const ORIGINAL_OWNERS: &str = "coldstart.dev/original-owner-references";
/// A ResourceQuota's `spec.hard`, parked while its namespace's workloads come back.
pub const ORIGINAL_QUOTA: &str = "coldstart.dev/original-quota-hard";
pub use crate::bindings::ORIGINAL_MANAGEMENT;

/// One object, rewritten for the new cluster, with what was changed and why.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub tier: Tier,
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// Serialized (shown) with a Secret's values redacted; the apply uses the field itself.
    #[serde(serialize_with = "serialize_redacted")]
    pub object: Value,
    pub transforms: Vec<String>,
    pub operator: bool,
}

fn serialize_redacted<S: serde::Serializer>(obj: &Value, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&*crate::snapshot::rules::redacted(obj), s)
}

impl Planned {
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{ns}/{}", self.api_version, self.kind, self.name),
            None => format!("{}/{}/{}", self.api_version, self.kind, self.name),
        }
    }
}

/// The whole plan, tier by tier.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub tiers: BTreeMap<Tier, Vec<Planned>>,
}

impl Plan {
    pub fn len(&self) -> usize {
        self.tiers.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn operators(&self) -> impl Iterator<Item = &Planned> {
        self.tiers.values().flatten().filter(|p| p.operator)
    }
}

fn annotations_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations was just made an object")
}

fn drop_annotations(obj: &mut Value, keys: &[&str], transforms: &mut Vec<String>) {
    if let Some(a) = obj
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        for k in keys {
            if a.remove(*k).is_some() {
                transforms.push(format!("dropped annotation {k}"));
            }
        }
    }
}

/// Rewrite an in-tree volume source to the CSI form the CSI migration uses (bindings knows
/// the driver and handle of every in-tree source). The in-tree source's zone lived in its
/// volume id or its labels, which the CSI driver does not read: it becomes node affinity,
/// or a pod scheduled in another zone could not attach the disk.
fn in_tree_to_csi(pv: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(b) = crate::bindings::volume_of(pv) else {
        return out;
    };
    if b.source == "csi" {
        return out;
    }
    let Some(spec) = pv.get_mut("spec").and_then(Value::as_object_mut) else {
        return out;
    };
    for src in crate::bindings::IN_TREE_SOURCES {
        spec.remove(src);
    }
    let mut csi = json!({"driver": b.csi_driver, "volumeHandle": b.volume_handle});
    if let Some(fs) = &b.fs_type {
        csi["fsType"] = json!(fs);
    }
    spec.insert("csi".into(), csi);
    out.push(format!(
        "in-tree {} → CSI {} {}",
        b.source, b.csi_driver, b.volume_handle
    ));
    if let Some(zone) = &b.zone
        && !spec.contains_key("nodeAffinity")
    {
        spec.insert(
            "nodeAffinity".into(),
            json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}]}]}}),
        );
        out.push(format!(
            "node affinity topology.kubernetes.io/zone={zone} (the in-tree volume's zone)"
        ));
    }
    out
}

/// PV: `Retain`, claimRef without uid/resourceVersion, CSI form, binding annotations gone.
pub fn transform_pv(pv: &mut Value, transforms: &mut Vec<String>) {
    let policy = pv["spec"]["persistentVolumeReclaimPolicy"]
        .as_str()
        .unwrap_or("Delete")
        .to_owned();
    if policy != "Retain" {
        pv["spec"]["persistentVolumeReclaimPolicy"] = json!("Retain");
        annotations_mut(pv).insert(ORIGINAL_RECLAIM.into(), json!(policy));
        transforms.push(format!(
            "reclaim policy {policy} → Retain (a restore must never delete a disk)"
        ));
    }
    if let Some(cr) = pv
        .pointer_mut("/spec/claimRef")
        .and_then(Value::as_object_mut)
    {
        for k in ["uid", "resourceVersion"] {
            if cr.remove(k).is_some() {
                transforms.push(format!(
                    "claimRef.{k} cleared (a stale uid makes the PV Released)"
                ));
            }
        }
    }
    transforms.extend(in_tree_to_csi(pv));
    point_at_moved_disk(pv, transforms);
    drop_annotations(pv, &["pv.kubernetes.io/bound-by-controller"], transforms);
}

/// A disk `stop` moved out of a resource group deleted with the cluster has a new id, which
/// the old PV could only carry in an annotation (`volumeHandle` is immutable): the restored
/// PV names it.
fn point_at_moved_disk(pv: &mut Value, transforms: &mut Vec<String>) {
    let Some(moved) = pv
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(crate::bindings::azure::DISK_MOVED_TO))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
    else {
        return;
    };
    if let Some(handle) = pv.pointer_mut("/spec/csi/volumeHandle")
        && handle.as_str() != Some(moved.as_str())
    {
        *handle = json!(moved);
        transforms.push(format!(
            "spec.csi.volumeHandle → {moved} (the disk was moved out of the node resource group)"
        ));
    }
}

/// PVC: bound to its volume by name; binding and provisioner annotations gone.
pub fn transform_pvc(pvc: &mut Value, volume: Option<&str>, transforms: &mut Vec<String>) {
    let current = pvc["spec"]["volumeName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match volume {
        Some(v) if current != v => {
            pvc["spec"]["volumeName"] = json!(v);
            transforms.push(format!(
                "spec.volumeName → {v} (pre-bound: nothing is provisioned)"
            ));
        }
        _ => {}
    }
    drop_annotations(
        pvc,
        &[
            "pv.kubernetes.io/bind-completed",
            "pv.kubernetes.io/bound-by-controller",
            "volume.kubernetes.io/selected-node",
            "volume.kubernetes.io/storage-provisioner",
            "volume.beta.kubernetes.io/storage-provisioner",
        ],
        transforms,
    );
}

/// Node ports the user asked for explicitly (per kubectl's last-applied configuration).
fn explicit_node_ports(svc: &Value) -> Vec<(Option<String>, u64)> {
    let Some(last) = svc
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    else {
        return Vec::new();
    };
    last.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some((
                        p["name"].as_str().map(str::to_owned),
                        p["nodePort"].as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the Service's author set its clusterIP (clients that depend on it, DNS-less
/// setups): a field someone manages (managedFields) or applied (last-applied), not one the
/// API server allocated.
fn explicit_cluster_ip(svc: &Value) -> bool {
    let set = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|ip| !ip.is_empty() && ip != "None")
    };
    let managed = svc
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|m| {
            m.iter()
                .any(|e| e.pointer("/fieldsV1/f:spec/f:clusterIP").is_some())
        });
    let applied = svc
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .is_some_and(|last| set(last.pointer("/spec/clusterIP")));
    set(svc.pointer("/spec/clusterIP")) && (managed || applied)
}

pub use crate::bindings::is_pinned;

/// Service: cluster IPs, status and auto-assigned node ports gone; pinned to its recorded
/// address when it was not pinned already.
pub fn transform_service(
    svc: &mut Value,
    recorded: Option<&RecordedAddress>,
    opts: &PlanOptions,
    transforms: &mut Vec<String>,
) {
    let headless = svc["spec"]["clusterIP"].as_str() == Some("None");
    let keep_ip = opts.preserve_cluster_ips || explicit_cluster_ip(svc);
    if !headless
        && !keep_ip
        && let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut)
        && spec.remove("clusterIP").is_some() | spec.remove("clusterIPs").is_some()
    {
        transforms.push("allocated clusterIP(s) cleared (the new cluster allocates them)".into());
    }
    if !opts.preserve_node_ports {
        let explicit = explicit_node_ports(svc);
        if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports {
                let Some(np) = p["nodePort"].as_u64() else {
                    continue;
                };
                let name = p["name"].as_str().map(str::to_owned);
                if !explicit
                    .iter()
                    .any(|(n, e)| *e == np && (n.is_none() || *n == name))
                {
                    if let Some(o) = p.as_object_mut() {
                        o.remove("nodePort");
                    }
                    transforms.push(format!("auto-assigned nodePort {np} cleared"));
                }
            }
        }
    }
    if svc["spec"]["type"].as_str() != Some("LoadBalancer") || is_pinned(svc) {
        return;
    }
    let Some(rec) = recorded else {
        transforms.push("NOT pinned: no address was recorded for this Service".into());
        return;
    };
    let style = opts.pin_style.for_service(svc);
    match style.pin(&rec.ip, rec.allocation_id.as_deref()) {
        Ok(pin) => {
            json_patch::merge(svc, &pin.patch);
            transforms.push(format!(
                "pinned to its recorded address {} ({})",
                rec.ip, pin.mechanism
            ));
        }
        Err(why) => transforms.push(format!("NOT pinned: {why}")),
    }
}

/// A ResourceQuota comes back with no limits until its namespace's workloads are up again,
/// then gets them back (`restore::put_back_quotas`). The workloads' pods were admitted
/// before the quota existed, or under other limits; created again from scratch behind it,
/// quota admission would refuse them (a pod without a request the quota constrains, or
/// the namespace already at its limit) and the restore would not bring back what ran.
fn park_quota(obj: &mut Value, transforms: &mut Vec<String>) {
    let hard = obj.pointer("/spec/hard").cloned().unwrap_or(Value::Null);
    if hard.as_object().is_none_or(serde_json::Map::is_empty) {
        return;
    }
    annotations_mut(obj).insert(ORIGINAL_QUOTA.into(), json!(hard.to_string()));
    obj["spec"]["hard"] = json!({});
    transforms.push("quota limits parked until the namespace's workloads are back".into());
}

/// Whether an object is a bucket claim of a known style (bindings decides).
pub fn is_bucket_claim(api_version: &str, kind: &str) -> bool {
    crate::bindings::bucket_kind_of(group_of(api_version), kind).is_some()
}

fn matches_selector(obj: &Value, selector: &[(String, String)]) -> bool {
    !selector.is_empty()
        && selector.iter().all(|(k, v)| {
            obj.pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                == Some(v.as_str())
        })
}

/// The snapshot's recorded bindings keyed the way the plan looks them up: a claim's volume
/// and a Service's address by (namespace, name), a bucket claim's bucket by (kind,
/// namespace, name). Built once for a tier's batches ([`plan_with`]), so an object's lookup
/// is a hash, not a walk over every recorded binding (thousands of LoadBalancer Services
/// would make that quadratic). Where a record repeats, the first one counts, as before.
pub struct RecordedIndex<'a> {
    volumes: ByName<'a, &'a str>,
    addresses: ByName<'a, &'a RecordedAddress>,
    /// By the claim's kind first: a COSI BucketClaim and a Crossplane Bucket may share a name.
    buckets: HashMap<&'a str, ByName<'a, &'a str>>,
}

/// Namespace ([`CLUSTER_SCOPED`] for a cluster-scoped object) → name → record. Nested
/// rather than keyed by a pair so a lookup borrows the object's own strings.
type ByName<'a, T> = HashMap<&'a str, HashMap<&'a str, T>>;

/// The namespace key of a cluster-scoped object: a name no namespace can have.
const CLUSTER_SCOPED: &str = "";

fn insert_first<'a, T>(map: &mut ByName<'a, T>, namespace: &'a str, name: &'a str, record: T) {
    map.entry(namespace)
        .or_default()
        .entry(name)
        .or_insert(record);
}

impl<'a> RecordedIndex<'a> {
    pub fn new(recorded: &'a Recorded) -> Self {
        let mut index = RecordedIndex {
            volumes: HashMap::new(),
            addresses: HashMap::new(),
            buckets: HashMap::new(),
        };
        for v in &recorded.volumes {
            if let Some((ns, name)) = &v.claim {
                insert_first(&mut index.volumes, ns, name, v.pv.as_str());
            }
        }
        for a in &recorded.addresses {
            insert_first(&mut index.addresses, &a.namespace, &a.name, a);
        }
        for b in &recorded.buckets {
            let by_name = index.buckets.entry(&b.kind).or_default();
            let ns = b.namespace.as_deref().unwrap_or(CLUSTER_SCOPED);
            insert_first(by_name, ns, &b.name, b.bucket.as_str());
        }
        index
    }

    fn volume_of(&self, namespace: Option<&str>, claim: &str) -> Option<&'a str> {
        self.volumes.get(namespace?)?.get(claim).copied()
    }

    fn address_of(&self, namespace: Option<&str>, service: &str) -> Option<&'a RecordedAddress> {
        self.addresses.get(namespace?)?.get(service).copied()
    }

    fn bucket_of(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<&'a str> {
        let by_name = self.buckets.get(kind)?;
        by_name
            .get(namespace.unwrap_or(CLUSTER_SCOPED))?
            .get(name)
            .copied()
    }
}

/// Build the plan for a set of (sanitized) snapshot objects and their recorded bindings.
pub fn plan(objects: Vec<Value>, recorded: &Recorded, opts: &PlanOptions) -> Plan {
    plan_with(objects, &RecordedIndex::new(recorded), opts)
}

/// [`plan`] with the recorded bindings indexed by the caller, for planning in batches.
pub fn plan_with(objects: Vec<Value>, recorded: &RecordedIndex<'_>, opts: &PlanOptions) -> Plan {
    let mut out = Plan::default();
    for mut obj in objects {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let namespace = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let tier = tier_of(&api_version, &kind);
        let mut transforms = Vec::new();
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "generation",
                "managedFields",
                "selfLink",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                m.remove(k);
            }
        }
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        // Owner uids are the old cluster's: park them and re-link once owners exist, or the
        // garbage collector would delete the dependents.
        if let Some(owners) = obj
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .and_then(|m| m.remove("ownerReferences"))
        {
            annotations_mut(&mut obj).insert(ORIGINAL_OWNERS.into(), json!(owners.to_string()));
            transforms.push("ownerReferences parked until their owners exist again".into());
        }
        let group = group_of(&api_version).to_owned();
        match (group.as_str(), kind.as_str()) {
            ("", "PersistentVolume") => transform_pv(&mut obj, &mut transforms),
            ("", "PersistentVolumeClaim") => {
                let vol = recorded
                    .volume_of(namespace.as_deref(), &name)
                    .map(str::to_owned)
                    .or_else(|| obj["spec"]["volumeName"].as_str().map(str::to_owned));
                transform_pvc(&mut obj, vol.as_deref(), &mut transforms);
            }
            ("", "ResourceQuota") => park_quota(&mut obj, &mut transforms),
            ("", "Service") => {
                let rec = recorded.address_of(namespace.as_deref(), &name);
                transform_service(&mut obj, rec, opts, &mut transforms);
            }
            _ if is_bucket_claim(&api_version, &kind) => {
                let rec = recorded.bucket_of(&kind, namespace.as_deref(), &name);
                // Bucket claims of every style adopt the recorded bucket instead of creating
                // one (the mechanism per API is bindings' knowledge).
                transforms.extend(crate::bindings::adopt_bucket(&mut obj, rec));
            }
            _ => {}
        }
        let operator = tier == Tier::Workloads && matches_selector(&obj, &opts.operator_selector);
        if operator {
            // A planned stop already recorded the replicas before scaling to 0: keep those.
            let recorded = obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(ORIGINAL_REPLICAS))
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<i64>().ok());
            let replicas = recorded.unwrap_or_else(|| {
                obj.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            });
            obj["spec"]["replicas"] = json!(0);
            annotations_mut(&mut obj).insert(ORIGINAL_REPLICAS.into(), json!(replicas.to_string()));
            transforms.push(format!(
                "operator: restored at 0 replicas (was {replicas}); scaled up after verification"
            ));
        }
        out.tiers.entry(tier).or_default().push(Planned {
            tier,
            api_version,
            kind,
            namespace,
            name,
            object: obj,
            transforms,
            operator,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::{RecordedBucket, RecordedVolume};

    #[test]
    fn tiers_follow_the_dependency_order_of_a_cold_start() {
        let cases = [
            (
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                Tier::Crds,
            ),
            ("v1", "Namespace", Tier::Namespaces),
            ("storage.k8s.io/v1", "StorageClass", Tier::Classes),
            ("scheduling.k8s.io/v1", "PriorityClass", Tier::Classes),
            ("v1", "PersistentVolume", Tier::PersistentVolumes),
            ("v1", "PersistentVolumeClaim", Tier::PersistentVolumeClaims),
            ("rbac.authorization.k8s.io/v1", "ClusterRole", Tier::Config),
            ("v1", "Secret", Tier::Config),
            ("v1", "ServiceAccount", Tier::Config),
            ("v1", "Service", Tier::Services),
            (
                "objectstorage.k8s.io/v1alpha1",
                "BucketClaim",
                Tier::CustomResources,
            ),
            (
                "kafka.strimzi.io/v1beta2",
                "KafkaTopic",
                Tier::CustomResources,
            ),
            ("apps/v1", "StatefulSet", Tier::Workloads),
            ("batch/v1", "CronJob", Tier::Workloads),
            (
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
                Tier::Admission,
            ),
        ];
        for (av, kind, want) in cases {
            assert_eq!(tier_of(av, kind), want, "{av} {kind}");
        }
        let mut sorted = Tier::ALL;
        sorted.sort();
        assert_eq!(sorted, Tier::ALL, "tiers are declared in restore order");
    }

    #[test]
    fn a_pv_is_retained_its_claim_uid_cleared_and_in_tree_sources_become_csi() {
        let mut pv = json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pv", "annotations": {"pv.kubernetes.io/bound-by-controller": "yes", "pv.kubernetes.io/provisioned-by": "ebs.csi.aws.com"}},
            "spec": {"persistentVolumeReclaimPolicy": "Delete",
                     "awsElasticBlockStore": {"volumeID": "aws://eu-west-1a/vol-1", "fsType": "ext4"},
                     "claimRef": {"namespace": "a", "name": "c", "uid": "old", "resourceVersion": "9"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1a"]}]}]}}}});
        let mut t = Vec::new();
        transform_pv(&mut pv, &mut t);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["metadata"]["annotations"][ORIGINAL_RECLAIM], "Delete");
        assert_eq!(
            pv["spec"]["claimRef"],
            json!({"namespace": "a", "name": "c"})
        );
        assert_eq!(
            pv["spec"]["csi"],
            json!({"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1", "fsType": "ext4"})
        );
        assert!(pv["spec"].get("awsElasticBlockStore").is_none());
        assert!(
            pv["metadata"]["annotations"]
                .get("pv.kubernetes.io/bound-by-controller")
                .is_none()
        );
        assert_eq!(
            pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
            "ebs.csi.aws.com"
        );
        assert!(
            pv["spec"]["nodeAffinity"].is_object(),
            "zone affinity is kept"
        );
    }

    #[test]
    fn azure_and_gce_in_tree_disks_become_csi_handles() {
        let mut az = json!({"metadata": {"name": "az"}, "spec": {"azureDisk": {"diskName": "d", "diskURI": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/disks/d"}}});
        assert!(!in_tree_to_csi(&mut az).is_empty());
        assert_eq!(az["spec"]["csi"]["driver"], "disk.csi.azure.com");
        let mut gce = json!({"metadata": {"name": "gce", "labels": {"topology.kubernetes.io/zone": "europe-west1-b"}},
            "spec": {"gcePersistentDisk": {"pdName": "pd-1"}}});
        assert!(!in_tree_to_csi(&mut gce).is_empty());
        assert_eq!(
            gce["spec"]["csi"]["volumeHandle"],
            "projects/UNSPECIFIED/zones/europe-west1-b/disks/pd-1"
        );
    }

    #[test]
    fn a_pv_whose_disk_stop_moved_is_restored_naming_the_disk_where_it_is_now() {
        let old = "/subscriptions/s/resourceGroups/MC_rg_aks_westeurope/providers/Microsoft.Compute/disks/d";
        let moved = "/subscriptions/s/resourceGroups/keep/providers/Microsoft.Compute/disks/d";
        let mut pv = crate::testing::pv("data")
            .set(
                "/spec/csi",
                json!({"driver": "disk.csi.azure.com", "volumeHandle": old}),
            )
            .annotation(crate::bindings::azure::DISK_MOVED_TO, moved)
            .reclaim("Retain")
            .build();
        let mut transforms = Vec::new();
        transform_pv(&mut pv, &mut transforms);
        assert_eq!(pv["spec"]["csi"]["volumeHandle"], moved, "{transforms:?}");
        assert_eq!(crate::bindings::disk_id_of(&pv).as_deref(), Some(moved));
    }

    #[test]
    fn an_explicitly_set_cluster_ip_is_kept_and_an_allocated_one_cleared() {
        let allocated = json!({"metadata": {"name": "a", "managedFields": [
                {"manager": "kubectl-client-side-apply", "fieldsV1": {"f:spec": {"f:ports": {}}}}]},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"]}});
        let managed = json!({"metadata": {"name": "b", "managedFields": [
                {"manager": "kubectl-create", "fieldsV1": {"f:spec": {"f:clusterIP": {}}}}]},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.0.171.239", "clusterIPs": ["10.0.171.239"]}});
        let applied = json!({"metadata": {"name": "c", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"spec\":{\"clusterIP\":\"10.96.5.5\"}}"}},
            "spec": {"clusterIP": "10.96.5.5"}});
        let cases = [
            (
                "allocated",
                allocated.clone(),
                PlanOptions::default(),
                false,
            ),
            ("managed", managed, PlanOptions::default(), true),
            ("last-applied", applied, PlanOptions::default(), true),
            (
                "allocated, --preserve-cluster-ips",
                allocated,
                PlanOptions {
                    preserve_cluster_ips: true,
                    ..Default::default()
                },
                true,
            ),
        ];
        for (name, mut svc, opts, kept) in cases {
            let mut t = Vec::new();
            transform_service(&mut svc, None, &opts, &mut t);
            assert_eq!(
                svc["spec"].get("clusterIP").is_some(),
                kept,
                "{name}: {t:?}"
            );
        }
    }

    #[test]
    fn an_in_tree_volume_rewritten_to_csi_keeps_its_zone_as_node_affinity() {
        // (case, pv, zone the rewritten PV must be pinned to)
        let cases = [
            (
                "zone in the EBS volume id",
                json!({"metadata": {"name": "a"}, "spec": {"awsElasticBlockStore": {"volumeID": "aws://eu-west-1b/vol-1"}}}),
                "eu-west-1b",
            ),
            (
                "zone in the legacy label",
                json!({"metadata": {"name": "b", "labels": {"failure-domain.beta.kubernetes.io/zone": "eu-west-1c"}},
                       "spec": {"awsElasticBlockStore": {"volumeID": "vol-2"}}}),
                "eu-west-1c",
            ),
            (
                "cinder with the GA label",
                json!({"metadata": {"name": "c", "labels": {"topology.kubernetes.io/zone": "nova"}},
                       "spec": {"cinder": {"volumeID": "c-1"}}}),
                "nova",
            ),
        ];
        for (name, mut pv, zone) in cases {
            let mut t = Vec::new();
            transform_pv(&mut pv, &mut t);
            assert!(pv["spec"]["csi"].is_object(), "{name}: rewritten to CSI");
            assert_eq!(
                pv.pointer(
                    "/spec/nodeAffinity/required/nodeSelectorTerms/0/matchExpressions/0/values/0"
                ),
                Some(&json!(zone)),
                "{name}: {t:?}"
            );
        }
    }

    #[test]
    fn a_pvc_is_pre_bound_and_loses_its_binding_annotations() {
        let mut pvc = json!({"metadata": {"name": "c", "annotations": {
            "pv.kubernetes.io/bind-completed": "yes", "volume.kubernetes.io/selected-node": "n1",
            "volume.beta.kubernetes.io/storage-provisioner": "ebs.csi.aws.com", "team": "a"}},
            "spec": {}});
        let mut t = Vec::new();
        transform_pvc(&mut pvc, Some("pv-1"), &mut t);
        assert_eq!(pvc["spec"]["volumeName"], "pv-1");
        assert_eq!(pvc["metadata"]["annotations"], json!({"team": "a"}));
    }

    fn recorded_ip(ip: &str) -> RecordedAddress {
        RecordedAddress {
            namespace: "a".into(),
            name: "s".into(),
            ip: ip.into(),
            allocation_id: None,
            hostnames: vec![],
        }
    }

    #[test]
    fn a_service_loses_cluster_ips_and_auto_node_ports_and_is_pinned_to_its_recorded_address() {
        let mut svc = json!({"metadata": {"name": "s", "namespace": "a", "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{\"spec\":{\"ports\":[{\"name\":\"https\",\"port\":443,\"nodePort\":31443}]}}"}},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
                     "ports": [{"name": "https", "port": 443, "nodePort": 31443}, {"name": "http", "port": 80, "nodePort": 30080}]}});
        let mut t = Vec::new();
        transform_service(
            &mut svc,
            Some(&recorded_ip("203.0.113.7")),
            &PlanOptions::default(),
            &mut t,
        );
        assert!(svc["spec"].get("clusterIP").is_none() && svc["spec"].get("clusterIPs").is_none());
        assert_eq!(
            svc["spec"]["ports"][0]["nodePort"], 31443,
            "explicit node port kept"
        );
        assert!(
            svc["spec"]["ports"][1].get("nodePort").is_none(),
            "auto-assigned node port cleared"
        );
        assert_eq!(svc["spec"]["loadBalancerIP"], "203.0.113.7");
    }

    #[test]
    fn headless_services_keep_cluster_ip_none_and_pinned_services_keep_their_pin() {
        let mut headless = json!({"spec": {"clusterIP": "None", "ports": []}});
        transform_service(
            &mut headless,
            None,
            &PlanOptions::default(),
            &mut Vec::new(),
        );
        assert_eq!(headless["spec"]["clusterIP"], "None");
        let mut pinned = json!({"metadata": {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-eip-allocations": "eipalloc-1"}},
            "spec": {"type": "LoadBalancer"}});
        transform_service(
            &mut pinned,
            Some(&recorded_ip("1.2.3.4")),
            &PlanOptions::default(),
            &mut Vec::new(),
        );
        assert!(
            pinned["spec"].get("loadBalancerIP").is_none(),
            "an existing pin is not overridden"
        );
    }

    #[test]
    fn each_pin_style_uses_its_providers_mechanism() {
        let cases = [
            (
                PinStyle::Metallb,
                "/metadata/annotations/metallb.io~1loadBalancerIPs",
            ),
            (
                PinStyle::Azure,
                "/metadata/annotations/service.beta.kubernetes.io~1azure-load-balancer-ipv4",
            ),
            (PinStyle::LoadBalancerIp, "/spec/loadBalancerIP"),
        ];
        for (style, ptr) in cases {
            let mut svc = json!({"metadata": {}, "spec": {"type": "LoadBalancer"}});
            let opts = PlanOptions {
                pin_style: style,
                ..Default::default()
            };
            transform_service(
                &mut svc,
                Some(&recorded_ip("1.2.3.4")),
                &opts,
                &mut Vec::new(),
            );
            assert_eq!(svc.pointer(ptr), Some(&json!("1.2.3.4")), "{style:?}");
        }
        let mut aws = json!({"metadata": {}, "spec": {"type": "LoadBalancer"}});
        let mut t = Vec::new();
        let opts = PlanOptions {
            pin_style: PinStyle::Aws,
            ..Default::default()
        };
        transform_service(&mut aws, Some(&recorded_ip("1.2.3.4")), &opts, &mut t);
        assert!(
            t.iter().any(|x| x.starts_with("NOT pinned")),
            "no allocation id: reported, not faked"
        );
    }

    #[test]
    fn a_resource_quota_comes_back_without_limits_and_remembers_them() {
        let mut quota = crate::testing::Object::new("v1", "ResourceQuota", Some("web"), "q")
            .spec("hard", json!({"requests.cpu": "1", "limits.memory": "2Gi"}))
            .build();
        let mut transforms = Vec::new();
        park_quota(&mut quota, &mut transforms);
        assert_eq!(quota["spec"]["hard"], json!({}));
        let parked: Value = serde_json::from_str(
            quota["metadata"]["annotations"][ORIGINAL_QUOTA]
                .as_str()
                .expect("parked"),
        )
        .expect("json");
        assert_eq!(parked, json!({"requests.cpu": "1", "limits.memory": "2Gi"}));
        assert_eq!(transforms.len(), 1);
        let mut open = crate::testing::Object::new("v1", "ResourceQuota", Some("web"), "none")
            .spec("hard", json!({}))
            .build();
        park_quota(&mut open, &mut transforms);
        assert!(open["metadata"]["annotations"][ORIGINAL_QUOTA].is_null());
    }

    #[test]
    fn the_plan_restores_operators_at_zero_and_parks_owner_references() {
        let objects = vec![
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "op", "namespace": "k", "labels": {"coldstart.dev/operator": "true"}}, "spec": {"replicas": 2}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "k", "uid": "u", "resourceVersion": "1",
                "ownerReferences": [{"apiVersion": "x/v1", "kind": "X", "name": "o", "uid": "old"}]}, "status": {"a": 1}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "k"}, "spec": {}}),
        ];
        let recorded = Recorded {
            volumes: vec![RecordedVolume {
                pv: "pv-9".into(),
                disk: "vol-9".into(),
                claim: Some(("k".into(), "data".into())),
                from_snapshot: None,
            }],
            addresses: vec![],
            buckets: vec![RecordedBucket {
                kind: "BucketClaim".into(),
                namespace: None,
                name: "x".into(),
                bucket: "b".into(),
            }],
        };
        let p = plan(objects, &recorded, &PlanOptions::default());
        let op = &p.tiers[&Tier::Workloads][0];
        assert!(op.operator);
        assert_eq!(op.object["spec"]["replicas"], 0);
        assert_eq!(op.object["metadata"]["annotations"][ORIGINAL_REPLICAS], "2");
        let secret = &p.tiers[&Tier::Config][0].object;
        assert!(secret["metadata"].get("ownerReferences").is_none());
        assert!(secret["metadata"].get("uid").is_none() && secret.get("status").is_none());
        assert!(
            secret["metadata"]["annotations"][ORIGINAL_OWNERS]
                .as_str()
                .is_some_and(|s| s.contains("old"))
        );
        assert_eq!(
            p.tiers[&Tier::PersistentVolumeClaims][0].object["spec"]["volumeName"],
            "pv-9"
        );
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn each_object_finds_its_own_record_among_records_of_the_same_name() {
        use crate::testing::Object;
        let service = |ns| {
            Object::new("v1", "Service", Some(ns), "s")
                .spec("type", json!("LoadBalancer"))
                .build()
        };
        let claim = |ns| Object::new("v1", "PersistentVolumeClaim", Some(ns), "data").build();
        let objects = vec![
            service("a"),
            service("b"),
            claim("a"),
            claim("b"),
            Object::new(
                "objectstorage.k8s.io/v1alpha1",
                "BucketClaim",
                Some("a"),
                "x",
            )
            .build(),
            Object::new("objectstorage.k8s.io/v1alpha1", "Bucket", None, "x").build(),
        ];
        let address = |ns: &str, ip: &str| RecordedAddress {
            namespace: ns.into(),
            ..recorded_ip(ip)
        };
        let volume = |ns: &str, pv: &str| RecordedVolume {
            pv: pv.into(),
            disk: format!("disk-of-{pv}"),
            claim: Some((ns.into(), "data".into())),
            from_snapshot: None,
        };
        let bucket = |kind: &str, ns: Option<&str>, bucket: &str| RecordedBucket {
            kind: kind.into(),
            namespace: ns.map(str::to_owned),
            name: "x".into(),
            bucket: bucket.into(),
        };
        let recorded = Recorded {
            volumes: vec![
                volume("b", "pv-b"),
                volume("a", "pv-a"),
                volume("a", "pv-later"),
            ],
            addresses: vec![address("b", "192.0.2.2"), address("a", "192.0.2.1")],
            buckets: vec![
                bucket("Bucket", None, "cluster-bucket"),
                bucket("BucketClaim", Some("b"), "other-namespace"),
                bucket("BucketClaim", Some("a"), "claimed-bucket"),
            ],
        };
        let p = plan(objects, &recorded, &PlanOptions::default());
        let field = |tier: Tier, ns: Option<&str>, pointer: &str| {
            let planned = p.tiers[&tier]
                .iter()
                .find(|o| o.namespace.as_deref() == ns)
                .expect("planned");
            planned.object.pointer(pointer).cloned().unwrap_or_default()
        };
        let ip = "/spec/loadBalancerIP";
        assert_eq!(field(Tier::Services, Some("a"), ip), "192.0.2.1");
        assert_eq!(field(Tier::Services, Some("b"), ip), "192.0.2.2");
        let pv = "/spec/volumeName";
        let claims = Tier::PersistentVolumeClaims;
        assert_eq!(
            field(claims, Some("a"), pv),
            "pv-a",
            "the first record counts"
        );
        assert_eq!(field(claims, Some("b"), pv), "pv-b");
        let buckets = Tier::CustomResources;
        assert_eq!(
            field(buckets, Some("a"), "/spec/existingBucketName"),
            "claimed-bucket"
        );
        assert_eq!(
            field(buckets, None, "/spec/existingBucketID"),
            "cluster-bucket"
        );
    }
}
