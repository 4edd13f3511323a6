//! The CSI external-snapshotter, as far as a cold start needs it (`snapshot.storage.k8s.io/v1`,
//! dynamic snapshots only): a `VolumeSnapshot` of a claim whose `VolumeSnapshotClass` names
//! the cloud's CSI driver gets a cloud snapshot of the claim's disk (its data at this
//! moment), a bound `VolumeSnapshotContent` `snapcontent-<uid>` holding the
//! `snapshotHandle`, and `readyToUse`. A class of another driver is another snapshotter's
//! business: left alone. [`crds`] are the three CRDs, as the external-snapshotter ships
//! them (names, scopes, versions, status subresources; the schemas keep unknown fields).

use serde_json::{Value, json};

use super::{Api, Requeue, get, set_status, str_at};
use crate::Actor;
use crate::status::ApiError;

pub const GROUP: &str = "snapshot.storage.k8s.io";

fn snapshotter() -> Actor {
    Actor::system("system:serviceaccount:kube-system:snapshot-controller")
}

/// The `VolumeSnapshotClass`, `VolumeSnapshotContent` and `VolumeSnapshot` CRDs.
pub fn crds() -> Vec<Value> {
    [
        ("VolumeSnapshotClass", "volumesnapshotclasses", "Cluster", false),
        ("VolumeSnapshotContent", "volumesnapshotcontents", "Cluster", true),
        ("VolumeSnapshot", "volumesnapshots", "Namespaced", true),
    ]
    .into_iter()
    .map(|(kind, plural, scope, status)| {
        let mut version = json!({"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
        if status {
            version["subresources"] = json!({"status": {}});
        }
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            // `snapshot.storage.k8s.io` is a protected group: kube-apiserver refuses its CRDs
            // without the API-review link, which external-snapshotter's published CRDs carry.
            "metadata": {"name": format!("{plural}.{GROUP}"),
                "annotations": {"api-approved.kubernetes.io":
                    "https://github.com/kubernetes-csi/external-snapshotter/pull/814"}},
            "spec": {"group": GROUP, "scope": scope,
                "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(),
                          "listKind": format!("{kind}List")},
                "versions": [version]}})
    })
    .collect()
}

fn failed(sim: &dyn Api, vs: &Value, why: String) -> Result<Requeue, ApiError> {
    let status = json!({"readyToUse": false, "error": {"message": why}});
    set_status(sim, GROUP, "volumesnapshots", vs, status, &snapshotter())?;
    Ok(Requeue::After(super::RETRY))
}

pub fn reconcile(sim: &dyn Api, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    let Some(vs) = get(sim, GROUP, "volumesnapshots", ns, name)? else {
        return Ok(Requeue::No);
    };
    if vs.pointer("/status/readyToUse") == Some(&json!(true)) {
        return Ok(Requeue::No);
    }
    let class = match str_at(&vs, "/spec/volumeSnapshotClassName") {
        Some(c) => get(sim, GROUP, "volumesnapshotclasses", "", c)?,
        None => None,
    };
    let Some(class) = class else {
        return failed(sim, &vs, "no such VolumeSnapshotClass".into());
    };
    let driver = str_at(&class, "/driver").unwrap_or_default().to_owned();
    if driver != crate::cloud::CSI_DRIVER {
        return Ok(Requeue::No);
    }
    let Some(claim) = str_at(&vs, "/spec/source/persistentVolumeClaimName") else {
        return failed(sim, &vs, "only snapshots of a claim are supported".into());
    };
    let volume = get(sim, "", "persistentvolumeclaims", ns, claim)?
        .and_then(|c| str_at(&c, "/spec/volumeName").map(str::to_owned));
    let disk = match volume {
        Some(pv) => {
            get(sim, "", "persistentvolumes", "", &pv)?.and_then(|pv| super::storage::disk_of(&pv))
        }
        None => None,
    };
    let Some(disk) = disk else {
        return failed(
            sim,
            &vs,
            format!("claim {ns}/{claim} is not bound to a disk"),
        );
    };
    let uid = str_at(&vs, "/metadata/uid").unwrap_or_default().to_owned();
    let content_name = format!("snapcontent-{uid}");
    let content = match get(sim, GROUP, "volumesnapshotcontents", "", &content_name)? {
        Some(c) => c,
        None => {
            let snap = sim
                .cloud()
                .lock()
                .create_snapshot(
                    &disk,
                    Default::default(),
                    &format!("external-snapshotter: VolumeSnapshot {ns}/{name}"),
                )
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let created = sim.create(
                    GROUP,
                    "volumesnapshotcontents",
                    "",
                    json!({"apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshotContent",
                        "metadata": {"name": content_name},
                        "spec": {"deletionPolicy": str_at(&class, "/deletionPolicy").unwrap_or("Delete"),
                            "driver": driver, "source": {"volumeHandle": disk},
                            "volumeSnapshotClassName": class["metadata"]["name"],
                            "volumeSnapshotRef": {"apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshot",
                                "namespace": ns, "name": name, "uid": uid}}}),
                    &snapshotter(),
                )?;
            let status = json!({"snapshotHandle": snap.id, "readyToUse": true,
                "restoreSize": snap.size_gib * (1 << 30)});
            set_status(
                sim,
                GROUP,
                "volumesnapshotcontents",
                &created,
                status,
                &snapshotter(),
            )?;
            get(sim, GROUP, "volumesnapshotcontents", "", &content_name)?.unwrap_or(created)
        }
    };
    let size = content
        .pointer("/status/restoreSize")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let status = json!({"boundVolumeSnapshotContentName": content_name, "readyToUse": true,
        "creationTime": chrono::Utc::now().to_rfc3339(), "restoreSize": format!("{}Gi", size >> 30)});
    set_status(sim, GROUP, "volumesnapshots", &vs, status, &snapshotter())?;
    Ok(Requeue::No)
}
