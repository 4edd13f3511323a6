//! The PV binder and the dynamic provisioner, with Kubernetes' sharp edges kept: a PVC
//! without `volumeName` gets a NEW, empty disk; a PV whose `claimRef.uid` names a claim that
//! no longer exists is `Released`, and with reclaim policy `Delete` its disk is deleted.
//!
//! Beside kube-controller-manager ([`Role::CloudOnly`]) only the provisioner's half runs, as
//! the CSI external-provisioner does: it provisions for a claim that the real PV binder
//! handed to this driver (`volume.kubernetes.io/storage-provisioner`), and deletes the disk
//! of a `Delete` volume it provisioned once the binder has `Released` it (or it is being
//! deleted: its `external-provisioner.volume.kubernetes.io/finalizer` holds it until then).

use serde_json::{Value, json};

use super::{Api, Requeue, Role, set_status, str_at};
use crate::Actor;
use crate::cloud::{CSI_DRIVER, ZONES};
use crate::semantics::UpdateScope;
use crate::status::ApiError;

/// The annotation kube-scheduler puts on a `WaitForFirstConsumer` claim once it has picked
/// the node of the first pod that uses it; provisioning waits for it.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// The node labels a volume's zone is read from: the EBS driver's own topology key (what
/// its CSINode reports and its volumes' node affinity names), then the well-known one.
const ZONE_LABELS: [&str; 2] = [
    "topology.ebs.csi.aws.com/zone",
    "topology.kubernetes.io/zone",
];

/// The finalizer the CSI external-provisioner keeps on the `Delete` volumes it provisioned,
/// so the disk is deleted even when the PV object goes first.
pub const PROVISIONER_FINALIZER: &str = "external-provisioner.volume.kubernetes.io/finalizer";

/// The annotation that named a claim's (or a volume's) class before `storageClassName`
/// existed. Kubernetes still reads it first (`GetPersistentVolumeClaimClass`), and the
/// DefaultStorageClass admission plugin leaves a claim that carries it alone.
pub const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// The class a claim asks for, as Kubernetes reads it: the beta annotation first, then
/// `spec.storageClassName`; `None` when it names none (the default class's to take).
pub fn claim_class(pvc: &Value) -> Option<&str> {
    pvc.pointer("/metadata/annotations")
        .and_then(|a| a.get(BETA_STORAGE_CLASS))
        .or_else(|| pvc.pointer("/spec/storageClassName"))
        .and_then(Value::as_str)
}

/// The class a volume belongs to (`GetPersistentVolumeClass`): "" for none.
pub fn volume_class(pv: &Value) -> &str {
    pv.pointer("/metadata/annotations")
        .and_then(|a| a.get(BETA_STORAGE_CLASS))
        .or_else(|| pv.pointer("/spec/storageClassName"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The dynamic provisioners the simulated cloud runs, as a real cluster has them installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// The EBS CSI driver, also for classes that still name the in-tree
    /// `kubernetes.io/aws-ebs` (CSI migration hands those to it): a new cloud disk a claim.
    CloudDisk,
    /// minikube's storage-provisioner: a directory `/tmp/hostpath-provisioner/<ns>/<claim>`
    /// on the node, no node affinity (minikube has one node).
    MinikubeHostPath,
    /// Rancher's local-path-provisioner (k3s's default class): a directory on the node the
    /// claim's first pod was scheduled to, the volume pinned there by node affinity.
    LocalPath,
}

impl Served {
    fn by(provisioner: &str) -> Option<Served> {
        match provisioner {
            CSI_DRIVER | "kubernetes.io/aws-ebs" => Some(Served::CloudDisk),
            "k8s.io/minikube-hostpath" => Some(Served::MinikubeHostPath),
            "rancher.io/local-path" => Some(Served::LocalPath),
            _ => None,
        }
    }

    /// The name it provisions under (`volume.kubernetes.io/storage-provisioner`,
    /// `pv.kubernetes.io/provisioned-by`).
    fn name(self) -> &'static str {
        match self {
            Served::CloudDisk => CSI_DRIVER,
            Served::MinikubeHostPath => "k8s.io/minikube-hostpath",
            Served::LocalPath => "rancher.io/local-path",
        }
    }

    fn actor(self) -> Actor {
        match self {
            Served::CloudDisk => provisioner(),
            Served::MinikubeHostPath => {
                Actor::system("system:serviceaccount:kube-system:storage-provisioner")
            }
            Served::LocalPath => Actor::system(
                "system:serviceaccount:local-path-storage:local-path-provisioner-service-account",
            ),
        }
    }
}

fn binder() -> Actor {
    Actor::system("system:serviceaccount:kube-system:persistent-volume-binder")
}

fn provisioner() -> Actor {
    Actor::system("system:serviceaccount:kube-system:ebs-csi-controller-sa")
}

/// `10Gi` → 10; anything unparseable counts as 1 GiB.
pub fn gib(q: &str) -> u64 {
    let q = q.trim();
    let (num, mult) = if let Some(n) = q.strip_suffix("Ti") {
        (n, 1024.0)
    } else if let Some(n) = q.strip_suffix("Gi") {
        (n, 1.0)
    } else if let Some(n) = q.strip_suffix("Mi") {
        (n, 1.0 / 1024.0)
    } else if let Some(n) = q.strip_suffix('G') {
        (n, 1e9 / 1073741824.0)
    } else {
        (q, 1.0 / 1073741824.0)
    };
    let v: f64 = num.parse().unwrap_or(1.0);
    ((v * mult).ceil() as u64).max(1)
}

fn default_storage_class(sim: &dyn Api) -> Result<Option<Value>, ApiError> {
    Ok(sim
        .list("storage.k8s.io", "storageclasses")?
        .into_iter()
        .find(|sc| {
            str_at(
                sc,
                "/metadata/annotations/storageclass.kubernetes.io~1is-default-class",
            ) == Some("true")
        }))
}

/// The disk id behind a PV (CSI handle, or an in-tree EBS volume id).
pub fn disk_of(pv: &Value) -> Option<String> {
    str_at(pv, "/spec/csi/volumeHandle")
        .or_else(|| str_at(pv, "/spec/awsElasticBlockStore/volumeID"))
        .map(|h| {
            // An Azure disk is known by its whole resource id: its resource group is part
            // of where it lives (and what deleting an AKS cluster takes).
            if crate::cloud::resource_group_of(h).is_some() {
                h.to_owned()
            } else {
                h.rsplit('/').next().unwrap_or(h).to_owned()
            }
        })
}

pub fn reconcile_pvc(sim: &dyn Api, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    let Some(pvc) = sim.get("", "persistentvolumeclaims", ns, name)? else {
        return Ok(Requeue::No);
    };
    if pvc.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(Requeue::No);
    }
    let uid = str_at(&pvc, "/metadata/uid").unwrap_or_default().to_owned();
    let phase = str_at(&pvc, "/status/phase").unwrap_or("Pending");
    if phase == "Bound" {
        return Ok(Requeue::No);
    }
    if sim.role() == Role::CloudOnly {
        return provision_as_external_provisioner(sim, &pvc, ns, name, &uid);
    }
    if let Some(vn) = str_at(&pvc, "/spec/volumeName").filter(|v| !v.is_empty()) {
        let Some(pv) = sim.get("", "persistentvolumes", "", vn)? else {
            return Ok(Requeue::No); // the PV's creation will requeue this claim
        };
        return bind_if_compatible(sim, &pvc, &pv, &uid);
    }
    // A PV pre-bound to this claim (claimRef names it, uid empty or ours) wins.
    if let Some(pv) = sim.list("", "persistentvolumes")?.into_iter().find(|pv| {
        str_at(pv, "/spec/claimRef/namespace") == Some(ns)
            && str_at(pv, "/spec/claimRef/name") == Some(name)
            && str_at(pv, "/spec/claimRef/uid").is_none_or(|u| u.is_empty() || u == uid)
            && str_at(pv, "/status/phase") != Some("Released")
    }) {
        return bind_if_compatible(sim, &pvc, &pv, &uid);
    }
    // kube-controller-manager's binder looks for an available volume that fits before the
    // class's provisioner gets the claim (its FindMatchingVolume): a static PV of the
    // claim's class binds whether or not a StorageClass of that name exists.
    if let Some(pv) = matching_available_volume(sim, &pvc)? {
        return bind_if_compatible(sim, &pvc, &pv, &uid);
    }
    provision(sim, &pvc, ns, name, &uid)
}

/// The smallest available volume a claim naming none can bind: unclaimed, not going away,
/// of the claim's class, offering its access modes and volume mode, as large as it asks, and
/// matching its label selector (`matchLabels`).
fn matching_available_volume(sim: &dyn Api, pvc: &Value) -> Result<Option<Value>, ApiError> {
    let class = claim_class(pvc).unwrap_or("");
    let mode = str_at(pvc, "/spec/volumeMode").unwrap_or("Filesystem");
    let want = str_at(pvc, "/spec/resources/requests/storage")
        .map(gib)
        .unwrap_or(1);
    let modes = |o: &Value| -> Vec<String> {
        o.pointer("/spec/accessModes")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let wanted_modes = modes(pvc);
    let selector = pvc
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let fits = |pv: &Value| {
        let offered = modes(pv);
        pv.pointer("/spec/claimRef").is_none()
            && pv.pointer("/metadata/deletionTimestamp").is_none()
            && str_at(pv, "/status/phase").is_none_or(|p| p == "Available" || p == "Pending")
            && volume_class(pv) == class
            && str_at(pv, "/spec/volumeMode").unwrap_or("Filesystem") == mode
            && wanted_modes.iter().all(|m| offered.contains(m))
            && str_at(pv, "/spec/capacity/storage").map(gib).unwrap_or(0) >= want
            && selector
                .iter()
                .all(|(k, v)| pv.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
    };
    Ok(sim
        .list("", "persistentvolumes")?
        .into_iter()
        .filter(fits)
        .min_by_key(|pv| str_at(pv, "/spec/capacity/storage").map(gib).unwrap_or(0)))
}

fn bind_if_compatible(
    sim: &dyn Api,
    pvc: &Value,
    pv: &Value,
    uid: &str,
) -> Result<Requeue, ApiError> {
    let ns = str_at(pvc, "/metadata/namespace").unwrap_or_default();
    let name = str_at(pvc, "/metadata/name").unwrap_or_default();
    let pv_name = str_at(pv, "/metadata/name").unwrap_or_default();
    if let Some(cr_name) = str_at(pv, "/spec/claimRef/name") {
        let other = cr_name != name || str_at(pv, "/spec/claimRef/namespace") != Some(ns);
        let stale = str_at(pv, "/spec/claimRef/uid").is_some_and(|u| !u.is_empty() && u != uid);
        if other || stale {
            // Bound (or once bound) to another claim: this claim waits, as in Kubernetes.
            return Ok(Requeue::No);
        }
    }
    if str_at(pv, "/status/phase") == Some("Released") {
        return Ok(Requeue::No);
    }
    let want = str_at(pvc, "/spec/resources/requests/storage")
        .map(gib)
        .unwrap_or(1);
    let have = str_at(pv, "/spec/capacity/storage").map(gib).unwrap_or(0);
    if have < want {
        return Ok(Requeue::No);
    }
    // PV side first: claimRef with the claim's uid, then Bound.
    sim.merge_patch(
        "",
        "persistentvolumes",
        "",
        pv_name,
        &json!({"spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
            "namespace": ns, "name": name, "uid": uid}}}),
        &binder(),
    )?;
    if let Some(pv) = sim.get("", "persistentvolumes", "", pv_name)? {
        set_status(
            sim,
            "",
            "persistentvolumes",
            &pv,
            json!({"phase": "Bound"}),
            &binder(),
        )?;
    }
    let mut pvc_patch =
        json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}}});
    if str_at(pvc, "/spec/volumeName").is_none_or(str::is_empty) {
        pvc_patch["spec"] = json!({"volumeName": pv_name});
        pvc_patch["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] = json!("yes");
    }
    sim.merge_patch(
        "",
        "persistentvolumeclaims",
        ns,
        name,
        &pvc_patch,
        &binder(),
    )?;
    if let Some(pvc) = sim.get("", "persistentvolumeclaims", ns, name)? {
        let status = json!({
            "phase": "Bound",
            "accessModes": pv.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
            "capacity": pv.pointer("/spec/capacity").cloned().unwrap_or(json!({})),
        });
        set_status(sim, "", "persistentvolumeclaims", &pvc, status, &binder())?;
    }
    Ok(Requeue::No)
}

/// The external-provisioner's test for a claim: no volume chosen, and the PV binder found no
/// existing volume and handed it to this driver. Its volume is `pvc-<claim uid>`, so a claim
/// whose volume exists already (not yet bound) gets no second disk.
fn provision_as_external_provisioner(
    sim: &dyn Api,
    pvc: &Value,
    ns: &str,
    name: &str,
    uid: &str,
) -> Result<Requeue, ApiError> {
    let handed_over = [
        "/metadata/annotations/volume.kubernetes.io~1storage-provisioner",
        "/metadata/annotations/volume.beta.kubernetes.io~1storage-provisioner",
    ]
    .iter()
    .any(|p| str_at(pvc, p).and_then(Served::by).is_some());
    if !handed_over || str_at(pvc, "/spec/volumeName").is_some_and(|v| !v.is_empty()) {
        return Ok(Requeue::No);
    }
    if sim
        .get("", "persistentvolumes", "", &format!("pvc-{uid}"))?
        .is_some()
    {
        return Ok(Requeue::No);
    }
    provision(sim, pvc, ns, name, uid)
}

/// The class a claim is provisioned by.
enum Class {
    /// `storageClassName: ""`: only an existing volume binds it.
    Static,
    /// Named (or defaulted) but not there (yet).
    Missing,
    Dynamic(Value),
}

fn class_of(sim: &dyn Api, pvc: &Value) -> Result<Class, ApiError> {
    let sc = match claim_class(pvc) {
        Some("") => return Ok(Class::Static),
        Some(name) => sim.get("storage.k8s.io", "storageclasses", "", name)?,
        None => default_storage_class(sim)?,
    };
    Ok(sc.map_or(Class::Missing, Class::Dynamic))
}

fn scheduler() -> Actor {
    Actor::system("system:kube-scheduler")
}

/// kube-scheduler's volume binding, played on the embedded server (beside a real control
/// plane kube-scheduler does it): a pod whose claims wait for their first consumer is
/// given a node (its own, or the first whose labels its `nodeSelector` asks for) and each
/// such claim is annotated with it, which lets provisioning go ahead in that node's zone.
pub fn reconcile_pod(sim: &dyn Api, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    if sim.role() == Role::CloudOnly {
        return Ok(Requeue::No);
    }
    let Some(pod) = sim.get("", "pods", ns, name)? else {
        return Ok(Requeue::No);
    };
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(Requeue::No);
    }
    match bind_waiting_claims(sim, ns, &pod)? {
        Scheduled::Nothing => Ok(Requeue::No),
        Scheduled::Retry => Ok(Requeue::After(super::RETRY)),
        Scheduled::On(node) => {
            if str_at(&pod, "/spec/nodeName").is_none_or(str::is_empty) {
                sim.merge_patch(
                    "",
                    "pods",
                    ns,
                    name,
                    &json!({"spec": {"nodeName": node}}),
                    &scheduler(),
                )?;
            }
            Ok(Requeue::No)
        }
    }
}

/// What kube-scheduler's volume binding did for a pod.
pub(crate) enum Scheduled {
    /// No claim of the pod waits for its first consumer.
    Nothing,
    /// The waiting claims were annotated with this node, the pod's.
    On(String),
    /// A claim or a fitting node does not exist yet.
    Retry,
}

/// kube-scheduler's volume binding for one pod (or a controller's pod template with its
/// `spec.nodeName`): each of its claims that waits for its first consumer is annotated with
/// the pod's node (`spec.nodeName`, else the first fitting node), which lets provisioning
/// go ahead in that node's zone.
pub(crate) fn bind_waiting_claims(
    sim: &dyn Api,
    ns: &str,
    pod: &Value,
) -> Result<Scheduled, ApiError> {
    let claims: Vec<&str> = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| str_at(v, "/persistentVolumeClaim/claimName"))
        .collect();
    let mut waiting = Vec::new();
    for claim in claims {
        let Some(pvc) = sim.get("", "persistentvolumeclaims", ns, claim)? else {
            // The scheduler waits for a pod's claims to exist.
            return Ok(Scheduled::Retry);
        };
        if str_at(&pvc, "/spec/volumeName").is_some_and(|v| !v.is_empty())
            || selected_node(&pvc).is_some()
        {
            continue;
        }
        if let Class::Dynamic(sc) = class_of(sim, &pvc)?
            && str_at(&sc, "/volumeBindingMode") == Some("WaitForFirstConsumer")
        {
            waiting.push(claim);
        }
    }
    if waiting.is_empty() {
        return Ok(Scheduled::Nothing);
    }
    let node = match str_at(pod, "/spec/nodeName").filter(|n| !n.is_empty()) {
        Some(n) => Some(n.to_owned()),
        None => first_fitting_node(sim, pod)?,
    };
    let Some(node) = node else {
        return Ok(Scheduled::Retry);
    };
    for claim in waiting {
        sim.merge_patch(
            "",
            "persistentvolumeclaims",
            ns,
            claim,
            &json!({"metadata": {"annotations": {SELECTED_NODE: node}}}),
            &scheduler(),
        )?;
    }
    Ok(Scheduled::On(node))
}

/// The first node, by name, carrying every label the pod's `nodeSelector` asks for.
fn first_fitting_node(sim: &dyn Api, pod: &Value) -> Result<Option<String>, ApiError> {
    let wanted = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<String> = sim
        .list("", "nodes")?
        .iter()
        .filter(|n| {
            wanted
                .iter()
                .all(|(k, v)| n.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
        })
        .filter_map(|n| str_at(n, "/metadata/name").map(str::to_owned))
        .collect();
    names.sort();
    Ok(names.into_iter().next())
}

/// Where a claim's new disk goes, as the CSI external-provisioner decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placement {
    Zone(String),
    /// A `WaitForFirstConsumer` claim no pod has been scheduled with yet: nothing to do
    /// until kube-scheduler annotates it (that change requeues the claim).
    WaitForNode,
    /// The selected node is not (or no longer) there: try again.
    NodeGone,
}

/// The node kube-scheduler picked for a claim, if it has.
pub(crate) fn selected_node(pvc: &Value) -> Option<&str> {
    pvc.pointer("/metadata/annotations")
        .and_then(|a| a.get(SELECTED_NODE))
        .and_then(Value::as_str)
}

fn node_zone(node: &Value) -> Option<String> {
    let labels = node.pointer("/metadata/labels")?;
    ZONE_LABELS
        .iter()
        .find_map(|l| labels.get(*l).and_then(Value::as_str))
        .map(str::to_owned)
}

/// The zone of a claim's disk. With a node selected (`WaitForFirstConsumer`, after
/// scheduling) it is that node's zone, the accessibility requirement external-provisioner
/// builds from the node's topology labels; a `WaitForFirstConsumer` claim without one
/// waits; an `Immediate` one goes where the class says (`parameters.zone`, else its first
/// allowed zone), else to a zone its uid picks.
fn placement(sc: &Value, pvc: &Value, node: Option<&Value>, uid: &str) -> Placement {
    if selected_node(pvc).is_some() {
        return match node.and_then(node_zone) {
            Some(z) => Placement::Zone(z),
            None => Placement::NodeGone,
        };
    }
    if str_at(sc, "/volumeBindingMode") == Some("WaitForFirstConsumer") {
        return Placement::WaitForNode;
    }
    let allowed = sc
        .pointer("/allowedTopologies/0/matchLabelExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| str_at(e, "/key").is_some_and(|k| ZONE_LABELS.contains(&k)))
        .and_then(|e| str_at(e, "/values/0"));
    let zone = str_at(sc, "/parameters/zone")
        .or(allowed)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            ZONES[uid.bytes().map(usize::from).sum::<usize>() % ZONES.len()].to_owned()
        });
    Placement::Zone(zone)
}

/// Dynamic provisioning by the class's provisioner, when the simulated cloud runs it: a
/// NEW disk (or node directory) and a PV for it.
fn provision(
    sim: &dyn Api,
    pvc: &Value,
    ns: &str,
    name: &str,
    uid: &str,
) -> Result<Requeue, ApiError> {
    let sc = match class_of(sim, pvc)? {
        Class::Static => return Ok(Requeue::No),
        Class::Missing => return Ok(Requeue::After(super::RETRY)),
        Class::Dynamic(sc) => sc,
    };
    // A provisioner nobody runs leaves the claim Pending, as in any cluster.
    let Some(served) = str_at(&sc, "/provisioner").and_then(Served::by) else {
        return Ok(Requeue::No);
    };
    let node = match selected_node(pvc) {
        Some(n) => sim.get("", "nodes", "", n)?,
        None => None,
    };
    let reclaim = str_at(&sc, "/reclaimPolicy").unwrap_or("Delete");
    let volume = match served {
        Served::CloudDisk => {
            let zone = match placement(&sc, pvc, node.as_ref(), uid) {
                Placement::Zone(z) => z,
                Placement::WaitForNode => return Ok(Requeue::No),
                Placement::NodeGone => return Ok(Requeue::After(super::RETRY)),
            };
            let size = str_at(pvc, "/spec/resources/requests/storage")
                .map(gib)
                .unwrap_or(1);
            let disk = sim.cloud().lock().create_disk(
                &zone,
                size,
                "",
                &format!("dynamically provisioned for PVC {ns}/{name} (no spec.volumeName)"),
            );
            json!({
                "capacity": {"storage": format!("{size}Gi")},
                "csi": {"driver": CSI_DRIVER, "volumeHandle": disk.id, "fsType": "ext4"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": [zone]}]}]}},
            })
        }
        Served::MinikubeHostPath => json!({
            "capacity": {"storage": requested(pvc)},
            "hostPath": {"path": format!("/tmp/hostpath-provisioner/{ns}/{name}"), "type": ""},
        }),
        Served::LocalPath => {
            // It provisions on the node kube-scheduler picked, and refuses a claim without
            // one ("no node was specified"): its class waits for the first consumer.
            let host = match (selected_node(pvc), &node) {
                (None, _) => return Ok(Requeue::No),
                (Some(_), None) => return Ok(Requeue::After(super::RETRY)),
                (Some(n), Some(node)) => str_at(node, "/metadata/labels/kubernetes.io~1hostname")
                    .unwrap_or(n)
                    .to_owned(),
            };
            json!({
                "capacity": {"storage": requested(pvc)},
                "hostPath": {"path": format!("/opt/local-path-provisioner/pvc-{uid}_{ns}_{name}"),
                             "type": "DirectoryOrCreate"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}},
            })
        }
    };
    let mut finalizers = vec![json!("kubernetes.io/pv-protection")];
    if sim.role() == Role::CloudOnly && reclaim == "Delete" && served == Served::CloudDisk {
        finalizers.push(json!(PROVISIONER_FINALIZER));
    }
    let mut annotations = json!({"pv.kubernetes.io/provisioned-by": served.name()});
    match served {
        Served::CloudDisk => {
            annotations["volume.kubernetes.io/provisioner-deletion-secret-name"] = json!("");
        }
        Served::MinikubeHostPath => {
            annotations["hostPathProvisionerIdentity"] = json!(HOST_PATH_IDENTITY);
        }
        Served::LocalPath => {}
    }
    let mut spec = json!({
        "accessModes": pvc.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
        "persistentVolumeReclaimPolicy": reclaim,
        "storageClassName": str_at(&sc, "/metadata/name").unwrap_or_default(),
        "volumeMode": str_at(pvc, "/spec/volumeMode").unwrap_or("Filesystem"),
        "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns, "name": name, "uid": uid},
    });
    if let (Some(spec), Value::Object(source)) = (spec.as_object_mut(), volume) {
        spec.extend(source);
    }
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("pvc-{uid}"), "annotations": annotations, "finalizers": finalizers},
        "spec": spec,
    });
    sim.create("", "persistentvolumes", "", pv, &served.actor())?;
    if sim.role() == Role::CloudOnly {
        // The PV binder annotated the claim already and binds it to the new volume.
        return Ok(Requeue::No);
    }
    sim.merge_patch(
        "",
        "persistentvolumeclaims",
        ns,
        name,
        &json!({"metadata": {"annotations": {
            "volume.kubernetes.io/storage-provisioner": served.name(),
            "volume.beta.kubernetes.io/storage-provisioner": served.name()}}}),
        &served.actor(),
    )?;
    Ok(Requeue::After(super::RETRY))
}

/// minikube's provisioner stamps its volumes with its own identity and deletes only those.
const HOST_PATH_IDENTITY: &str = "coldstart-sim-storage-provisioner";

/// A node-directory provisioner's capacity: the claim's request as written.
fn requested(pvc: &Value) -> Value {
    pvc.pointer("/spec/resources/requests/storage")
        .cloned()
        .unwrap_or(json!("1Gi"))
}

pub fn reconcile_pv(sim: &dyn Api, name: &str) -> Result<Requeue, ApiError> {
    let Some(pv) = sim.get("", "persistentvolumes", "", name)? else {
        return Ok(Requeue::No);
    };
    if sim.role() == Role::CloudOnly {
        return reclaim_as_external_provisioner(sim, &pv);
    }
    let phase = str_at(&pv, "/status/phase").unwrap_or("Pending");
    if pv.pointer("/metadata/deletionTimestamp").is_some() {
        // pv-protection: released once no claim uses it.
        if phase != "Bound" {
            let mut next = pv.clone();
            if let Some(f) = next
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                f.retain(|x| x != "kubernetes.io/pv-protection");
            }
            sim.update(
                "",
                "persistentvolumes",
                "",
                next,
                UpdateScope::Main,
                &binder(),
            )?;
        }
        return Ok(Requeue::No);
    }
    let claim_uid = str_at(&pv, "/spec/claimRef/uid").filter(|u| !u.is_empty());
    let target = match (
        claim_uid,
        str_at(&pv, "/spec/claimRef/namespace"),
        str_at(&pv, "/spec/claimRef/name"),
    ) {
        (None, _, _) => "Available",
        (Some(uid), Some(cns), Some(cname)) => {
            let claim = sim.get("", "persistentvolumeclaims", cns, cname)?;
            match claim {
                Some(c) if str_at(&c, "/metadata/uid") == Some(uid) => {
                    if phase == "Bound" {
                        "Bound"
                    } else {
                        "Available"
                    }
                }
                // The claim it was bound to is gone (or is a different object now).
                _ => "Released",
            }
        }
        _ => "Available",
    };
    if target != phase {
        set_status(
            sim,
            "",
            "persistentvolumes",
            &pv,
            json!({"phase": target}),
            &binder(),
        )?;
    }
    if target == "Released" && str_at(&pv, "/spec/persistentVolumeReclaimPolicy") == Some("Delete")
    {
        // The provisioner reclaims: the disk goes, then the PV.
        if let Some(disk) = disk_of(&pv) {
            let cause = format!(
                "reclaim policy Delete: PV {name} released (its claim {}/{} with uid {} no longer exists)",
                str_at(&pv, "/spec/claimRef/namespace").unwrap_or(""),
                str_at(&pv, "/spec/claimRef/name").unwrap_or(""),
                claim_uid.unwrap_or("")
            );
            let mut cloud = sim.cloud().lock();
            if cloud
                .disks
                .get(&disk)
                .is_some_and(|d| d.attached_to.is_some())
            {
                return Ok(Requeue::After(super::RETRY));
            }
            let _ = cloud.delete_disk(&disk, &cause);
        }
        let mut next = pv.clone();
        if let Some(m) = next.pointer_mut("/metadata").and_then(Value::as_object_mut) {
            m.remove("finalizers");
        }
        let _ = sim.update(
            "",
            "persistentvolumes",
            "",
            next,
            UpdateScope::Main,
            &provisioner(),
        );
        let _ = sim.delete("", "persistentvolumes", "", name, &provisioner());
    }
    Ok(Requeue::No)
}

/// The external-provisioner's half of reclaiming: a `Delete` volume this driver provisioned
/// loses its disk once the PV binder has `Released` it, then the PV object goes; one being
/// deleted keeps [`PROVISIONER_FINALIZER`] until its disk is gone. A disk still attached
/// waits for the attacher, as the CSI driver's DeleteVolume fails on an attached volume.
fn reclaim_as_external_provisioner(sim: &dyn Api, pv: &Value) -> Result<Requeue, ApiError> {
    let name = str_at(pv, "/metadata/name").unwrap_or_default();
    let ours = str_at(pv, "/metadata/annotations/pv.kubernetes.io~1provisioned-by")
        .and_then(Served::by)
        .is_some()
        || str_at(pv, "/spec/csi/driver") == Some(CSI_DRIVER);
    let delete_policy = str_at(pv, "/spec/persistentVolumeReclaimPolicy") == Some("Delete");
    let deleting = pv.pointer("/metadata/deletionTimestamp").is_some();
    let released = str_at(pv, "/status/phase") == Some("Released");
    let finalized = pv
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == PROVISIONER_FINALIZER));
    if !ours || !delete_policy || !(released || (deleting && finalized)) {
        return Ok(Requeue::No);
    }
    if let Some(disk) = disk_of(pv) {
        let mut cloud = sim.cloud().lock();
        if cloud
            .disks
            .get(&disk)
            .is_some_and(|d| d.attached_to.is_some())
        {
            return Ok(Requeue::After(super::RETRY));
        }
        let cause = format!(
            "reclaim policy Delete: PV {name} released by the PV binder (its claim {}/{} is gone)",
            str_at(pv, "/spec/claimRef/namespace").unwrap_or(""),
            str_at(pv, "/spec/claimRef/name").unwrap_or(""),
        );
        // Already gone is what deleting wanted.
        let _ = cloud.delete_disk(&disk, &cause);
    }
    if !deleting {
        sim.delete("", "persistentvolumes", "", name, &provisioner())?;
    }
    if finalized {
        let Some(mut next) = sim.get("", "persistentvolumes", "", name)? else {
            return Ok(Requeue::No);
        };
        if let Some(f) = next
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|x| x != PROVISIONER_FINALIZER);
        }
        sim.update(
            "",
            "persistentvolumes",
            "",
            next,
            UpdateScope::Main,
            &provisioner(),
        )?;
    }
    Ok(Requeue::No)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Sim, SimConfig};

    /// The namespace `db` every scenario here puts its claim in.
    fn namespace_db(api: &dyn Api) {
        api.create(
            "",
            "namespaces",
            "",
            json!({"metadata": {"name": "db"}}),
            &Actor::admin(),
        )
        .expect("namespace");
    }

    /// A cluster beside kube-controller-manager with the `gp3` class of the EBS CSI driver
    /// and a claim of it.
    fn cluster_with_claim(handed_to_driver: bool) -> (std::sync::Arc<Sim>, String) {
        let sim = Sim::beside_kcm();
        let admin = Actor::admin();
        let api: &dyn Api = sim.as_ref();
        namespace_db(api);
        api.create(
            "storage.k8s.io",
            "storageclasses",
            "",
            json!({"metadata": {"name": "gp3"}, "provisioner": CSI_DRIVER, "reclaimPolicy": "Delete"}),
            &admin,
        )
        .expect("class");
        let mut pvc = json!({"metadata": {"name": "data", "namespace": "db"},
            "spec": {"storageClassName": "gp3", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "5Gi"}}}});
        if handed_to_driver {
            pvc["metadata"]["annotations"] =
                json!({"volume.kubernetes.io/storage-provisioner": CSI_DRIVER});
        }
        let pvc = api
            .create("", "persistentvolumeclaims", "db", pvc, &admin)
            .expect("claim");
        let uid = str_at(&pvc, "/metadata/uid").expect("uid").to_owned();
        (sim, uid)
    }

    #[test]
    fn beside_the_real_binder_a_claim_handed_to_the_driver_gets_one_new_disk_however_often_it_is_reconciled()
     {
        let (sim, uid) = cluster_with_claim(true);
        let api: &dyn Api = sim.as_ref();
        for _ in 0..3 {
            reconcile_pvc(api, "db", "data").expect("reconcile");
        }
        assert_eq!(sim.cloud.lock().disks.len(), 1);
        let pv = Api::get(
            sim.as_ref(),
            "",
            "persistentvolumes",
            "",
            &format!("pvc-{uid}"),
        )
        .expect("get")
        .expect("the provisioned volume");
        assert_eq!(str_at(&pv, "/spec/claimRef/uid"), Some(uid.as_str()));
        assert!(
            pv["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == PROVISIONER_FINALIZER)),
            "{pv:#}"
        );
        let pvc = Api::get(sim.as_ref(), "", "persistentvolumeclaims", "db", "data")
            .expect("get")
            .expect("claim");
        assert_eq!(
            pvc.pointer("/spec/volumeName"),
            None,
            "binding is the real binder's"
        );
    }

    #[test]
    fn a_claim_naming_no_volume_binds_the_smallest_fitting_static_volume_and_provisions_nothing() {
        // No StorageClass `manual` exists: only a static volume can satisfy the claim.
        let sim = cluster_with_classes(
            &[],
            json!({"spec": {"storageClassName": "manual",
                            "resources": {"requests": {"storage": "5Gi"}}}}),
        );
        let admin = Actor::admin();
        let api: &dyn Api = sim.as_ref();
        let static_pv = |name: &str, class: &str, size: &str| {
            json!({"metadata": {"name": name},
                   "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                            "capacity": {"storage": size},
                            "hostPath": {"path": format!("/data/{name}")}}})
        };
        for pv in [
            static_pv("too-small", "manual", "1Gi"),
            static_pv("large", "manual", "20Gi"),
            static_pv("fits", "manual", "10Gi"),
            static_pv("other-class", "slow", "10Gi"),
        ] {
            api.create("", "persistentvolumes", "", pv, &admin)
                .expect("pv");
        }
        reconcile_pvc(api, "db", "data").expect("reconcile");
        let pv = Api::get(api, "", "persistentvolumes", "", "fits")
            .expect("get")
            .expect("pv");
        assert_eq!(str_at(&pv, "/spec/claimRef/name"), Some("data"), "{pv:#}");
        assert!(sim.cloud.lock().disks.is_empty(), "nothing was provisioned");
        for other in ["too-small", "large", "other-class"] {
            let pv = Api::get(api, "", "persistentvolumes", "", other)
                .expect("get")
                .expect("pv");
            assert!(pv.pointer("/spec/claimRef").is_none(), "{other} stays free");
        }
    }

    /// An embedded cluster with namespace `db`, these StorageClasses and a claim `db/data`
    /// of 1Gi with these annotations and spec fields.
    fn cluster_with_classes(classes: &[Value], claim: Value) -> std::sync::Arc<Sim> {
        let sim = Sim::new(SimConfig::default());
        let admin = Actor::admin();
        let api: &dyn Api = sim.as_ref();
        namespace_db(api);
        for sc in classes {
            api.create("storage.k8s.io", "storageclasses", "", sc.clone(), &admin)
                .expect("class");
        }
        let mut pvc = json!({"metadata": {"name": "data", "namespace": "db"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        for (part, fields) in claim.as_object().into_iter().flatten() {
            for (k, v) in fields.as_object().into_iter().flatten() {
                pvc[part][k] = v.clone();
            }
        }
        api.create("", "persistentvolumeclaims", "db", pvc, &admin)
            .expect("claim");
        sim
    }

    fn class(name: &str, provisioner: &str, extra: Value) -> Value {
        let mut sc = json!({"metadata": {"name": name}, "provisioner": provisioner, "reclaimPolicy": "Delete"});
        for (k, v) in extra.as_object().into_iter().flatten() {
            sc[k] = v.clone();
        }
        sc
    }

    fn default_gp3() -> Value {
        class(
            "gp3",
            CSI_DRIVER,
            json!({"metadata": {"name": "gp3", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}),
        )
    }

    fn claim(api: &dyn Api) -> Value {
        Api::get(api, "", "persistentvolumeclaims", "db", "data")
            .expect("get")
            .expect("claim")
    }

    fn its_volume(api: &dyn Api, pvc: &Value) -> Option<Value> {
        let uid = str_at(pvc, "/metadata/uid").expect("uid");
        Api::get(api, "", "persistentvolumes", "", &format!("pvc-{uid}")).expect("get")
    }

    #[test]
    fn a_claim_naming_no_class_is_given_the_default_one_at_creation() {
        let sim = cluster_with_classes(&[default_gp3()], json!({}));
        assert_eq!(
            str_at(&claim(sim.as_ref()), "/spec/storageClassName"),
            Some("gp3")
        );
    }

    #[test]
    fn a_claim_naming_its_class_by_the_beta_annotation_is_provisioned_by_that_class_and_not_the_default()
     {
        let sim = cluster_with_classes(
            &[
                default_gp3(),
                class("fast", "k8s.io/minikube-hostpath", json!({})),
            ],
            json!({"metadata": {"annotations": {BETA_STORAGE_CLASS: "fast"}}}),
        );
        let api: &dyn Api = sim.as_ref();
        let pvc = claim(api);
        assert_eq!(
            pvc.pointer("/spec/storageClassName"),
            None,
            "the DefaultStorageClass plugin leaves an annotated claim alone"
        );
        reconcile_pvc(api, "db", "data").expect("reconcile");
        let pv = its_volume(api, &pvc).expect("provisioned");
        assert_eq!(
            str_at(&pv, "/spec/hostPath/path"),
            Some("/tmp/hostpath-provisioner/db/data")
        );
        assert_eq!(
            str_at(
                &pv,
                "/metadata/annotations/pv.kubernetes.io~1provisioned-by"
            ),
            Some("k8s.io/minikube-hostpath")
        );
        assert_eq!(str_at(&pv, "/spec/storageClassName"), Some("fast"));
        assert!(sim.cloud.lock().disks.is_empty(), "no cloud disk: {pv:#}");
    }

    #[test]
    fn a_class_whose_provisioner_nobody_runs_leaves_its_claim_pending() {
        let sim = cluster_with_classes(
            &[default_gp3(), class("nas", "example.com/nfs", json!({}))],
            json!({"spec": {"storageClassName": "nas"}}),
        );
        let api: &dyn Api = sim.as_ref();
        reconcile_pvc(api, "db", "data").expect("reconcile");
        assert_eq!(its_volume(api, &claim(api)), None);
        assert!(sim.cloud.lock().disks.is_empty());
    }

    #[test]
    fn local_path_provisions_only_on_the_selected_node_and_pins_the_volume_to_it() {
        let sim = cluster_with_classes(
            &[class(
                "local-path",
                "rancher.io/local-path",
                json!({"volumeBindingMode": "WaitForFirstConsumer"}),
            )],
            json!({"spec": {"storageClassName": "local-path"}}),
        );
        let api: &dyn Api = sim.as_ref();
        let admin = Actor::admin();
        api.create(
            "",
            "nodes",
            "",
            json!({"metadata": {"name": "worker-1", "labels": {"kubernetes.io/hostname": "worker-1"}}}),
            &admin,
        )
        .expect("node");
        reconcile_pvc(api, "db", "data").expect("reconcile");
        assert_eq!(its_volume(api, &claim(api)), None, "waits for a node");
        api.merge_patch(
            "",
            "persistentvolumeclaims",
            "db",
            "data",
            &json!({"metadata": {"annotations": {SELECTED_NODE: "worker-1"}}}),
            &admin,
        )
        .expect("select");
        reconcile_pvc(api, "db", "data").expect("reconcile");
        let pvc = claim(api);
        let uid = str_at(&pvc, "/metadata/uid").expect("uid").to_owned();
        let pv = its_volume(api, &pvc).expect("provisioned");
        assert_eq!(
            str_at(&pv, "/spec/hostPath/path"),
            Some(format!("/opt/local-path-provisioner/pvc-{uid}_db_data").as_str())
        );
        assert_eq!(
            pv.pointer("/spec/nodeAffinity/required/nodeSelectorTerms/0/matchExpressions/0"),
            Some(
                &json!({"key": "kubernetes.io/hostname", "operator": "In", "values": ["worker-1"]})
            )
        );
    }

    #[test]
    fn beside_the_real_binder_a_claim_not_handed_to_the_driver_gets_no_disk() {
        let (sim, _) = cluster_with_claim(false);
        reconcile_pvc(sim.as_ref(), "db", "data").expect("reconcile");
        assert!(sim.cloud.lock().disks.is_empty());
    }

    #[test]
    fn beside_the_real_binder_a_released_delete_volume_loses_its_disk_and_then_its_object() {
        let (sim, uid) = cluster_with_claim(true);
        let api: &dyn Api = sim.as_ref();
        reconcile_pvc(api, "db", "data").expect("provision");
        let name = format!("pvc-{uid}");
        // The real binder releases it once its claim is gone.
        let pv = Api::get(sim.as_ref(), "", "persistentvolumes", "", &name)
            .expect("get")
            .expect("pv");
        set_status(
            sim.as_ref(),
            "",
            "persistentvolumes",
            &pv,
            json!({"phase": "Released"}),
            &Actor::admin(),
        )
        .expect("release");
        reconcile_pv(api, &name).expect("reclaim");
        assert!(sim.cloud.lock().disks.is_empty(), "the disk is deleted");
        // Deleting left only the pv-protection finalizer, which the real pv-protection
        // controller removes; ours is gone.
        let left = Api::get(sim.as_ref(), "", "persistentvolumes", "", &name).expect("get");
        if let Some(pv) = left {
            assert!(
                pv.pointer("/metadata/deletionTimestamp").is_some(),
                "{pv:#}"
            );
            assert!(
                !pv["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == PROVISIONER_FINALIZER)),
                "{pv:#}"
            );
        }
    }

    fn node_in(zone: &str) -> Value {
        json!({"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": zone}}})
    }

    #[test]
    fn a_claim_goes_to_its_selected_nodes_zone_and_a_wait_for_first_consumer_one_waits_for_a_node()
    {
        let wffc = json!({"volumeBindingMode": "WaitForFirstConsumer"});
        let immediate =
            json!({"volumeBindingMode": "Immediate", "parameters": {"zone": "eu-west-1c"}});
        let unscheduled = json!({"metadata": {}});
        let scheduled = json!({"metadata": {"annotations": {SELECTED_NODE: "n1"}}});
        let node = node_in("eu-west-1b");
        for (sc, pvc, node, want) in [
            (&wffc, &unscheduled, None, Placement::WaitForNode),
            (
                &wffc,
                &scheduled,
                Some(&node),
                Placement::Zone("eu-west-1b".into()),
            ),
            (&wffc, &scheduled, None, Placement::NodeGone),
            (
                &immediate,
                &unscheduled,
                None,
                Placement::Zone("eu-west-1c".into()),
            ),
            // A node chosen for an Immediate claim still decides (the scheduler only sets
            // it on delayed claims, but the provisioner honours it on any).
            (
                &immediate,
                &scheduled,
                Some(&node),
                Placement::Zone("eu-west-1b".into()),
            ),
        ] {
            assert_eq!(placement(sc, pvc, node, "uid"), want, "{sc} {pvc}");
        }
        let allowed = json!({"allowedTopologies": [{"matchLabelExpressions": [
            {"key": "topology.ebs.csi.aws.com/zone", "values": ["eu-west-1a"]}]}]});
        assert_eq!(
            placement(&allowed, &unscheduled, None, "uid"),
            Placement::Zone("eu-west-1a".into())
        );
    }

    #[test]
    fn the_drivers_own_topology_label_names_a_nodes_zone_before_the_well_known_one() {
        let node = json!({"metadata": {"labels": {
            "topology.kubernetes.io/zone": "eu-west-1a",
            "topology.ebs.csi.aws.com/zone": "eu-west-1b"}}});
        assert_eq!(node_zone(&node).as_deref(), Some("eu-west-1b"));
        assert_eq!(node_zone(&json!({"metadata": {}})), None);
    }

    #[test]
    fn beside_the_real_binder_a_wait_for_first_consumer_claim_is_provisioned_only_once_a_node_is_selected_and_in_its_zone()
     {
        let (sim, uid) = cluster_with_claim(true);
        let admin = Actor::admin();
        let api: &dyn Api = sim.as_ref();
        sim.as_ref()
            .merge_patch(
                "storage.k8s.io",
                "storageclasses",
                "",
                "gp3",
                &json!({"volumeBindingMode": "WaitForFirstConsumer"}),
                &admin,
            )
            .expect("delay binding");
        reconcile_pvc(api, "db", "data").expect("reconcile");
        assert!(sim.cloud.lock().disks.is_empty(), "no node, no disk");
        let node = crate::controllers::api::Api::list(sim.as_ref(), "", "nodes")
            .expect("nodes")
            .into_iter()
            .find(|n| node_zone(n).as_deref() == Some(ZONES[2]))
            .expect("a node in the third zone");
        let node_name = str_at(&node, "/metadata/name").expect("name").to_owned();
        sim.as_ref()
            .merge_patch(
                "",
                "persistentvolumeclaims",
                "db",
                "data",
                &json!({"metadata": {"annotations": {SELECTED_NODE: node_name}}}),
                &admin,
            )
            .expect("schedule");
        reconcile_pvc(api, "db", "data").expect("reconcile");
        let disks: Vec<String> = sim
            .cloud
            .lock()
            .disks
            .values()
            .map(|d| d.zone.clone())
            .collect();
        assert_eq!(disks, [ZONES[2]]);
        let pv = Api::get(
            sim.as_ref(),
            "",
            "persistentvolumes",
            "",
            &format!("pvc-{uid}"),
        )
        .expect("get")
        .expect("pv");
        assert_eq!(
            pv.pointer("/spec/nodeAffinity/required/nodeSelectorTerms/0/matchExpressions/0/values"),
            Some(&json!([ZONES[2]]))
        );
    }

    #[test]
    fn quantities_round_up_to_whole_gibibytes() {
        for (q, want) in [
            ("10Gi", 10),
            ("1Ti", 1024),
            ("512Mi", 1),
            ("5G", 5),
            ("garbage", 1),
        ] {
            assert_eq!(gib(q), want, "{q}");
        }
    }

    #[test]
    fn the_disk_of_a_pv_is_its_csi_handle_or_in_tree_volume_id() {
        assert_eq!(
            disk_of(&json!({"spec": {"csi": {"volumeHandle": "vol-1"}}})),
            Some("vol-1".into())
        );
        assert_eq!(
            disk_of(
                &json!({"spec": {"awsElasticBlockStore": {"volumeID": "aws://eu-west-1a/vol-2"}}})
            ),
            Some("vol-2".into())
        );
    }
}
