//! The cluster a restore writes into: is it the cluster the snapshot came from, a fresh
//! one, one a restore of this snapshot already began in, or some other live cluster? A
//! restore into another cluster's live objects is the one mistake that turns an incident
//! into two, so it is refused unless the operator names what they accept.
//!
//! Observe ([`observe`]: kube-system's UID, the namespaces, where coldstart itself runs, the
//! restore record), then judge ([`judge`], pure, table-tested). Also used by `serve` to tell
//! a cold start from a warm one ([`is_cold`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::snapshot::format::ClusterIdentity;

/// Namespaces every cluster has from birth: their presence says nothing about workloads.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// The label coldstart's own Deployment carries (deploy/base), so the namespace it runs in
/// is recognised as its own even without `POD_NAMESPACE`.
pub const OWN_LABEL: &str = "app.kubernetes.io/name=coldstart";

/// Where a pod learns its namespace without the downward API.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The target cluster as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Target {
    /// UID of kube-system (a rebuilt cluster has a new one).
    pub uid: String,
    /// Namespaces holding workloads: not system ones and not coldstart's own.
    pub user_namespaces: Vec<String>,
    /// The snapshot a restore recorded as begun here (kube-system/coldstart-restore).
    pub restoring: Option<String>,
    /// That record's phase.
    pub phase: Option<String>,
}

/// What the operator accepts by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consent {
    /// The name of the cluster the operator knowingly restores from (`--from-cluster`).
    pub from_cluster: Option<String>,
    /// Restore into a cluster that already holds workloads (`--into-non-empty`).
    pub into_non_empty: bool,
    /// This cluster's name (`--cluster-name` or the kubeconfig's), if known.
    pub target_name: Option<String>,
}

/// Why a restore into this target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the snapshot is of cluster {snapshot:?} and this is {target:?}: pass --from-cluster {snapshot} to restore it here anyway"
    )]
    OtherCluster { snapshot: String, target: String },
    #[error(
        "this cluster is not empty (namespaces {}) and is not the cluster the snapshot was taken from: pass --into-non-empty to restore into it anyway",
        .namespaces.join(", ")
    )]
    NonEmpty { namespaces: Vec<String> },
}

/// Observe the target cluster. `own` names coldstart's namespace when known.
pub async fn observe(client: &kube::Client, own: Option<&str>) -> Result<Target, kube::Error> {
    let ns_api = Api::<Namespace>::all(client.clone());
    let uid = ns_api
        .get("kube-system")
        .await?
        .metadata
        .uid
        .unwrap_or_default();
    let namespaces: Vec<String> = ns_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let mut owned: BTreeSet<String> = Api::<Deployment>::all(client.clone())
        .list(&ListParams::default().labels(OWN_LABEL))
        .await?
        .items
        .into_iter()
        .filter_map(|d| d.metadata.namespace)
        .collect();
    owned.extend(own.map(str::to_owned));
    if let Ok(ns) = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE) {
        owned.insert(ns.trim().to_owned());
    }
    let record: Option<BTreeMap<String, String>> =
        Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
            .get_opt(super::STATE_CONFIGMAP)
            .await?
            .and_then(|c| c.data);
    Ok(Target {
        uid,
        user_namespaces: namespaces
            .into_iter()
            .filter(|n| !SYSTEM_NAMESPACES.contains(&n.as_str()) && !owned.contains(n))
            .collect(),
        restoring: record.as_ref().and_then(|r| r.get("snapshot").cloned()),
        phase: record.and_then(|r| r.get("phase").cloned()),
    })
}

/// Judge (pure) whether snapshot `id` of `source` may be restored into `target`.
///
/// Allowed without consent: the cluster the snapshot came from (same kube-system UID:
/// existing objects are kept), a cluster a restore of this snapshot already began in (a
/// resumed restore), and an empty cluster whose name matches the snapshot's.
pub fn judge(
    id: &str,
    source: &ClusterIdentity,
    target: &Target,
    consent: &Consent,
) -> Vec<Refusal> {
    let same_cluster = !source.uid.is_empty() && source.uid == target.uid;
    let resuming = target.restoring.as_deref() == Some(id);
    if same_cluster || resuming {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(name) = &consent.target_name
        && *name != source.name
        && consent.from_cluster.as_deref() != Some(source.name.as_str())
    {
        out.push(Refusal::OtherCluster {
            snapshot: source.name.clone(),
            target: name.clone(),
        });
    }
    if !target.user_namespaces.is_empty() && !consent.into_non_empty {
        out.push(Refusal::NonEmpty {
            namespaces: target.user_namespaces.clone(),
        });
    }
    out
}

/// Whether `target` is a cold start for the newest snapshot `source` of this cluster: a
/// restore began and did not verify, or the cluster is not the one the snapshot came from
/// and holds no workloads.
pub fn is_cold(source: &ClusterIdentity, target: &Target) -> bool {
    match target.phase.as_deref() {
        Some("verified") => false,
        Some(_) => true,
        None => {
            (source.uid.is_empty() || source.uid != target.uid) && target.user_namespaces.is_empty()
        }
    }
}

/// Why a restore did not start.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("failed to inspect the target cluster before restoring: {0}")]
    Observe(#[source] kube::Error),
    #[error(
        "failed to restore snapshot {id}: refused before any write: {}",
        .reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Refused { id: String, reasons: Vec<Refusal> },
}

/// Observe the target and refuse, naming every reason, unless the restore is allowed.
pub async fn check(
    client: &kube::Client,
    id: &str,
    source: &ClusterIdentity,
    consent: &Consent,
) -> Result<Target, TargetError> {
    let target = observe(client, None).await.map_err(TargetError::Observe)?;
    let reasons = judge(id, source, &target, consent);
    if reasons.is_empty() {
        Ok(target)
    } else {
        Err(TargetError::Refused {
            id: id.to_owned(),
            reasons,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> ClusterIdentity {
        ClusterIdentity {
            name: "prod".into(),
            uid: "uid-a".into(),
            server: "https://a".into(),
        }
    }

    fn target(uid: &str, namespaces: &[&str], restoring: Option<&str>) -> Target {
        Target {
            uid: uid.into(),
            user_namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
            restoring: restoring.map(str::to_owned),
            phase: restoring.map(|_| "restoring".to_owned()),
        }
    }

    fn consent(name: &str, from: Option<&str>, non_empty: bool) -> Consent {
        Consent {
            from_cluster: from.map(str::to_owned),
            into_non_empty: non_empty,
            target_name: Some(name.to_owned()),
        }
    }

    #[test]
    fn a_restore_into_another_live_cluster_is_refused_unless_each_reason_is_accepted_by_name() {
        let kinds = |r: Vec<Refusal>| {
            r.iter()
                .map(|r| match r {
                    Refusal::OtherCluster { .. } => "other-cluster",
                    Refusal::NonEmpty { .. } => "non-empty",
                })
                .collect::<Vec<_>>()
        };
        let cases: [(&str, Target, Consent, &[&str]); 8] = [
            (
                "a fresh cluster of the same name",
                target("uid-b", &[], None),
                consent("prod", None, false),
                &[],
            ),
            (
                "the cluster it came from, live",
                target("uid-a", &["shop"], None),
                consent("prod", None, false),
                &[],
            ),
            (
                "resuming this snapshot's restore",
                target("uid-b", &["shop"], Some("s1")),
                consent("prod", None, false),
                &[],
            ),
            (
                "another live cluster",
                target("uid-b", &["shop"], None),
                consent("staging", None, false),
                &["other-cluster", "non-empty"],
            ),
            (
                "another cluster, named",
                target("uid-b", &[], None),
                consent("staging", Some("prod"), false),
                &[],
            ),
            (
                "another cluster, the wrong name given",
                target("uid-b", &[], None),
                consent("staging", Some("dev"), false),
                &["other-cluster"],
            ),
            (
                "a non-empty rebuilt cluster",
                target("uid-b", &["shop"], None),
                consent("prod", None, false),
                &["non-empty"],
            ),
            (
                "a non-empty cluster, accepted",
                target("uid-b", &["shop"], None),
                consent("prod", None, true),
                &[],
            ),
        ];
        for (name, t, c, want) in cases {
            assert_eq!(kinds(judge("s1", &source(), &t, &c)), want, "{name}");
        }
        let msg = judge(
            "s1",
            &source(),
            &target("uid-b", &["shop"], None),
            &consent("staging", None, false),
        )
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
        assert!(
            msg.contains("--from-cluster prod")
                && msg.contains("--into-non-empty")
                && msg.contains("shop"),
            "{msg}"
        );
    }

    #[test]
    fn a_cold_start_is_told_from_the_cluster_not_from_a_namespace_name() {
        let with_phase = |phase: &str| Target {
            phase: Some(phase.to_owned()),
            ..target("uid-b", &["shop"], None)
        };
        let cases = [
            ("a rebuilt empty cluster", target("uid-b", &[], None), true),
            (
                "the live cluster the snapshot came from",
                target("uid-a", &[], None),
                false,
            ),
            (
                "a rebuilt cluster already holding workloads",
                target("uid-b", &["shop"], None),
                false,
            ),
            ("an interrupted restore", with_phase("restoring"), true),
            ("a failed restore", with_phase("failed"), true),
            ("a verified restore", with_phase("verified"), false),
        ];
        for (name, t, cold) in cases {
            assert_eq!(is_cold(&source(), &t), cold, "{name}");
        }
    }
}
