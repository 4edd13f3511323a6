use super::*;
use crate::bindings::{ClaimRef, LoadBalancerBinding, Pin, Provider, VolumeBinding};
use crate::restore::plan::{self as restore_plan, PlanOptions};
use crate::restore::{RecordedAddress, RecordedBucket, RecordedVolume};

fn volume(pv: &str, disk: &str, claim: Option<(&str, &str)>) -> VolumeBinding {
    VolumeBinding {
        pv: pv.into(),
        provider: Provider::Aws,
        csi_driver: "ebs.csi.aws.com".into(),
        source: "csi".into(),
        volume_handle: disk.into(),
        disk_id: disk.into(),
        zone: None,
        size: None,
        storage_class: None,
        reclaim_policy: Some("Retain".into()),
        claim: claim.map(|(ns, n)| ClaimRef {
            namespace: ns.into(),
            name: n.into(),
        }),
        fs_type: None,
        data_policy: Default::default(),
        latency_critical: false,
        quiesce: false,
        cloud_snapshot: None,
    }
}

fn service(ns: &str, name: &str, ip: &str) -> LoadBalancerBinding {
    LoadBalancerBinding {
        namespace: ns.into(),
        name: name.into(),
        pin: Some(Pin::LoadBalancerIp { address: ip.into() }),
        pinned: true,
        ingress_ips: vec![ip.into()],
        ingress_hostnames: vec![],
        dns_names: vec![],
        dns_targets: vec![],
        load_balancer_class: None,
    }
}

fn cosi(kind: BucketKind, ns: Option<&str>, name: &str, bucket: &str) -> BucketBinding {
    BucketBinding {
        kind,
        group: "objectstorage.k8s.io".into(),
        resource: if kind == BucketKind::CosiBucket {
            "buckets"
        } else {
            "bucketclaims"
        }
        .into(),
        namespace: ns.map(str::to_owned),
        name: name.into(),
        bucket: Some(bucket.into()),
        deletion_policy: None,
        adopted: true,
        bucket_class: None,
        management_policies: vec![],
    }
}

/// Builds the verdict list a cloud would give.
#[derive(Default)]
struct Cloud(Vec<Verdict>);

impl Cloud {
    fn says(mut self, kind: Kind, subject: &str, target: &str, status: Status) -> Self {
        self.0.push(Verdict {
            kind,
            subject: subject.into(),
            target: target.into(),
            status,
            reason: format!("the cloud says {}", status.as_str()),
            holders: vec![],
        });
        self
    }

    fn attached(mut self, subject: &str, target: &str, to: &str) -> Self {
        self = self.says(Kind::Volume, subject, target, Status::InUse);
        if let Some(v) = self.0.last_mut() {
            v.holders = vec![to.into()];
        }
        self
    }
}

fn deployment(ns: &str, name: &str, replicas: i64, labels: Value, pod: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"namespace": ns, "name": name},
           "spec": {"replicas": replicas,
                    "template": {"metadata": {"labels": labels}, "spec": pod}}})
}

fn mounts(claim: &str) -> Value {
    json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]})
}

/// The shop: a database on a claim, a web front on a pinned address, a bucket claim.
fn shop() -> (Bindings, Vec<Value>) {
    let bindings = Bindings {
        volumes: vec![
            volume("pv-db", "vol-db", Some(("shop", "db-data"))),
            volume("pv-cache", "vol-cache", Some(("shop", "cache-data"))),
        ],
        load_balancers: vec![service("shop", "web", "203.0.113.7")],
        buckets: vec![
            cosi(
                BucketKind::CosiBucketClaim,
                Some("shop"),
                "media",
                "shop-media",
            ),
            cosi(BucketKind::CosiBucket, None, "bc-123", "shop-media"),
        ],
    };
    let objects = vec![
        deployment("shop", "db", 1, json!({"app": "db"}), mounts("db-data")),
        deployment(
            "shop",
            "cache",
            2,
            json!({"app": "cache"}),
            mounts("cache-data"),
        ),
        deployment("shop", "web", 3, json!({"app": "web"}), json!({})),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"namespace": "shop", "name": "web"},
               "spec": {"type": "LoadBalancer", "selector": {"app": "web"}}}),
        json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "BucketClaim",
               "metadata": {"namespace": "shop", "name": "media"}, "spec": {}}),
        json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "Bucket",
               "metadata": {"name": "bc-123"}, "spec": {}}),
    ];
    (bindings, objects)
}

fn healthy() -> Cloud {
    Cloud::default()
        .says(Kind::Volume, "pv-db", "vol-db", Status::Ok)
        .says(Kind::Volume, "pv-cache", "vol-cache", Status::Ok)
        .says(Kind::Address, "shop/web", "203.0.113.7", Status::Ok)
        .says(
            Kind::Bucket,
            "BucketClaim shop/media",
            "shop-media",
            Status::Ok,
        )
}

fn run(cloud: Cloud, accept: &[&str]) -> Preflight {
    let (bindings, objects) = shop();
    let accept =
        AcceptMissing::from_flags(&accept.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    decide(
        "sim",
        &cloud.0,
        &bindings,
        &objects,
        &BTreeSet::new(),
        &accept,
    )
}

fn replace(mut cloud: Cloud, kind: Kind, subject: &str, status: Status) -> Cloud {
    for v in &mut cloud.0 {
        if v.kind == kind && v.subject == subject {
            v.status = status;
        }
    }
    cloud
}

fn held_names(p: &Preflight) -> Vec<String> {
    p.held.iter().map(|h| h.workload.display()).collect()
}

#[test]
fn a_healthy_cloud_refuses_nothing_and_holds_nothing() {
    let p = run(healthy(), &[]);
    assert!(p.refused().is_empty());
    assert!(!p.degraded());
    assert!(p.held.is_empty() && p.withheld.is_empty());
    assert!(p.table().contains("4 of 4 bindings ok"), "{}", p.table());
}

#[test]
fn a_missing_disk_nobody_accepted_refuses_the_run_naming_it() {
    let p = run(
        replace(healthy(), Kind::Volume, "pv-db", Status::Missing),
        &[],
    );
    let refused = p.refused();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0].target.as_str(), refused[0].problem),
        ("vol-db", Some(Problem::Missing))
    );
    let table = p.table();
    assert!(
        table.contains("REFUSED") && table.contains("vol-db"),
        "{table}"
    );
    assert!(table.contains("--accept-missing vol-db"), "{table}");
}

#[test]
fn an_accepted_missing_disk_holds_only_the_workloads_that_mount_its_claim() {
    for name in ["vol-db", "pv-db", "all"] {
        let p = run(
            replace(healthy(), Kind::Volume, "pv-db", Status::Missing),
            &[name],
        );
        assert!(p.refused().is_empty(), "accepted by {name}");
        assert_eq!(held_names(&p), ["Deployment shop/db"], "accepted by {name}");
        assert!(p.held[0].because[0].contains("vol-db"));
        assert_eq!(p.held_concerns(), BTreeSet::from([Kind::Volume]));
    }
}

#[test]
fn accepting_one_binding_does_not_accept_another() {
    let cloud = replace(
        replace(healthy(), Kind::Volume, "pv-db", Status::Missing),
        Kind::Volume,
        "pv-cache",
        Status::Missing,
    );
    let p = run(cloud, &["vol-db"]);
    assert_eq!(
        p.refused()
            .iter()
            .map(|r| r.target.as_str())
            .collect::<Vec<_>>(),
        ["vol-cache"]
    );
}

#[test]
fn a_disk_attached_to_a_node_of_this_cluster_is_fine_and_to_another_instance_is_attached_elsewhere()
{
    let (bindings, objects) = shop();
    let nodes = node_identities(&[json!({"metadata": {"name": "node-a"},
        "spec": {"providerID": "aws:///eu-west-1a/i-0aaa"}})]);
    let none = AcceptMissing::default();
    for (holder, problem) in [
        ("node-a", None),
        ("i-0aaa", None),
        ("i-0old", Some(Problem::AttachedElsewhere)),
    ] {
        let cloud = Cloud::default().attached("pv-db", "vol-db", holder);
        let p = decide("aws", &cloud.0, &bindings, &objects, &nodes, &none);
        assert_eq!(p.rows[0].problem, problem, "attached to {holder}");
        if problem.is_some() {
            assert!(p.rows[0].reason.contains(holder));
        }
    }
}

#[test]
fn an_address_held_by_another_load_balancer_is_attached_elsewhere() {
    let p = run(
        replace(healthy(), Kind::Address, "shop/web", Status::InUseElsewhere),
        &[],
    );
    assert_eq!(p.refused()[0].problem, Some(Problem::AttachedElsewhere));
}

#[test]
fn an_accepted_missing_address_withholds_its_service_and_holds_its_backends() {
    let p = run(
        replace(healthy(), Kind::Address, "shop/web", Status::Missing),
        &["203.0.113.7"],
    );
    assert_eq!(held_names(&p), ["Deployment shop/web"]);
    assert_eq!(
        p.withheld.iter().map(Withheld::display).collect::<Vec<_>>(),
        ["Service shop/web"]
    );
}

#[test]
fn an_accepted_missing_bucket_withholds_the_claim_and_the_cosi_bucket_naming_it() {
    let p = run(
        replace(
            healthy(),
            Kind::Bucket,
            "BucketClaim shop/media",
            Status::Missing,
        ),
        &["shop/media"],
    );
    assert!(p.refused().is_empty());
    assert_eq!(
        p.withheld.iter().map(Withheld::display).collect::<Vec<_>>(),
        ["BucketClaim shop/media", "Bucket bc-123"]
    );
}

#[test]
fn unverifiable_bindings_and_dns_records_are_shown_but_never_refuse() {
    let cloud = Cloud::default()
        .says(Kind::Volume, "pv-db", "vol-db", Status::Unverifiable)
        .says(Kind::Dns, "shop/web", "shop.example.com", Status::Missing)
        .says(
            Kind::Bucket,
            "BucketClaim shop/media",
            "shop-media",
            Status::Unprotected,
        );
    let p = run(cloud, &[]);
    assert!(p.refused().is_empty());
    let table = p.table();
    assert!(
        table.contains("unverifiable") && table.contains("unprotected"),
        "{table}"
    );
}

#[test]
fn the_plan_of_a_degraded_restore_keeps_held_workloads_at_zero_and_leaves_withheld_objects_out() {
    let cloud = replace(
        replace(healthy(), Kind::Volume, "pv-db", Status::Missing),
        Kind::Address,
        "shop/web",
        Status::Missing,
    );
    let p = run(cloud, &["all"]);
    let (_, objects) = shop();
    let mut plan = restore_plan::plan(objects, &Recorded::default(), &PlanOptions::default());
    p.hold(&mut plan);
    let all: Vec<_> = plan.tiers.values().flatten().collect();
    assert!(
        !all.iter().any(|x| x.kind == "Service"),
        "the Service is withheld"
    );
    let db = all.iter().find(|x| x.name == "db").expect("db planned");
    assert_eq!(db.object["spec"]["replicas"], 0);
    assert_eq!(db.object["metadata"]["annotations"][ORIGINAL_REPLICAS], "1");
    assert!(
        db.object["metadata"]["annotations"][HELD]
            .as_str()
            .is_some_and(|h| h.contains("vol-db"))
    );
    let cache = all
        .iter()
        .find(|x| x.name == "cache")
        .expect("cache planned");
    assert_eq!(cache.object["spec"]["replicas"], 2, "not held: untouched");
}

#[test]
fn verification_of_a_degraded_restore_leaves_out_what_was_accepted() {
    let cloud = replace(
        replace(healthy(), Kind::Volume, "pv-db", Status::Missing),
        Kind::Bucket,
        "BucketClaim shop/media",
        Status::Missing,
    );
    let p = run(cloud, &["all"]);
    let recorded = Recorded {
        volumes: vec![
            RecordedVolume {
                pv: "pv-db".into(),
                disk: "vol-db".into(),
                claim: None,
                from_snapshot: None,
            },
            RecordedVolume {
                pv: "pv-cache".into(),
                disk: "vol-cache".into(),
                claim: None,
                from_snapshot: None,
            },
        ],
        addresses: vec![RecordedAddress {
            namespace: "shop".into(),
            name: "web".into(),
            ip: "203.0.113.7".into(),
            allocation_id: None,
            hostnames: vec![],
        }],
        buckets: vec![RecordedBucket {
            kind: "BucketClaim".into(),
            namespace: Some("shop".into()),
            name: "media".into(),
            bucket: "shop-media".into(),
        }],
    };
    let scope = p.verify_scope(&recorded);
    assert_eq!(scope.volumes.len(), 1);
    assert_eq!(scope.volumes[0].pv, "pv-cache");
    assert_eq!(scope.addresses.len(), 1);
    assert!(scope.buckets.is_empty());
}

#[test]
fn a_workload_held_by_an_earlier_run_is_released_to_its_recorded_replicas() {
    let mut held = deployment("shop", "db", 1, json!({}), json!({}));
    hold_object(&mut held, "volume vol-db of pv-db is missing");
    assert_eq!(held["spec"]["replicas"], 0);
    let patch = release_patch("Deployment", &held).expect("was held");
    assert_eq!(patch["spec"]["replicas"], 1);
    assert!(patch["metadata"]["annotations"][HELD].is_null());
    let mut cron = json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"namespace": "shop", "name": "report"}, "spec": {"suspend": false}});
    hold_object(&mut cron, "why");
    assert_eq!(cron["spec"]["suspend"], true);
    assert_eq!(
        release_patch("CronJob", &cron).expect("was held")["spec"]["suspend"],
        false
    );
    assert!(
        release_patch(
            "Deployment",
            &deployment("shop", "web", 3, json!({}), json!({}))
        )
        .is_none()
    );
}

#[test]
fn a_missing_disk_whose_policy_restores_it_from_a_cloud_snapshot_is_recoverable_not_refused() {
    let (mut bindings, objects) = shop();
    let snapshot = crate::bindings::CloudSnapshot {
        id: "snap-db".into(),
        taken_at: chrono::Utc::now(),
        size_gib: Some(10),
        road: crate::bindings::SnapshotRoad::Provider,
        volume_snapshot: None,
    };
    bindings.volumes[0].data_policy = crate::bindings::DataPolicy::Snapshot;
    bindings.volumes[0].cloud_snapshot = Some(snapshot.clone());
    // The cache's policy asks for snapshots, but none was ever taken: nothing to come back
    // from.
    bindings.volumes[1].data_policy = crate::bindings::DataPolicy::TransferOrSnapshot;
    let cloud = replace(healthy(), Kind::Volume, "pv-db", Status::Missing);
    let cloud = replace(cloud, Kind::Volume, "pv-cache", Status::Missing);
    let pre = decide(
        "sim",
        &cloud.0,
        &bindings,
        &objects,
        &BTreeSet::new(),
        &AcceptMissing::default(),
    );
    let row = |pv: &str| pre.rows.iter().find(|r| r.subject == pv).expect("row");
    assert_eq!(row("pv-db").decision(), "snapshot");
    assert_eq!(row("pv-db").from_snapshot.as_deref(), Some("snap-db"));
    assert!(row("pv-db").reason.contains("snap-db"));
    assert_eq!(row("pv-cache").decision(), "REFUSED");
    assert_eq!(
        pre.refused()
            .iter()
            .map(|r| r.subject.as_str())
            .collect::<Vec<_>>(),
        ["pv-cache"]
    );
    assert!(
        pre.held.is_empty(),
        "nothing is held for a recoverable disk"
    );
}
