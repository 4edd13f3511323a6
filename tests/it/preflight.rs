//! Preflight and degraded start on the simulated platform: every recorded binding is checked
//! against the cloud before the first write; what is missing or attached elsewhere refuses
//! the run with nothing written, unless accepted — then only what uses it stays down and
//! everything else comes back. Every scenario runs on both API servers ([`Plane`]): what is
//! broken behind the cluster's back (a disk deleted or attached to a forgotten instance, a
//! bucket deleted by hand) goes through the cloud's admin endpoint, and "nothing was
//! written" is the set of objects clients created ([`Bed::user_objects`]) and the cloud's
//! ledger, both unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::{Bed, Plane, keys, on_both_planes, progress};
use crate::restore::settled_platform_on;
use coldstart::cloud::{CloudChoice, Kind};
use coldstart::lifecycle::{self, LifecycleError, StartOptions, StopOptions};
use coldstart::preflight::{AcceptMissing, HELD, Problem};
use coldstart::restore::{self, RestoreError, RestoreOptions};
use coldstart::snapshot::write;
use coldstart::store::Store;

/// A restore that checks the simulated cloud first. The verification timeout is long on
/// purpose: a run that waits for a binding already known missing would sit it out.
fn checked(accept: &[&str]) -> RestoreOptions {
    RestoreOptions {
        verify_timeout: Duration::from_secs(300),
        operator_timeout: Duration::from_secs(15),
        cloud: CloudChoice::Sim,
        accept_missing: AcceptMissing::from_flags(
            &accept.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        ),
        ..Default::default()
    }
}

fn stop_opts() -> StopOptions {
    StopOptions {
        snapshot: write::Options {
            cluster_name: "platform".into(),
            ..Default::default()
        },
        quiesce_timeout: Duration::from_secs(20),
        cloud: CloudChoice::Sim,
        ..Default::default()
    }
}

fn start_opts(accept: &[&str]) -> StartOptions {
    StartOptions {
        restore: checked(accept),
        snapshot: None,
        ready_timeout: Duration::from_secs(20),
        consent: Default::default(),
    }
}

/// What clients have written to the cluster and the cloud: the objects they created and the
/// cloud ledger's position.
async fn writes(c: &Bed) -> (BTreeSet<String>, u64) {
    (c.user_objects().await, c.cloud().await.position())
}

/// [`writes`], once the new cluster's own controllers have settled (the same answer a
/// second apart), so what follows is the only writer.
async fn settled_writes(c: &Bed) -> (BTreeSet<String>, u64) {
    let mut last = writes(c).await;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = writes(c).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the cluster never settled after the teardown");
}

/// Every workload's replicas through the API, by `namespace/name`.
async fn replicas_of(c: &Bed) -> BTreeMap<String, i64> {
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

/// The ValidatingAdmissionPolicies in place, through the API.
async fn gate_policies_of(c: &Bed) -> Vec<String> {
    let list = c.get_json(&["validatingadmissionpolicies"]).await;
    let mut names: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

async fn kafka_disk(c: &Bed, i: usize) -> String {
    let pv = c
        .get("", "persistentvolumes", "", &format!("pv-kafka-{i}"))
        .await
        .expect("kafka pv");
    pv["spec"]["csi"]["volumeHandle"]
        .as_str()
        .expect("handle")
        .to_owned()
}

on_both_planes!(
    a_plain_snapshot_teardown_restore_is_refused_at_preflight_naming_what_was_lost_with_no_write =
        plain_restore_refused
);

async fn plain_restore_refused(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let client = c.client().await;
    let store = Store::memory();
    let m = write::take(
        &client,
        &store,
        &keys(),
        &stop_opts().snapshot,
        Arc::new(write::CaptureProgress::default()),
    )
    .await
    .expect("snapshot");
    let snap = coldstart::snapshot::read::open(&store, &keys(), &m.id)
        .await
        .expect("verified");
    let source = restore::source::from_snapshot(&snap);
    c.teardown().await;
    let before = settled_writes(&c).await;
    let err = restore::run(&client, &source, &checked(&[]), &progress())
        .await
        .expect_err("refused");
    let RestoreError::Refused(pre) = err else {
        panic!("expected a preflight refusal, got {err}");
    };
    assert_eq!(
        writes(&c).await,
        before,
        "nothing was written to the cluster or the cloud"
    );
    let mut refused: Vec<(Kind, Option<Problem>)> =
        pre.refused().iter().map(|r| (r.kind, r.problem)).collect();
    refused.sort();
    assert_eq!(
        refused,
        [
            (Kind::Volume, Some(Problem::Missing)),
            (Kind::Volume, Some(Problem::Missing)),
            (Kind::Volume, Some(Problem::Missing)),
            (Kind::Volume, Some(Problem::Missing)),
            (Kind::Address, Some(Problem::Missing)),
            (Kind::Address, Some(Problem::Missing)),
            (Kind::Bucket, Some(Problem::Missing)),
            (Kind::Bucket, Some(Problem::Missing)),
        ],
        "ZooKeeper ×3 and PostgreSQL disks, the mqtt and api addresses, the two scratch buckets:\n{}",
        pre.table()
    );
    let table = pre.table();
    for subject in [
        "pv-zookeeper-0",
        "tenant-a/mqtt",
        "tenant-b/api",
        "tenant-b-scratch",
        "platform-scratch",
    ] {
        assert!(
            table.contains(subject),
            "the table names {subject}:\n{table}"
        );
    }
    assert!(
        gate_policies_of(&c).await.is_empty(),
        "not even the gate was installed"
    );
    c.stop().await;
}

on_both_planes!(
    with_the_losses_accepted_a_restore_brings_back_everything_else_and_holds_only_their_users =
        losses_accepted
);

async fn losses_accepted(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let client = c.client().await;
    let before = replicas_of(&c).await;
    let store = Store::memory();
    let m = write::take(
        &client,
        &store,
        &keys(),
        &stop_opts().snapshot,
        Arc::new(write::CaptureProgress::default()),
    )
    .await
    .expect("snapshot");
    let snap = coldstart::snapshot::read::open(&store, &keys(), &m.id)
        .await
        .expect("verified");
    let source = restore::source::from_snapshot(&snap);
    c.teardown().await;
    let mark = c.cloud().await.position();
    // Returns with the held report instead of waiting out the 300 s verification timeout
    // for disks the preflight already knew were gone.
    let report = restore::run(&client, &source, &checked(&["all"]), &progress())
        .await
        .expect("restore runs");
    assert!(
        report.succeeded && report.partly_up,
        "{:#?}",
        report.verification
    );
    let mut held: Vec<String> = report
        .preflight
        .held
        .iter()
        .map(|h| h.workload.display())
        .collect();
    held.sort();
    assert_eq!(
        held,
        [
            "Deployment tenant-a/ingest",
            "Deployment tenant-a/postgres",
            "Deployment tenant-b/ingest",
            "StatefulSet kafka/zookeeper",
        ],
        "the users of the lost disks and the backends of the lost addresses, nothing else"
    );
    let after = replicas_of(&c).await;
    for (name, n) in &before {
        let want = if held.iter().any(|h| h.ends_with(name.as_str())) {
            0
        } else {
            *n
        };
        assert_eq!(after.get(name), Some(&want), "{name}");
    }
    let zk = c
        .get("apps", "statefulsets", "kafka", "zookeeper")
        .await
        .expect("restored, held");
    assert!(
        zk["metadata"]["annotations"][HELD]
            .as_str()
            .is_some_and(|h| h.contains("pv-zookeeper")),
        "{zk:#}"
    );
    assert!(
        c.get("", "services", "tenant-a", "mqtt").await.is_none(),
        "a Service whose address is gone is not restored (it would get a new one)"
    );
    let created = c.cloud().await.created_since(mark);
    assert_eq!((created.disks, created.ips, created.buckets), (0, 0, 0));
    assert_eq!(
        gate_policies_of(&c).await,
        [
            "coldstart-gate-addresses",
            "coldstart-gate-buckets",
            "coldstart-gate-volumes"
        ],
        "the gate stays up for each concern with something held"
    );
    assert_eq!(report.volumes_reused, 3, "the Kafka disks");
    c.stop().await;
}

on_both_planes!(
    a_start_missing_one_disk_is_refused_then_accepted_holds_only_what_uses_it_cronjobs_included =
        start_missing_one_disk
);

async fn start_missing_one_disk(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let client = c.client().await;
    let store = Store::memory();
    let before = replicas_of(&c).await;
    let lost = kafka_disk(&c, 1).await;
    // A CronJob reading the same disk: held with it, so the start must not resume it.
    let claim = c
        .get("", "persistentvolumes", "", "pv-kafka-1")
        .await
        .and_then(|pv| pv["spec"]["claimRef"]["name"].as_str().map(str::to_owned))
        .expect("the PV is bound");
    c.create(
        coldstart::testing::Object::new("batch/v1", "CronJob", Some("kafka"), "compact")
            .spec("schedule", serde_json::json!("*/5 * * * *"))
            .spec(
                "jobTemplate",
                serde_json::json!({"spec": {"template": {"spec": {
                    "containers": [{"name": "c", "image": "compact"}],
                    "restartPolicy": "Never",
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}}}}),
            )
            .build(),
    )
    .await;
    lifecycle::stop(&client, &store, &keys(), &stop_opts(), &progress())
        .await
        .expect("stop");
    c.teardown().await;
    // Deleted by hand while the cluster was down.
    c.delete_disk(&lost).await;
    let quiet = settled_writes(&c).await;
    let err = lifecycle::start(&client, &store, &keys(), &start_opts(&[]), &progress())
        .await
        .expect_err("refused");
    let LifecycleError::Restore(RestoreError::Refused(pre)) = err else {
        panic!("expected a preflight refusal, got {err}");
    };
    assert_eq!(writes(&c).await, quiet, "the refused start wrote nothing");
    assert_eq!(
        pre.refused()
            .iter()
            .map(|r| (r.subject.as_str(), r.target.as_str()))
            .collect::<Vec<_>>(),
        [("pv-kafka-1", lost.as_str())]
    );

    let started = lifecycle::start(&client, &store, &keys(), &start_opts(&[&lost]), &progress())
        .await
        .expect("start");
    assert!(started.restore.partly_up, "{:#?}", started.restore);
    assert_eq!(
        started
            .restore
            .preflight
            .held
            .iter()
            .map(|h| h.workload.display())
            .collect::<Vec<_>>(),
        ["StatefulSet kafka/kafka", "CronJob kafka/compact"]
    );
    assert_eq!(
        c.get("batch", "cronjobs", "kafka", "compact")
            .await
            .expect("restored")["spec"]["suspend"],
        true,
        "a held CronJob is not resumed: it would fire against the missing disk"
    );
    let after = replicas_of(&c).await;
    for (name, n) in &before {
        let want = if name == "kafka/kafka" { 0 } else { *n };
        assert_eq!(after.get(name), Some(&want), "{name}");
    }
    assert_eq!(
        gate_policies_of(&c).await,
        ["coldstart-gate-volumes"],
        "only the volumes gate stays up"
    );
    assert!(
        store
            .get_opt(coldstart::store::layout::STOP_MARKER)
            .await
            .expect("read")
            .is_some(),
        "the marker stays, so a later start brings Kafka back"
    );
    c.stop().await;
}

on_both_planes!(
    a_disk_attached_to_an_instance_outside_the_new_cluster_is_refused_as_attached_elsewhere =
        disk_attached_elsewhere
);

async fn disk_attached_elsewhere(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let client = c.client().await;
    let store = Store::memory();
    let disk = kafka_disk(&c, 0).await;
    lifecycle::stop(&client, &store, &keys(), &stop_opts(), &progress())
        .await
        .expect("stop");
    c.teardown().await;
    c.attach_disk(&disk, "i-0forgotten").await;
    let err = lifecycle::start(&client, &store, &keys(), &start_opts(&[]), &progress())
        .await
        .expect_err("refused");
    let LifecycleError::Restore(RestoreError::Refused(pre)) = err else {
        panic!("expected a preflight refusal, got {err}");
    };
    let refused = pre.refused();
    assert_eq!(refused.len(), 1, "{}", pre.table());
    assert_eq!(refused[0].problem, Some(Problem::AttachedElsewhere));
    assert!(refused[0].reason.contains("i-0forgotten"));
    c.stop().await;
}

on_both_planes!(
    stop_refuses_before_changing_anything_when_a_binding_is_already_broken =
        stop_with_a_broken_binding
);

async fn stop_with_a_broken_binding(plane: Plane) {
    let c = settled_platform_on(plane).await;
    let client = c.client().await;
    let store = Store::memory();
    let before = replicas_of(&c).await;
    // The tenant's bucket was deleted in the cloud behind the cluster's back.
    c.delete_bucket("tenant-c-data").await;
    let err = lifecycle::stop(&client, &store, &keys(), &stop_opts(), &progress())
        .await
        .expect_err("refused");
    let LifecycleError::Refused(pre) = err else {
        panic!("expected a preflight refusal, got {err}");
    };
    assert_eq!(
        pre.refused()
            .iter()
            .map(|r| r.target.as_str())
            .collect::<Vec<_>>(),
        ["tenant-c-data"]
    );
    assert_eq!(replicas_of(&c).await, before, "nothing was quiesced");
    assert_eq!(
        c.get("", "persistentvolumes", "", "pv-zookeeper-0")
            .await
            .expect("pv")["spec"]["persistentVolumeReclaimPolicy"],
        "Delete",
        "no fix was applied"
    );
    c.stop().await;
}
