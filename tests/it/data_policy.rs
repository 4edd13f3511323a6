//! Per-volume data policy end to end on the simulated cloud: a transfer-policy Kafka disk
//! comes back as the original, a snapshot-policy tenant disk lost with the cluster comes
//! back from its cloud snapshot on a new disk that hydrates — and the report counts it as
//! new by policy, never new by accident.

use std::process::Command;

use crate::helpers::{TestCluster, wait_until};
use crate::restore::settled_platform;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

async fn run(c: &TestCluster, store: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coldstart"));
    cmd.arg("--kubeconfig")
        .arg(&c.kubeconfig)
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

fn pv_of_claim(c: &TestCluster, ns: &str, name: &str) -> serde_json::Value {
    let pvc = c
        .get("", "persistentvolumeclaims", ns, name)
        .expect("claim");
    let pv = pvc["spec"]["volumeName"]
        .as_str()
        .expect("bound")
        .to_owned();
    c.get("", "persistentvolumes", "", &pv).expect("pv")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_snapshot_policy_disk_comes_back_from_its_snapshot_and_kafka_as_the_original() {
    let c = settled_platform().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", dir.path().display());
    c.kubectl_ok(&[
        "annotate",
        "pvc",
        "-n",
        "tenant-a",
        "pg-data",
        "coldstart.dev/data-policy=snapshot",
    ])
    .await;
    let tenant_disk = pv_of_claim(&c, "tenant-a", "pg-data")["spec"]["csi"]["volumeHandle"]
        .as_str()
        .expect("handle")
        .to_owned();
    let kafka_disk = pv_of_claim(&c, "kafka", "data-kafka-0")["spec"]["csi"]["volumeHandle"]
        .as_str()
        .expect("handle")
        .to_owned();
    let data_of = |id: &str| c.cloud().disks.get(id).map(|d| d.data_token.clone());
    let tenant_data = data_of(&tenant_disk).expect("tenant disk");
    let kafka_data = data_of(&kafka_disk).expect("kafka disk");

    // A planned stop: its final snapshot takes a cloud snapshot of the tenant disk only.
    ok(&run(&c, &store, &["stop", "--json"]).await, "stop");
    let snaps = c.cloud().snapshots;
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
            &c,
            &store,
            &["sim", "cloud", "delete", "disk", &tenant_disk, "--json"],
        )
        .await,
        "sim cloud delete disk",
    );
    assert!(data_of(&tenant_disk).is_none(), "the tenant disk is gone");

    // The dry run says, per volume, which it will be and why.
    let plan = ok(
        &run(
            &c,
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

    let mark = c.cloud().position();
    let started = ok(
        &run(&c, &store, &["start", "--json", "--timeout", "60"]).await,
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
    let kafka_pv = pv_of_claim(&c, "kafka", "data-kafka-0");
    assert_eq!(kafka_pv["spec"]["csi"]["volumeHandle"], kafka_disk.as_str());
    assert_eq!(data_of(&kafka_disk), Some(kafka_data));

    // The tenant: a new disk with the snapshot's data, hydrating until done.
    let tenant_pv = pv_of_claim(&c, "tenant-a", "pg-data");
    let new_disk = tenant_pv["spec"]["csi"]["volumeHandle"]
        .as_str()
        .expect("handle")
        .to_owned();
    assert_ne!(new_disk, tenant_disk, "a new disk");
    let cloud = c.cloud();
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
    wait_until("the new disk has hydrated", || {
        !c.cloud()
            .disks
            .get(&new_disk)
            .expect("disk")
            .hydration(chrono::Utc::now())
            .hydrating
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scratch_drill_restores_the_tenant_volume_from_its_snapshot_and_checks_its_data() {
    use std::sync::{Arc, Mutex};

    use coldstart::cloud::snapshots::DataCheck;
    use coldstart::drill::{self, DrillOptions};
    use coldstart::restore::RestoreOptions;
    use coldstart::snapshot::crypto::Keys;
    use coldstart::snapshot::write;
    use coldstart::store::Store;

    let c = settled_platform().await;
    c.kubectl_ok(&[
        "annotate",
        "pvc",
        "-n",
        "tenant-a",
        "pg-data",
        "coldstart.dev/data-policy=snapshot",
    ])
    .await;
    let tenant_disk = pv_of_claim(&c, "tenant-a", "pg-data")["spec"]["csi"]["volumeHandle"]
        .as_str()
        .expect("handle")
        .to_owned();
    let tenant_data = c.cloud().disks[&tenant_disk].data_token.clone();
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
    // stand-ins play production's disks and addresses (which must stay untouched).
    let scratch = TestCluster::start().await;
    let manifest = coldstart::snapshot::read::manifest(&store, &keys, &id)
        .await
        .expect("manifest");
    {
        let mut cloud = scratch.sim().cloud.lock();
        cloud.snapshots.extend(c.cloud().snapshots);
        drill::rehearsal::install_stand_ins(&mut cloud, &manifest.bindings);
    }
    let opts = DrillOptions {
        target: drill::Target::Cluster {
            client: scratch.client().await,
            label: "scratch".into(),
        },
        restore: RestoreOptions {
            verify_timeout: std::time::Duration::from_secs(20),
            cloud: coldstart::cloud::Provider::Sim,
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
    assert_eq!(scratch.cloud().disks[&checked.disk].data_token, tenant_data);
    let pv = pv_of_claim(&scratch, "tenant-a", "pg-data");
    assert_eq!(pv["spec"]["csi"]["volumeHandle"], checked.disk.as_str());
    assert_eq!(pv["spec"]["csi"]["driver"], "ebs.csi.aws.com");
    assert!(
        scratch.cloud().disks[&tenant_disk].attached_to.is_none(),
        "production's disk (its stand-in here) is not attached"
    );
    assert!(
        report.steps.iter().any(|s| s.name == "verify-data" && s.ok),
        "{:#?}",
        report.steps
    );
}
