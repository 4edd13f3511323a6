//! ValidatingAdmissionPolicy, evaluated with a real CEL interpreter: every write through
//! the simulated API server is checked against the bound policies with `object`,
//! `oldObject`, `request` (including `request.userInfo.username`) and `variables` bound,
//! so a gate that coldstart installs really denies what it says it denies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::registry::{GroupResource, ResourceDef};
use super::selector::LabelSelector;
use super::status::ApiError;
use super::store::Stored;
use super::{Actor, Sim};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

fn policies_gr() -> GroupResource {
    GroupResource {
        group: "admissionregistration.k8s.io".into(),
        plural: "validatingadmissionpolicies".into(),
    }
}

fn bindings_gr() -> GroupResource {
    GroupResource {
        group: "admissionregistration.k8s.io".into(),
        plural: "validatingadmissionpolicybindings".into(),
    }
}

/// What evaluating policies reuses across writes: compiled CEL programs by source text, the
/// CEL standard environment, and policies and bindings parsed once per resourceVersion. A
/// gate is evaluated on every write of a 100k-object restore; building the CEL stdlib per
/// expression and re-parsing every policy and binding per write made the embedded server
/// spend most of a gated write there, where kube-apiserver keeps its policies compiled.
/// A policy or binding parsed at the resourceVersion it was parsed at.
type Parsed = (u64, Arc<Value>);

pub struct ProgramCache {
    programs: Mutex<HashMap<String, Arc<cel::Program>>>,
    env: Arc<cel::Env>,
    /// (kind, uid) → (resourceVersion, parsed object). Grows by the policies and bindings
    /// ever created: a few per restore.
    parsed: Mutex<HashMap<(&'static str, String), Parsed>>,
}

impl Default for ProgramCache {
    fn default() -> Self {
        ProgramCache {
            programs: Mutex::default(),
            env: Arc::new(cel::Env::stdlib()),
            parsed: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for ProgramCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgramCache")
    }
}

impl ProgramCache {
    fn get(&self, src: &str) -> Result<Arc<cel::Program>, String> {
        let mut map = self.programs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(src) {
            return Ok(p.clone());
        }
        let p = Arc::new(cel::Program::compile(src).map_err(|e| e.to_string())?);
        map.insert(src.to_owned(), p.clone());
        Ok(p)
    }

    /// `stored` parsed, from the cache while its resourceVersion is the one cached.
    fn parsed(&self, kind: &'static str, uid: &str, stored: &Stored) -> Arc<Value> {
        let mut map = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        let key = (kind, uid.to_owned());
        if let Some((rv, v)) = map.get(&key)
            && *rv == stored.rv
        {
            return v.clone();
        }
        let v = Arc::new(stored.value());
        map.insert(key, (stored.rv, v.clone()));
        v
    }
}

/// The resource as admission rules name it: `pods`, or `pods/status` for a subresource.
fn rule_resource(def: &ResourceDef, sub: Option<&str>) -> String {
    match sub {
        Some(s) => format!("{}/{s}", def.plural),
        None => def.plural.clone(),
    }
}

fn rule_matches(rule: &Value, def: &ResourceDef, sub: Option<&str>, op: Operation) -> bool {
    let any = |field: &str, want: &str| {
        rule.get(field)
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "*" || x == want))
    };
    let resource = rule_resource(def, sub);
    let star_sub = sub.map(|s| format!("*/{s}"));
    any("apiGroups", &def.group)
        && any("apiVersions", &def.version)
        && any("operations", op.as_str())
        && (any("resources", &resource) || star_sub.as_deref().is_some_and(|s| any("resources", s)))
}

fn matches_resources(
    spec: Option<&Value>,
    def: &ResourceDef,
    sub: Option<&str>,
    op: Operation,
    obj: &Value,
) -> bool {
    let Some(spec) = spec else { return true };
    let included = spec
        .get("resourceRules")
        .and_then(Value::as_array)
        .is_none_or(|rules| rules.iter().any(|r| rule_matches(r, def, sub, op)));
    let excluded = spec
        .get("excludeResourceRules")
        .and_then(Value::as_array)
        .is_some_and(|rules| rules.iter().any(|r| rule_matches(r, def, sub, op)));
    let selected = spec
        .get("objectSelector")
        .is_none_or(|sel| label_selector_matches(sel, obj));
    included && !excluded && selected
}

fn label_selector_matches(sel: &Value, obj: &Value) -> bool {
    let labels: std::collections::BTreeMap<String, String> = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let vals: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => parts.push(format!("{key} in ({})", vals.join(","))),
                Some("NotIn") => parts.push(format!("{key} notin ({})", vals.join(","))),
                Some("Exists") => parts.push(key.to_owned()),
                Some("DoesNotExist") => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    LabelSelector::parse(&parts.join(",")).is_ok_and(|s| s.matches(&labels))
}

/// Everything a policy's expressions can see, converted to CEL once per write (not once
/// per expression).
struct Inputs {
    object: cel::Value,
    old_object: cel::Value,
    request: cel::Value,
}

impl Inputs {
    fn new(
        op: Operation,
        def: &ResourceDef,
        sub: Option<&str>,
        object: Option<&Value>,
        old: Option<&Value>,
        actor: &Actor,
    ) -> Result<Self, String> {
        let subject = object.or(old);
        let to = |v: Option<&Value>| match v {
            Some(v) => cel::to_value(v).map_err(|e| e.to_string()),
            None => Ok(cel::Value::Null),
        };
        let request = json!({
            "operation": op.as_str(),
            "name": subject.and_then(|s| s.pointer("/metadata/name")),
            "namespace": subject.and_then(|s| s.pointer("/metadata/namespace")),
            "kind": {"group": def.group, "version": def.version, "kind": def.kind},
            "resource": {"group": def.group, "version": def.version, "resource": def.plural},
            "subResource": sub.unwrap_or(""),
            "userInfo": {"username": actor.username, "groups": actor.groups},
        });
        Ok(Inputs {
            object: to(object)?,
            old_object: to(old)?,
            request: to(Some(&request))?,
        })
    }
}

fn eval(
    cache: &ProgramCache,
    src: &str,
    inputs: &Inputs,
    variables: &Value,
) -> Result<cel::Value, String> {
    let program = cache.get(src)?;
    let mut ctx = cel::Context::with_env(cache.env.clone());
    ctx.add_variable_from_value("object", inputs.object.clone());
    ctx.add_variable_from_value("oldObject", inputs.old_object.clone());
    ctx.add_variable_from_value("request", inputs.request.clone());
    ctx.add_variable_from_value("params", cel::Value::Null);
    ctx.add_variable_from_value(
        "variables",
        cel::to_value(variables).map_err(|e| e.to_string())?,
    );
    program.execute(&ctx).map_err(|e| e.to_string())
}

fn cel_to_json(v: &cel::Value) -> Value {
    v.json().unwrap_or(Value::Null)
}

/// Check one write against every bound policy. Denials come back as the API server words
/// them: `ValidatingAdmissionPolicy 'p' with binding 'b' denied request: ...`.
pub fn check(
    sim: &Sim,
    op: Operation,
    def: &ResourceDef,
    sub: Option<&str>,
    object: Option<&Value>,
    old: Option<&Value>,
    actor: &Actor,
) -> Result<(), ApiError> {
    // Policies never govern policies, so a bad gate can always be lifted.
    if def.group == "admissionregistration.k8s.io" {
        return Ok(());
    }
    if sim.store.count(&bindings_gr()) == 0 {
        return Ok(());
    }
    let subject = object.or(old).unwrap_or(&Value::Null);
    // Converted to CEL on the first policy that applies: most writes match none.
    let mut inputs: Option<Inputs> = None;
    for (_, stored) in sim.store.all(&bindings_gr(), None) {
        let binding = sim.cel.parsed("bindings", &stored.uid, &stored);
        let bname = binding
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(pname) = binding.pointer("/spec/policyName").and_then(Value::as_str) else {
            continue;
        };
        let deny = binding
            .pointer("/spec/validationActions")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "Deny"));
        if !deny {
            continue;
        }
        let Some(stored_policy) = sim.store.get(&policies_gr(), "", pname) else {
            continue;
        };
        let policy = sim
            .cel
            .parsed("policies", &stored_policy.uid, &stored_policy);
        let spec = policy.get("spec").unwrap_or(&Value::Null);
        if !matches_resources(spec.get("matchConstraints"), def, sub, op, subject)
            || !matches_resources(
                binding.pointer("/spec/matchResources"),
                def,
                sub,
                op,
                subject,
            )
        {
            continue;
        }
        let inputs = match &inputs {
            Some(i) => i,
            None => inputs.insert(Inputs::new(op, def, sub, object, old, actor).map_err(|e| {
                ApiError::internal(format!("failed to bind admission inputs: {e}"))
            })?),
        };
        let fail_closed = spec.get("failurePolicy").and_then(Value::as_str) != Some("Ignore");
        let denied = |message: String, reason: Option<&str>| {
            let full = format!(
                "ValidatingAdmissionPolicy '{pname}' with binding '{bname}' denied request: {message}"
            );
            match reason {
                Some("Forbidden") => ApiError::forbidden(full),
                _ => ApiError::invalid(
                    &def.kind,
                    subject
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    full,
                ),
            }
        };
        // Composited variables, evaluated in order, each seeing the ones before it.
        let mut variables = json!({});
        for var in spec
            .get("variables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(name), Some(expr)) = (
                var.get("name").and_then(Value::as_str),
                var.get("expression").and_then(Value::as_str),
            ) else {
                continue;
            };
            let v = match eval(&sim.cel, expr, inputs, &variables) {
                Ok(v) => cel_to_json(&v),
                Err(_) => Value::Null,
            };
            variables[name] = v;
        }
        let mut applies = true;
        for cond in spec
            .get("matchConditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let expr = cond
                .get("expression")
                .and_then(Value::as_str)
                .unwrap_or("true");
            match eval(&sim.cel, expr, inputs, &variables) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(_) => {
                    applies = false;
                    break;
                }
                Err(e) if fail_closed => {
                    return Err(denied(
                        format!("failed to evaluate match condition: {e}"),
                        None,
                    ));
                }
                Err(_) => {
                    applies = false;
                    break;
                }
            }
        }
        if !applies {
            continue;
        }
        for validation in spec
            .get("validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let expr = validation
                .get("expression")
                .and_then(Value::as_str)
                .unwrap_or("true");
            let reason = validation.get("reason").and_then(Value::as_str);
            match eval(&sim.cel, expr, inputs, &variables) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(_) => {
                    let message = validation
                        .get("messageExpression")
                        .and_then(Value::as_str)
                        .and_then(|m| eval(&sim.cel, m, inputs, &variables).ok())
                        .and_then(|v| cel_to_json(&v).as_str().map(str::to_owned))
                        .or_else(|| {
                            validation
                                .get("message")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                        .unwrap_or_else(|| format!("failed expression: {expr}"));
                    return Err(denied(message, reason));
                }
                Err(e) if fail_closed => {
                    return Err(denied(
                        format!("expression '{expr}' resulted in error: {e}"),
                        reason,
                    ));
                }
                Err(_) => {}
            }
        }
    }
    Ok(())
}
