//! Fidelity: the real kubectl on this machine, pointed at the simulated cluster, does what
//! it does against a real API server.

use crate::helpers::TestCluster;
use coldstart_sim::seed::Seed;

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team-a}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27", ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: team-a}
data: {a: "1"}
"#;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: bucketclaims.objectstorage.k8s.io
  annotations: {api-approved.kubernetes.io: "https://github.com/kubernetes-sigs/container-object-storage-interface-api/pull/2"}
spec:
  group: objectstorage.k8s.io
  scope: Namespaced
  names: {plural: bucketclaims, singular: bucketclaim, kind: BucketClaim, shortNames: [bc]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Bucket, jsonPath: .spec.existingBucketName, type: string}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_api_resources_lists_the_builtin_types() {
    let c = TestCluster::start().await;
    let out = c.kubectl_ok(&["api-resources", "-o", "name"]).await;
    for r in [
        "persistentvolumes",
        "persistentvolumeclaims",
        "services",
        "statefulsets.apps",
        "customresourcedefinitions.apiextensions.k8s.io",
        "validatingadmissionpolicies.admissionregistration.k8s.io",
        "leases.coordination.k8s.io",
    ] {
        assert!(out.lines().any(|l| l == r), "{r} missing from:\n{out}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_client_side_apply_creates_then_configures_then_is_unchanged() {
    let c = TestCluster::start().await;
    let first = c.apply(APP, &[]).await;
    assert!(first.contains("deployment.apps/web created"), "{first}");
    let again = c.apply(APP, &[]).await;
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");
    let changed = c
        .apply(
            &APP.replace("nginx:1.27", "nginx:1.28")
                .replace("a: \"1\"", "a: \"2\""),
            &[],
        )
        .await;
    assert!(
        changed.contains("deployment.apps/web configured"),
        "{changed}"
    );
    let image = c
        .kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "nginx:1.28");
    let data = c
        .kubectl_ok(&[
            "get",
            "cm",
            "cfg",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.a}",
        ])
        .await;
    assert_eq!(data, "2");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_server_side_apply_creates_and_updates() {
    let c = TestCluster::start().await;
    let out = c.apply(APP, &["--server-side"]).await;
    assert!(out.contains("serverside-applied"), "{out}");
    let out = c
        .apply(
            &APP.replace("replicas: 2", "replicas: 4"),
            &["--server-side"],
        )
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let replicas = c
        .kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "4");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_patch_scale_and_delete_work() {
    let c = TestCluster::start().await;
    c.apply(APP, &[]).await;
    c.kubectl_ok(&[
        "patch",
        "cm",
        "cfg",
        "-n",
        "team-a",
        "-p",
        r#"{"data":{"b":"3"}}"#,
    ])
    .await;
    c.kubectl_ok(&[
        "patch",
        "cm",
        "cfg",
        "-n",
        "team-a",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/c","value":"4"}]"#,
    ])
    .await;
    let data = c
        .kubectl_ok(&["get", "cm", "cfg", "-n", "team-a", "-o", "jsonpath={.data}"])
        .await;
    assert_eq!(data, r#"{"a":"1","b":"3","c":"4"}"#);
    c.kubectl_ok(&["scale", "deploy", "web", "-n", "team-a", "--replicas=5"])
        .await;
    let replicas = c
        .kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "5");
    c.kubectl_ok(&["delete", "cm", "cfg", "-n", "team-a"]).await;
    let missing = c.kubectl(&["get", "cm", "cfg", "-n", "team-a"]).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_namespace_with_kubectl_deletes_everything_in_it() {
    let c = TestCluster::start().await;
    c.apply(APP, &[]).await;
    c.kubectl_ok(&["delete", "ns", "team-a"]).await;
    let left = c
        .kubectl_ok(&["get", "deploy,cm", "-A", "-o", "name"])
        .await;
    assert!(!left.contains("team-a") && !left.contains("web"), "{left}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crd_applied_with_kubectl_serves_its_custom_resources() {
    let c = TestCluster::start().await;
    c.apply(CRD, &[]).await;
    c.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "crd/bucketclaims.objectstorage.k8s.io",
    ])
    .await;
    c.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: t}\n---\napiVersion: objectstorage.k8s.io/v1alpha1\nkind: BucketClaim\nmetadata: {name: data, namespace: t}\nspec: {existingBucketName: tenant-a-data}\n",
        &[],
    )
    .await;
    let table = c.kubectl_ok(&["get", "bc", "-A"]).await;
    assert!(
        table.contains("tenant-a-data"),
        "printer column shown:\n{table}"
    );
    c.kubectl_ok(&["delete", "crd", "bucketclaims.objectstorage.k8s.io"])
        .await;
    let after = c
        .kubectl(&["get", "bucketclaims.objectstorage.k8s.io", "-A"])
        .await;
    assert!(!after.status.success(), "the resource is no longer served");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_all_namespaces_json_pages_through_every_object() {
    let c = TestCluster::start_with(Seed::Scale(3000)).await;
    let out = c
        .kubectl_ok(&["get", "-A", "-o", "json", "--chunk-size=500", "-l", "app.kubernetes.io/part-of=scale-seed", "configmaps,secrets,services,deployments.apps,serviceaccounts,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,networkpolicies.networking.k8s.io,widgets.example.com"])
        .await;
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let seeded = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| {
            i["metadata"]["namespace"]
                .as_str()
                .is_some_and(|n| n.starts_with("tenant-"))
        })
        .count();
    assert_eq!(seeded, 3000);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_watch_streams_changes() {
    let c = TestCluster::start().await;
    c.apply(APP, &[]).await;
    let watcher = {
        let args: Vec<String> = vec![
            format!("--kubeconfig={}", c.kubeconfig.display()),
            "get".into(),
            "cm".into(),
            "-n".into(),
            "team-a".into(),
            "-w".into(),
            "--request-timeout=4s".into(),
            "-o".into(),
            "name".into(),
        ];
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("kubectl")
                .args(&args)
                .output()
                .expect("kubectl")
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    c.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late, namespace: team-a}\n",
        &[],
    )
    .await;
    let out = watcher.await.expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("configmap/cfg"),
        "initial state listed: {text}"
    );
    assert!(
        text.contains("configmap/late"),
        "later create streamed: {text}"
    );
    c.stop().await;
}
