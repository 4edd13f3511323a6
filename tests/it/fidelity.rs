//! Rules kube-apiserver, kube-controller-manager, kube-scheduler and the CSI
//! external-provisioner enforce, proven on both planes: each scenario takes a [`Plane`] and
//! runs once on the embedded server and once on the real control plane, asserting the same
//! outcome, word for word where the API server words a refusal. A rule the embedded server
//! does not keep would let a test pass there that fails on a real cluster.

use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

use coldstart_sim::seed::Seed;

use crate::helpers::{Bed, Plane, on_both_planes};

/// A refusal as a client sees it: status code, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    code: u16,
    reason: String,
    message: String,
}

/// A kube-rs client for the cluster, authenticated as its admin (coldstart's own way in).
async fn client(c: &Bed) -> kube::Client {
    coldstart::k8s::connect(Some(&c.kubeconfig), None)
        .await
        .expect("a client for the cluster")
}

/// Create `obj` (its apiVersion and kind say where) as the admin; the API server's refusal
/// as it sent it.
async fn create(
    client: &kube::Client,
    plural: &str,
    ns: Option<&str>,
    obj: Value,
) -> Result<Value, Refusal> {
    let api_version = obj["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, obj["kind"].as_str().expect("kind"));
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: kube::Api<DynamicObject> = match ns {
        Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &ar),
        None => kube::Api::all_with(client.clone(), &ar),
    };
    let obj: DynamicObject = serde_json::from_value(obj).expect("an object");
    match api.create(&PostParams::default(), &obj).await {
        Ok(o) => Ok(serde_json::to_value(o).expect("json")),
        Err(kube::Error::Api(s)) => Err(Refusal {
            code: s.code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        }),
        Err(e) => panic!("the API server did not answer: {e}"),
    }
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

// ---- CRD approval ----

fn widget_crd(group: &str, approval: Option<&str>) -> Value {
    let mut crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]},
    });
    if let Some(a) = approval {
        crd["metadata"]["annotations"] = json!({"api-approved.kubernetes.io": a});
    }
    crd
}

on_both_planes!(
    a_crd_in_a_kubernetes_owned_group_is_refused_without_approval =
        crd_approval_is_required_in_protected_groups
);

async fn crd_approval_is_required_in_protected_groups(plane: Plane) {
    let c = Bed::start(plane, Seed::Empty).await;
    let client = client(&c).await;
    let crds = "customresourcedefinitions";
    let see = "see https://github.com/kubernetes/enhancements/pull/1111";
    assert_eq!(
        create(&client, crds, None, widget_crd("missing.k8s.io", None))
            .await
            .err(),
        Some(Refusal {
            code: 422,
            reason: "Invalid".into(),
            message: format!(
                "CustomResourceDefinition.apiextensions.k8s.io \"widgets.missing.k8s.io\" is invalid: \
                 metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups \
                 must have approval annotation \"api-approved.kubernetes.io\", {see}"
            ),
        })
    );
    assert_eq!(
        create(
            &client,
            crds,
            None,
            widget_crd("bad.kubernetes.io", Some("approved"))
        )
        .await
        .err(),
        Some(Refusal {
            code: 422,
            reason: "Invalid".into(),
            message: format!(
                "CustomResourceDefinition.apiextensions.k8s.io \"widgets.bad.kubernetes.io\" is invalid: \
                 metadata.annotations[api-approved.kubernetes.io]: Invalid value: \"approved\": \
                 protected groups must have approval annotation \"api-approved.kubernetes.io\" with \
                 either a URL or a reason starting with \"unapproved\", {see}"
            ),
        })
    );
    // kubectl prints the refusal from its cause, the same on both servers.
    let yaml = serde_json::to_string(&widget_crd("kubectl.k8s.io", None)).expect("json");
    let out = c.kubectl_stdin(&["create", "-f", "-"], Some(&yaml)).await;
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "The CustomResourceDefinition \"widgets.kubectl.k8s.io\" is invalid: \
             metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups \
             must have approval annotation \"api-approved.kubernetes.io\", {see}"
        )
    );
    for (group, approval) in [
        (
            "url.k8s.io",
            Some("https://github.com/kubernetes/enhancements/pull/1111"),
        ),
        (
            "bypassed.k8s.io",
            Some("unapproved, a simulator's own test type"),
        ),
        ("example.com", None),
    ] {
        create(&client, crds, None, widget_crd(group, approval))
            .await
            .unwrap_or_else(|r| panic!("{group} is accepted: {r:?}"));
    }
}

// ---- custom resources: structural schema ----

fn gadget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.schema.example.com"},
        "spec": {"group": "schema.example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer"},
                        "mode": {"type": "string", "enum": ["fast", "safe"]},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    "status": {"type": "object", "properties": {
                        "conditions": {"type": "array", "items": {"type": "object",
                            "required": ["type", "status", "lastTransitionTime"],
                            "properties": {"type": {"type": "string"}, "status": {"type": "string"},
                                           "lastTransitionTime": {"type": "string"}}}}}}}}}}]},
    })
}

fn gadget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "schema.example.com/v1", "kind": "Gadget",
           "metadata": {"name": name}, "spec": spec})
}

on_both_planes!(
    a_custom_resource_is_pruned_to_its_schema_and_refused_for_breaking_it =
        custom_resources_keep_to_their_schema
);

async fn custom_resources_keep_to_their_schema(plane: Plane) {
    let c = Bed::start(plane, Seed::Empty).await;
    let client = client(&c).await;
    create(&client, "namespaces", None, namespace("lab"))
        .await
        .expect("namespace");
    create(&client, "customresourcedefinitions", None, gadget_crd())
        .await
        .expect("CRD");
    // kube-apiserver serves a CRD's resource a moment after creating it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let created = loop {
        let spec = json!({"size": 3, "mode": "fast", "colour": "red",
                          "labels": {"team": "data"}, "raw": {"kept": {"as": "is"}}});
        match create(&client, "gadgets", Some("lab"), gadget("kept", spec)).await {
            Err(r) if r.code == 404 && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other.expect("a gadget within its schema"),
        }
    };
    assert_eq!(
        created["spec"],
        json!({"size": 3, "mode": "fast", "labels": {"team": "data"}, "raw": {"kept": {"as": "is"}}}),
        "the unknown spec.colour is pruned, what the schema preserves is kept"
    );
    let refused = |message: &str| Refusal {
        code: 422,
        reason: "Invalid".into(),
        message: message.into(),
    };
    assert_eq!(
        create(
            &client,
            "gadgets",
            Some("lab"),
            gadget("no-size", json!({"mode": "fast"}))
        )
        .await
        .err(),
        Some(refused(
            "Gadget.schema.example.com \"no-size\" is invalid: spec.size: Required value"
        ))
    );
    // kube-apiserver lists a schema's errors in no fixed order (it walks the properties
    // of a Go map): either order, each error word for word.
    let size = "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"";
    let mode = "spec.mode: Unsupported value: \"slow\": supported values: \"fast\", \"safe\"";
    let refusal = create(
        &client,
        "gadgets",
        Some("lab"),
        gadget("bad", json!({"size": "big", "mode": "slow"})),
    )
    .await
    .err();
    assert!(
        [format!("[{size}, {mode}]"), format!("[{mode}, {size}]")]
            .iter()
            .any(|errors| refusal
                == Some(refused(&format!(
                    "Gadget.schema.example.com \"bad\" is invalid: {errors}"
                )))),
        "{refusal:?}"
    );
    // A controller's status without a field its CRD requires is refused too.
    let ar = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("schema.example.com", "v1", "Gadget"),
        "gadgets",
    );
    let api: kube::Api<DynamicObject> = kube::Api::namespaced_with(client.clone(), "lab", &ar);
    let status = |cond: Value| kube::api::Patch::Merge(json!({"status": {"conditions": [cond]}}));
    let err = api
        .patch_status(
            "kept",
            &Default::default(),
            &status(json!({"type": "Ready", "status": "True"})),
        )
        .await
        .expect_err("a condition without lastTransitionTime");
    match err {
        kube::Error::Api(s) => assert_eq!(
            (s.code, s.message.as_str()),
            (
                422,
                "Gadget.schema.example.com \"kept\" is invalid: \
                 status.conditions[0].lastTransitionTime: Required value"
            )
        ),
        other => panic!("the API server did not answer: {other}"),
    }
    api.patch_status(
        "kept",
        &Default::default(),
        &status(json!({"type": "Ready", "status": "True",
                       "lastTransitionTime": "2026-12-01T00:00:00Z"})),
    )
    .await
    .expect("a complete condition");
}

// ---- ResourceQuota ----

fn quota(name: &str, hard: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": name}, "spec": {"hard": hard}})
}

fn pod(name: &str, resources: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "resources": resources}]}})
}

async fn quota_status(c: &Bed, name: &str) -> Value {
    c.get_json(&["-n", "quota", "resourcequota", name]).await["status"].clone()
}

on_both_planes!(
    pods_and_objects_past_a_resource_quota_are_refused_and_usage_is_counted =
        quota_admission_refuses_and_counts
);

async fn quota_admission_refuses_and_counts(plane: Plane) {
    let c = Bed::start(plane, Seed::Empty).await;
    let client = client(&c).await;
    let ns = Some("quota");
    create(&client, "namespaces", None, namespace("quota"))
        .await
        .expect("namespace");
    let compute = json!({"requests.cpu": "1", "requests.memory": "1Gi", "limits.memory": "2Gi",
        "pods": "5"});
    let objects = json!({"persistentvolumeclaims": "2", "requests.storage": "5Gi",
        "services.loadbalancers": "0", "count/configmaps": "2"});
    // kube-controller-manager puts a ConfigMap into every namespace; it counts too.
    c.wait_for("the namespace has its root CA ConfigMap", async |c| {
        let args = ["-n", "quota", "get", "configmap", "kube-root-ca.crt"];
        c.kubectl(&args).await.status.success()
    })
    .await;
    create(
        &client,
        "resourcequotas",
        ns,
        quota("compute", compute.clone()),
    )
    .await
    .expect("compute quota");
    create(
        &client,
        "resourcequotas",
        ns,
        quota("objects", objects.clone()),
    )
    .await
    .expect("objects quota");
    // kube-controller-manager counts first; until then the quota refuses everything.
    for (name, hard) in [("compute", &compute), ("objects", &objects)] {
        c.wait_for(&format!("quota {name} is counted"), async |c| {
            let s = quota_status(c, name).await;
            s["hard"] == *hard
                && s["used"]
                    .as_object()
                    .is_some_and(|u| u.len() == hard.as_object().map_or(0, |h| h.len()))
        })
        .await;
    }
    let forbidden = |message: &str| Refusal {
        code: 403,
        reason: "Forbidden".into(),
        message: message.into(),
    };

    assert_eq!(
        create(&client, "pods", ns, pod("bare", json!({})))
            .await
            .err(),
        Some(forbidden(
            "pods \"bare\" is forbidden: failed quota: compute: must specify limits.memory for: app; \
             requests.cpu for: app; requests.memory for: app"
        ))
    );
    let sized =
        json!({"requests": {"cpu": "600m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}});
    create(&client, "pods", ns, pod("first", sized.clone()))
        .await
        .expect("the first pod fits");
    assert_eq!(
        create(&client, "pods", ns, pod("second", sized))
            .await
            .err(),
        Some(forbidden(
            "pods \"second\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, \
             used: requests.cpu=600m, limited: requests.cpu=1"
        ))
    );
    let claim = |name: &str, size: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                "resources": {"requests": {"storage": size}}}})
    };
    assert_eq!(
        create(&client, "persistentvolumeclaims", ns, claim("big", "10Gi"))
            .await
            .err(),
        Some(forbidden(
            "persistentvolumeclaims \"big\" is forbidden: exceeded quota: objects, requested: \
             requests.storage=10Gi, used: requests.storage=0, limited: requests.storage=5Gi"
        ))
    );
    create(&client, "persistentvolumeclaims", ns, claim("small", "2Gi"))
        .await
        .expect("a claim within the quota");
    let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
    assert_eq!(
        create(&client, "services", ns, lb).await.err(),
        Some(forbidden(
            "services \"lb\" is forbidden: exceeded quota: objects, requested: \
             services.loadbalancers=1, used: services.loadbalancers=0, limited: \
             services.loadbalancers=0"
        ))
    );
    let cm = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {}});
    create(&client, "configmaps", ns, cm("one"))
        .await
        .expect("one configmap");
    assert_eq!(
        create(&client, "configmaps", ns, cm("two")).await.err(),
        Some(forbidden(
            "configmaps \"two\" is forbidden: exceeded quota: objects, requested: count/configmaps=1, \
             used: count/configmaps=2, limited: count/configmaps=2"
        ))
    );

    // The status says what is used, as kube-controller-manager counts it.
    c.wait_for("the quotas count what was admitted", async |c| {
        quota_status(c, "compute").await["used"]
            == json!({"requests.cpu": "600m", "requests.memory": "256Mi",
                "limits.memory": "512Mi", "pods": "1"})
            && quota_status(c, "objects").await["used"]
                == json!({"persistentvolumeclaims": "1", "requests.storage": "2Gi",
                    "services.loadbalancers": "0", "count/configmaps": "2"})
    })
    .await;
    // What is deleted is given back.
    c.kubectl_ok(&[
        "-n",
        "quota",
        "delete",
        "pod",
        "first",
        "--grace-period=0",
        "--force",
    ])
    .await;
    c.kubectl_ok(&["-n", "quota", "delete", "configmap", "one"])
        .await;
    c.wait_for("the quotas give back what was deleted", async |c| {
        quota_status(c, "compute").await["used"]["requests.cpu"] == "0"
            && quota_status(c, "objects").await["used"]["count/configmaps"] == "1"
    })
    .await;
}

// ---- WaitForFirstConsumer and the selected node ----

const ZONE: &str = "eu-west-1b";

on_both_planes!(
    a_wait_for_first_consumer_claim_gets_its_disk_in_its_pods_zone =
        first_consumer_decides_the_zone
);

async fn first_consumer_decides_the_zone(plane: Plane) {
    let c = Bed::start(plane, Seed::Empty).await;
    c.apply(
        &format!(
            r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: gp3-wffc}}
provisioner: {driver}
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: Namespace
metadata: {{name: wffc}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data, namespace: wffc}}
spec:
  storageClassName: gp3-wffc
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
"#,
            driver = coldstart_sim::cloud::CSI_DRIVER
        ),
        &[],
    )
    .await;
    // No consumer, no disk: the claim waits (on both servers, however long).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pvc = c.get_json(&["-n", "wffc", "pvc", "data"]).await;
    assert_eq!(pvc["status"]["phase"], "Pending", "{pvc:#}");
    assert!(
        pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"].is_null(),
        "{pvc:#}"
    );
    let disks_before = c.cloud().await.disks.len();
    assert_eq!(disks_before, 0, "no disk before a consumer");

    c.apply(
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: app, namespace: wffc}}
spec:
  nodeSelector: {{topology.kubernetes.io/zone: {ZONE}}}
  containers: [{{name: app, image: "nginx:1.27"}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: data}}}}]
"#
        ),
        &[],
    )
    .await;
    c.wait_for("the claim is bound", async |c| {
        c.get_json(&["-n", "wffc", "pvc", "data"]).await["status"]["phase"] == "Bound"
    })
    .await;
    let pvc = c.get_json(&["-n", "wffc", "pvc", "data"]).await;
    let node_name = pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"]
        .as_str()
        .unwrap_or_else(|| panic!("the scheduler selected a node: {pvc:#}"))
        .to_owned();
    let node = c.get_json(&["node", &node_name]).await;
    assert_eq!(
        node["metadata"]["labels"]["topology.kubernetes.io/zone"],
        ZONE
    );
    // kube-scheduler binds the pod once its volume is bound.
    c.wait_for("the pod is bound to the selected node", async |c| {
        c.get_json(&["-n", "wffc", "pod", "app"]).await["spec"]["nodeName"] == node_name.as_str()
    })
    .await;

    let pv_name = pvc["spec"]["volumeName"]
        .as_str()
        .expect("volume")
        .to_owned();
    let pv = c.get_json(&["pv", &pv_name]).await;
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        json!({"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": [ZONE]}),
        "{pv:#}"
    );
    let disk = pv["spec"]["csi"]["volumeHandle"].as_str().expect("disk");
    let cloud = c.cloud().await;
    assert_eq!(
        cloud.disks.get(disk).map(|d| d.zone.as_str()),
        Some(ZONE),
        "{:#?}",
        cloud.disks
    );
}

on_both_planes!(
    a_paged_list_is_one_revision_so_a_watch_from_it_sees_what_changed_while_paging =
        paged_list_is_one_revision
);

/// kube's `watcher` lists page by page, then watches from the list's resourceVersion: a
/// change to an object on an earlier page, made while later pages are read, must reach the
/// watch. kube-apiserver serves every page at the first page's revision.
async fn paged_list_is_one_revision(plane: Plane) {
    use futures::{StreamExt as _, TryStreamExt as _};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{ListParams, Patch, PatchParams, WatchEvent, WatchParams};
    let c = Bed::start(plane, Seed::Empty).await;
    let client = client(&c).await;
    create(&client, "namespaces", None, namespace("paged"))
        .await
        .expect("namespace");
    for name in ["a", "b", "c", "d"] {
        create(
            &client,
            "configmaps",
            Some("paged"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}),
        )
        .await
        .expect("configmap");
    }
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "paged");
    let first = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("the first page");
    let names: Vec<_> = first
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    assert_eq!(names, ["a", "b"]);
    // Changed between the pages: `a` was on the first one.
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"changed": "while paging"}})),
    )
    .await
    .expect("patched");
    let token = first.metadata.continue_.clone().expect("a second page");
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("the second page");
    assert_eq!(
        second.metadata.resource_version, first.metadata.resource_version,
        "every page is served at the first page's revision"
    );
    let rv = second
        .metadata
        .resource_version
        .clone()
        .expect("a resourceVersion");
    let mut events = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .expect("a watch")
        .boxed();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = events.try_next().await.expect("the watch goes on") {
            if let WatchEvent::Modified(o) = ev
                && o.metadata.name.as_deref() == Some("a")
            {
                return o.data.unwrap_or_default().get("changed").cloned();
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    assert_eq!(seen.as_deref(), Some("while paging"));
    drop(events);
    c.stop().await;
}
