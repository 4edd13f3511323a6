//! deploy/: the kustomize base, overlays and components render with kubectl's built-in
//! kustomize, apply to the simulated cluster, grant what the commands need, and carry a
//! configuration `coldstart serve` accepts.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::helpers::{TestCluster, assert_ok};

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn kustomize(dir: &Path) -> Vec<Value> {
    let out = std::process::Command::new("kubectl")
        .args(["kustomize", &dir.display().to_string()])
        .output()
        .expect("kubectl runs");
    assert_ok(&out, &["kustomize", &dir.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            serde_yaml::from_value::<Value>(serde_yaml::Value::deserialize(doc).expect("yaml"))
                .expect("json")
        })
        .collect()
}

use serde::Deserialize;

fn kinds(objs: &[Value]) -> Vec<String> {
    objs.iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} is rendered"))
}

#[test]
fn every_overlay_renders_with_kubectl_kustomize() {
    for overlay in ["aws", "azure", "gcp", "bootstrap-first"] {
        let objs = kustomize(&deploy(&format!("overlays/{overlay}")));
        let k = kinds(&objs);
        for want in [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "Role",
            "ConfigMap",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
        ] {
            assert!(k.iter().any(|x| x == want), "{overlay} lacks a {want}");
        }
        let d = find(&objs, "Deployment", "coldstart");
        assert_eq!(d["metadata"]["namespace"], "coldstart");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["readinessProbe"]["httpGet"]["path"], "/readyz",
            "{overlay}"
        );
        assert_eq!(
            c["livenessProbe"]["httpGet"]["path"], "/healthz",
            "{overlay}"
        );
        assert!(
            c["resources"]["limits"]["memory"].is_string(),
            "{overlay} sets limits"
        );
    }
    let aws = kustomize(&deploy("overlays/aws"));
    assert!(
        kinds(&aws).contains(&"ServiceMonitor".to_owned()),
        "aws uses the ServiceMonitor component"
    );
    let boot = kustomize(&deploy("overlays/bootstrap-first"));
    let d = find(&boot, "Deployment", "coldstart");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["template"]["spec"]["priorityClassName"],
        "coldstart-bootstrap"
    );
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--auto-restore=true"), "{args}");
}

#[test]
fn every_rendered_config_is_accepted_by_coldstart_serve() {
    for dir in [
        "base",
        "overlays/aws",
        "overlays/azure",
        "overlays/gcp",
        "overlays/bootstrap-first",
    ] {
        let objs = kustomize(&deploy(dir));
        let cm = objs
            .iter()
            .find(|o| o["kind"] == "ConfigMap")
            .unwrap_or_else(|| panic!("{dir} has a ConfigMap"));
        let yaml = cm["data"]["config.yaml"].as_str().expect("config.yaml key");
        coldstart::config::Config::from_yaml(yaml)
            .and_then(|c| c.validate())
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
    }
}

fn allows(roles: &[&Value], group: &str, resource: &str, verb: &str) -> bool {
    roles.iter().any(|r| {
        r["rules"].as_array().into_iter().flatten().any(|rule| {
            let has = |key: &str, want: &str| {
                rule[key]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == want || v == "*"))
            };
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    })
}

#[test]
fn rbac_grants_each_command_what_it_needs_and_no_delete_on_workloads() {
    let objs = kustomize(&deploy("base"));
    let cluster_roles: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "ClusterRole").collect();
    let roles: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "Role").collect();
    // snapshot: list and watch everything.
    for (g, r) in [
        ("", "secrets"),
        ("apps", "statefulsets"),
        ("objectstorage.k8s.io", "bucketclaims"),
        ("", "persistentvolumes"),
    ] {
        assert!(allows(&cluster_roles, g, r, "list"), "list {g}/{r}");
        assert!(allows(&cluster_roles, g, r, "watch"), "watch {g}/{r}");
    }
    // restore / start / stop: create and patch.
    for (g, r) in [
        ("", "persistentvolumeclaims"),
        ("", "services"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
    ] {
        assert!(allows(&cluster_roles, g, r, "create"), "create {g}/{r}");
        assert!(allows(&cluster_roles, g, r, "patch"), "patch {g}/{r}");
    }
    assert!(allows(
        &cluster_roles,
        "apps",
        "statefulsets/scale",
        "patch"
    ));
    // The gate.
    for r in [
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
    ] {
        for v in ["create", "delete"] {
            assert!(
                allows(&cluster_roles, "admissionregistration.k8s.io", r, v),
                "{v} {r}"
            );
        }
    }
    assert!(allows(
        &cluster_roles,
        "authentication.k8s.io",
        "selfsubjectreviews",
        "create"
    ));
    // Restoring the cluster's own roles and bindings passes RBAC's escalation check (proven
    // against kube-apiserver in real_cp.rs).
    for r in ["clusterroles", "roles"] {
        for v in ["escalate", "bind"] {
            assert!(
                allows(&cluster_roles, "rbac.authorization.k8s.io", r, v),
                "{v} {r}"
            );
        }
    }
    // Leases only in its own namespace.
    assert!(allows(&roles, "coordination.k8s.io", "leases", "update"));
    assert!(
        !allows(&cluster_roles, "coordination.k8s.io", "leases", "update")
            || allows(&cluster_roles, "*", "*", "update")
    );
    // Never delete workloads or volumes.
    for (g, r) in [
        ("", "persistentvolumes"),
        ("", "persistentvolumeclaims"),
        ("apps", "statefulsets"),
        ("", "namespaces"),
    ] {
        assert!(
            !allows(&cluster_roles, g, r, "delete"),
            "must not delete {g}/{r}"
        );
    }
}

#[tokio::test]
async fn the_base_applies_to_the_simulated_cluster_with_kubectl_apply_k() {
    let cluster = TestCluster::start().await;
    let base = deploy("base").display().to_string();
    cluster.kubectl_ok(&["apply", "-k", &base]).await;
    let out = cluster
        .kubectl_ok(&[
            "get",
            "deployment,service,pdb,serviceaccount,configmap",
            "-n",
            "coldstart",
            "-o",
            "name",
        ])
        .await;
    for want in [
        "deployment.apps/coldstart",
        "service/coldstart",
        "poddisruptionbudget.policy/coldstart",
        "serviceaccount/coldstart",
        "configmap/coldstart-config-",
    ] {
        assert!(out.contains(want), "{want} missing in:\n{out}");
    }
    let roles = cluster
        .kubectl_ok(&["get", "clusterroles", "-o", "name"])
        .await;
    assert!(roles.contains("clusterrole.rbac.authorization.k8s.io/coldstart-gate"));
    // Applying again changes nothing and succeeds (GitOps re-applies all the time).
    cluster.kubectl_ok(&["apply", "-k", &base]).await;
    cluster.stop().await;
}

#[tokio::test]
async fn an_overlay_with_the_servicemonitor_applies_once_its_crd_exists() {
    let cluster = TestCluster::start().await;
    cluster
        .apply(
            r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: servicemonitors.monitoring.coreos.com }
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: { kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor, listKind: ServiceMonitorList }
  versions:
    - name: v1
      served: true
      storage: true
      schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } }
"#,
            &[],
        )
        .await;
    let aws = deploy("overlays/aws").display().to_string();
    let applied = cluster.kubectl_ok(&["apply", "-k", &aws]).await;
    assert!(applied.contains("servicemonitor"), "{applied}");
    let out = cluster
        .kubectl_ok(&["get", "servicemonitors", "-n", "coldstart", "-o", "name"])
        .await;
    assert!(out.contains("coldstart"), "{out}");
    let boot = deploy("overlays/bootstrap-first").display().to_string();
    cluster.kubectl_ok(&["apply", "-k", &boot]).await;
    let pc = cluster
        .kubectl_ok(&["get", "priorityclass", "coldstart-bootstrap", "-o", "name"])
        .await;
    assert!(pc.contains("coldstart-bootstrap"));
    cluster.stop().await;
}

#[test]
fn the_gitops_examples_order_coldstart_before_operators() {
    let read = |p: &str| -> Vec<Value> {
        let text = std::fs::read_to_string(deploy(p)).expect("example");
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| {
                serde_yaml::from_value::<Value>(serde_yaml::Value::deserialize(d).expect("yaml"))
                    .expect("json")
            })
            .collect()
    };
    let flux = read("examples/flux/kustomizations.yaml");
    let operators = find(&flux, "Kustomization", "operators");
    assert_eq!(operators["spec"]["dependsOn"][0]["name"], "coldstart");
    let cs = find(&flux, "Kustomization", "coldstart");
    assert_eq!(cs["spec"]["wait"], true);
    assert_eq!(cs["spec"]["healthChecks"][0]["kind"], "Deployment");
    let argo = read("examples/argocd/applications.yaml");
    let wave = |name: &str| -> i64 {
        find(&argo, "Application", name)["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("sync wave")
    };
    assert!(wave("coldstart") < wave("operators"));
    assert!(wave("operators") < wave("apps"));
}
