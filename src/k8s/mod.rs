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

/// Create the object `body` holds (its JSON) where `api` points, reading nothing of the answer but
/// its status: a bulk writer (a restore's creates) has no use for the created object, and
/// `Api::create` would copy the object into a typed value, then parse the server's copy
/// back, for every create. Errors come back as `Api::create`'s do (`Error::Api` with the
/// server's Status), so callers judge them the same way.
pub async fn create_unread(
    client: &kube::Client,
    api: &kube::Api<kube::api::DynamicObject>,
    params: &kube::api::PostParams,
    body: &bytes::Bytes,
) -> Result<(), kube::Error> {
    use http_body_util::BodyExt as _;
    // The request is built around an empty body and given the caller's bytes after: a
    // `Bytes` is shared, not copied, so a create in flight holds its body once.
    let mut req = kube::core::Request::new(api.resource_url())
        .create(params, Vec::new())
        .map_err(kube::Error::BuildRequest)?;
    req.extensions_mut().insert("create");
    let resp = client
        .send(req.map(|_| kube::client::Body::from(body.clone())))
        .await?;
    let status = resp.status();
    // Read to the end either way: a connection is only reused once its answer is read.
    let bytes = resp.into_body().collect().await?.to_bytes();
    if status.is_success() {
        return Ok(());
    }
    let status = match serde_json::from_slice::<kube::core::Status>(&bytes) {
        Ok(s) => s,
        Err(_) => kube::core::Status::failure(
            String::from_utf8_lossy(&bytes).trim(),
            "Failed to parse error data",
        )
        .with_code(status.as_u16()),
    };
    Err(kube::Error::Api(status.boxed()))
}

/// Objects per page of [`list_kept`]: a page of objects of a few KB each is a few MiB
/// parsed, whatever the cluster's size.
pub const LIST_PAGE: u32 = 500;

/// Every object `api` lists (narrowed by `params`' selectors), page by page, as JSON with
/// its `apiVersion` and `kind` ([`typed_items`]), keeping only those `keep` wants: memory
/// holds one page and what is kept, not the whole list (a cluster's Services at 300k
/// objects are ~100 MB of JSON).
pub async fn list_kept(
    api: &kube::Api<kube::api::DynamicObject>,
    params: &kube::api::ListParams,
    type_: (&str, &str),
    mut keep: impl FnMut(&serde_json::Value) -> bool,
) -> Result<Vec<serde_json::Value>, kube::Error> {
    list_mapped(api, params, type_, |o| keep(&o).then_some(o)).await
}

/// [`list_kept`], keeping what `map` makes of each object (`None`: nothing): what a caller
/// needs of thirty thousand Deployments is a few fields each, not their pod templates.
pub async fn list_mapped<T>(
    api: &kube::Api<kube::api::DynamicObject>,
    params: &kube::api::ListParams,
    (api_version, kind): (&str, &str),
    mut map: impl FnMut(serde_json::Value) -> Option<T>,
) -> Result<Vec<T>, kube::Error> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = params.clone().limit(LIST_PAGE);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await?;
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        let items = typed_items(page.items, api_version, kind).map_err(kube::Error::SerdeError)?;
        out.extend(items.into_iter().filter_map(&mut map));
        if token.is_none() {
            return Ok(out);
        }
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
