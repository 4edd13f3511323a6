//! The `coldstart` binary as a user runs it: the README's main job, the restore commands
//! and `serve`, each on both API servers ([`Plane`]); a wrong key and a tampered snapshot
//! (which fail before the cluster is touched) and `sim cloud` on the embedded one.

use std::process::Command;

use crate::helpers::{Plane, TestCluster, on_both_planes};
use crate::restore::settled_platform_on;

fn coldstart() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coldstart"))
}

async fn run(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("coldstart runs"))
        .await
        .expect("join")
}

on_both_planes!(
    the_demo_runs_a_full_stop_and_start_and_proves_nothing_new_was_provisioned =
        demo_proves_nothing_new
);

/// `coldstart demo` as the README runs it: a full stop and start of the simulated platform,
/// every disk, address and bucket the original.
async fn demo_proves_nothing_new(plane: Plane) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = coldstart();
    cmd.args(["demo", "--json", "--dir"]).arg(dir.path());
    if let Plane::Kubernetes = plane {
        cmd.args(["--control-plane", "kubernetes"]);
        // Fails, never skips, without the binaries tests/kube/build.sh makes.
        let bin = coldstart_sim::control_plane::locate_binaries().unwrap_or_else(|e| panic!("{e}"));
        cmd.env(coldstart_sim::control_plane::BIN_ENV, bin);
    }
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["verified"], true, "{report:#}");
    for k in ["new_disks", "new_ips", "new_buckets"] {
        assert_eq!(report[k], 0, "{k}");
    }
    assert_eq!(report["volumes_reused"], 7);
    assert_eq!(report["ips_reused"], 4);
    assert!(
        report["rows"]
            .as_array()
            .is_some_and(|r| r.iter().all(|x| x["same"] == true))
    );
}

on_both_planes!(
    snapshot_then_teardown_then_restore_with_the_cli_is_refused_at_preflight_then_comes_back_partly_up_when_accepted =
        cli_restore_refused_then_accepted
);

async fn cli_restore_refused_then_accepted(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", dir.path().display());
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let base = |args: &[&str]| {
        let mut cmd = coldstart();
        cmd.arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .args(["--store", &store])
            .args(args);
        cmd.env("COLDSTART_ENCRYPTION_KEY", key);
        cmd
    };
    let out = run(base(&["audit", "--json", "--fail-on", "high"])).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "high findings fail the audit for CI"
    );
    let out = run(base(&["snapshot", "--json"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(base(&["restore", "--dry-run"])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("== tier persistent-volumes")
            && plan.contains("reclaim policy Delete → Retain"),
        "{plan}"
    );
    c.teardown().await;
    // The preflight knows before the first write what the deletion lost: refused, exit 4.
    let out = run(base(&["restore", "--json", "--verify-timeout", "300"])).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(
        out.status.code(),
        Some(4),
        "without `stop`, lost Delete disks are refused at preflight: {report:#}"
    );
    assert_eq!(report["refused"], true);
    let refused: Vec<&str> = report["preflight"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| !r["problem"].is_null() && r["accepted"] == false)
        .filter_map(|r| r["subject"].as_str())
        .collect();
    assert!(refused.contains(&"pv-zookeeper-0"), "{refused:?}");
    let out = run(base(&["gate", "status"])).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not installed"),
        "a refused restore installs nothing"
    );
    // Accepted: everything else comes back, the users of what was lost are held, exit 3,
    // long before the 300 s verification timeout.
    let out = run(base(&[
        "restore",
        "--json",
        "--verify-timeout",
        "300",
        "--accept-missing",
        "all",
    ]))
    .await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(out.status.code(), Some(3), "partly up: {report:#}");
    assert_eq!(report["partly_up"], true);
    assert_eq!(report["volumes_reused"], 3, "{report:#}");
    assert_eq!(report["new_disks"], 0);
    let out = run(base(&["gate", "status"])).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("INSTALLED"),
        "the gate stays up for what is held"
    );
    let out = run(base(&["gate", "off"])).await;
    assert!(out.status.success());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_with_the_wrong_key_fails_before_changing_anything() {
    let c = TestCluster::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", dir.path().display());
    let mut snap = coldstart();
    snap.arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["--store", &store, "snapshot"])
        .env(
            "COLDSTART_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        );
    assert!(run(snap).await.status.success());
    let before = c.sim().store.resource_version();
    let mut restore = coldstart();
    restore
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["--store", &store, "restore"])
        .env(
            "COLDSTART_ENCRYPTION_KEY",
            "HwAeHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=",
        );
    let out = run(restore).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.to_lowercase().contains("key"),
        "the error names the key: {err}"
    );
    assert_eq!(
        c.sim().store.resource_version(),
        before,
        "nothing was written to the cluster"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_of_a_tampered_snapshot_fails_naming_the_damage_and_changes_nothing() {
    let c = TestCluster::start_with(coldstart_sim::seed::Seed::Scale(300)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", dir.path().display());
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let cmd = |args: &[&str]| {
        let mut cmd = coldstart();
        cmd.arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .args(["--store", &store])
            .args(args)
            .env("COLDSTART_ENCRYPTION_KEY", key);
        cmd
    };
    assert!(run(cmd(&["snapshot"])).await.status.success());
    // Flip a byte in the middle of every pack.
    for entry in walk(&dir.path().join("packs")) {
        let mut bytes = std::fs::read(&entry).expect("read pack");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&entry, bytes).expect("write pack");
    }
    let before = c.sim().store.resource_version();
    let out = run(cmd(&["restore"])).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tampered") || err.contains("failed to verify") || err.contains("decrypt"),
        "{err}"
    );
    assert_eq!(
        c.sim().store.resource_version(),
        before,
        "nothing was written to the cluster"
    );
    c.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A `coldstart serve` process against a simulated cluster; killed on drop.
struct Serving {
    child: std::process::Child,
    url: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(kubeconfig: &std::path::Path, dir: &std::path::Path, auto_restore: bool) -> Serving {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = dir.join(format!("config-{port}.yaml"));
    std::fs::write(&config, format!(
        "cluster: {{ name: platform }}\nstore:\n  url: file://{}/store\nencryption:\n  key: env:COLDSTART_ENCRYPTION_KEY\n\
         schedules:\n  snapshot: {{ cron: \"0 0 1 1 *\" }}\nretention: {{ keepLast: 5 }}\ncoldStart: {{ autoRestore: {auto_restore} }}\n\
         api: {{ token: env:COLDSTART_TEST_TOKEN }}\n", dir.display())).expect("config");
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
        .env(
            "COLDSTART_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .env("COLDSTART_TEST_TOKEN", "s3cret-token")
        .env("POD_NAMESPACE", "kube-system")
        .env("COLDSTART_CLOUD", "sim")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve starts");
    let s = Serving {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if reqwest::get(format!("{}/healthz", s.url)).await.is_ok() {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("coldstart serve did not come up");
}

async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url)
        .await
        .expect("get")
        .json()
        .await
        .unwrap_or(serde_json::Value::Null)
}

on_both_planes!(
    serve_takes_snapshots_shows_them_and_restores_a_cold_start_before_it_is_ready =
        serve_snapshots_and_restores
);

async fn serve_snapshots_and_restores(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serve(&c.kubeconfig, dir.path(), true).await;
    crate::helpers::wait_until_async("the warm cluster is ready", || async {
        reqwest::get(format!("{}/readyz", s.url))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let denied = reqwest::Client::new()
        .post(format!("{}/api/v1/snapshots", s.url))
        .send()
        .await
        .expect("post");
    assert_eq!(denied.status(), 401, "mutating endpoints need the token");
    let accepted = reqwest::Client::new()
        .post(format!("{}/api/v1/snapshots", s.url))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .expect("post");
    assert_eq!(accepted.status(), 202);
    crate::helpers::wait_until_async("the snapshot shows in the API", || async {
        get_json(&format!("{}/api/v1/snapshots", s.url)).await["items"]
            .as_array()
            .is_some_and(|i| !i.is_empty())
    })
    .await;
    let metrics = reqwest::get(format!("{}/metrics", s.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("coldstart_snapshot_last_success_timestamp_seconds"),
        "{metrics}"
    );
    // One action may wait in the queue; while the snapshot's run (retention included) still
    // holds it, a POST is answered 429 as documented, and a client tries again.
    crate::helpers::wait_until_async("the drill is accepted", || async {
        let drill = reqwest::Client::new()
            .post(format!("{}/api/v1/drills", s.url))
            .bearer_auth("s3cret-token")
            .send()
            .await
            .expect("post");
        match drill.status().as_u16() {
            202 => true,
            429 => false,
            other => panic!("POST /api/v1/drills answered {other}"),
        }
    })
    .await;
    crate::helpers::wait_until_async("the drill report shows in the API", || async {
        get_json(&format!("{}/api/v1/drills", s.url)).await["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|d| d["passed"] == true))
    })
    .await;
    let page = reqwest::get(format!("{}/", s.url))
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        !page.contains("s3cr3t-tenant-a"),
        "no secret value on the page"
    );
    drop(s);

    // A planned stop (so nothing is lost with the cluster), then the cluster is deleted.
    let mut stop = coldstart();
    stop.arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args([
            "--store",
            &format!("file://{}/store", dir.path().display()),
            "stop",
            "--cluster-name",
            "platform",
        ])
        .env(
            "COLDSTART_ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        );
    let out = run(stop).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.teardown().await;
    let s = serve(&c.kubeconfig, dir.path(), true).await;
    crate::helpers::wait_until_async("the cold start is restored and verified", || async {
        reqwest::get(format!("{}/readyz", s.url))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert_eq!(
        c.get("", "persistentvolumeclaims", "kafka", "data-kafka-0")
            .await
            .expect("the platform is back")["spec"]["volumeName"],
        "pv-kafka-0"
    );
    drop(s);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sim_cloud_create_adds_what_an_account_already_holds_and_refuses_duplicates() {
    let c = TestCluster::start().await;
    let kc = c.kubeconfig.display().to_string();
    let create = |args: &[&str]| {
        let mut cmd = coldstart();
        cmd.args(["--kubeconfig", &kc, "sim", "cloud", "create"])
            .args(args);
        cmd
    };
    for args in [
        vec![
            "disk",
            "vol-0static",
            "--zone",
            "eu-west-1b",
            "--data",
            "orders",
        ],
        vec!["address", "52.1.1.10", "--allocation-id", "eipalloc-xyz"],
        vec!["address", "20.1.2.3", "--pip-name", "web-pip"],
        vec!["pool", "public", "--addresses", "192.168.10.0,192.168.10.1"],
        vec!["bucket", "brownfield-bucket", "--data", "invoices"],
        vec!["node-resource-group", "MC_shop_aks1_westeurope"],
        vec![
            "address",
            "20.1.2.4",
            "--pip-name",
            "front-pip",
            "--resource-group",
            "MC_shop_aks1_westeurope",
        ],
    ] {
        let out = run(create(&args)).await;
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let cloud = c.cloud();
    assert_eq!(cloud.disks["vol-0static"].data_token, "orders");
    assert_eq!(cloud.disks["vol-0static"].zone, "eu-west-1b");
    assert_eq!(
        cloud.find_address("eipalloc-xyz").map(|a| a.ip.as_str()),
        Some("52.1.1.10")
    );
    assert_eq!(
        cloud.find_address("web-pip").map(|a| a.ip.as_str()),
        Some("20.1.2.3")
    );
    assert_eq!(cloud.pools["public"].addresses.len(), 2);
    assert_eq!(cloud.buckets["brownfield-bucket"].data_token, "invoices");
    assert_eq!(
        cloud.node_resource_group.as_deref(),
        Some("MC_shop_aks1_westeurope")
    );
    assert_eq!(
        cloud.addresses["20.1.2.4"].resource_group.as_deref(),
        Some("MC_shop_aks1_westeurope")
    );
    assert_eq!(
        c.get("", "nodes", "", "sim-node-1").expect("node")["metadata"]["labels"]["kubernetes.azure.com/cluster"],
        "MC_shop_aks1_westeurope",
        "the nodes say their node resource group, as AKS nodes do"
    );
    let again = run(create(&["bucket", "brownfield-bucket"])).await;
    assert!(!again.status.success(), "a duplicate is refused");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already exists"), "{err}");
    let bad_zone = run(create(&["disk", "vol-x", "--zone", "mars-1a"])).await;
    assert!(!bad_zone.status.success());
    assert!(
        String::from_utf8_lossy(&bad_zone.stderr).contains("not a zone"),
        "{}",
        String::from_utf8_lossy(&bad_zone.stderr)
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_takes_its_encryption_key_from_the_same_places_as_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("store: {{ url: file://{}/store }}\n", dir.path().display()),
    )
    .expect("config");
    let check = |env_key: Option<&str>, file: Option<&std::path::Path>| {
        let mut cmd = coldstart();
        cmd.args(["serve", "--check-config", "--config"])
            .arg(&config)
            .env_remove("COLDSTART_ENCRYPTION_KEY");
        if let Some(k) = env_key {
            cmd.env("COLDSTART_ENCRYPTION_KEY", k);
        }
        if let Some(f) = file {
            cmd.arg("--encryption-key-file").arg(f);
        }
        cmd
    };
    let out = run(check(None, None)).await;
    assert!(!out.status.success(), "no key anywhere is refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("encryption.key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(check(
        Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        None,
    ))
    .await;
    assert!(
        out.status.success(),
        "COLDSTART_ENCRYPTION_KEY is enough, as for the CLI: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").expect("key");
    let out = run(check(None, Some(&key_file))).await;
    assert!(
        out.status.success(),
        "--encryption-key-file is enough: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // And the key is really read from there: a bad file stops serve, naming the file but
    // never its content.
    let c = TestCluster::start().await;
    let bad = dir.path().join("bad-key");
    std::fs::write(&bad, "sekrit-not-base64").expect("bad key");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut cmd = coldstart();
    cmd.arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&config)
        .arg("--encryption-key-file")
        .arg(&bad)
        .env_remove("COLDSTART_ENCRYPTION_KEY")
        .env("POD_NAMESPACE", "kube-system");
    let out = run(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    assert!(!stderr.contains("sekrit"), "{stderr}");
    c.stop().await;
}
