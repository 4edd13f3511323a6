//! Shared Kubernetes plumbing, used by every step that talks to a cluster (snapshot
//! capture, restore, stop/start, audit, the gate, serve):
//!
//! ```text
//!  connect (kubeconfig as kubectl resolves it) ─▶ kube::Client with ONE retry layer
//!        │                                          (429/5xx/transport, Retry-After, budget)
//!        ▼
//!  Resources::discover (once per run, passed down) ─▶ typed Api handles per kind
//!        ▼
//!  wait (kube::runtime watches: one object's condition, "none left")
//!  concurrency (how many writes in flight: grows while the server keeps up, halves on 429)
//! ```
//!
//! Nothing here knows what a snapshot or a binding is.

pub mod concurrency;
pub mod connect;
pub mod discovery;
pub mod retry;
pub mod test_bed;
pub mod wait;

pub use connect::{ConnectError, connect, connect_with};
pub use discovery::Resources;
pub use retry::RetryPolicy;

/// Why a piece of shared plumbing failed.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("failed to discover the cluster's resources: {0}")]
    Discovery(#[source] kube::Error),
    #[error("{api_version} {kind} is not served by this cluster (missing CRD or API)")]
    NotServed { api_version: String, kind: String },
}

/// An API error as a one-line reason: `code (reason): message` for a status, the error
/// otherwise.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({}): {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

/// A list's items as JSON, each with its `apiVersion` and `kind`: kube-apiserver leaves both
/// out of a list's items, and what is made from them (changes, findings, bindings) names
/// its object by both.
pub fn typed_items(
    items: Vec<kube::api::DynamicObject>,
    api_version: &str,
    kind: &str,
) -> Result<Vec<serde_json::Value>, serde_json::Error> {
    items
        .into_iter()
        .map(|o| {
            serde_json::to_value(o).map(|mut v| {
                v["apiVersion"] = serde_json::Value::from(api_version);
                v["kind"] = serde_json::Value::from(kind);
                v
            })
        })
        .collect()
}

#[cfg(test)]
mod typed_items_tests {
    use super::typed_items;

    #[test]
    fn list_items_without_their_type_get_the_listed_apiversion_and_kind() {
        // As kube-apiserver sends them: no apiVersion or kind on a list's items.
        let item: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pv-1"}, "spec": {"persistentVolumeReclaimPolicy": "Delete"}
        }))
        .expect("object");
        let out = typed_items(vec![item], "v1", "PersistentVolume").expect("json");
        assert_eq!(out[0]["apiVersion"], "v1");
        assert_eq!(out[0]["kind"], "PersistentVolume");
        assert_eq!(out[0]["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    }
}
