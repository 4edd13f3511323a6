//! What the API server does to an object on its way into storage, as pure functions: name
//! and namespace checks, system metadata (`uid`, `creationTimestamp`, `generation`), the
//! status/spec split between a resource and its `status` subresource, and type defaults
//! (Service cluster IPs and node ports, Namespace phase, replicas).

use serde_json::{Map, Value, json};

use super::registry::ResourceDef;
use super::status::{ApiError, FieldError, FieldProblem};

/// Values the server decides at write time, injected so the rules stay pure.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub uid: String,
    pub now: String,
    /// A random suffix for `generateName`.
    pub suffix: String,
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// RBAC and a few other kinds accept any path-segment-safe name (e.g. `system:admin`).
fn is_path_segment_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '%'])
}

fn name_is_valid(def: &ResourceDef, name: &str) -> bool {
    if def.group == "rbac.authorization.k8s.io" {
        is_path_segment_name(name)
    } else {
        is_dns_subdomain(name)
    }
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let o = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body of the request must be a JSON object"))?;
    let m = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// Check apiVersion/kind against the resource the request addressed (filling them if
/// absent, as the server's decoder does from the URL).
fn check_type(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let o = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body of the request must be a JSON object"))?;
    match o.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("kind".into(), json!(def.kind));
        }
        Some(k) if k == def.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind {k:?} of the provided object does not match the resource {:?} ({})",
                def.plural, def.kind
            )));
        }
    }
    match o.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {}
        Some(av) => {
            let group = av.rsplit_once('/').map_or("", |(g, _)| g);
            if group != def.group {
                return Err(ApiError::bad_request(format!(
                    "the API version {av:?} of the provided object does not match the group {:?}",
                    def.group
                )));
            }
        }
    }
    o.insert("apiVersion".into(), json!(def.api_version()));
    Ok(())
}

/// Prepare a new object for storage.
pub fn prepare_create(
    def: &ResourceDef,
    path_namespace: Option<&str>,
    mut obj: Value,
    stamp: &Stamp,
) -> Result<Value, ApiError> {
    check_type(def, &mut obj)?;
    let kind = def.kind.clone();
    let meta = meta_mut(&mut obj)?;
    let name = match meta.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let n = format!("{prefix}{}", stamp.suffix);
                meta.insert("name".into(), json!(n));
                n
            }
            _ => {
                return Err(ApiError::invalid(
                    &kind,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        },
    };
    if !name_is_valid(def, &name) {
        return Err(ApiError::invalid(
            &kind,
            &name,
            format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        ));
    }
    if def.namespaced {
        let ns = path_namespace.ok_or_else(|| {
            ApiError::bad_request("a namespaced resource must be created in a namespace")
        })?;
        match meta.get("namespace").and_then(Value::as_str) {
            Some(b) if !b.is_empty() && b != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(stamp.uid));
    meta.insert("creationTimestamp".into(), json!(stamp.now));
    meta.insert("generation".into(), json!(1));
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if def.has_status
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    apply_schema(def, &kind, &name, &mut obj)?;
    validate(def, &kind, &name, &obj)?;
    defaults_on_create(def, &mut obj);
    Ok(obj)
}

/// A custom resource is pruned to its version's schema and refused for breaking it, on
/// every write (its status included), as kube-apiserver does.
fn apply_schema(
    def: &ResourceDef,
    kind: &str,
    name: &str,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let Some(schema) = &def.schema else {
        return Ok(());
    };
    crate::structural::prune(schema, obj);
    let errors = crate::structural::validate(schema, obj);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_fields(&def.group, kind, name, &errors))
    }
}

/// The few validations a real API server makes that manifests in the wild trip over.
fn validate(def: &ResourceDef, kind: &str, name: &str, obj: &Value) -> Result<(), ApiError> {
    if is_crd(def) {
        let errors = api_approval_errors(obj, None);
        if !errors.is_empty() {
            return Err(ApiError::invalid_fields(&def.group, kind, name, &errors));
        }
    }
    if (def.group.as_str(), def.plural.as_str()) == ("", "services") {
        let ty = obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
        let no_ports = obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if ty != "ExternalName" && !headless && no_ports {
            return Err(ApiError::invalid(kind, name, "spec.ports: Required value"));
        }
        validate_ip_families(kind, name, obj)?;
        validate_cluster_ip(kind, name, obj)?;
    }
    Ok(())
}

/// The service CIDR, 10.96.0.0/12 (kubeadm's default, the real control plane's
/// `--service-cluster-ip-range`, and where [`crate::Allocator::cluster_ip`] allocates): a
/// Service asking for a cluster IP outside it is refused, as kube-apiserver refuses it.
const SERVICE_CIDR: (std::net::Ipv4Addr, u32) = (std::net::Ipv4Addr::new(10, 96, 0, 0), 12);

fn validate_cluster_ip(kind: &str, name: &str, obj: &Value) -> Result<(), ApiError> {
    let Some(ip) = obj.pointer("/spec/clusterIP").and_then(Value::as_str) else {
        return Ok(());
    };
    if ip.is_empty() || ip == "None" {
        return Ok(());
    }
    let (base, bits) = SERVICE_CIDR;
    let mask = u32::MAX << (32 - bits);
    let in_range = ip
        .parse::<std::net::Ipv4Addr>()
        .is_ok_and(|a| u32::from(a) & mask == u32::from(base));
    if in_range {
        return Ok(());
    }
    Err(ApiError::invalid(
        kind,
        name,
        format!(
            "spec.clusterIPs: Invalid value: [{ip:?}]: failed to allocate IP {ip}: the provided network does not match the current range"
        ),
    ))
}

/// The one IP family this cluster's Services are allocated from: single-stack IPv4, as the
/// real control plane is started (`--service-cluster-ip-range=10.96.0.0/12`) and as most
/// managed clusters are. A Service asking for another family is refused as kube-apiserver
/// refuses it, whatever its `ipFamilyPolicy` (even `PreferDualStack` names families it needs).
const SERVICE_IP_FAMILY: &str = "IPv4";

fn validate_ip_families(kind: &str, name: &str, obj: &Value) -> Result<(), ApiError> {
    if obj.pointer("/spec/ipFamilyPolicy").and_then(Value::as_str) == Some("RequireDualStack") {
        return Err(ApiError::invalid(
            kind,
            name,
            "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services",
        ));
    }
    let families = obj.pointer("/spec/ipFamilies").and_then(Value::as_array);
    for (i, family) in families.into_iter().flatten().enumerate() {
        let family = family.as_str().unwrap_or_default();
        if family != SERVICE_IP_FAMILY {
            return Err(ApiError::invalid(
                kind,
                name,
                format!(
                    "spec.ipFamilies[{i}]: Invalid value: {family:?}: not configured on this cluster"
                ),
            ));
        }
    }
    Ok(())
}

fn is_crd(def: &ResourceDef) -> bool {
    (def.group.as_str(), def.plural.as_str())
        == ("apiextensions.k8s.io", "customresourcedefinitions")
}

/// The annotation a CRD in a Kubernetes-owned group must carry (KEP 1111).
pub const API_APPROVED_ANNOTATION: &str = "api-approved.kubernetes.io";

/// Groups the Kubernetes project owns: `k8s.io`, `kubernetes.io` and their subdomains
/// (apiextensions-apiserver `apihelpers.IsProtectedCommunityGroup`).
fn is_protected_community_group(group: &str) -> bool {
    ["k8s.io", "kubernetes.io"]
        .iter()
        .any(|g| group == *g || group.ends_with(&format!(".{g}")))
}

/// What a CRD's approval annotation says (apiextensions-apiserver
/// `apihelpers.GetAPIApprovalState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApprovalState {
    Missing,
    /// Starts with "unapproved": allowed, knowingly.
    Bypassed,
    /// A URL with a scheme and a host: the API review that approved it.
    Approved,
    Invalid,
}

fn approval_state(crd: &Value) -> ApprovalState {
    let annotation = crd
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(API_APPROVED_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if annotation.is_empty() {
        ApprovalState::Missing
    } else if annotation.starts_with("unapproved") {
        ApprovalState::Bypassed
    } else if is_url_with_host(annotation) {
        ApprovalState::Approved
    } else {
        ApprovalState::Invalid
    }
}

/// What Go's `url.ParseRequestURI` accepts with a non-empty scheme and host.
fn is_url_with_host(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    scheme_ok && !host.is_empty() && !s.contains(char::is_whitespace)
}

/// kube-apiserver refuses a CRD in a protected group without an approval annotation
/// (apiextensions-apiserver validation `validateAPIApproval`). An update that leaves the
/// approval state as it was is never refused, so a controller that only edits a CRD's spec
/// keeps working on one stored before the rule.
fn api_approval_errors(new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let group = new
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !is_protected_community_group(group) {
        return Vec::new();
    }
    let state = approval_state(new);
    if old.is_some_and(|o| approval_state(o) == state) {
        return Vec::new();
    }
    let field = format!("metadata.annotations[{API_APPROVED_ANNOTATION}]");
    let see = "see https://github.com/kubernetes/enhancements/pull/1111";
    match state {
        ApprovalState::Approved | ApprovalState::Bypassed => Vec::new(),
        ApprovalState::Missing => vec![FieldError {
            field,
            problem: FieldProblem::Required,
            detail: format!(
                "protected groups must have approval annotation {API_APPROVED_ANNOTATION:?}, {see}"
            ),
        }],
        ApprovalState::Invalid => vec![FieldError {
            field,
            problem: FieldProblem::Invalid(
                new.pointer("/metadata/annotations")
                    .and_then(|a| a.get(API_APPROVED_ANNOTATION))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            detail: format!(
                "protected groups must have approval annotation {API_APPROVED_ANNOTATION:?} with either a URL or a reason starting with \"unapproved\", {see}"
            ),
        }],
    }
}

/// Type-specific defaults that a real API server fills at creation.
fn defaults_on_create(def: &ResourceDef, obj: &mut Value) {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "namespaces") => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "persistentvolumes") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        ("", "persistentvolumeclaims") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        ("", "pods") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        ("apps", "deployments" | "statefulsets" | "replicasets") => {
            if obj.pointer("/spec/replicas").is_none()
                && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
            {
                spec.insert("replicas".into(), json!(1));
            }
        }
        ("", "services") => {
            if obj.pointer("/spec/type").is_none()
                && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
            {
                spec.insert("type".into(), json!("ClusterIP"));
            }
        }
        _ => {}
    }
}

/// The parts of an object that make its `generation` move: everything but metadata and
/// status.
fn spec_part(v: &Value) -> Value {
    match v.as_object() {
        Some(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => Value::Null,
    }
}

/// Which part of an object an update addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateScope {
    Main,
    Status,
}

/// Prepare a replacement for `current`. Enforces optimistic concurrency (when the new
/// object names a resourceVersion), keeps system metadata, and splits spec/status.
pub fn prepare_update(
    def: &ResourceDef,
    current: &Value,
    mut new: Value,
    scope: UpdateScope,
) -> Result<Value, ApiError> {
    check_type(def, &mut new)?;
    let name = meta_str(current, "name").unwrap_or_default().to_owned();
    let cur_rv = meta_str(current, "resourceVersion").unwrap_or_default();
    match meta_str(&new, "resourceVersion") {
        Some(rv) if !rv.is_empty() && rv != cur_rv => {
            return Err(ApiError::conflict(&resource_name(def), &name));
        }
        _ => {}
    }
    match meta_str(&new, "name") {
        Some(n) if !n.is_empty() && n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    if let Some(uid) = meta_str(&new, "uid")
        && !uid.is_empty()
        && Some(uid) != meta_str(current, "uid")
    {
        return Err(ApiError::conflict(&resource_name(def), &name));
    }
    let mut out = match scope {
        UpdateScope::Main => {
            let mut out = new;
            if def.has_status {
                match current.get("status") {
                    Some(s) => out["status"] = s.clone(),
                    None => {
                        if let Some(o) = out.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            out
        }
        UpdateScope::Status => {
            let mut out = current.clone();
            match new.get("status") {
                Some(s) => out["status"] = s.clone(),
                None => {
                    if let Some(o) = out.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            out
        }
    };
    let cur_meta = current.get("metadata").cloned().unwrap_or(json!({}));
    let meta = meta_mut(&mut out)?;
    for keep in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match cur_meta.get(keep) {
            Some(v) => {
                meta.insert(keep.into(), v.clone());
            }
            None => {
                meta.remove(keep);
            }
        }
    }
    let generation = cur_meta
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    apply_schema(def, &def.kind, &name, &mut out)?;
    if is_crd(def) {
        let errors = api_approval_errors(&out, Some(current));
        if !errors.is_empty() {
            return Err(ApiError::invalid_fields(
                &def.group, &def.kind, &name, &errors,
            ));
        }
    }
    let changed = spec_part(current) != spec_part(&out);
    let meta = meta_mut(&mut out)?;
    meta.insert(
        "generation".into(),
        json!(if changed { generation + 1 } else { generation }),
    );
    if current
        .get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some()
    {
        // Finalizers may only be removed from an object being deleted, not added.
        let before: Vec<Value> = cur_meta
            .get("finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let after: Vec<Value> = meta
            .get("finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if after.iter().any(|f| !before.contains(f)) {
            return Err(ApiError::forbidden(format!(
                "no new finalizers can be added if the object is being deleted, found new finalizers in {name}"
            )));
        }
    }
    Ok(out)
}

/// Whether an object is waiting on finalizers after a delete and has none left.
pub fn ready_to_remove(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
        && obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
}

pub fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// The resource name as the API server puts it in messages (`deployments.apps`).
pub fn resource_name(def: &ResourceDef) -> String {
    if def.group.is_empty() {
        def.plural.clone()
    } else {
        format!("{}.{}", def.plural, def.group)
    }
}

/// Read a dotted JSON path (`.spec.replicas`, `.status.loadBalancer.ingress[0].ip`).
pub fn json_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path.trim_start_matches('.').split('.') {
        if seg.is_empty() {
            continue;
        }
        let (field, index) = match seg.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// Write a dotted JSON path, creating objects on the way.
pub fn set_json_path(v: &mut Value, path: &str, value: Value) {
    let segs: Vec<&str> = path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect();
    let mut cur = v;
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == segs.len() {
            obj.insert((*seg).to_owned(), value);
            return;
        }
        cur = obj.entry((*seg).to_owned()).or_insert_with(|| json!({}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn stamp() -> Stamp {
        Stamp {
            uid: "u-1".into(),
            now: "2026-01-01T00:00:00Z".into(),
            suffix: "abcde".into(),
        }
    }

    fn def(g: &str, v: &str, p: &str) -> ResourceDef {
        Registry::new().get(g, v, p).cloned().expect("builtin")
    }

    fn crd(group: &str, approval: Option<&str>) -> Value {
        let mut c = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("widgets.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}}}]},
        });
        if let Some(a) = approval {
            c["metadata"]["annotations"] = json!({API_APPROVED_ANNOTATION: a});
        }
        c
    }

    fn create_crd(c: Value) -> Result<Value, ApiError> {
        prepare_create(
            &def("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
            None,
            c,
            &stamp(),
        )
    }

    #[test]
    fn a_crd_in_a_kubernetes_owned_group_without_approval_is_refused_as_kube_apiserver_words_it() {
        let e = create_crd(crd("widgets.k8s.io", None)).expect_err("refused");
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "CustomResourceDefinition.apiextensions.k8s.io \"widgets.widgets.k8s.io\" is invalid: \
             metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must \
             have approval annotation \"api-approved.kubernetes.io\", see \
             https://github.com/kubernetes/enhancements/pull/1111"
        );
        let cause = &e.details.as_ref().expect("details")["causes"][0];
        assert_eq!(cause["reason"], "FieldValueRequired");
        assert_eq!(
            cause["field"],
            "metadata.annotations[api-approved.kubernetes.io]"
        );
    }

    #[test]
    fn crd_approval_accepts_a_url_or_unapproved_and_ignores_other_groups() {
        for (group, approval, ok) in [
            (
                "widgets.k8s.io",
                Some("https://github.com/kubernetes/enhancements/pull/1111"),
                true,
            ),
            ("widgets.k8s.io", Some("unapproved, experimental"), true),
            ("x.kubernetes.io", None, false),
            ("kubernetes.io", None, false),
            ("k8s.io", Some("approved"), false),
            (
                "widgets.k8s.io",
                Some("github.com/kubernetes/enhancements"),
                false,
            ),
            ("notk8s.io", None, true),
            ("example.com", None, true),
        ] {
            assert_eq!(
                create_crd(crd(group, approval)).is_ok(),
                ok,
                "{group} {approval:?}"
            );
        }
        let e = create_crd(crd("widgets.k8s.io", Some("bad value"))).expect_err("invalid");
        assert!(
            e.message.ends_with(
                "metadata.annotations[api-approved.kubernetes.io]: Invalid value: \"bad value\": \
                 protected groups must have approval annotation \"api-approved.kubernetes.io\" with \
                 either a URL or a reason starting with \"unapproved\", see \
                 https://github.com/kubernetes/enhancements/pull/1111"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_crd_update_that_keeps_its_approval_state_is_never_refused() {
        let d = def("apiextensions.k8s.io", "v1", "customresourcedefinitions");
        let stored = crd("widgets.k8s.io", Some("https://example.com/review"));
        let mut edited = stored.clone();
        edited["spec"]["names"]["shortNames"] = json!(["wd"]);
        assert!(prepare_update(&d, &stored, edited, UpdateScope::Main).is_ok());
        let mut dropped = stored.clone();
        dropped["metadata"]["annotations"] = json!({});
        let e = prepare_update(&d, &stored, dropped, UpdateScope::Main).expect_err("missing");
        assert_eq!(e.code, 422);
    }

    #[test]
    fn create_fills_system_metadata_and_the_path_namespace() {
        let d = def("", "v1", "configmaps");
        let out = prepare_create(
            &d,
            Some("ns1"),
            json!({"metadata": {"name": "a"}, "data": {}}),
            &stamp(),
        )
        .expect("valid");
        assert_eq!(out["metadata"]["namespace"], "ns1");
        assert_eq!(out["metadata"]["uid"], "u-1");
        assert_eq!(out["metadata"]["generation"], 1);
        assert_eq!(out["apiVersion"], "v1");
        assert_eq!(out["kind"], "ConfigMap");
    }

    #[test]
    fn generate_name_gets_a_random_suffix() {
        let d = def("", "v1", "configmaps");
        let out = prepare_create(
            &d,
            Some("ns"),
            json!({"metadata": {"generateName": "job-"}}),
            &stamp(),
        )
        .expect("valid");
        assert_eq!(out["metadata"]["name"], "job-abcde");
    }

    #[test]
    fn create_rejects_bad_names_kinds_and_namespaces() {
        let d = def("", "v1", "configmaps");
        let cases = [
            (json!({"metadata": {"name": "Bad_Name"}}), 422),
            (json!({"metadata": {}}), 422),
            (json!({"kind": "Secret", "metadata": {"name": "a"}}), 400),
            (
                json!({"metadata": {"name": "a", "namespace": "other"}}),
                400,
            ),
        ];
        for (body, code) in cases {
            let err = prepare_create(&d, Some("ns"), body.clone(), &stamp())
                .expect_err("must be rejected");
            assert_eq!(err.code, code, "{body}");
        }
    }

    #[test]
    fn a_service_asking_for_a_family_the_single_stack_cluster_lacks_is_invalid() {
        let d = def("", "v1", "services");
        let service = |spec: Value| {
            let mut spec = spec;
            spec["ports"] = json!([{"port": 80}]);
            prepare_create(
                &d,
                Some("ns"),
                json!({"metadata": {"name": "s"}, "spec": spec}),
                &stamp(),
            )
        };
        for spec in [
            json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6"]}),
            json!({"ipFamilies": ["IPv4", "IPv6"]}),
            json!({"ipFamilyPolicy": "RequireDualStack"}),
        ] {
            let err = service(spec.clone()).expect_err("refused");
            assert_eq!(err.code, 422, "{spec}");
        }
        service(json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"]}))
            .expect("IPv4 is what the cluster has");
    }

    #[test]
    fn a_service_asking_for_a_cluster_ip_outside_the_service_range_is_invalid() {
        let d = def("", "v1", "services");
        let service = |ip: &str| {
            prepare_create(
                &d,
                Some("ns"),
                json!({"metadata": {"name": "s"},
                       "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}),
                &stamp(),
            )
        };
        let err = service("10.0.171.239").expect_err("outside 10.96.0.0/12");
        assert_eq!(err.code, 422);
        for ip in ["10.96.0.10", "10.111.255.254", "None", ""] {
            service(ip).unwrap_or_else(|e| panic!("{ip:?} is allowed: {e}"));
        }
    }

    #[test]
    fn a_stale_resource_version_is_a_conflict() {
        let d = def("", "v1", "configmaps");
        let cur = json!({"metadata": {"name": "a", "resourceVersion": "5", "uid": "u"}});
        let err = prepare_update(
            &d,
            &cur,
            json!({"metadata": {"name": "a", "resourceVersion": "4"}}),
            UpdateScope::Main,
        )
        .expect_err("conflict");
        assert_eq!(err.code, 409);
        assert_eq!(err.reason, "Conflict");
    }

    #[test]
    fn a_main_update_keeps_status_and_a_status_update_keeps_spec() {
        let d = def("apps", "v1", "deployments");
        let cur = json!({"metadata": {"name": "a", "generation": 1},
                         "spec": {"replicas": 1}, "status": {"readyReplicas": 1}});
        let main = prepare_update(
            &d,
            &cur,
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 2}, "status": {}}),
            UpdateScope::Main,
        )
        .expect("valid");
        assert_eq!(main["status"]["readyReplicas"], 1);
        assert_eq!(main["metadata"]["generation"], 2, "spec changed");
        let status = prepare_update(
            &d,
            &cur,
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 9}, "status": {"readyReplicas": 0}}),
            UpdateScope::Status,
        )
        .expect("valid");
        assert_eq!(status["spec"]["replicas"], 1);
        assert_eq!(status["status"]["readyReplicas"], 0);
        assert_eq!(status["metadata"]["generation"], 1);
    }

    #[test]
    fn json_paths_read_nested_fields_and_list_items() {
        let v = json!({"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
        assert_eq!(
            json_path(&v, ".status.loadBalancer.ingress[0].ip"),
            Some(&json!("1.2.3.4"))
        );
        assert_eq!(json_path(&v, ".spec.x"), None);
        let mut w = json!({});
        set_json_path(&mut w, ".spec.replicas", json!(3));
        assert_eq!(w, json!({"spec": {"replicas": 3}}));
    }
}
