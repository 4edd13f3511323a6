//! Planned stop and start, end to end on the simulated platform: audit says what would be
//! lost, stop fixes it and quiesces, the cluster is deleted the way a cloud deletes one, and
//! start brings back the same disks, addresses, DNS names and buckets with nothing new —
//! while the same cycle without `stop` loses exactly what the audit said. Each scenario runs
//! on both API servers ([`Plane`]) but the start killed halfway: it slows the embedded
//! server's writes through its fault injection, which Kubernetes' own has no equivalent of.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{Bed, Plane, TestCluster, keys, on_both_planes};
use crate::restore::{settled_platform, settled_platform_on};
use coldstart::audit::{self, FindingKind};
use coldstart::lifecycle::{self, StartOptions, StopOptions};
use coldstart::progress::Progress;
use coldstart::restore::{self, RestoreOptions};
use coldstart::snapshot::{read, write};
use coldstart::store::Store;
use coldstart_sim::cloud::CloudState;

fn snapshot_opts() -> write::Options {
    crate::helpers::snapshot_opts("platform")
}

fn restore_opts() -> RestoreOptions {
    crate::helpers::sim_restore_opts()
}

/// Every workload's replicas, by `namespace/name`.
async fn replicas(c: &Bed) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for plural in ["deployments", "statefulsets"] {
        let list = c.get_json(&[plural, "-A"]).await;
        for w in list["items"].as_array().expect("items") {
            out.insert(
                format!(
                    "{}/{}",
                    w["metadata"]["namespace"].as_str().unwrap_or_default(),
                    w["metadata"]["name"].as_str().unwrap_or_default()
                ),
                w["spec"]["replicas"].as_i64().unwrap_or(1),
            );
        }
    }
    out
}

/// Disks (id, data token), addresses, DNS (name → target), buckets.
type Inventory = (
    Vec<(String, String)>,
    Vec<String>,
    BTreeMap<String, String>,
    Vec<String>,
);

fn inventory(cloud: &CloudState) -> Inventory {
    let mut disks: Vec<_> = cloud
        .disks
        .values()
        .map(|d| (d.id.clone(), d.data_token.clone()))
        .collect();
    disks.sort();
    let mut ips: Vec<_> = cloud.addresses.keys().cloned().collect();
    ips.sort();
    let dns = cloud
        .dns
        .iter()
        .map(|(k, v)| (k.clone(), v.target.clone()))
        .collect();
    let mut buckets: Vec<_> = cloud.buckets.keys().cloned().collect();
    buckets.sort();
    (disks, ips, dns, buckets)
}

on_both_planes!(
    stop_then_teardown_then_start_brings_back_every_original_and_nothing_new = stop_teardown_start
);

async fn stop_teardown_start(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let client = c.client().await;
    let store = Store::memory();
    let progress = Arc::new(Mutex::new(Progress::default()));

    // The audit names what a deletion would lose right now.
    let inputs = audit::collect(&client, None).await.expect("audit inputs");
    let findings = audit::audit(&inputs, chrono::Utc::now(), Duration::from_secs(900));
    let lost_volumes = findings
        .iter()
        .filter(|f| f.kind == FindingKind::VolumeDeletedWithCluster)
        .count();
    let lost_ips = findings
        .iter()
        .filter(|f| f.kind == FindingKind::AddressReleasedWithCluster)
        .count();
    assert_eq!(
        (lost_volumes, lost_ips),
        (4, 2),
        "ZooKeeper ×3 and PostgreSQL disks; mqtt and api addresses"
    );

    let before_replicas = replicas(&c).await;
    let stop_opts = StopOptions {
        snapshot: snapshot_opts(),
        quiesce_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let stopped = lifecycle::stop(&client, &store, &keys(), &stop_opts, &progress)
        .await
        .expect("stop");
    assert!(stopped.changes.len() >= 8, "{:#?}", stopped.changes);
    assert!(
        replicas(&c).await.values().all(|r| *r == 0),
        "everything quiesced"
    );
    assert!(
        c.cloud()
            .await
            .disks
            .values()
            .all(|d| d.attached_to.is_none()),
        "every disk detached"
    );
    let after_stop = audit::audit(
        &audit::collect(&client, None).await.expect("inputs"),
        chrono::Utc::now(),
        Duration::from_secs(900),
    );
    assert!(
        // A transfer-policy disk stays its data's only copy: said, not something a stop fixes.
        after_stop
            .iter()
            .all(|f| matches!(f.kind, FindingKind::NoSnapshot | FindingKind::SingleCopy)),
        "after stop nothing is losable: {after_stop:#?}"
    );
    let before = inventory(&c.cloud().await);

    c.teardown().await;
    let mark = c.cloud().await.position();
    assert_eq!(
        inventory(&c.cloud().await).0,
        before.0,
        "no disk was lost with the cluster"
    );
    assert_eq!(
        inventory(&c.cloud().await).1,
        before.1,
        "no address was released"
    );

    let start_opts = StartOptions {
        restore: restore_opts(),
        snapshot: None,
        ready_timeout: Duration::from_secs(20),
        consent: Default::default(),
    };
    let started = lifecycle::start(&client, &store, &keys(), &start_opts, &progress)
        .await
        .expect("start");
    assert!(started.restore.succeeded, "{:#?}", started.restore);
    assert_eq!(
        (
            started.restore.new_disks,
            started.restore.new_ips,
            started.restore.new_buckets
        ),
        (0, 0, 0)
    );
    assert_eq!(started.restore.volumes_reused, 7);
    assert_eq!(started.restore.ips_reused, 4);
    assert_eq!(started.scaled_up.len(), 3, "data, operators, apps");
    let created = c.cloud().await.created_since(mark);
    assert_eq!(
        (created.disks, created.ips, created.buckets),
        (0, 0, 0),
        "the ledger shows nothing new"
    );
    assert_eq!(
        inventory(&c.cloud().await),
        before,
        "same disks (data intact), addresses, DNS targets, buckets"
    );
    assert_eq!(
        replicas(&c).await,
        before_replicas,
        "replicas are as before"
    );
    // The restore parks each tenant's quota while its pods come back; start gives the
    // limits back.
    let quotas = c.list("", "resourcequotas").await;
    assert!(!quotas.is_empty(), "the platform's tenants have quotas");
    for q in &quotas {
        assert!(
            q["metadata"]["annotations"][coldstart::restore::plan::ORIGINAL_QUOTA].is_null()
                && q["spec"]["hard"]["requests.cpu"].is_string(),
            "quota back to its limits: {q}"
        );
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let created = c.cloud().await.created_since(mark);
    assert_eq!(
        (created.disks, created.ips, created.buckets),
        (0, 0, 0),
        "running operators created nothing"
    );
    c.stop().await;
}

on_both_planes!(
    without_stop_a_snapshot_teardown_restore_loses_what_the_audit_named =
        without_stop_the_audited_losses_happen
);

async fn without_stop_the_audited_losses_happen(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let client = c.client().await;
    let store = Store::memory();
    let inputs = audit::collect(&client, None).await.expect("audit inputs");
    let findings = audit::audit(&inputs, chrono::Utc::now(), Duration::from_secs(900));
    let named_disks: Vec<String> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::VolumeDeletedWithCluster)
        .filter_map(|f| f.message.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    let named_ips: Vec<String> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::AddressReleasedWithCluster)
        .filter_map(|f| f.message.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    let m = write::take(
        &client,
        &store,
        &keys(),
        &snapshot_opts(),
        Arc::new(write::CaptureProgress::default()),
    )
    .await
    .expect("snapshot");
    c.teardown().await;
    let cloud = c.cloud().await;
    for d in &named_disks {
        let id = d.rsplit('/').next().unwrap_or(d);
        assert!(
            !cloud.disks.contains_key(id),
            "the audit said {id} would be lost, and it was"
        );
    }
    for ip in &named_ips {
        assert!(
            !cloud.addresses.contains_key(ip),
            "the audit said {ip} would be released, and it was"
        );
    }
    let snap = read::open(&store, &keys(), &m.id).await.expect("verified");
    let source = restore::source::from_snapshot(&snap);
    let progress = Arc::new(Mutex::new(Progress::default()));
    // The preflight knows before the first write what the deletion lost, and names it.
    let err = restore::run(&client, &source, &restore_opts(), &progress)
        .await
        .expect_err("refused at preflight");
    let restore::RestoreError::Refused(pre) = err else {
        panic!("expected a preflight refusal, got {err}");
    };
    let missing: Vec<&str> = pre
        .rows
        .iter()
        .filter(|r| r.problem.is_some())
        .map(|r| r.target.as_str())
        .collect();
    for d in &named_disks {
        let id = d.rsplit('/').next().unwrap_or(d);
        assert!(
            missing.contains(&id),
            "{id} named at preflight: {missing:?}"
        );
    }
    for ip in &named_ips {
        assert!(
            missing.contains(&ip.as_str()),
            "{ip} named at preflight: {missing:?}"
        );
    }
    // Accepted, everything else comes back: only the Retain (Kafka) disks and the pinned
    // addresses were there to reuse.
    let accepted = RestoreOptions {
        accept_missing: coldstart::preflight::AcceptMissing::from_flags(&["all".to_owned()]),
        ..restore_opts()
    };
    let report = restore::run(&client, &source, &accepted, &progress)
        .await
        .expect("restore");
    assert!(report.partly_up, "what used the lost bindings is held");
    assert_eq!(
        report.volumes_reused, 3,
        "only the Retain (Kafka) disks come back"
    );
    assert_eq!(report.ips_reused, 2, "only the pinned addresses come back");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_killed_halfway_and_run_again_converges_to_the_same_end_state() {
    let c = settled_platform().await;
    let client = c.client().await;
    let store = Store::memory();
    let progress = Arc::new(Mutex::new(Progress::default()));
    let stop_opts = StopOptions {
        snapshot: snapshot_opts(),
        quiesce_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    lifecycle::stop(&client, &store, &keys(), &stop_opts, &progress)
        .await
        .expect("stop");
    let before = inventory(&c.cloud());
    c.teardown().await;
    let mark = c.cloud().position();
    // Slow every write down so the first start is killed in the middle of its tiers.
    let (code, _) = crate::helpers::http(
        "PUT",
        &format!("{}/sim/v1/faults", c.url()),
        Some("application/json"),
        Some(r#"{"latencyMs": 15, "writesOnly": true}"#.into()),
    )
    .await;
    assert_eq!(code, 200);
    let start_opts = StartOptions {
        restore: restore_opts(),
        snapshot: None,
        ready_timeout: Duration::from_secs(20),
        consent: Default::default(),
    };
    let first = {
        let (client, store, opts, progress) = (
            client.clone(),
            store.clone(),
            start_opts.clone(),
            progress.clone(),
        );
        tokio::spawn(
            async move { lifecycle::start(&client, &store, &keys(), &opts, &progress).await },
        )
    };
    wait_until_async(|| progress.lock().map(|p| p.done() > 20).unwrap_or(false)).await;
    first.abort();
    let _ = first.await;
    let partial = replicas_or_none(&c);
    assert!(
        partial < 81,
        "the first start was really cut short ({partial} objects restored)"
    );
    crate::helpers::http(
        "PUT",
        &format!("{}/sim/v1/faults", c.url()),
        Some("application/json"),
        Some("{}".into()),
    )
    .await;
    let again = lifecycle::start(&client, &store, &keys(), &start_opts, &progress)
        .await
        .expect("second start");
    assert!(
        again.restore.succeeded,
        "{:#?}",
        again.restore.verification.problems
    );
    assert!(
        again.restore.tiers.values().any(|t| t.existing > 0),
        "what the first run created is skipped"
    );
    assert_eq!(inventory(&c.cloud()), before);
    let created = c.cloud().created_since(mark);
    assert_eq!((created.disks, created.ips, created.buckets), (0, 0, 0));
    c.stop().await;
}

async fn wait_until_async(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many platform objects exist in the (new) cluster.
fn replicas_or_none(c: &TestCluster) -> usize {
    let sim = c.sim();
    let reg = sim.registry();
    reg.all()
        .map(|d| {
            sim.store
                .all(&d.group_resource(), None)
                .iter()
                .filter(|(k, _)| k.0.starts_with("tenant-") || k.0 == "kafka")
                .count()
        })
        .sum()
}

on_both_planes!(a_stop_can_be_undone_while_the_cluster_still_runs = stop_undone);

async fn stop_undone(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let client = c.client().await;
    let store = Store::memory();
    let progress = Arc::new(Mutex::new(Progress::default()));
    let before = replicas(&c).await;
    let pv_policy = async |c: &Bed| {
        c.get("", "persistentvolumes", "", "pv-zookeeper-0")
            .await
            .expect("pv")["spec"]["persistentVolumeReclaimPolicy"]
            .clone()
    };
    assert_eq!(pv_policy(&c).await, "Delete");
    let stop_opts = StopOptions {
        snapshot: snapshot_opts(),
        quiesce_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    lifecycle::stop(&client, &store, &keys(), &stop_opts, &progress)
        .await
        .expect("stop");
    assert_eq!(pv_policy(&c).await, "Retain");
    let undone = lifecycle::undo_stop(&client, &store, &keys(), Duration::from_secs(20))
        .await
        .expect("undo");
    assert!(undone.changes_undone >= 8);
    assert_eq!(
        pv_policy(&c).await,
        "Delete",
        "the recorded change is reverted"
    );
    assert_eq!(
        replicas(&c).await,
        before,
        "every workload is back at its replicas"
    );
    assert!(
        c.get("", "services", "tenant-a", "mqtt")
            .await
            .expect("svc")["spec"]
            .get("loadBalancerIP")
            .is_none()
    );
    c.stop().await;
}

on_both_planes!(
    a_step_of_many_workloads_is_watched_as_one_kind_and_names_only_what_never_came_up =
        many_workloads_one_watch
);

/// More Deployments than are watched one by one, plus one that does not exist: starting,
/// the wait names only the missing one (as not ready) once its timeout passes; stopping,
/// every one at 0 and the missing one count as quiesced.
async fn many_workloads_one_watch(plane: Plane) {
    use coldstart::lifecycle::stop::{self, Group, ObjectRef, QuiesceStep, Quiesced};
    let c = Bed::start(plane, coldstart_sim::seed::Seed::Empty).await;
    c.create(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "many"}}),
    )
    .await;
    let names: Vec<String> = (0..24).map(|i| format!("app-{i:02}")).collect();
    for name in &names {
        c.create(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "many"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "main", "image": "registry.example.com/app:1"}]}}}
        }))
        .await;
    }
    let quiesced = |name: &str| Quiesced {
        object: ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("many".into()),
            name: name.into(),
        },
        replicas: 1,
    };
    let step = QuiesceStep {
        group: Group::Apps,
        workloads: names
            .iter()
            .map(|n| quiesced(n))
            .chain([quiesced("ghost")])
            .collect(),
    };
    let client = c.client().await;
    let resources = coldstart::k8s::Resources::discover(&client)
        .await
        .expect("discovery");

    c.wait_for("every Deployment ready", async |c| {
        c.list("apps", "deployments")
            .await
            .iter()
            .filter(|d| d["status"]["readyReplicas"] == 1)
            .count()
            == names.len()
    })
    .await;
    let err = stop::wait_step(&client, &resources, &step, false, Duration::from_secs(3))
        .await
        .expect_err("the missing Deployment never becomes ready");
    match err {
        stop::StopError::Stuck { stuck, .. } => {
            assert_eq!(stuck, ["Deployment many/ghost (0 ready)"]);
        }
        other => panic!("{other}"),
    }

    stop::scale_step(&client, &resources, &step, true)
        .await
        .expect_err("the missing Deployment cannot be patched");
    let real = QuiesceStep {
        group: Group::Apps,
        workloads: names.iter().map(|n| quiesced(n)).collect(),
    };
    stop::scale_step(&client, &resources, &real, true)
        .await
        .expect("scaled to 0");
    stop::wait_step(&client, &resources, &step, true, Duration::from_secs(60))
        .await
        .expect("every Deployment at 0 and the missing one count as quiesced");
    c.stop().await;
}
