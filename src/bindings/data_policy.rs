//! The data policy of a volume: how a cold start brings its data back. `transfer` reuses
//! the disk itself (fast, full speed at once; today's behaviour), `snapshot` restores it
//! from the newest cloud snapshot (the original stays untouched, but the new disk hydrates
//! lazily and runs slow for a while), `transfer-or-snapshot` reuses the disk when it is
//! there and healthy, else the snapshot.
//!
//! The policy is the claim's annotation [`DATA_POLICY`], else the cluster default
//! (`--data-policy`, `snapshot.dataPolicy` in the config). [`LATENCY_CRITICAL`] on the
//! claim marks a workload that cannot live with a hydrating disk. The snapshot records the
//! resolved policy and the cloud snapshot taken with it in each [`VolumeBinding`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::VolumeBinding;

/// PVC annotation naming the volume's data policy.
pub const DATA_POLICY: &str = "coldstart.dev/data-policy";
/// PVC annotation (`"true"`) marking a latency-critical volume: it waits for hydration
/// or gets a transferred disk.
pub const LATENCY_CRITICAL: &str = "coldstart.dev/latency-critical";

/// PVC annotation (`"true"`): a consistency hook around the volume's cloud snapshot — the
/// workloads that mount the claim are quiesced (scaled to 0, so the data store flushes
/// and stops on SIGTERM) before the snapshot and thawed (scaled back) after it.
pub const SNAPSHOT_QUIESCE: &str = "coldstart.dev/snapshot-quiesce";

/// How a cold start brings a volume's data back.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum DataPolicy {
    /// Reuse the disk itself.
    #[default]
    Transfer,
    /// Restore from the newest cloud snapshot, leaving the original untouched.
    Snapshot,
    /// Reuse the disk when it is there and healthy, else restore from the snapshot.
    TransferOrSnapshot,
}

impl DataPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DataPolicy::Transfer => "transfer",
            DataPolicy::Snapshot => "snapshot",
            DataPolicy::TransferOrSnapshot => "transfer-or-snapshot",
        }
    }

    /// Whether a snapshot of the cluster takes a cloud snapshot of the volume.
    pub fn wants_cloud_snapshot(self) -> bool {
        self != DataPolicy::Transfer
    }
}

impl std::str::FromStr for DataPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "transfer" => Ok(DataPolicy::Transfer),
            "snapshot" => Ok(DataPolicy::Snapshot),
            "transfer-or-snapshot" => Ok(DataPolicy::TransferOrSnapshot),
            other => Err(format!(
                "unknown data policy {other:?} (expected transfer, snapshot or transfer-or-snapshot)"
            )),
        }
    }
}

/// How a cloud snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotRoad {
    /// A CSI `VolumeSnapshot` of the claim with the driver's `VolumeSnapshotClass`.
    VolumeSnapshot,
    /// The cloud provider's API (EBS `CreateSnapshot`), where no class exists.
    Provider,
}

/// The cloud snapshot a cluster snapshot took of one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudSnapshot {
    /// The provider's snapshot id (`snap-…`), the CSI `snapshotHandle`.
    pub id: String,
    pub taken_at: DateTime<Utc>,
    pub size_gib: Option<u64>,
    pub road: SnapshotRoad,
    /// `namespace/name` of the `VolumeSnapshot`, on the Kubernetes-native road.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot: Option<String>,
}

/// What a claim says about its volume's data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimIntent {
    /// The annotation, as written (validated when applied).
    pub policy: Option<String>,
    pub latency_critical: bool,
    pub quiesce: bool,
}

/// The intent of one PVC, from its annotations.
pub fn claim_intent(pvc: &Value) -> ClaimIntent {
    let ann = |k: &str| {
        pvc.pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
    };
    ClaimIntent {
        policy: ann(DATA_POLICY).map(str::to_owned),
        latency_critical: ann(LATENCY_CRITICAL).is_some_and(|v| v.trim() == "true"),
        quiesce: ann(SNAPSHOT_QUIESCE).is_some_and(|v| v.trim() == "true"),
    }
}

/// A claim whose annotation names no policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PVC {claim}: annotation {DATA_POLICY}: {why}")]
pub struct InvalidPolicy {
    pub claim: String,
    pub why: String,
}

/// Give every volume its policy: its claim's annotation, else `default`. A claim that
/// names no known policy is an error (its owner asked for something; guessing could lose
/// the data they meant to protect).
pub fn resolve(
    volumes: &mut [VolumeBinding],
    claims: &BTreeMap<(String, String), ClaimIntent>,
    default: DataPolicy,
) -> Result<(), Vec<InvalidPolicy>> {
    let mut invalid = Vec::new();
    for v in volumes.iter_mut() {
        let intent = v
            .claim
            .as_ref()
            .and_then(|c| claims.get(&(c.namespace.clone(), c.name.clone())));
        v.data_policy = default;
        v.latency_critical = false;
        v.quiesce = false;
        let Some(intent) = intent else { continue };
        v.latency_critical = intent.latency_critical;
        v.quiesce = intent.quiesce;
        if let Some(p) = &intent.policy {
            match p.parse() {
                Ok(p) => v.data_policy = p,
                Err(why) => invalid.push(InvalidPolicy {
                    claim: v
                        .claim
                        .as_ref()
                        .map(|c| format!("{}/{}", c.namespace, c.name))
                        .unwrap_or_default(),
                    why,
                }),
            }
        }
    }
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(invalid)
    }
}

/// The claims' intents, from PVC objects.
pub fn claim_intents<'a>(
    pvcs: impl IntoIterator<Item = &'a Value>,
) -> BTreeMap<(String, String), ClaimIntent> {
    pvcs.into_iter()
        .filter_map(|p| {
            let ns = p.pointer("/metadata/namespace")?.as_str()?;
            let name = p.pointer("/metadata/name")?.as_str()?;
            Some(((ns.to_owned(), name.to_owned()), claim_intent(p)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{pv, pvc};

    fn binding(pv_name: &str, claim: &str) -> VolumeBinding {
        crate::bindings::volume_of(
            &pv(pv_name)
                .csi_disk("vol-1")
                .claimed_by("ns", claim)
                .build(),
        )
        .expect("a disk")
    }

    #[test]
    fn a_claims_annotation_wins_over_the_cluster_default() {
        let mut v = vec![binding("pv-a", "a"), binding("pv-b", "b")];
        let claims = claim_intents(&[
            pvc("ns", "a")
                .annotation(DATA_POLICY, "snapshot")
                .annotation(LATENCY_CRITICAL, "true")
                .build(),
            pvc("ns", "b").build(),
        ]);
        resolve(&mut v, &claims, DataPolicy::TransferOrSnapshot).expect("valid");
        assert_eq!(v[0].data_policy, DataPolicy::Snapshot);
        assert!(v[0].latency_critical);
        assert_eq!(v[1].data_policy, DataPolicy::TransferOrSnapshot);
        assert!(!v[1].latency_critical);
    }

    #[test]
    fn an_unknown_policy_is_an_error_naming_the_claim() {
        let mut v = vec![binding("pv-a", "a")];
        let claims = claim_intents(&[pvc("ns", "a").annotation(DATA_POLICY, "snapshots").build()]);
        let err = resolve(&mut v, &claims, DataPolicy::Transfer).expect_err("invalid");
        assert_eq!(err[0].claim, "ns/a");
        assert!(
            err[0]
                .to_string()
                .contains("unknown data policy \"snapshots\"")
        );
    }

    #[test]
    fn only_snapshot_policies_take_cloud_snapshots() {
        assert!(!DataPolicy::Transfer.wants_cloud_snapshot());
        assert!(DataPolicy::Snapshot.wants_cloud_snapshot());
        assert!(DataPolicy::TransferOrSnapshot.wants_cloud_snapshot());
    }
}
