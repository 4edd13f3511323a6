//! Cloud disk snapshots: the one part of `cloud/` that *changes* the cloud. A cluster
//! snapshot takes a cloud snapshot of every volume whose data policy asks for one; a
//! restore creates a new disk from it; retention deletes the ones no kept cluster
//! snapshot names. Providers implement [`DiskSnapshots`]: the simulated cloud (over
//! `/sim/v1/cloud/…`) and AWS (EBS `CreateSnapshot`, `CreateVolume`,
//! `EnableFastSnapshotRestores`, `DeleteSnapshot`, in [`super::aws`]).
//!
//! A restored disk is tagged [`RESTORED_FOR`] with the restore it belongs to and the PV,
//! so a re-run (after a crash) finds it instead of creating a second one.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::CloudChoice;
use super::sim::wire::{self, CloudState};

/// The simulated cloud's write requests (`/sim/v1/cloud/…`), as its API documents them.
mod request {
    use std::collections::BTreeMap;

    use serde::Serialize;

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct CreateSnapshot {
        pub disk_id: String,
        pub tags: BTreeMap<String, String>,
    }

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct CreateDisk {
        pub from_snapshot: String,
        pub zone: String,
        pub tags: BTreeMap<String, String>,
    }

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct FastRestore {
        pub zones: Vec<String>,
    }
}
use request::{CreateDisk, CreateSnapshot, FastRestore};

/// How long the simulated cloud hydrates each GiB of a disk restored from a snapshot (its
/// published rate; it stands for hours on a real cloud).
const SIM_HYDRATION_MS_PER_GIB: u64 = 200;

/// Tag on a disk restored from a snapshot: `<restore>/<pv>` (`<snapshot id>/<pv>` for a
/// restore, `drill-<id>/<pv>` for a drill).
pub const RESTORED_FOR: &str = "coldstart.dev/restored-for";
/// Tag on a cloud snapshot: the cluster snapshot it was taken with.
pub const TAKEN_WITH: &str = "coldstart.dev/snapshot";
/// Tag on a cloud snapshot: the PV whose disk it copies.
pub const TAKEN_OF: &str = "coldstart.dev/pv";

/// A snapshot the cloud took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenSnapshot {
    pub id: String,
    pub size_gib: Option<u64>,
}

/// Create a disk from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    pub snapshot: String,
    pub zone: String,
    /// The [`RESTORED_FOR`] tag: which restore, which PV.
    pub restored_for: String,
    /// Enable Fast Snapshot Restore for the snapshot in the zone first.
    pub fast_restore: bool,
    /// AWS volume initialization rate (MiB/s), when configured.
    pub initialization_rate_mib_s: Option<u32>,
}

impl RestoreRequest {
    /// The tags the restored disk is created with: the one home of what marks a disk as
    /// this restore's, for every provider.
    pub fn disk_tags(&self) -> BTreeMap<String, String> {
        [(RESTORED_FOR.to_owned(), self.restored_for.clone())].into()
    }

    /// Whether a disk created from `from_snapshot` with `tags` is this request's, made by an
    /// earlier run of the same restore.
    pub fn made(&self, from_snapshot: Option<&str>, tags: &BTreeMap<String, String>) -> bool {
        from_snapshot == Some(self.snapshot.as_str())
            && tags.get(RESTORED_FOR) == Some(&self.restored_for)
    }
}

/// A disk created from a snapshot (or found, created by an earlier run of the same
/// restore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoredDisk {
    pub disk_id: String,
    /// False when an earlier run of the same restore had created it.
    pub created: bool,
    /// How long it hydrates from now (zero: hydrated, as with Fast Snapshot Restore).
    pub hydration_ms: u64,
}

/// Where a disk restored from a snapshot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hydration {
    pub hydrating: bool,
    /// Remaining, as the cloud says or estimates it.
    pub remaining_ms: u64,
}

/// Whether a disk restored from a snapshot holds the snapshot's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "detail")]
pub enum DataCheck {
    Matches,
    Differs(String),
    /// The cloud cannot read a disk without attaching it (AWS): a scratch workload must.
    Unverifiable(String),
}

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("failed to {action} on the {provider} cloud: {detail}")]
    Call {
        provider: &'static str,
        action: String,
        detail: String,
    },
    #[error(
        "failed to {0}: no cloud can take or restore disk snapshots with --cloud none; pass --cloud aws (or sim on a simulated cluster)"
    )]
    NoProvider(String),
}

/// Takes, restores and deletes cloud snapshots of disks.
pub trait DiskSnapshots: Send + Sync {
    fn name(&self) -> &'static str;
    /// Snapshot `disk` now, tagged with `tags`.
    fn take<'a>(
        &'a self,
        disk: &'a str,
        tags: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<TakenSnapshot, SnapshotError>>;
    /// Delete a snapshot; `Ok(false)` when it was already gone.
    fn delete<'a>(&'a self, snapshot: &'a str) -> BoxFuture<'a, Result<bool, SnapshotError>>;
    /// Create (or find, on a re-run) the disk a restore brings a volume back on.
    fn restore<'a>(
        &'a self,
        req: &'a RestoreRequest,
    ) -> BoxFuture<'a, Result<RestoredDisk, SnapshotError>>;
    /// Whether a restored disk still hydrates.
    fn hydration<'a>(&'a self, disk: &'a str) -> BoxFuture<'a, Result<Hydration, SnapshotError>>;
    /// Whether `disk` holds the data of `snapshot` (a drill's data check).
    fn check_data<'a>(
        &'a self,
        disk: &'a str,
        snapshot: &'a str,
    ) -> BoxFuture<'a, Result<DataCheck, SnapshotError>>;
}

/// The estimated hydration time of a disk of `size_gib` restored from a snapshot on
/// `provider` (pure; the plan and `--dry-run` show it). AWS lazy loading without Fast
/// Snapshot Restore or an initialization rate is assumed at [`AWS_LAZY_LOAD_MIB_S`].
pub fn hydration_estimate(
    provider: &str,
    size_gib: u64,
    fast_restore: bool,
    initialization_rate_mib_s: Option<u32>,
) -> Duration {
    if fast_restore {
        return Duration::ZERO;
    }
    match provider {
        "sim" => Duration::from_millis(size_gib.saturating_mul(SIM_HYDRATION_MS_PER_GIB)),
        _ => {
            let rate = u64::from(initialization_rate_mib_s.unwrap_or(AWS_LAZY_LOAD_MIB_S)).max(1);
            Duration::from_secs(size_gib.saturating_mul(1024) / rate)
        }
    }
}

/// Effective throughput of reading a whole EBS volume restored from a snapshot by lazy
/// loading (first touch of every block fetched from S3): field reports put it in the tens
/// of MiB/s, which is why a multi-TiB Kafka disk ran slow for hours. A planning figure,
/// not a promise; an initialization rate (100–300 MiB/s) replaces it when configured.
pub const AWS_LAZY_LOAD_MIB_S: u32 = 40;

/// The snapshot provider for `provider` (None for `none`; `auto` is the simulated cloud
/// on a simulated cluster, else none).
pub async fn provider(
    provider: CloudChoice,
    client: Option<kube::Client>,
) -> Option<Box<dyn DiskSnapshots>> {
    match provider {
        CloudChoice::Aws => Some(Box::new(super::aws::AwsSnapshots::from_env().await)),
        CloudChoice::Sim => {
            client.map(|c| Box::new(SimSnapshots::new(c)) as Box<dyn DiskSnapshots>)
        }
        CloudChoice::None => None,
        CloudChoice::Auto => match client {
            Some(c) if super::sim::is_simulated(&c).await => Some(Box::new(SimSnapshots::new(c))),
            _ => None,
        },
    }
}

/// The simulated cloud's snapshots, through the cluster connection.
#[derive(Clone)]
pub struct SimSnapshots {
    client: kube::Client,
}

impl SimSnapshots {
    pub fn new(client: kube::Client) -> Self {
        SimSnapshots { client }
    }

    async fn call(
        &self,
        action: &str,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Option<String>, SnapshotError> {
        let err = |detail: String| SnapshotError::Call {
            provider: "sim",
            action: action.to_owned(),
            detail,
        };
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| err(e.to_string()))?;
        match self.client.request_text(req).await {
            Ok(t) => Ok(Some(t)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(kube::Error::Api(s)) => Err(err(s.message)),
            Err(e) => Err(err(e.to_string())),
        }
    }

    async fn state(&self) -> Result<CloudState, SnapshotError> {
        let text = self
            .call(
                "read the cloud",
                http::Method::GET,
                "/sim/v1/cloud",
                Vec::new(),
            )
            .await?
            // A 404 (no simulated cloud here) is an empty answer, refused as such below.
            .unwrap_or_default();
        serde_json::from_str(&text).map_err(|e| SnapshotError::Call {
            provider: "sim",
            action: "read the cloud".into(),
            detail: e.to_string(),
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    action: &str,
    text: Option<String>,
) -> Result<T, SnapshotError> {
    let err = |detail: String| SnapshotError::Call {
        provider: "sim",
        action: action.to_owned(),
        detail,
    };
    let text = text.ok_or_else(|| err("not found".into()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

fn body<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl DiskSnapshots for SimSnapshots {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn take<'a>(
        &'a self,
        disk: &'a str,
        tags: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<TakenSnapshot, SnapshotError>> {
        async move {
            let action = format!("snapshot disk {disk}");
            let req = CreateSnapshot {
                disk_id: disk.to_owned(),
                tags: tags.clone(),
            };
            let out = self
                .call(
                    &action,
                    http::Method::POST,
                    "/sim/v1/cloud/snapshots",
                    body(&req),
                )
                .await?;
            let snap: wire::DiskSnapshot = decode(&action, out)?;
            Ok(TakenSnapshot {
                id: snap.id,
                size_gib: Some(snap.size_gib),
            })
        }
        .boxed()
    }

    fn delete<'a>(&'a self, snapshot: &'a str) -> BoxFuture<'a, Result<bool, SnapshotError>> {
        async move {
            let out = self
                .call(
                    &format!("delete snapshot {snapshot}"),
                    http::Method::DELETE,
                    &format!("/sim/v1/cloud/snapshots/{snapshot}"),
                    Vec::new(),
                )
                .await?;
            Ok(out.is_some())
        }
        .boxed()
    }

    fn restore<'a>(
        &'a self,
        req: &'a RestoreRequest,
    ) -> BoxFuture<'a, Result<RestoredDisk, SnapshotError>> {
        async move {
            let now = chrono::Utc::now();
            let cloud = self.state().await?;
            if let Some(d) = cloud
                .disks
                .values()
                .find(|d| req.made(d.from_snapshot.as_deref(), &d.tags))
            {
                return Ok(RestoredDisk {
                    disk_id: d.id.clone(),
                    created: false,
                    hydration_ms: d.hydration_left_ms(now),
                });
            }
            if req.fast_restore {
                let action = format!("enable fast snapshot restore for {}", req.snapshot);
                let out = self
                    .call(
                        &action,
                        http::Method::POST,
                        &format!("/sim/v1/cloud/snapshots/{}/fast-restore", req.snapshot),
                        body(&FastRestore {
                            zones: vec![req.zone.clone()],
                        }),
                    )
                    .await?;
                decode::<serde_json::Value>(&action, out)?;
            }
            let action = format!("create a disk from snapshot {}", req.snapshot);
            let create = CreateDisk {
                from_snapshot: req.snapshot.clone(),
                zone: req.zone.clone(),
                tags: req.disk_tags(),
            };
            let out = self
                .call(
                    &action,
                    http::Method::POST,
                    "/sim/v1/cloud/disks",
                    body(&create),
                )
                .await?;
            let d: wire::Disk = decode(&action, out)?;
            Ok(RestoredDisk {
                hydration_ms: d.hydration_left_ms(chrono::Utc::now()),
                disk_id: d.id,
                created: true,
            })
        }
        .boxed()
    }

    fn hydration<'a>(&'a self, disk: &'a str) -> BoxFuture<'a, Result<Hydration, SnapshotError>> {
        async move {
            let cloud = self.state().await?;
            let d = cloud.disks.get(disk).ok_or_else(|| SnapshotError::Call {
                provider: "sim",
                action: format!("read the hydration of disk {disk}"),
                detail: "no such disk".into(),
            })?;
            let remaining_ms = d.hydration_left_ms(chrono::Utc::now());
            Ok(Hydration {
                hydrating: remaining_ms > 0,
                remaining_ms,
            })
        }
        .boxed()
    }

    fn check_data<'a>(
        &'a self,
        disk: &'a str,
        snapshot: &'a str,
    ) -> BoxFuture<'a, Result<DataCheck, SnapshotError>> {
        async move { Ok(judge_data(&self.state().await?, disk, snapshot)) }.boxed()
    }
}

/// Judge a restored disk's data against its snapshot's (pure; the simulated cloud's data
/// tokens).
pub fn judge_data(cloud: &CloudState, disk: &str, snapshot: &str) -> DataCheck {
    let (Some(d), Some(s)) = (cloud.disks.get(disk), cloud.snapshots.get(snapshot)) else {
        return DataCheck::Differs(format!(
            "disk {disk} or snapshot {snapshot} does not exist in the cloud"
        ));
    };
    if d.data_token.is_empty() {
        DataCheck::Differs(format!("disk {disk} is empty"))
    } else if d.data_token != s.data_token {
        DataCheck::Differs(format!(
            "disk {disk} holds {:?}, snapshot {snapshot} {:?}",
            d.data_token, s.data_token
        ))
    } else {
        DataCheck::Matches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_snapshot_restore_means_no_hydration_and_a_rate_shortens_it() {
        assert_eq!(hydration_estimate("aws", 1024, true, None), Duration::ZERO);
        let lazy = hydration_estimate("aws", 1024, false, None);
        let rated = hydration_estimate("aws", 1024, false, Some(300));
        assert!(
            lazy > Duration::from_secs(3600 * 7),
            "1 TiB lazily: hours ({lazy:?})"
        );
        assert!(rated < lazy);
        assert_eq!(
            hydration_estimate("sim", 10, false, None),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn a_restored_disk_matches_only_the_data_of_its_snapshot() {
        let disk = |data: &str| serde_json::json!({"zone": "eu-west-1b", "data_token": data});
        let c: CloudState = serde_json::from_value(serde_json::json!({
            "disks": {"vol-restored": disk("tables@t1"), "vol-empty": disk(""),
                      "vol-later": disk("tables@t2")},
            "snapshots": {"snap-1": {"size_gib": 10, "data_token": "tables@t1"}},
        }))
        .expect("the simulated cloud's answer");
        assert_eq!(judge_data(&c, "vol-restored", "snap-1"), DataCheck::Matches);
        for (disk, why) in [
            ("vol-empty", "is empty"),
            ("vol-later", "holds"),
            ("vol-gone", "does not exist"),
        ] {
            assert!(
                matches!(judge_data(&c, disk, "snap-1"), DataCheck::Differs(ref w) if w.contains(why)),
                "{disk}"
            );
        }
    }
}
