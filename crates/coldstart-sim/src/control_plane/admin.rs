//! The launcher's admin endpoint: what a cluster whose API server is kube-apiserver (which
//! has no `/sim/v1` paths) answers there instead. `POST /sim/v1/teardown` deletes the cluster
//! the way a cloud does; `GET /sim/v1/cloud` is the simulated cloud's state and ledger and
//! `POST /sim/v1/cloud` adds what the account already holds, exactly as on the embedded
//! server. The kubeconfig names the endpoint in a cluster extension; a bearer token from the
//! same kubeconfig guards it. [`RouteLayer`] lets a kube-rs client reach it on the paths the
//! embedded server serves, so every `/sim/v1` caller works against both.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::ControlPlane;
use crate::cloud::Cloud;

#[derive(Clone)]
struct AdminState {
    cp: Arc<Mutex<ControlPlane>>,
    cloud: Arc<Cloud>,
    token: String,
}

/// A running admin endpoint; stops when dropped.
#[derive(Debug)]
pub struct Admin {
    pub endpoint: crate::kubeconfig::AdminEndpoint,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve the admin endpoint for `cp` and its `cloud` on a free loopback port.
pub async fn serve(cp: Arc<Mutex<ControlPlane>>, cloud: Arc<Cloud>) -> std::io::Result<Admin> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let state = AdminState {
        cp,
        cloud,
        token: token.clone(),
    };
    let app = Router::new()
        .route("/sim/v1/teardown", post(teardown))
        .route("/sim/v1/cloud", get(cloud_state).post(add_to_cloud))
        .merge(crate::cloud_api::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Admin {
        endpoint: crate::kubeconfig::AdminEndpoint {
            url: format!("http://{addr}"),
            token,
        },
        task,
    })
}

async fn authorize(
    State(s): State<AdminState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == s.token);
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    next.run(req).await
}

/// A Kubernetes-shaped `Status`, so a kube-rs client routed here reports it as the API error
/// it is.
fn status(code: StatusCode, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": code.canonical_reason().unwrap_or_default().replace(' ', ""),
        "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

async fn cloud_state(State(s): State<AdminState>) -> Response {
    crate::cloud_api::state(&s.cloud)
}

impl crate::cloud_api::HasCloud for AdminState {
    fn cloud(&self) -> &Cloud {
        &self.cloud
    }
}

async fn add_to_cloud(State(s): State<AdminState>, body: Bytes) -> Response {
    crate::http::add_to_cloud(&s.cloud, &body)
}

/// Delete the cluster the way a cloud does: the disks of `Delete` volumes go with it, nodes
/// terminate (disks detach), addresses the load-balancer controller allocated are released,
/// buckets whose claims say Delete are deleted; then an empty cluster answers.
async fn teardown(State(s): State<AdminState>) -> Response {
    match teardown_cluster(&s.cp, &s.cloud).await {
        Ok(uid) => {
            let restarted_in = s.cp.lock().await.started_in;
            axum::Json(json!({"uid": uid, "restarted_in_ms": restarted_in.as_millis() as u64}))
                .into_response()
        }
        Err(e) => status(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// Tear the cluster down with the cloud's side of it; returns the new `kube-system` uid.
pub async fn teardown_cluster(cp: &Mutex<ControlPlane>, cloud: &Cloud) -> Result<String, String> {
    let mut cp = cp.lock().await;
    let doomed = delete_policy_disks(&cp).await?;
    let uid = cp.teardown().await.map_err(|e| e.to_string())?;
    cloud.lock().delete_cluster(&doomed);
    tracing::info!(disks_deleted = doomed.len(), "real cluster torn down");
    Ok(uid)
}

/// The disks of every PV whose reclaim policy is `Delete` (what a cluster deletion takes).
async fn delete_policy_disks(cp: &ControlPlane) -> Result<Vec<String>, String> {
    let client = cp.client().await.map_err(|e| e.to_string())?;
    let pvs: kube::Api<k8s_openapi::api::core::v1::PersistentVolume> = kube::Api::all(client);
    let list = pvs
        .list(&Default::default())
        .await
        .map_err(|e| format!("failed to list the volumes the cluster deletion takes: {e}"))?;
    Ok(list
        .items
        .iter()
        .filter_map(|pv| serde_json::to_value(pv).ok())
        .filter(|v| {
            v.pointer("/spec/persistentVolumeReclaimPolicy")
                .and_then(Value::as_str)
                == Some("Delete")
        })
        .filter_map(|v| crate::controllers::storage_disk_of(&v))
        .collect())
}

/// Failure to call an admin endpoint.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("invalid admin endpoint URL {0:?}")]
    Url(String),
    #[error("failed to reach the admin endpoint {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the admin endpoint answered {status}: {body}")]
    Status { status: String, body: String },
    #[error("the admin endpoint's answer is not JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Call `method path` on an admin endpoint and decode its JSON answer; anything but 2xx is
/// an error.
pub async fn call(
    endpoint: &crate::kubeconfig::AdminEndpoint,
    method: &str,
    path: &str,
) -> Result<serde_json::Value, CallError> {
    let (code, body) = request(endpoint, method, path, &[]).await?;
    if !(200..300).contains(&code) {
        return Err(CallError::Status {
            status: code.to_string(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(serde_json::from_slice(&body)?)
}

/// One request to an admin endpoint: its status code and body (plain HTTP/1.1 on loopback:
/// the endpoint is the launcher's own, so a one-request client is all it takes).
pub async fn request(
    endpoint: &crate::kubeconfig::AdminEndpoint,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), CallError> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = endpoint
        .url
        .strip_prefix("http://")
        .map(|h| h.trim_end_matches('/'))
        .ok_or_else(|| CallError::Url(endpoint.url.clone()))?;
    let io = |source| CallError::Io {
        url: endpoint.url.clone(),
        source,
    };
    let mut stream = tokio::net::TcpStream::connect(host).await.map_err(io)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        endpoint.token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(io)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]);
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| CallError::Status {
            status: status_line.clone(),
            body: String::new(),
        })?;
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    Ok((code, body))
}

/// A kube-rs client layer that sends `/sim/v1/...` requests to a launcher's admin endpoint
/// instead of kube-apiserver, so what reads the simulated cloud through a cluster connection
/// (coldstart's `sim` cloud verifier, `coldstart sim cloud`) works on a real control plane.
#[derive(Debug, Clone)]
pub struct RouteLayer(pub crate::kubeconfig::AdminEndpoint);

impl<S> tower::Layer<S> for RouteLayer {
    type Service = Route<S>;
    fn layer(&self, inner: S) -> Route<S> {
        Route {
            inner,
            endpoint: self.0.clone(),
        }
    }
}

/// The service [`RouteLayer`] makes.
#[derive(Debug, Clone)]
pub struct Route<S> {
    inner: S,
    endpoint: crate::kubeconfig::AdminEndpoint,
}

type DynBody = kube::client::DynBody;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S> tower::Service<http::Request<kube::client::Body>> for Route<S>
where
    S: tower::Service<
            http::Request<kube::client::Body>,
            Response = http::Response<Box<DynBody>>,
            Error = BoxError,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<Box<DynBody>>;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        if !req.uri().path().starts_with("/sim/v1/") {
            return Box::pin(self.inner.call(req));
        }
        let endpoint = self.endpoint.clone();
        Box::pin(async move {
            use http_body_util::BodyExt as _;
            let method = req.method().as_str().to_owned();
            let path = req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
            let body = req.into_body().collect_bytes().await?;
            let (code, answer) = request(&endpoint, &method, &path, &body).await?;
            let body: Box<DynBody> = Box::new(
                http_body_util::Full::new(Bytes::from(answer))
                    .map_err(|never: std::convert::Infallible| match never {}),
            );
            Ok(http::Response::builder()
                .status(code)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body)?)
        })
    }
}
