//! The CLI against Kubernetes' own control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, kwok), built by tests/kube/build.sh. These tests
//! fail, never skip, when the binaries are missing: a claim about real Kubernetes that was
//! not checked against it must not pass. Scenarios that take a [`Plane`] run on the embedded
//! server too: a difference in outcome is a bug in one of them. Two stay on Kubernetes
//! alone: the launcher's own report, and the Helm chart under kube-apiserver's validation
//! (helm.rs checks it against the embedded server).

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Bed, Plane, cli_ok as ok, on_both_planes};
use coldstart_sim::seed::Seed;

/// `coldstart sim serve --control-plane kubernetes ARGS`, and the launch report it prints;
/// killed (with its control plane, which dies with it) on drop. Only for what checks the
/// launcher's own report: scenarios use [`Bed`].
struct Served {
    _serve: tokio::process::Child,
    bed_dir: tempfile::TempDir,
    started: Value,
}

impl Served {
    async fn start(extra: &[&str]) -> Self {
        let bed_dir = tempfile::tempdir().expect("tempdir");
        let bin = coldstart_sim::control_plane::locate_binaries().unwrap_or_else(|e| panic!("{e}"));
        let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_coldstart"))
            .args(["--json", "sim", "serve", "--control-plane", "kubernetes"])
            .env(coldstart_sim::control_plane::BIN_ENV, &bin)
            .args(extra)
            .arg("--kubeconfig-out")
            .arg(bed_dir.path().join("kubeconfig"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("coldstart runs");
        let stdout = serve.stdout.take().expect("stdout");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let line = tokio::time::timeout(Duration::from_secs(180), lines.next_line())
            .await
            .expect("the control plane starts within 3 minutes")
            .expect("read stdout")
            .expect("sim serve prints its address (see its stderr above for why it did not)");
        Served {
            _serve: serve,
            bed_dir,
            started: serde_json::from_str(&line).expect("json"),
        }
    }

    /// kubectl against the served cluster, which must succeed: its stdout.
    async fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new("kubectl")
            .arg(format!(
                "--kubeconfig={}",
                self.bed_dir.path().join("kubeconfig").display()
            ))
            .arg(format!(
                "--cache-dir={}",
                self.bed_dir.path().join("cache").display()
            ))
            .args(args)
            .output()
            .await
            .expect("kubectl runs");
        ok(&out, &format!("kubectl {}", args.join(" ")))
    }

    async fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get", "-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.kubectl_ok(&all).await).expect("json")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_version_against_the_real_control_plane_with_the_platform_seed_reports_the_release_and_its_nodes_are_ready_across_zones()
 {
    let c = Served::start(&["--seed", "platform"]).await;
    // The seed went in through the API: its custom resources too (their CRDs established).
    let topics = c
        .get(&["-n", "kafka", "kafkatopics.kafka.strimzi.io"])
        .await;
    assert!(
        topics["items"].as_array().is_some_and(|t| !t.is_empty()),
        "{topics:#}"
    );
    let release = include_str!("../kube/VERSION").trim();
    let v: Value =
        serde_json::from_str(&c.kubectl_ok(&["version", "-o", "json"]).await).expect("json");
    assert_eq!(v["serverVersion"]["gitVersion"], release, "{v:#}");
    assert_eq!(c.started["control_plane"], "kubernetes");
    assert!(
        c.started["rss_bytes"].as_u64().unwrap_or(0) > 0,
        "{:#}",
        c.started
    );
    let nodes = c.get(&["nodes"]).await;
    let items = nodes["items"].as_array().expect("items");
    assert_eq!(items.len(), 6);
    let mut zones: Vec<&str> = items
        .iter()
        .filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .filter_map(|n| n["metadata"]["labels"]["topology.kubernetes.io/zone"].as_str())
        .collect();
    zones.sort_unstable();
    zones.dedup();
    assert_eq!(zones, ["eu-west-1a", "eu-west-1b", "eu-west-1c"]);
}

/// Everything the restore must bring back, as plain manifests. The PV is static (a CSI
/// volume handle, as a disk that survived the cluster), and the claim names no volume: the
/// real PV binder has to pick it.
const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: payments}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {mode: live, "feature.flags": "a,b,c"}
---
apiVersion: v1
kind: Secret
metadata: {name: db-creds, namespace: shop}
type: Opaque
stringData: {user: shop, password: s3cret}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27", ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: pg, image: "postgres:17", volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: db-data}}]
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              color: {type: string}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-db-data}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: manual
  csi: {driver: ebs.csi.aws.com, volumeHandle: vol-0abc123def4567890, fsType: ext4}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [eu-west-1a]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: db-data, namespace: shop}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  resources: {requests: {storage: 10Gi}}
"#;

const WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: blue, namespace: shop}
spec: {size: 3, color: blue}
"#;

/// What must be equal before and after: the user-owned part of each object.
async fn state(c: &Bed) -> Value {
    let cm = c.get_json(&["-n", "shop", "configmap", "settings"]).await;
    let secret = c.get_json(&["-n", "shop", "secret", "db-creds"]).await;
    let deploy = c.get_json(&["-n", "shop", "deployment", "web"]).await;
    let sts = c.get_json(&["-n", "shop", "statefulset", "db"]).await;
    let widget = c.get_json(&["-n", "shop", "widget", "blue"]).await;
    let pv = c.get_json(&["pv", "pv-db-data"]).await;
    let pvc = c.get_json(&["-n", "shop", "pvc", "db-data"]).await;
    let ns = c.get_json(&["namespace", "shop"]).await;
    serde_json::json!({
        "ns_labels": ns["metadata"]["labels"]["team"],
        "cm": cm["data"],
        "secret": secret["data"],
        "deploy": [deploy["spec"]["replicas"], deploy["spec"]["template"]["spec"]["containers"][0]["image"]],
        "sts": [sts["spec"]["serviceName"], sts["spec"]["template"]["spec"]["volumes"]],
        "widget": widget["spec"],
        "pv": [pv["spec"]["csi"], pv["spec"]["persistentVolumeReclaimPolicy"], pv["status"]["phase"], pv["spec"]["claimRef"]["name"]],
        "pvc": [pvc["spec"]["volumeName"], pvc["status"]["phase"]],
    })
}

on_both_planes!(
    a_snapshot_teardown_restore_brings_back_plain_objects_and_the_binder_binds_the_claim =
        plain_objects_come_back
);

async fn plain_objects_come_back(plane: Plane) {
    let c = Bed::start(plane, Seed::Empty).await;
    // The static volume's disk exists in the cloud beside the cluster, created through the
    // launcher's admin endpoint the kubeconfig names (the restore's preflight checks it).
    c.coldstart_json(&[
        "sim",
        "cloud",
        "create",
        "disk",
        "vol-0abc123def4567890",
        "--zone",
        "eu-west-1a",
        "--size-gib",
        "10",
        "--data",
        "shop:orders",
    ])
    .await;
    c.apply(MANIFESTS, &[]).await;
    c.wait_for("the CRD is established", async |c| {
        c.kubectl(&["get", "widgets.example.com", "-A"])
            .await
            .status
            .success()
    })
    .await;
    c.apply(WIDGET, &[]).await;
    c.wait_for("the real PV binder binds the claim", async |c| {
        c.get_json(&["-n", "shop", "pvc", "db-data"]).await["status"]["phase"] == "Bound"
    })
    .await;
    c.wait_for("the deployment's pods run on kwok's nodes", async |c| {
        c.get_json(&["-n", "shop", "deployment", "web"]).await["status"]["readyReplicas"] == 2
    })
    .await;
    let before = state(&c).await;
    assert_eq!(before["pvc"][0], "pv-db-data", "{before:#}");
    let uid_before = c.get_json(&["namespace", "kube-system"]).await["metadata"]["uid"].clone();

    let store = c.dir.path().join("store");
    let out = c.coldstart(&store, &["snapshot", "--json"]).await;
    ok(&out, "coldstart snapshot");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_coldstart"))
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["--json", "sim", "teardown"])
        .output()
        .await
        .expect("coldstart runs");
    let torn: Value = serde_json::from_str(&ok(&out, "coldstart sim teardown")).expect("json");
    let uid_after = c.get_json(&["namespace", "kube-system"]).await["metadata"]["uid"].clone();
    assert_eq!(torn["uid"], uid_after);
    assert_ne!(uid_before, uid_after, "a new cluster has a new kube-system");
    let gone = c.kubectl(&["get", "namespace", "shop"]).await;
    assert!(!gone.status.success(), "the new cluster is empty");

    let out = c
        .coldstart(&store, &["restore", "--json", "--verify-timeout", "60"])
        .await;
    let report = ok(&out, "coldstart restore");
    let report: Value = serde_json::from_str(&report).expect("json report");
    c.wait_for("the restored claim is bound again", async |c| {
        c.get_json(&["-n", "shop", "pvc", "db-data"]).await["status"]["phase"] == "Bound"
    })
    .await;
    let after = state(&c).await;
    assert_eq!(before, after, "report: {report:#}");
    assert_eq!(report["volumes_reused"], 1, "{report:#}");
    assert_eq!(report["new_disks"], 0, "{report:#}");
    let pvc = c.get_json(&["-n", "shop", "pvc", "db-data"]).await;
    let pv = c.get_json(&["pv", "pv-db-data"]).await;
    assert_eq!(
        pv["spec"]["claimRef"]["uid"], pvc["metadata"]["uid"],
        "the volume is bound to the new claim, not the old one's uid"
    );
}

/// The Helm chart, rendered for every setting the kustomize overlays have, is accepted by
/// the real API server's validation and defaulting (`kubectl apply --dry-run=server`), not
/// only by our own simulator. ServiceMonitor objects are left out: their CRD belongs to the
/// Prometheus operator, which this cluster does not run.
#[tokio::test(flavor = "multi_thread")]
async fn the_rendered_helm_chart_passes_the_real_api_servers_server_side_dry_run() {
    let c = Bed::start(Plane::Kubernetes, Seed::Empty).await;
    // A server-side dry run of a Namespace creates nothing, so the objects in it need the
    // namespace to exist already.
    c.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: coldstart}\n",
        &[],
    )
    .await;
    for (name, settings) in crate::helm::equivalents() {
        let items: Vec<Value> = crate::helm::render(&settings)
            .into_iter()
            .filter(|o| o["kind"] != "ServiceMonitor")
            .collect();
        assert!(!items.is_empty(), "{name}: the chart rendered nothing");
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        let args = ["apply", "--dry-run=server", "-f", "-"];
        let out = c.kubectl_stdin(&args, Some(&list.to_string())).await;
        ok(&out, &format!("{name}: kubectl apply --dry-run=server"));
    }
}

/// Every workload ready, every claim bound, every load balancer with its address.
async fn platform_settled(c: &Bed) -> bool {
    let workloads = c.get_json(&["deployments,statefulsets", "-A"]).await;
    let ready = workloads["items"].as_array().is_some_and(|ws| {
        ws.iter()
            .all(|w| w["status"]["readyReplicas"] == w["spec"]["replicas"])
    });
    let claims = c.get_json(&["pvc", "-A"]).await;
    let bound = claims["items"]
        .as_array()
        .is_some_and(|cs| cs.iter().all(|pvc| pvc["status"]["phase"] == "Bound"));
    let services = c.get_json(&["services", "-A"]).await;
    let addressed = services["items"].as_array().is_some_and(|ss| {
        ss.iter()
            .filter(|s| s["spec"]["type"] == "LoadBalancer")
            .all(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"].is_string())
    });
    ready && bound && addressed
}

/// Disks (id and data), addresses and buckets of the simulated cloud.
fn inventory(cloud: &Value) -> Value {
    let keys = |what: &str| -> Vec<String> {
        let mut k: Vec<String> = cloud[what]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    let disks: std::collections::BTreeMap<String, Value> = cloud["disks"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(id, d)| (id.clone(), d["data_token"].clone()))
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({"disks": disks, "addresses": keys("addresses"), "buckets": keys("buckets")})
}

on_both_planes!(
    /// The planned stop and start of issue 13: on Kubernetes, its real PV binder,
    /// StatefulSet, attach/detach and GC controllers, with the simulated cloud's controllers
    /// beside them acting through the API; on the embedded server, its own.
    stop_teardown_start_reuses_every_disk_address_and_bucket_and_the_binder_binds_each_claim = stop_teardown_start_reuses_everything
);

async fn stop_teardown_start_reuses_everything(plane: Plane) {
    let c = Bed::start(plane, Seed::Platform).await;
    c.wait_for("the platform seed settles", async |c| {
        platform_settled(c).await
    })
    .await;
    let before = inventory(&c.coldstart_json(&["sim", "cloud"]).await);
    assert_eq!(
        before["disks"].as_object().map(serde_json::Map::len),
        Some(7),
        "{before:#}"
    );

    let store = c.dir.path().join("store");
    let out = c.coldstart(&store, &["stop", "--json"]).await;
    ok(&out, "coldstart stop");
    c.wait_for("every disk is detached", async |c| {
        c.coldstart_json(&["sim", "cloud"]).await["disks"]
            .as_object()
            .is_some_and(|ds| ds.values().all(|d| d["attached_to"].is_null()))
    })
    .await;

    let torn = c.coldstart_json(&["sim", "teardown"]).await;
    assert!(torn["uid"].is_string(), "{torn:#}");
    let after_teardown = c.coldstart_json(&["sim", "cloud"]).await;
    assert_eq!(
        inventory(&after_teardown),
        before,
        "stop made nothing losable: the cluster's deletion took no disk, address or bucket"
    );
    let mark = after_teardown["ledger"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or(0);

    let out = c.coldstart(&store, &["start", "--json"]).await;
    let report: Value = serde_json::from_str(&ok(&out, "coldstart start")).expect("json report");
    let r = &report["restore"];
    assert_eq!(
        [&r["new_disks"], &r["new_ips"], &r["new_buckets"]],
        [0, 0, 0],
        "{report:#}"
    );
    assert_eq!(
        [&r["volumes_reused"], &r["ips_reused"], &r["buckets_reused"]],
        [7, 4, 6],
        "{report:#}"
    );
    c.wait_for("the platform runs again", async |c| {
        platform_settled(c).await
    })
    .await;
    let cloud = c.coldstart_json(&["sim", "cloud"]).await;
    let created: Vec<&Value> = cloud["ledger"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|e| e["seq"].as_u64() > Some(mark) && e["action"] == "created")
                .filter(|e| {
                    ["disk", "ip", "bucket"].contains(&e["resource"].as_str().unwrap_or(""))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        created.is_empty(),
        "the ledger shows new resources: {created:#?}"
    );
    assert_eq!(
        inventory(&cloud),
        before,
        "same disks (data intact), addresses, buckets"
    );
    // The real PV binder bound each claim (it alone sets bind-completed; the simulated
    // cloud only provisions), to the claim's new uid.
    let claims = c.get_json(&["pvc", "-A"]).await;
    let claims = claims["items"].as_array().expect("items");
    assert_eq!(claims.len(), 7);
    for pvc in claims {
        let pv = c
            .get_json(&["pv", pvc["spec"]["volumeName"].as_str().expect("bound")])
            .await;
        assert_eq!(
            pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"], "yes",
            "{pvc:#}"
        );
        assert_eq!(
            pv["spec"]["claimRef"]["uid"], pvc["metadata"]["uid"],
            "{pv:#}"
        );
    }
}

/// A claim without a volume, as an operator racing a restore would create it.
const UNNAMED_CLAIM: &str = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: fresh, namespace: default}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n";
/// An unpinned LoadBalancer Service (a new address).
const UNPINNED_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: fresh, namespace: default}\nspec: {type: LoadBalancer, ports: [{port: 443}]}\n";

on_both_planes!(
    /// The restore gate's ValidatingAdmissionPolicies, evaluated by each server's CEL:
    /// another identity is denied a new disk and a new address; coldstart's own identity
    /// (the one `whoami` reports, exempt) and a claim naming its volume are admitted;
    /// lifting the gate admits everyone.
    the_restore_gate_denies_new_disks_and_addresses_to_everyone_but_coldstart = gate_denies_new_disks_and_addresses
);

async fn gate_denies_new_disks_and_addresses(plane: Plane) {
    let c = Bed::start(plane, Seed::Empty).await;
    let client = c.client().await;
    let me = coldstart::restore::whoami(&client).await.expect("whoami");
    assert_eq!(
        me, "kubernetes-admin",
        "both hand out the same admin identity"
    );
    coldstart::restore::gate::install(&client, &me)
        .await
        .expect("the gate installs");
    let operator = [
        "--as=system:serviceaccount:default:operator",
        "--as-group=system:masters",
    ];
    let create_as = async |who: &[&str], yaml: &str| {
        let mut args = vec!["create", "-f", "-"];
        args.extend_from_slice(who);
        c.kubectl_stdin(&args, Some(yaml)).await
    };
    // A binding takes effect once the API server's policy informer has it.
    c.wait_for(
        "the gate denies an operator's claim without a volume",
        async |_| {
            let out = create_as(&operator, UNNAMED_CLAIM).await;
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                c.kubectl_ok(&["delete", "pvc", "fresh"]).await;
            }
            err.contains("must name its volume (spec.volumeName)")
        },
    )
    .await;
    let out = create_as(&operator, UNPINNED_SERVICE).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("must pin its address"),
        "{err}"
    );
    let named = UNNAMED_CLAIM
        .replace("name: fresh", "name: named")
        .replace("resources:", "volumeName: pv-kept, resources:");
    ok(
        &create_as(&operator, &named).await,
        "a claim naming its volume",
    );
    ok(
        &create_as(&[], UNNAMED_CLAIM).await,
        "coldstart's own claim",
    );
    // coldstart proves the gate enforced with probes it sends itself: a probe is judged
    // even from the exempt identity (a dry run, nothing is created).
    let probe = UNPINNED_SERVICE.replace(
        "namespace: default}",
        "namespace: default, annotations: {coldstart.dev/gate-probe: 'true'}}",
    );
    let out = c
        .kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], Some(&probe))
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("must pin its address"),
        "a probe is denied even to coldstart: {err}"
    );

    let out = c
        .coldstart(&c.dir.path().join("store"), &["gate", "off"])
        .await;
    ok(&out, "coldstart gate off");
    c.wait_for("the lifted gate admits the operator", async |_| {
        create_as(&operator, UNPINNED_SERVICE)
            .await
            .status
            .success()
    })
    .await;
}

/// The user-owned part of every object `kubectl get` lists for `what` in `ns`, by name:
/// metadata's labels and annotations (kubectl's own last-applied left out) and everything
/// but `status`.
async fn user_owned(c: &Bed, ns: &str, what: &str) -> std::collections::BTreeMap<String, Value> {
    let list = c.get_json(&["-n", ns, what]).await;
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| {
            let mut o = o.clone();
            let name = format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            );
            if let Some(a) = o["metadata"]["annotations"].as_object_mut() {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
                a.remove("deployment.kubernetes.io/revision");
            }
            let kept = serde_json::json!({
                "labels": o["metadata"]["labels"],
                "annotations": o["metadata"]["annotations"],
                "spec": o["spec"],
                "data": o["data"],
                "rules": o["rules"],
                "subjects": o["subjects"],
                "roleRef": o["roleRef"],
            });
            (name, kept)
        })
        .collect()
}

on_both_planes!(
    /// The corpus's Strimzi group (cluster operator install with its ten structural CRDs, a
    /// Kafka cluster and node pools with JBOD storage) installed as Strimzi's docs install
    /// it, then snapshot, the cluster deleted, restore: every object comes back as it was
    /// under each server's validation, defaulting and pruning of unknown fields.
    a_snapshot_teardown_restore_of_the_corpus_strimzi_install_brings_back_every_object = corpus_strimzi_comes_back
);

async fn corpus_strimzi_comes_back(plane: Plane) {
    let Some(root) = crate::realworld::corpus() else {
        return;
    };
    let c = Bed::start(plane, Seed::Empty).await;
    let base = root.join("00-base");
    for f in crate::realworld::yaml_files(&base) {
        ok(
            &c.kubectl(&["apply", "-f", &f.display().to_string()]).await,
            "apply 00-base",
        );
    }
    // A manifest, not `kubectl create namespace`: the embedded server speaks no protobuf.
    c.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: kafka}\n",
        &[],
    )
    .await;
    let files = crate::realworld::yaml_files(&root.join("01-strimzi"));
    let (crds, rest): (Vec<_>, Vec<_>) =
        files.iter().partition(|p| crate::realworld::is_crd_file(p));
    let create = async |f: &std::path::PathBuf| {
        let path = f.display().to_string();
        ok(
            &c.kubectl(&["create", "-n", "kafka", "-f", &path]).await,
            &format!("kubectl create -f {path}"),
        );
    };
    for f in &crds {
        create(f).await;
    }
    c.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd",
        "--all",
    ])
    .await;
    for f in &rest {
        create(f).await;
    }
    const WHAT: &str = "kafkas.kafka.strimzi.io,kafkanodepools.kafka.strimzi.io,deployments,configmaps,serviceaccounts,rolebindings";
    let before = user_owned(&c, "kafka", WHAT).await;
    assert!(
        before.keys().any(|k| k == "Kafka/my-cluster") && before.len() >= 8,
        "{:#?}",
        before.keys()
    );
    let store = c.dir.path().join("store");
    ok(
        &c.coldstart(&store, &["snapshot", "--json"]).await,
        "coldstart snapshot",
    );
    c.coldstart_json(&["sim", "teardown"]).await;
    let report = ok(
        &c.coldstart(&store, &["restore", "--json", "--verify-timeout", "60"])
            .await,
        "coldstart restore",
    );
    let after = user_owned(&c, "kafka", WHAT).await;
    for (k, v) in &before {
        assert_eq!(
            after.get(k),
            Some(v),
            "{k} differs after the restore; report: {report}"
        );
    }
}

/// `kubeconfig` as the deployed ServiceAccount sees the cluster: the admin's credentials
/// impersonating `system:serviceaccount:coldstart:coldstart` and its groups, so every
/// request is authorized by kube-apiserver's RBAC against deploy/'s roles alone.
fn as_service_account(kubeconfig: &std::path::Path, out: &std::path::Path) {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    for user in config["users"].as_sequence_mut().expect("users").iter_mut() {
        let u = &mut user["user"];
        u["as"] = "system:serviceaccount:coldstart:coldstart".into();
        u["as-groups"] = serde_yaml::to_value([
            "system:serviceaccounts",
            "system:serviceaccounts:coldstart",
            "system:authenticated",
        ])
        .expect("groups");
    }
    std::fs::write(out, serde_yaml::to_string(&config).expect("yaml")).expect("write");
}

/// Kubernetes only (the embedded server authorizes every request): `coldstart stop` and
/// `start` run with nothing but the permissions deploy/base grants its ServiceAccount, on
/// a platform whose operators bring their own RBAC (roles with `delete`, which coldstart
/// itself does not hold). Restoring those roles is what RBAC's escalation check refuses
/// unless the restorer may `escalate` and `bind`.
#[tokio::test(flavor = "multi_thread")]
async fn the_deployed_service_account_may_stop_and_start_the_platform_under_real_rbac() {
    let c = Bed::start(Plane::Kubernetes, Seed::Platform).await;
    c.wait_for("the platform seed settles", async |c| {
        platform_settled(c).await
    })
    .await;
    c.apply(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kafka-operator}
rules:
  - apiGroups: ["", "apps"]
    resources: ["pods", "statefulsets", "persistentvolumeclaims"]
    verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kafka-operator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kafka-operator}
subjects: [{kind: ServiceAccount, name: default, namespace: kafka}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: ingest, namespace: tenant-a}
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["delete", "deletecollection"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ingest, namespace: tenant-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: ingest}
subjects: [{kind: ServiceAccount, name: default, namespace: tenant-a}]
"#,
        &[],
    )
    .await;
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/base");
    c.kubectl_ok(&["apply", "-k", base]).await;
    let sa = c.dir.path().join("as-coldstart.yaml");
    as_service_account(&c.kubeconfig, &sa);
    let store = format!("file://{}", c.dir.path().join("store").display());
    let run = async |args: &[&str]| {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_coldstart"))
            .arg("--kubeconfig")
            .arg(&sa)
            .args(["--store", &store])
            .args(args)
            .env("COLDSTART_ENCRYPTION_KEY", crate::helpers::CLI_KEY)
            .output()
            .await
            .expect("coldstart runs");
        ok(
            &out,
            &format!("coldstart {} as the ServiceAccount", args.join(" ")),
        )
    };
    run(&["stop", "--json"]).await;
    c.teardown().await;
    // bootstrap-first: coldstart is deployed into the new cluster before it restores it.
    c.kubectl_ok(&["apply", "-k", base]).await;
    let report: Value = serde_json::from_str(&run(&["start", "--json"]).await).expect("json");
    let r = &report["restore"];
    assert_eq!(r["succeeded"], true, "{report:#}");
    assert_eq!(
        [&r["new_disks"], &r["new_ips"], &r["new_buckets"]],
        [0, 0, 0],
        "{report:#}"
    );
    // The operators' own RBAC came back.
    for object in [
        "clusterrole/kafka-operator",
        "clusterrolebinding/kafka-operator",
        "role/ingest",
        "rolebinding/ingest",
    ] {
        let ns = if object.starts_with("cluster") {
            "default"
        } else {
            "tenant-a"
        };
        c.kubectl_ok(&["get", object, "-n", ns, "-o", "name"]).await;
    }
    c.stop().await;
}
