//! What a snapshot leaves out and what it strips: pure functions over discovery data and
//! object JSON, each rule in a table with the reason it exists. The reasons are what
//! `coldstart snapshot` logs, so an operator can see why an object is missing.
//!
//! The principle: keep what a cold start needs to recreate the cluster as it was; leave out
//! what the new cluster's control plane or controllers recreate themselves, and what belongs
//! to one cluster's life (its nodes, leases, events, identity tokens, CA bundle).

use serde_json::Value;

/// Resources never captured: (group, resource, reason). `*` matches any resource.
pub const EXCLUDED_RESOURCES: &[(&str, &str, &str)] = &[
    ("", "events", "events describe the old cluster's history"),
    (
        "events.k8s.io",
        "events",
        "events describe the old cluster's history",
    ),
    (
        "coordination.k8s.io",
        "leases",
        "leases belong to running processes",
    ),
    (
        "",
        "endpoints",
        "the endpoints controller rebuilds them from Services and Pods",
    ),
    (
        "discovery.k8s.io",
        "endpointslices",
        "the endpointslice controller rebuilds them",
    ),
    ("", "nodes", "nodes register themselves in the new cluster"),
    ("", "componentstatuses", "a live view of the control plane"),
    (
        "storage.k8s.io",
        "csinodes",
        "CSI node plugins register them",
    ),
    (
        "storage.k8s.io",
        "volumeattachments",
        "attachments belong to the old nodes",
    ),
    (
        "storage.k8s.io",
        "csistoragecapacities",
        "CSI drivers publish them",
    ),
    ("metrics.k8s.io", "*", "live metrics"),
    (
        "authentication.k8s.io",
        "*",
        "reviews are requests, not state",
    ),
    (
        "authorization.k8s.io",
        "*",
        "reviews are requests, not state",
    ),
    (
        "certificates.k8s.io",
        "certificatesigningrequests",
        "CSRs belong to the old nodes and users",
    ),
    (
        "resource.k8s.io",
        "resourceslices",
        "DRA drivers publish them per node",
    ),
    (
        "internal.apiserver.k8s.io",
        "storageversions",
        "the API server maintains them",
    ),
];

/// Why a whole resource is left out, if it is.
pub fn excluded_resource(group: &str, resource: &str) -> Option<&'static str> {
    EXCLUDED_RESOURCES
        .iter()
        .find(|(g, r, _)| *g == group && (*r == "*" || *r == resource))
        .map(|(_, _, why)| *why)
}

/// Kinds that are left out when a controller owns them: their owner recreates them from its
/// own spec. Everything else a controller owns is KEPT: a StatefulSet's PVCs bind existing
/// disks, an operator's Services carry pinned IPs, its bucket claims adopt buckets, and its
/// Secrets may hold data nothing can regenerate.
pub const RECREATED_BY_OWNER: &[(&str, &str)] = &[
    ("", "pods"),
    ("apps", "replicasets"),
    ("apps", "controllerrevisions"),
    ("batch", "jobs"),
];

fn str_at<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr).and_then(Value::as_str)
}

fn controller_owner(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("kind").and_then(Value::as_str))
}

/// Why one object is left out, if it is.
pub fn excluded_object(group: &str, resource: &str, obj: &Value) -> Option<&'static str> {
    let name = str_at(obj, "/metadata/name").unwrap_or_default();
    let namespace = str_at(obj, "/metadata/namespace").unwrap_or_default();
    if RECREATED_BY_OWNER.contains(&(group, resource)) && controller_owner(obj).is_some() {
        return Some("its controller recreates it from the owner's spec");
    }
    if (group, resource) == ("", "pods")
        && obj
            .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
            .is_some()
    {
        return Some("mirror pods come from a node's static manifests");
    }
    match (group, resource) {
        ("", "configmaps") if name == "kube-root-ca.crt" => Some(
            "kube-controller-manager publishes it in every namespace; the new cluster has a new CA",
        ),
        // Written by kube-apiserver's own controllers (clusterauthenticationtrust,
        // legacytokentracking): the new cluster's API server writes its own, and the old
        // one's would hand it the old cluster's client CAs.
        ("", "configmaps")
            if namespace == "kube-system"
                && matches!(
                    name,
                    "extension-apiserver-authentication"
                        | "kube-apiserver-legacy-service-account-token-tracking"
                ) =>
        {
            Some("the API server writes it")
        }
        ("", "serviceaccounts") if name == "default" => {
            Some("kube-controller-manager creates it in every namespace")
        }
        ("", "secrets")
            if str_at(obj, "/type") == Some("kubernetes.io/service-account-token")
                || str_at(obj, "/type") == Some("bootstrap.kubernetes.io/token") =>
        {
            Some("tokens are signed by the old cluster's keys")
        }
        ("snapshot.storage.k8s.io", "volumesnapshots" | "volumesnapshotcontents")
            if str_at(obj, "/metadata/labels/app.kubernetes.io~1managed-by")
                == Some("coldstart") =>
        {
            Some(
                "coldstart's own VolumeSnapshots are recorded in the bindings; restored, they would snapshot the new disks again",
            )
        }
        ("", "services")
            if namespace == "default"
                && name == "kubernetes"
                && str_at(obj, "/metadata/labels/provider") == Some("kubernetes") =>
        {
            Some("the API server creates its own Service")
        }
        (
            "rbac.authorization.k8s.io",
            "clusterroles" | "clusterrolebindings" | "roles" | "rolebindings",
        ) if str_at(obj, "/metadata/labels/kubernetes.io~1bootstrapping")
            == Some("rbac-defaults") =>
        {
            Some("the API server reconciles its default RBAC")
        }
        ("flowcontrol.apiserver.k8s.io", _)
            if str_at(
                obj,
                "/metadata/annotations/apf.kubernetes.io~1autoupdate-spec",
            ) == Some("true") =>
        {
            Some("the API server maintains its default flow control")
        }
        ("apiregistration.k8s.io", "apiservices")
            if obj.pointer("/spec/service").is_none_or(Value::is_null) =>
        {
            Some("local API services are registered by the API server")
        }
        // Found by running against kube-apiserver v1.37: it allocates an IPAddress for every
        // cluster IP, creates the ServiceCIDR `kubernetes` from its flags and publishes its
        // serving CA as a ClusterTrustBundle. Restored, they would claim the new cluster's
        // addresses or trust the old cluster's CA; ones a user created are kept.
        ("networking.k8s.io", "ipaddresses")
            if str_at(obj, "/metadata/labels/ipaddress.kubernetes.io~1managed-by")
                == Some("ipallocator.k8s.io") =>
        {
            Some("the API server allocates one for each Service's cluster IP")
        }
        ("networking.k8s.io", "servicecidrs") if name == "kubernetes" => {
            Some("the API server creates it from its service range")
        }
        ("certificates.k8s.io", "clustertrustbundles")
            if str_at(obj, "/spec/signerName") == Some("kubernetes.io/kube-apiserver-serving") =>
        {
            Some("the API server publishes its own serving CA")
        }
        _ => None,
    }
}

/// Metadata fields one cluster assigns and another would reject or misread.
pub const STRIPPED_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Strip what belongs to the old cluster's life and set `apiVersion`/`kind` (list items may
/// lack them). Status goes too: the bindings record the parts of status a restore needs.
pub fn sanitize(obj: &mut Value, api_version: &str, kind: &str) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    map.remove("status");
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in STRIPPED_METADATA {
            meta.remove(*field);
        }
    }
    map.insert(
        "apiVersion".to_owned(),
        Value::String(api_version.to_owned()),
    );
    map.insert("kind".to_owned(), Value::String(kind.to_owned()));
}

/// Which resources, namespaces and labels the user asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only these namespaces (empty: all).
    pub include_namespaces: Vec<String>,
    pub exclude_namespaces: Vec<String>,
    /// Only these resources, as `plural` (core) or `plural.group` (empty: all).
    pub include_resources: Vec<String>,
    pub exclude_resources: Vec<String>,
    /// A label selector passed to every LIST.
    pub label_selector: Option<String>,
}

fn resource_names(group: &str, resource: &str) -> [String; 2] {
    if group.is_empty() {
        [resource.to_owned(), format!("{resource}.core")]
    } else {
        [format!("{resource}.{group}"), resource.to_owned()]
    }
}

impl Selection {
    /// Whether a resource is wanted (the built-in exclusions apply separately).
    pub fn wants_resource(&self, group: &str, resource: &str) -> bool {
        let names = resource_names(group, resource);
        let named = |list: &[String]| list.iter().any(|r| names.contains(r));
        (self.include_resources.is_empty() || named(&self.include_resources))
            && !named(&self.exclude_resources)
    }

    /// Whether an object in `namespace` is wanted (cluster-scoped objects: `None`). A
    /// Namespace object counts as being in itself.
    pub fn wants_namespace(&self, namespace: Option<&str>) -> bool {
        let Some(ns) = namespace else {
            return true;
        };
        (self.include_namespaces.is_empty() || self.include_namespaces.iter().any(|n| n == ns))
            && !self.exclude_namespaces.iter().any(|n| n == ns)
    }
}

/// What a redacted value is shown as.
pub const REDACTED: &str = "<redacted>";

/// An object as it may be shown to a person or printed as JSON: a Secret's values (`data`,
/// `stringData`, and kubectl's last-applied copy of them) replaced by [`REDACTED`]. Every
/// output of a plan, dry run included, goes through this; only the apply sends the real
/// object.
pub fn redacted(obj: &Value) -> std::borrow::Cow<'_, Value> {
    let is_secret = obj["kind"] == "Secret" && obj["apiVersion"] == "v1";
    if !is_secret {
        return std::borrow::Cow::Borrowed(obj);
    }
    let mut out = obj.clone();
    for field in ["data", "stringData"] {
        if let Some(map) = out.get_mut(field).and_then(Value::as_object_mut) {
            for v in map.values_mut() {
                *v = Value::String(REDACTED.to_owned());
            }
        }
    }
    if let Some(a) = out
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        && let Some(v) = a.get_mut("kubectl.kubernetes.io/last-applied-configuration")
    {
        *v = Value::String(REDACTED.to_owned());
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_that_belong_to_one_clusters_life_are_excluded() {
        let cases = [
            ("", "events", true),
            ("events.k8s.io", "events", true),
            ("coordination.k8s.io", "leases", true),
            ("", "endpoints", true),
            ("discovery.k8s.io", "endpointslices", true),
            ("", "nodes", true),
            ("storage.k8s.io", "csinodes", true),
            ("storage.k8s.io", "volumeattachments", true),
            ("metrics.k8s.io", "pods", true),
            ("", "persistentvolumes", false),
            ("", "secrets", false),
            ("", "pods", false),
            ("storage.k8s.io", "storageclasses", false),
            ("apiextensions.k8s.io", "customresourcedefinitions", false),
            ("example.com", "widgets", false),
        ];
        for (g, r, excluded) in cases {
            assert_eq!(excluded_resource(g, r).is_some(), excluded, "{g}/{r}");
        }
    }

    #[test]
    fn what_kube_apiserver_writes_for_itself_is_excluded_and_what_a_user_wrote_is_kept() {
        let allocated = json!({"metadata": {"name": "10.96.0.10",
            "labels": {"ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"}}});
        let by_hand = json!({"metadata": {"name": "10.96.0.11"}});
        let serving = json!({"metadata": {"name": "kubernetes.io:kube-apiserver-serving:abc"},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-serving"}});
        let users_bundle = json!({"metadata": {"name": "corp-ca"}, "spec": {}});
        let cidr = |name: &str| json!({"metadata": {"name": name}});
        let cases = [
            ("networking.k8s.io", "ipaddresses", &allocated, true),
            ("networking.k8s.io", "ipaddresses", &by_hand, false),
            (
                "networking.k8s.io",
                "servicecidrs",
                &cidr("kubernetes"),
                true,
            ),
            ("networking.k8s.io", "servicecidrs", &cidr("extra"), false),
            ("certificates.k8s.io", "clustertrustbundles", &serving, true),
            (
                "certificates.k8s.io",
                "clustertrustbundles",
                &users_bundle,
                false,
            ),
        ];
        for (g, r, obj, excluded) in cases {
            assert_eq!(
                excluded_object(g, r, obj).is_some(),
                excluded,
                "{g}/{r} {obj}"
            );
        }
    }

    #[test]
    fn objects_are_excluded_or_kept_by_kind_owner_and_name() {
        let owned = |kind: &str| {
            json!({"metadata": {"name": "x", "namespace": "a",
                "ownerReferences": [{"kind": kind, "name": "o", "controller": true}]}})
        };
        let plain = json!({"metadata": {"name": "x", "namespace": "a"}});
        let cases = [
            (
                "pod owned by a replicaset",
                "",
                "pods",
                owned("ReplicaSet"),
                true,
            ),
            ("bare pod", "", "pods", plain.clone(), false),
            (
                "replicaset owned by a deployment",
                "apps",
                "replicasets",
                owned("Deployment"),
                true,
            ),
            (
                "controllerrevision",
                "apps",
                "controllerrevisions",
                owned("StatefulSet"),
                true,
            ),
            (
                "job owned by a cronjob",
                "batch",
                "jobs",
                owned("CronJob"),
                true,
            ),
            ("job of its own", "batch", "jobs", plain.clone(), false),
            (
                "statefulset pvc binds a disk",
                "",
                "persistentvolumeclaims",
                owned("StatefulSet"),
                false,
            ),
            (
                "operator-owned service keeps its pinned ip",
                "",
                "services",
                owned("Kafka"),
                false,
            ),
            (
                "operator-owned secret",
                "",
                "secrets",
                owned("Certificate"),
                false,
            ),
            (
                "kube-root-ca.crt",
                "",
                "configmaps",
                json!({"metadata": {"name": "kube-root-ca.crt", "namespace": "a"}}),
                true,
            ),
            (
                "the API server's client CAs",
                "",
                "configmaps",
                json!({"metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"}}),
                true,
            ),
            (
                "a configmap of that name elsewhere",
                "",
                "configmaps",
                json!({"metadata": {"name": "extension-apiserver-authentication", "namespace": "a"}}),
                false,
            ),
            ("other configmap", "", "configmaps", plain.clone(), false),
            (
                "default serviceaccount",
                "",
                "serviceaccounts",
                json!({"metadata": {"name": "default", "namespace": "a"}}),
                true,
            ),
            (
                "other serviceaccount",
                "",
                "serviceaccounts",
                plain.clone(),
                false,
            ),
            (
                "token secret",
                "",
                "secrets",
                json!({"metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"}),
                true,
            ),
            (
                "opaque secret",
                "",
                "secrets",
                json!({"metadata": {"name": "t"}, "type": "Opaque"}),
                false,
            ),
            (
                "the kubernetes service",
                "",
                "services",
                json!({"metadata": {"name": "kubernetes", "namespace": "default", "labels": {"provider": "kubernetes"}}}),
                true,
            ),
            (
                "a service named kubernetes elsewhere",
                "",
                "services",
                json!({"metadata": {"name": "kubernetes", "namespace": "team"}}),
                false,
            ),
            (
                "bootstrap clusterrole",
                "rbac.authorization.k8s.io",
                "clusterroles",
                json!({"metadata": {"name": "admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}}),
                true,
            ),
            (
                "user clusterrole",
                "rbac.authorization.k8s.io",
                "clusterroles",
                json!({"metadata": {"name": "mine"}}),
                false,
            ),
            (
                "local apiservice",
                "apiregistration.k8s.io",
                "apiservices",
                json!({"metadata": {"name": "v1.apps"}, "spec": {"service": null}}),
                true,
            ),
            (
                "aggregated apiservice",
                "apiregistration.k8s.io",
                "apiservices",
                json!({"metadata": {"name": "v1beta1.metrics.k8s.io"}, "spec": {"service": {"name": "metrics-server"}}}),
                false,
            ),
            (
                "mirror pod",
                "",
                "pods",
                json!({"metadata": {"name": "etcd", "annotations": {"kubernetes.io/config.mirror": "x"}}}),
                true,
            ),
        ];
        for (name, g, r, obj, excluded) in cases {
            assert_eq!(excluded_object(g, r, &obj).is_some(), excluded, "{name}");
        }
    }

    #[test]
    fn sanitizing_strips_cluster_assigned_fields_and_status_but_keeps_what_restore_needs() {
        let mut obj = json!({
            "metadata": {"name": "x", "namespace": "a", "uid": "u", "resourceVersion": "5",
                "generation": 2, "creationTimestamp": "t", "managedFields": [], "selfLink": "/x",
                "labels": {"l": "1"}, "annotations": {"a": "1"}, "finalizers": ["f"],
                "ownerReferences": [{"kind": "K", "name": "o", "uid": "ou"}]},
            "spec": {"replicas": 3},
            "status": {"replicas": 3}
        });
        sanitize(&mut obj, "apps/v1", "Deployment");
        assert_eq!(
            obj,
            json!({
                "metadata": {"name": "x", "namespace": "a", "labels": {"l": "1"},
                    "annotations": {"a": "1"}, "finalizers": ["f"],
                    "ownerReferences": [{"kind": "K", "name": "o", "uid": "ou"}]},
                "spec": {"replicas": 3},
                "apiVersion": "apps/v1",
                "kind": "Deployment"
            })
        );
    }

    #[test]
    fn a_selection_filters_resources_by_name_and_namespaces_by_list() {
        let all = Selection::default();
        assert!(all.wants_resource("", "secrets"));
        assert!(all.wants_namespace(Some("a")));
        let sel = Selection {
            include_namespaces: vec!["a".into(), "b".into()],
            exclude_namespaces: vec!["b".into()],
            include_resources: vec![],
            exclude_resources: vec!["secrets".into(), "widgets.example.com".into()],
            label_selector: None,
        };
        let cases = [
            (Some("a"), true),
            (Some("b"), false),
            (Some("c"), false),
            (None, true),
        ];
        for (ns, wanted) in cases {
            assert_eq!(sel.wants_namespace(ns), wanted, "{ns:?}");
        }
        assert!(!sel.wants_resource("", "secrets"));
        assert!(!sel.wants_resource("example.com", "widgets"));
        assert!(sel.wants_resource("", "configmaps"));
        let only = Selection {
            include_resources: vec!["persistentvolumes".into(), "deployments.apps".into()],
            ..Default::default()
        };
        assert!(only.wants_resource("", "persistentvolumes"));
        assert!(only.wants_resource("apps", "deployments"));
        assert!(!only.wants_resource("", "configmaps"));
    }

    #[test]
    fn a_secret_is_shown_without_its_values_and_other_objects_unchanged() {
        let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}},
            "data": {"password": "aHVudGVyMg=="}, "stringData": {"token": "hunter2"}});
        let shown = serde_json::to_string(&*redacted(&secret)).unwrap();
        assert!(!shown.contains("aHVudGVyMg=="), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("password"), "the keys stay visible: {shown}");
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}});
        assert_eq!(*redacted(&cm), cm);
    }
}
