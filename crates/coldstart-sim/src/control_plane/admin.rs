//! The launcher's admin endpoint: what `coldstart sim teardown` calls for a cluster whose API
//! server is kube-apiserver (which has no `/sim/v1` paths). The kubeconfig names it in a
//! cluster extension; a bearer token from the same kubeconfig guards it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::sync::Mutex;

use super::ControlPlane;

#[derive(Clone)]
struct AdminState {
    cp: Arc<Mutex<ControlPlane>>,
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

/// Serve the admin endpoint for `cp` on a free loopback port.
pub async fn serve(cp: Arc<Mutex<ControlPlane>>) -> std::io::Result<Admin> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let app = Router::new()
        .route("/sim/v1/teardown", post(teardown))
        .with_state(AdminState {
            cp,
            token: token.clone(),
        });
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

async fn teardown(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == s.token);
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "missing or wrong bearer token"})),
        )
            .into_response();
    }
    let mut cp = s.cp.lock().await;
    match cp.teardown().await {
        Ok(uid) => {
            axum::Json(json!({"uid": uid, "restarted_in_ms": cp.started_in.as_millis() as u64}))
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"message": e.to_string()})),
        )
            .into_response(),
    }
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

/// Call `method path` on an admin endpoint (plain HTTP/1.1 on loopback: the endpoint is the
/// launcher's own, so a one-request client is all it takes).
pub async fn call(
    endpoint: &crate::kubeconfig::AdminEndpoint,
    method: &str,
    path: &str,
) -> Result<serde_json::Value, CallError> {
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
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        endpoint.token
    );
    stream.write_all(req.as_bytes()).await.map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    if !status
        .split_whitespace()
        .nth(1)
        .is_some_and(|c| c.starts_with('2'))
    {
        return Err(CallError::Status {
            status,
            body: body.to_owned(),
        });
    }
    Ok(serde_json::from_str(body)?)
}
