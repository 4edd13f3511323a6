//! The simulated cloud and its controllers: each test proves one behaviour that makes a
//! whole-cluster stop and start dangerous, because those are what coldstart must defeat.

use crate::helpers::{TestCluster, wait_until};
use coldstart_sim::Actor;
use coldstart_sim::seed::Seed;
use serde_json::{Value, json};

fn storage_class(reclaim: &str) -> Value {
    json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "gp3", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "ebs.csi.aws.com", "reclaimPolicy": reclaim})
}

fn ns(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn pvc(ns: &str, name: &str, volume: Option<&str>) -> Value {
    let mut v = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}});
    if let Some(vn) = volume {
        v["spec"]["volumeName"] = json!(vn);
    }
    v
}

fn pv(name: &str, disk: &str, reclaim: &str, claim: Option<(&str, &str, Option<&str>)>) -> Value {
    let mut v = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": reclaim, "storageClassName": "gp3",
                 "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": disk}}});
    if let Some((ns, n, uid)) = claim {
        v["spec"]["claimRef"] = json!({"namespace": ns, "name": n});
        if let Some(u) = uid {
            v["spec"]["claimRef"]["uid"] = json!(u);
        }
    }
    v
}

fn phase(c: &TestCluster, plural: &str, ns: &str, name: &str) -> Option<String> {
    c.get("", plural, ns, name)
        .and_then(|v| v["status"]["phase"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pvc_without_volume_name_gets_a_new_empty_disk() {
    let c = TestCluster::start().await;
    c.create(storage_class("Delete"));
    c.create(ns("t"));
    let mark = c.cloud().position();
    c.create(pvc("t", "data", None));
    wait_until("the claim is bound", || {
        phase(&c, "persistentvolumeclaims", "t", "data").as_deref() == Some("Bound")
    })
    .await;
    let cloud = c.cloud();
    assert_eq!(
        cloud.created_since(mark).disks,
        1,
        "a NEW disk was provisioned"
    );
    let claim = c
        .get("", "persistentvolumeclaims", "t", "data")
        .expect("claim");
    let pv = c
        .get(
            "",
            "persistentvolumes",
            "",
            claim["spec"]["volumeName"].as_str().expect("bound"),
        )
        .expect("pv");
    let disk = &cloud.disks[pv["spec"]["csi"]["volumeHandle"].as_str().expect("handle")];
    assert_eq!(disk.data_token, "", "the new disk is empty");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pvc_with_volume_name_binds_to_that_pv_and_its_existing_disk() {
    let c = TestCluster::start().await;
    c.create(storage_class("Delete"));
    c.create(ns("t"));
    let disk = c
        .sim()
        .cloud
        .lock()
        .create_disk("eu-west-1a", 10, "precious", "test");
    c.create(pv("pv-1", &disk.id, "Retain", Some(("t", "data", None))));
    let mark = c.cloud().position();
    c.create(pvc("t", "data", Some("pv-1")));
    wait_until("the claim is bound", || {
        phase(&c, "persistentvolumeclaims", "t", "data").as_deref() == Some("Bound")
    })
    .await;
    assert_eq!(
        phase(&c, "persistentvolumes", "", "pv-1").as_deref(),
        Some("Bound")
    );
    assert_eq!(c.cloud().created_since(mark).disks, 0, "no new disk");
    assert_eq!(c.cloud().disks[&disk.id].data_token, "precious");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pv_whose_claim_uid_is_stale_is_released_and_with_delete_its_disk_is_deleted() {
    let c = TestCluster::start().await;
    c.create(storage_class("Delete"));
    c.create(ns("t"));
    let disk = c
        .sim()
        .cloud
        .lock()
        .create_disk("eu-west-1a", 10, "precious", "test");
    // What a naive restore writes: the PV as it was, claimRef.uid from the old cluster.
    c.create(pv(
        "pv-1",
        &disk.id,
        "Delete",
        Some(("t", "data", Some("uid-from-the-old-cluster"))),
    ));
    wait_until("the disk is deleted", || {
        !c.cloud().disks.contains_key(&disk.id)
    })
    .await;
    assert!(
        c.get("", "persistentvolumes", "", "pv-1").is_none(),
        "the PV is reclaimed too"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retained_pv_whose_claim_uid_is_stale_is_released_and_keeps_its_disk() {
    let c = TestCluster::start().await;
    c.create(ns("t"));
    let disk = c
        .sim()
        .cloud
        .lock()
        .create_disk("eu-west-1a", 10, "precious", "test");
    c.create(pv(
        "pv-1",
        &disk.id,
        "Retain",
        Some(("t", "data", Some("uid-from-the-old-cluster"))),
    ));
    wait_until("the PV is released", || {
        phase(&c, "persistentvolumes", "", "pv-1").as_deref() == Some("Released")
    })
    .await;
    c.create(pvc("t", "data", Some("pv-1")));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        phase(&c, "persistentvolumeclaims", "t", "data").as_deref(),
        Some("Pending"),
        "a released PV does not bind"
    );
    assert!(c.cloud().disks.contains_key(&disk.id));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statefulset_creates_missing_claims_and_adopts_precreated_ones() {
    let c = TestCluster::start().await;
    c.create(storage_class("Delete"));
    c.create(ns("t"));
    let disk = c
        .sim()
        .cloud
        .lock()
        .create_disk("eu-west-1a", 10, "broker-0", "test");
    c.create(pv(
        "pv-0",
        &disk.id,
        "Retain",
        Some(("t", "data-kafka-0", None)),
    ));
    c.create(pvc("t", "data-kafka-0", Some("pv-0")));
    let mark = c.cloud().position();
    c.create(json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "kafka", "namespace": "t"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "kafka"}},
                 "template": {"metadata": {"labels": {"app": "kafka"}}, "spec": {"containers": [{"name": "k", "image": "k"}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}]}}));
    wait_until("both replicas are ready", || {
        c.get("apps", "statefulsets", "t", "kafka")
            .is_some_and(|s| s["status"]["readyReplicas"] == 2)
    })
    .await;
    let claim0 = c
        .get("", "persistentvolumeclaims", "t", "data-kafka-0")
        .expect("adopted");
    assert_eq!(
        claim0["spec"]["volumeName"], "pv-0",
        "the pre-created claim is used as it is"
    );
    assert!(
        c.get("", "persistentvolumeclaims", "t", "data-kafka-1")
            .is_some(),
        "the missing claim is created"
    );
    assert_eq!(
        c.cloud().created_since(mark).disks,
        1,
        "only ordinal 1 got a new disk"
    );
    assert_eq!(
        c.cloud().disks[&disk.id].attached_to.as_deref(),
        Some("sim-node-1")
    );
    assert!(
        c.get("", "pods", "t", "kafka-0").is_some(),
        "pods exist, owned by the StatefulSet"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deployments_become_ready_and_scale_through_the_scale_subresource() {
    let c = TestCluster::start().await;
    c.create(ns("t"));
    c.create(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "t"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "w"}]}}}}));
    wait_until("2 ready", || {
        c.get("apps", "deployments", "t", "web")
            .is_some_and(|d| d["status"]["readyReplicas"] == 2)
    })
    .await;
    c.kubectl_ok(&["scale", "deploy/web", "-n", "t", "--replicas=0"])
        .await;
    wait_until("0 ready", || {
        c.get("apps", "deployments", "t", "web")
            .is_some_and(|d| d["status"]["readyReplicas"] == 0)
    })
    .await;
    c.stop().await;
}

fn lb_service(ns: &str, name: &str, annotations: Value, lb_ip: Option<&str>) -> Value {
    let mut v = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}});
    if let Some(ip) = lb_ip {
        v["spec"]["loadBalancerIP"] = json!(ip);
    }
    v
}

fn ingress_ip(c: &TestCluster, ns: &str, name: &str) -> Option<String> {
    c.get("", "services", ns, name).and_then(|s| {
        s["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_owned)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_pinned_to_a_free_address_gets_that_address_in_every_provider_form() {
    let c = TestCluster::start().await;
    c.create(ns("t"));
    let (eip, pip, plain) = {
        let mut cloud = c.sim().cloud.lock();
        (
            cloud.allocate_address(true, None, "test"),
            cloud.allocate_address(true, Some("pip-api"), "test"),
            cloud.allocate_address(true, None, "test"),
        )
    };
    let mark = c.cloud().position();
    c.create(lb_service(
        "t",
        "aws",
        json!({"service.beta.kubernetes.io/aws-load-balancer-eip-allocations": eip.allocation_id}),
        None,
    ));
    c.create(lb_service(
        "t",
        "azure",
        json!({"service.beta.kubernetes.io/azure-pip-name": "pip-api"}),
        None,
    ));
    c.create(lb_service("t", "gcp", json!({}), Some(&plain.ip)));
    for (svc, want) in [("aws", &eip.ip), ("azure", &pip.ip), ("gcp", &plain.ip)] {
        wait_until(&format!("{svc} has an address"), || {
            ingress_ip(&c, "t", svc).is_some()
        })
        .await;
        assert_eq!(ingress_ip(&c, "t", svc).as_ref(), Some(want), "{svc}");
    }
    assert_eq!(c.cloud().created_since(mark).ips, 0, "no new address");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unpinned_service_or_one_pinned_to_a_taken_address_gets_a_new_address_and_dns() {
    let c = TestCluster::start().await;
    c.create(ns("t"));
    let taken = c.sim().cloud.lock().allocate_address(true, None, "test");
    c.create(lb_service("t", "first", json!({}), Some(&taken.ip)));
    wait_until("first is up", || ingress_ip(&c, "t", "first").is_some()).await;
    let mark = c.cloud().position();
    c.create(lb_service(
        "t",
        "second",
        json!({"external-dns.alpha.kubernetes.io/hostname": "second.example.com"}),
        Some(&taken.ip),
    ));
    c.create(lb_service("t", "third", json!({}), None));
    wait_until("both are up", || {
        ingress_ip(&c, "t", "second").is_some() && ingress_ip(&c, "t", "third").is_some()
    })
    .await;
    let second = ingress_ip(&c, "t", "second").expect("ip");
    assert_ne!(second, taken.ip, "a taken address is not shared");
    assert_eq!(c.cloud().created_since(mark).ips, 2);
    assert_eq!(
        c.cloud().dns["second.example.com"].target,
        second,
        "DNS follows the new address"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pinning_a_service_to_its_current_address_reserves_it() {
    let c = TestCluster::start().await;
    c.create(ns("t"));
    c.create(lb_service("t", "mqtt", json!({}), None));
    wait_until("up", || ingress_ip(&c, "t", "mqtt").is_some()).await;
    let ip = ingress_ip(&c, "t", "mqtt").expect("ip");
    assert!(!c.cloud().addresses[&ip].reserved, "controller-allocated");
    c.kubectl_ok(&[
        "patch",
        "svc",
        "mqtt",
        "-n",
        "t",
        "-p",
        &format!(r#"{{"spec":{{"loadBalancerIP":"{ip}"}}}}"#),
    ])
    .await;
    wait_until("reserved", || c.cloud().addresses[&ip].reserved).await;
    assert_eq!(ingress_ip(&c, "t", "mqtt"), Some(ip));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_claims_adopt_named_buckets_and_create_new_ones_otherwise() {
    let c = TestCluster::start_with(Seed::Platform).await;
    wait_until("claims ready", || {
        c.get("objectstorage.k8s.io", "bucketclaims", "tenant-a", "data")
            .is_some_and(|b| b["status"]["bucketReady"] == true)
    })
    .await;
    let mark = c.cloud().position();
    c.create(json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "BucketClaim",
        "metadata": {"name": "adopt", "namespace": "tenant-c"}, "spec": {"existingBucketName": "platform-logs"}}));
    c.create(json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "BucketClaim",
        "metadata": {"name": "fresh", "namespace": "tenant-c"}, "spec": {"bucketClassName": "standard"}}));
    c.create(json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket",
        "metadata": {"name": "observe", "annotations": {"crossplane.io/external-name": "tenant-a-data"}},
        "spec": {"managementPolicies": ["Observe"], "deletionPolicy": "Orphan"}}));
    wait_until("fresh is ready", || {
        c.get("objectstorage.k8s.io", "bucketclaims", "tenant-c", "fresh")
            .is_some_and(|b| b["status"]["bucketReady"] == true)
    })
    .await;
    wait_until("adopt is ready", || {
        c.get("objectstorage.k8s.io", "bucketclaims", "tenant-c", "adopt")
            .is_some_and(|b| b["status"]["bucketName"] == "platform-logs")
    })
    .await;
    assert_eq!(
        c.cloud().created_since(mark).buckets,
        1,
        "only the class-based claim made a bucket"
    );
    c.stop().await;
}

const GATE: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: gate}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["persistentvolumeclaims"]}
  matchConditions:
  - {name: not-coldstart, expression: "request.userInfo.username != 'coldstart'"}
  validations:
  - expression: "has(object.spec.volumeName) && object.spec.volumeName != ''"
    message: "PVCs must name their volume while a restore is in progress"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: gate}
spec: {policyName: gate, validationActions: [Deny]}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_validating_admission_policy_gate_denies_everyone_but_the_exempt_identity() {
    let c = TestCluster::start().await;
    c.create(ns("t"));
    c.apply(GATE, &[]).await;
    let denied = c
        .create_as(
            pvc("t", "a", None),
            &Actor::system("system:serviceaccount:t:operator"),
        )
        .expect_err("denied");
    assert_eq!(denied.code, 422);
    assert!(
        denied.message.contains("PVCs must name their volume"),
        "{}",
        denied.message
    );
    c.create_as(
        pvc("t", "b", Some("pv-b")),
        &Actor::system("system:serviceaccount:t:operator"),
    )
    .expect("a claim naming its volume passes");
    c.create_as(pvc("t", "c", None), &Actor::system("coldstart"))
        .expect("the exempt identity passes");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: d, namespace: t}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n")).await;
    assert!(!out.status.success(), "kubectl is denied too");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("denied request"), "{err}");
    c.kubectl_ok(&["delete", "validatingadmissionpolicybinding", "gate"])
        .await;
    c.create_as(
        pvc("t", "e", None),
        &Actor::system("system:serviceaccount:t:operator"),
    )
    .expect("allowed once the gate is lifted");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_operator_creates_what_it_manages_and_a_stopped_one_does_not() {
    let c = TestCluster::start_with(Seed::Platform).await;
    wait_until("the platform has settled", || {
        ingress_ip(&c, "kafka", "kafka-bootstrap").is_some()
    })
    .await;
    c.kubectl_ok(&[
        "scale",
        "deploy/strimzi-cluster-operator",
        "-n",
        "kafka",
        "--replicas=0",
    ])
    .await;
    wait_until("operator stopped", || {
        c.get("apps", "deployments", "kafka", "strimzi-cluster-operator")
            .is_some_and(|d| d["status"]["readyReplicas"] == 0)
    })
    .await;
    c.kubectl_ok(&["delete", "svc", "kafka-bootstrap", "-n", "kafka"])
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(
        c.get("", "services", "kafka", "kafka-bootstrap").is_none(),
        "a stopped operator recreates nothing"
    );
    let mark = c.cloud().position();
    c.kubectl_ok(&[
        "scale",
        "deploy/strimzi-cluster-operator",
        "-n",
        "kafka",
        "--replicas=1",
    ])
    .await;
    wait_until("the operator recreated its Service", || {
        ingress_ip(&c, "kafka", "kafka-bootstrap").is_some()
    })
    .await;
    assert_eq!(
        c.cloud().created_since(mark).ips,
        1,
        "its template has no pin: a NEW address"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn teardown_loses_delete_disks_unpinned_ips_and_delete_buckets_and_keeps_the_rest() {
    let c = TestCluster::start_with(Seed::Platform).await;
    wait_until("the platform has settled", || {
        ingress_ip(&c, "tenant-a", "mqtt").is_some()
            && ingress_ip(&c, "kafka", "kafka-bootstrap").is_some()
    })
    .await;
    let before = c.cloud();
    let mqtt_ip = ingress_ip(&c, "tenant-a", "mqtt").expect("ip");
    let kafka_ip = ingress_ip(&c, "kafka", "kafka-bootstrap").expect("ip");
    let (code, summary) =
        crate::helpers::http("POST", &format!("{}/sim/v1/teardown", c.url()), None, None).await;
    assert_eq!(code, 200);
    assert_ne!(summary["uid"], "", "a new cluster answers");
    let after = c.cloud();
    let kept: Vec<_> = before
        .disks
        .values()
        .filter(|d| d.data_token.starts_with("kafka-"))
        .collect();
    assert!(
        kept.iter().all(|d| after.disks.contains_key(&d.id)),
        "Retain disks survive"
    );
    assert!(
        before
            .disks
            .values()
            .filter(|d| d.data_token.starts_with("zookeeper-"))
            .all(|d| !after.disks.contains_key(&d.id)),
        "Delete disks are gone"
    );
    assert!(
        after.addresses.contains_key(&kafka_ip),
        "the pinned address survives"
    );
    assert!(
        !after.addresses.contains_key(&mqtt_ip),
        "the controller-allocated address is released"
    );
    assert!(
        after.buckets.contains_key("tenant-a-data") && after.buckets.contains_key("platform-logs")
    );
    assert!(
        !after.buckets.contains_key("tenant-b-scratch")
            && !after.buckets.contains_key("platform-scratch")
    );
    assert!(after.load_balancers.is_empty());
    let left = c.kubectl_ok(&["get", "ns", "-o", "name"]).await;
    assert!(
        !left.contains("tenant-a"),
        "the new cluster is empty: {left}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_shows_the_platform_seed_and_the_cloud_endpoint_shows_its_resources() {
    let c = TestCluster::start_with(Seed::Platform).await;
    wait_until("the platform has settled", || {
        ingress_ip(&c, "tenant-b", "api").is_some()
    })
    .await;
    let out = c.kubectl_ok(&["get", "-A", "pv,pvc,svc"]).await;
    for want in [
        "pv-kafka-0",
        "data-kafka-2",
        "datadir-zookeeper-1",
        "kafka-bootstrap",
        "mqtt",
        "Bound",
        "LoadBalancer",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    let (code, cloud) =
        crate::helpers::http("GET", &format!("{}/sim/v1/cloud", c.url()), None, None).await;
    assert_eq!(code, 200);
    assert!(cloud["disks"].as_object().is_some_and(|d| d.len() >= 7));
    assert!(
        cloud["buckets"]
            .as_object()
            .is_some_and(|b| b.contains_key("tenant-a-data"))
    );
    assert!(cloud["ledger"].as_array().is_some_and(|l| !l.is_empty()));
    c.stop().await;
}
