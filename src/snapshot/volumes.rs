//! Cloud snapshots of volumes, taken with a cluster snapshot: every volume whose data
//! policy is `snapshot` or `transfer-or-snapshot` gets one, recorded in its binding (the
//! handle a restore creates a new disk from). Volumes under `transfer` get none.
//!
//! The Kubernetes-native road first: when a `VolumeSnapshotClass` names the volume's CSI
//! driver, a CSI `VolumeSnapshot` of the claim with that class (labelled as coldstart's,
//! so the next snapshot leaves it out), watched until `readyToUse`; its bound
//! `VolumeSnapshotContent`'s `snapshotHandle` is the cloud snapshot. Else the provider
//! road: the cloud's API (EBS `CreateSnapshot`; the simulated cloud's
//! `/sim/v1/cloud/snapshots`), tagged with the cluster snapshot's id and the PV. Either way
//! a restore creates the new disk from the handle through the provider's API, and
//! retention deletes the handle with the cluster snapshots that name it
//! ([`super::prune`]).
//!
//! Consistency hook: a claim annotated `coldstart.dev/snapshot-quiesce: "true"` has the
//! workloads that mount it scaled to 0 (watched until none is ready: the data store has
//! flushed and stopped) before its cloud snapshot, and scaled back right after — also
//! when the snapshot fails. Each quiesced workload carries [`QUIESCED`] meanwhile, so a
//! crash in between leaves its replica count on it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::bindings::consumers::{self, WorkloadRef};
use crate::bindings::{Bindings, CloudSnapshot, SnapshotRoad, VolumeBinding};
use crate::cloud::snapshots::{DiskSnapshots, SnapshotError, TAKEN_OF, TAKEN_WITH};

/// Annotation on a workload quiesced for a volume's cloud snapshot: its replicas.
pub const QUIESCED: &str = "coldstart.dev/quiesced-for-snapshot";

/// How long a quiesced workload may take to stop.
pub const QUIESCE_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a volume's cloud snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeSnapshotError {
    #[error(transparent)]
    Cloud(#[from] SnapshotError),
    #[error("failed to {what} for the cloud snapshot of PV {pv}: {source}")]
    Hook {
        pv: String,
        what: String,
        source: kube::Error,
    },
    #[error("failed to take VolumeSnapshot {name} of PV {pv}: {why}")]
    VolumeSnapshot {
        pv: String,
        name: String,
        why: String,
    },
    #[error("failed to quiesce {workload} for the cloud snapshot of PV {pv}: {why}")]
    Quiesce {
        pv: String,
        workload: String,
        why: String,
    },
}

/// Whether any volume of `bindings` asks for a cloud snapshot.
pub fn wanted(bindings: &Bindings) -> bool {
    bindings
        .volumes
        .iter()
        .any(|v| v.data_policy.wants_cloud_snapshot())
}

/// Take a cloud snapshot of every volume whose policy asks for one, recording each in its
/// binding. The first failure stops the run (the cluster snapshot then fails and names
/// the disk): a snapshot that silently lacks a volume's data is worse than none.
pub async fn take(
    client: &kube::Client,
    provider: Option<&dyn DiskSnapshots>,
    snapshot_id: &str,
    bindings: &mut Bindings,
) -> Result<usize, VolumeSnapshotError> {
    let mut taken = 0;
    let classes = snapshot_classes(client).await?;
    for v in bindings
        .volumes
        .iter_mut()
        .filter(|v| v.data_policy.wants_cloud_snapshot())
    {
        if let (Some(class), Some(_)) = (class_for(&classes, &v.csi_driver), &v.claim) {
            let quiesced = if v.quiesce {
                quiesce(client, v).await?
            } else {
                Vec::new()
            };
            let result = take_native(client, v, &class, snapshot_id).await;
            thaw(client, v, &quiesced).await?;
            v.cloud_snapshot = Some(result?);
            taken += 1;
            continue;
        }
        let Some(provider) = provider else {
            return Err(SnapshotError::NoProvider(format!(
                "take a cloud snapshot of disk {} (PV {}, data policy {})",
                v.disk_id,
                v.pv,
                v.data_policy.as_str()
            ))
            .into());
        };
        let tags: BTreeMap<String, String> = [
            (TAKEN_WITH.to_owned(), snapshot_id.to_owned()),
            (TAKEN_OF.to_owned(), v.pv.clone()),
        ]
        .into();
        let quiesced = if v.quiesce {
            quiesce(client, v).await?
        } else {
            Vec::new()
        };
        let taken_at = Utc::now();
        let result = provider.take(&v.disk_id, &tags).await;
        // Thaw whatever happened to the snapshot: the data store must come back.
        thaw(client, v, &quiesced).await?;
        let s = result?;
        v.cloud_snapshot = Some(CloudSnapshot {
            id: s.id,
            taken_at,
            size_gib: s.size_gib,
            road: SnapshotRoad::Provider,
            volume_snapshot: None,
        });
        taken += 1;
    }
    Ok(taken)
}

const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";

fn snapshot_api(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(SNAPSHOT_GROUP, "v1", kind), plural)
}

/// How long a VolumeSnapshot may take to become ready (the cloud copies nothing before
/// it answers; the snapshot is point-in-time once the handle exists).
const VOLUME_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);

/// Every `VolumeSnapshotClass` (none when the cluster does not serve the API).
async fn snapshot_classes(client: &kube::Client) -> Result<Vec<Value>, VolumeSnapshotError> {
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &snapshot_api("VolumeSnapshotClass", "volumesnapshotclasses"),
    );
    match api.list(&ListParams::default()).await {
        Ok(l) => l
            .items
            .into_iter()
            .map(|o| {
                serde_json::to_value(o).map_err(|e| VolumeSnapshotError::Hook {
                    pv: String::new(),
                    what: "read VolumeSnapshotClasses".into(),
                    source: kube::Error::SerdeError(e),
                })
            })
            .collect(),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
        Err(source) => Err(VolumeSnapshotError::Hook {
            pv: String::new(),
            what: "list VolumeSnapshotClasses".into(),
            source,
        }),
    }
}

/// The class to snapshot a volume of `driver` with: the driver's default class (the
/// `snapshot.storage.kubernetes.io/is-default-class` annotation), else its first by name.
pub fn class_for(classes: &[Value], driver: &str) -> Option<String> {
    let mut of_driver: Vec<&Value> = classes
        .iter()
        .filter(|c| c.get("driver").and_then(Value::as_str) == Some(driver))
        .collect();
    of_driver.sort_by_key(|c| {
        let default = c
            .pointer("/metadata/annotations/snapshot.storage.kubernetes.io~1is-default-class")
            .and_then(Value::as_str)
            == Some("true");
        (
            !default,
            c.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )
    });
    of_driver
        .first()
        .and_then(|c| c.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A CSI `VolumeSnapshot` of `v`'s claim with `class`, watched until ready; its content's
/// `snapshotHandle` is the cloud snapshot.
async fn take_native(
    client: &kube::Client,
    v: &VolumeBinding,
    class: &str,
    snapshot_id: &str,
) -> Result<CloudSnapshot, VolumeSnapshotError> {
    let Some(claim) = &v.claim else {
        return Err(VolumeSnapshotError::VolumeSnapshot {
            pv: v.pv.clone(),
            name: String::new(),
            why: "the volume has no claim".into(),
        });
    };
    let mut name = format!("{}-{}", claim.name, snapshot_id.to_lowercase());
    name.truncate(253);
    let fail = |why: String| VolumeSnapshotError::VolumeSnapshot {
        pv: v.pv.clone(),
        name: format!("{}/{name}", claim.namespace),
        why,
    };
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &claim.namespace,
        &snapshot_api("VolumeSnapshot", "volumesnapshots"),
    );
    let vs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{SNAPSHOT_GROUP}/v1"), "kind": "VolumeSnapshot",
        "metadata": {"name": name, "namespace": claim.namespace,
            "labels": {"app.kubernetes.io/managed-by": "coldstart", TAKEN_WITH: snapshot_id}},
        "spec": {"volumeSnapshotClassName": class,
            "source": {"persistentVolumeClaimName": claim.name}}}))
    .map_err(|e| fail(e.to_string()))?;
    let taken_at = Utc::now();
    match api.create(&Default::default(), &vs).await {
        Ok(_) => {}
        // A re-run of the same cluster snapshot id cannot happen; an existing one is ours.
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(fail(crate::k8s::describe(&e))),
    }
    let ready = |o: Option<&DynamicObject>| {
        o.and_then(|o| o.data.pointer("/status/readyToUse"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let ready = crate::k8s::wait::until(api.clone(), &name, VOLUME_SNAPSHOT_TIMEOUT, ready)
        .await
        .map_err(|e| fail(format!("not ready: {e}")))?
        .ok_or_else(|| fail("deleted while waiting".into()))?;
    let content = ready
        .data
        .pointer("/status/boundVolumeSnapshotContentName")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("ready without a bound VolumeSnapshotContent".into()))?
        .to_owned();
    let contents: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &snapshot_api("VolumeSnapshotContent", "volumesnapshotcontents"),
    );
    let c = contents.get(&content).await.map_err(|e| {
        fail(format!(
            "VolumeSnapshotContent {content}: {}",
            crate::k8s::describe(&e)
        ))
    })?;
    let handle = c
        .data
        .pointer("/status/snapshotHandle")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            fail(format!(
                "VolumeSnapshotContent {content} has no snapshotHandle"
            ))
        })?;
    Ok(CloudSnapshot {
        id: handle.to_owned(),
        taken_at,
        size_gib: c
            .data
            .pointer("/status/restoreSize")
            .and_then(Value::as_u64)
            .map(|b| b.div_ceil(1 << 30)),
        road: SnapshotRoad::VolumeSnapshot,
        volume_snapshot: Some(format!("{}/{name}", claim.namespace)),
    })
}

fn apps(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", kind), plural)
}

/// Scale the workloads that mount `v`'s claim to 0 and watch until none is ready.
/// Returns each with the replicas to give back.
async fn quiesce(
    client: &kube::Client,
    v: &VolumeBinding,
) -> Result<Vec<(WorkloadRef, i64)>, VolumeSnapshotError> {
    let Some(claim) = &v.claim else {
        return Ok(Vec::new());
    };
    let hook = |what: &str, source| VolumeSnapshotError::Hook {
        pv: v.pv.clone(),
        what: what.to_owned(),
        source,
    };
    let mut objects = Vec::new();
    for (kind, plural) in [
        ("Deployment", "deployments"),
        ("StatefulSet", "statefulsets"),
    ] {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &claim.namespace, &apps(kind, plural));
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| hook(&format!("list {plural} in {}", claim.namespace), e))?;
        for o in list.items {
            let mut o = serde_json::to_value(o)
                .map_err(|e| hook("read a workload", kube::Error::SerdeError(e)))?;
            o["apiVersion"] = json!("apps/v1");
            o["kind"] = json!(kind);
            objects.push(o);
        }
    }
    let mut out = Vec::new();
    for w in consumers::claim_users(&objects, &claim.namespace, &claim.name) {
        let Some(obj) = objects.iter().find(|o| w.is(o)) else {
            continue;
        };
        let replicas = obj
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if replicas == 0 {
            continue;
        }
        let api = workload_api(client, &w);
        let patch = json!({"spec": {"replicas": 0},
            "metadata": {"annotations": {QUIESCED: replicas.to_string()}}});
        api.patch(&w.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| hook(&format!("scale {} to 0", w.display()), e))?;
        out.push((w.clone(), replicas));
        let stopped = |o: Option<&DynamicObject>| {
            o.and_then(|o| {
                o.data
                    .pointer("/status/readyReplicas")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(0)
                == 0
        };
        if let Err(e) = crate::k8s::wait::until(api, &w.name, QUIESCE_TIMEOUT, stopped).await {
            // Give back what was already quiesced before saying why.
            thaw(client, v, &out).await?;
            return Err(VolumeSnapshotError::Quiesce {
                pv: v.pv.clone(),
                workload: w.display(),
                why: e.to_string(),
            });
        }
    }
    // Not ready is not stopped: a terminating pod still writes until its grace period
    // ends, and its disk stays attached until the kubelet unmounted it. The snapshot waits
    // for the detach, so what it holds is what the data store last flushed.
    if !out.is_empty()
        && let Err(why) = wait_detached(client, &v.pv).await
    {
        thaw(client, v, &out).await?;
        return Err(VolumeSnapshotError::Quiesce {
            pv: v.pv.clone(),
            workload: out
                .iter()
                .map(|(w, _)| w.display())
                .collect::<Vec<_>>()
                .join(", "),
            why,
        });
    }
    Ok(out)
}

/// Wait until no VolumeAttachment attaches PV `pv` to a node.
async fn wait_detached(client: &kube::Client, pv: &str) -> Result<(), String> {
    use crate::k8s::wait::{NoneLeftError, until_none_left_of};
    use k8s_openapi::api::storage::v1::VolumeAttachment;
    let api: Api<VolumeAttachment> = Api::all(client.clone());
    let names_pv =
        |va: &VolumeAttachment| va.spec.source.persistent_volume_name.as_deref() == Some(pv);
    match until_none_left_of(api, QUIESCE_TIMEOUT, names_pv).await {
        Ok(()) => Ok(()),
        Err(NoneLeftError::Remaining { timeout, objects }) => Err(format!(
            "its disk is still attached to {} after {timeout:?}",
            objects
                .iter()
                .map(|va| va.spec.node_name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(NoneLeftError::Wait(e)) => Err(format!("failed to watch VolumeAttachments: {e}")),
    }
}

fn workload_api(client: &kube::Client, w: &WorkloadRef) -> Api<DynamicObject> {
    let plural = if w.kind == "StatefulSet" {
        "statefulsets"
    } else {
        "deployments"
    };
    Api::namespaced_with(client.clone(), &w.namespace, &apps(&w.kind, plural))
}

/// Scale quiesced workloads back to their replicas.
async fn thaw(
    client: &kube::Client,
    v: &VolumeBinding,
    quiesced: &[(WorkloadRef, i64)],
) -> Result<(), VolumeSnapshotError> {
    for (w, replicas) in quiesced {
        let patch = json!({"spec": {"replicas": replicas},
            "metadata": {"annotations": {QUIESCED: null}}});
        workload_api(client, w)
            .patch(&w.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| VolumeSnapshotError::Hook {
                pv: v.pv.clone(),
                what: format!("scale {} back to {replicas}", w.display()),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drivers_default_class_is_chosen_and_other_drivers_are_not() {
        let class = |name: &str, driver: &str, default: bool| {
            let mut c = json!({"metadata": {"name": name}, "driver": driver});
            if default {
                c["metadata"]["annotations"] =
                    json!({"snapshot.storage.kubernetes.io/is-default-class": "true"});
            }
            c
        };
        let classes = [
            class("a-ebs", "ebs.csi.aws.com", false),
            class("b-ebs-default", "ebs.csi.aws.com", true),
            class("azure", "disk.csi.azure.com", true),
        ];
        assert_eq!(
            class_for(&classes, "ebs.csi.aws.com").as_deref(),
            Some("b-ebs-default")
        );
        assert_eq!(
            class_for(&classes[..1], "ebs.csi.aws.com").as_deref(),
            Some("a-ebs")
        );
        assert_eq!(class_for(&classes, "pd.csi.storage.gke.io"), None);
    }
}
