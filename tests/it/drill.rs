//! Drills and cloud verification: a drill of the seeded platform rehearses the cold start
//! in a shadow cluster without touching production and passes; breaking a binding fails it
//! with that binding named; the AWS verifier judges volumes, Elastic IPs, buckets and DNS
//! records on moto's server, and a whole drill against moto (snapshot store on moto's S3
//! too) fails for each binding broken in turn.
//!
//! The drills of the seeded platform run on both [`Plane`]s; the cluster is reached only
//! through the API and the admin endpoint, the scratch-cluster drill too (a second cluster
//! of the same plane, production's bindings stood in through its cloud's admin endpoint).
//! The two moto scenarios stay on the embedded server: their cluster is the fixture for a
//! verifier of moto's cloud, not a claim about the API server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::types::DomainType;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    VersioningConfiguration,
};
use coldstart::bindings::Bindings;
use coldstart::cloud::aws::AwsVerifier;
use coldstart::cloud::sim::SimVerifier;
use coldstart::cloud::{CloudVerifier, Kind, Status, Verdict};
use coldstart::drill::{self, DrillOptions, DrillReport};
use coldstart::progress::Progress;
use coldstart::restore::RestoreOptions;
use coldstart::snapshot::crypto::Keys;
use coldstart::snapshot::write;
use coldstart::store::Store;
use coldstart_sim::seed::Seed;
use serde_json::json;

use crate::helpers::{Bed, Moto, Plane, TestCluster, on_both_planes, wait_until};
use crate::restore::settled_platform_on;

fn keys() -> Keys {
    Keys::from_master(&[9u8; 32])
}

fn drill_opts() -> DrillOptions {
    DrillOptions {
        restore: RestoreOptions {
            verify_timeout: Duration::from_secs(20),
            operator_timeout: Duration::from_secs(20),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn snapshot(client: &kube::Client, store: &Store, name: &str) -> String {
    let opts = write::Options {
        cluster_name: name.into(),
        ..Default::default()
    };
    write::take(client, store, &keys(), &opts, Arc::default())
        .await
        .expect("snapshot")
        .id
}

async fn drill(store: &Store, id: &str, verifier: &dyn CloudVerifier) -> DrillReport {
    let progress = Arc::new(Mutex::new(Progress::default()));
    drill::run_drill(store, &keys(), id, &drill_opts(), verifier, &progress)
        .await
        .expect("the drill runs")
}

fn status_of<'a>(verdicts: &'a [Verdict], kind: Kind, subject: &str) -> &'a Verdict {
    verdicts
        .iter()
        .find(|v| v.kind == kind && v.subject == subject)
        .unwrap_or_else(|| panic!("no {kind:?} verdict for {subject}: {verdicts:#?}"))
}

on_both_planes!(
    a_drill_of_the_platform_passes_in_a_shadow_cluster_and_never_touches_production =
        drill_of_the_platform
);

async fn drill_of_the_platform(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let store = Store::memory();
    let id = snapshot(&c.client().await, &store, "platform").await;
    let ledger_before = c.cloud().await.ledger.len();
    let verifier = SimVerifier::new(c.client().await);

    let report = drill(&store, &id, &verifier).await;
    assert!(report.passed, "{:#?}", report.failures);
    assert_eq!(report.snapshot, id);
    assert_eq!(report.target, "shadow");
    assert_eq!(report.cloud, "sim");
    let steps: Vec<(&str, bool)> = report
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.ok))
        .collect();
    assert_eq!(
        steps,
        [
            ("verify-snapshot", true),
            ("rehearse-restore", true),
            ("verify-bindings", true)
        ]
    );
    assert!(report.rto_ms.is_some_and(|ms| ms > 0));
    assert!(report.rpo_s.is_some_and(|s| s >= 0));
    assert!(report.objects > 50, "{} objects", report.objects);
    assert!(report.tiers.contains_key("persistent-volumes"));
    assert!(
        report.restore_problems.is_empty(),
        "{:?}",
        report.restore_problems
    );
    // Production is running: its disks are attached and its addresses on its own LBs.
    assert_eq!(report.tally.failing(), 0);
    assert!(report.tally.in_use > 0, "{:?}", report.tally);
    assert_eq!(
        status_of(&report.verdicts, Kind::Address, "tenant-a/mqtt").status,
        Status::InUse
    );
    assert_eq!(
        c.cloud().await.ledger.len(),
        ledger_before,
        "the drill created, attached or changed nothing in production's cloud"
    );
    eprintln!(
        "drill of the platform: rto {} ms, {} objects",
        report.rto_ms.unwrap_or_default(),
        report.objects
    );

    // Break one binding: a bucket is lost from the cloud (a disk in use cannot be deleted).
    let lost = report
        .verdicts
        .iter()
        .find(|v| v.kind == Kind::Bucket)
        .expect("a bucket verdict")
        .clone();
    c.delete_bucket(&lost.target).await;
    let broken = drill(&store, &id, &verifier).await;
    assert!(!broken.passed);
    let failing: Vec<&Verdict> = broken.failing_verdicts().collect();
    assert_eq!(failing.len(), 1, "{failing:#?}");
    assert_eq!(
        (failing[0].subject.as_str(), failing[0].status),
        (lost.subject.as_str(), Status::Missing)
    );
    assert!(
        broken
            .failures
            .iter()
            .any(|f| f.contains(&lost.subject) && f.contains(&lost.target))
    );

    let history = drill::history(&store, &keys()).await.expect("history");
    let ids: Vec<&str> = history.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [report.id.as_str(), broken.id.as_str()]);
    assert_eq!((history[0].passed, history[1].passed), (true, false));
}

on_both_planes!(the_cli_drill_exits_non_zero_and_names_the_binding_when_it_fails = cli_drill);

async fn cli_drill(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}", dir.path().display());
    let store = Store::open(&url).expect("file store");
    let id = snapshot(&c.client().await, &store, "platform").await;
    let key = base64_key();
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_coldstart"));
        cmd.args([
            "--kubeconfig",
            c.kubeconfig.to_str().expect("utf-8 path"),
            "--store",
            &url,
        ])
        .args(args)
        .env("COLDSTART_ENCRYPTION_KEY", &key);
        async move {
            tokio::task::spawn_blocking(move || cmd.output().expect("coldstart runs"))
                .await
                .expect("join")
        }
    };
    let ok = run(&["--json", "drill", "--cloud", "sim", "--snapshot", &id]).await;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(report["passed"], true);

    let bucket = c
        .get("objectstorage.k8s.io", "bucketclaims", "tenant-a", "data")
        .await
        .expect("the claim")["status"]["bucketName"]
        .as_str()
        .expect("bound to a bucket")
        .to_owned();
    c.delete_bucket(&bucket).await;
    let failed = run(&["drill", "--cloud", "sim"]).await;
    assert_eq!(failed.status.code(), Some(1));
    let out = String::from_utf8_lossy(&failed.stdout);
    assert!(out.contains("FAILED"), "{out}");
    assert!(
        out.contains("BucketClaim tenant-a/data") && out.contains(&bucket),
        "{out}"
    );

    let verify = run(&["verify-bindings", "--cloud", "sim"]).await;
    assert_eq!(verify.status.code(), Some(1));
    let list = run(&["--json", "drills", "list"]).await;
    assert!(list.status.success());
    let all: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0]["passed"].clone(), all[1]["passed"].clone()),
        (json!(true), json!(false))
    );
}

fn base64_key() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([9u8; 32])
}

/// What the moto fixtures created.
struct Aws {
    instance: String,
    subnet: String,
}

async fn instance(ec2: &aws_sdk_ec2::Client) -> Aws {
    let images = ec2.describe_images().send().await.expect("images");
    let ami = images.images()[0]
        .image_id()
        .expect("moto answers with it")
        .to_owned();
    let run = ec2
        .run_instances()
        .image_id(ami)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("run instance");
    let instance = run.instances()[0]
        .instance_id()
        .expect("moto answers with it")
        .to_owned();
    let subnets = ec2.describe_subnets().send().await.expect("subnets");
    let subnet = subnets.subnets()[0]
        .subnet_id()
        .expect("moto answers with it")
        .to_owned();
    Aws { instance, subnet }
}

async fn volume(ec2: &aws_sdk_ec2::Client, zone: &str) -> String {
    ec2.create_volume()
        .availability_zone(zone)
        .size(10)
        .send()
        .await
        .expect("volume")
        .volume_id()
        .expect("a volume id")
        .to_owned()
}

async fn eip(ec2: &aws_sdk_ec2::Client) -> (String, String) {
    let a = ec2
        .allocate_address()
        .domain(DomainType::Vpc)
        .send()
        .await
        .expect("eip");
    (
        a.allocation_id().expect("moto answers with it").to_owned(),
        a.public_ip().expect("moto answers with it").to_owned(),
    )
}

async fn bucket(s3: &aws_sdk_s3::Client, name: &str, region: Option<&str>, versioned: bool) {
    let mut req = s3.create_bucket().bucket(name);
    if let Some(r) = region {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(r))
                .build(),
        );
    }
    req.send().await.expect("bucket");
    if versioned {
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("versioning");
    }
}

fn pv(name: &str, disk: &str, zone: &str) -> serde_json::Value {
    json!({"pv": name, "provider": "aws", "csiDriver": "ebs.csi.aws.com", "source": "csi",
        "volumeHandle": disk, "diskId": disk, "zone": zone, "size": "10Gi", "storageClass": "gp3",
        "reclaimPolicy": "Retain", "claim": null, "fsType": null})
}

fn svc(name: &str, alloc: &str, ip: &str, hostname: &str, dns: &[&str]) -> serde_json::Value {
    json!({"namespace": "shop", "name": name,
        "pin": {"provider": "aws-eip", "allocations": [alloc]}, "pinned": true,
        "ingressIps": [ip], "ingressHostnames": [hostname], "dnsNames": dns, "dnsTargets": [],
        "loadBalancerClass": null})
}

fn claim(name: &str, bucket: &str) -> serde_json::Value {
    json!({"kind": "cosi-bucket-claim", "group": "objectstorage.k8s.io", "resource": "bucketclaims",
        "namespace": "tenant", "name": name, "bucket": bucket, "deletionPolicy": "Retain",
        "adopted": true, "bucketClass": null, "managementPolicies": []})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_aws_verifier_judges_volumes_addresses_buckets_and_dns_on_moto() {
    let moto = Moto::start().await;
    let ec2 = moto.ec2("us-east-1");
    let s3 = moto.s3("us-east-1");
    let aws = instance(&ec2).await;

    let available = volume(&ec2, "us-east-1a").await;
    let attached = volume(&ec2, "us-east-1a").await;
    ec2.attach_volume()
        .volume_id(&attached)
        .instance_id(&aws.instance)
        .device("/dev/sdf")
        .send()
        .await
        .expect("attach");
    let deleted = volume(&ec2, "us-east-1a").await;
    ec2.delete_volume()
        .volume_id(&deleted)
        .send()
        .await
        .expect("delete");
    let elsewhere_zone = volume(&ec2, "us-east-1b").await;

    let (free, free_ip) = eip(&ec2).await;
    let (on_instance, on_instance_ip) = eip(&ec2).await;
    ec2.associate_address()
        .allocation_id(&on_instance)
        .instance_id(&aws.instance)
        .send()
        .await
        .expect("associate with instance");
    let (on_nlb, on_nlb_ip) = eip(&ec2).await;
    let eni = ec2
        .create_network_interface()
        .subnet_id(&aws.subnet)
        .description("ELB net/k8s-shop-web-0a1b2c3d4e/50dc6c495c0c9188")
        .send()
        .await
        .expect("eni")
        .network_interface()
        .and_then(|n| n.network_interface_id())
        .unwrap()
        .to_owned();
    ec2.associate_address()
        .allocation_id(&on_nlb)
        .network_interface_id(&eni)
        .send()
        .await
        .expect("associate with the NLB's interface");
    let (released, released_ip) = eip(&ec2).await;
    ec2.release_address()
        .allocation_id(&released)
        .send()
        .await
        .expect("release");

    bucket(&s3, "tenant-data", None, true).await;
    bucket(&s3, "tenant-logs", None, false).await;
    bucket(&moto.s3("eu-west-1"), "tenant-eu", Some("eu-west-1"), true).await;

    let r53 = moto.route53();
    let zone = r53
        .create_hosted_zone()
        .name("example.com")
        .caller_reference("drill-test")
        .send()
        .await
        .expect("zone")
        .hosted_zone()
        .unwrap()
        .id()
        .to_owned();
    for (name, value) in [
        ("shop.example.com", free_ip.as_str()),
        ("stale.example.com", "198.51.100.99"),
    ] {
        use aws_sdk_route53::types::{
            Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
        };
        r53.change_resource_record_sets()
            .hosted_zone_id(&zone)
            .change_batch(
                ChangeBatch::builder()
                    .changes(
                        Change::builder()
                            .action(ChangeAction::Upsert)
                            .resource_record_set(
                                ResourceRecordSet::builder()
                                    .name(name)
                                    .r#type(RrType::A)
                                    .ttl(60)
                                    .resource_records(
                                        ResourceRecord::builder().value(value).build().unwrap(),
                                    )
                                    .build()
                                    .unwrap(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("record");
    }

    let nlb = "k8s-shop-web-0a1b2c3d4e-0123456789abcdef.elb.us-east-1.amazonaws.com";
    let bindings: Bindings = serde_json::from_value(json!({
        "volumes": [pv("pv-available", &available, "us-east-1a"), pv("pv-attached", &attached, "us-east-1a"),
                    pv("pv-deleted", &deleted, "us-east-1a"), pv("pv-moved", &elsewhere_zone, "us-east-1a")],
        "loadBalancers": [
            svc("free", &free, &free_ip, "", &["shop.example.com", "stale.example.com", "absent.example.com"]),
            svc("hijacked", &on_instance, &on_instance_ip, "", &[]),
            svc("web", &on_nlb, &on_nlb_ip, nlb, &[]),
            svc("api", &on_nlb, &on_nlb_ip, "k8s-shop-api-99-1.elb.us-east-1.amazonaws.com", &[]),
            svc("gone", &released, &released_ip, "", &[])],
        "buckets": [claim("data", "tenant-data"), claim("logs", "tenant-logs"),
                    claim("eu", "tenant-eu"), claim("lost", "tenant-lost")]
    }))
    .expect("bindings");

    let verifier = AwsVerifier::from_config(&moto.sdk_config("us-east-1"));
    let verdicts = verifier.verify(&bindings).await;
    let cases = [
        (Kind::Volume, "pv-available", Status::Ok),
        (Kind::Volume, "pv-attached", Status::InUse),
        (Kind::Volume, "pv-deleted", Status::Missing),
        (Kind::Volume, "pv-moved", Status::Moved),
        (Kind::Address, "shop/free", Status::Ok),
        (Kind::Address, "shop/hijacked", Status::InUseElsewhere),
        (Kind::Address, "shop/web", Status::InUse),
        (Kind::Address, "shop/api", Status::InUseElsewhere),
        (Kind::Address, "shop/gone", Status::Missing),
        (Kind::Bucket, "BucketClaim tenant/data", Status::Ok),
        (Kind::Bucket, "BucketClaim tenant/logs", Status::Unprotected),
        (Kind::Bucket, "BucketClaim tenant/eu", Status::Moved),
        (Kind::Bucket, "BucketClaim tenant/lost", Status::Missing),
    ];
    for (kind, subject, want) in cases {
        let v = status_of(&verdicts, kind, subject);
        assert_eq!(v.status, want, "{kind:?} {subject}: {}", v.reason);
    }
    assert!(
        status_of(&verdicts, Kind::Volume, "pv-attached")
            .reason
            .contains(&aws.instance)
    );
    assert!(
        status_of(&verdicts, Kind::Address, "shop/hijacked")
            .reason
            .contains(&aws.instance)
    );
    let dns: Vec<(&str, Status)> = verdicts
        .iter()
        .filter(|v| v.kind == Kind::Dns)
        .map(|v| (v.target.as_str(), v.status))
        .collect();
    assert_eq!(
        dns,
        [
            ("shop.example.com", Status::Ok),
            ("stale.example.com", Status::Moved),
            ("absent.example.com", Status::Missing)
        ]
    );
}

const AWS_FIXTURE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-orders}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: gp3
  csi: {driver: ebs.csi.aws.com, volumeHandle: VOLUME, fsType: ext4}
  claimRef: {namespace: shop, name: orders}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: topology.ebs.csi.aws.com/zone, operator: In, values: [us-east-1a]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: orders, namespace: shop}
spec: {accessModes: [ReadWriteOnce], storageClassName: gp3, volumeName: pv-orders, resources: {requests: {storage: 10Gi}}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations: {service.beta.kubernetes.io/aws-load-balancer-eip-allocations: ALLOCATION}
spec: {type: LoadBalancer, ports: [{port: 443}]}
"#;

/// Brownfield COSI: the Bucket object names the cloud bucket, the claim the object.
const AWS_CLAIM_OBJECTS: &str = r#"
apiVersion: objectstorage.k8s.io/v1alpha1
kind: Bucket
metadata: {name: shop-orders}
spec: {existingBucketID: shop-orders, deletionPolicy: Retain}
---
apiVersion: objectstorage.k8s.io/v1alpha1
kind: BucketClaim
metadata: {name: data, namespace: shop}
spec: {existingBucketName: shop-orders}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_drill_against_moto_fails_for_each_binding_broken_in_turn_and_names_it() {
    let moto = Moto::start().await;
    let ec2 = moto.ec2("us-east-1");
    let s3 = moto.s3("us-east-1");
    let aws = instance(&ec2).await;
    let disk = volume(&ec2, "us-east-1a").await;
    let (alloc, public_ip) = eip(&ec2).await;
    bucket(&s3, "shop-orders", None, true).await;
    bucket(&s3, "snapshots", None, false).await;

    // A cluster whose bindings are moto's disk, Elastic IP and bucket (the simulated
    // cloud holds the same allocation, so the pin lands as it does on AWS).
    let c = TestCluster::start().await;
    c.apply(&coldstart::testing::cosi_bucket_claim_crd().yaml(), &[])
        .await;
    c.sim()
        .cloud
        .lock()
        .create_static_address(&public_ip, Some(&alloc), None, "the moto account's EIP")
        .expect("free");
    c.apply(
        &AWS_FIXTURE
            .replace("VOLUME", &disk)
            .replace("ALLOCATION", &alloc),
        &[],
    )
    .await;
    c.apply(&coldstart::testing::cosi_bucket_crd().yaml(), &[])
        .await;
    c.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        "crd",
        "--all",
    ])
    .await;
    c.apply(AWS_CLAIM_OBJECTS, &[]).await;
    wait_until("the claim is bound and the Service has an address", || {
        c.get("", "persistentvolumeclaims", "shop", "orders")
            .is_some_and(|p| p["status"]["phase"] == "Bound")
            && c.get("", "services", "shop", "web")
                .is_some_and(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"].is_string())
    })
    .await;
    let store = moto.store("snapshots", "prod");
    let id = snapshot(&c.client().await, &store, "shop").await;
    let verifier = AwsVerifier::from_config(&moto.sdk_config("us-east-1"));

    let healthy = drill(&store, &id, &verifier).await;
    assert!(healthy.passed, "{:#?}", healthy.failures);
    assert_eq!(healthy.cloud, "aws");
    assert_eq!(healthy.tally.ok, 3, "{:#?}", healthy.verdicts);

    let only_failure = |r: &DrillReport| {
        assert!(!r.passed);
        let failing: Vec<(Kind, String, Status)> = r
            .failing_verdicts()
            .map(|v| (v.kind, v.subject.clone(), v.status))
            .collect();
        assert_eq!(failing.len(), 1, "{failing:?}");
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        failing.into_iter().next().unwrap()
    };

    // The Elastic IP is associated with another instance.
    let assoc = ec2
        .associate_address()
        .allocation_id(&alloc)
        .instance_id(&aws.instance)
        .send()
        .await
        .unwrap();
    let r = drill(&store, &id, &verifier).await;
    assert_eq!(
        only_failure(&r),
        (Kind::Address, "shop/web".into(), Status::InUseElsewhere)
    );
    assert!(r.failures[0].contains(&alloc) && r.failures[0].contains(&aws.instance));
    ec2.disassociate_address()
        .association_id(assoc.association_id().unwrap())
        .send()
        .await
        .unwrap();

    // The bucket is deleted.
    s3.delete_bucket()
        .bucket("shop-orders")
        .send()
        .await
        .unwrap();
    let r = drill(&store, &id, &verifier).await;
    assert_eq!(
        only_failure(&r),
        (
            Kind::Bucket,
            "BucketClaim shop/data".into(),
            Status::Missing
        )
    );
    assert!(r.failures[0].contains("shop-orders"));
    bucket(&s3, "shop-orders", None, true).await;

    // The volume is deleted.
    ec2.delete_volume().volume_id(&disk).send().await.unwrap();
    let r = drill(&store, &id, &verifier).await;
    assert_eq!(
        only_failure(&r),
        (Kind::Volume, "pv-orders".into(), Status::Missing)
    );
    assert!(r.failures[0].contains(&disk));

    let history = drill::history(&store, &keys()).await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.passed).collect::<Vec<_>>(),
        [true, false, false, false]
    );
}

on_both_planes!(
    a_drill_on_a_scratch_cluster_restores_the_plan_but_attaches_nothing = scratch_drill
);

async fn scratch_drill(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let store = Store::memory();
    let id = snapshot(&c.client().await, &store, "platform").await;
    // The scratch cluster shares the cloud account: production's disks and addresses are
    // visible there (stand-ins play them, put in through its cloud's admin endpoint), and
    // must stay untouched.
    let scratch = Bed::start(plane, Seed::Empty).await;
    let bindings = coldstart::snapshot::read::manifest(&store, &keys(), &id)
        .await
        .expect("manifest")
        .bindings;
    scratch
        .add_to_cloud(&drill::rehearsal::stand_ins(&bindings))
        .await;
    let opts = DrillOptions {
        target: drill::DrillTarget::Cluster {
            client: scratch.client().await,
            label: "scratch".into(),
        },
        ..drill_opts()
    };
    let progress = Arc::new(Mutex::new(Progress::default()));
    let verifier = SimVerifier::new(c.client().await);
    let report = drill::run_drill(&store, &keys(), &id, &opts, &verifier, &progress)
        .await
        .expect("drill");
    assert!(report.passed, "{:#?}", report.failures);
    assert_eq!(report.target, "scratch");
    assert!(
        report
            .left_out
            .iter()
            .any(|l| l.contains("BucketClaim tenant-a/data")),
        "{:?}",
        report.left_out
    );
    let pv = scratch
        .get("", "persistentvolumes", "", "pv-kafka-0")
        .await
        .expect("PV restored");
    assert_eq!(
        pv["spec"]["csi"]["driver"],
        drill::rehearsal::REHEARSAL_DRIVER
    );
    let kafka = scratch
        .get("apps", "statefulsets", "kafka", "kafka")
        .await
        .expect("StatefulSet restored");
    assert_eq!(kafka["spec"]["replicas"], 0);
    assert!(
        scratch
            .cloud()
            .await
            .disks
            .values()
            .all(|d| d.attached_to.is_none()),
        "no disk was attached in the scratch cluster"
    );
    assert!(
        scratch
            .get("objectstorage.k8s.io", "bucketclaims", "tenant-a", "data")
            .await
            .is_none(),
        "bucket claims are not restored in a rehearsal"
    );
    scratch.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_aws_ledger_counts_volumes_and_buckets_created_after_its_mark_and_names_eips() {
    use coldstart::cloud::CloudVerifier as _;
    let moto = crate::helpers::Moto::start().await;
    let ec2 = moto.ec2("us-east-1");
    let old = volume(&ec2, "us-east-1a").await;
    moto.bucket("kept").await;
    let verifier = AwsVerifier::from_config(&moto.sdk_config("us-east-1"));
    let before = verifier
        .ledger()
        .await
        .expect("read")
        .expect("aws keeps one");
    assert!(before.disks.contains(&old));
    let mark = before.position();
    // Creation times have (at best) one-second resolution in moto and for S3: step past
    // the mark's second so "after" is unambiguous.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    volume(&ec2, "us-east-1a").await;
    moto.bucket("fresh").await;
    let after = verifier.ledger().await.expect("read").expect("ledger");
    let n = after.created_since(mark);
    assert_eq!((n.disks, n.buckets, n.ips), (1, 1, 0), "{after:#?}");
    // The same account answers which Elastic IP an address is (what `stop` pins on AWS).
    let (allocation, ip) = eip(&ec2).await;
    let found = verifier
        .allocations(&[ip.clone(), "198.51.100.99".to_owned()])
        .await
        .expect("describe");
    assert_eq!(
        found,
        std::collections::BTreeMap::from([(ip, allocation)]),
        "an address that is no Elastic IP is left out"
    );
}
