//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for, so the
//! simulated cluster prints the same columns a real one does (NAME, type columns, AGE).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::registry::ResourceDef;
use super::semantics::json_path;

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// `kubectl`'s short ages: 45s, 3m10s, 5h, 2d3h, 400d.
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        let rem = s % 60;
        if rem == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rem}s")
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        let rem = m % 60;
        if rem == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rem}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        let rem = h % 24;
        if rem == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rem}h")
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn cell(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => json!("<none>"),
        Some(Value::String(s)) => json!(s),
        Some(Value::Number(n)) => json!(n.to_string()),
        Some(Value::Bool(b)) => json!(b.to_string()),
        Some(other) => json!(other.to_string()),
    }
}

/// A Table of `objects`, with `metadata` carrying the list's resourceVersion and continue.
pub fn table(
    def: &ResourceDef,
    objects: &[Value],
    list_meta: Value,
    now: DateTime<Utc>,
    include_object: bool,
) -> Value {
    let mut columns = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    for c in &def.columns {
        columns.push(json!({"name": c.name, "type": "string", "format": "",
            "description": c.json_path, "priority": 0}));
    }
    columns.push(json!({"name": "Age", "type": "string", "format": "",
        "description": "CreationTimestamp", "priority": 0}));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![cell(o.pointer("/metadata/name"))];
            for c in &def.columns {
                cells.push(cell(json_path(o, &c.json_path)));
            }
            let age = o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| human_age((now - t.with_timezone(&Utc)).num_seconds()))
                .unwrap_or_else(|| "<unknown>".to_owned());
            cells.push(json!(age));
            let object = if include_object {
                o.clone()
            } else {
                let mut meta = o.get("metadata").cloned().unwrap_or(json!({}));
                if let Some(m) = meta.as_object_mut() {
                    m.remove("managedFields");
                }
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": meta})
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl_prints_them() {
        for (secs, want) in [
            (5, "5s"),
            (119, "119s"),
            (190, "3m10s"),
            (3600, "60m"),
            (4 * 3600 + 60, "4h1m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
            (40 * 86400, "40d"),
            (800 * 86400, "2y"),
        ] {
            assert_eq!(human_age(secs), want, "{secs}s");
        }
    }

    #[test]
    fn only_a_first_choice_table_accept_header_gets_a_table() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
