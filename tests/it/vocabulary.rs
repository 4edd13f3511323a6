//! One provider vocabulary: the gate, the audit and `stop` read disks, pins and bucket kinds
//! the way `bindings/` does — no kind known in one place and not in another, no pin that
//! counts in one place and not in another.

use crate::helpers::{Bed, Plane, TestCluster, on_both_planes};
use coldstart::restore;
use coldstart::testing::crd;
use coldstart_sim::seed::Seed;
use serde_json::{Value, json};

/// A cluster serving the ACK and Rook/NooBaa bucket APIs, with the gate up.
async fn gated_cluster(plane: Plane) -> Bed {
    let c = Bed::start(plane, Seed::Empty).await;
    c.create(
        crd("s3.services.k8s.aws", "v1alpha1", "Bucket", "buckets")
            .status_subresource()
            .build(),
    )
    .await;
    c.create(coldstart::testing::object_bucket_claim_crd().build())
        .await;
    c.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: t}\n",
        &[],
    )
    .await;
    let client = c.client().await;
    // The gate exempts coldstart itself; these tests write as someone else.
    restore::gate::install(&client, "coldstart-itself")
        .await
        .expect("gate");
    // kube-apiserver enforces a policy a moment after it is created: wait until a probe is
    // denied (removing any admitted before).
    c.wait_for("the gate denies", async |c| {
        let probe = json!({"apiVersion": "s3.services.k8s.aws/v1alpha1", "kind": "Bucket",
            "metadata": {"name": "probe", "namespace": "t"}, "spec": {"name": "probe"}});
        if denied(c, probe).await.is_some() {
            return true;
        }
        c.kubectl_ok(&["delete", "buckets.s3.services.k8s.aws", "probe", "-n", "t"])
            .await;
        false
    })
    .await;
    c
}

/// The gate's refusal of `obj` written by an operator, if the gate refuses it (any other
/// refusal fails the test: it would prove nothing about the gate).
async fn denied(c: &Bed, obj: Value) -> Option<String> {
    let refusal = c
        .create_as(obj, "system:serviceaccount:ops:operator")
        .await
        .err()?;
    assert!(
        refusal.contains("coldstart is restoring this cluster"),
        "refused by something else than the gate: {refusal}"
    );
    Some(refusal)
}

on_both_planes!(
    the_gate_denies_a_new_ack_bucket_and_a_new_obc_and_admits_adopting_ones = gate_on_buckets
);

async fn gate_on_buckets(plane: Plane) {
    let c = gated_cluster(plane).await;
    let new_ack = json!({"apiVersion": "s3.services.k8s.aws/v1alpha1", "kind": "Bucket",
        "metadata": {"name": "fresh", "namespace": "t"}, "spec": {"name": "fresh"}});
    let adopting_ack = json!({"apiVersion": "s3.services.k8s.aws/v1alpha1", "kind": "Bucket",
        "metadata": {"name": "kept", "namespace": "t", "annotations": {
            "services.k8s.aws/adoption-policy": "adopt",
            "services.k8s.aws/adoption-fields": "{\"name\": \"kept\"}"}}});
    let new_obc = json!({"apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucketClaim",
        "metadata": {"name": "fresh", "namespace": "t"},
        "spec": {"generateBucketName": "fresh", "storageClassName": "rook-bucket"}});
    let named_obc = json!({"apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucketClaim",
        "metadata": {"name": "kept", "namespace": "t"},
        "spec": {"bucketName": "kept-7f3a", "storageClassName": "rook-bucket"}});
    let msg = denied(&c, new_ack)
        .await
        .expect("a new ACK bucket is denied while the gate is up");
    assert!(
        msg.contains("bucket claim must name an existing bucket"),
        "{msg}"
    );
    assert!(
        denied(&c, new_obc).await.is_some(),
        "a new ObjectBucketClaim is denied while the gate is up"
    );
    assert_eq!(
        denied(&c, adopting_ack).await,
        None,
        "an adopting ACK bucket is admitted"
    );
    assert_eq!(
        denied(&c, named_obc).await,
        None,
        "an OBC naming its bucket is admitted"
    );
    c.stop().await;
}

on_both_planes!(a_blank_pin_annotation_is_no_pin_for_the_gate_the_audit_and_stop = blank_pin);

async fn blank_pin(plane: Plane) {
    let c = gated_cluster(plane).await;
    let blank = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "t", "annotations": {
            "service.beta.kubernetes.io/aws-load-balancer-eip-allocations": ""}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
    assert!(
        denied(&c, blank.clone()).await.is_some(),
        "the gate does not take a blank pin for a pin"
    );
    assert!(!coldstart::bindings::is_pinned(&blank));
    let mut with_status = blank.clone();
    with_status["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}});
    let inputs = coldstart::audit::Inputs {
        services: vec![with_status.clone()],
        ..Default::default()
    };
    let findings = coldstart::audit::audit(
        &inputs,
        chrono::Utc::now(),
        std::time::Duration::from_secs(900),
    );
    assert!(
        findings
            .iter()
            .any(|f| f.kind == coldstart::audit::FindingKind::AddressReleasedWithCluster),
        "the audit reports the address as losable: {findings:#?}"
    );
    let fixes = coldstart::lifecycle::stop::plan_fixes(
        &inputs,
        coldstart::restore::plan::PinStyle::LoadBalancerIp,
        &Default::default(),
    );
    assert_eq!(fixes.len(), 1, "stop pins it: {fixes:#?}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_rewrites_a_load_balancer_ip_aws_ignores_into_its_eip_and_start_keeps_the_address() {
    let c = TestCluster::start().await;
    c.sim()
        .cloud
        .lock()
        .add_existing(&coldstart_sim::cloud::Existing {
            addresses: vec![coldstart_sim::cloud::ExistingAddress {
                ip: "198.51.100.20".into(),
                allocation_id: Some("eipalloc-0feed".into()),
                pip_name: None,
                resource_group: None,
            }],
            ..Default::default()
        })
        .expect("the account holds the Elastic IP");
    c.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n",
        &[],
    )
    .await;
    c.apply(
        &coldstart::testing::lb_service("web", "front")
            .annotation(
                "service.beta.kubernetes.io/aws-load-balancer-type",
                "external",
            )
            .load_balancer_ip("198.51.100.20")
            .spec("ports", json!([{"port": 80}]))
            .yaml(),
        &[],
    )
    .await;
    crate::helpers::wait_until("the Service has its address", || {
        c.get("", "services", "web", "front").is_some_and(|s| {
            s.pointer("/status/loadBalancer/ingress/0/ip") == Some(&json!("198.51.100.20"))
        })
    })
    .await;
    let client = c.client().await;
    let store = coldstart::store::Store::memory();
    let (keys, progress) = (crate::helpers::keys(), crate::helpers::progress());
    coldstart::lifecycle::stop(
        &client,
        &store,
        &keys,
        &crate::helpers::sim_stop_opts("aws"),
        &progress,
    )
    .await
    .expect("stop");
    let svc = c.get("", "services", "web", "front").expect("Service");
    assert_eq!(
        svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-eip-allocations"],
        "eipalloc-0feed",
        "pinned the way AWS reads pins: {svc:#}"
    );
    assert!(svc["spec"].get("loadBalancerIP").is_none(), "{svc:#}");
    assert!(
        coldstart::bindings::pin_problems(&svc).is_empty(),
        "the audit no longer flags it"
    );
    c.teardown().await;
    let started = coldstart::lifecycle::start(
        &client,
        &store,
        &keys,
        &crate::helpers::sim_start_opts(),
        &progress,
    )
    .await
    .expect("start");
    assert!(started.restore.succeeded, "{:#?}", started.restore);
    assert_eq!(
        (started.restore.ips_reused, started.restore.new_ips),
        (1, 0)
    );
    c.stop().await;
}
