//! Connecting to a cluster: `--kubeconfig` / `--context` resolved as kubectl does
//! (explicit file, else `KUBECONFIG`, else `~/.kube/config`, else in-cluster), into a
//! client whose only retries are [`super::retry`]'s.

use std::path::Path;

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tower::buffer::BufferLayer;

use super::retry::{self, RetryPolicy};

/// Why a cluster connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("failed to read kubeconfig {path}: {source}")]
    ReadKubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("failed to load cluster configuration: {0}")]
    Config(#[from] kube::config::KubeconfigError),
    #[error("failed to infer cluster configuration (no kubeconfig and not in a cluster): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("failed to build a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Pick rustls's process-wide crypto provider. kube-rs is built on `ring` and the cloud
/// object-store clients on `aws-lc-rs`; with both compiled in, rustls cannot choose alone.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Build a client for the cluster the user named, retrying with the default budget.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, ConnectError> {
    connect_with(kubeconfig, context, RetryPolicy::default()).await
}

/// Build a client for the cluster the user named, retrying within `retry`'s budget.
pub async fn connect_with(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    retry: RetryPolicy,
) -> Result<kube::Client, ConnectError> {
    init_tls();
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    let (config, admin) = match kubeconfig {
        Some(path) => {
            let kc =
                Kubeconfig::read_from(path).map_err(|source| ConnectError::ReadKubeconfig {
                    path: path.display().to_string(),
                    source,
                })?;
            let admin = super::test_bed::admin_endpoint(&kc, context);
            (
                kube::Config::from_custom_kubeconfig(kc, &options).await?,
                admin,
            )
        }
        None => {
            let admin = Kubeconfig::read()
                .ok()
                .and_then(|kc| super::test_bed::admin_endpoint(&kc, context));
            let config = if context.is_some() {
                kube::Config::from_kubeconfig(&options).await?
            } else {
                kube::Config::infer().await?
            };
            (config, admin)
        }
    };
    Ok(routed_client(config, retry, admin)?)
}

/// A client for `config` whose requests are retried by [`super::retry`] alone: kube's own
/// retry layer is switched off, so a budget means what it says.
pub fn client(config: kube::Config, policy: RetryPolicy) -> Result<kube::Client, kube::Error> {
    routed_client(config, policy, None)
}

/// [`client`], with `/sim/v1` requests sent to a test-bed launcher's admin endpoint when the
/// kubeconfig names one (a real control plane started by `coldstart sim serve
/// --control-plane kubernetes` keeps its simulated cloud there, not in kube-apiserver).
fn routed_client(
    mut config: kube::Config,
    policy: RetryPolicy,
    admin: Option<super::test_bed::AdminEndpoint>,
) -> Result<kube::Client, kube::Error> {
    config.default_retry = false;
    let base = ClientBuilder::try_from(config)?;
    let routed = tower::util::option_layer(admin.map(super::test_bed::RouteLayer));
    Ok(base
        .with_layer(&routed)
        // The retry layer clones the service per request; a buffer makes the boxed stack
        // cloneable. Its bound only queues requests waiting for the worker to hand them on.
        .with_layer(&BufferLayer::new(1024))
        .with_layer(&retry::layer(policy))
        .build())
}

/// The cluster name and server URL of the kubeconfig context in use (for a snapshot's
/// identity), if a kubeconfig file can be read.
pub fn kubeconfig_cluster(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Option<(String, Option<String>)> {
    let kc = match kubeconfig {
        Some(p) => Kubeconfig::read_from(p).ok()?,
        None => Kubeconfig::read().ok()?,
    };
    let ctx_name = context
        .map(str::to_owned)
        .or_else(|| kc.current_context.clone())?;
    let cluster = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)?
        .context
        .as_ref()?
        .cluster
        .clone();
    let server = kc
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone());
    Some((cluster, server))
}
