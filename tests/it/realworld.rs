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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::TestCluster;
use coldstart::lifecycle::{self, StartOptions, StopOptions};
use coldstart::progress::Progress;
use coldstart::restore::{self, RestoreOptions};
use coldstart::snapshot::crypto::Keys;
use coldstart::snapshot::{read, write};
use coldstart::store::Store;
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
}

const GROUPS: &[Group] = &[
    Group {
        dir: "00-base",
        namespace: "default",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
    },
    Group {
        dir: "01-strimzi",
        namespace: "kafka",
        install: Install::Create,
        namespaces: &[],
        rejected: &[],
    },
    Group {
        dir: "02-cert-manager",
        namespace: "default",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
    },
    Group {
        dir: "03-cosi",
        namespace: "cosi-demo",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
    },
    Group {
        dir: "04-crossplane",
        namespace: "upbound-system",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
    },
    Group {
        dir: "05-ack",
        namespace: "ack-demo",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
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
    },
    Group {
        dir: "08-storage",
        namespace: "storage-demo",
        install: Install::Apply,
        namespaces: &[],
        rejected: &[],
    },
    Group {
        dir: "09-k8s-website",
        namespace: "web-demo",
        install: Install::Apply,
        namespaces: &[
            ("60-", "lb-dualstack"),
            ("61-", "svc-nodeport"),
            ("62-", "svc-lbip"),
            ("63-", "prod"),
            ("64-", "svc-extip"),
        ],
        rejected: &["40-cronjob.yaml"],
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
fn precreate_cloud(c: &TestCluster) {
    let mut cloud = c.sim().cloud.lock();
    cloud.create_bucket("brownfield-bucket", "brownfield-data", "pre-existing");
    cloud.create_bucket("rw-xp-existing-bucket", "xp-data", "pre-existing");
    cloud.create_bucket("rw-ack-existing-bucket", "ack-data", "pre-existing");
    cloud
        .create_static_address("192.168.1.100", None, None, "pre-existing")
        .expect("free address");
    cloud
        .create_pool(
            "lb-metallb-a",
            &["192.168.1.100".to_owned()],
            "pre-existing",
        )
        .expect("pool");
    cloud
        .create_pool(
            "production-public-ips",
            &["192.168.10.0".to_owned(), "192.168.10.1".to_owned()],
            "pre-existing",
        )
        .expect("pool");
    cloud
        .create_static_address("1.2.3.4", None, None, "pre-existing")
        .expect("free address");
    cloud
        .create_static_address("52.1.1.10", Some("eipalloc-xyz"), None, "pre-existing")
        .expect("free address");
    cloud
        .create_static_address("52.1.1.11", Some("eipalloc-zzz"), None, "pre-existing")
        .expect("free address");
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

async fn ensure_namespace(c: &TestCluster, ns: &str) {
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
async fn apply_corpus(c: &TestCluster, root: &Path) {
    for g in GROUPS {
        let dir = root.join(g.dir);
        let files = yaml_files(&dir);
        ensure_namespace(c, g.namespace).await;
        for (_, ns) in g.namespaces {
            ensure_namespace(c, ns).await;
        }
        let (crds, rest): (Vec<_>, Vec<_>) = files.iter().partition(|p| is_crd_file(p));
        for f in &crds {
            let path = f.display().to_string();
            c.kubectl_ok(&["create", "-f", &path]).await;
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
async fn corpus_cluster(root: &Path) -> TestCluster {
    let c = TestCluster::start().await;
    precreate_cloud(&c);
    apply_corpus(&c, root).await;
    settle(&c).await;
    c
}

/// Wait until every LoadBalancer Service that can have an address has one and every
/// workload is ready.
async fn settle(c: &TestCluster) {
    crate::helpers::wait_until_async("the corpus settles", || async {
        ready_workloads(c) && services_settled(c)
    })
    .await;
}

fn all(c: &TestCluster, group: &str, plural: &str) -> Vec<Value> {
    let Some(def) = c.sim().def(group, plural) else {
        return Vec::new();
    };
    c.sim()
        .store
        .all(&def.group_resource(), None)
        .into_iter()
        .map(|(_, s)| s.value())
        .collect()
}

fn key(v: &Value) -> String {
    format!(
        "{}/{}",
        v["metadata"]["namespace"].as_str().unwrap_or(""),
        v["metadata"]["name"].as_str().unwrap_or("")
    )
}

fn ready_workloads(c: &TestCluster) -> bool {
    ["deployments", "statefulsets"].iter().all(|p| {
        all(c, "apps", p).iter().all(|w| {
            let want = w["spec"]["replicas"].as_i64().unwrap_or(1);
            w["status"]["readyReplicas"].as_i64().unwrap_or(0) >= want
        })
    })
}

/// Services the in-tree controller owns that should have an address have one.
fn services_settled(c: &TestCluster) -> bool {
    all(c, "", "services").iter().all(|s| {
        s["spec"]["type"] != "LoadBalancer"
            || s["spec"]["loadBalancerClass"].is_string()
            || s.pointer("/status/loadBalancer/ingress/0").is_some()
    })
}

/// Every workload's replicas, by `namespace/name`.
fn replicas(c: &TestCluster) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for p in ["deployments", "statefulsets"] {
        for w in all(c, "apps", p) {
            out.insert(key(&w), w["spec"]["replicas"].as_i64().unwrap_or(1));
        }
    }
    out
}

/// CronJobs and whether each is suspended.
fn cronjobs(c: &TestCluster) -> BTreeMap<String, bool> {
    all(c, "batch", "cronjobs")
        .iter()
        .map(|j| (key(j), j["spec"]["suspend"].as_bool().unwrap_or(false)))
        .collect()
}

/// The address each LoadBalancer Service answers on.
fn service_addresses(c: &TestCluster) -> BTreeMap<String, String> {
    all(c, "", "services")
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

fn inventory(c: &TestCluster) -> Inventory {
    let cloud = c.cloud();
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
fn custom_resources(c: &TestCluster) -> BTreeMap<String, Value> {
    let defs: Vec<_> = c
        .sim()
        .registry()
        .all()
        .filter(|d| {
            d.group.contains('.') && !d.group.ends_with(".k8s.io")
                || d.group == "objectstorage.k8s.io"
        })
        .cloned()
        .collect();
    let mut out = BTreeMap::new();
    for d in defs {
        for ((_, _), s) in c.sim().store.all(&d.group_resource(), None) {
            let v = s.value();
            out.insert(format!("{} {}", d.kind, key(&v)), v["spec"].clone());
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

fn gate_objects(c: &TestCluster) -> Vec<String> {
    all(
        c,
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
    )
    .iter()
    .filter(|p| p.pointer("/metadata/labels/coldstart.dev~1gate").is_some())
    .map(key)
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_corpus_applies_as_its_docs_install_it_and_real_rejections_are_rejected() {
    let Some(root) = corpus() else { return };
    let c = corpus_cluster(&root).await;
    let addrs = service_addresses(&c);
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

#[tokio::test(flavor = "multi_thread")]
async fn stop_teardown_start_on_the_corpus_brings_back_every_original_and_nothing_new() {
    let Some(root) = corpus() else { return };
    let c = corpus_cluster(&root).await;
    let client = c.client().await;
    let store = Store::memory();
    let progress = Arc::new(Mutex::new(Progress::default()));

    let before_replicas = replicas(&c);
    let before_cron = cronjobs(&c);
    let before_addrs = service_addresses(&c);
    let before_crs = custom_resources(&c);
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
        cronjobs(&c).values().all(|s| *s),
        "stop suspends every CronJob: {:?}",
        cronjobs(&c)
    );
    let before = inventory(&c);

    c.teardown().await;
    assert_eq!(
        inventory(&c).disks,
        before.disks,
        "after stop, deleting the cluster loses no disk"
    );
    assert_eq!(
        inventory(&c).buckets,
        before.buckets,
        "after stop, deleting the cluster loses no bucket"
    );
    assert_eq!(
        inventory(&c).addresses,
        before.addresses,
        "after stop, deleting the cluster releases no address"
    );
    let mark = c.cloud().position();

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
    let created = c.cloud().created_since(mark);
    assert_eq!(
        (created.disks, created.ips, created.buckets),
        (0, 0, 0),
        "nothing new in the cloud: {:#?}",
        c.cloud()
            .ledger
            .iter()
            .filter(|e| e.seq > mark)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        inventory(&c),
        before,
        "every disk, address, DNS name and bucket is the original"
    );
    assert_eq!(
        service_addresses(&c),
        before_addrs,
        "every Service answers where it did"
    );
    assert_eq!(
        replicas(&c),
        before_replicas,
        "every workload is back at its replica count"
    );
    assert_eq!(cronjobs(&c), before_cron, "CronJobs resumed as they were");
    assert!(
        gate_objects(&c).is_empty(),
        "the gate is lifted: {:?}",
        gate_objects(&c)
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
    let after_crs = custom_resources(&c);
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

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_teardown_restore_on_the_corpus_brings_back_everything_not_lost() {
    let Some(root) = corpus() else { return };
    let c = corpus_cluster(&root).await;
    let client = c.client().await;
    let store = Store::memory();
    let before_replicas = replicas(&c);
    let before_crs = custom_resources(&c);
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
    let after = replicas(&c);
    for (k, n) in &before_replicas {
        assert_eq!(
            after.get(k),
            Some(n),
            "{k} is back at its replica count: {report:#?}"
        );
    }
    let after_crs = custom_resources(&c);
    for k in before_crs.keys() {
        assert!(after_crs.contains_key(k), "{k} came back");
    }
    c.stop().await;
}
