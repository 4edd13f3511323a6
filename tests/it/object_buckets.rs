//! Rook/NooBaa ObjectBucketClaims end to end: the simulated provisioner behaves like
//! lib-bucket-provisioner (an `ObjectBucket` `obc-<ns>-<name>` carrying the class's
//! `reclaimPolicy`, a Secret and a ConfigMap named after the claim, the bucket deleted with
//! the claim when the ObjectBucket says `Delete`); `stop` keeps the bucket by patching the
//! ObjectBucket, and `start` adopts the same bucket with nothing new. Each scenario runs on
//! both API servers ([`Plane`]).

use std::time::Duration;

use crate::helpers::{
    Bed, Plane, keys, on_both_planes, progress, sim_start_opts, sim_stop_opts, wait_until_async,
};
use coldstart::audit::{self, FindingKind};
use coldstart::lifecycle;
use coldstart::store::Store;
use coldstart::testing::{obc, object_bucket_claim_crd, object_bucket_crd, storage_class};
use coldstart_sim::seed::Seed;

const CLASS: &str = "rook-ceph-delete-bucket";

/// A cluster running the OBC provisioner with one claim `apps/uploads` of a
/// `reclaimPolicy: Delete` class, provisioned; returns the bucket's name.
async fn provisioned_claim(plane: Plane) -> (Bed, String) {
    let c = Bed::start(plane, Seed::Empty).await;
    c.create(object_bucket_claim_crd().build()).await;
    c.create(object_bucket_crd().build()).await;
    c.create(storage_class(CLASS, "rook-ceph.ceph.rook.io/bucket", "Delete").build())
        .await;
    // kube-apiserver serves a CRD's kind once it is established.
    c.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd",
        "--all",
    ])
    .await;
    c.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n",
        &[],
    )
    .await;
    c.apply(
        &obc("apps", "uploads", CLASS)
            .spec("generateBucketName", serde_json::json!("uploads"))
            .yaml(),
        &[],
    )
    .await;
    wait_until_async("the claim is bound", async || {
        c.get("objectbucket.io", "objectbucketclaims", "apps", "uploads")
            .await
            .is_some_and(|o| o["status"]["phase"] == "Bound")
    })
    .await;
    let claim = c
        .get("objectbucket.io", "objectbucketclaims", "apps", "uploads")
        .await
        .expect("claim");
    let bucket = claim["spec"]["bucketName"]
        .as_str()
        .expect("the provisioner records the bucket on the claim")
        .to_owned();
    (c, bucket)
}

on_both_planes!(
    the_obc_provisioner_creates_what_lib_bucket_provisioner_creates_and_deletes_on_delete =
        provisioner_creates_and_deletes
);

async fn provisioner_creates_and_deletes(plane: Plane) {
    let (c, bucket) = provisioned_claim(plane).await;
    assert!(bucket.starts_with("uploads-"), "{bucket}");
    assert!(
        c.cloud().await.buckets.contains_key(&bucket),
        "a new bucket"
    );
    let ob = c
        .get("objectbucket.io", "objectbuckets", "", "obc-apps-uploads")
        .await
        .expect("the ObjectBucket is named obc-<ns>-<name>");
    assert_eq!(
        ob["spec"]["reclaimPolicy"], "Delete",
        "copied from the class"
    );
    assert_eq!(ob["spec"]["endpoint"]["bucketName"], bucket.as_str());
    let cm = c
        .get("", "configmaps", "apps", "uploads")
        .await
        .expect("ConfigMap");
    assert_eq!(cm["data"]["BUCKET_NAME"], bucket.as_str());
    assert!(
        c.get("", "secrets", "apps", "uploads").await.is_some(),
        "Secret"
    );

    c.kubectl_ok(&[
        "delete",
        "objectbucketclaim",
        "-n",
        "apps",
        "uploads",
        "--wait=false",
    ])
    .await;
    wait_until_async("the claim is gone", async || {
        c.get("objectbucket.io", "objectbucketclaims", "apps", "uploads")
            .await
            .is_none()
    })
    .await;
    assert!(
        !c.cloud().await.buckets.contains_key(&bucket),
        "reclaimPolicy Delete: deleting the claim deleted the bucket"
    );
    assert!(
        c.get("objectbucket.io", "objectbuckets", "", "obc-apps-uploads")
            .await
            .is_none()
            && c.get("", "configmaps", "apps", "uploads").await.is_none(),
        "the ObjectBucket and ConfigMap went with it"
    );
    c.stop().await;
}

on_both_planes!(
    without_stop_a_teardown_deletes_an_obc_bucket_whose_class_says_delete =
        teardown_deletes_the_bucket
);

async fn teardown_deletes_the_bucket(plane: Plane) {
    let (c, bucket) = provisioned_claim(plane).await;
    let client = c.client().await;
    let inputs = audit::collect(&client, None).await.expect("audit inputs");
    let findings = audit::audit(&inputs, chrono::Utc::now(), Duration::from_secs(900));
    assert!(
        findings
            .iter()
            .any(|f| f.kind == FindingKind::BucketDeletedWithCluster
                && f.object == "ObjectBucketClaim apps/uploads"),
        "the audit names the claim: {findings:#?}"
    );
    c.teardown().await;
    assert!(
        !c.cloud().await.buckets.contains_key(&bucket),
        "the audit said so, and the bucket went with the cluster"
    );
    c.stop().await;
}

on_both_planes!(
    stop_retains_an_obc_bucket_through_its_object_bucket_and_start_adopts_it =
        stop_retains_start_adopts
);

async fn stop_retains_start_adopts(plane: Plane) {
    let (c, bucket) = provisioned_claim(plane).await;
    let client = c.client().await;
    let store = Store::memory();
    let (keys, progress) = (keys(), progress());
    let stopped = lifecycle::stop(&client, &store, &keys, &sim_stop_opts("obc"), &progress)
        .await
        .expect("stop");
    assert!(
        stopped
            .changes
            .iter()
            .any(|ch| ch.object.kind == "ObjectBucket" && ch.object.name == "obc-apps-uploads"),
        "stop patched the ObjectBucket: {:#?}",
        stopped.changes
    );
    let ob = c
        .get("objectbucket.io", "objectbuckets", "", "obc-apps-uploads")
        .await
        .expect("ObjectBucket");
    assert_eq!(ob["spec"]["reclaimPolicy"], "Retain");
    let after = audit::audit(
        &audit::collect(&client, None).await.expect("inputs"),
        chrono::Utc::now(),
        Duration::from_secs(900),
    );
    assert!(
        !after
            .iter()
            .any(|f| f.kind == FindingKind::BucketDeletedWithCluster),
        "after stop the bucket is not losable: {after:#?}"
    );

    c.teardown().await;
    assert!(
        c.cloud().await.buckets.contains_key(&bucket),
        "the bucket outlived the cluster"
    );
    let mark = c.cloud().await.position();
    let started = lifecycle::start(&client, &store, &keys, &sim_start_opts(), &progress)
        .await
        .expect("start");
    assert!(started.restore.succeeded, "{:#?}", started.restore);
    assert_eq!(
        (started.restore.buckets_reused, started.restore.new_buckets),
        (1, 0)
    );
    // The provisioner had time to act on the restored claim: it adopted, created nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        c.cloud().await.created_since(mark).buckets,
        0,
        "nothing new"
    );
    let claim = c
        .get("objectbucket.io", "objectbucketclaims", "apps", "uploads")
        .await
        .expect("restored claim");
    assert_eq!(claim["spec"]["bucketName"], bucket.as_str());
    let cloud = c.cloud().await;
    let kept = cloud.buckets.get(&bucket).expect("same bucket");
    assert_eq!(kept.managed_by.as_deref(), Some("apps/uploads"));
    assert!(
        !kept.delete_with_claim,
        "the restored ObjectBucket still says Retain"
    );
    c.stop().await;
}
