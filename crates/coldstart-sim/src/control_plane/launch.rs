//! A launched test bed: Kubernetes' own control plane, the simulated cloud beside it with its
//! controllers acting through the API, and the admin endpoint the kubeconfig names. What
//! `coldstart sim serve --control-plane kubernetes` and `coldstart demo --control-plane
//! kubernetes` run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::admin::{self, Admin};
use super::{Config, ControlPlane, Error, Memory};
use crate::cloud::Cloud;
use crate::controllers::kube_api::{self, Beside, KubeApi};
use crate::seed::Seed;

/// A running test bed; [`Launched::shutdown`] stops it (dropping it kills the components).
#[derive(Debug)]
pub struct Launched {
    pub cp: Arc<Mutex<ControlPlane>>,
    pub cloud: Arc<Cloud>,
    pub admin: Admin,
    _controllers: Beside,
    pub url: String,
    pub state_dir: std::path::PathBuf,
    /// Until every node was Ready, and the seed was applied.
    pub startup: Duration,
    pub seeded_in: Duration,
    pub memory: Vec<Memory>,
}

impl Launched {
    /// Start the control plane, the cloud's controllers and the admin endpoint, then apply
    /// `seed` through the API (`scale:N` is refused: it is the embedded server's bulk load).
    pub async fn start(config: Config, cloud: Arc<Cloud>, seed: Seed) -> Result<Self, Error> {
        if let Seed::Scale(_) = seed {
            return Err(Error::Client(
                "a scale seed needs the embedded control plane; tests/bench/realcp.sh creates objects on the real one through its API".to_owned(),
            ));
        }
        let started = std::time::Instant::now();
        let cp = ControlPlane::start(config).await?;
        let startup = started.elapsed();
        let memory = cp.memory();
        let url = cp.url();
        let state_dir = cp.dir().to_path_buf();
        let client_config = cp.config().await?;
        let controllers = kube_api::spawn_beside(client_config.clone(), cloud.clone())
            .map_err(|e| Error::Client(format!("failed to start the cloud's controllers: {e}")))?;
        let seeding = std::time::Instant::now();
        if seed == Seed::Platform {
            let api = KubeApi::new(
                client_config,
                cloud.clone(),
                tokio::runtime::Handle::current(),
            )
            .map_err(|e| Error::Client(e.to_string()))?;
            // The seed's verbs block on the runtime: off its workers.
            tokio::task::spawn_blocking(move || crate::platform::load(&api))
                .await
                .map_err(|e| Error::Client(format!("the platform seed failed: {e}")))?;
        }
        let seeded_in = seeding.elapsed();
        let cp = Arc::new(Mutex::new(cp));
        let admin = admin::serve(cp.clone(), cloud.clone())
            .await
            .map_err(|source| Error::Io {
                what: "serve the admin endpoint".to_owned(),
                source,
            })?;
        Ok(Launched {
            cp,
            cloud,
            admin,
            _controllers: controllers,
            url,
            state_dir,
            startup,
            seeded_in,
            memory,
        })
    }

    /// The admin's kubeconfig, naming the admin endpoint.
    pub async fn kubeconfig(&self) -> String {
        self.cp.lock().await.kubeconfig(Some(&self.admin.endpoint))
    }

    /// Delete the cluster the way a cloud does and start an empty one (the admin endpoint's
    /// `POST /sim/v1/teardown`); returns the new `kube-system` uid.
    pub async fn teardown(&self) -> Result<String, String> {
        admin::teardown_cluster(&self.cp, &self.cloud).await
    }

    /// Stop every component.
    pub async fn shutdown(self) {
        let Launched {
            cp,
            admin,
            _controllers,
            ..
        } = self;
        // Controllers first: their watchers would only log the API server going away.
        drop(_controllers);
        drop(admin);
        cp.lock().await.shutdown().await;
    }
}
