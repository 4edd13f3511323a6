//! Connecting to a cluster: `--kubeconfig` / `--context` resolved as kubectl does
//! (explicit file, else `KUBECONFIG`, else `~/.kube/config`, else in-cluster).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

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

/// Build a client for the cluster the user named.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Client, ConnectError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc =
                Kubeconfig::read_from(path).map_err(|source| ConnectError::ReadKubeconfig {
                    path: path.display().to_string(),
                    source,
                })?;
            kube::Config::from_custom_kubeconfig(kc, &options).await?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}
