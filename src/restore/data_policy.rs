//! Per volume, transfer the disk or restore it from its cloud snapshot — and why. The
//! decision is pure ([`decide`]) over the volume's binding (its data policy, its cloud
//! snapshot, latency-critical or not) and what the preflight learnt about its disk; the
//! plan, `restore --dry-run` and the report show it. [`materialize`] then creates the
//! new disks (tagged, so a re-run finds them) and [`rewrite`] points the snapshot's PVs,
//! bindings and recorded volumes at them, so everything after — plan, gate, apply,
//! verification — sees a volume on a known disk, and a disk new by policy is never
//! counted as new by accident.
//!
//! ```text
//!  binding (policy, cloud snapshot) × disk state (preflight) ─▶ decide ─▶ VolumeDecision
//!  FromSnapshot decisions ─▶ DiskSnapshots::restore (I/O) ─▶ rewrite (pure) ─▶ RestoreSource
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::RestoreSource;
use super::source::{Objects, Rewrite};
use crate::bindings::{DataPolicy, VolumeBinding};
use crate::cloud::snapshots::{self, DiskSnapshots, RestoreRequest, SnapshotError};

/// Annotation on a restored PV: the cloud snapshot its new disk was created from.
pub const RESTORED_FROM: &str = "coldstart.dev/restored-from-snapshot";

/// Where a volume's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataSource {
    /// The recorded disk itself.
    Transfer,
    /// A new disk created from the volume's cloud snapshot.
    FromSnapshot,
}

/// What the preflight knows of a volume's recorded disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskState {
    /// There and usable (or the cloud could not tell: the recorded disk is assumed).
    Healthy,
    /// Missing, attached elsewhere or moved.
    Broken(String),
    /// Not asked (a dry run without a cloud).
    Unknown,
}

/// How a restore asks the cloud to speed hydration up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HydrationOptions {
    /// Enable Fast Snapshot Restore for each snapshot in the zone its disk is created in.
    pub fast_restore: bool,
    /// AWS volume initialization rate, MiB/s.
    pub initialization_rate_mib_s: Option<u32>,
}

/// One volume's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeDecision {
    pub pv: String,
    /// `namespace/name` of the claim.
    pub claim: Option<String>,
    pub policy: DataPolicy,
    pub source: DataSource,
    /// The recorded disk.
    pub disk: String,
    /// The cloud snapshot a from-snapshot volume is restored from.
    pub snapshot: Option<String>,
    /// Why, in words.
    pub why: String,
    pub latency_critical: bool,
    /// Estimated hydration of the new disk (0 for a transfer), milliseconds.
    pub hydration_estimate_ms: u64,
    /// The disk created from the snapshot, once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_disk: Option<String>,
}

/// Decide one volume (pure).
pub fn decide(
    v: &VolumeBinding,
    disk: &DiskState,
    provider: &str,
    hydration: &HydrationOptions,
) -> VolumeDecision {
    let snap = v.cloud_snapshot.as_ref();
    let estimate = |size: Option<u64>| {
        snapshots::hydration_estimate(
            provider,
            size.unwrap_or(0),
            hydration.fast_restore,
            hydration.initialization_rate_mib_s,
        )
        .as_millis() as u64
    };
    let from_snapshot = |why: String| VolumeDecision {
        pv: v.pv.clone(),
        claim: v
            .claim
            .as_ref()
            .map(|c| format!("{}/{}", c.namespace, c.name)),
        policy: v.data_policy,
        source: DataSource::FromSnapshot,
        disk: v.disk_id.clone(),
        snapshot: snap.map(|s| s.id.clone()),
        why,
        latency_critical: v.latency_critical,
        hydration_estimate_ms: estimate(snap.and_then(|s| s.size_gib)),
        new_disk: None,
    };
    let transfer = |why: String| VolumeDecision {
        source: DataSource::Transfer,
        snapshot: None,
        hydration_estimate_ms: 0,
        ..from_snapshot(why)
    };
    let taken = |s: &crate::bindings::CloudSnapshot| {
        format!("cloud snapshot {} taken {}", s.id, s.taken_at.to_rfc3339())
    };
    let latency = if v.latency_critical {
        "; latency-critical: its workloads wait for hydration"
    } else {
        ""
    };
    match (v.data_policy, snap, disk) {
        (DataPolicy::Transfer, _, _) => {
            transfer(format!("policy transfer: reuse disk {}", v.disk_id))
        }
        (_, None, _) => transfer(format!(
            "policy {} but the snapshot recorded no cloud snapshot: reuse disk {}",
            v.data_policy.as_str(),
            v.disk_id
        )),
        (DataPolicy::Snapshot, Some(_), DiskState::Healthy) if v.latency_critical => {
            transfer(format!(
                "policy snapshot, but latency-critical and disk {} is healthy: a transferred disk instead of hours of hydration",
                v.disk_id
            ))
        }
        (DataPolicy::Snapshot, Some(s), _) => from_snapshot(format!(
            "policy snapshot: a new disk from {}, the original stays untouched{latency}",
            taken(s)
        )),
        (DataPolicy::TransferOrSnapshot, Some(s), DiskState::Broken(why)) => {
            from_snapshot(format!(
                "policy transfer-or-snapshot and disk {} is {why}: a new disk from {}{latency}",
                v.disk_id,
                taken(s)
            ))
        }
        (DataPolicy::TransferOrSnapshot, Some(_), DiskState::Healthy) => transfer(format!(
            "policy transfer-or-snapshot and disk {} is there: reuse it",
            v.disk_id
        )),
        (DataPolicy::TransferOrSnapshot, Some(s), DiskState::Unknown) => transfer(format!(
            "policy transfer-or-snapshot: reuse disk {} if it is there and healthy, else a new disk from {} (the cloud was not asked)",
            v.disk_id,
            taken(s)
        )),
    }
}

/// Decide every volume of `bindings`, each disk's state from the preflight's rows (a row
/// the preflight judged recoverable from a snapshot is a broken disk; any other row
/// without a problem is a healthy one).
pub fn decide_all(
    bindings: &[VolumeBinding],
    pre: &crate::preflight::Preflight,
    provider: &str,
    hydration: &HydrationOptions,
) -> Vec<VolumeDecision> {
    bindings
        .iter()
        .map(|v| {
            let row = pre
                .rows
                .iter()
                .find(|r| r.kind == crate::cloud::Kind::Volume && r.subject == v.pv);
            let state = match row {
                Some(r) if r.from_snapshot.is_some() || r.problem.is_some() => {
                    DiskState::Broken(r.status.as_str().to_owned())
                }
                Some(_) => DiskState::Healthy,
                None => DiskState::Unknown,
            };
            decide(v, &state, provider, hydration)
        })
        .collect()
}

/// Whether a volume whose disk is broken comes back from its snapshot anyway (the
/// preflight does not refuse it).
pub fn recoverable(v: &VolumeBinding) -> bool {
    v.data_policy.wants_cloud_snapshot() && v.cloud_snapshot.is_some()
}

/// Create (or find, on a re-run) the disk of every from-snapshot decision, filling in
/// `new_disk`. `restore_key` names this restore in the disks' tags (the snapshot id for a
/// restore, the drill's id for a drill).
pub async fn materialize(
    provider: Option<&dyn DiskSnapshots>,
    bindings: &[VolumeBinding],
    decisions: &mut [VolumeDecision],
    restore_key: &str,
    hydration: &HydrationOptions,
) -> Result<(), SnapshotError> {
    for d in decisions
        .iter_mut()
        .filter(|d| d.source == DataSource::FromSnapshot)
    {
        let (Some(snapshot), Some(v)) = (&d.snapshot, bindings.iter().find(|v| v.pv == d.pv))
        else {
            continue;
        };
        let Some(provider) = provider else {
            return Err(SnapshotError::NoProvider(format!(
                "restore PV {} from cloud snapshot {snapshot}",
                d.pv
            )));
        };
        let zone = v.zone.clone().ok_or_else(|| SnapshotError::Call {
            provider: provider.name(),
            action: format!("restore PV {} from cloud snapshot {snapshot}", d.pv),
            detail: "the snapshot recorded no zone for the volume".into(),
        })?;
        let restored = provider
            .restore(&RestoreRequest {
                snapshot: snapshot.clone(),
                zone,
                restored_for: format!("{restore_key}/{}", d.pv),
                fast_restore: hydration.fast_restore,
                initialization_rate_mib_s: hydration.initialization_rate_mib_s,
            })
            .await?;
        d.hydration_estimate_ms = restored.hydration_ms;
        d.new_disk = Some(restored.disk_id);
    }
    Ok(())
}

/// Hydration still ahead, `elapsed` after the disks were created: the longest estimate
/// minus the time gone by (pure).
pub fn hydration_left(decisions: &[VolumeDecision], elapsed: std::time::Duration) -> u64 {
    decisions
        .iter()
        .filter(|d| d.new_disk.is_some())
        .map(|d| {
            d.hydration_estimate_ms
                .saturating_sub(elapsed.as_millis() as u64)
        })
        .max()
        .unwrap_or(0)
}

/// How often a latency-critical volume's hydration is asked about: the cloud has no
/// watch for it, and its hydration runs for seconds (simulated) to hours.
const HYDRATION_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Wait until every latency-critical volume restored from a snapshot has hydrated (its
/// workloads cannot live with a slow disk), or `timeout`.
pub async fn wait_hydrated(
    provider: &dyn DiskSnapshots,
    decisions: &[VolumeDecision],
    timeout: std::time::Duration,
) -> Result<(), SnapshotError> {
    let deadline = tokio::time::Instant::now() + timeout;
    for d in decisions.iter().filter(|d| d.latency_critical) {
        let Some(disk) = &d.new_disk else { continue };
        loop {
            let h = provider.hydration(disk).await?;
            if !h.hydrating {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SnapshotError::Call {
                    provider: provider.name(),
                    action: format!("wait for disk {disk} (PV {}) to hydrate", d.pv),
                    detail: format!(
                        "still hydrating after {} s ({} ms left)",
                        timeout.as_secs(),
                        h.remaining_ms
                    ),
                });
            }
            tokio::time::sleep(
                HYDRATION_POLL.min(std::time::Duration::from_millis(h.remaining_ms.max(1))),
            )
            .await;
        }
    }
    Ok(())
}

/// The handle of the same kind as `old` for disk `new`: a provider's path-shaped handle
/// (GCE `projects/…/disks/D`, Azure `…/disks/NAME`) keeps its path.
fn handle_for(old: &str, new: &str) -> String {
    match old.rsplit_once('/') {
        Some((path, _)) => format!("{path}/{new}"),
        None => new.to_owned(),
    }
}

/// Point a snapshot's PV object at a new disk (pure).
fn point_pv(pv: &mut Value, v: &VolumeBinding, new_disk: &str, snapshot: &str) {
    let handle = handle_for(&v.volume_handle, new_disk);
    match v.source.as_str() {
        "csi" => pv["spec"]["csi"]["volumeHandle"] = json!(handle),
        "awsElasticBlockStore" => {
            pv["spec"]["awsElasticBlockStore"]["volumeID"] = json!(new_disk);
        }
        "azureDisk" => {
            pv["spec"]["azureDisk"]["diskURI"] = json!(handle);
            pv["spec"]["azureDisk"]["diskName"] = json!(new_disk);
        }
        "gcePersistentDisk" => pv["spec"]["gcePersistentDisk"]["pdName"] = json!(new_disk),
        other => pv["spec"][other]["volumeID"] = json!(new_disk),
    }
    if !pv["metadata"]["annotations"].is_object() {
        pv["metadata"]["annotations"] = json!({});
    }
    pv["metadata"]["annotations"][RESTORED_FROM] = json!(snapshot);
}

/// The source with every materialized volume on its new disk: the PV objects, the
/// bindings and the recorded volumes (which remember the snapshot, so verification counts
/// the volume as from-snapshot, not reused and not new). Pure.
pub fn rewrite(source: &RestoreSource, decisions: &[VolumeDecision]) -> RestoreSource {
    let moved: BTreeMap<&str, (&str, &str)> = decisions
        .iter()
        .filter_map(|d| {
            Some((
                d.pv.as_str(),
                (d.new_disk.as_deref()?, d.snapshot.as_deref()?),
            ))
        })
        .collect();
    let mut out = source.clone();
    if moved.is_empty() {
        return out;
    }
    // Each moved PV with the binding it was recorded with, applied as the PV is read.
    let pvs: BTreeMap<String, (VolumeBinding, String, String)> = moved
        .iter()
        .filter_map(|(pv, (disk, snap))| {
            let v = source.bindings.volumes.iter().find(|v| v.pv == *pv)?;
            Some((
                (*pv).to_owned(),
                (v.clone(), (*disk).to_owned(), (*snap).to_owned()),
            ))
        })
        .collect();
    out.objects = Objects::Rewritten(
        std::sync::Arc::new(source.objects.clone()),
        Rewrite(std::sync::Arc::new(move |obj: &mut Value| {
            if obj.get("kind").and_then(Value::as_str) != Some("PersistentVolume") {
                return;
            }
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Some((v, disk, snap)) = pvs.get(name) {
                point_pv(obj, v, disk, snap);
            }
        })),
    );
    for v in out.bindings.volumes.iter_mut() {
        if let Some((disk, _)) = moved.get(v.pv.as_str()) {
            v.volume_handle = handle_for(&v.volume_handle, disk);
            v.disk_id = (*disk).to_owned();
        }
    }
    for r in out.recorded.volumes.iter_mut() {
        if let Some((disk, snap)) = moved.get(r.pv.as_str()) {
            r.disk = (*disk).to_owned();
            r.from_snapshot = Some((*snap).to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::{CloudSnapshot, SnapshotRoad};
    use crate::testing::pv;

    fn volume(policy: DataPolicy, snapshot: bool, latency_critical: bool) -> VolumeBinding {
        let mut v = crate::bindings::volume_of(
            &pv("pv-db")
                .csi_disk("vol-old")
                .claimed_by("tenant-a", "data")
                .build(),
        )
        .expect("a disk");
        v.zone = Some("eu-west-1a".into());
        v.data_policy = policy;
        v.latency_critical = latency_critical;
        v.cloud_snapshot = snapshot.then(|| CloudSnapshot {
            id: "snap-1".into(),
            taken_at: chrono::Utc::now(),
            size_gib: Some(10),
            road: SnapshotRoad::Provider,
            volume_snapshot: None,
        });
        v
    }

    #[test]
    fn each_policy_decides_by_the_disk_and_the_snapshot_and_says_why() {
        use DataPolicy::*;
        use DiskState::*;
        let broken = || Broken("missing".into());
        let cases: [(&str, VolumeBinding, DiskState, DataSource, &str); 9] = [
            (
                "transfer reuses",
                volume(Transfer, true, false),
                Healthy,
                DataSource::Transfer,
                "policy transfer",
            ),
            (
                "transfer never snapshots",
                volume(Transfer, true, false),
                broken(),
                DataSource::Transfer,
                "policy transfer",
            ),
            (
                "snapshot restores even a healthy disk",
                volume(Snapshot, true, false),
                Healthy,
                DataSource::FromSnapshot,
                "original stays untouched",
            ),
            (
                "snapshot without a snapshot transfers",
                volume(Snapshot, false, false),
                broken(),
                DataSource::Transfer,
                "recorded no cloud snapshot",
            ),
            (
                "latency-critical gets the healthy disk",
                volume(Snapshot, true, true),
                Healthy,
                DataSource::Transfer,
                "latency-critical",
            ),
            (
                "latency-critical waits when the disk is gone",
                volume(Snapshot, true, true),
                broken(),
                DataSource::FromSnapshot,
                "wait for hydration",
            ),
            (
                "either: the disk when healthy",
                volume(TransferOrSnapshot, true, false),
                Healthy,
                DataSource::Transfer,
                "is there",
            ),
            (
                "either: the snapshot when broken",
                volume(TransferOrSnapshot, true, false),
                broken(),
                DataSource::FromSnapshot,
                "is missing",
            ),
            (
                "either, unasked: says both",
                volume(TransferOrSnapshot, true, false),
                Unknown,
                DataSource::Transfer,
                "else a new disk from cloud snapshot snap-1",
            ),
        ];
        for (name, v, disk, want, why) in cases {
            let d = decide(&v, &disk, "sim", &HydrationOptions::default());
            assert_eq!(d.source, want, "{name}");
            assert!(d.why.contains(why), "{name}: {}", d.why);
            let hydrates = want == DataSource::FromSnapshot;
            assert_eq!(d.hydration_estimate_ms > 0, hydrates, "{name}");
        }
    }

    #[test]
    fn fast_snapshot_restore_plans_no_hydration() {
        let d = decide(
            &volume(DataPolicy::Snapshot, true, false),
            &DiskState::Healthy,
            "aws",
            &HydrationOptions {
                fast_restore: true,
                initialization_rate_mib_s: None,
            },
        );
        assert_eq!(
            (d.source, d.hydration_estimate_ms),
            (DataSource::FromSnapshot, 0)
        );
    }

    #[tokio::test]
    async fn a_rewritten_source_points_the_pv_bindings_and_record_at_the_new_disk() {
        let v = volume(DataPolicy::Snapshot, true, false);
        let source = RestoreSource {
            snapshot_id: "s1".into(),
            taken_at: chrono::Utc::now(),
            objects: Objects::Loaded(vec![
                pv("pv-db")
                    .csi_disk("vol-old")
                    .claimed_by("tenant-a", "data")
                    .build(),
                pv("pv-other").csi_disk("vol-other").build(),
            ]),
            recorded: super::super::Recorded::from_bindings(&crate::bindings::Bindings {
                volumes: vec![v.clone()],
                ..Default::default()
            }),
            bindings: crate::bindings::Bindings {
                volumes: vec![v.clone()],
                ..Default::default()
            },
        };
        let mut d = decide(
            &v,
            &DiskState::Broken("missing".into()),
            "sim",
            &Default::default(),
        );
        d.new_disk = Some("vol-new".into());
        let out = rewrite(&source, &[d]);
        let objects = out.objects.collect(|_| true).await.expect("objects");
        assert_eq!(objects[0]["spec"]["csi"]["volumeHandle"], "vol-new");
        assert_eq!(
            objects[0]["metadata"]["annotations"][RESTORED_FROM],
            "snap-1"
        );
        assert_eq!(objects[1]["spec"]["csi"]["volumeHandle"], "vol-other");
        assert_eq!(out.bindings.volumes[0].disk_id, "vol-new");
        assert_eq!(out.recorded.volumes[0].disk, "vol-new");
        assert_eq!(
            out.recorded.volumes[0].from_snapshot.as_deref(),
            Some("snap-1")
        );
    }

    #[test]
    fn path_shaped_handles_keep_their_path() {
        assert_eq!(
            handle_for("projects/p/zones/z/disks/old", "new"),
            "projects/p/zones/z/disks/new"
        );
        assert_eq!(handle_for("vol-old", "vol-new"), "vol-new");
    }

    /// A cloud whose one disk hydrates for `left` more questions.
    struct Hydrating {
        left: std::sync::Mutex<u32>,
    }

    impl DiskSnapshots for Hydrating {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn take<'a>(
            &'a self,
            _: &'a str,
            _: &'a BTreeMap<String, String>,
        ) -> futures::future::BoxFuture<'a, Result<snapshots::TakenSnapshot, SnapshotError>>
        {
            unimplemented!("not asked")
        }
        fn delete<'a>(
            &'a self,
            _: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<bool, SnapshotError>> {
            unimplemented!("not asked")
        }
        fn restore<'a>(
            &'a self,
            _: &'a RestoreRequest,
        ) -> futures::future::BoxFuture<'a, Result<snapshots::RestoredDisk, SnapshotError>>
        {
            unimplemented!("not asked")
        }
        fn hydration<'a>(
            &'a self,
            _: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<snapshots::Hydration, SnapshotError>> {
            let mut left = self.left.lock().expect("lock");
            let hydrating = *left > 0;
            *left = left.saturating_sub(1);
            Box::pin(async move {
                Ok(snapshots::Hydration {
                    hydrating,
                    remaining_ms: if hydrating { 1 } else { 0 },
                })
            })
        }
        fn check_data<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<snapshots::DataCheck, SnapshotError>> {
            unimplemented!("not asked")
        }
    }

    fn restored(latency_critical: bool) -> VolumeDecision {
        let mut d = decide(
            &volume(DataPolicy::Snapshot, true, latency_critical),
            &DiskState::Broken("missing".into()),
            "sim",
            &HydrationOptions::default(),
        );
        d.new_disk = Some("vol-new".into());
        d
    }

    #[tokio::test]
    async fn a_latency_critical_volume_is_waited_for_until_hydrated_and_others_are_not() {
        let cloud = Hydrating {
            left: std::sync::Mutex::new(3),
        };
        let timeout = std::time::Duration::from_secs(5);
        wait_hydrated(&cloud, &[restored(false)], timeout)
            .await
            .expect("nothing to wait for");
        assert_eq!(*cloud.left.lock().expect("lock"), 3, "not even asked");
        wait_hydrated(&cloud, &[restored(true)], timeout)
            .await
            .expect("hydrated");
        assert_eq!(*cloud.left.lock().expect("lock"), 0, "asked until hydrated");
        let slow = Hydrating {
            left: std::sync::Mutex::new(u32::MAX),
        };
        let err = wait_hydrated(&slow, &[restored(true)], std::time::Duration::ZERO)
            .await
            .expect_err("times out");
        assert!(err.to_string().contains("still hydrating"), "{err}");
    }
}
