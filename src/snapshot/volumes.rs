//! Cloud snapshots of volumes, taken with a cluster snapshot: every volume whose data
//! policy is `snapshot` or `transfer-or-snapshot` gets one, recorded in its binding (the
//! handle a restore creates a new disk from). Volumes under `transfer` get none.
//!
//! The provider road: the cloud's API (EBS `CreateSnapshot`; the simulated cloud's
//! `/sim/v1/cloud/snapshots`), tagged with the cluster snapshot's id and the PV so
//! retention can find them. Retention deletes them with the cluster snapshots that name
//! them ([`super::prune`]).
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
    for v in bindings
        .volumes
        .iter_mut()
        .filter(|v| v.data_policy.wants_cloud_snapshot())
    {
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
    Ok(out)
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
