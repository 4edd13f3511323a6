//! Snapshots end to end: a simulated cluster holding disks, load balancers, bucket claims
//! and Secrets, snapshotted into memory, local and S3 (moto) stores, read back verified;
//! and every way it can go wrong. What a capture holds runs on both API servers
//! ([`Plane`]); the rest stays on the embedded server: scale seeds and injected faults are
//! its own, and a store's crypto or layout does not depend on the server.

use std::sync::Arc;
use std::time::Duration;

use coldstart::bindings::{BucketKind, Pin, Provider};
use coldstart::k8s::RetryPolicy;
use coldstart::snapshot::crypto::Keys;
use coldstart::snapshot::prune::{self, Policy};
use coldstart::snapshot::read::{self, ReadError};
use coldstart::snapshot::write::{self, CaptureProgress, Options, WriteError};
use coldstart::snapshot::{StoreKeyError, format::Manifest};
use coldstart::store::{Store, layout};
use coldstart::testing;
use coldstart_sim::seed::Seed;
use serde_json::{Value, json};

use crate::helpers::{Bed, Moto, Plane, TestCluster, http, on_both_planes, wait_until_async};

const KEY_B64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

use crate::helpers::keys;

fn opts() -> Options {
    Options {
        cluster_name: "test".to_owned(),
        retry: RetryPolicy {
            budget: Duration::from_secs(30),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn take(
    c: &(impl Connected + ?Sized),
    store: &Store,
    keys: &Keys,
    opts: &Options,
) -> Result<Manifest, WriteError> {
    let client = c.connect().await;
    write::take(
        &client,
        store,
        keys,
        opts,
        Arc::new(CaptureProgress::default()),
    )
    .await
}

/// A cluster a snapshot can be taken of: the embedded server in-process or a [`Bed`].
trait Connected {
    async fn connect(&self) -> kube::Client;
}

impl Connected for TestCluster {
    async fn connect(&self) -> kube::Client {
        self.client().await
    }
}

impl Connected for Bed {
    async fn connect(&self) -> kube::Client {
        self.client().await
    }
}

const FIXTURE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: db}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-ebs, annotations: {pv.kubernetes.io/provisioned-by: ebs.csi.aws.com}}
spec:
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: gp3
  csi: {driver: ebs.csi.aws.com, volumeHandle: vol-0123456789abcdef0, fsType: ext4}
  claimRef: {namespace: db, name: data-pg-0}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: topology.ebs.csi.aws.com/zone, operator: In, values: [eu-west-1b]}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-intree}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  awsElasticBlockStore: {volumeID: "aws://eu-west-1a/vol-0aaaaaaaaaaaaaaaa"}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-azure}
spec:
  capacity: {storage: 8Gi}
  accessModes: [ReadWriteOnce]
  csi: {driver: disk.csi.azure.com, volumeHandle: /subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-gce}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  gcePersistentDisk: {pdName: pd-legacy}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [us-central1-a]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: pg, namespace: db}
spec:
  serviceName: pg
  replicas: 0
  selector: {matchLabels: {app: pg}}
  template:
    metadata: {labels: {app: pg}}
    spec: {containers: [{name: pg, image: "postgres:17"}]}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations:
    service.beta.kubernetes.io/aws-load-balancer-eip-allocations: eipalloc-1,eipalloc-2
    external-dns.alpha.kubernetes.io/hostname: shop.example.com
spec: {type: LoadBalancer, ports: [{port: 443}]}
---
apiVersion: v1
kind: Service
metadata:
  name: mqtt
  namespace: shop
  annotations: {external-dns.kubernetes.io/hostname: mqtt.example.com}
spec: {type: LoadBalancer, ports: [{port: 8883}]}
---
apiVersion: v1
kind: Service
metadata: {name: lan, namespace: shop, annotations: {metallb.io/loadBalancerIPs: 192.168.10.5}}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"#;

const FIXTURE_OBJECTS: &str = r#"
apiVersion: objectstorage.k8s.io/v1alpha1
kind: BucketClass
metadata: {name: standard}
driverName: sim
deletionPolicy: Delete
---
apiVersion: objectstorage.k8s.io/v1alpha1
kind: BucketClaim
metadata: {name: data, namespace: shop}
spec: {existingBucketName: shop-data, bucketClassName: retained}
---
apiVersion: objectstorage.k8s.io/v1alpha1
kind: BucketClaim
metadata: {name: scratch, namespace: shop}
spec: {bucketClassName: standard}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: shop}
type: Opaque
data: {password: c3VwZXJzZWNyZXQtcGFzc3dvcmQ=}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-root-ca.crt, namespace: shop}
data: {ca.crt: old-cluster-ca}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app, namespace: shop}
data: {mode: production}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-abc-1
  namespace: shop
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-abc, uid: "7", controller: true}]
spec: {containers: [{name: c, image: nginx}]}
"#;

/// A cluster with every kind of binding; the simulated cloud's controllers give the load
/// balancers their addresses and the class-based claim its bucket.
async fn platform_like(plane: Plane) -> Bed {
    let c = Bed::start(plane, Seed::Empty).await;
    c.apply(
        &format!(
            "{}---\n{}",
            testing::cosi_bucket_claim_crd().yaml(),
            testing::cosi_bucket_class_crd().yaml()
        ),
        &[],
    )
    .await;
    // What the account holds before the cluster: the pinned addresses.
    let existing = json!({
        "addresses": [
            {"ip": "52.1.2.1", "allocationId": "eipalloc-1"},
            {"ip": "52.1.2.2", "allocationId": "eipalloc-2"},
        ],
        "pools": [{"name": "lan", "addresses": ["192.168.10.5"]}],
    });
    c.add_to_cloud(&serde_json::from_value(existing).expect("what the account holds"))
        .await;
    c.apply(FIXTURE, &[]).await;
    // The StatefulSet's claim names its owner by uid: an ownerReference to no object is
    // garbage-collected at once.
    let pg = c.get("apps", "statefulsets", "db", "pg").await.expect("pg");
    c.create(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-pg-0", "namespace": "db",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "pg",
                "uid": pg["metadata"]["uid"], "controller": true}]},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-ebs",
            "resources": {"requests": {"storage": "20Gi"}}},
    }))
    .await;
    c.apply(&coldstart::testing::cosi_bucket_crd().yaml(), &[])
        .await;
    apply_when_served(&c, FIXTURE_OBJECTS).await;
    wait_until_async("load balancers and buckets are provisioned", async || {
        for s in ["web", "mqtt", "lan"] {
            let addressed = c
                .get("", "services", "shop", s)
                .await
                .is_some_and(|v| v["status"]["loadBalancer"]["ingress"][0]["ip"].is_string());
            if !addressed {
                return false;
            }
        }
        c.get("objectstorage.k8s.io", "bucketclaims", "shop", "scratch")
            .await
            .is_some_and(|v| v["status"]["bucketName"].is_string())
    })
    .await;
    c
}

/// `kubectl apply` once the kinds it names are served: kube-apiserver serves a CRD's kind
/// only once it is established.
async fn apply_when_served(c: &Bed, yaml: &str) {
    c.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd",
        "--all",
    ])
    .await;
    c.apply(yaml, &[]).await;
}

/// What the simulated cluster and cloud hold, which the bindings must match.
struct Live {
    web: String,
    mqtt: String,
    scratch: String,
}

async fn live(c: &Bed) -> Live {
    let ip = async |name: &str| {
        c.get("", "services", "shop", name)
            .await
            .expect("service")["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .expect("address")
            .to_owned()
    };
    Live {
        web: ip("web").await,
        mqtt: ip("mqtt").await,
        scratch: c
            .get("objectstorage.k8s.io", "bucketclaims", "shop", "scratch")
            .await
            .expect("claim")["status"]["bucketName"]
            .as_str()
            .expect("bucket")
            .to_owned(),
    }
}

fn check_bindings(m: &Manifest, live: &Live) {
    let b = &m.bindings;
    let vol = |name: &str| {
        b.volumes
            .iter()
            .find(|v| v.pv == name)
            .unwrap_or_else(|| panic!("no binding for {name}"))
    };
    let ebs = vol("pv-ebs");
    assert_eq!(
        (
            ebs.provider.clone(),
            ebs.disk_id.as_str(),
            ebs.zone.as_deref()
        ),
        (Provider::Aws, "vol-0123456789abcdef0", Some("eu-west-1b"))
    );
    assert_eq!(
        (
            ebs.size.as_deref(),
            ebs.storage_class.as_deref(),
            ebs.reclaim_policy.as_deref()
        ),
        (Some("20Gi"), Some("gp3"), Some("Delete"))
    );
    assert_eq!(
        ebs.claim
            .as_ref()
            .map(|c| (c.namespace.as_str(), c.name.as_str())),
        Some(("db", "data-pg-0"))
    );
    let intree = vol("pv-intree");
    assert_eq!(
        (
            intree.source.as_str(),
            intree.disk_id.as_str(),
            intree.zone.as_deref()
        ),
        (
            "awsElasticBlockStore",
            "vol-0aaaaaaaaaaaaaaaa",
            Some("eu-west-1a")
        )
    );
    assert_eq!(vol("pv-azure").provider, Provider::Azure);
    let gce = vol("pv-gce");
    assert_eq!(
        (
            gce.provider.clone(),
            gce.disk_id.as_str(),
            gce.zone.as_deref()
        ),
        (Provider::Gcp, "pd-legacy", Some("us-central1-a"))
    );

    let lb = |name: &str| {
        b.load_balancers
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no binding for {name}"))
    };
    let web = lb("web");
    assert!(web.pinned);
    assert_eq!(
        web.pin,
        Some(Pin::AwsEip {
            allocations: vec!["eipalloc-1".into(), "eipalloc-2".into()]
        })
    );
    assert_eq!(web.ingress_ips, std::slice::from_ref(&live.web));
    assert_eq!(web.dns_names, ["shop.example.com"]);
    let mqtt = lb("mqtt");
    assert!(!mqtt.pinned, "a controller-allocated address is not pinned");
    assert_eq!(mqtt.ingress_ips, std::slice::from_ref(&live.mqtt));
    assert_eq!(mqtt.dns_names, ["mqtt.example.com"]);
    assert_eq!(
        lb("lan").pin,
        Some(Pin::Metallb {
            addresses: vec!["192.168.10.5".into()]
        })
    );
    assert!(!b.load_balancers.iter().any(|l| l.name == "kubernetes"));

    let bucket = |name: &str| {
        b.buckets
            .iter()
            .find(|x| x.name == name)
            .unwrap_or_else(|| panic!("no binding for {name}"))
    };
    let data = bucket("data");
    assert_eq!(
        (data.kind, data.bucket.as_deref(), data.adopted),
        (BucketKind::CosiBucketClaim, Some("shop-data"), true)
    );
    let scratch = bucket("scratch");
    assert_eq!(
        (
            scratch.bucket.as_deref(),
            scratch.adopted,
            scratch.deletion_policy.as_deref()
        ),
        (Some(live.scratch.as_str()), false, Some("Delete"))
    );
}

fn names(snap: &read::Snapshot, group: &str, resource: &str) -> Vec<String> {
    snap.resource(group, resource)
        .flat_map(|r| r.objects())
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

on_both_planes!(
    a_snapshot_into_memory_holds_every_binding_and_only_what_a_cold_start_needs =
        snapshot_into_memory
);

async fn snapshot_into_memory(plane: Plane) {
    let c = platform_like(plane).await;
    let store = Store::memory();
    let m = take(&c, &store, &keys(), &opts()).await.expect("snapshot");
    check_bindings(&m, &live(&c).await);
    assert!(!m.cluster.uid.is_empty());
    assert_eq!(m.cluster.name, "test");
    assert_eq!(m.encryption, "xchacha20poly1305");

    let snap = read::open(&store, &keys(), &m.id).await.expect("open");
    assert_eq!(snap.object_count() as u64, m.stats.objects);
    assert_eq!(snap.bindings(), &m.bindings);
    assert_eq!(names(&snap, "", "secrets"), ["creds"]);
    assert_eq!(
        names(&snap, "", "configmaps"),
        ["app"],
        "kube-root-ca.crt is left out"
    );
    assert!(
        names(&snap, "", "pods").is_empty(),
        "controller-owned pods are left out"
    );
    assert_eq!(
        names(&snap, "", "persistentvolumeclaims"),
        ["data-pg-0"],
        "StatefulSet claims are kept"
    );
    assert!(!names(&snap, "", "services").contains(&"kubernetes".to_owned()));
    assert_eq!(
        names(&snap, "objectstorage.k8s.io", "bucketclaims"),
        ["data", "scratch"]
    );
    assert!(
        names(&snap, "apiextensions.k8s.io", "customresourcedefinitions")
            .contains(&"bucketclaims.objectstorage.k8s.io".to_owned())
    );
    for group in snap.resources() {
        for obj in group.objects() {
            let meta = &obj["metadata"];
            assert!(
                meta.get("uid").is_none()
                    && meta.get("resourceVersion").is_none()
                    && meta.get("creationTimestamp").is_none(),
                "{obj}"
            );
            assert!(obj.get("status").is_none(), "{obj}");
            assert_eq!(obj["kind"].as_str(), Some(group.resource.kind.as_str()));
        }
    }
    // Nothing in the store reveals the Secret.
    for l in store.list("").await.expect("succeeds") {
        let bytes = store.get(&l.key).await.expect("succeeds");
        assert!(
            !bytes.windows(8).any(|w| w == b"c3VwZXJz"),
            "{} holds the Secret in plaintext",
            l.key
        );
    }
}

#[tokio::test]
async fn a_snapshot_into_s3_on_moto_holds_every_binding_and_verifies() {
    let moto = Moto::start().await;
    moto.bucket("snapshots").await;
    let c = platform_like(Plane::Embedded).await;
    // Through the CLI, so the store comes from the URL and the S3 endpoint from the env.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_coldstart"))
        .args([
            "--kubeconfig",
            c.kubeconfig.to_str().unwrap(),
            "--store",
            "s3://snapshots/prod/eu",
            "--json",
            "snapshot",
        ])
        .envs(moto.env())
        .env("COLDSTART_ENCRYPTION_KEY", KEY_B64)
        .output()
        .await
        .expect("coldstart runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json summary");
    for field in [
        "id",
        "objects",
        "bytes_written",
        "bytes_total",
        "duration_ms",
    ] {
        assert!(
            summary.get(field).is_some(),
            "--json has {field}: {summary}"
        );
    }
    // Buckets: two claims and the COSI Bucket object the class-based claim got.
    assert_eq!(
        summary["bindings"],
        json!({"volumes": 4, "load_balancers": 3, "buckets": 3})
    );
    let id = summary["id"].as_str().unwrap();
    let store = moto.store("snapshots", "prod/eu");
    let key = Keys::from_master(&coldstart::snapshot::crypto::parse_key(KEY_B64, "test").unwrap());
    let snap = read::open(&store, &key, id).await.expect("open from s3");
    check_bindings(&snap.manifest, &live(&c).await);
    assert_eq!(
        snap.manifest.cluster.name, "sim",
        "the kubeconfig's cluster name is the default"
    );
    let verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_coldstart"))
        .args([
            "--store",
            "s3://snapshots/prod/eu",
            "snapshots",
            "verify",
            id,
        ])
        .envs(moto.env())
        .env("COLDSTART_ENCRYPTION_KEY", KEY_B64)
        .output()
        .await
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test]
async fn an_unchanged_cluster_costs_almost_nothing_to_snapshot_again_and_a_few_changes_little() {
    let c = TestCluster::start_with(Seed::Scale(3000)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
    let first = take(&c, &store, &keys(), &opts()).await.unwrap();
    assert!(first.stats.objects >= 3000);
    let second = take(&c, &store, &keys(), &opts()).await.unwrap();
    assert!(
        second.stats.bytes_written * 100 <= first.stats.bytes_written,
        "unchanged: {} of {}",
        second.stats.bytes_written,
        first.stats.bytes_written
    );
    for i in (0..3000).step_by(100) {
        let ns = format!("tenant-{:04}", i % 3);
        let name = format!("obj-{i:07}");
        for path in [
            format!("/api/v1/namespaces/{ns}/configmaps/{name}"),
            format!("/api/v1/namespaces/{ns}/secrets/{name}"),
        ] {
            let _ = http(
                "PATCH",
                &format!("{}{path}", c.url()),
                Some("application/merge-patch+json"),
                Some(json!({"metadata": {"labels": {"changed": "yes"}}}).to_string()),
            )
            .await;
        }
    }
    let third = take(&c, &store, &keys(), &opts()).await.unwrap();
    assert!(
        third.stats.bytes_written * 20 <= first.stats.bytes_written,
        "1% changed: {} of {}",
        third.stats.bytes_written,
        first.stats.bytes_written
    );
    for m in [&first, &second, &third] {
        read::verify(&store, &keys(), &m.id)
            .await
            .expect("verifies");
    }
}

#[tokio::test]
async fn a_wrong_key_is_named_as_such_and_no_key_is_asked_for() {
    let c = platform_like(Plane::Embedded).await;
    let store = Store::memory();
    let m = take(&c, &store, &keys(), &opts()).await.unwrap();
    let wrong = Keys::from_master(&[8u8; 32]);
    let err = read::open(&store, &wrong, &m.id).await.unwrap_err();
    assert!(
        matches!(err, ReadError::Config(StoreKeyError::WrongKey { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("COLDSTART_ENCRYPTION_KEY"),
        "{err}"
    );
    let err = take(&c, &store, &wrong, &opts()).await.unwrap_err();
    assert!(err.to_string().contains("wrong encryption key"), "{err}");
    let err = read::open(&store, &Keys::plaintext(), &m.id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no key was given"), "{err}");
}

#[tokio::test]
async fn a_tampered_or_truncated_pack_or_a_missing_manifest_fails_verification_clearly() {
    let c = platform_like(Plane::Embedded).await;
    let store = Store::memory();
    let m = take(&c, &store, &keys(), &opts()).await.unwrap();
    let pack = layout::pack(&m.packs[0]);
    let good = store.get(&pack).await.unwrap();

    let mut flipped = good.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    store.put(&pack, flipped.into()).await.unwrap();
    let err = read::verify(&store, &keys(), &m.id).await.unwrap_err();
    assert!(matches!(err, ReadError::Hash { .. }), "{err}");
    assert!(err.to_string().contains("tampered"), "{err}");

    store
        .put(&pack, good.slice(..good.len() - 10))
        .await
        .unwrap();
    let err = read::verify(&store, &keys(), &m.id).await.unwrap_err();
    assert!(matches!(err, ReadError::Hash { .. }), "{err}");

    store.delete(&pack).await.unwrap();
    let err = read::verify(&store, &keys(), &m.id).await.unwrap_err();
    assert!(matches!(err, ReadError::MissingPack { .. }), "{err}");

    store.put(&pack, good).await.unwrap();
    read::verify(&store, &keys(), &m.id)
        .await
        .expect("restored pack verifies");
    store.delete(&layout::manifest(&m.id)).await.unwrap();
    let err = read::open(&store, &keys(), &m.id).await.unwrap_err();
    assert!(matches!(err, ReadError::MissingManifest { .. }), "{err}");
    assert!(
        err.to_string().contains("coldstart snapshots list"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unusable_store_fails_with_the_url_and_what_to_check() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = Store::open(&format!("file://{}/sub", file.path().display())).unwrap_err();
    assert!(
        err.to_string().contains("failed to open snapshot store"),
        "{err}"
    );
    // An S3 endpoint nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = TestCluster::start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_coldstart"))
        .args([
            "--kubeconfig",
            c.kubeconfig.to_str().unwrap(),
            "--store",
            "s3://nowhere/x",
            "snapshot",
            "--allow-plaintext-secrets",
        ])
        .env("COLDSTART_S3_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env_remove("COLDSTART_ENCRYPTION_KEY")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("s3://nowhere/x") && stderr.contains("reachable"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_storm_of_429s_and_5xxs_is_ridden_out() {
    let c = TestCluster::start_with(Seed::Scale(2000)).await;
    *c.running.sim.faults.write().unwrap() = coldstart_sim::faults::Faults {
        throttle_rate: 0.3,
        error_rate: 0.1,
        ..Default::default()
    };
    let store = Store::memory();
    let mut o = opts();
    o.retry.first_delay = Duration::from_millis(5);
    o.retry.max_delay = Duration::from_millis(50);
    let m = take(&c, &store, &keys(), &o)
        .await
        .expect("retries get through");
    *c.running.sim.faults.write().unwrap() = Default::default();
    let calm = take(&c, &Store::memory(), &keys(), &opts()).await.unwrap();
    assert_eq!(m.stats.objects, calm.stats.objects);
    read::verify(&store, &keys(), &m.id).await.unwrap();
}

#[tokio::test]
async fn an_api_server_that_never_recovers_fails_clearly_and_leaves_no_snapshot() {
    let c = TestCluster::start_with(Seed::Scale(500)).await;
    let store = Store::memory();
    let good = take(&c, &store, &keys(), &opts()).await.unwrap();
    *c.running.sim.faults.write().unwrap() = coldstart_sim::faults::Faults {
        error_rate: 1.0,
        ..Default::default()
    };
    let mut o = opts();
    o.retry = RetryPolicy {
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        budget: Duration::from_secs(1),
    };
    let err = take(&c, &store, &keys(), &o).await.unwrap_err();
    assert!(err.to_string().contains("retry later"), "{err}");
    let listed = read::list(&store, &keys()).await.unwrap();
    assert_eq!(
        listed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        [good.id.as_str()]
    );
    read::verify(&store, &keys(), &good.id).await.unwrap();
}

#[tokio::test]
async fn the_api_retry_budget_is_enforced_even_when_the_server_keeps_asking_to_retry_later() {
    // Every request answered 429 with Retry-After: 1. kube's own retry layer used to retry
    // those 15 times underneath ours, so a 2 s budget gave up only after ~15 s; with one
    // layer the budget is what bounds the wait.
    let c = TestCluster::start_with(Seed::Scale(50)).await;
    *c.running.sim.faults.write().unwrap() = coldstart_sim::faults::Faults {
        throttle_rate: 1.0,
        ..Default::default()
    };
    let mut o = opts();
    o.retry = RetryPolicy {
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
        budget: Duration::from_secs(2),
    };
    let started = std::time::Instant::now();
    let err = take(&c, &Store::memory(), &keys(), &o).await.unwrap_err();
    let took = started.elapsed();
    assert!(err.to_string().contains("--api-retry-budget"), "{err}");
    assert!(
        took < Duration::from_secs(6),
        "gave up after {took:?} with a 2 s budget"
    );
}

#[tokio::test]
async fn a_snapshot_is_indexed_as_its_packs_are_stored_and_reads_back_whole() {
    let c = TestCluster::start_with(Seed::Scale(3000)).await;
    let store = Store::memory();
    let mut o = opts();
    o.pack_size = 16 << 10;
    let m = take(&c, &store, &keys(), &o).await.unwrap();
    let indexes = store.list(layout::INDEX).await.unwrap().len();
    // A pack a page at this size, 8 to an index: the writer never holds the run's index.
    assert!(
        indexes >= m.packs.len().div_ceil(8) && indexes > 1,
        "{indexes} indexes for {} packs",
        m.packs.len()
    );
    let back = read::open_stored(&store, &keys(), &m.id).await.unwrap();
    let objects: u64 = back.manifest.resources.iter().map(|e| e.count).sum();
    assert_eq!(objects, m.stats.objects);
    assert!(objects > 3000, "{objects}");
    // Taken again, the cluster unchanged: every blob is found through those indexes.
    let again = take(&c, &store, &keys(), &o).await.unwrap();
    assert_eq!(store.list(layout::INDEX).await.unwrap().len(), indexes);
    assert_eq!(again.packs, m.packs);
}

#[tokio::test]
async fn a_crash_mid_snapshot_leaves_nothing_that_looks_complete_and_the_lock_is_recovered() {
    let c = TestCluster::start_with(Seed::Scale(3000)).await;
    let store = Store::memory();
    let mut o = opts();
    o.lock_ttl = Duration::from_secs(1);
    o.pack_size = 256 << 10;
    let good = take(&c, &store, &keys(), &o).await.unwrap();
    c.running.sim.faults.write().unwrap().latency_ms = 20;
    let client = c.client().await;
    let (s2, k2, o2) = (store.clone(), keys(), o.clone());
    let crashed = tokio::spawn(async move {
        write::take(&client, &s2, &k2, &o2, Arc::new(CaptureProgress::default())).await
    });
    // Change data so the crashed run has new packs to write, then kill it mid-way.
    tokio::time::sleep(Duration::from_millis(400)).await;
    crashed.abort();
    let _ = crashed.await;
    c.running.sim.faults.write().unwrap().latency_ms = 0;
    let listed = read::list(&store, &keys()).await.unwrap();
    assert_eq!(listed.len(), 1, "only the complete snapshot is visible");
    let err = take(&c, &store, &keys(), &o).await.unwrap_err();
    assert!(
        matches!(err, WriteError::Lock(_)),
        "the crashed writer's lock still holds: {err}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let next = take(&c, &store, &keys(), &o)
        .await
        .expect("a stale lock is taken over");
    read::verify(&store, &keys(), &good.id).await.unwrap();
    read::verify(&store, &keys(), &next.id).await.unwrap();
}

on_both_planes!(secrets_are_refused_without_a_key_unless_plaintext_is_allowed = secrets_need_a_key);

async fn secrets_need_a_key(plane: Plane) {
    let c = platform_like(plane).await;
    let store = Store::memory();
    let err = take(&c, &store, &Keys::plaintext(), &opts())
        .await
        .expect_err("refused");
    assert!(matches!(err, WriteError::PlaintextSecrets), "{err}");
    // Nothing of the snapshot is written; the writer lock it took is left released (an
    // expired generation: lock generations only grow, see store/lock.rs).
    let written: Vec<_> = store
        .list("")
        .await
        .expect("succeeds")
        .into_iter()
        .filter(|l| !l.key.starts_with(coldstart::store::layout::WRITER_LOCK))
        .collect();
    assert!(written.is_empty(), "nothing written: {written:?}");
    coldstart::store::lock::check_free(&store)
        .await
        .expect("the lock is released");
    let mut no_secrets = opts();
    no_secrets.selection.exclude_resources = vec!["secrets".into()];
    let m = take(&c, &store, &Keys::plaintext(), &no_secrets)
        .await
        .expect("succeeds");
    assert!(!m.plaintext_secrets && m.encryption == "none");
    let plain_store = Store::memory();
    let mut allowed = opts();
    allowed.allow_plaintext_secrets = true;
    let m = take(&c, &plain_store, &Keys::plaintext(), &allowed)
        .await
        .expect("succeeds");
    assert!(
        m.plaintext_secrets,
        "the manifest says Secrets are in plaintext"
    );
}

on_both_planes!(namespaces_resources_and_labels_select_what_is_captured = selection);

async fn selection(plane: Plane) {
    let c = platform_like(plane).await;
    let mut o = opts();
    o.selection.include_namespaces = vec!["db".into()];
    o.selection.exclude_resources = vec!["persistentvolumes".into()];
    let store = Store::memory();
    let m = take(&c, &store, &keys(), &o).await.expect("succeeds");
    let snap = read::open(&store, &keys(), &m.id).await.expect("succeeds");
    assert_eq!(names(&snap, "", "namespaces"), ["db"]);
    assert!(names(&snap, "", "configmaps").is_empty());
    assert!(names(&snap, "", "persistentvolumes").is_empty());
    assert_eq!(names(&snap, "", "persistentvolumeclaims"), ["data-pg-0"]);
}

#[tokio::test]
async fn prune_keeps_what_retention_asks_and_collects_unreferenced_packs() {
    let c = platform_like(Plane::Embedded).await;
    let store = Store::memory();
    let mut ids = Vec::new();
    for i in 0..3 {
        c.kubectl_ok(&[
            "patch",
            "configmap",
            "app",
            "-n",
            "shop",
            "--type=merge",
            "-p",
            &json!({"data": {"round": format!("{i}")}}).to_string(),
        ])
        .await;
        ids.push(take(&c, &store, &keys(), &opts()).await.unwrap().id);
    }
    let packs_before = store.list(layout::PACKS).await.unwrap().len();
    let r = prune::prune(
        &store,
        &keys(),
        Policy {
            keep_last: 1,
            ..Default::default()
        },
        Duration::ZERO,
        false,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.kept, [ids[2].clone()]);
    assert_eq!(r.forgotten, [ids[0].clone(), ids[1].clone()]);
    assert!(r.packs_deleted > 0);
    assert_eq!(
        store.list(layout::PACKS).await.unwrap().len(),
        packs_before - r.packs_deleted
    );
    read::verify(&store, &keys(), &ids[2])
        .await
        .expect("the kept snapshot is whole");
    let next = take(&c, &store, &keys(), &opts()).await.unwrap();
    read::verify(&store, &keys(), &next.id)
        .await
        .expect("a snapshot after GC is whole");
}
