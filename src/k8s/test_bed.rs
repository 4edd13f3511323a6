//! Reaching a test bed's admin endpoint. `coldstart sim serve --control-plane kubernetes`
//! runs Kubernetes' own API server, which has no `/sim/v1` paths: the simulated cloud (its
//! state, ledger and write API) and teardown live in the launcher, whose admin endpoint the
//! kubeconfig names in a cluster extension. [`RouteLayer`] sends a client's `/sim/v1/...`
//! requests there, so whatever reads the simulated cloud through a cluster connection (the
//! `sim` cloud verifier and disk snapshots, `coldstart sim cloud`) works against the
//! embedded server and the real control plane alike. This is the client half of that
//! contract, written against the extension's documented shape, not the simulator's types.

use bytes::Bytes;

/// Name of the cluster extension that points at a launcher's admin endpoint.
pub const ADMIN_EXTENSION: &str = "coldstart.dev/sim-admin";

/// Where a launched control plane's admin endpoint answers, and the token it wants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct AdminEndpoint {
    pub url: String,
    pub token: String,
}

/// The admin endpoint a kubeconfig's current (or named) context's cluster names, if any.
pub fn admin_endpoint(
    kubeconfig: &kube::config::Kubeconfig,
    context: Option<&str>,
) -> Option<AdminEndpoint> {
    let ctx_name = context
        .map(str::to_owned)
        .or_else(|| kubeconfig.current_context.clone())?;
    let ctx = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)?
        .context
        .as_ref()?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)?
        .cluster
        .as_ref()?;
    let ext = cluster
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.name == ADMIN_EXTENSION)?;
    serde_json::from_value(ext.extension.clone()).ok()
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
    endpoint: &AdminEndpoint,
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
    endpoint: &AdminEndpoint,
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
pub struct RouteLayer(pub AdminEndpoint);

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
    endpoint: AdminEndpoint,
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
