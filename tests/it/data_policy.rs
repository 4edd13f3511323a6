//! Per-volume data policy end to end on the simulated cloud: a transfer-policy Kafka disk
//! comes back as the original, a snapshot-policy tenant disk lost with the cluster comes
//! back from its cloud snapshot on a new disk that hydrates — and the report counts it as
//! new by policy, never new by accident.
//!
//! The scenarios on the simulated cloud run on both [`Plane`]s, through the API and the
//! admin endpoint alone.
//! The moto scenarios stay on the embedded server (their cluster is a fixture for AWS's
//! API, not a claim about the API server); the scratch drill runs on both, its scratch
//! cluster's stand-ins put in through its cloud's admin endpoint.

use std::process::Command;

use crate::helpers::{Bed, Plane, TestCluster, on_both_planes, wait_until_async};
use crate::restore::settled_platform_on;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

async fn run(kubeconfig: &std::path::Path, store: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coldstart"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--store", store])
        .args(args)
        .env("COLDSTART_ENCRYPTION_KEY", KEY);
    tokio::task::spawn_blocking(move || cmd.output().expect("coldstart runs"))
        .await
        .expect("join")
}

fn ok(out: &std::process::Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

async fn pv_of_claim(c: &Bed, ns: &str, name: &str) -> serde_json::Value {
    let pvc = c
        .get("", "persistentvolumeclaims", ns, name)
        .await
        .expect("claim");
    let pv = pvc["spec"]["volumeName"]
        .as_str()
        .expect("bound")
        .to_owned();
    c.get("", "persistentvolumes", "", &pv).await.expect("pv")
}

/// Annotate the tenant's PostgreSQL claim (`key=value` each) and say which disk it is on.
async fn tenant_disk(c: &Bed, annotations: &[&str]) -> String {
    for a in annotations {
        c.kubectl_ok(&["annotate", "pvc", "-n", "tenant-a", "pg-data", a])
            .await;
    }
    pv_of_claim(c, "tenant-a", "pg-data").await["spec"]["csi"]["volumeHandle"]
        .as_str()
        .expect("handle")
        .to_owned()
}

on_both_planes!(
    a_lost_snapshot_policy_disk_comes_back_from_its_snapshot_and_kafka_as_the_original =
        lost_snapshot_policy_disk
);

async fn lost_snapshot_policy_disk(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", dir.path().display());
    let tenant_disk = tenant_disk(&c, &["coldstart.dev/data-policy=snapshot"]).await;
    let kafka_disk = pv_of_claim(&c, "kafka", "data-kafka-0").await["spec"]["csi"]["volumeHandle"]
        .as_str()
        .expect("handle")
        .to_owned();
    let data_of = async |id: &str| c.cloud().await.disks.get(id).map(|d| d.data_token.clone());
    let tenant_data = data_of(&tenant_disk).await.expect("tenant disk");
    let kafka_data = data_of(&kafka_disk).await.expect("kafka disk");

    // A planned stop: its final snapshot takes a cloud snapshot of the tenant disk only.
    ok(
        &run(&c.kubeconfig, &store, &["stop", "--json"]).await,
        "stop",
    );
    let snaps = c.cloud().await.snapshots;
    assert_eq!(snaps.len(), 1, "one cloud snapshot: {snaps:#?}");
    let snap = snaps.values().next().expect("snapshot").clone();
    assert_eq!(
        (snap.disk_id.as_str(), snap.data_token.as_str()),
        (tenant_disk.as_str(), tenant_data.as_str())
    );

    // The cluster is deleted, and the tenant disk with it.
    c.teardown().await;
    ok(
        &run(
            &c.kubeconfig,
            &store,
            &["sim", "cloud", "delete", "disk", &tenant_disk, "--json"],
        )
        .await,
        "sim cloud delete disk",
    );
    assert!(
        data_of(&tenant_disk).await.is_none(),
        "the tenant disk is gone"
    );

    // The dry run says, per volume, which it will be and why.
    let plan = ok(
        &run(
            &c.kubeconfig,
            &store,
            &["restore", "--dry-run", "--json", "--cloud", "sim"],
        )
        .await,
        "restore --dry-run",
    );
    let pg = plan["data"]
        .as_array()
        .and_then(|d| d.iter().find(|v| v["claim"] == "tenant-a/pg-data"))
        .expect("tenant volume in the plan");
    assert_eq!(pg["source"], "from-snapshot", "{pg:#}");
    assert_eq!(pg["snapshot"], snap.id.as_str());
    assert!(pg["hydrationEstimateMs"].as_u64() > Some(0), "{pg:#}");

    let mark = c.cloud().await.position();
    let started = ok(
        &run(
            &c.kubeconfig,
            &store,
            &["start", "--json", "--timeout", "60"],
        )
        .await,
        "start",
    );
    let r = &started["restore"];
    assert_eq!(r["succeeded"], true, "{r:#}");
    assert_eq!(r["volumes_from_snapshot"], 1, "{r:#}");
    assert_eq!(r["new_disks"], 0, "{r:#}");
    assert_eq!(r["volumes_reused"], 6, "every other volume is its original");
    assert!(
        r["rto_with_hydration_ms"].as_u64() >= r["rto_ms"].as_u64(),
        "{r:#}"
    );

    // Kafka: the same disk, the same data.
    let kafka_pv = pv_of_claim(&c, "kafka", "data-kafka-0").await;
    assert_eq!(kafka_pv["spec"]["csi"]["volumeHandle"], kafka_disk.as_str());
    assert_eq!(data_of(&kafka_disk).await, Some(kafka_data));

    // The tenant: a new disk with the snapshot's data, hydrating until done.
    let tenant_pv = pv_of_claim(&c, "tenant-a", "pg-data").await;
    let new_disk = tenant_pv["spec"]["csi"]["volumeHandle"]
        .as_str()
        .expect("handle")
        .to_owned();
    assert_ne!(new_disk, tenant_disk, "a new disk");
    let cloud = c.cloud().await;
    let disk = cloud.disks.get(&new_disk).expect("the new disk exists");
    assert_eq!(disk.data_token, tenant_data, "the snapshot's data");
    assert_eq!(disk.from_snapshot.as_deref(), Some(snap.id.as_str()));
    let created: Vec<_> = cloud
        .ledger
        .iter()
        .filter(|e| e.seq > mark && e.action == coldstart_sim::cloud::Action::Created)
        .filter(|e| e.resource == coldstart_sim::cloud::Resource::Disk)
        .collect();
    assert_eq!(
        created.len(),
        1,
        "one disk created, by policy: {created:#?}"
    );
    assert!(created[0].cause.contains("hydrating"), "{:?}", created[0]);
    let planned = r["data"]
        .as_array()
        .and_then(|d| d.iter().find(|v| v["newDisk"] == new_disk.as_str()))
        .expect("the report names the new disk");
    assert!(planned["hydrationEstimateMs"].as_u64() > Some(0));
    wait_until_async("the new disk has hydrated", || async {
        !c.cloud()
            .await
            .disks
            .get(&new_disk)
            .expect("disk")
            .hydration(chrono::Utc::now())
            .hydrating
    })
    .await;
    c.stop().await;
}

on_both_planes!(
    a_scratch_drill_restores_the_tenant_volume_from_its_snapshot_and_checks_its_data =
        scratch_drill_checks_data
);

async fn scratch_drill_checks_data(plane: Plane) {
    use std::sync::{Arc, Mutex};

    use coldstart::cloud::snapshots::DataCheck;
    use coldstart::drill::{self, DrillOptions};
    use coldstart::restore::RestoreOptions;
    use coldstart::snapshot::crypto::Keys;
    use coldstart::snapshot::write;
    use coldstart::store::Store;

    let c = settled_platform_on(plane).await;
    let tenant_disk = tenant_disk(&c, &["coldstart.dev/data-policy=snapshot"]).await;
    let tenant_data = c.cloud().await.disks[&tenant_disk].data_token.clone();
    let store = Store::memory();
    let keys = Keys::from_master(&[5u8; 32]);
    let id = write::take(
        &c.client().await,
        &store,
        &keys,
        &write::Options {
            cluster_name: "platform".into(),
            ..Default::default()
        },
        Arc::default(),
    )
    .await
    .expect("snapshot")
    .id;

    // The scratch cluster lives in the same cloud account: it sees the cloud snapshot, and
    // stand-ins play production's disks and addresses (which must stay untouched), all put
    // in through its cloud's admin endpoint.
    let scratch = Bed::start(plane, coldstart_sim::seed::Seed::Empty).await;
    let manifest = coldstart::snapshot::read::manifest(&store, &keys, &id)
        .await
        .expect("manifest");
    let production = c.cloud().await;
    let mut account = drill::rehearsal::stand_ins(&manifest.bindings);
    account
        .snapshots
        .retain(|s| !production.snapshots.contains_key(&s.id));
    account
        .snapshots
        .extend(
            production
                .snapshots
                .values()
                .map(|s| coldstart_sim::cloud::ExistingSnapshot {
                    id: s.id.clone(),
                    disk_id: s.disk_id.clone(),
                    zone: s.zone.clone(),
                    size_gib: s.size_gib,
                    data: s.data_token.clone(),
                }),
        );
    scratch.add_to_cloud(&account).await;
    let opts = DrillOptions {
        target: drill::DrillTarget::Cluster {
            client: scratch.client().await,
            label: "scratch".into(),
        },
        restore: RestoreOptions {
            verify_timeout: std::time::Duration::from_secs(20),
            cloud: coldstart::cloud::CloudChoice::Sim,
            ..Default::default()
        },
    };
    let verifier = coldstart::cloud::sim::SimVerifier::new(c.client().await);
    let progress = Arc::new(Mutex::new(coldstart::progress::Progress::default()));
    let report = drill::run_drill(&store, &keys, &id, &opts, &verifier, &progress)
        .await
        .expect("drill");
    assert!(report.passed, "{:#?}", report.failures);
    assert_eq!(report.data.len(), 1, "{:#?}", report.data);
    let checked = &report.data[0];
    assert_eq!(checked.check, DataCheck::Matches);
    assert_ne!(checked.disk, tenant_disk, "the drill's own disk");
    assert_eq!(
        scratch.cloud().await.disks[&checked.disk].data_token,
        tenant_data
    );
    let claim = scratch
        .get("", "persistentvolumeclaims", "tenant-a", "pg-data")
        .await
        .expect("claim");
    let pv = scratch
        .get(
            "",
            "persistentvolumes",
            "",
            claim["spec"]["volumeName"].as_str().expect("bound"),
        )
        .await
        .expect("pv");
    assert_eq!(pv["spec"]["csi"]["volumeHandle"], checked.disk.as_str());
    assert_eq!(pv["spec"]["csi"]["driver"], "ebs.csi.aws.com");
    assert!(
        scratch.cloud().await.disks[&tenant_disk]
            .attached_to
            .is_none(),
        "production's disk (its stand-in here) is not attached"
    );
    assert!(
        report.steps.iter().any(|s| s.name == "verify-data" && s.ok),
        "{:#?}",
        report.steps
    );
    scratch.stop().await;
    c.stop().await;
}

/// The EBS calls against moto's server: CreateSnapshot, CreateVolume from it (tagged, and
/// found again on a re-run), DeleteSnapshot. moto 5.2.1 does not implement
/// EnableFastSnapshotRestores: asking for it fails with the API named.
#[tokio::test(flavor = "multi_thread")]
async fn ebs_snapshots_and_restores_from_them_run_against_moto() {
    use coldstart::cloud::aws::AwsSnapshots;
    use coldstart::cloud::snapshots::{DiskSnapshots, RESTORED_FOR, RestoreRequest};

    let moto = crate::helpers::Moto::start().await;
    let ec2 = moto.ec2("eu-west-1");
    let disk = ec2
        .create_volume()
        .availability_zone("eu-west-1a")
        .size(10)
        .send()
        .await
        .expect("volume")
        .volume_id()
        .expect("id")
        .to_owned();
    let aws = AwsSnapshots::from_config(&moto.sdk_config("eu-west-1"));
    let taken = aws
        .take(
            &disk,
            &[("coldstart.dev/pv".to_owned(), "pv-db".to_owned())].into(),
        )
        .await
        .expect("CreateSnapshot");
    assert!(taken.id.starts_with("snap-"), "{taken:?}");
    assert_eq!(taken.size_gib, Some(10));

    let req = RestoreRequest {
        snapshot: taken.id.clone(),
        zone: "eu-west-1b".into(),
        restored_for: "s1/pv-db".into(),
        fast_restore: false,
        initialization_rate_mib_s: None,
    };
    let restored = aws.restore(&req).await.expect("CreateVolume");
    assert!(restored.created);
    assert_ne!(restored.disk_id, disk);
    assert!(restored.hydration_ms > 0, "lazy loading takes time");
    let v = ec2
        .describe_volumes()
        .volume_ids(&restored.disk_id)
        .send()
        .await
        .expect("describe");
    let v = &v.volumes()[0];
    assert_eq!(v.snapshot_id(), Some(taken.id.as_str()));
    assert_eq!(v.availability_zone(), Some("eu-west-1b"));
    assert!(
        v.tags()
            .iter()
            .any(|t| t.key() == Some(RESTORED_FOR) && t.value() == Some("s1/pv-db"))
    );
    let again = aws.restore(&req).await.expect("re-run");
    assert_eq!(
        (again.disk_id.as_str(), again.created),
        (restored.disk_id.as_str(), false),
        "a re-run finds the disk it created"
    );

    let fsr = aws
        .restore(&RestoreRequest {
            fast_restore: true,
            restored_for: "s2/pv-db".into(),
            ..req.clone()
        })
        .await
        .expect_err("moto has no EnableFastSnapshotRestores");
    assert!(
        fsr.to_string().contains("ec2:EnableFastSnapshotRestores"),
        "{fsr}"
    );

    assert!(aws.delete(&taken.id).await.expect("DeleteSnapshot"));
    assert!(!aws.delete(&taken.id).await.expect("already gone"));
}

/// The whole road on AWS (moto): `snapshot --cloud aws` takes an EBS snapshot of the
/// snapshot-policy volume, the disk is deleted with the cluster, and `restore --cloud aws`
/// brings the claim back on a new EBS volume created from the snapshot — new by policy.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_on_aws_brings_a_lost_snapshot_policy_volume_back_from_its_ebs_snapshot() {
    let moto = crate::helpers::Moto::start().await;
    let ec2 = moto.ec2("eu-west-1");
    let disk = ec2
        .create_volume()
        .availability_zone("eu-west-1a")
        .size(20)
        .send()
        .await
        .expect("volume")
        .volume_id()
        .expect("id")
        .to_owned();
    let c = TestCluster::start().await;
    c.create(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    );
    c.create(serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pv-orders"},
        "spec": {"capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "gp3",
            "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": disk},
            "claimRef": {"namespace": "shop", "name": "orders"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": ["eu-west-1a"]}]}]}}}}));
    c.create(serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "orders", "namespace": "shop",
            "annotations": {"coldstart.dev/data-policy": "snapshot"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "volumeName": "pv-orders",
            "resources": {"requests": {"storage": "20Gi"}}}}));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", dir.path().display());
    let aws = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coldstart"));
        cmd.arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .args(["--store", &store])
            .args(args)
            .env("COLDSTART_ENCRYPTION_KEY", KEY)
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "eu-west-1");
        async move {
            tokio::task::spawn_blocking(move || cmd.output().expect("coldstart runs"))
                .await
                .expect("join")
        }
    };
    let snap = ok(
        &aws(&["snapshot", "--cloud", "aws", "--json"]).await,
        "snapshot",
    );
    assert!(snap.is_object(), "{snap}");
    let snapshots = ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .expect("snapshots");
    let taken: Vec<_> = snapshots
        .snapshots()
        .iter()
        .filter(|s| s.volume_id() == Some(disk.as_str()))
        .collect();
    assert_eq!(taken.len(), 1, "one EBS snapshot of the volume");
    let snap_id = taken[0].snapshot_id().expect("id").to_owned();

    c.teardown().await;
    ec2.delete_volume()
        .volume_id(&disk)
        .send()
        .await
        .expect("lost");
    let r = ok(
        &aws(&[
            "restore",
            "--cloud",
            "aws",
            "--json",
            "--verify-timeout",
            "20",
        ])
        .await,
        "restore",
    );
    assert_eq!(r["succeeded"], true, "{r:#}");
    assert_eq!(
        (&r["volumes_from_snapshot"], &r["new_disks"]),
        (&serde_json::json!(1), &serde_json::json!(0)),
        "{r:#}"
    );
    let pv = c.get("", "persistentvolumes", "", "pv-orders").expect("pv");
    let new_disk = pv["spec"]["csi"]["volumeHandle"].as_str().expect("handle");
    assert_ne!(new_disk, disk);
    let v = ec2
        .describe_volumes()
        .volume_ids(new_disk)
        .send()
        .await
        .expect("the new volume exists in EC2");
    assert_eq!(v.volumes()[0].snapshot_id(), Some(snap_id.as_str()));
    c.stop().await;
}

on_both_planes!(pruning_a_snapshot_deletes_the_cloud_snapshots_only_it_named = pruning);

async fn pruning(plane: Plane) {
    use std::sync::Arc;

    use coldstart::cloud::snapshots::SimSnapshots;
    use coldstart::snapshot::crypto::Keys;
    use coldstart::snapshot::prune::{self, Policy};
    use coldstart::snapshot::write;
    use coldstart::store::Store;

    let c = settled_platform_on(plane).await;
    tenant_disk(&c, &["coldstart.dev/data-policy=transfer-or-snapshot"]).await;
    let store = Store::memory();
    let keys = Keys::from_master(&[3u8; 32]);
    let client = c.client().await;
    let mut taken = Vec::new();
    for _ in 0..2 {
        let m = write::take(
            &client,
            &store,
            &keys,
            &write::Options::default(),
            Arc::default(),
        )
        .await
        .expect("snapshot");
        let v = m
            .bindings
            .volumes
            .iter()
            .find(|v| v.cloud_snapshot.is_some())
            .expect("the tenant volume has a cloud snapshot");
        taken.push(v.cloud_snapshot.clone().expect("cloud snapshot").id);
    }
    assert_eq!(c.cloud().await.snapshots.len(), 2);
    let sim = SimSnapshots::new(client);
    let r = prune::prune(
        &store,
        &keys,
        Policy {
            keep_last: 1,
            ..Default::default()
        },
        std::time::Duration::ZERO,
        false,
        Some(&sim),
    )
    .await
    .expect("prune");
    assert_eq!(r.cloud_snapshots_deleted, [taken[0].clone()]);
    let left: Vec<String> = c.cloud().await.snapshots.keys().cloned().collect();
    assert_eq!(
        left,
        [taken[1].clone()],
        "the kept snapshot's cloud snapshot stays"
    );
    c.stop().await;
}

// On kube-apiserver this once showed the snapshot taken before the detach: coldstart waited
// for no ready replica, while the terminating pod kept its disk attached. It now waits
// for the PV's VolumeAttachment to go.
on_both_planes!(
    a_quiesce_hook_stops_the_claims_workload_for_its_cloud_snapshot_and_brings_it_back =
        quiesce_hook
);

async fn quiesce_hook(plane: Plane) {
    use std::sync::Arc;

    use coldstart::snapshot::crypto::Keys;
    use coldstart::snapshot::write;
    use coldstart::store::Store;
    use coldstart_sim::cloud::{Action, Resource};

    let c = settled_platform_on(plane).await;
    let disk = tenant_disk(
        &c,
        &[
            "coldstart.dev/data-policy=snapshot",
            "coldstart.dev/snapshot-quiesce=true",
        ],
    )
    .await;
    let replicas = async |c: &Bed| {
        c.get("apps", "deployments", "tenant-a", "postgres")
            .await
            .expect("postgres")["spec"]["replicas"]
            .as_i64()
    };
    let before = replicas(&c).await;
    let mark = c.cloud().await.position();
    write::take(
        &c.client().await,
        &Store::memory(),
        &Keys::from_master(&[4u8; 32]),
        &write::Options::default(),
        Arc::default(),
    )
    .await
    .expect("snapshot");
    assert_eq!(replicas(&c).await, before, "thawed: back to its replicas");
    let pg = c
        .get("apps", "deployments", "tenant-a", "postgres")
        .await
        .expect("postgres");
    assert!(
        pg["metadata"]["annotations"]
            .get(coldstart::snapshot::volumes::QUIESCED)
            .is_none()
    );
    // The disk was detached (the data store stopped) when its snapshot was taken.
    let cloud = c.cloud().await;
    let events: Vec<(Resource, Action)> = cloud
        .ledger
        .iter()
        .filter(|e| e.seq > mark && (e.id == disk || e.resource == Resource::Snapshot))
        .map(|e| (e.resource, e.action))
        .collect();
    let detached = events
        .iter()
        .position(|e| *e == (Resource::Disk, Action::Detached))
        .expect("detached for the snapshot");
    let snapped = events
        .iter()
        .position(|e| *e == (Resource::Snapshot, Action::Created))
        .expect("snapshot taken");
    assert!(detached < snapped, "{events:?}");
    wait_until_async("postgres is back on its disk", || async {
        c.cloud().await.disks[&disk].attached_to.is_some()
    })
    .await;
    c.stop().await;
}

// The Kubernetes-native road: with a VolumeSnapshotClass for the disk's CSI driver, the
// cloud snapshot is a CSI VolumeSnapshot (the simulated external-snapshotter takes it),
// recorded by its content's snapshotHandle — and a lost disk comes back from it.
on_both_planes!(
    with_a_volume_snapshot_class_the_cloud_snapshot_is_a_csi_volume_snapshot = volume_snapshot_road
);

async fn volume_snapshot_road(plane: Plane) {
    use std::sync::{Arc, Mutex};

    use coldstart::bindings::SnapshotRoad;
    use coldstart::restore::{self, RestoreOptions, source};
    use coldstart::snapshot::crypto::Keys;
    use coldstart::snapshot::{read, write};
    use coldstart::store::Store;
    use coldstart_sim::controllers::snapshots;

    let c = settled_platform_on(plane).await;
    for crd in snapshots::crds() {
        c.create(crd).await;
    }
    // Creating the class waits until the CRDs' kinds are served.
    c.create(serde_json::json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
        "metadata": {"name": "ebs", "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
        "driver": "ebs.csi.aws.com", "deletionPolicy": "Retain"}))
        .await;
    let disk = tenant_disk(&c, &["coldstart.dev/data-policy=snapshot"]).await;
    let store = Store::memory();
    let keys = Keys::from_master(&[6u8; 32]);
    let client = c.client().await;
    let m = write::take(
        &client,
        &store,
        &keys,
        &write::Options {
            // No provider: the Kubernetes road needs none.
            cloud: coldstart::cloud::CloudChoice::None,
            ..Default::default()
        },
        Arc::default(),
    )
    .await
    .expect("snapshot");
    let v = m
        .bindings
        .volumes
        .iter()
        .find(|v| v.disk_id == disk)
        .expect("tenant volume");
    let cs = v.cloud_snapshot.as_ref().expect("a cloud snapshot");
    assert_eq!(cs.road, SnapshotRoad::VolumeSnapshot);
    let (ns, name) = cs
        .volume_snapshot
        .as_deref()
        .and_then(|s| s.split_once('/'))
        .expect("ns/name");
    let vs = c
        .get(snapshots::GROUP, "volumesnapshots", ns, name)
        .await
        .expect("the VolumeSnapshot");
    assert_eq!(vs["status"]["readyToUse"], true);
    let cloud = c.cloud().await;
    let snap = cloud
        .snapshots
        .get(&cs.id)
        .expect("its handle is a cloud snapshot");
    assert_eq!(snap.disk_id, disk);

    // Lost with the cluster (reclaim policy Delete), back from the VolumeSnapshot's handle.
    c.teardown().await;
    assert!(
        !c.cloud().await.disks.contains_key(&disk),
        "deleted with the cluster"
    );
    let snap = read::open(&store, &keys, &m.id).await.expect("open");
    let r = restore::run(
        &client,
        &source::from_snapshot(&snap),
        &RestoreOptions {
            verify_timeout: std::time::Duration::from_secs(15),
            operator_timeout: std::time::Duration::from_secs(15),
            cloud: coldstart::cloud::CloudChoice::Sim,
            // Without a stop, ZooKeeper's disks and two addresses went with the cluster
            // too: started without (held), the tenant volume is not among them.
            accept_missing: coldstart::preflight::AcceptMissing::from_flags(&["all".into()]),
            ..Default::default()
        },
        &Arc::new(Mutex::new(coldstart::progress::Progress::default())),
    )
    .await
    .expect("restore");
    assert!(r.succeeded, "{:#?}", r.verification);
    assert_eq!((r.volumes_from_snapshot, r.new_disks), (1, 0));
    assert!(
        c.get(snapshots::GROUP, "volumesnapshots", ns, name)
            .await
            .is_none(),
        "coldstart's own VolumeSnapshot is not restored (it would snapshot the new disk)"
    );
    c.stop().await;
}
