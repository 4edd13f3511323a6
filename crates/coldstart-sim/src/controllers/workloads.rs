//! StatefulSets (claims from `volumeClaimTemplates` named `<template>-<sts>-<ordinal>`, pods,
//! ordered readiness, disk attachment), Deployments (readiness once their claims are
//! bound) and operators (running Deployments that create what they manage when absent).

use serde_json::{Value, json};

use super::{Api, MANAGES_ANNOTATION, OPERATOR_LABEL, Requeue, Role, set_status, str_at};
use crate::Actor;
use crate::status::ApiError;

use super::storage::disk_of;

fn sts_controller() -> Actor {
    Actor::system("system:serviceaccount:kube-system:statefulset-controller")
}

fn deploy_controller() -> Actor {
    Actor::system("system:serviceaccount:kube-system:deployment-controller")
}

fn node_for(ordinal: usize) -> String {
    format!("sim-node-{}", ordinal % 3 + 1)
}

/// A claim's bound volume: its PV's name and disk.
#[derive(Debug, Clone)]
struct Volume {
    pv: String,
    disk: String,
}

/// The bound PV and disk for a claim, if the claim is Bound (`Some(None)`: bound, but the
/// PV has no disk this cloud knows).
fn bound_disk(sim: &dyn Api, ns: &str, claim: &str) -> Result<Option<Option<Volume>>, ApiError> {
    let Some(pvc) = sim.get("", "persistentvolumeclaims", ns, claim)? else {
        return Ok(None);
    };
    if str_at(&pvc, "/status/phase") != Some("Bound") {
        return Ok(None);
    }
    let pv = match str_at(&pvc, "/spec/volumeName") {
        Some(vn) => sim.get("", "persistentvolumes", "", vn)?,
        None => None,
    };
    Ok(Some(pv.as_ref().and_then(|pv| {
        Some(Volume {
            pv: str_at(pv, "/metadata/name")?.to_owned(),
            disk: disk_of(pv)?,
        })
    })))
}

fn attacher() -> Actor {
    Actor::system("system:serviceaccount:kube-system:ebs-csi-attacher")
}

/// Attach (or detach) a volume's disk, with the VolumeAttachment a CSI attacher keeps;
/// false when the disk cannot be attached (missing, or in use elsewhere), which keeps the
/// workload from becoming ready, as on a real node.
fn set_attached(sim: &dyn Api, v: &Volume, node: Option<&str>, cause: &str) -> bool {
    let attached = {
        let mut cloud = sim.cloud().lock();
        match node {
            Some(n) => cloud.attach_disk(&v.disk, n).is_ok(),
            None => {
                cloud.detach_disk(&v.disk, cause);
                false
            }
        }
    };
    const VA: (&str, &str) = ("storage.k8s.io", "volumeattachments");
    let name = format!("csi-{}", v.pv);
    let exists = matches!(sim.get(VA.0, VA.1, "", &name), Ok(Some(_)));
    match (node, attached, exists) {
        (Some(n), true, false) => {
            // The driver whose attacher keeps it: an Azure disk is known by its resource id.
            let driver = if crate::cloud::resource_group_of(&v.disk).is_some() {
                crate::cloud::CSI_DRIVERS[1]
            } else {
                crate::cloud::CSI_DRIVER
            };
            let obj = json!({"metadata": {"name": name},
                "spec": {"attacher": driver, "nodeName": n,
                         "source": {"persistentVolumeName": v.pv}}});
            if let Ok(s) = sim.create(VA.0, VA.1, "", obj, &attacher()) {
                let _ = set_status(
                    sim,
                    "storage.k8s.io",
                    "volumeattachments",
                    &s,
                    json!({"attached": true}),
                    &attacher(),
                );
            }
        }
        (None, _, true) => {
            let _ = sim.delete(VA.0, VA.1, "", &name, &attacher());
        }
        _ => {}
    }
    attached || node.is_none()
}

pub fn reconcile_statefulset(sim: &dyn Api, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    if sim.role() == Role::CloudOnly {
        return Ok(Requeue::No); // kube-controller-manager's StatefulSet controller
    }
    let Some(sts) = sim.get("apps", "statefulsets", ns, name)? else {
        return Ok(Requeue::No);
    };
    let replicas = sts
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1) as usize;
    let templates: Vec<Value> = sts
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let labels = sts
        .pointer("/spec/selector/matchLabels")
        .cloned()
        .unwrap_or(json!({}));
    let mut pending = false;
    let mut ready = 0usize;
    let mut still_in_order = true;
    for i in 0..replicas {
        let mut all_bound = true;
        let mut disks = Vec::new();
        for t in &templates {
            let tname = str_at(t, "/metadata/name").unwrap_or("data");
            let claim = format!("{tname}-{name}-{i}");
            if sim.get("", "persistentvolumeclaims", ns, &claim)?.is_none() {
                let pvc = json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": ns, "labels": labels},
                    "spec": t.get("spec").cloned().unwrap_or(json!({})),
                });
                if let Err(e) = sim.create("", "persistentvolumeclaims", ns, pvc, &sts_controller())
                    && e.code != 409
                {
                    tracing::debug!(%ns, %claim, error = %e, "statefulset claim not created");
                }
            }
            match bound_disk(sim, ns, &claim)? {
                Some(d) => disks.extend(d),
                None => all_bound = false,
            }
        }
        let attached = all_bound
            && still_in_order
            && disks
                .iter()
                .all(|d| set_attached(sim, d, Some(&node_for(i)), ""));
        if attached {
            ready += 1;
        } else {
            still_in_order = false;
            pending = true;
        }
        ensure_pod(sim, &sts, ns, name, i, attached)?;
    }
    // Ordinals past the replica count: pods go, disks come off their nodes.
    for i in replicas..replicas + 64 {
        let pod = format!("{name}-{i}");
        let had_pod = sim.get("", "pods", ns, &pod)?.is_some();
        let mut any = had_pod;
        for t in &templates {
            let tname = str_at(t, "/metadata/name").unwrap_or("data");
            if let Some(Some(d)) = bound_disk(sim, ns, &format!("{tname}-{name}-{i}"))? {
                any = true;
                let _ = set_attached(sim, &d, None, &format!("pod {ns}/{pod} stopped"));
            }
        }
        if had_pod {
            let _ = sim.delete("", "pods", ns, &pod, &sts_controller());
        }
        if !any {
            break;
        }
    }
    let generation = sts
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    let status = json!({
        "replicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
        "currentReplicas": replicas, "updatedReplicas": replicas, "observedGeneration": generation,
    });
    set_status(sim, "apps", "statefulsets", &sts, status, &sts_controller())?;
    Ok(if pending {
        Requeue::After(super::RETRY)
    } else {
        Requeue::No
    })
}

fn ensure_pod(
    sim: &dyn Api,
    sts: &Value,
    ns: &str,
    name: &str,
    i: usize,
    ready: bool,
) -> Result<(), ApiError> {
    let pod_name = format!("{name}-{i}");
    let phase = if ready { "Running" } else { "Pending" };
    let status = json!({"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]});
    match sim.get("", "pods", ns, &pod_name)? {
        Some(p) => set_status(sim, "", "pods", &p, status, &sts_controller()),
        None => {
            let mut spec = sts
                .pointer("/spec/template/spec")
                .cloned()
                .unwrap_or(json!({}));
            spec["nodeName"] = json!(node_for(i));
            // As the StatefulSet controller does: each claim template is a volume of the
            // pod naming this ordinal's claim (which is how the scheduler finds the claims
            // that wait for their first consumer).
            let templates: Vec<&str> = sts
                .pointer("/spec/volumeClaimTemplates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|t| str_at(t, "/metadata/name").unwrap_or("data"))
                .collect();
            if !templates.is_empty() {
                let mut volumes: Vec<Value> = spec
                    .get("volumes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|v| str_at(v, "/name").is_none_or(|n| !templates.contains(&n)))
                    .cloned()
                    .collect();
                for t in templates {
                    volumes.push(json!({"name": t,
                        "persistentVolumeClaim": {"claimName": format!("{t}-{name}-{i}")}}));
                }
                spec["volumes"] = json!(volumes);
            }
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": ns,
                    "labels": sts.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({})),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name,
                        "uid": str_at(sts, "/metadata/uid").unwrap_or(""), "controller": true, "blockOwnerDeletion": true}]},
                "spec": spec,
            });
            let created = sim.create("", "pods", ns, pod, &sts_controller())?;
            set_status(sim, "", "pods", &created, status, &sts_controller())
        }
    }
}

pub fn reconcile_deployment(sim: &dyn Api, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    let Some(dep) = sim.get("apps", "deployments", ns, name)? else {
        return Ok(Requeue::No);
    };
    if sim.role() == Role::CloudOnly {
        // kube-controller-manager and kwok run the pods and report readiness; what is left
        // is the operator the Deployment runs.
        let ready = dep
            .pointer("/status/readyReplicas")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if is_operator(&dep) && ready > 0 {
            operate(sim, &dep, ns, name);
            return Ok(Requeue::After(super::OPERATOR_RESYNC));
        }
        return Ok(Requeue::No);
    }
    let replicas = dep
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let claims: Vec<String> = dep
        .pointer("/spec/template/spec/volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| str_at(v, "/persistentVolumeClaim/claimName").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // The embedded server runs no pods for a Deployment: its one pod would be scheduled to
    // the node its disks attach to, and kube-scheduler's volume binding then hands each
    // claim that waits for its first consumer that node.
    if replicas > 0 && !claims.is_empty() {
        let mut pod =
            json!({"spec": dep.pointer("/spec/template/spec").cloned().unwrap_or(json!({}))});
        pod["spec"]["nodeName"] = json!(node_for(0));
        super::storage::bind_waiting_claims(sim, ns, &pod)?;
    }
    let mut disks = Vec::new();
    let mut bound = true;
    for c in &claims {
        match bound_disk(sim, ns, c)? {
            Some(d) => disks.extend(d),
            None => bound = false,
        }
    }
    let attached = if bound && replicas > 0 {
        disks
            .iter()
            .all(|d| set_attached(sim, d, Some(&node_for(0)), ""))
    } else {
        for d in &disks {
            let _ = set_attached(sim, d, None, &format!("deployment {ns}/{name} scaled to 0"));
        }
        bound
    };
    // kube-apiserver's ServiceAccount admission refuses a pod whose service account does not
    // exist, so the ReplicaSet controller makes none until it does.
    let pods_admitted = service_account_exists(sim, ns, &dep)?;
    let ready = if bound && attached && pods_admitted {
        replicas
    } else {
        0
    };
    let generation = dep
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    let status = json!({
        "replicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
        "updatedReplicas": replicas, "observedGeneration": generation,
    });
    set_status(
        sim,
        "apps",
        "deployments",
        &dep,
        status,
        &deploy_controller(),
    )?;
    if is_operator(&dep) && ready > 0 {
        operate(sim, &dep, ns, name);
        return Ok(Requeue::After(super::OPERATOR_RESYNC));
    }
    Ok(if bound && pods_admitted {
        Requeue::No
    } else {
        Requeue::After(super::RETRY)
    })
}

/// Whether the service account a workload's pod template runs as (`default` when it names
/// none) exists in `ns`.
fn service_account_exists(sim: &dyn Api, ns: &str, workload: &Value) -> Result<bool, ApiError> {
    let sa = str_at(workload, "/spec/template/spec/serviceAccountName")
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    Ok(sim.get("", "serviceaccounts", ns, sa)?.is_some())
}

fn is_operator(dep: &Value) -> bool {
    str_at(
        dep,
        &format!("/metadata/labels/{}", OPERATOR_LABEL.replace('/', "~1")),
    ) == Some("true")
}

/// The finalizer the CSI external-attacher keeps on the VolumeAttachments it handles (the
/// driver name with `.` as `-`), so the disk is detached before the object goes.
fn attacher_finalizer(driver: &str) -> String {
    format!("external-attacher/{}", driver.replace('.', "-"))
}

/// The CSI external-attacher stand-in, for VolumeAttachments kube-controller-manager's
/// attach/detach controller creates: attach the PV's disk to the node and report
/// `attached`, or the cloud's refusal as `attachError`; on deletion detach, then let go.
pub fn reconcile_volume_attachment(sim: &dyn Api, name: &str) -> Result<Requeue, ApiError> {
    const VA: (&str, &str) = ("storage.k8s.io", "volumeattachments");
    let Some(va) = sim.get(VA.0, VA.1, "", name)? else {
        return Ok(Requeue::No);
    };
    // The attach/detach controller names the PV's driver: every driver whose disks this
    // cloud holds is attached here, as each has its own attacher beside a real cluster.
    let Some(driver) = str_at(&va, "/spec/attacher")
        .filter(|a| crate::cloud::CSI_DRIVERS.contains(a))
        .map(str::to_owned)
    else {
        return Ok(Requeue::No);
    };
    let finalizer = attacher_finalizer(&driver);
    let finalizers: Vec<Value> = va
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let held = finalizers.iter().any(|f| *f == finalizer);
    let node = str_at(&va, "/spec/nodeName").unwrap_or_default();
    let disk = match str_at(&va, "/spec/source/persistentVolumeName") {
        Some(pv) => sim
            .get("", "persistentvolumes", "", pv)?
            .as_ref()
            .and_then(disk_of),
        None => None,
    };
    if va.pointer("/metadata/deletionTimestamp").is_some() {
        if let Some(d) = &disk {
            sim.cloud()
                .lock()
                .detach_disk(d, &format!("VolumeAttachment {name} deleted (node {node})"));
        }
        if held {
            let rest: Vec<Value> = finalizers.into_iter().filter(|f| *f != finalizer).collect();
            sim.merge_patch(
                VA.0,
                VA.1,
                "",
                name,
                &json!({"metadata": {"finalizers": rest}}),
                &attacher(),
            )?;
        }
        return Ok(Requeue::No);
    }
    if !held {
        let mut with = finalizers;
        with.push(json!(finalizer));
        sim.merge_patch(
            VA.0,
            VA.1,
            "",
            name,
            &json!({"metadata": {"finalizers": with}}),
            &attacher(),
        )?;
    }
    let attached = match &disk {
        Some(d) => sim
            .cloud()
            .lock()
            .attach_disk(d, node)
            .map_err(|e| e.to_string()),
        None => Err("the volume names no disk of this cloud".to_owned()),
    };
    let Some(va) = sim.get(VA.0, VA.1, "", name)? else {
        return Ok(Requeue::No);
    };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, requeue) = match attached {
        Ok(()) => (json!({"attached": true}), Requeue::No),
        Err(why) => (
            json!({"attached": false, "attachError": {"message": why, "time": now}}),
            Requeue::After(super::RETRY),
        ),
    };
    if va.pointer("/status/attached") != status.get("attached") || requeue != Requeue::No {
        set_status(sim, VA.0, VA.1, &va, status, &attacher())?;
    }
    Ok(requeue)
}

/// A running operator creates whatever it manages that is absent, under its own identity.
fn operate(sim: &dyn Api, dep: &Value, ns: &str, name: &str) {
    let Some(manages) = str_at(
        dep,
        &format!(
            "/metadata/annotations/{}",
            MANAGES_ANNOTATION.replace('/', "~1")
        ),
    )
    .and_then(|s| serde_json::from_str::<Vec<Value>>(s).ok()) else {
        return;
    };
    let actor = Actor::system(&format!("system:serviceaccount:{ns}:{name}"));
    for obj in manages {
        let (Some(av), Some(kind), Some(oname)) = (
            str_at(&obj, "/apiVersion"),
            str_at(&obj, "/kind"),
            str_at(&obj, "/metadata/name"),
        ) else {
            continue;
        };
        let Ok(Some(d)) = sim.served_kind(av, kind) else {
            continue;
        };
        let ons = str_at(&obj, "/metadata/namespace").unwrap_or(ns);
        if !matches!(sim.get(&d.group, &d.plural, ons, oname), Ok(None)) {
            continue;
        }
        match sim.create(&d.group, &d.plural, ons, obj.clone(), &actor) {
            Ok(_) => {
                tracing::info!(operator = %format!("{ns}/{name}"), %kind, name = %oname, "operator created a managed object")
            }
            Err(e) => {
                tracing::debug!(operator = %format!("{ns}/{name}"), %kind, name = %oname, error = %e, "operator could not create")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sim;

    const VA: (&str, &str) = ("storage.k8s.io", "volumeattachments");

    /// A PV on `disk` and the VolumeAttachment the attach/detach controller would make for
    /// it on `node`.
    fn attachment(sim: &Sim, name: &str, disk: &str, node: &str) {
        let admin = Actor::admin();
        let api: &dyn Api = sim;
        api.create(
            "",
            "persistentvolumes",
            "",
            json!({"metadata": {"name": format!("pv-{name}")},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                         "csi": {"driver": crate::cloud::CSI_DRIVER, "volumeHandle": disk}}}),
            &admin,
        )
        .expect("pv");
        api.create(
            VA.0,
            VA.1,
            "",
            json!({"metadata": {"name": name},
                "spec": {"attacher": crate::cloud::CSI_DRIVER, "nodeName": node,
                         "source": {"persistentVolumeName": format!("pv-{name}")}}}),
            &admin,
        )
        .expect("volume attachment");
    }

    #[test]
    fn beside_the_real_attach_detach_controller_a_volume_attachment_attaches_its_disk_and_deletion_detaches_it()
     {
        let sim = Sim::beside_kcm();
        let disk = sim
            .cloud
            .lock()
            .create_disk("eu-west-1a", 1, "d", "test")
            .id;
        attachment(&sim, "va-1", &disk, "node-a");
        let api: &dyn Api = sim.as_ref();
        assert_eq!(
            reconcile_volume_attachment(api, "va-1").expect("attach"),
            Requeue::No
        );
        assert_eq!(
            sim.cloud.lock().disks[&disk].attached_to.as_deref(),
            Some("node-a")
        );
        let va = Api::get(sim.as_ref(), VA.0, VA.1, "", "va-1")
            .expect("get")
            .expect("va");
        assert_eq!(va["status"]["attached"], true, "{va:#}");
        assert_eq!(
            va["metadata"]["finalizers"],
            json!(["external-attacher/ebs-csi-aws-com"])
        );
        Api::delete(sim.as_ref(), VA.0, VA.1, "", "va-1", &Actor::admin()).expect("delete");
        reconcile_volume_attachment(api, "va-1").expect("detach");
        assert_eq!(sim.cloud.lock().disks[&disk].attached_to, None);
        assert_eq!(
            Api::get(sim.as_ref(), VA.0, VA.1, "", "va-1").expect("get"),
            None,
            "the finalizer is released and the object goes"
        );
    }

    #[test]
    fn beside_the_real_attach_detach_controller_a_disk_in_use_elsewhere_is_reported_and_retried() {
        let sim = Sim::beside_kcm();
        let disk = sim
            .cloud
            .lock()
            .create_disk("eu-west-1a", 1, "d", "test")
            .id;
        sim.cloud
            .lock()
            .attach_disk(&disk, "node-b")
            .expect("attached");
        attachment(&sim, "va-2", &disk, "node-a");
        assert_eq!(
            reconcile_volume_attachment(sim.as_ref(), "va-2").expect("reconcile"),
            Requeue::After(crate::controllers::RETRY)
        );
        let va = Api::get(sim.as_ref(), VA.0, VA.1, "", "va-2")
            .expect("get")
            .expect("va");
        assert_eq!(va["status"]["attached"], false);
        assert!(
            va["status"]["attachError"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("node-b")),
            "{va:#}"
        );
    }
}
