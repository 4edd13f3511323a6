//! PATCH semantics, as pure functions over JSON: RFC 7386 merge patch, RFC 6902 JSON patch,
//! strategic merge patch (applied as a merge patch once its `$`-directives are removed: the
//! simulated server does not know Go struct merge keys, and kubectl sends plain merges for
//! the schemas it is given), and server-side apply (create-or-merge).

use serde_json::Value;

/// The patch flavours a client can send, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("failed to decode patch: {0}")]
    Decode(String),
    #[error("failed to apply JSON patch: {0}")]
    JsonPatch(#[from] json_patch::PatchError),
}

/// Decode a patch body (JSON, or YAML for apply).
pub fn decode(kind: PatchKind, body: &[u8]) -> Result<Value, PatchError> {
    match kind {
        PatchKind::Apply => {
            serde_yaml::from_slice(body).map_err(|e| PatchError::Decode(e.to_string()))
        }
        _ => serde_json::from_slice(body).map_err(|e| PatchError::Decode(e.to_string())),
    }
}

/// Remove strategic-merge directives (`$patch`, `$setElementOrder/...`, `$retainKeys`,
/// `$deleteFromPrimitiveList/...`), so what remains is a merge patch.
pub fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            for x in m.values_mut() {
                strip_directives(x);
            }
        }
        Value::Array(a) => {
            a.retain(|x| {
                // `{"$patch": "delete", ...}` list entries ask for removal; dropping them
                // leaves the list as the merge replaces it.
                !x.as_object().is_some_and(|o| o.contains_key("$patch"))
            });
            for x in a {
                strip_directives(x);
            }
        }
        _ => {}
    }
}

/// Apply a patch to `current`, returning the new object.
pub fn apply(kind: PatchKind, current: &Value, patch: &Value) -> Result<Value, PatchError> {
    let mut doc = current.clone();
    match kind {
        PatchKind::Merge | PatchKind::Apply => json_patch::merge(&mut doc, patch),
        PatchKind::Strategic => {
            let mut p = patch.clone();
            strip_directives(&mut p);
            json_patch::merge(&mut doc, &p);
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| PatchError::Decode(e.to_string()))?;
            json_patch::patch(&mut doc, &ops)?;
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_merge_patch_sets_and_removes_fields() {
        let cur = json!({"spec": {"replicas": 1, "paused": true}});
        let out = apply(
            PatchKind::Merge,
            &cur,
            &json!({"spec": {"replicas": 3, "paused": null}}),
        )
        .expect("applies");
        assert_eq!(out, json!({"spec": {"replicas": 3}}));
    }

    #[test]
    fn a_strategic_patch_loses_its_directives() {
        let cur = json!({"spec": {"containers": [{"name": "a"}]}});
        let patch = json!({
            "$setElementOrder/containers": [{"name": "a"}],
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "$patch": "delete"}]}
        });
        let out = apply(PatchKind::Strategic, &cur, &patch).expect("applies");
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "a", "image": "x"}]}})
        );
    }

    #[test]
    fn a_json_patch_applies_operations_and_reports_a_failed_test() {
        let cur = json!({"metadata": {"labels": {"a": "1"}}});
        let out = apply(
            PatchKind::Json,
            &cur,
            &json!([{"op": "add", "path": "/metadata/labels/b", "value": "2"}]),
        )
        .expect("applies");
        assert_eq!(out["metadata"]["labels"]["b"], "2");
        assert!(
            apply(
                PatchKind::Json,
                &cur,
                &json!([{"op": "test", "path": "/metadata/labels/a", "value": "9"}])
            )
            .is_err()
        );
    }

    #[test]
    fn content_types_map_to_patch_kinds() {
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+yaml; charset=utf-8"),
            Some(PatchKind::Apply)
        );
        assert_eq!(PatchKind::from_content_type("text/plain"), None);
    }
}
