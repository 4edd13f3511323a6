//! deploy/helm/coldstart: the chart lints and renders with the real helm (built from its Go
//! module by deploy/tools/build-tool.sh), its schema refuses bad values, and for the same
//! settings it renders the same objects as the kustomize base and each overlay, compared
//! object by object after parsing (not as text).
//!
//! Server-side validation against a real API server (`kubectl apply --dry-run=server -f` of
//! `helm template`'s output) belongs to the real control plane harness (issue 13): render
//! with `render(&settings)` below and apply it there. Here the rendered chart is applied to
//! the simulated cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::helpers::TestCluster;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The helm binary: $COLDSTART_HELM (tests/run sets it), else built once and cached by
/// deploy/tools/build-tool.sh. Never skipped: a missing helm fails the test.
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(path) = std::env::var_os("COLDSTART_HELM") {
            return PathBuf::from(path);
        }
        let out = Command::new("bash")
            .arg(repo("deploy/tools/build-tool.sh"))
            .arg("helm")
            .output()
            .expect("bash runs deploy/tools/build-tool.sh");
        assert!(
            out.status.success(),
            "building helm failed (Go and the Go module proxy are needed): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            serde_yaml::from_value::<Value>(serde_yaml::Value::deserialize(doc).expect("yaml"))
                .expect("json")
        })
        // helm leaves empty documents where a template renders nothing.
        .filter(|v| !v.is_null())
        .collect()
}

fn values_file(settings: &Value) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    std::fs::write(
        file.path(),
        serde_yaml::to_string(settings).expect("values as yaml"),
    )
    .expect("write values");
    file
}

/// Runs helm with the chart and `settings` as a values file; returns (success, stdout, stderr).
fn helm_with(cmd: &[&str], settings: &Value) -> (bool, String, String) {
    let values = values_file(settings);
    let chart = repo("deploy/helm/coldstart");
    let out = Command::new(helm())
        .args(cmd)
        .arg(chart)
        .arg("--values")
        .arg(values.path())
        .output()
        .expect("helm runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `helm template coldstart deploy/helm/coldstart --namespace coldstart -f settings`.
pub fn render(settings: &Value) -> Vec<Value> {
    let (ok, stdout, stderr) = helm_with(
        &["template", "coldstart", "--namespace", "coldstart"],
        settings,
    );
    assert!(ok, "helm template failed for {settings}:\n{stderr}");
    docs(&stdout)
}

fn kustomize(dir: &str) -> Vec<Value> {
    let path = repo("deploy").join(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(path)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    docs(&String::from_utf8_lossy(&out.stdout))
}

/// Helm's own bookkeeping, the only differences the two renderings are allowed: Helm's
/// labels, the annotation that keeps the Namespace on uninstall, the config checksum that
/// rolls the pods (kustomize rolls them with the ConfigMap's hashed name instead).
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];

fn remove_keys(map: &mut Value, keys: &[&str]) {
    if let Some(m) = map.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
}

/// Removes `key` when it holds nothing (indexing with `[]` inserts a null for a missing key).
fn drop_if_empty(parent: &mut Value, key: &str) {
    if (parent[key].is_null() || parent[key].as_object().is_some_and(|m| m.is_empty()))
        && let Some(p) = parent.as_object_mut()
    {
        p.remove(key);
    }
}

/// kustomize's generated ConfigMap name without its content hash: coldstart-config-abc123xyz9.
fn unhashed(name: &str) -> String {
    match name.rsplit_once('-') {
        Some((stem, hash)) if stem.ends_with("-config") && hash.len() == 10 => stem.to_owned(),
        _ => name.to_owned(),
    }
}

fn normalize(mut obj: Value) -> Value {
    remove_keys(&mut obj["metadata"]["labels"], &HELM_LABELS);
    remove_keys(
        &mut obj["metadata"]["annotations"],
        &["helm.sh/resource-policy"],
    );
    drop_if_empty(&mut obj["metadata"], "annotations");
    match obj["kind"].as_str() {
        Some("ConfigMap") => {
            let name = unhashed(obj["metadata"]["name"].as_str().unwrap_or_default());
            obj["metadata"]["name"] = json!(name);
            // The file's text differs (comments, flow style); its content must not.
            for (_, v) in obj["data"].as_object_mut().into_iter().flatten() {
                let parsed: serde_yaml::Value =
                    serde_yaml::from_str(v.as_str().unwrap_or_default()).expect("config yaml");
                *v = serde_json::to_value(parsed).expect("config as json");
            }
        }
        Some("Deployment") => {
            let template = &mut obj["spec"]["template"];
            remove_keys(
                &mut template["metadata"]["annotations"],
                &["checksum/config"],
            );
            for vol in template["spec"]["volumes"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if let Some(name) = vol["configMap"]["name"].as_str() {
                    vol["configMap"]["name"] = json!(unhashed(name));
                }
            }
        }
        _ => {}
    }
    obj
}

fn by_identity(objs: Vec<Value>) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for obj in objs {
        let obj = normalize(obj);
        let key = format!(
            "{} {} {}/{}",
            obj["apiVersion"].as_str().unwrap_or_default(),
            obj["kind"].as_str().unwrap_or_default(),
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            obj["metadata"]["name"].as_str().unwrap_or_default()
        );
        let previous = map.insert(key.clone(), obj);
        assert!(previous.is_none(), "{key} is rendered twice");
    }
    map
}

fn assert_same_objects(what: &str, kustomize: Vec<Value>, helm: Vec<Value>) {
    let k = by_identity(kustomize);
    let h = by_identity(helm);
    let only_k: Vec<&String> = k.keys().filter(|key| !h.contains_key(*key)).collect();
    let only_h: Vec<&String> = h.keys().filter(|key| !k.contains_key(*key)).collect();
    assert!(
        only_k.is_empty() && only_h.is_empty(),
        "{what}: objects differ\n only in kustomize: {only_k:?}\n only in the chart: {only_h:?}"
    );
    for (key, kobj) in &k {
        let hobj = &h[key];
        assert!(
            kobj == hobj,
            "{what}: {key} differs\n--- kustomize\n{}\n--- chart\n{}",
            serde_json::to_string_pretty(kobj).unwrap_or_default(),
            serde_json::to_string_pretty(hobj).unwrap_or_default()
        );
    }
}

fn chart_values() -> Value {
    let text = std::fs::read_to_string(repo("deploy/helm/coldstart/values.yaml")).expect("values");
    serde_yaml::from_str(&text).expect("values.yaml parses")
}

/// Values that make the chart's config equal `want`: Helm merges user values into the
/// defaults, so a default key `want` lacks is set to null (Helm's way to delete it).
fn config_values(default: &Value, want: &Value) -> Value {
    match (default, want) {
        (Value::Object(d), Value::Object(w)) => {
            let mut out = serde_json::Map::new();
            for (k, dv) in d {
                out.insert(
                    k.clone(),
                    w.get(k).map_or(Value::Null, |wv| config_values(dv, wv)),
                );
            }
            for (k, wv) in w {
                if !d.contains_key(k) {
                    out.insert(k.clone(), wv.clone());
                }
            }
            Value::Object(out)
        }
        _ => want.clone(),
    }
}

fn overlay_config(overlay: &str) -> Value {
    let text = std::fs::read_to_string(repo("deploy/overlays").join(overlay).join("config.yaml"))
        .expect("overlay config");
    let want: Value = serde_yaml::from_str(&text).expect("overlay config parses");
    config_values(&chart_values()["config"], &want)
}

/// Each kustomize directory and the chart settings that mean the same thing.
pub(crate) fn equivalents() -> Vec<(&'static str, Value)> {
    vec![
        ("base", json!({ "namespace": { "create": true } })),
        (
            "overlays/aws",
            json!({
                "namespace": { "create": true },
                "cloud": { "provider": "aws", "aws": { "roleArn": "arn:aws:iam::111122223333:role/coldstart" } },
                "serviceMonitor": { "enabled": true },
                "config": overlay_config("aws"),
            }),
        ),
        (
            "overlays/azure",
            json!({
                "namespace": { "create": true },
                "cloud": { "provider": "azure", "azure": { "clientId": "00000000-0000-0000-0000-000000000000" } },
                "config": overlay_config("azure"),
            }),
        ),
        (
            "overlays/gcp",
            json!({
                "namespace": { "create": true },
                "cloud": { "provider": "gcp", "gcp": { "serviceAccount": "coldstart@PROJECT.iam.gserviceaccount.com" } },
                "config": overlay_config("gcp"),
            }),
        ),
        (
            "overlays/bootstrap-first",
            json!({ "namespace": { "create": true }, "bootstrapFirst": { "enabled": true } }),
        ),
    ]
}

#[test]
fn the_chart_renders_the_same_objects_as_kustomize_for_the_base_and_every_overlay() {
    for (dir, settings) in equivalents() {
        assert_same_objects(dir, kustomize(dir), render(&settings));
    }
}

#[test]
fn the_comparison_notices_a_chart_setting_kustomize_does_not_have() {
    // Guards the comparison itself: a real difference (a third replica) must be reported.
    let result = std::panic::catch_unwind(|| {
        assert_same_objects(
            "base",
            kustomize("base"),
            render(&json!({ "namespace": { "create": true }, "replicaCount": 3 })),
        )
    });
    let err = result.expect_err("a different replica count is a difference");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("Deployment coldstart/coldstart differs"),
        "{msg}"
    );
}

#[test]
fn helm_lint_strict_passes_for_the_defaults_every_cloud_and_bootstrap_first() {
    let mut cases = vec![json!({})];
    cases.extend(equivalents().into_iter().map(|(_, v)| v));
    for settings in cases {
        let (ok, stdout, stderr) = helm_with(&["lint", "--strict"], &settings);
        assert!(ok, "helm lint {settings}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
    }
}

#[test]
fn the_values_schema_refuses_settings_that_would_deploy_a_broken_coldstart() {
    for (bad, why) in [
        (
            json!({ "cloud": { "provider": "aws" } }),
            "aws without an IAM role",
        ),
        (
            json!({ "cloud": { "provider": "gcp", "gcp": { "serviceAccount": "me@example.com" } } }),
            "not a Google service account",
        ),
        (
            json!({ "cloud": { "provider": "openstack" } }),
            "unknown cloud",
        ),
        (
            json!({ "image": { "digest": "latest" } }),
            "a digest that is not one",
        ),
        (json!({ "replicaCount": 0 }), "no replica"),
        (json!({ "replicas": 3 }), "a misspelt key"),
        (
            json!({ "secrets": { "existingSecret": "" } }),
            "no key Secret",
        ),
        (
            json!({ "config": { "store": { "url": "bucket" } } }),
            "a store URL without a scheme",
        ),
    ] {
        let (ok, _, stderr) = helm_with(&["template", "coldstart"], &bad);
        assert!(!ok, "{why}: {bad} was accepted");
        assert!(
            stderr.contains("schema"),
            "{why}: refused, but not by the schema:\n{stderr}"
        );
    }
}

#[test]
fn the_chart_uses_the_image_the_build_produces_and_a_digest_pins_it() {
    let image = |objs: &[Value]| -> String {
        objs.iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .expect("image")
            .to_owned()
    };
    // deploy/image/build.sh tags ghcr.io/coldstart-dev/coldstart:<Cargo.toml version>.
    let built = format!(
        "ghcr.io/coldstart-dev/coldstart:{}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(image(&render(&json!({}))), built);
    assert_eq!(image(&kustomize("base")), built);
    let digest = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(
        image(&render(&json!({ "image": { "digest": digest } }))),
        format!("{built}@{digest}")
    );
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo("deploy/helm/coldstart/Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn every_config_the_chart_renders_is_accepted_by_coldstart_serve() {
    for (dir, settings) in equivalents() {
        let objs = render(&settings);
        let cm = objs
            .iter()
            .find(|o| o["kind"] == "ConfigMap")
            .unwrap_or_else(|| panic!("{dir}: a ConfigMap"));
        let yaml = cm["data"]["config.yaml"].as_str().expect("config.yaml");
        coldstart::config::Config::from_yaml(yaml)
            .and_then(|c| c.validate())
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
    }
}

#[test]
fn uninstall_cannot_delete_the_key_or_the_namespace_that_holds_it() {
    for (dir, settings) in equivalents() {
        let objs = render(&settings);
        // The key comes from an existing Secret: a Secret the chart owned would be deleted
        // by `helm uninstall`, and with it every snapshot's readability.
        assert!(
            !objs.iter().any(|o| o["kind"] == "Secret"),
            "{dir}: the chart renders a Secret"
        );
        let ns = objs
            .iter()
            .find(|o| o["kind"] == "Namespace")
            .unwrap_or_else(|| panic!("{dir}: namespace.create renders the Namespace"));
        assert_eq!(
            ns["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{dir}"
        );
        let d = objs
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment");
        let secret = d["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "secrets")
            .expect("the secrets volume");
        assert_eq!(secret["secret"]["secretName"], "coldstart-secrets");
    }
    // By default the chart does not own the namespace at all (helm --create-namespace).
    assert!(!render(&json!({})).iter().any(|o| o["kind"] == "Namespace"));
}

#[tokio::test]
async fn the_rendered_chart_applies_to_the_simulated_cluster_twice() {
    let objs = render(&json!({ "namespace": { "create": true } }));
    let file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    let text: String = objs
        .iter()
        .map(|o| format!("---\n{}", serde_yaml::to_string(o).expect("yaml")))
        .collect();
    std::fs::write(file.path(), text).expect("write rendered chart");
    let path = file.path().display().to_string();
    let cluster = TestCluster::start().await;
    cluster.kubectl_ok(&["apply", "-f", &path]).await;
    let out = cluster
        .kubectl_ok(&[
            "get",
            "deployment,service,pdb,serviceaccount,configmap,role,rolebinding",
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
        "configmap/coldstart-config",
        "role.rbac.authorization.k8s.io/coldstart-leader-election",
    ] {
        assert!(out.contains(want), "{want} missing in:\n{out}");
    }
    // GitOps tools re-apply all the time: a second apply succeeds and changes nothing.
    cluster.kubectl_ok(&["apply", "-f", &path]).await;
    cluster.stop().await;
}
