//! Proving the restore: every restored claim Bound to its original disk, every LoadBalancer
//! Service on its recorded address, every bucket claim on its original bucket — and nothing
//! new: no disk, address or bucket the snapshot did not record.
//!
//! ```text
//!  observe (I/O: list PVs, PVCs, Services, bucket claims; every error propagated)
//!        ─▶ judge (pure: recorded × observed × cloud disks → Verification)
//!        ─▶ settled? else wait for the cluster to change, observe again (until timeout)
//!        ─▶ cloud ledger: what the cloud created since the restore's mark
//! ```
//!
//! The cluster-side count works on any cloud; where the cloud keeps a ledger the
//! [`CloudVerifier`] can read (the simulated cloud does), it is counted too.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use kube::api::ListParams;
use serde::Serialize;
use serde_json::Value;

use super::Recorded;
use crate::bindings::{self, BucketBinding, BucketKind};
use crate::cloud::{CloudVerifier, LedgerError};
use crate::k8s::{self, Resources};

/// The verification counts a restore reports.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Verification {
    pub volumes_expected: usize,
    pub volumes_reused: usize,
    /// Bound to the new disk its data policy restored from a cloud snapshot.
    pub volumes_from_snapshot: usize,
    pub ips_expected: usize,
    pub ips_reused: usize,
    pub buckets_expected: usize,
    pub buckets_reused: usize,
    pub new_disks: usize,
    pub new_ips: usize,
    pub new_buckets: usize,
    /// Whether a cloud ledger was consulted (the simulated cloud keeps one).
    pub cloud_ledger: bool,
    pub problems: Vec<String>,
    /// How many of `problems` no wait can fix (a recorded disk the cloud does not have).
    #[serde(skip)]
    pub permanent: usize,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && self.volumes_reused + self.volumes_from_snapshot == self.volumes_expected
            && self.ips_reused == self.ips_expected
            && self.buckets_reused == self.buckets_expected
            && self.new_disks == 0
            && self.new_ips == 0
            && self.new_buckets == 0
    }
}

/// Why verification could not look at the cluster or the cloud (as opposed to looking and
/// finding problems, which are in the [`Verification`]).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("failed to list {what} to verify the restore: {source}")]
    List {
        what: &'static str,
        source: kube::Error,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What the cluster showed in one pass: the objects verification judges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub persistent_volumes: Vec<Value>,
    pub claims: Vec<Value>,
    pub services: Vec<Value>,
    /// The objects of every bucket API bindings knows ([`bindings::BUCKET_APIS`]), each with
    /// its `apiVersion` and `kind` set.
    pub bucket_objects: Vec<Value>,
}

/// The objects of a kind `keep` wants, as JSON, listed page by page; a kind the cluster
/// does not serve (discovery says so) has none.
async fn list(
    client: &kube::Client,
    resources: &Resources,
    (api_version, kind): (&str, &str),
    what: &'static str,
    keep: impl FnMut(&Value) -> bool,
) -> Result<Vec<Value>, VerifyError> {
    let Some(api) = resources.api(client, api_version, kind, None) else {
        return Ok(Vec::new());
    };
    crate::k8s::list_kept(&api, &ListParams::default(), (api_version, kind), keep)
        .await
        .map_err(|source| VerifyError::List { what, source })
}

/// Look at the cluster once. A failed LIST is an error, never an empty list: "0 new disks"
/// must mean the disks were counted.
pub async fn observe(
    client: &kube::Client,
    resources: &Resources,
) -> Result<Observed, VerifyError> {
    Ok(Observed {
        persistent_volumes: list(
            client,
            resources,
            ("v1", "PersistentVolume"),
            "PersistentVolumes",
            |_| true,
        )
        .await?,
        claims: list(
            client,
            resources,
            ("v1", "PersistentVolumeClaim"),
            "PersistentVolumeClaims",
            |_| true,
        )
        .await?,
        // Only a Service with an address counts (`judge` reads nothing else of them), and
        // most of a big cluster's Services have none: they are not kept.
        services: list(client, resources, ("v1", "Service"), "Services", |svc| {
            address_of(svc).is_some()
        })
        .await?,
        bucket_objects: {
            let mut all = Vec::new();
            for api in bindings::BUCKET_APIS {
                let api_version = format!("{}/{}", api.group, api.version);
                all.extend(
                    list(
                        client,
                        resources,
                        (&api_version, api.kind),
                        "bucket objects",
                        |_| true,
                    )
                    .await?,
                );
            }
            all
        },
    })
}

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn is(o: &Value, namespace: Option<&str>, name: &str) -> bool {
    s(o, "/metadata/namespace") == namespace && s(o, "/metadata/name") == Some(name)
}

fn disk_of(pv: &Value) -> Option<String> {
    bindings::disk_id_of(pv).map(|d| bindings::disk_key(&d))
}

fn address_of(svc: &Value) -> Option<&str> {
    s(svc, "/status/loadBalancer/ingress/0/ip")
}

/// Each bucket object's binding, with the bucket it is on once its controller says it is
/// ready (bindings decides both, per API).
fn live_buckets(objects: &[Value]) -> Vec<(BucketBinding, Option<String>)> {
    objects
        .iter()
        .filter_map(|obj| {
            let (group, version) = s(obj, "/apiVersion")?.split_once('/')?;
            let kind = s(obj, "/kind")?;
            let api = bindings::BUCKET_APIS
                .iter()
                .find(|a| a.group == group && a.version == version && a.kind == kind)?;
            let b = bindings::bucket_of(api, obj)?;
            let on = bindings::bucket_ready(b.kind, obj)
                .then(|| b.bucket.clone())
                .flatten();
            Some((b, on))
        })
        .collect()
}

/// The kind name a recorded bucket carries.
fn bucket_label(kind: BucketKind) -> &'static str {
    match kind {
        BucketKind::CosiBucketClaim => "BucketClaim",
        BucketKind::RookObc => "ObjectBucketClaim",
        _ => "Bucket",
    }
}

/// Judge what was observed against what the snapshot recorded. `cloud_disks`, when the
/// cloud's inventory is known, also proves each recorded disk still exists. Pure.
pub fn judge(
    recorded: &Recorded,
    observed: &Observed,
    cloud_disks: Option<&BTreeSet<String>>,
) -> Verification {
    let mut v = Verification {
        volumes_expected: recorded
            .volumes
            .iter()
            .filter(|x| x.claim.is_some())
            .count(),
        ips_expected: recorded.addresses.len(),
        buckets_expected: recorded
            .buckets
            .iter()
            .map(|b| b.bucket.as_str())
            .collect::<HashSet<_>>()
            .len(),
        ..Default::default()
    };
    let recorded_disks: HashSet<String> = recorded
        .volumes
        .iter()
        .map(|x| bindings::disk_key(&x.disk))
        .collect();
    for rec in &recorded.volumes {
        let Some((ns, name)) = &rec.claim else {
            continue;
        };
        let Some(pvc) = observed
            .claims
            .iter()
            .find(|c| is(c, Some(ns.as_str()), name))
        else {
            v.problems.push(format!("PVC {ns}/{name} is missing"));
            continue;
        };
        let phase = s(pvc, "/status/phase").unwrap_or("Pending");
        let bound_to = s(pvc, "/spec/volumeName").unwrap_or("");
        let disk = observed
            .persistent_volumes
            .iter()
            .find(|p| s(p, "/metadata/name") == Some(bound_to))
            .and_then(disk_of);
        let want = bindings::disk_key(&rec.disk);
        let exists = cloud_disks.is_none_or(|d| d.contains(&want));
        if phase == "Bound" && disk.as_deref() == Some(want.as_str()) && exists {
            if rec.from_snapshot.is_some() {
                v.volumes_from_snapshot += 1;
            } else {
                v.volumes_reused += 1;
            }
        } else if !exists {
            v.permanent += 1;
            v.problems.push(format!(
                "PVC {ns}/{name}: disk {} no longer exists in the cloud (deleted with the old cluster?)",
                rec.disk
            ));
        } else {
            v.problems.push(format!(
                "PVC {ns}/{name} is {phase} on {} (disk {}), expected disk {}",
                if bound_to.is_empty() {
                    "no volume"
                } else {
                    bound_to
                },
                disk.as_deref().unwrap_or("none"),
                rec.disk
            ));
        }
    }
    v.new_disks = observed
        .persistent_volumes
        .iter()
        .filter_map(disk_of)
        .filter(|h| !recorded_disks.contains(h))
        .count();
    let recorded_ips: HashSet<&str> = recorded.addresses.iter().map(|a| a.ip.as_str()).collect();
    for rec in &recorded.addresses {
        let ip = observed
            .services
            .iter()
            .find(|svc| is(svc, Some(rec.namespace.as_str()), &rec.name))
            .and_then(address_of);
        if ip == Some(rec.ip.as_str()) {
            v.ips_reused += 1;
        } else {
            v.problems.push(format!(
                "Service {}/{} answers on {}, expected {}",
                rec.namespace,
                rec.name,
                ip.unwrap_or("no address yet"),
                rec.ip
            ));
        }
    }
    v.new_ips = observed
        .services
        .iter()
        .filter_map(address_of)
        .filter(|ip| !recorded_ips.contains(ip))
        .count();
    let recorded_buckets: HashSet<&str> =
        recorded.buckets.iter().map(|b| b.bucket.as_str()).collect();
    // Every bucket object bindings knows, each with the bucket it is on once its
    // controller says it is ready.
    let live = live_buckets(&observed.bucket_objects);
    // Counted per cloud bucket, not per object: a COSI claim and its Bucket object are one
    // bucket (the report says how many of the cloud's buckets came back).
    let mut reused: HashSet<&str> = HashSet::new();
    for rec in &recorded.buckets {
        let found = live
            .iter()
            .filter(|(b, _)| {
                bucket_label(b.kind) == rec.kind
                    && b.namespace == rec.namespace
                    && b.name == rec.name
            })
            .map(|(_, on)| on.clone())
            .max();
        match found.flatten() {
            Some(b) if b == rec.bucket => {
                reused.insert(rec.bucket.as_str());
            }
            other => v.problems.push(format!(
                "{} {}{} is on {}, expected bucket {}",
                rec.kind,
                rec.namespace
                    .as_deref()
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default(),
                rec.name,
                other.as_deref().unwrap_or("no bucket yet"),
                rec.bucket
            )),
        }
    }
    v.buckets_reused = reused.len();
    // A COSI Bucket object is its claim's bucket, counted through the claim.
    v.new_buckets = live
        .iter()
        .filter(|(b, _)| b.kind != BucketKind::CosiBucket)
        .filter_map(|(_, on)| on.as_deref())
        .filter(|b| !recorded_buckets.contains(b))
        .count();
    v
}

/// Verification looks again whenever a watched object changes; without any change it still
/// looks this often, as a safety net against a missed event (a watch that was restarting).
const QUIET_RECHECK: Duration = Duration::from_secs(2);

/// Watches on every kind verification judges (those the cluster serves): a change to any
/// of them is when the verdict can change.
fn changes(client: &kube::Client, resources: &Resources) -> k8s::wait::Changes {
    let mut kinds: Vec<(String, &str)> = vec![
        ("v1".into(), "PersistentVolume"),
        ("v1".into(), "PersistentVolumeClaim"),
        ("v1".into(), "Service"),
    ];
    kinds.extend(
        bindings::BUCKET_APIS
            .iter()
            .map(|a| (format!("{}/{}", a.group, a.version), a.kind)),
    );
    k8s::wait::Changes::of(
        kinds
            .iter()
            .filter_map(|(av, kind)| resources.api(client, av, kind, None))
            .collect(),
    )
}

/// Verify, observing again until everything matched or `timeout` passed; then count what
/// the cloud created since `mark` (a ledger position read before the restore's first
/// write) when the cloud keeps a ledger.
pub async fn verify(
    client: &kube::Client,
    resources: &Resources,
    recorded: &Recorded,
    cloud: &dyn CloudVerifier,
    mark: Option<u64>,
    timeout: Duration,
) -> Result<Verification, VerifyError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let cloud_disks = cloud.ledger().await?.map(|l| l.disks);
    let mut changed = changes(client, resources);
    let mut v = loop {
        let v = judge(
            recorded,
            &observe(client, resources).await?,
            cloud_disks.as_ref(),
        );
        // A disk the cloud does not have will not appear by waiting: stop as soon as
        // nothing else is outstanding.
        let settled = v.problems.len() == v.permanent;
        let now = tokio::time::Instant::now();
        if settled || now >= deadline {
            break v;
        }
        changed
            .next(QUIET_RECHECK.min(deadline.saturating_duration_since(now)))
            .await;
    };
    if let Some(mark) = mark
        && let Some(ledger) = cloud.ledger().await?
    {
        let n = ledger.created_since(mark);
        v.cloud_ledger = true;
        v.new_disks = v.new_disks.max(n.disks);
        v.new_ips = v.new_ips.max(n.ips);
        v.new_buckets = v.new_buckets.max(n.buckets);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::{RecordedAddress, RecordedBucket, RecordedVolume};
    use crate::testing::{bucket_claim, lb_service, pv, pvc};

    fn recorded() -> Recorded {
        Recorded {
            volumes: vec![RecordedVolume {
                pv: "pv-data".into(),
                disk: "aws://eu-west-1a/vol-1".into(),
                claim: Some(("db".into(), "data".into())),
                from_snapshot: None,
            }],
            addresses: vec![RecordedAddress {
                namespace: "edge".into(),
                name: "mqtt".into(),
                ip: "203.0.113.7".into(),
                allocation_id: None,
                hostnames: vec![],
            }],
            buckets: vec![RecordedBucket {
                kind: "BucketClaim".into(),
                namespace: Some("media".into()),
                name: "uploads".into(),
                bucket: "uploads-1a2b".into(),
            }],
        }
    }

    /// The cluster exactly as recorded: claim bound to its disk, Service on its address,
    /// bucket claim on its bucket.
    fn as_recorded() -> Observed {
        Observed {
            persistent_volumes: vec![pv("pv-data").csi_disk("vol-1").build()],
            claims: vec![pvc("db", "data").bound_to("pv-data").build()],
            services: vec![lb_service("edge", "mqtt").ingress_ip("203.0.113.7").build()],
            bucket_objects: vec![
                bucket_claim("media", "uploads")
                    .ready_on("uploads-1a2b")
                    .build(),
            ],
        }
    }

    #[test]
    fn judge_table() {
        let disks = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        type Case = (
            &'static str,
            Observed,
            Option<BTreeSet<String>>,
            bool,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "everything as recorded is verified",
                as_recorded(),
                None,
                true,
                "",
            ),
            (
                "everything as recorded and the disk still in the cloud",
                as_recorded(),
                Some(disks(&["vol-1", "vol-other"])),
                true,
                "",
            ),
            (
                "a recorded disk gone from the cloud fails",
                as_recorded(),
                Some(disks(&["vol-other"])),
                false,
                "no longer exists in the cloud",
            ),
            (
                "a missing claim fails",
                Observed {
                    claims: vec![],
                    ..as_recorded()
                },
                None,
                false,
                "PVC db/data is missing",
            ),
            (
                "a claim still pending fails and says so",
                Observed {
                    claims: vec![pvc("db", "data").build()],
                    ..as_recorded()
                },
                None,
                false,
                "PVC db/data is Pending on no volume",
            ),
            (
                "a claim bound to a new disk fails and counts a new disk",
                Observed {
                    persistent_volumes: vec![
                        pv("pv-data").csi_disk("vol-1").build(),
                        pv("pv-new").csi_disk("vol-9").build(),
                    ],
                    claims: vec![pvc("db", "data").bound_to("pv-new").build()],
                    ..as_recorded()
                },
                None,
                false,
                "expected disk aws://eu-west-1a/vol-1",
            ),
            (
                "a Service on another address fails",
                Observed {
                    services: vec![
                        lb_service("edge", "mqtt")
                            .ingress_ip("198.51.100.1")
                            .build(),
                    ],
                    ..as_recorded()
                },
                None,
                false,
                "answers on 198.51.100.1, expected 203.0.113.7",
            ),
            (
                "a Service without an address yet fails",
                Observed {
                    services: vec![lb_service("edge", "mqtt").build()],
                    ..as_recorded()
                },
                None,
                false,
                "answers on no address yet",
            ),
            (
                "a bucket claim not ready yet fails",
                Observed {
                    bucket_objects: vec![bucket_claim("media", "uploads").build()],
                    ..as_recorded()
                },
                None,
                false,
                "is on no bucket yet",
            ),
            (
                "an extra LoadBalancer on a new address is something new",
                Observed {
                    services: vec![
                        lb_service("edge", "mqtt").ingress_ip("203.0.113.7").build(),
                        lb_service("edge", "new").ingress_ip("198.51.100.9").build(),
                    ],
                    ..as_recorded()
                },
                None,
                false,
                "",
            ),
        ];
        for (name, observed, cloud, ok, problem) in cases {
            let v = judge(&recorded(), &observed, cloud.as_ref());
            assert_eq!(v.ok(), ok, "{name}: {v:#?}");
            if !problem.is_empty() {
                assert!(
                    v.problems.iter().any(|p| p.contains(problem)),
                    "{name}: {:?}",
                    v.problems
                );
            }
        }
    }

    #[test]
    fn new_disks_addresses_and_buckets_are_counted_from_what_the_snapshot_did_not_record() {
        let observed = Observed {
            persistent_volumes: vec![
                pv("pv-data").csi_disk("vol-1").build(),
                pv("pv-a").csi_disk("vol-8").build(),
                pv("pv-b").ebs_volume("aws://eu-west-1a/vol-9").build(),
            ],
            services: vec![
                lb_service("edge", "mqtt").ingress_ip("203.0.113.7").build(),
                lb_service("edge", "new").ingress_ip("198.51.100.9").build(),
            ],
            bucket_objects: vec![
                bucket_claim("media", "uploads")
                    .ready_on("uploads-1a2b")
                    .build(),
                bucket_claim("media", "thumbs")
                    .ready_on("thumbs-new")
                    .build(),
            ],
            ..as_recorded()
        };
        let v = judge(&recorded(), &observed, None);
        assert_eq!((v.new_disks, v.new_ips, v.new_buckets), (2, 1, 1));
        assert_eq!(
            (v.volumes_reused, v.ips_reused, v.buckets_reused),
            (1, 1, 1)
        );
    }

    #[test]
    fn a_disk_new_by_data_policy_is_counted_from_snapshot_never_as_new() {
        let mut rec = recorded();
        rec.volumes[0].disk = "vol-restored".into();
        rec.volumes[0].from_snapshot = Some("snap-1".into());
        let mut seen = as_recorded();
        seen.persistent_volumes = vec![pv("pv-data").csi_disk("vol-restored").build()];
        let cloud: BTreeSet<String> = ["vol-restored".to_owned()].into();
        let v = judge(&rec, &seen, Some(&cloud));
        assert!(v.ok(), "{v:#?}");
        assert_eq!(
            (v.volumes_reused, v.volumes_from_snapshot, v.new_disks),
            (0, 1, 0)
        );
        // The same new disk without the policy's record is one nobody asked for.
        let v = judge(&recorded(), &seen, Some(&cloud));
        assert!(!v.ok());
        assert_eq!(v.new_disks, 1);
    }
}
