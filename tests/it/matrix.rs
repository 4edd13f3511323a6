//! The fault matrix (issue 15): snapshot, restore, stop and start on the simulated platform
//! under 20% 5xx, 20% 429 and both, and killed at five or more points each, must all
//! converge — the next run finishes the job and the cluster ends as it would have without
//! the fault: same replicas, same disks, addresses, DNS names and buckets, nothing new,
//! no gate left up.
//!
//! Faults are injected by the simulated API server (`PUT /sim/v1/faults`); kill points are
//! the phases each command reports on its progress, so a kill lands in a named step.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::TestCluster;
use crate::restore::settled_platform;
use coldstart::lifecycle::{self, StartOptions, StopOptions};
use coldstart::progress::Progress;
use coldstart::restore::{self, RestoreOptions};
use coldstart::snapshot::crypto::Keys;
use coldstart::snapshot::{read, write};
use coldstart::store::Store;

fn keys() -> Keys {
    Keys::from_master(&[21u8; 32])
}

fn snapshot_opts() -> write::Options {
    write::Options {
        cluster_name: "platform".into(),
        // A killed writer's lock goes stale quickly, so the re-run does not wait 30 s.
        lock_ttl: Duration::from_millis(600),
        ..Default::default()
    }
}

fn stop_opts() -> StopOptions {
    StopOptions {
        snapshot: snapshot_opts(),
        quiesce_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

fn start_opts() -> StartOptions {
    StartOptions {
        restore: restore_opts(),
        snapshot: None,
        ready_timeout: Duration::from_secs(30),
        consent: Default::default(),
    }
}

fn restore_opts() -> RestoreOptions {
    RestoreOptions {
        verify_timeout: Duration::from_secs(30),
        operator_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

fn progress() -> Arc<Mutex<Progress>> {
    Arc::new(Mutex::new(Progress::default()))
}

async fn set_faults(c: &TestCluster, json: &str) {
    let (code, body) = crate::helpers::http(
        "PUT",
        &format!("{}/sim/v1/faults", c.url()),
        Some("application/json"),
        Some(json.to_owned()),
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

/// Every workload's replicas, by `namespace/name`.
fn replicas(c: &TestCluster) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for plural in ["deployments", "statefulsets"] {
        let def = c.sim().def("apps", plural).expect("served");
        for ((ns, name), s) in c.sim().store.all(&def.group_resource(), None) {
            out.insert(
                format!("{ns}/{name}"),
                s.value()["spec"]["replicas"].as_i64().unwrap_or(1),
            );
        }
    }
    out
}

/// Disks (id, data), addresses and buckets of the simulated cloud.
fn inventory(c: &TestCluster) -> (Vec<(String, String)>, Vec<String>, Vec<String>) {
    let cloud = c.cloud();
    let mut disks: Vec<_> = cloud
        .disks
        .values()
        .map(|d| (d.id.clone(), d.data_token.clone()))
        .collect();
    disks.sort();
    let mut ips: Vec<_> = cloud.addresses.keys().cloned().collect();
    ips.sort();
    let mut buckets: Vec<_> = cloud.buckets.keys().cloned().collect();
    buckets.sort();
    (disks, ips, buckets)
}

const FAULTS: [(&str, &str); 3] = [
    ("20% 5xx", r#"{"errorRate": 0.2}"#),
    ("20% 429", r#"{"throttleRate": 0.2}"#),
    (
        "20% 5xx and 20% 429",
        r#"{"errorRate": 0.2, "throttleRate": 0.2}"#,
    ),
];

/// Run `op` and kill it as soon as its progress reports a phase containing `phase`; panics
/// if the operation ended before reaching it (the kill point would test nothing).
async fn kill_at<T: Send + 'static>(
    progress: &Arc<Mutex<Progress>>,
    phase: &str,
    op: impl std::future::Future<Output = T> + Send + 'static,
) {
    if let Ok(mut p) = progress.lock() {
        *p = Progress::default();
    }
    let task = tokio::spawn(op);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = progress.lock().map(|p| p.phase.clone()).unwrap_or_default();
        if now.contains(phase) {
            task.abort();
            let _ = task.await;
            return;
        }
        assert!(
            !task.is_finished(),
            "the run ended before reaching {phase:?} (last phase {now:?})"
        );
        assert!(std::time::Instant::now() < deadline, "{phase:?} never came");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_stop_and_start_converge_under_5xx_429_and_both() {
    let c = settled_platform().await;
    let client = c.client().await;
    let before = (replicas(&c), inventory(&c));
    for (name, faults) in FAULTS {
        let store = Store::memory();
        set_faults(&c, faults).await;
        let m = write::take(
            &client,
            &store,
            &keys(),
            &snapshot_opts(),
            Arc::new(write::CaptureProgress::default()),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: snapshot: {e}"));
        read::verify(&store, &keys(), &m.id).await.expect("whole");
        lifecycle::stop(&client, &store, &keys(), &stop_opts(), &progress())
            .await
            .unwrap_or_else(|e| panic!("{name}: stop: {e}"));
        set_faults(&c, "{}").await;
        c.teardown().await;
        let mark = c.cloud().position();
        set_faults(&c, faults).await;
        let started = lifecycle::start(&client, &store, &keys(), &start_opts(), &progress())
            .await
            .unwrap_or_else(|e| panic!("{name}: start: {e}"));
        set_faults(&c, "{}").await;
        assert!(
            started.restore.succeeded,
            "{name}: {:#?}",
            started.restore.verification.problems
        );
        assert_eq!(
            (replicas(&c), inventory(&c)),
            before,
            "{name}: the same platform"
        );
        let created = c.cloud().created_since(mark);
        assert_eq!(
            (created.disks, created.ips, created.buckets),
            (0, 0, 0),
            "{name}"
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_at_20_percent_5xx_succeeds_ten_times_out_of_ten() {
    let c = settled_platform().await;
    let client = c.client().await;
    let store = Store::memory();
    let before = inventory(&c);
    // Stop first, so the teardowns lose nothing and every restore can reuse everything.
    lifecycle::stop(&client, &store, &keys(), &stop_opts(), &progress())
        .await
        .expect("stop");
    let snap = read::open_newest(&store, &keys(), |_| true)
        .await
        .expect("read")
        .expect("a snapshot");
    let source = restore::source::from_snapshot(&snap);
    for run in 1..=10 {
        c.teardown().await;
        set_faults(&c, r#"{"errorRate": 0.2}"#).await;
        let report = restore::run(&client, &source, &restore_opts(), &progress())
            .await
            .unwrap_or_else(|e| panic!("restore {run}/10: {e}"));
        set_faults(&c, "{}").await;
        assert!(
            report.succeeded,
            "restore {run}/10: {:#?}",
            report.verification.problems
        );
        assert!(
            restore::gate::status(&client)
                .await
                .expect("gate")
                .is_empty(),
            "restore {run}/10 left the gate up"
        );
        assert_eq!(inventory(&c), before, "restore {run}/10");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_killed_at_each_step_converges_on_the_next_run_and_undoes_cleanly() {
    let c = settled_platform().await;
    let client = c.client().await;
    let before = replicas(&c);
    // Slow writes down so every step lasts long enough to be killed in.
    set_faults(&c, r#"{"latencyMs": 5, "writesOnly": true}"#).await;
    for phase in [
        "checking the store",
        "making nothing losable",
        "quiescing apps",
        "quiescing operators",
        "quiescing data",
        "taking the final snapshot",
    ] {
        let store = Store::memory();
        let p = progress();
        let (cl, st, pr) = (client.clone(), store.clone(), p.clone());
        kill_at(&p, phase, async move {
            lifecycle::stop(&cl, &st, &keys(), &stop_opts(), &pr).await
        })
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await; // the killed lock goes stale
        let r = lifecycle::stop(&client, &store, &keys(), &stop_opts(), &progress())
            .await
            .unwrap_or_else(|e| panic!("killed at {phase:?}, the re-run: {e}"));
        assert!(r.snapshot.is_some(), "{phase}");
        assert!(
            replicas(&c).values().all(|r| *r == 0),
            "{phase}: all quiesced"
        );
        lifecycle::undo_stop(&client, &store, &keys(), Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("killed at {phase:?}, undo: {e}"));
        assert_eq!(
            replicas(&c),
            before,
            "killed at {phase:?}: every original is back"
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_killed_at_each_step_converges_on_the_next_run() {
    let c = settled_platform().await;
    let client = c.client().await;
    let before = (replicas(&c), inventory(&c));
    for phase in [
        "installing gate",
        "restoring namespaces",
        "restoring persistent-volume-claims",
        "restoring workloads",
        "verifying",
        "starting data",
        "starting apps",
    ] {
        let store = Store::memory();
        lifecycle::stop(&client, &store, &keys(), &stop_opts(), &progress())
            .await
            .expect("stop");
        c.teardown().await;
        let mark = c.cloud().position();
        set_faults(&c, r#"{"latencyMs": 5, "writesOnly": true}"#).await;
        let p = progress();
        let (cl, st, pr) = (client.clone(), store.clone(), p.clone());
        kill_at(&p, phase, async move {
            lifecycle::start(&cl, &st, &keys(), &start_opts(), &pr).await
        })
        .await;
        set_faults(&c, "{}").await;
        let r = lifecycle::start(&client, &store, &keys(), &start_opts(), &progress())
            .await
            .unwrap_or_else(|e| panic!("killed at {phase:?}, the re-run: {e}"));
        assert!(
            r.restore.succeeded,
            "{phase}: {:#?}",
            r.restore.verification.problems
        );
        assert!(
            restore::gate::status(&client)
                .await
                .expect("gate")
                .is_empty(),
            "{phase}"
        );
        assert_eq!((replicas(&c), inventory(&c)), before, "killed at {phase:?}");
        let created = c.cloud().created_since(mark);
        assert_eq!(
            (created.disks, created.ips, created.buckets),
            (0, 0, 0),
            "{phase}"
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_killed_at_each_step_converges_on_the_next_run() {
    let c = settled_platform().await;
    let client = c.client().await;
    let store = Store::memory();
    let before = inventory(&c);
    lifecycle::stop(&client, &store, &keys(), &stop_opts(), &progress())
        .await
        .expect("stop");
    let snap = read::open_newest(&store, &keys(), |_| true)
        .await
        .expect("read")
        .expect("a snapshot");
    let source = Arc::new(restore::source::from_snapshot(&snap));
    for phase in [
        "preflight",
        "installing gate",
        "restoring namespaces",
        "restoring persistent-volume-claims",
        "restoring workloads",
        "verifying",
    ] {
        c.teardown().await;
        set_faults(&c, r#"{"latencyMs": 5, "writesOnly": true}"#).await;
        let p = progress();
        let (cl, src, pr) = (client.clone(), source.clone(), p.clone());
        kill_at(&p, phase, async move {
            restore::run(&cl, &src, &restore_opts(), &pr).await
        })
        .await;
        set_faults(&c, "{}").await;
        let r = restore::run(&client, &source, &restore_opts(), &progress())
            .await
            .unwrap_or_else(|e| panic!("killed at {phase:?}, the re-run: {e}"));
        assert!(r.succeeded, "{phase}: {:#?}", r.verification.problems);
        assert!(
            restore::gate::status(&client)
                .await
                .expect("gate")
                .is_empty(),
            "{phase}"
        );
        assert_eq!(inventory(&c), before, "killed at {phase:?}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_killed_at_each_point_leaves_nothing_half_visible_and_the_next_one_succeeds() {
    let c = TestCluster::start_with(coldstart_sim::seed::Seed::Scale(2000)).await;
    let client = c.client().await;
    let store = Store::memory();
    set_faults(&c, r#"{"latencyMs": 2}"#).await;
    for fifth in 1..=5u64 {
        let progress = Arc::new(write::CaptureProgress::default());
        let (cl, st, pr) = (client.clone(), store.clone(), progress.clone());
        let task =
            tokio::spawn(async move { write::take(&cl, &st, &keys(), &snapshot_opts(), pr).await });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            use std::sync::atomic::Ordering::Relaxed;
            let (done, total) = (
                progress.resources_done.load(Relaxed),
                progress.resources_total.load(Relaxed),
            );
            if total > 0 && done * 6 >= total * fifth {
                break;
            }
            assert!(
                !task.is_finished(),
                "the snapshot ended before kill point {fifth}"
            );
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        task.abort();
        let _ = task.await;
        let complete = read::list(&store, &keys()).await.expect("list").len();
        assert_eq!(
            complete,
            (fifth - 1) as usize,
            "a killed snapshot is not visible"
        );
        tokio::time::sleep(Duration::from_millis(700)).await; // the killed lock goes stale
        let m = write::take(
            &client,
            &store,
            &keys(),
            &snapshot_opts(),
            Arc::new(write::CaptureProgress::default()),
        )
        .await
        .unwrap_or_else(|e| panic!("after kill point {fifth}: {e}"));
        read::verify(&store, &keys(), &m.id).await.expect("whole");
    }
    c.stop().await;
}
