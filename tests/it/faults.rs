//! Faults and mistakes a hostile SRE would try (issue 15): each one must leave the cluster
//! no worse than it was. Every test here failed on the code before its fix. The stop's
//! faults run on both API servers ([`Plane`]): "nothing changed" is what `stop` would change
//! (replicas, reclaim policies, Service annotations, the gate) and the objects clients
//! created, all as they were; the rest stays on the embedded server.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{Bed, Plane, ReadOnlyStore, TestCluster, on_both_planes, wait_until_async};
use crate::restore::settled_platform_on;
use coldstart::lifecycle::{self, LifecycleError, StopOptions};
use coldstart::progress::Progress;
use coldstart::snapshot::write;
use coldstart::store::Store;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "HwAeHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

use crate::helpers::keys;

fn coldstart() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coldstart"))
}

async fn run(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("coldstart runs"))
        .await
        .expect("join")
}

/// `coldstart --kubeconfig … --store … ARGS` with `key` as the encryption key.
fn cli(kubeconfig: &std::path::Path, store: &str, key: &str, args: &[&str]) -> Command {
    let mut cmd = coldstart();
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--store", store])
        .args(args)
        .env("COLDSTART_ENCRYPTION_KEY", key);
    cmd
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every workload's replicas, by `namespace/name`, through the API.
async fn replicas(c: &Bed) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for plural in ["deployments", "statefulsets"] {
        for w in c.list("apps", plural).await {
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

async fn pv_policy(c: &Bed) -> serde_json::Value {
    c.get("", "persistentvolumes", "", "pv-zookeeper-0")
        .await
        .expect("pv")["spec"]["persistentVolumeReclaimPolicy"]
        .clone()
}

/// What a stop changes, as it is: every workload's replicas, every volume's reclaim policy,
/// every Service's annotations (pins), the gate's policies; and the objects clients created.
async fn stop_state(c: &Bed) -> serde_json::Value {
    let mut policies = BTreeMap::new();
    for pv in c.list("", "persistentvolumes").await {
        policies.insert(
            pv["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            pv["spec"]["persistentVolumeReclaimPolicy"].clone(),
        );
    }
    let mut pins = BTreeMap::new();
    for svc in c.list("", "services").await {
        pins.insert(
            format!(
                "{}/{}",
                svc["metadata"]["namespace"].as_str().unwrap_or_default(),
                svc["metadata"]["name"].as_str().unwrap_or_default()
            ),
            svc["metadata"]["annotations"].clone(),
        );
    }
    serde_json::json!({
        "replicas": replicas(c).await,
        "reclaim": policies,
        "annotations": pins,
        "objects": c.user_objects().await,
    })
}

fn stop_opts() -> StopOptions {
    StopOptions {
        snapshot: write::Options {
            cluster_name: "platform".into(),
            ..Default::default()
        },
        quiesce_timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

on_both_planes!(
    stop_undo_on_the_cli_brings_every_workload_back_and_reverts_every_change = stop_undo
);

async fn stop_undo(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let kc = c.kubeconfig.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", dir.path().display());
    let before = replicas(&c).await;
    assert_eq!(pv_policy(&c).await, "Delete");
    let out = run(cli(&kc, &store, KEY, &["stop", "--timeout", "30"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let stopped = replicas(&c).await;
    assert!(stopped.values().all(|r| *r == 0), "{stopped:?}");
    let out = run(cli(
        &kc,
        &store,
        KEY,
        &["stop", "--undo", "--timeout", "30"],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("stop undone"), "{printed}");
    assert_eq!(
        replicas(&c).await,
        before,
        "every workload is back at its replicas"
    );
    assert_eq!(
        pv_policy(&c).await,
        "Delete",
        "the recorded change is reverted"
    );
    let out = run(cli(&kc, &store, KEY, &["start"])).await;
    assert!(!out.status.success(), "nothing is left to start from");
    c.stop().await;
}

on_both_planes!(a_stop_with_the_wrong_key_changes_nothing_in_the_cluster = stop_with_the_wrong_key);

async fn stop_with_the_wrong_key(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let kc = c.kubeconfig.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", dir.path().display());
    let out = run(cli(&kc, &store, KEY, &["snapshot"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let before = stop_state(&c).await;
    let out = run(cli(&kc, &store, OTHER_KEY, &["stop", "--timeout", "30"])).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("different key"),
        "the error names the key: {err}"
    );
    assert_eq!(
        stop_state(&c).await,
        before,
        "nothing was changed in the cluster: {err}"
    );
    c.stop().await;
}

on_both_planes!(
    a_stop_into_a_read_only_store_changes_nothing_in_the_cluster = stop_into_a_read_only_store
);

async fn stop_into_a_read_only_store(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let client = c.client().await;
    let store = Store::new(Arc::new(ReadOnlyStore::default()), "", "s3://read-only");
    let progress = Arc::new(Mutex::new(Progress::default()));
    let before = stop_state(&c).await;
    let err = lifecycle::stop(&client, &store, &keys(), &stop_opts(), &progress)
        .await
        .expect_err("a read-only store cannot take the final snapshot");
    assert!(
        matches!(err, LifecycleError::StorePreflight(_)),
        "refused in the preflight: {err}"
    );
    assert!(
        err.to_string()
            .contains("nothing in the cluster was changed"),
        "{err}"
    );
    assert_eq!(stop_state(&c).await, before, "nothing changed: {err}");
    c.stop().await;
}

on_both_planes!(a_stop_killed_halfway_can_be_undone_with_every_original = stop_killed_halfway);

async fn stop_killed_halfway(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let client = c.client().await;
    let store = Store::memory();
    let before = replicas(&c).await;
    let task = {
        let (client, store) = (client.clone(), store.clone());
        tokio::spawn(async move {
            let progress = Arc::new(Mutex::new(Progress::default()));
            lifecycle::stop(&client, &store, &keys(), &stop_opts(), &progress).await
        })
    };
    // Killed once the first workloads are at 0 (apps quiesced, the rest still running).
    wait_until_async("the stop has scaled something down", || async {
        replicas(&c).await.values().any(|r| *r == 0)
    })
    .await;
    task.abort();
    let _ = task.await;
    assert_eq!(
        pv_policy(&c).await,
        "Retain",
        "the stop had begun its changes"
    );
    lifecycle::undo_stop(&client, &store, &keys(), Duration::from_secs(20))
        .await
        .expect("an interrupted stop is recorded and can be undone");
    assert_eq!(replicas(&c).await, before);
    assert_eq!(pv_policy(&c).await, "Delete");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_is_refused_while_a_restore_is_unfinished_and_nothing_is_stored() {
    let c = TestCluster::start().await;
    let client = c.client().await;
    let store = Store::memory();
    // What `restore` records before its first object (and leaves if it is killed).
    c.create(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": coldstart::restore::STATE_CONFIGMAP, "namespace": "kube-system"},
        "data": {"snapshot": "20250101T000000000Z-aaaa", "phase": "restoring"}}));
    let err = write::take(
        &client,
        &store,
        &keys(),
        &stop_opts().snapshot,
        Arc::new(write::CaptureProgress::default()),
    )
    .await
    .expect_err("a half-restored cluster is not snapshotted");
    assert!(
        matches!(err, write::WriteError::RestoreUnfinished(_)),
        "{err}"
    );
    assert!(err.to_string().contains("is restoring"), "{err}");
    assert!(
        coldstart::snapshot::read::list(&store, &keys())
            .await
            .expect("list")
            .is_empty(),
        "no snapshot became the newest"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_restore_prints_no_secret_value_in_json_or_text() {
    let c = TestCluster::start().await;
    c.create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop"}}));
    // base64 of "correct-horse-battery-staple"
    let value = "Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5LXN0YXBsZQ==";
    c.create(serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "data": {"password": value}}));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", dir.path().display());
    let out = run(cli(&c.kubeconfig, &store, KEY, &["snapshot"])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    for args in [
        &["restore", "--dry-run", "--json"][..],
        &["restore", "--dry-run"][..],
    ] {
        let out = run(cli(&c.kubeconfig, &store, KEY, args)).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(
            !printed.contains(value),
            "{args:?} printed the Secret: {printed}"
        );
        assert!(!printed.contains("correct-horse"), "{args:?}");
    }
    let out = run(cli(
        &c.kubeconfig,
        &store,
        KEY,
        &["restore", "--dry-run", "--json"],
    ))
    .await;
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json plan");
    let shown = plan.to_string();
    assert!(shown.contains("\"password\":\"<redacted>\""), "{shown}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restoring_another_clusters_snapshot_into_a_live_cluster_is_refused_naming_why() {
    let a = TestCluster::start().await;
    a.create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop"}}));
    a.create(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cart", "namespace": "shop"}, "data": {"a": "1"}}));
    let b = TestCluster::start().await;
    b.create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "billing"}}));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", dir.path().display());
    let out = run(cli(
        &a.kubeconfig,
        &store,
        KEY,
        &["snapshot", "--cluster-name", "cluster-a"],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));

    let before = b.sim().store.resource_version();
    let out = run(cli(
        &b.kubeconfig,
        &store,
        KEY,
        &["restore", "--cluster-name", "cluster-b"],
    ))
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--from-cluster cluster-a"),
        "names the identity: {err}"
    );
    assert!(
        err.contains("--into-non-empty") && err.contains("billing"),
        "names the target: {err}"
    );
    assert_eq!(b.sim().store.resource_version(), before, "0 writes: {err}");

    // Naming only one of the two is not enough.
    let out = run(cli(
        &b.kubeconfig,
        &store,
        KEY,
        &[
            "restore",
            "--cluster-name",
            "cluster-b",
            "--from-cluster",
            "cluster-a",
        ],
    ))
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--into-non-empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(b.sim().store.resource_version(), before);

    // Told both by name, it restores (and keeps what exists).
    let out = run(cli(
        &b.kubeconfig,
        &store,
        KEY,
        &[
            "restore",
            "--cluster-name",
            "cluster-b",
            "--from-cluster",
            "cluster-a",
            "--into-non-empty",
            "--verify-timeout",
            "10",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(b.get("", "configmaps", "shop", "cart").is_some());
    assert!(b.get("", "namespaces", "", "billing").is_some());
    a.stop().await;
    b.stop().await;
}

/// A `coldstart serve` process (auto-restore on, no `POD_NAMESPACE`); killed on drop.
struct Serving(std::process::Child, String);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn serve_without_pod_namespace(
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
) -> Serving {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = dir.join("serve.yaml");
    std::fs::write(&config, format!(
        "cluster: {{ name: platform }}\nstore:\n  url: file://{}/store\nencryption:\n  key: env:COLDSTART_ENCRYPTION_KEY\n\
         schedules:\n  snapshot: {{ cron: \"0 0 1 1 *\" }}\nretention: {{ keepLast: 5 }}\ncoldStart: {{ autoRestore: true }}\n\
         leaderElection: {{ enabled: false }}\n", dir.display())).expect("config");
    let child = coldstart()
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&config)
        .env("COLDSTART_ENCRYPTION_KEY", KEY)
        .env_remove("POD_NAMESPACE")
        .env("COLDSTART_CLOUD", "sim")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve starts");
    let s = Serving(child, format!("http://127.0.0.1:{port}"));
    for _ in 0..100 {
        if reqwest::get(format!("{}/healthz", s.1)).await.is_ok() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("coldstart serve did not come up");
}

on_both_planes!(
    serve_restores_a_stopped_and_deleted_cluster_with_the_start_sequence_before_it_is_ready =
        serve_restores_a_stopped_cluster
);

async fn serve_restores_a_stopped_cluster(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}/store", dir.path().display());
    let before = replicas(&c).await;
    let out = run(cli(
        &c.kubeconfig,
        &store,
        KEY,
        &["stop", "--cluster-name", "platform", "--timeout", "30"],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    c.teardown().await;
    // coldstart itself is deployed first in the new cluster, in its own namespace; no
    // POD_NAMESPACE tells serve which one that is.
    c.create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "coldstart"}}))
        .await;
    c.create(serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coldstart", "namespace": "coldstart",
                     "labels": {"app.kubernetes.io/name": "coldstart"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app.kubernetes.io/name": "coldstart"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": "coldstart"}},
                              "spec": {"containers": [{"name": "c", "image": "coldstart"}]}}}}))
        .await;
    let s = serve_without_pod_namespace(&c.kubeconfig, dir.path()).await;
    crate::helpers::wait_until_async("the cold start is restored and ready", || async {
        reqwest::get(format!("{}/readyz", s.1))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let mut after = replicas(&c).await;
    after.remove("coldstart/coldstart");
    assert_eq!(
        after, before,
        "ready means every workload is back at its replicas, not at the stop's 0"
    );
    drop(s);
    c.stop().await;
}
