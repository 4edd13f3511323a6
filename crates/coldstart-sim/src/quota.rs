//! ResourceQuota, as pure rules: what an object uses (the quota evaluators of
//! `pkg/quota/v1/evaluator/core`: pods, claims, services, and object counts), whether a
//! namespace's quotas admit a new object (the admission plugin's `CheckRequest` in
//! `plugin/pkg/admission/resourcequota/controller.go`, with its wording), and what a quota's
//! `status` says once kube-controller-manager has recounted. The API server's shell
//! (`apiserver`) reads the namespace, calls these, and writes.
//!
//! Quantities are Kubernetes' (`500m`, `1Gi`, `2k`), added exactly and printed in canonical
//! form, so a refusal reads as kube-apiserver's does (an exponent form such as `1e3` is
//! read, but printed with an SI suffix where Go keeps the exponent). Only creates are charged (an update
//! that grows a claim is not), and of quota scopes only the four that depend on the pod
//! alone (`Terminating`, `NotTerminating`, `BestEffort`, `NotBestEffort`) are understood; a
//! quota with any other scope is not enforced.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Value, json};

/// How a quantity is printed: with a power-of-1024 suffix (`Mi`) or a power-of-1000 one
/// (`m`, `k`), as it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    BinarySi,
    DecimalSi,
}

/// A Kubernetes resource quantity, exact to the nano-unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn zero() -> Self {
        Quantity {
            nanos: 0,
            format: Format::DecimalSi,
        }
    }

    pub fn count(n: i64) -> Self {
        Quantity {
            nanos: i128::from(n) * NANO,
            format: Format::DecimalSi,
        }
    }

    /// Parse `1.5Gi`, `500m`, `2`, `1e3`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        let (negative, number) = match number.as_bytes().first() {
            Some(b'-') => (true, &number[1..]),
            Some(b'+') => (false, &number[1..]),
            _ => (false, number),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && frac.is_empty()
            || !whole
                .bytes()
                .chain(frac.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let digits: i128 = format!("{whole}{frac}").parse().ok()?;
        let scale = i32::try_from(frac.len()).ok()?;
        let (format, base, exponent): (Format, i32, i32) = match suffix {
            "Ki" => (Format::BinarySi, 1024, 1),
            "Mi" => (Format::BinarySi, 1024, 2),
            "Gi" => (Format::BinarySi, 1024, 3),
            "Ti" => (Format::BinarySi, 1024, 4),
            "Pi" => (Format::BinarySi, 1024, 5),
            "Ei" => (Format::BinarySi, 1024, 6),
            "n" => (Format::DecimalSi, 10, -9),
            "u" => (Format::DecimalSi, 10, -6),
            "m" => (Format::DecimalSi, 10, -3),
            "" => (Format::DecimalSi, 10, 0),
            "k" => (Format::DecimalSi, 10, 3),
            "M" => (Format::DecimalSi, 10, 6),
            "G" => (Format::DecimalSi, 10, 9),
            "T" => (Format::DecimalSi, 10, 12),
            "P" => (Format::DecimalSi, 10, 15),
            "E" => (Format::DecimalSi, 10, 18),
            e if e.starts_with(['e', 'E']) => (Format::DecimalSi, 10, e[1..].parse().ok()?),
            _ => return None,
        };
        // value = digits × 10^-scale × base^exponent, in nano-units, rounded up as Go's
        // Quantity rounds what it cannot hold.
        let mut num = digits.checked_mul(NANO)?;
        let mut den: i128 = 10i128.checked_pow(scale.unsigned_abs())?;
        if base == 1024 {
            num = num.checked_mul(1024i128.checked_pow(exponent.unsigned_abs())?)?;
        } else if exponent >= 0 {
            num = num.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?)?;
        } else {
            den = den.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?)?;
        }
        let nanos = (num + den - 1) / den;
        Some(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }
}

/// The sum, printed as the left side is unless it is zero (Go's `Quantity.Add`).
impl std::ops::Add for Quantity {
    type Output = Quantity;

    fn add(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos + other.nanos,
            format: if self.is_zero() {
                other.format
            } else {
                self.format
            },
        }
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.nanos.cmp(&other.nanos))
    }
}

/// Canonical form, as Go's `Quantity.String`: `0`, `500m`, `1`, `2k`, `1536`, `128Mi`. A
/// binary quantity below 1Ki or not whole prints in decimal, so nothing is rounded.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let whole = self.nanos % NANO == 0;
        if self.format == Format::BinarySi && whole && self.nanos.abs() >= 1024 * NANO {
            let mut amount = self.nanos / NANO;
            let mut exponent = 0;
            while amount % 1024 == 0 && exponent < 6 {
                amount /= 1024;
                exponent += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exponent];
            return write!(f, "{amount}{suffix}");
        }
        // Decimal: drop factors of ten, then step back to a multiple of three.
        let mut amount = self.nanos;
        let mut exponent: i32 = -9;
        while amount % 10 == 0 {
            amount /= 10;
            exponent += 1;
        }
        while exponent.rem_euclid(3) != 0 {
            amount *= 10;
            exponent -= 1;
        }
        let suffix = match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            e => return write!(f, "{amount}e{e}"),
        };
        write!(f, "{amount}{suffix}")
    }
}

/// Quantities by resource name (`requests.cpu`, `count/pods`), in name order.
pub type ResourceList = BTreeMap<String, Quantity>;

fn add_into(list: &mut ResourceList, name: &str, q: Quantity) {
    let cur = list.get(name).copied().unwrap_or_else(Quantity::zero);
    list.insert(name.to_owned(), cur + q);
}

/// `key=value,…` in name order, as the admission plugin's `prettyPrint`.
fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `ResourceList` from JSON (`{"cpu": "1", "memory": "1Gi"}`); unparseable values are left
/// out, as validation would have refused them.
pub fn resource_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str()?)?)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), json!(v.to_string())))
            .collect(),
    )
}

/// The resource names that, when quota'd, every container must state (the pod evaluator's
/// `validationSet`: a compatibility rule from before QoS classes).
const MUST_SPECIFY: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// A container's requests, with each limit that has no request standing in for it, as the
/// API server defaults a pod on creation.
fn requests_of(container: &Value) -> ResourceList {
    let mut requests = resource_list(container.pointer("/resources/requests"));
    for (k, v) in resource_list(container.pointer("/resources/limits")) {
        requests.entry(k).or_insert(v);
    }
    requests
}

/// What requests and limits amount to (`podComputeUsageHelper`).
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), Quantity::count(1));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            out.insert(r.into(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), *q);
        }
    }
    out
}

fn container_usage(container: &Value) -> ResourceList {
    let limits = resource_list(container.pointer("/resources/limits"));
    compute_usage(&requests_of(container), &limits)
}

fn containers<'a>(pod: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A pod's requests or limits: its containers' sum, or its largest init container's where
/// that is more (init containers run one at a time, before the others).
fn pod_resources(pod: &Value, which: &str) -> ResourceList {
    let of = |c: &Value| match which {
        "requests" => requests_of(c),
        _ => resource_list(c.pointer(&format!("/resources/{which}"))),
    };
    let mut sum = ResourceList::new();
    for c in containers(pod, "containers") {
        for (k, v) in of(c) {
            add_into(&mut sum, &k, v);
        }
    }
    for c in containers(pod, "initContainers") {
        for (k, v) in of(c) {
            if sum.get(&k).is_none_or(|s| v > *s) {
                sum.insert(k, v);
            }
        }
    }
    sum
}

fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

fn is_terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s >= 0)
}

fn is_best_effort(pod: &Value) -> bool {
    containers(pod, "containers")
        .chain(containers(pod, "initContainers"))
        .all(|c| {
            ["requests", "limits"].iter().all(|w| {
                resource_list(c.pointer(&format!("/resources/{w}")))
                    .keys()
                    .all(|k| k != "cpu" && k != "memory")
            })
        })
}

/// What a pod uses (`PodUsageFunc`): always its object count; its compute resources only
/// while it is not finished.
fn pod_usage(pod: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("count/pods".into(), Quantity::count(1));
    if is_terminal(pod) {
        return out;
    }
    let compute = compute_usage(
        &pod_resources(pod, "requests"),
        &pod_resources(pod, "limits"),
    );
    out.extend(compute);
    out
}

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

fn claim_usage(pvc: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    let one = Quantity::count(1);
    out.insert("count/persistentvolumeclaims".into(), one);
    out.insert("persistentvolumeclaims".into(), one);
    let storage = pvc
        .pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .and_then(Quantity::parse);
    if let Some(q) = storage {
        out.insert("requests.storage".into(), q);
    }
    if let Some(sc) = crate::controllers::storage::claim_class(pvc).filter(|s| !s.is_empty()) {
        out.insert(
            format!("{sc}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            one,
        );
        if let Some(q) = storage {
            out.insert(format!("{sc}{STORAGE_CLASS_SUFFIX}requests.storage"), q);
        }
    }
    out
}

fn service_usage(svc: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    let one = Quantity::count(1);
    out.insert("count/services".into(), one);
    out.insert("services".into(), one);
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ports = i64::try_from(ports).unwrap_or(i64::MAX);
    match ty {
        "LoadBalancer" => {
            out.insert("services.loadbalancers".into(), one);
            out.insert("services.nodeports".into(), Quantity::count(ports));
        }
        "NodePort" => {
            out.insert("services.nodeports".into(), Quantity::count(ports));
        }
        _ => {}
    }
    out
}

/// The object-count name of a resource: `count/pods`, `count/deployments.apps`.
fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// Core resources whose count also has a bare name, from before `count/…`.
const LEGACY_COUNTS: [&str; 4] = [
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
];

/// What one object of `group`/`plural` uses, in every name a quota may limit it by.
pub fn usage(group: &str, plural: &str, obj: &Value) -> ResourceList {
    match (group, plural) {
        ("", "pods") => pod_usage(obj),
        ("", "persistentvolumeclaims") => claim_usage(obj),
        ("", "services") => service_usage(obj),
        _ => {
            let mut out = ResourceList::new();
            out.insert(count_name(group, plural), Quantity::count(1));
            if group.is_empty() && LEGACY_COUNTS.contains(&plural) {
                out.insert(plural.to_owned(), Quantity::count(1));
            }
            out
        }
    }
}

/// Whether a quota limited by `name` counts objects of `group`/`plural`.
pub fn counts(name: &str, group: &str, plural: &str) -> bool {
    let specific = match (group, plural) {
        ("", "pods") => {
            name == "pods"
                || MUST_SPECIFY.contains(&name)
                || matches!(
                    name,
                    "ephemeral-storage" | "requests.ephemeral-storage" | "limits.ephemeral-storage"
                )
        }
        ("", "persistentvolumeclaims") => {
            matches!(name, "persistentvolumeclaims" | "requests.storage")
                || name.contains(STORAGE_CLASS_SUFFIX)
        }
        ("", "services") => name.starts_with("services"),
        ("", p) => LEGACY_COUNTS.contains(&p) && name == p,
        _ => false,
    };
    specific || name == count_name(group, plural)
}

/// The resources whose objects a quota limited by `names` counts, as (group, plural) for
/// the core kinds and `count/` names.
pub fn counted_resources<'a>(
    names: impl IntoIterator<Item = &'a String>,
) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for name in names {
        for (g, p) in [
            ("", "pods"),
            ("", "persistentvolumeclaims"),
            ("", "services"),
        ] {
            if counts(name, g, p) {
                out.insert((g.to_owned(), p.to_owned()));
            }
        }
        if let Some(rest) = name.strip_prefix("count/") {
            let (plural, group) = rest.split_once('.').unwrap_or((rest, ""));
            out.insert((group.to_owned(), plural.to_owned()));
        } else if LEGACY_COUNTS.contains(&name.as_str()) {
            out.insert((String::new(), name.clone()));
        }
    }
    out
}

/// One ResourceQuota as admission and the recount read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    pub name: String,
    pub hard: ResourceList,
    pub used: ResourceList,
    pub scopes: Vec<String>,
}

impl Quota {
    /// Read a stored ResourceQuota: `hard` from its status once counted, else its spec.
    pub fn from_object(obj: &Value) -> Self {
        let status_hard = resource_list(obj.pointer("/status/hard"));
        Quota {
            name: obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            hard: if status_hard.is_empty() {
                resource_list(obj.pointer("/spec/hard"))
            } else {
                status_hard
            },
            used: resource_list(obj.pointer("/status/used")),
            scopes: obj
                .pointer("/spec/scopes")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether this quota governs the object (its scopes all match it).
    fn matches(&self, group: &str, plural: &str, obj: &Value) -> bool {
        self.scopes.iter().all(|scope| {
            (group, plural) == ("", "pods")
                && match scope.as_str() {
                    "Terminating" => is_terminating(obj),
                    "NotTerminating" => !is_terminating(obj),
                    "BestEffort" => is_best_effort(obj),
                    "NotBestEffort" => !is_best_effort(obj),
                    _ => false,
                }
        })
    }

    /// The names this quota limits that apply to objects of `group`/`plural`.
    fn tracked(&self, group: &str, plural: &str) -> Vec<&String> {
        self.hard
            .keys()
            .filter(|n| counts(n, group, plural))
            .collect()
    }
}

/// Why quota admission refused a create: the text after `pods "x" is forbidden: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The pod evaluator's `Constraints`: with cpu or memory quota'd, each container must state
/// it. Worded as kube-apiserver 1.33+ does, naming the containers that did not.
fn pod_constraints(tracked: &[&String], pod: &Value) -> Result<(), String> {
    let required: BTreeSet<&str> = tracked
        .iter()
        .map(|s| s.as_str())
        .filter(|s| MUST_SPECIFY.contains(s))
        .collect();
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for c in containers(pod, "containers").chain(containers(pod, "initContainers")) {
        let has = container_usage(c);
        for r in &required {
            if !has.contains_key(*r) {
                let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                missing.entry(r).or_default().insert(name.to_owned());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// Quota admission of one create (`CheckRequest`): refused when a governing quota's
/// constraints fail or the object would take any limited resource past `hard`; otherwise
/// each governing quota's new `used` (its index among `quotas`), as admission reserves it.
pub fn admit(
    quotas: &[Quota],
    group: &str,
    plural: &str,
    obj: &Value,
) -> Result<Vec<(usize, ResourceList)>, Refusal> {
    let mut governing = Vec::new();
    for (i, q) in quotas.iter().enumerate() {
        if !q.matches(group, plural, obj) {
            continue;
        }
        let tracked = q.tracked(group, plural);
        if tracked.is_empty() {
            continue;
        }
        if (group, plural) == ("", "pods") {
            pod_constraints(&tracked, obj)
                .map_err(|e| Refusal(format!("failed quota: {}: {e}", q.name)))?;
        }
        governing.push(i);
    }
    let delta = usage(group, plural, obj);
    let mut reserved = Vec::new();
    for i in governing {
        let q = &quotas[i];
        let requested: ResourceList = delta
            .iter()
            .filter(|(k, v)| q.hard.contains_key(*k) && !v.is_zero())
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if requested.is_empty() {
            continue;
        }
        let used_of = |k: &str| q.used.get(k).copied().unwrap_or_else(Quantity::zero);
        let exceeded: Vec<&String> = requested
            .iter()
            .filter(|(k, v)| used_of(k) + **v > q.hard[*k])
            .map(|(k, _)| k)
            .collect();
        if !exceeded.is_empty() {
            let pick = |list: &dyn Fn(&str) -> Quantity| -> ResourceList {
                exceeded.iter().map(|k| ((*k).clone(), list(k))).collect()
            };
            return Err(Refusal(format!(
                "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                q.name,
                pretty(&pick(&|k| requested[k])),
                pretty(&pick(&used_of)),
                pretty(&pick(&|k| q.hard[k])),
            )));
        }
        let mut used = q.used.clone();
        for (k, v) in &requested {
            add_into(&mut used, k, *v);
        }
        reserved.push((i, used));
    }
    Ok(reserved)
}

/// The recount kube-controller-manager's resource-quota controller makes: every limited
/// name, zero when nothing uses it, summed over the objects the quota governs.
pub fn recount<'a>(
    quota: &Quota,
    objects: impl IntoIterator<Item = (&'a str, &'a str, &'a Value)>,
) -> ResourceList {
    let mut used: ResourceList = quota
        .hard
        .keys()
        .map(|k| (k.clone(), Quantity::zero()))
        .collect();
    for (group, plural, obj) in objects {
        if !quota.matches(group, plural, obj) {
            continue;
        }
        for (k, v) in usage(group, plural, obj) {
            if quota.hard.contains_key(&k) {
                add_into(&mut used, &k, v);
            }
        }
    }
    used
}

/// The status kube-controller-manager writes: `hard` as the spec says, `used` as counted.
pub fn status(quota: &Quota, used: &ResourceList) -> Value {
    json!({"hard": to_json(&quota.hard), "used": to_json(used)})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|| panic!("{s} parses"))
    }

    /// A pod fixture: containers by (name, requests, limits).
    struct PodBuilder(Value);

    impl PodBuilder {
        fn new() -> Self {
            PodBuilder(json!({"metadata": {"name": "web"}, "spec": {"containers": []}}))
        }

        fn container(mut self, name: &str, requests: Value, limits: Value) -> Self {
            let c = json!({"name": name, "resources": {"requests": requests, "limits": limits}});
            self.0["spec"]["containers"]
                .as_array_mut()
                .expect("containers")
                .push(c);
            self
        }

        fn phase(mut self, phase: &str) -> Self {
            self.0["status"] = json!({"phase": phase});
            self
        }

        fn build(self) -> Value {
            self.0
        }
    }

    fn quota(hard: Value, used: Value) -> Quota {
        Quota::from_object(&json!({"metadata": {"name": "compute"},
            "spec": {"hard": hard}, "status": {"hard": hard, "used": used}}))
    }

    #[test]
    fn quantities_parse_add_and_print_in_canonical_form() {
        for (input, shown) in [
            ("0", "0"),
            ("500m", "500m"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("2000", "2k"),
            ("1500", "1500"),
            ("128Mi", "128Mi"),
            ("1024Mi", "1Gi"),
            ("1536", "1536"),
            ("1.5Gi", "1536Mi"),
            ("10G", "10G"),
            ("512", "512"),
        ] {
            assert_eq!(q(input).to_string(), shown, "{input}");
        }
        assert_eq!((q("500m") + q("500m")).to_string(), "1");
        assert_eq!((q("128Mi") + q("128Mi")).to_string(), "256Mi");
        assert_eq!((Quantity::zero() + q("1Gi")).to_string(), "1Gi");
        assert!(q("1Gi") > q("1000M"));
        assert_eq!(Quantity::parse("lots"), None);
        assert_eq!(Quantity::parse("1Qi"), None);
    }

    #[test]
    fn a_pod_uses_its_containers_requests_and_limits_and_a_finished_one_only_its_count() {
        let pod = PodBuilder::new()
            .container(
                "app",
                json!({"cpu": "250m", "memory": "64Mi"}),
                json!({"cpu": "1"}),
            )
            .container("sidecar", json!({"cpu": "250m"}), json!({}))
            .build();
        let u = usage("", "pods", &pod);
        assert_eq!(u["requests.cpu"].to_string(), "500m");
        assert_eq!(u["cpu"].to_string(), "500m");
        assert_eq!(u["requests.memory"].to_string(), "64Mi");
        assert_eq!(u["limits.cpu"].to_string(), "1");
        assert_eq!(u["pods"].to_string(), "1");
        let done = usage("", "pods", &PodBuilder::new().phase("Succeeded").build());
        assert_eq!(done.keys().collect::<Vec<_>>(), ["count/pods"]);
    }

    #[test]
    fn a_limit_without_a_request_counts_as_the_request_as_the_api_server_defaults_it() {
        let pod = PodBuilder::new()
            .container("app", json!({}), json!({"cpu": "1", "memory": "1Gi"}))
            .build();
        let compute = quota(json!({"requests.cpu": "2"}), json!({"requests.cpu": "0"}));
        assert!(admit(&[compute], "", "pods", &pod).is_ok());
        assert_eq!(
            usage("", "pods", &pod)["requests.memory"].to_string(),
            "1Gi"
        );
    }

    #[test]
    fn a_pod_missing_a_quotad_request_is_refused_naming_each_container() {
        let pod = PodBuilder::new()
            .container("app", json!({"cpu": "100m"}), json!({}))
            .container("sidecar", json!({}), json!({}))
            .build();
        let compute = quota(
            json!({"requests.cpu": "1", "limits.memory": "1Gi"}),
            json!({"requests.cpu": "0", "limits.memory": "0"}),
        );
        assert_eq!(
            admit(&[compute], "", "pods", &pod),
            Err(Refusal(
                "failed quota: compute: must specify limits.memory for: app,sidecar; requests.cpu for: sidecar"
                    .into()
            ))
        );
    }

    #[test]
    fn a_create_past_hard_is_refused_with_what_was_requested_used_and_limited() {
        let pod = PodBuilder::new()
            .container("app", json!({"cpu": "600m", "memory": "64Mi"}), json!({}))
            .build();
        let compute = quota(
            json!({"requests.cpu": "1", "requests.memory": "1Gi"}),
            json!({"requests.cpu": "500m", "requests.memory": "0"}),
        );
        assert_eq!(
            admit(&[compute], "", "pods", &pod),
            Err(Refusal(
                "exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"
                    .into()
            ))
        );
    }

    #[test]
    fn an_admitted_create_reserves_its_usage_in_each_governing_quota() {
        let pod = PodBuilder::new()
            .container("app", json!({"cpu": "400m"}), json!({}))
            .build();
        let compute = quota(
            json!({"requests.cpu": "1", "pods": "3"}),
            json!({"requests.cpu": "500m", "pods": "1"}),
        );
        let counts = quota(json!({"count/configmaps": "1"}), json!({}));
        let reserved = admit(&[compute, counts], "", "pods", &pod).expect("fits");
        assert_eq!(reserved.len(), 1);
        assert_eq!(reserved[0].0, 0);
        assert_eq!(reserved[0].1["requests.cpu"].to_string(), "900m");
        assert_eq!(reserved[0].1["pods"].to_string(), "2");
    }

    #[test]
    fn object_counts_claims_storage_and_load_balancers_are_limited() {
        let objects = quota(
            json!({"persistentvolumeclaims": "1", "requests.storage": "10Gi",
                   "services.loadbalancers": "0", "count/configmaps": "1",
                   "count/deployments.apps": "5"}),
            json!({"persistentvolumeclaims": "0", "requests.storage": "0",
                   "services.loadbalancers": "0", "count/configmaps": "1",
                   "count/deployments.apps": "0"}),
        );
        let claim = json!({"spec": {"resources": {"requests": {"storage": "20Gi"}}}});
        assert_eq!(
            admit(std::slice::from_ref(&objects), "", "persistentvolumeclaims", &claim),
            Err(Refusal(
                "exceeded quota: compute, requested: requests.storage=20Gi, used: requests.storage=0, limited: requests.storage=10Gi"
                    .into()
            ))
        );
        let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        assert!(admit(std::slice::from_ref(&objects), "", "services", &lb).is_err());
        let cip = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
        assert!(admit(std::slice::from_ref(&objects), "", "services", &cip).is_ok());
        assert!(admit(std::slice::from_ref(&objects), "", "configmaps", &json!({})).is_err());
        assert!(
            admit(
                std::slice::from_ref(&objects),
                "apps",
                "deployments",
                &json!({})
            )
            .is_ok()
        );
        assert!(admit(std::slice::from_ref(&objects), "", "secrets", &json!({})).is_ok());
    }

    #[test]
    fn the_recount_sums_what_the_quota_governs_and_shows_zero_for_the_unused() {
        let compute = quota(
            json!({"requests.cpu": "2", "limits.memory": "2Gi", "count/pods": "10"}),
            json!({}),
        );
        let a = PodBuilder::new()
            .container("a", json!({"cpu": "250m"}), json!({"memory": "128Mi"}))
            .build();
        let b = PodBuilder::new()
            .container("b", json!({"cpu": "250m"}), json!({}))
            .phase("Failed")
            .build();
        let used = recount(&compute, [("", "pods", &a), ("", "pods", &b)]);
        assert_eq!(
            to_json(&used),
            json!({"requests.cpu": "250m", "limits.memory": "128Mi", "count/pods": "2"})
        );
        let empty = recount(&compute, []);
        assert_eq!(empty["requests.cpu"].to_string(), "0");
    }

    #[test]
    fn scoped_quotas_govern_only_the_pods_their_scopes_match() {
        let best_effort = Quota {
            scopes: vec!["BestEffort".into()],
            ..quota(json!({"pods": "0"}), json!({"pods": "0"}))
        };
        let plain = PodBuilder::new()
            .container("a", json!({}), json!({}))
            .build();
        let sized = PodBuilder::new()
            .container("a", json!({"cpu": "1"}), json!({}))
            .build();
        assert!(admit(std::slice::from_ref(&best_effort), "", "pods", &plain).is_err());
        assert!(admit(std::slice::from_ref(&best_effort), "", "pods", &sized).is_ok());
        assert!(admit(&[best_effort], "", "configmaps", &json!({})).is_ok());
    }

    #[test]
    fn the_resources_a_quota_counts_follow_its_names() {
        let names: Vec<String> = ["requests.cpu", "count/deployments.apps", "secrets"]
            .map(String::from)
            .to_vec();
        let got = counted_resources(&names);
        assert!(got.contains(&(String::new(), "pods".into())));
        assert!(got.contains(&("apps".into(), "deployments".into())));
        assert!(got.contains(&(String::new(), "secrets".into())));
        assert_eq!(got.len(), 3);
    }
}
