//! A custom resource's structural schema, applied to every write as kube-apiserver applies
//! it: fields the schema does not know are pruned (apiextensions-apiserver
//! `pkg/apiserver/schema/pruning`), then `type`, `nullable`, `enum` and `required` are checked
//! (`pkg/apiserver/validation`), with its messages. A controller that writes a status its
//! CRD refuses (a Crossplane condition without `lastTransitionTime`) is refused here too,
//! and a restore that relies on a field the schema drops finds it dropped.
//!
//! Pure: a schema and an object in, the pruned object and the field errors out.

use serde_json::{Map, Value};

use crate::status::{FieldError, FieldProblem};

/// The fields every object keeps at its root (and every embedded resource at its own),
/// whatever the schema says.
const ALWAYS_KEPT: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Drop every field `schema` does not describe, below the root's `apiVersion`, `kind` and
/// `metadata`.
pub fn prune(schema: &Value, obj: &mut Value) {
    prune_at(schema, obj, true);
}

fn prune_at(schema: &Value, value: &mut Value, keep_object_meta: bool) {
    match value {
        Value::Object(map) => {
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            let keep_meta = keep_object_meta || flag(schema, "x-kubernetes-embedded-resource");
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            map.retain(|k, child| {
                if keep_meta && ALWAYS_KEPT.contains(&k.as_str()) {
                    return true;
                }
                let child_schema = properties
                    .and_then(|p| p.get(k))
                    .or(additional.filter(|a| a.is_object()));
                match child_schema {
                    Some(s) => {
                        prune_at(s, child, false);
                        true
                    }
                    None => preserve || additional == Some(&Value::Bool(true)),
                }
            });
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    prune_at(s, item, false);
                }
            }
        }
        _ => {}
    }
}

/// The field errors of `obj` against `schema`, in the order kube-apiserver finds them; its
/// root's `apiVersion`, `kind` and `metadata` are the generic API's to check.
pub fn validate(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(map) = obj.as_object() else {
        return errors;
    };
    let root = Map::from_iter(
        map.iter()
            .filter(|(k, _)| !ALWAYS_KEPT.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let mut schema = schema.clone();
    if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| !r.as_str().is_some_and(|r| ALWAYS_KEPT.contains(&r)));
    }
    check(&schema, &Value::Object(root), "", &mut errors);
    errors
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The JSON type of a value, named as OpenAPI names it.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_fits(want: &str, have: &str) -> bool {
    want == have || (want == "number" && have == "integer")
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    let have = type_of(value);
    if value.is_null() && flag(schema, "nullable") {
        return;
    }
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let fits = type_fits(want, have) || (int_or_string && matches!(have, "integer" | "string"));
        if !fits {
            errors.push(FieldError {
                field: path.to_owned(),
                problem: FieldProblem::Invalid(have.to_owned()),
                detail: format!("{path} in body must be of type {want}: {have:?}"),
            });
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let shown: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push(FieldError {
            field: path.to_owned(),
            problem: FieldProblem::Unsupported(
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned),
            ),
            detail: format!("supported values: {}", shown.join(", ")),
        });
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for (k, child) in map {
                let child_schema = properties
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(s) = child_schema {
                    check(s, child, &child_path(path, k), errors);
                }
            }
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(r) {
                    errors.push(FieldError {
                        field: child_path(path, r),
                        problem: FieldProblem::Required,
                        detail: String::new(),
                    });
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(s, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Crossplane's condition shape, cut down: a status list of conditions, each needing
    /// `lastTransitionTime`, `reason`, `status` and `type`.
    fn bucket_schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "deletionPolicy": {"type": "string", "enum": ["Orphan", "Delete"]},
                "forProvider": {"type": "object", "properties": {"region": {"type": "string"}},
                                "required": ["region"]},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": true},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                             "properties": {"spec": {"type": "object"}}},
            }, "required": ["forProvider"]},
            "status": {"type": "object", "properties": {
                "conditions": {"type": "array", "nullable": true, "items": {"type": "object",
                    "properties": {"lastTransitionTime": {"type": "string"}, "reason": {"type": "string"},
                                   "status": {"type": "string"}, "type": {"type": "string"}},
                    "required": ["lastTransitionTime", "reason", "status", "type"]}}}},
        }})
    }

    #[test]
    fn unknown_fields_are_pruned_where_the_schema_does_not_preserve_them() {
        let mut obj = json!({"apiVersion": "s3/v1", "kind": "Bucket", "metadata": {"name": "b", "labels": {"x": "y"}},
            "spec": {"forProvider": {"region": "eu", "bogus": 1}, "unknown": true,
                     "tags": {"team": "data"}, "extra": {"anything": {"goes": 1}},
                     "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}, "junk": 1}},
            "topLevelJunk": 1});
        prune(&bucket_schema(), &mut obj);
        assert_eq!(
            obj,
            json!({"apiVersion": "s3/v1", "kind": "Bucket", "metadata": {"name": "b", "labels": {"x": "y"}},
                "spec": {"forProvider": {"region": "eu"}, "tags": {"team": "data"},
                         "extra": {"anything": {"goes": 1}},
                         "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}}})
        );
    }

    #[test]
    fn missing_required_fields_wrong_types_and_unsupported_values_are_field_errors_worded_as_kube_apiserver_words_them()
     {
        let obj = json!({"apiVersion": "s3/v1", "kind": "Bucket", "metadata": {"name": "b"},
            "spec": {"forProvider": {"region": 3}, "deletionPolicy": "Keep", "port": "http"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Available"}]}});
        let shown: Vec<String> = validate(&bucket_schema(), &obj)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            vec![
                "spec.forProvider.region: Invalid value: \"integer\": spec.forProvider.region in body must be of type string: \"integer\"",
                "spec.deletionPolicy: Unsupported value: \"Keep\": supported values: \"Orphan\", \"Delete\"",
                "status.conditions[0].lastTransitionTime: Required value",
            ]
        );
    }

    #[test]
    fn a_complete_object_and_a_null_nullable_field_are_valid() {
        let obj = json!({"apiVersion": "s3/v1", "kind": "Bucket", "metadata": {"name": "b"},
            "spec": {"forProvider": {"region": "eu"}, "port": 8080},
            "status": {"conditions": null}});
        assert_eq!(validate(&bucket_schema(), &obj), vec![]);
    }
}
