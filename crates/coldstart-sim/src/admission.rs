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

/// Compiled CEL programs, by source text: a gate evaluated on every write of a 100k-object
/// restore must not re-parse its expressions each time.
#[derive(Default)]
pub struct ProgramCache(Mutex<HashMap<String, Arc<cel::Program>>>);

impl std::fmt::Debug for ProgramCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgramCache")
    }
}

impl ProgramCache {
    fn get(&self, src: &str) -> Result<Arc<cel::Program>, String> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(src) {
            return Ok(p.clone());
        }
        let p = Arc::new(cel::Program::compile(src).map_err(|e| e.to_string())?);
        map.insert(src.to_owned(), p.clone());
        Ok(p)
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

/// Everything a policy's expressions can see.
struct Inputs {
    object: Value,
    old_object: Value,
    request: Value,
}

fn eval(
    cache: &ProgramCache,
    src: &str,
    inputs: &Inputs,
    variables: &Value,
) -> Result<cel::Value, String> {
    let program = cache.get(src)?;
    let mut ctx = cel::Context::default();
    let to = |v: &Value| cel::to_value(v).map_err(|e| e.to_string());
    ctx.add_variable_from_value("object", to(&inputs.object)?);
    ctx.add_variable_from_value("oldObject", to(&inputs.old_object)?);
    ctx.add_variable_from_value("request", to(&inputs.request)?);
    ctx.add_variable_from_value("params", cel::Value::Null);
    ctx.add_variable_from_value("variables", to(variables)?);
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
    let subject = object.or(old).cloned().unwrap_or(Value::Null);
    let inputs = Inputs {
        object: object.cloned().unwrap_or(Value::Null),
        old_object: old.cloned().unwrap_or(Value::Null),
        request: json!({
            "operation": op.as_str(),
            "name": subject.pointer("/metadata/name"),
            "namespace": subject.pointer("/metadata/namespace"),
            "kind": {"group": def.group, "version": def.version, "kind": def.kind},
            "resource": {"group": def.group, "version": def.version, "resource": def.plural},
            "subResource": sub.unwrap_or(""),
            "userInfo": {"username": actor.username, "groups": actor.groups},
        }),
    };
    for (_, binding) in sim.store.all(&bindings_gr(), None) {
        let binding = binding.value();
        let bname = binding
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(pname) = binding.pointer("/spec/policyName").and_then(Value::as_str) else {
            continue;
        };
        let actions: Vec<&str> = binding
            .pointer("/spec/validationActions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !actions.contains(&"Deny") {
            continue;
        }
        let Some(policy) = sim.store.get(&policies_gr(), "", pname) else {
            continue;
        };
        let policy = policy.value();
        let spec = policy.get("spec").cloned().unwrap_or(json!({}));
        if !matches_resources(spec.get("matchConstraints"), def, sub, op, &subject)
            || !matches_resources(
                binding.pointer("/spec/matchResources"),
                def,
                sub,
                op,
                &subject,
            )
        {
            continue;
        }
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
            let v = match eval(&sim.cel, expr, &inputs, &variables) {
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
            match eval(&sim.cel, expr, &inputs, &variables) {
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
            match eval(&sim.cel, expr, &inputs, &variables) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(_) => {
                    let message = validation
                        .get("messageExpression")
                        .and_then(Value::as_str)
                        .and_then(|m| eval(&sim.cel, m, &inputs, &variables).ok())
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
