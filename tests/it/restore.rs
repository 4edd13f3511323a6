//! Cold-start restore on the simulated cluster: seed the platform, capture it, tear the
//! cluster down the way a cloud does, restore, and prove every disk, address and bucket is
//! the original and nothing new was provisioned — and show what goes wrong without the gate.
//! Each scenario runs on both API servers ([`Plane`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{
    Bed, Plane, TestCluster, keys, on_both_planes, snapshot_opts, wait_until, wait_until_async,
};
use coldstart::preflight::AcceptMissing;
use coldstart::progress::Progress;
use coldstart::restore::plan::PlanOptions;
use coldstart::restore::source::{self, Objects};
use coldstart::restore::{self, RestoreOptions, RestoreSource};
use coldstart::snapshot::{read, write};
use coldstart::store::Store;
use coldstart_sim::seed::Seed;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::Value;

/// What a snapshot of the bed records, read back as a restore reads it: the product's own
/// capture, through the API, so it means the same on both planes.
pub async fn snapshot_of(c: &Bed) -> RestoreSource {
    let store = Store::memory();
    let m = write::take(
        &c.client().await,
        &store,
        &keys(),
        &snapshot_opts("platform"),
        Arc::new(write::CaptureProgress::default()),
    )
    .await
    .expect("snapshot");
    let snap = read::open(&store, &keys(), &m.id).await.expect("open");
    source::from_snapshot(&snap)
}

/// Whether the platform seed has settled: every load balancer addressed, every claim
/// bound, every tenant's bucket ready, Kafka running.
async fn platform_settled(c: &Bed) -> bool {
    let client = c.client().await;
    let claims: kube::Api<PersistentVolumeClaim> = kube::Api::all(client);
    let bound = claims.list(&Default::default()).await.is_ok_and(|l| {
        !l.items.is_empty()
            && l.items
                .iter()
                .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
    });
    if !bound || c.cloud().await.load_balancers.len() != 4 {
        return false;
    }
    for t in ["tenant-a", "tenant-b", "tenant-c"] {
        let ready = c
            .get("objectstorage.k8s.io", "bucketclaims", t, "data")
            .await
            .is_some_and(|b| b["status"]["bucketReady"] == true);
        if !ready {
            return false;
        }
    }
    c.get("apps", "statefulsets", "kafka", "kafka")
        .await
        .is_some_and(|s| s["status"]["readyReplicas"] == 3)
}

/// The platform seed on `plane`, settled.
pub async fn settled_platform_on(plane: Plane) -> Bed {
    let c = Bed::start(plane, Seed::Platform).await;
    wait_until_async("the platform has settled", || platform_settled(&c)).await;
    c
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

async fn data_tokens(c: &Bed) -> Vec<String> {
    let mut t: Vec<String> = c
        .cloud()
        .await
        .disks
        .values()
        .map(|d| d.data_token.clone())
        .collect();
    t.sort();
    t
}

on_both_planes!(
    a_restore_after_teardown_reuses_every_disk_address_and_bucket_and_creates_nothing =
        restore_after_teardown_reuses_everything
);

async fn restore_after_teardown_reuses_everything(plane: Plane) {
    let c = settled_platform_on(plane).await;
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
        .await
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
        let ip =
            c.get("", "services", ns, svc).await.expect("svc")["status"]["loadBalancer"]["ingress"]
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
        wait_until_async("reserved", async || c.cloud().await.addresses[&ip].reserved).await;
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
    wait_until_async("scratch retained", async || {
        c.cloud()
            .await
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
    wait_until_async("platform-scratch orphaned", async || {
        c.cloud()
            .await
            .buckets
            .get("platform-scratch")
            .is_some_and(|b| !b.delete_with_claim)
    })
    .await;
    let source = snapshot_of(&c).await;
    let tokens = data_tokens(&c).await;
    let dns_before = c.cloud().await.dns.clone();
    c.teardown().await;
    let mark = c.cloud().await.position();
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
    let created = c.cloud().await.created_since(mark);
    assert_eq!(
        (created.disks, created.ips, created.buckets),
        (0, 0, 0),
        "the ledger agrees: nothing new"
    );
    assert_eq!(
        data_tokens(&c).await,
        tokens,
        "every disk with its data is still there"
    );
    let cloud = c.cloud().await;
    for (name, rec) in dns_before {
        assert_eq!(
            cloud.dns[&name].target, rec.target,
            "{name} still resolves to the same address"
        );
    }
    assert_eq!(report.gate, "lifted");
    assert_eq!(report.operators_scaled_up.len(), 2);
    wait_until_async("operators run again", async || {
        c.get("apps", "deployments", "kafka", "strimzi-cluster-operator")
            .await
            .is_some_and(|d| d["status"]["readyReplicas"] == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let created = c.cloud().await.created_since(mark);
    assert_eq!(
        (created.disks, created.ips, created.buckets),
        (0, 0, 0),
        "running operators found everything in place"
    );
    c.stop().await;
}

/// Operators that come up while (or before) the restore runs, as a GitOps tool would
/// start them: their namespaces, storage classes, CRDs, Deployments and the service accounts
/// those run as (without which no pod of theirs is admitted).
fn early_operators(source: &RestoreSource) -> Vec<Value> {
    let Objects::Loaded(all) = &source.objects else {
        panic!("the in-process capture is in memory")
    };
    let accounts: Vec<(String, String)> = all
        .iter()
        .filter(|o| {
            o["kind"] == "Deployment" && o["metadata"]["labels"]["coldstart.dev/operator"] == "true"
        })
        .filter_map(|o| {
            Some((
                o["metadata"]["namespace"].as_str()?.to_owned(),
                o["spec"]["template"]["spec"]["serviceAccountName"]
                    .as_str()?
                    .to_owned(),
            ))
        })
        .collect();
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
                || (kind == "ServiceAccount"
                    && accounts
                        .iter()
                        .any(|(ns, sa)| o["metadata"]["namespace"] == ns.as_str() && name == sa))
        })
        .cloned()
        .collect()
}

/// Whether the platform's two operators (Strimzi's, tenant-b's bucket operator) run.
async fn operators_running(c: &Bed) -> bool {
    for (ns, name) in [
        ("kafka", "strimzi-cluster-operator"),
        ("tenant-b", "bucket-operator"),
    ] {
        let ready = c
            .get("apps", "deployments", ns, name)
            .await
            .is_some_and(|d| d["status"]["readyReplicas"] == 1);
        if !ready {
            return false;
        }
    }
    true
}

async fn start_operators_early(c: &Bed, source: &RestoreSource) {
    let objs = early_operators(source);
    for o in objs
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
    {
        let mut o = o.clone();
        clean(&mut o);
        c.create(o).await;
    }
    for o in objs
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
    {
        let mut o = o.clone();
        clean(&mut o);
        c.create(o).await;
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

on_both_planes!(
    the_gate_stops_operators_that_start_during_the_restore_from_creating_anything_new =
        gate_stops_early_operators
);

async fn gate_stops_early_operators(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let source = snapshot_of(&c).await;
    c.teardown().await;
    let mark = c.cloud().await.position();
    let client = c.client().await;
    let me = restore::whoami(&client).await.expect("whoami");
    restore::gate::install(&client, &me).await.expect("gate");
    // `install` returns once kube-apiserver enforces the gate (its policy informer has the
    // bindings a moment after they are created): the operators may start at once.
    start_operators_early(&c, &source).await;
    // Running operators, a few resyncs in: had the gate let anything through, it is there.
    wait_until_async("the early operators run", async || {
        operators_running(&c).await
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let early = c.cloud().await.created_since(mark);
    assert_eq!(
        (early.disks, early.ips, early.buckets),
        (0, 0, 0),
        "the gate denied the operators"
    );
    let progress = Arc::new(Mutex::new(Progress::default()));
    let mut opts = quick();
    opts.plan = PlanOptions::default();
    // What was lost without a stop, started without (the preflight refuses otherwise).
    opts.accept_missing = AcceptMissing::from_flags(&["all".to_owned()]);
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
    let lost = |kind: coldstart::cloud::Kind| {
        report
            .preflight
            .rows
            .iter()
            .filter(|r| r.kind == kind && r.problem.is_some() && r.accepted)
            .count()
    };
    assert_eq!(
        (
            lost(coldstart::cloud::Kind::Volume),
            lost(coldstart::cloud::Kind::Address)
        ),
        (4, 2),
        "the preflight names every loss the run was started without: {:#?}",
        report.preflight.rows
    );
    assert_eq!(
        report.new_disks,
        0,
        "and no new disk replaced the lost ones: {:#?}",
        c.cloud()
            .await
            .ledger
            .iter()
            .filter(|e| e.seq > mark)
            .collect::<Vec<_>>()
    );
    assert_eq!(report.new_buckets, 0);
    let created = c.cloud().await.created_since(mark);
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
    // The load-balancer controller writes the address a moment after the Service is
    // restored (beside kube-apiserver it is a separate process): it must end on the
    // recorded one.
    c.wait_for(
        "kafka-bootstrap answers on its recorded address",
        async |c| {
            c.get("", "services", "kafka", "kafka-bootstrap")
                .await
                .is_some_and(|s| {
                    s["status"]["loadBalancer"]["ingress"][0]["ip"] == kafka_ip.as_str()
                })
        },
    )
    .await;
    assert!(
        report.partly_up && !report.preflight.held.is_empty(),
        "what was lost is reported, not hidden: the workloads on it are held ({}, {:#?})",
        report.gate,
        report.preflight.held
    );
    c.stop().await;
}

on_both_planes!(
    without_the_gate_operators_that_start_first_provision_new_disks_and_addresses =
        without_the_gate_operators_provision_anew
);

async fn without_the_gate_operators_provision_anew(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let source = snapshot_of(&c).await;
    c.teardown().await;
    let mark = c.cloud().await.position();
    start_operators_early(&c, &source).await;
    // Provisioned means bound, not only a disk in the ledger: the provisioner makes the disk,
    // then the PV. A restore that ran between the two (as it did on a loaded machine) put
    // its own PVs, pre-bound to the same claims, first: the binder took those, the operators'
    // new disks went unused, and the scenario showed nothing.
    wait_until_async("the operators provisioned and bound", async || {
        let n = c.cloud().await.created_since(mark);
        let claims: kube::Api<PersistentVolumeClaim> =
            kube::Api::namespaced(c.client().await, "kafka");
        let bound = claims.list(&Default::default()).await.is_ok_and(|l| {
            l.items.len() >= 3
                && l.items
                    .iter()
                    .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        });
        let addressed = c
            .get("", "services", "kafka", "kafka-bootstrap")
            .await
            .is_some_and(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"].is_string());
        n.disks >= 3 && n.ips >= 1 && n.buckets >= 1 && bound && addressed
    })
    .await;
    let client = c.client().await;
    let progress = Arc::new(Mutex::new(Progress::default()));
    let mut opts = quick();
    opts.gate = false;
    opts.accept_missing = AcceptMissing::from_flags(&["all".to_owned()]);
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

on_both_planes!(
    a_restore_told_to_update_existing_objects_puts_the_snapshots_version_back =
        update_existing_puts_the_snapshots_version_back
);

/// `--existing update`: an object that drifted since the snapshot is given the snapshot's
/// version by a forced server-side apply (the one path that parses a create's body again).
async fn update_existing_puts_the_snapshots_version_back(plane: Plane) {
    let c = Bed::start(plane, Seed::Empty).await;
    let settings = |mode: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  mode: {mode}\n"
        )
    };
    c.apply(&settings("original"), &[]).await;
    let source = snapshot_of(&c).await;
    c.apply(&settings("drifted"), &[]).await;

    let opts = RestoreOptions {
        apply: coldstart::restore::apply::ApplyOptions {
            existing: coldstart::restore::apply::Existing::Update,
            ..Default::default()
        },
        ..quick()
    };
    let progress = Arc::new(Mutex::new(Progress::default()));
    let report = restore::run(&c.client().await, &source, &opts, &progress)
        .await
        .expect("restore");

    let now = c
        .get("", "configmaps", "default", "settings")
        .await
        .expect("the ConfigMap is there");
    assert_eq!(
        now["data"]["mode"], "original",
        "the snapshot's version is back"
    );
    assert!(
        report.tiers.values().map(|t| t.updated).sum::<usize>() >= 1,
        "the ConfigMap is counted as updated: {:?}",
        report.tiers
    );
    assert!(
        !report
            .failures
            .iter()
            .any(|f| f.object.ends_with("/settings")),
        "{:?}",
        report.failures
    );
}
