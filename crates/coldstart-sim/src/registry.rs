//! Which resources the simulated API server serves: the built-in types that matter for DR,
//! plus every CustomResourceDefinition created at run time. Discovery documents and the
//! OpenAPI v3 documents kubectl asks for are derived from this table, so a CRD shows up in
//! `kubectl api-resources` the moment it is created.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One served resource (one group/version/plural).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    /// Plural name, the URL segment.
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub has_status: bool,
    pub scale: Option<ScalePaths>,
    /// Verbs other than the usual CRUD set (create-only review APIs).
    pub create_only: bool,
    /// Columns for `kubectl get` tables, beyond NAME and AGE.
    pub columns: Vec<Column>,
    /// A custom resource version's `openAPIV3Schema`: what its writes are pruned to and
    /// checked against ([`crate::structural`]).
    pub schema: Option<std::sync::Arc<Value>>,
}

/// Where a scalable resource keeps its replica counts (the CRD `scale` subresource shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// A printer column: a header and a JSON path (`.spec.foo`) into the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub json_path: String,
}

/// Storage identity of a resource: objects live per group and plural, whatever version
/// a client uses to reach them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    pub group: String,
    pub plural: String,
}

impl ResourceDef {
    pub fn group_resource(&self) -> GroupResource {
        GroupResource {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn group_version(&self) -> String {
        self.api_version()
    }

    fn verbs(&self) -> Vec<&'static str> {
        if self.create_only {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }
}

struct Builtin {
    gv: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    scale: bool,
    create_only: bool,
    columns: &'static [(&'static str, &'static str)],
}

const fn b(
    gv: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
) -> Builtin {
    Builtin {
        gv,
        plural,
        kind,
        namespaced,
        short,
        status: false,
        scale: false,
        create_only: false,
        columns: &[],
    }
}

const fn with_status(mut x: Builtin) -> Builtin {
    x.status = true;
    x
}

const fn with_scale(mut x: Builtin) -> Builtin {
    x.status = true;
    x.scale = true;
    x
}

const fn create_only(mut x: Builtin) -> Builtin {
    x.create_only = true;
    x
}

const fn cols(mut x: Builtin, columns: &'static [(&'static str, &'static str)]) -> Builtin {
    x.columns = columns;
    x
}

/// The built-in API surface. Kept to the types that matter for a whole-cluster stop and
/// start, plus the ones coldstart must recognise in order to leave them out of a snapshot.
const BUILTINS: &[Builtin] = &[
    cols(
        with_status(b("v1", "namespaces", "Namespace", false, &["ns"])),
        &[("Status", ".status.phase")],
    ),
    cols(
        with_status(b(
            "v1",
            "persistentvolumes",
            "PersistentVolume",
            false,
            &["pv"],
        )),
        &[
            ("Capacity", ".spec.capacity.storage"),
            ("Reclaim Policy", ".spec.persistentVolumeReclaimPolicy"),
            ("Status", ".status.phase"),
            ("Claim", ".spec.claimRef.name"),
            ("StorageClass", ".spec.storageClassName"),
        ],
    ),
    cols(
        with_status(b(
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
        )),
        &[
            ("Status", ".status.phase"),
            ("Volume", ".spec.volumeName"),
            ("Capacity", ".status.capacity.storage"),
            ("StorageClass", ".spec.storageClassName"),
        ],
    ),
    cols(
        with_status(b("v1", "services", "Service", true, &["svc"])),
        &[
            ("Type", ".spec.type"),
            ("Cluster-IP", ".spec.clusterIP"),
            ("External-IP", ".status.loadBalancer.ingress[0].ip"),
        ],
    ),
    cols(
        b("v1", "secrets", "Secret", true, &[]),
        &[("Type", ".type")],
    ),
    b("v1", "configmaps", "ConfigMap", true, &["cm"]),
    b("v1", "serviceaccounts", "ServiceAccount", true, &["sa"]),
    cols(
        with_status(b("v1", "pods", "Pod", true, &["po"])),
        &[("Status", ".status.phase")],
    ),
    b("v1", "endpoints", "Endpoints", true, &["ep"]),
    b("v1", "events", "Event", true, &["ev"]),
    with_status(b("v1", "resourcequotas", "ResourceQuota", true, &["quota"])),
    b("v1", "limitranges", "LimitRange", true, &["limits"]),
    with_status(b("v1", "nodes", "Node", false, &["no"])),
    with_scale(b(
        "v1",
        "replicationcontrollers",
        "ReplicationController",
        true,
        &["rc"],
    )),
    cols(
        with_scale(b("apps/v1", "deployments", "Deployment", true, &["deploy"])),
        &[
            ("Ready", ".status.readyReplicas"),
            ("Desired", ".spec.replicas"),
        ],
    ),
    cols(
        with_scale(b("apps/v1", "statefulsets", "StatefulSet", true, &["sts"])),
        &[
            ("Ready", ".status.readyReplicas"),
            ("Desired", ".spec.replicas"),
        ],
    ),
    with_scale(b("apps/v1", "replicasets", "ReplicaSet", true, &["rs"])),
    with_status(b("apps/v1", "daemonsets", "DaemonSet", true, &["ds"])),
    b(
        "apps/v1",
        "controllerrevisions",
        "ControllerRevision",
        true,
        &[],
    ),
    with_status(b("batch/v1", "jobs", "Job", true, &[])),
    with_status(b("batch/v1", "cronjobs", "CronJob", true, &["cj"])),
    with_status(b(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
    )),
    b("rbac.authorization.k8s.io/v1", "roles", "Role", true, &[]),
    b(
        "rbac.authorization.k8s.io/v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io/v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
    ),
    cols(
        b(
            "storage.k8s.io/v1",
            "storageclasses",
            "StorageClass",
            false,
            &["sc"],
        ),
        &[
            ("Provisioner", ".provisioner"),
            ("ReclaimPolicy", ".reclaimPolicy"),
        ],
    ),
    b("storage.k8s.io/v1", "csidrivers", "CSIDriver", false, &[]),
    b("storage.k8s.io/v1", "csinodes", "CSINode", false, &[]),
    with_status(b(
        "storage.k8s.io/v1",
        "volumeattachments",
        "VolumeAttachment",
        false,
        &[],
    )),
    with_status(b(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
    )),
    with_status(b(
        "admissionregistration.k8s.io/v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        false,
        &[],
    )),
    b(
        "admissionregistration.k8s.io/v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        false,
        &[],
    ),
    b(
        "admissionregistration.k8s.io/v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
        &[],
    ),
    b(
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
        &[],
    ),
    b("coordination.k8s.io/v1", "leases", "Lease", true, &[]),
    with_status(b(
        "networking.k8s.io/v1",
        "ingresses",
        "Ingress",
        true,
        &["ing"],
    )),
    b(
        "networking.k8s.io/v1",
        "ingressclasses",
        "IngressClass",
        false,
        &[],
    ),
    b(
        "networking.k8s.io/v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &["netpol"],
    ),
    b(
        "discovery.k8s.io/v1",
        "endpointslices",
        "EndpointSlice",
        true,
        &[],
    ),
    b(
        "scheduling.k8s.io/v1",
        "priorityclasses",
        "PriorityClass",
        false,
        &["pc"],
    ),
    with_status(b(
        "policy/v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
    )),
    create_only(b(
        "authentication.k8s.io/v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        false,
        &[],
    )),
    create_only(b(
        "authentication.k8s.io/v1",
        "tokenreviews",
        "TokenReview",
        false,
        &[],
    )),
    create_only(b(
        "authorization.k8s.io/v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        false,
        &[],
    )),
];

fn split_gv(gv: &str) -> (&str, &str) {
    match gv.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", gv),
    }
}

fn singular_of(kind: &str) -> String {
    kind.to_ascii_lowercase()
}

fn builtin_defs() -> Vec<ResourceDef> {
    BUILTINS
        .iter()
        .map(|x| {
            let (group, version) = split_gv(x.gv);
            ResourceDef {
                group: group.to_owned(),
                version: version.to_owned(),
                plural: x.plural.to_owned(),
                singular: singular_of(x.kind),
                kind: x.kind.to_owned(),
                list_kind: format!("{}List", x.kind),
                namespaced: x.namespaced,
                short_names: x.short.iter().map(|s| (*s).to_owned()).collect(),
                categories: if x.namespaced && !x.create_only {
                    vec!["all".to_owned()]
                } else {
                    vec![]
                },
                has_status: x.status,
                scale: x.scale.then(|| ScalePaths {
                    spec_replicas: ".spec.replicas".to_owned(),
                    status_replicas: ".status.replicas".to_owned(),
                    label_selector: Some(".status.selector".to_owned()),
                }),
                create_only: x.create_only,
                columns: x
                    .columns
                    .iter()
                    .map(|(n, p)| Column {
                        name: (*n).to_owned(),
                        json_path: (*p).to_owned(),
                    })
                    .collect(),
                schema: None,
            }
        })
        .collect()
}

/// Why a CRD could not be turned into served resources.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CrdError {
    #[error("spec.{0} is required")]
    Missing(&'static str),
    #[error("metadata.name must be spec.names.plural + \".\" + spec.group ({0})")]
    NameMismatch(String),
}

/// The resources a CustomResourceDefinition serves, one per served version.
pub fn defs_from_crd(crd: &Value) -> Result<Vec<ResourceDef>, CrdError> {
    let spec = crd.get("spec").ok_or(CrdError::Missing("spec"))?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or(CrdError::Missing("group"))?;
    let names = spec.get("names").ok_or(CrdError::Missing("names"))?;
    let plural = names
        .get("plural")
        .and_then(Value::as_str)
        .ok_or(CrdError::Missing("names.plural"))?;
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .ok_or(CrdError::Missing("names.kind"))?;
    let expected = format!("{plural}.{group}");
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name != expected {
        return Err(CrdError::NameMismatch(expected));
    }
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| singular_of(kind));
    let list_kind = names
        .get("listKind")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{kind}List"));
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or(CrdError::Missing("versions"))?;
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let Some(version) = v.get("name").and_then(Value::as_str) else {
            continue;
        };
        let sub = v.get("subresources");
        let scale = sub.and_then(|s| s.get("scale")).map(|s| ScalePaths {
            spec_replicas: s
                .get("specReplicasPath")
                .and_then(Value::as_str)
                .unwrap_or(".spec.replicas")
                .to_owned(),
            status_replicas: s
                .get("statusReplicasPath")
                .and_then(Value::as_str)
                .unwrap_or(".status.replicas")
                .to_owned(),
            label_selector: s
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .filter_map(|c| {
                        Some(Column {
                            name: c.get("name")?.as_str()?.to_owned(),
                            json_path: c.get("jsonPath")?.as_str()?.to_owned(),
                        })
                    })
                    .filter(|c| c.name != "Age")
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceDef {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
            singular: singular.clone(),
            kind: kind.to_owned(),
            list_kind: list_kind.clone(),
            namespaced,
            short_names: strs(names.get("shortNames")),
            categories: strs(names.get("categories")),
            has_status: sub.and_then(|s| s.get("status")).is_some(),
            scale,
            create_only: false,
            columns,
            schema: v
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .map(std::sync::Arc::new),
        });
    }
    Ok(out)
}

/// The registry: built-ins plus CRD-served resources, keyed by group/version/plural.
#[derive(Debug, Clone)]
pub struct Registry {
    defs: BTreeMap<(String, String, String), ResourceDef>,
    /// Group → preferred version (the first served version as declared).
    preferred: BTreeMap<String, String>,
    /// CRD name → the keys it contributed, so deleting the CRD unserves them.
    crd_keys: BTreeMap<String, Vec<(String, String, String)>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let mut r = Registry {
            defs: BTreeMap::new(),
            preferred: BTreeMap::new(),
            crd_keys: BTreeMap::new(),
        };
        for d in builtin_defs() {
            r.insert(d);
        }
        r
    }

    fn insert(&mut self, d: ResourceDef) {
        self.preferred
            .entry(d.group.clone())
            .or_insert_with(|| d.version.clone());
        self.defs
            .insert((d.group.clone(), d.version.clone(), d.plural.clone()), d);
    }

    fn recompute_preferred(&mut self) {
        let mut preferred = BTreeMap::new();
        // Built-ins first keep their version; CRDs take their first served version.
        for d in self.defs.values() {
            preferred
                .entry(d.group.clone())
                .or_insert_with(|| d.version.clone());
        }
        for (name, keys) in &self.crd_keys {
            let _ = name;
            if let Some(first) = keys.first() {
                preferred.insert(first.0.clone(), first.1.clone());
            }
        }
        self.preferred = preferred;
    }

    /// Serve (or re-serve) the resources of a CRD.
    pub fn apply_crd(&mut self, crd_name: &str, defs: Vec<ResourceDef>) {
        self.remove_crd(crd_name);
        let keys: Vec<_> = defs
            .iter()
            .map(|d| (d.group.clone(), d.version.clone(), d.plural.clone()))
            .collect();
        for d in defs {
            self.insert(d);
        }
        self.crd_keys.insert(crd_name.to_owned(), keys);
        self.recompute_preferred();
    }

    pub fn remove_crd(&mut self, crd_name: &str) {
        if let Some(keys) = self.crd_keys.remove(crd_name) {
            for k in keys {
                self.defs.remove(&k);
            }
            self.recompute_preferred();
        }
    }

    pub fn is_crd_resource(&self, gr: &GroupResource) -> bool {
        self.crd_keys
            .keys()
            .any(|n| *n == format!("{}.{}", gr.plural, gr.group))
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
    }

    /// The definition a group/resource is served with at its preferred version.
    pub fn preferred(&self, gr: &GroupResource) -> Option<&ResourceDef> {
        let v = self.preferred.get(&gr.group)?;
        self.get(&gr.group, v, &gr.plural).or_else(|| {
            self.defs
                .values()
                .find(|d| d.group == gr.group && d.plural == gr.plural)
        })
    }

    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceDef> {
        let (g, v) = split_gv(api_version);
        self.defs
            .values()
            .find(|d| d.group == g && d.version == v && d.kind == kind)
    }

    pub fn all(&self) -> impl Iterator<Item = &ResourceDef> {
        self.defs.values()
    }

    pub fn group_versions(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in self.defs.values() {
            let vs = out.entry(d.group.clone()).or_default();
            if !vs.contains(&d.version) {
                vs.push(d.version.clone());
            }
        }
        // Preferred version first, as the API server lists them.
        for (g, vs) in out.iter_mut() {
            if let Some(p) = self.preferred.get(g) {
                vs.sort_by_key(|v| v != p);
            }
        }
        out
    }

    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.defs.keys().any(|(g, v, _)| g == group && v == version)
    }

    /// `/api/v1` or `/apis/{g}/{v}`: an APIResourceList.
    pub fn resource_list(&self, group: &str, version: &str) -> Value {
        let mut resources = Vec::new();
        for d in self
            .defs
            .values()
            .filter(|d| d.group == group && d.version == version)
        {
            resources.push(json!({
                "name": d.plural,
                "singularName": d.singular,
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": d.verbs(),
                "shortNames": d.short_names,
                "categories": d.categories,
                "storageVersionHash": storage_hash(&d.group, &d.plural),
            }));
            if d.has_status {
                resources.push(json!({
                    "name": format!("{}/status", d.plural),
                    "singularName": "",
                    "namespaced": d.namespaced,
                    "kind": d.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
            if d.scale.is_some() {
                resources.push(json!({
                    "name": format!("{}/scale", d.plural),
                    "singularName": "",
                    "namespaced": d.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        let gv = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        })
    }

    fn api_group(&self, group: &str, versions: &[String]) -> Value {
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
            .collect();
        let preferred = vs.first().cloned().unwrap_or(Value::Null);
        json!({"name": group, "versions": vs, "preferredVersion": preferred})
    }

    /// `/apis`: an APIGroupList.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .group_versions()
            .iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, vs)| self.api_group(g, vs))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `/apis/{g}`: an APIGroup.
    pub fn group(&self, group: &str) -> Option<Value> {
        let gvs = self.group_versions();
        let vs = gvs.get(group)?;
        let mut g = self.api_group(group, vs);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        Some(g)
    }

    /// `/openapi/v3`: the index of per-group-version documents.
    pub fn openapi_root(&self) -> Value {
        let mut paths = serde_json::Map::new();
        for (g, vs) in self.group_versions() {
            for v in vs {
                let key = if g.is_empty() {
                    format!("api/{v}")
                } else {
                    format!("apis/{g}/{v}")
                };
                let url = format!("/openapi/v3/{key}?hash={}", storage_hash(&g, &v));
                paths.insert(key, json!({"serverRelativeURL": url}));
            }
        }
        json!({"paths": paths})
    }

    /// `/openapi/v3/{api|apis/g}/{v}`: enough of the document for kubectl: every PATCH
    /// operation carries its GVK and the `fieldValidation` parameter (so kubectl leaves
    /// validation to the server), and every kind has a schema entry so a client-side
    /// apply computes a plain merge patch.
    pub fn openapi_doc(&self, group: &str, version: &str) -> Option<Value> {
        if !self.has_group_version(group, version) {
            return None;
        }
        let mut paths = serde_json::Map::new();
        let mut schemas = serde_json::Map::new();
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        for d in self
            .defs
            .values()
            .filter(|d| d.group == group && d.version == version)
        {
            let gvk = json!({"group": group, "version": version, "kind": d.kind});
            let params = json!([
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            ]);
            let item = if d.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
            } else {
                format!("{prefix}/{}/{{name}}", d.plural)
            };
            let op = json!({
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "patch",
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
            });
            paths.insert(item, json!({"patch": op, "put": op}));
            let schema_name = format!(
                "io.coldstart.sim.{}.{}.{}",
                if group.is_empty() { "core" } else { group },
                version,
                d.kind
            );
            schemas.insert(
                schema_name,
                json!({
                    "type": "object",
                    "x-kubernetes-group-version-kind": [gvk],
                    "x-kubernetes-preserve-unknown-fields": true,
                }),
            );
        }
        Some(json!({
            "openapi": "3.0.0",
            "info": {"title": "coldstart simulated cluster", "version": "v1"},
            "paths": paths,
            "components": {"schemas": schemas},
        }))
    }
}

/// A stable, short hash (the API server's `storageVersionHash` has the same role: telling
/// clients when to drop their discovery cache).
pub fn storage_hash(a: &str, b: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain([b'/']).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:016x}", h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_include_every_type_that_matters_for_dr() {
        let r = Registry::new();
        for (g, v, p) in [
            ("", "v1", "persistentvolumes"),
            ("", "v1", "persistentvolumeclaims"),
            ("", "v1", "services"),
            ("apps", "v1", "statefulsets"),
            ("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
            (
                "admissionregistration.k8s.io",
                "v1",
                "validatingadmissionpolicies",
            ),
            ("coordination.k8s.io", "v1", "leases"),
        ] {
            assert!(r.get(g, v, p).is_some(), "{g}/{v}/{p} is served");
        }
    }

    #[test]
    fn a_crd_serves_each_served_version_and_unserves_on_delete() {
        let crd = json!({
            "metadata": {"name": "bucketclaims.objectstorage.k8s.io"},
            "spec": {
                "group": "objectstorage.k8s.io",
                "scope": "Namespaced",
                "names": {"plural": "bucketclaims", "kind": "BucketClaim"},
                "versions": [
                    {"name": "v1alpha1", "served": true, "storage": true,
                     "subresources": {"status": {}}},
                    {"name": "v0", "served": false, "storage": false}
                ]
            }
        });
        let defs = defs_from_crd(&crd).expect("valid crd");
        assert_eq!(defs.len(), 1);
        assert!(defs[0].has_status);
        let mut r = Registry::new();
        r.apply_crd("bucketclaims.objectstorage.k8s.io", defs);
        assert!(
            r.get("objectstorage.k8s.io", "v1alpha1", "bucketclaims")
                .is_some()
        );
        assert!(
            r.group_list().to_string().contains("objectstorage.k8s.io"),
            "the new group is discoverable"
        );
        r.remove_crd("bucketclaims.objectstorage.k8s.io");
        assert!(
            r.get("objectstorage.k8s.io", "v1alpha1", "bucketclaims")
                .is_none()
        );
    }

    #[test]
    fn a_crd_whose_name_does_not_match_its_names_is_rejected() {
        let crd = json!({
            "metadata": {"name": "wrong.example.com"},
            "spec": {"group": "example.com", "names": {"plural": "foos", "kind": "Foo"},
                     "versions": [{"name": "v1", "served": true}]}
        });
        assert_eq!(
            defs_from_crd(&crd),
            Err(CrdError::NameMismatch("foos.example.com".into()))
        );
    }

    #[test]
    fn openapi_patch_operations_advertise_field_validation() {
        let r = Registry::new();
        let doc = r.openapi_doc("apps", "v1").expect("apps/v1 is served");
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(op["parameters"].to_string().contains("fieldValidation"));
    }
}
