//! The real-world corpus: manifests from public projects (Strimzi, cert-manager, COSI,
//! Crossplane, ACK, MetalLB, the AWS Load Balancer Controller, external-dns, kubernetes/
//! examples and website), applied with the real `kubectl` the way their docs install them,
//! onto a simulated cloud that already holds what a real account holds (the EIP
//! allocations, the MetalLB addresses, the brownfield buckets). Then a planned stop, the
//! cluster deleted, a start: every disk, address, DNS name and bucket must be the original
//! and nothing new, every workload back — on manifests nobody here wrote.
//!
//! The corpus is read at test time from `../shared/realworld` (beside the repository, as in
//! CI) and never copied into the repository. Where it is absent (a user's clone), each test
//! prints a loud SKIPPED line naming the path and returns.
//!
//! The scenarios reach the cluster only through the API and the admin endpoint, so each
//! runs on both [`Plane`]s. The COSI CRDs (group `objectstorage.k8s.io`, protected) are
//! published without the `api-approved.kubernetes.io` annotation kube-apiserver requires;
//! the harness adds it as COSI's installer does ([`approved`]), never editing the corpus.
//! 08-storage's Cassandra names its class by the beta `volume.beta.kubernetes.io/
//! storage-class` annotation (`fast`, provisioner `k8s.io/minikube-hostpath`): both servers
//! read the annotation first, as Kubernetes does, and the simulated cloud runs minikube's
//! hostPath provisioner as minikube does, so its claims are provisioned on both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{Bed, Plane, on_both_planes};
use coldstart::lifecycle::{self, StartOptions, StopOptions};
use coldstart::progress::Progress;
use coldstart::restore::{self, RestoreOptions};
use coldstart::snapshot::crypto::Keys;
use coldstart::snapshot::{read, write};
use coldstart::store::Store;
use coldstart_sim::seed::Seed;
use futures::StreamExt as _;
use serde_json::Value;

/// Where the corpus lives, relative to the repository (CI checks it out beside the repo).
const CORPUS: &str = "../shared/realworld";

pub(crate) fn corpus() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    if root.join("CASES.md").is_file() {
        return Some(root);
    }
    eprintln!(
        "\n******** SKIPPED: the real-world corpus is not at {} ********\n\
         ******** (check it out beside the repository as ../shared/realworld to run it) ********\n",
        root.display()
    );
    None
}

/// How a group's docs install it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Install {
    /// `kubectl apply` (CRD files with `kubectl create`: they exceed the 256 KiB
    /// last-applied annotation).
    Apply,
    /// `kubectl create -f` for everything (Strimzi's install instructions).
    Create,
}

/// One group of the corpus (CASES.md's table).
struct Group {
    dir: &'static str,
    namespace: &'static str,
    install: Install,
    /// Files applied into another namespace than the group's.
    namespaces: &'static [(&'static str, &'static str)],
    /// Files a real API server rejects (CASES.md names them).
    rejected: &'static [&'static str],
    /// The API-review link the project's installer adds to its CRDs in a protected group
    /// (see [`approved`]); `None` applies them as published.
    crd_approval: Option<&'static str>,
}

const GROUPS: &[Group] = &[
    Group {
        dir: "00-base",
        namespace: "default",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
        crd_approval: None,
    },
    Group {
        dir: "01-strimzi",
        namespace: "kafka",
        install: Install::Create,
        namespaces: &[],
        rejected: &[],
        crd_approval: None,
    },
    Group {
        dir: "02-cert-manager",
        namespace: "default",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
        crd_approval: None,
    },
    Group {
        dir: "03-cosi",
        namespace: "cosi-demo",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
        crd_approval: Some(COSI_APPROVAL),
    },
    Group {
        dir: "04-crossplane",
        namespace: "upbound-system",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
        crd_approval: None,
    },
    Group {
        dir: "05-ack",
        namespace: "ack-demo",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
        crd_approval: None,
    },
    Group {
        dir: "07-lb",
        namespace: "default",
        install: Install::Apply,
        namespaces: &[
            ("10-", "lb-metallb-a"),
            ("11-", "lb-metallb-b"),
            ("12-", "default"),
            ("20-", "lb-aws"),
            ("34-", "lb-aws"),
            ("21-", "lb-aws-class"),
            ("30-", "lb-extdns"),
            ("31-", "default"),
            ("32-", "lb-weighted"),
            ("33-", "lb-weighted"),
        ],
        rejected: &["32-extdns-weighted-as-documented.yaml"],
        crd_approval: None,
    },
    Group {
        dir: "08-storage",
        namespace: "storage-demo",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
        crd_approval: None,
    },
    Group {
        dir: "09-k8s-website",
        namespace: "web-demo",
        install: Install::Apply,
        // 51- is the page's quota (limits required of every pod), which the page applies in a
        // namespace of its own: applied into web-demo after the ZooKeeper StatefulSet, it
        // raced the StatefulSet controller, whose later pods the quota refused for want of
        // limits, so whether zk ever had its 3 replicas depended on the machine's speed.
        namespaces: &[
            ("51-", "quota-mem-cpu-example"),
            ("60-", "lb-dualstack"),
            ("61-", "svc-nodeport"),
            ("62-", "svc-lbip"),
            ("63-", "prod"),
            ("64-", "svc-extip"),
        ],
        // The bed is a default single-stack IPv4 cluster (service CIDR 10.96.0.0/12), as
        // kube-apiserver is started: 60- asks for IPv6 and 62- for the cluster IP
        // 10.0.171.239, both of which only the page's example cluster has.
        rejected: &[
            "40-cronjob.yaml",
            "60-dual-stack-prefer-ipv6-lb-svc.yaml",
            "62-service-lb-with-clusterip.yaml",
        ],
        crd_approval: None,
    },
];

impl Group {
    fn namespace_of(&self, file: &str) -> &'static str {
        self.namespaces
            .iter()
            .find(|(prefix, _)| file.starts_with(prefix))
            .map_or(self.namespace, |(_, ns)| ns)
    }
}

/// What a real cloud account already holds before the corpus is applied (CASES.md).
async fn precreate_cloud(c: &Bed) {
    let existing = serde_json::json!({
        "buckets": [
            {"name": "brownfield-bucket", "data": "brownfield-data"},
            {"name": "rw-xp-existing-bucket", "data": "xp-data"},
            {"name": "rw-ack-existing-bucket", "data": "ack-data"},
        ],
        "addresses": [
            {"ip": "192.168.1.100"},
            {"ip": "1.2.3.4"},
            {"ip": "52.1.1.10", "allocationId": "eipalloc-xyz"},
            {"ip": "52.1.1.11", "allocationId": "eipalloc-zzz"},
        ],
        "pools": [
            {"name": "lb-metallb-a", "addresses": ["192.168.1.100"]},
            {"name": "production-public-ips", "addresses": ["192.168.10.0", "192.168.10.1"]},
        ],
    });
    c.add_to_cloud(&serde_json::from_value(existing).expect("what the account holds"))
        .await;
}

pub(crate) fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// The namespaces a file's objects name themselves (kubectl refuses a `-n` that differs;
/// their docs create them first).
fn named_namespaces(path: &Path) -> Vec<String> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<String> = serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| Value::deserialize(doc).ok())
        .filter_map(|v| {
            v.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

pub(crate) fn is_crd_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains("kind: CustomResourceDefinition")
}

/// The annotation kube-apiserver requires of a CRD in a protected group (`*.k8s.io`,
/// `*.kubernetes.io`): the link to the API review that approved it.
const API_APPROVED: &str = "api-approved.kubernetes.io";

/// The approval COSI's installer adds: its controller-gen CRDs are published without it, and
/// `resources/install.sh` pipes each through
/// `sed '/annotations/ a "api-approved.kubernetes.io": "<this link>"'` (its kustomization
/// does the same for `kubectl create -k`).
const COSI_APPROVAL: &str =
    "https://github.com/kubernetes-sigs/container-object-storage-interface-api/pull/2";

/// `text` (one or more YAML documents) as the project's installer applies it: a CRD in a
/// protected group without the approval annotation gets `approval`, since kube-apiserver
/// (and, like it, the embedded server) refuses it otherwise. Every other document, and a
/// CRD that carries an approval already, is left as it is. The corpus on disk is never
/// edited: it is what the project publishes.
pub(crate) fn approved(text: &str, approval: Option<&str>) -> String {
    use serde::Deserialize;
    let mut out = String::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let mut doc = Value::deserialize(doc).expect("the corpus is YAML");
        if doc.is_null() {
            continue;
        }
        let group = doc
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let protected = group.ends_with(".k8s.io") || group.ends_with(".kubernetes.io");
        let unapproved = doc["metadata"]["annotations"][API_APPROVED].is_null();
        if let (true, true, true, Some(link)) = (
            doc["kind"] == "CustomResourceDefinition",
            protected,
            unapproved,
            approval,
        ) {
            doc["metadata"]["annotations"][API_APPROVED] = Value::from(link);
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&doc).expect("yaml"));
    }
    out
}

async fn ensure_namespace(c: &Bed, ns: &str) {
    if ns != "default" {
        c.apply(
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
            &[],
        )
        .await;
    }
}

/// Apply the whole corpus as its docs install it; returns the objects the server refused
/// (file names), which must be exactly the ones CASES.md names.
async fn apply_corpus(c: &Bed, root: &Path) {
    for g in GROUPS {
        let dir = root.join(g.dir);
        let files = yaml_files(&dir);
        ensure_namespace(c, g.namespace).await;
        for (_, ns) in g.namespaces {
            ensure_namespace(c, ns).await;
        }
        let (crds, rest): (Vec<_>, Vec<_>) = files.iter().partition(|p| is_crd_file(p));
        for f in &crds {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
            let out = c
                .kubectl_stdin(
                    &["create", "-f", "-"],
                    Some(&approved(&text, g.crd_approval)),
                )
                .await;
            crate::helpers::assert_ok(&out, &["create", "-f", &f.display().to_string()]);
        }
        if !crds.is_empty() {
            c.kubectl_ok(&[
                "wait",
                "--for",
                "condition=established",
                "--timeout=30s",
                "crd",
                "--all",
            ])
            .await;
        }
        for f in rest {
            let file = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let path = f.display().to_string();
            let ns = g.namespace_of(file);
            let verb = match g.install {
                Install::Apply => "apply",
                Install::Create => "create",
            };
            let named = named_namespaces(f);
            for n in &named {
                ensure_namespace(c, n).await;
            }
            let out = if !named.is_empty() {
                c.kubectl(&[verb, "-f", &path]).await
            } else {
                c.kubectl(&[verb, "-n", ns, "-f", &path]).await
            };
            let rejected = g.rejected.contains(&file);
            assert_eq!(
                out.status.success(),
                !rejected,
                "{}/{file}: expected {}; kubectl said: {}{}",
                g.dir,
                if rejected { "rejection" } else { "success" },
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A cluster with the corpus applied and its controllers settled.
async fn corpus_cluster(plane: Plane, root: &Path) -> Bed {
    let c = Bed::start(plane, Seed::Empty).await;
    precreate_cloud(&c).await;
    apply_corpus(&c, root).await;
    settle(&c).await;
    c
}

/// Wait until every LoadBalancer Service that can have an address has one and every
/// workload is ready. The deadline is generous for the real control plane on a loaded
/// 2-core machine (its 3-replica ZooKeeper is OrderedReady: one pod after the other); a
/// workload that stays short here is refused something, as the page's quota once refused
/// zk-2 (see the 09-k8s-website group), and the message names it.
async fn settle(c: &Bed) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let waiting = unsettled(c).await;
        if waiting.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until the corpus settles; still waiting for: {waiting:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// What keeps the corpus from having settled: workloads short of their replicas and
/// LoadBalancer Services the in-tree controller owns without an address.
async fn unsettled(c: &Bed) -> Vec<String> {
    let mut out = Vec::new();
    for p in ["deployments", "statefulsets"] {
        for w in all(c, "apps", p).await {
            let want = w["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = w["status"]["readyReplicas"].as_i64().unwrap_or(0);
            if ready < want {
                out.push(format!("{p} {} ({ready}/{want} ready)", key(&w)));
            }
        }
    }
    for s in all(c, "", "services").await {
        if s["spec"]["type"] == "LoadBalancer"
            && !s["spec"]["loadBalancerClass"].is_string()
            && s.pointer("/status/loadBalancer/ingress/0").is_none()
        {
            out.push(format!("service {} (no address)", key(&s)));
        }
    }
    out
}

async fn all(c: &Bed, group: &str, plural: &str) -> Vec<Value> {
    c.list(group, plural).await
}

fn key(v: &Value) -> String {
    format!(
        "{}/{}",
        v["metadata"]["namespace"].as_str().unwrap_or(""),
        v["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// Every workload's replicas, by `namespace/name`.
async fn replicas(c: &Bed) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for p in ["deployments", "statefulsets"] {
        for w in all(c, "apps", p).await {
            out.insert(key(&w), w["spec"]["replicas"].as_i64().unwrap_or(1));
        }
    }
    out
}

/// CronJobs and whether each is suspended.
async fn cronjobs(c: &Bed) -> BTreeMap<String, bool> {
    all(c, "batch", "cronjobs")
        .await
        .iter()
        .map(|j| (key(j), j["spec"]["suspend"].as_bool().unwrap_or(false)))
        .collect()
}

/// The address each LoadBalancer Service answers on.
async fn service_addresses(c: &Bed) -> BTreeMap<String, String> {
    all(c, "", "services")
        .await
        .iter()
        .filter_map(|s| {
            Some((
                key(s),
                s.pointer("/status/loadBalancer/ingress/0/ip")?
                    .as_str()?
                    .to_owned(),
            ))
        })
        .collect()
}

/// What the cloud holds: disks (id, data), addresses, DNS (name → target), buckets (name,
/// data).
#[derive(Debug, PartialEq, Eq)]
struct Inventory {
    disks: Vec<(String, String)>,
    addresses: Vec<String>,
    dns: BTreeMap<String, String>,
    buckets: Vec<(String, String)>,
}

async fn inventory(c: &Bed) -> Inventory {
    let cloud = c.cloud().await;
    Inventory {
        disks: cloud
            .disks
            .values()
            .map(|d| (d.id.clone(), d.data_token.clone()))
            .collect(),
        addresses: cloud.addresses.keys().cloned().collect(),
        dns: cloud
            .dns
            .iter()
            .map(|(k, v)| (k.clone(), v.target.clone()))
            .collect(),
        buckets: cloud
            .buckets
            .values()
            .map(|b| (b.name.clone(), b.data_token.clone()))
            .collect(),
    }
}

/// The spec of every custom resource, by `kind namespace/name`: what must come back as it
/// was applied.
async fn custom_resources(c: &Bed) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (group, plural, kind) in c.custom_kinds().await {
        for v in all(c, &group, &plural).await {
            out.insert(format!("{kind} {}", key(&v)), v["spec"].clone());
        }
    }
    out
}

fn keys() -> Keys {
    Keys::from_master(&[11u8; 32])
}

fn snapshot_opts() -> write::Options {
    write::Options {
        cluster_name: "realworld".into(),
        ..Default::default()
    }
}

fn restore_opts() -> RestoreOptions {
    RestoreOptions {
        verify_timeout: Duration::from_secs(20),
        operator_timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

async fn gate_objects(c: &Bed) -> Vec<String> {
    all(
        c,
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
    )
    .await
    .iter()
    .filter(|p| p.pointer("/metadata/labels/coldstart.dev~1gate").is_some())
    .map(key)
    .collect()
}

on_both_planes!(
    the_corpus_applies_as_its_docs_install_it_and_real_rejections_are_rejected = corpus_applies
);

async fn corpus_applies(plane: Plane) {
    let Some(root) = corpus() else { return };
    let c = corpus_cluster(plane, &root).await;
    let addrs = service_addresses(&c).await;
    assert_eq!(
        addrs.get("lb-metallb-a/nginx").map(String::as_str),
        Some("192.168.1.100"),
        "the MetalLB pin lands on its pool address"
    );
    assert_eq!(
        addrs.get("default/dns-service-tcp"),
        addrs.get("default/dns-service-udp"),
        "allow-shared-ip Services share 1.2.3.4"
    );
    assert_eq!(
        addrs.get("lb-aws/echoserver").map(String::as_str),
        Some("52.1.1.10"),
        "the NLB answers on its Elastic IP allocation"
    );
    assert!(
        addrs
            .get("lb-metallb-b/nginx")
            .is_some_and(|ip| ip.starts_with("192.168.10.")),
        "a Service naming a MetalLB pool gets an address from it: {addrs:?}"
    );
    assert!(
        !addrs.contains_key("lb-aws-class/echoserver"),
        "a loadBalancerClass Service is its own controller's"
    );
    c.stop().await;
}

on_both_planes!(
    stop_teardown_start_on_the_corpus_brings_back_every_original_and_nothing_new =
        corpus_stop_teardown_start
);

async fn corpus_stop_teardown_start(plane: Plane) {
    let Some(root) = corpus() else { return };
    let c = corpus_cluster(plane, &root).await;
    let client = c.client().await;
    let store = Store::memory();
    let progress = Arc::new(Mutex::new(Progress::default()));

    let before_replicas = replicas(&c).await;
    let before_cron = cronjobs(&c).await;
    let before_addrs = service_addresses(&c).await;
    let before_crs = custom_resources(&c).await;
    assert!(!before_cron.is_empty(), "the corpus has a CronJob");

    let stop_opts = StopOptions {
        snapshot: snapshot_opts(),
        quiesce_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let stopped = lifecycle::stop(&client, &store, &keys(), &stop_opts, &progress)
        .await
        .expect("stop");
    assert!(
        cronjobs(&c).await.values().all(|s| *s),
        "stop suspends every CronJob: {:?}",
        cronjobs(&c).await
    );
    let before = inventory(&c).await;

    c.teardown().await;
    assert_eq!(
        inventory(&c).await.disks,
        before.disks,
        "after stop, deleting the cluster loses no disk"
    );
    assert_eq!(
        inventory(&c).await.buckets,
        before.buckets,
        "after stop, deleting the cluster loses no bucket"
    );
    assert_eq!(
        inventory(&c).await.addresses,
        before.addresses,
        "after stop, deleting the cluster releases no address"
    );
    let mark = c.cloud().await.position();

    let start_opts = StartOptions {
        restore: restore_opts(),
        snapshot: None,
        ready_timeout: Duration::from_secs(30),
        consent: Default::default(),
    };
    let started = lifecycle::start(&client, &store, &keys(), &start_opts, &progress)
        .await
        .expect("start");
    assert!(started.restore.succeeded, "{:#?}", started.restore);
    settle(&c).await;
    let created = c.cloud().await.created_since(mark);
    assert_eq!(
        (created.disks, created.ips, created.buckets),
        (0, 0, 0),
        "nothing new in the cloud: {:#?}",
        c.cloud()
            .await
            .ledger
            .iter()
            .filter(|e| e.seq > mark)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        inventory(&c).await,
        before,
        "every disk, address, DNS name and bucket is the original"
    );
    assert_eq!(
        service_addresses(&c).await,
        before_addrs,
        "every Service answers where it did"
    );
    assert_eq!(
        replicas(&c).await,
        before_replicas,
        "every workload is back at its replica count"
    );
    assert_eq!(
        cronjobs(&c).await,
        before_cron,
        "CronJobs resumed as they were"
    );
    assert!(
        gate_objects(&c).await.is_empty(),
        "the gate is lifted: {:?}",
        gate_objects(&c).await
    );
    // Custom resources come back as they were applied, apart from what stop changed
    // (each change in its report) and what the restore documents (each transform in the
    // plan `restore --dry-run` prints).
    let snap = read::open(
        &store,
        &keys(),
        stopped.snapshot.as_deref().expect("snapshot"),
    )
    .await
    .expect("verified");
    let source = restore::source::from_snapshot(&snap);
    let plan_opts = Default::default();
    let mut planned = Vec::new();
    for tier in restore::plan::Tier::ALL {
        let mut tier_plan = restore::plan_tier(&source, &plan_opts, tier, |_| {});
        while let Some(p) = tier_plan.next().await {
            planned.push(p.expect("planned"));
        }
    }
    let documented: BTreeMap<String, String> = planned
        .iter()
        .map(|p| {
            (
                format!(
                    "{} {}/{}",
                    p.kind,
                    p.namespace.as_deref().unwrap_or(""),
                    p.name
                ),
                p.transforms.join("; "),
            )
        })
        .collect();
    let after_crs = custom_resources(&c).await;
    for (k, spec) in &before_crs {
        let mut expected = spec.clone();
        for change in &stopped.changes {
            let o = &change.object;
            if format!(
                "{} {}/{}",
                o.kind,
                o.namespace.as_deref().unwrap_or(""),
                o.name
            ) == *k
            {
                merge(&mut expected, &change.patch["spec"]);
            }
        }
        let after = after_crs.get(k).unwrap_or_else(|| panic!("{k} came back"));
        let transforms = documented.get(k).cloned().unwrap_or_default();
        for field in differing_fields(&expected, after) {
            assert!(
                transforms.contains(&field),
                "{k}: spec.{field} differs from what was applied and no transform says so \
                 (transforms: {transforms:?}); before {expected}, after {after}"
            );
        }
    }
    c.stop().await;
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) if !p.is_null() => *t = p.clone(),
        _ => {}
    }
}

/// The top-level spec fields whose values differ.
fn differing_fields(a: &Value, b: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

on_both_planes!(
    snapshot_teardown_restore_on_the_corpus_brings_back_everything_not_lost =
        corpus_snapshot_teardown_restore
);

async fn corpus_snapshot_teardown_restore(plane: Plane) {
    let Some(root) = corpus() else { return };
    let c = corpus_cluster(plane, &root).await;
    let client = c.client().await;
    let store = Store::memory();
    let before_replicas = replicas(&c).await;
    let before_crs = custom_resources(&c).await;
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
    let snap = read::open(&store, &keys(), &m.id).await.expect("verified");
    let source = restore::source::from_snapshot(&snap);
    // PREFLIGHT's hook: the preflight report (what a deletion without `stop` lost, by name,
    // before the first write) is asserted here once `restore` produces it.
    let progress = Arc::new(Mutex::new(Progress::default()));
    let report = restore::run(&client, &source, &restore_opts(), &progress)
        .await
        .expect("restore runs");
    // Everything else comes back.
    let after = replicas(&c).await;
    for (k, n) in &before_replicas {
        assert_eq!(
            after.get(k),
            Some(n),
            "{k} is back at its replica count: {report:#?}"
        );
    }
    let after_crs = custom_resources(&c).await;
    for k in before_crs.keys() {
        assert!(after_crs.contains_key(k), "{k} came back");
    }
    c.stop().await;
}

#[test]
fn a_protected_crd_without_approval_gets_the_installers_link_and_nothing_else_changes() {
    let text = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: buckets.objectstorage.k8s.io
spec:
  group: objectstorage.k8s.io
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: approved.sigs.k8s.io
  annotations:
    api-approved.kubernetes.io: https://example.org/review
spec:
  group: sigs.k8s.io
";
    let docs: Vec<Value> = {
        use serde::Deserialize;
        serde_yaml::Deserializer::from_str(&approved(text, Some(COSI_APPROVAL)))
            .map(|d| Value::deserialize(d).expect("yaml"))
            .collect()
    };
    let approval = |i: usize| docs[i]["metadata"]["annotations"][API_APPROVED].as_str();
    assert_eq!(approval(0), Some(COSI_APPROVAL), "the COSI CRD is approved");
    assert_eq!(approval(1), None, "an unprotected group needs no approval");
    assert_eq!(
        approval(2),
        Some("https://example.org/review"),
        "an existing approval is kept"
    );
    let unchanged = approved(text, None);
    assert!(
        !unchanged.contains(COSI_APPROVAL),
        "a project whose installer adds nothing is applied as published"
    );
}
