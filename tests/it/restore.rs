//! Cold-start restore on the simulated cluster: seed the platform, capture it, tear the
//! cluster down the way a cloud does, restore, and prove every disk, address and bucket is
//! the original and nothing new was provisioned — and show what goes wrong without the gate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{TestCluster, wait_until};
use coldstart::progress::Progress;
use coldstart::restore::plan::PlanOptions;
use coldstart::restore::source::Objects;
use coldstart::restore::{
    self, Recorded, RecordedAddress, RecordedBucket, RecordedVolume, RestoreOptions, RestoreSource,
};
use coldstart_sim::Sim;
use coldstart_sim::seed::Seed;
use serde_json::Value;

/// Kinds a restore never brings back (controllers recreate them, or they are one
/// cluster's life): the capture leaves them out as a snapshot does.
const SKIP: [&str; 8] = [
    "events",
    "nodes",
    "pods",
    "endpoints",
    "leases",
    "endpointslices",
    "controllerrevisions",
    "replicasets",
];

/// An in-process capture of the simulated cluster with the bindings a snapshot records:
/// enough to test the restore on its own.
pub fn capture(sim: &Sim) -> RestoreSource {
    let mut objects = Vec::new();
    let mut recorded = Recorded::default();
    let defs: Vec<_> = sim.registry().all().cloned().collect();
    for d in defs {
        if SKIP.contains(&d.plural.as_str())
            || d.create_only
            || sim
                .registry()
                .preferred(&d.group_resource())
                .map(|p| &p.version)
                != Some(&d.version)
        {
            continue;
        }
        for ((ns, name), s) in sim.store.all(&d.group_resource(), None) {
            let v = s.value();
            let system_ns = matches!(
                ns.as_str(),
                "kube-system" | "kube-public" | "kube-node-lease"
            );
            let builtin = (d.plural == "namespaces"
                && matches!(
                    name.as_str(),
                    "default" | "kube-system" | "kube-public" | "kube-node-lease"
                ))
                || (d.plural == "services" && name == "kubernetes")
                || (d.plural == "configmaps" && name == "kube-root-ca.crt")
                || (d.plural == "serviceaccounts" && name == "default");
            if system_ns || builtin {
                continue;
            }
            match d.plural.as_str() {
                "persistentvolumes" => recorded.volumes.push(RecordedVolume {
                    pv: name.clone(),
                    disk: coldstart_sim::controllers::storage_disk_of(&v).unwrap_or_default(),
                    claim: v["spec"]["claimRef"]["name"].as_str().map(|c| {
                        (
                            v["spec"]["claimRef"]["namespace"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            c.to_owned(),
                        )
                    }),
                    from_snapshot: None,
                }),
                "services" => {
                    if let Some(ip) = v
                        .pointer("/status/loadBalancer/ingress/0/ip")
                        .and_then(Value::as_str)
                    {
                        recorded.addresses.push(RecordedAddress {
                            namespace: ns.clone(),
                            name: name.clone(),
                            ip: ip.to_owned(),
                            allocation_id: None,
                            hostnames: vec![],
                        });
                    }
                }
                "bucketclaims" => {
                    if let Some(b) = v.pointer("/status/bucketName").and_then(Value::as_str) {
                        recorded.buckets.push(RecordedBucket {
                            kind: "BucketClaim".into(),
                            namespace: Some(ns.clone()),
                            name: name.clone(),
                            bucket: b.into(),
                        });
                    }
                }
                "buckets" if d.group == "s3.aws.upbound.io" => {
                    recorded.buckets.push(RecordedBucket {
                        kind: "Bucket".into(),
                        namespace: None,
                        name: name.clone(),
                        bucket: v
                            .pointer("/metadata/annotations/crossplane.io~1external-name")
                            .and_then(Value::as_str)
                            .unwrap_or(&name)
                            .to_owned(),
                    })
                }
                _ => {}
            }
            objects.push(v);
        }
    }
    RestoreSource {
        snapshot_id: "in-process".into(),
        taken_at: chrono::Utc::now(),
        objects: Objects::Loaded(objects),
        recorded,
        bindings: Default::default(),
    }
}

pub async fn settled_platform() -> TestCluster {
    let c = TestCluster::start_with(Seed::Platform).await;
    wait_until("the platform has settled", || {
        let cloud = c.cloud();
        cloud.load_balancers.len() == 4
            && ["tenant-a", "tenant-b", "tenant-c"].iter().all(|t| {
                c.get("objectstorage.k8s.io", "bucketclaims", t, "data")
                    .is_some_and(|b| b["status"]["bucketReady"] == true)
            })
            && c.get("apps", "statefulsets", "kafka", "kafka")
                .is_some_and(|s| s["status"]["readyReplicas"] == 3)
    })
    .await;
    c
}

fn quick() -> RestoreOptions {
    RestoreOptions {
        verify_timeout: Duration::from_secs(15),
        operator_timeout: Duration::from_secs(15),
        // The simulated cloud keeps a ledger: count what it created, too.
        cloud: coldstart::cloud::CloudChoice::Sim,
        ..Default::default()
    }
}

fn data_tokens(c: &TestCluster) -> Vec<String> {
    let mut t: Vec<String> = c
        .cloud()
        .disks
        .values()
        .map(|d| d.data_token.clone())
        .collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_after_teardown_reuses_every_disk_address_and_bucket_and_creates_nothing() {
    let c = settled_platform().await;
    // Make everything survivable first, as `stop` does: the claims' Delete disks and the
    // controller-allocated addresses would otherwise be lost with the cluster.
    for pv in ["pv-zookeeper-0", "pv-zookeeper-1", "pv-zookeeper-2"] {
        c.kubectl_ok(&[
            "patch",
            "pv",
            pv,
            "-p",
            r#"{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}"#,
        ])
        .await;
    }
    let pg = c
        .get("", "persistentvolumeclaims", "tenant-a", "pg-data")
        .expect("pvc")["spec"]["volumeName"]
        .as_str()
        .expect("bound")
        .to_owned();
    c.kubectl_ok(&[
        "patch",
        "pv",
        &pg,
        "-p",
        r#"{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}"#,
    ])
    .await;
    for (ns, svc) in [("tenant-a", "mqtt"), ("tenant-b", "api")] {
        let ip = c.get("", "services", ns, svc).expect("svc")["status"]["loadBalancer"]["ingress"]
            [0]["ip"]
            .as_str()
            .expect("ip")
            .to_owned();
        c.kubectl_ok(&[
            "patch",
            "svc",
            svc,
            "-n",
            ns,
            "-p",
            &format!(r#"{{"spec":{{"loadBalancerIP":"{ip}"}}}}"#),
        ])
        .await;
        wait_until("reserved", || c.cloud().addresses[&ip].reserved).await;
    }
    c.kubectl_ok(&[
        "patch",
        "buckets.s3.aws.upbound.io",
        "tenant-b-scratch",
        "--type=merge",
        "-p",
        r#"{"spec":{"deletionPolicy":"Orphan"}}"#,
    ])
    .await;
    wait_until("scratch retained", || {
        c.cloud()
            .buckets
            .get("tenant-b-scratch")
            .is_some_and(|b| !b.delete_with_claim)
    })
    .await;
    c.kubectl_ok(&[
        "annotate",
        "buckets.s3.aws.upbound.io",
        "platform-scratch",
        "--overwrite",
        "crossplane.io/external-name=platform-scratch",
    ])
    .await;
    c.kubectl_ok(&[
        "patch",
        "buckets.s3.aws.upbound.io",
        "platform-scratch",
        "--type=merge",
        "-p",
        r#"{"spec":{"deletionPolicy":"Orphan"}}"#,
    ])
    .await;
    wait_until("platform-scratch orphaned", || {
        c.cloud()
            .buckets
            .get("platform-scratch")
            .is_some_and(|b| !b.delete_with_claim)
    })
    .await;
    let source = capture(c.sim());
    let tokens = data_tokens(&c);
    let dns_before = c.cloud().dns.clone();
    c.teardown().await;
    let mark = c.cloud().position();
    let client = c.client().await;
    let progress = Arc::new(Mutex::new(Progress::default()));
    let report = restore::run(&client, &source, &quick(), &progress)
        .await
        .expect("restore runs");
    assert!(report.succeeded, "{:#?}", report.verification.problems);
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(
        (report.new_disks, report.new_ips, report.new_buckets),
        (0, 0, 0)
    );
    assert_eq!(report.volumes_reused, 7);
    assert_eq!(report.ips_reused, 4);
    assert_eq!(
        report.buckets_reused, 6,
        "every cloud bucket, a COSI claim and its Bucket object counted once"
    );
    assert!(
        report.verification.cloud_ledger,
        "the simulated cloud's ledger was consulted"
    );
    let created = c.cloud().created_since(mark);
    assert_eq!(
        (created.disks, created.ips, created.buckets),
        (0, 0, 0),
        "the ledger agrees: nothing new"
    );
    assert_eq!(
        data_tokens(&c),
        tokens,
        "every disk with its data is still there"
    );
    for (name, rec) in dns_before {
        assert_eq!(
            c.cloud().dns[&name].target,
            rec.target,
            "{name} still resolves to the same address"
        );
    }
    assert_eq!(report.gate, "lifted");
    assert_eq!(report.operators_scaled_up.len(), 2);
    wait_until("operators run again", || {
        c.get("apps", "deployments", "kafka", "strimzi-cluster-operator")
            .is_some_and(|d| d["status"]["readyReplicas"] == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let created = c.cloud().created_since(mark);
    assert_eq!(
        (created.disks, created.ips, created.buckets),
        (0, 0, 0),
        "running operators found everything in place"
    );
    c.stop().await;
}

/// Operators that come up while (or before) the restore runs, as a GitOps tool would
/// start them: their namespaces, storage classes, CRDs and Deployments.
fn early_operators(source: &RestoreSource) -> Vec<Value> {
    let Objects::Loaded(all) = &source.objects else {
        panic!("the in-process capture is in memory")
    };
    all.iter()
        .filter(|o| {
            let kind = o["kind"].as_str().unwrap_or_default();
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            kind == "CustomResourceDefinition"
                || kind == "StorageClass"
                || kind == "BucketClass"
                || (kind == "Namespace" && matches!(name, "kafka" | "tenant-b"))
                || (kind == "Deployment"
                    && o["metadata"]["labels"]["coldstart.dev/operator"] == "true")
        })
        .cloned()
        .collect()
}

async fn start_operators_early(c: &TestCluster, source: &RestoreSource) {
    let objs = early_operators(source);
    for o in objs
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
    {
        let mut o = o.clone();
        clean(&mut o);
        c.create(o);
    }
    for o in objs
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
    {
        let mut o = o.clone();
        clean(&mut o);
        c.create(o);
    }
}

fn clean(o: &mut Value) {
    if let Some(m) = o["metadata"].as_object_mut() {
        for k in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
            m.remove(k);
        }
    }
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gate_stops_operators_that_start_during_the_restore_from_creating_anything_new() {
    let c = settled_platform().await;
    let source = capture(c.sim());
    c.teardown().await;
    let mark = c.cloud().position();
    let client = c.client().await;
    let me = restore::whoami(&client).await.expect("whoami");
    restore::gate::install(&client, &me).await.expect("gate");
    start_operators_early(&c, &source).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let early = c.cloud().created_since(mark);
    assert_eq!(
        (early.disks, early.ips, early.buckets),
        (0, 0, 0),
        "the gate denied the operators"
    );
    let progress = Arc::new(Mutex::new(Progress::default()));
    let mut opts = quick();
    opts.plan = PlanOptions::default();
    let report = restore::run(&client, &source, &opts, &progress)
        .await
        .expect("restore runs");
    // Without `stop`, ZooKeeper's and PostgreSQL's Delete disks and the two unpinned
    // addresses were lost with the old cluster; everything else must be the original.
    assert_eq!(
        report.volumes_reused, 3,
        "the Kafka disks are reused: {:#?}",
        report.verification.problems
    );
    assert!(
        report
            .verification
            .problems
            .iter()
            .filter(|p| p.contains("no longer exists"))
            .count()
            == 4
    );
    assert_eq!(
        report.new_disks,
        0,
        "and no new disk replaced the lost ones: {:#?}",
        c.cloud()
            .ledger
            .iter()
            .filter(|e| e.seq > mark)
            .collect::<Vec<_>>()
    );
    assert_eq!(report.new_buckets, 0);
    let created = c.cloud().created_since(mark);
    assert_eq!(
        (created.disks, created.buckets),
        (0, 0),
        "the ledger agrees"
    );
    let kafka_ip = source
        .recorded
        .addresses
        .iter()
        .find(|a| a.name == "kafka-bootstrap")
        .expect("recorded")
        .ip
        .clone();
    assert_eq!(
        c.get("", "services", "kafka", "kafka-bootstrap")
            .expect("svc")["status"]["loadBalancer"]["ingress"][0]["ip"],
        kafka_ip.as_str()
    );
    assert!(!report.succeeded, "what was lost is reported, not hidden");
    assert!(
        report.gate.starts_with("kept up"),
        "the gate stays up after a failed verification"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_gate_operators_that_start_first_provision_new_disks_and_addresses() {
    let c = settled_platform().await;
    let source = capture(c.sim());
    c.teardown().await;
    let mark = c.cloud().position();
    start_operators_early(&c, &source).await;
    wait_until("the operators provisioned", || {
        let n = c.cloud().created_since(mark);
        n.disks >= 3 && n.ips >= 1 && n.buckets >= 1
    })
    .await;
    let client = c.client().await;
    let progress = Arc::new(Mutex::new(Progress::default()));
    let mut opts = quick();
    opts.gate = false;
    opts.verify_timeout = Duration::from_secs(3);
    let report = restore::run(&client, &source, &opts, &progress)
        .await
        .expect("restore runs");
    assert!(!report.succeeded, "a naive restore cannot be verified");
    assert!(
        report.new_disks >= 3,
        "new disks for the Kafka claims: {}",
        report.new_disks
    );
    assert!(
        report.new_ips >= 1,
        "a new address for kafka-bootstrap: {}",
        report.new_ips
    );
    assert!(report.volumes_reused < 3);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_to_a_watched_kind_wakes_verification_at_once_instead_of_a_timer() {
    let c = TestCluster::start().await;
    let client = c.client().await;
    let resources = coldstart::k8s::Resources::discover(&client)
        .await
        .expect("discovery");
    let api = resources
        .api(&client, "v1", "ConfigMap", None)
        .expect("served");
    let mut changes = coldstart::k8s::wait::Changes::of(vec![api]);
    // The initial listing wakes it; then it is quiet.
    while changes.next(Duration::from_millis(300)).await {}
    let started = std::time::Instant::now();
    let writer = {
        let url = c.url();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (code, _) = crate::helpers::http(
                "POST",
                &format!("{url}/api/v1/namespaces/default/configmaps"),
                Some("application/json"),
                Some(r#"{"metadata": {"name": "nudge"}}"#.into()),
            )
            .await;
            assert_eq!(code, 201);
        })
    };
    assert!(
        changes.next(Duration::from_secs(20)).await,
        "woken by the change"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken when the object changed, not at the end of the wait: {:?}",
        started.elapsed()
    );
    writer.await.expect("writer");
    // An open watch would hold the server's graceful shutdown until it times out.
    drop(changes);
    c.stop().await;
}
