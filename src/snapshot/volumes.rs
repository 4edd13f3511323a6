//! Cloud snapshots of volumes, taken with a cluster snapshot: every volume whose data
//! policy is `snapshot` or `transfer-or-snapshot` gets one, recorded in its binding (the
//! handle a restore creates a new disk from). Volumes under `transfer` get none.
//!
//! The provider road: the cloud's API (EBS `CreateSnapshot`; the simulated cloud's
//! `/sim/v1/cloud/snapshots`), tagged with the cluster snapshot's id and the PV so
//! retention can find them. Retention deletes them with the cluster snapshots that name
//! them ([`super::prune`]).

use std::collections::BTreeMap;

use chrono::Utc;

use crate::bindings::{Bindings, CloudSnapshot, SnapshotRoad};
use crate::cloud::snapshots::{DiskSnapshots, SnapshotError, TAKEN_OF, TAKEN_WITH};

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
    provider: Option<&dyn DiskSnapshots>,
    snapshot_id: &str,
    bindings: &mut Bindings,
) -> Result<usize, SnapshotError> {
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
            )));
        };
        let tags: BTreeMap<String, String> = [
            (TAKEN_WITH.to_owned(), snapshot_id.to_owned()),
            (TAKEN_OF.to_owned(), v.pv.clone()),
        ]
        .into();
        let taken_at = Utc::now();
        let s = provider.take(&v.disk_id, &tags).await?;
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
