//! `coldstart serve`: load and validate the config, elect a leader, run the service loop
//! and the web server until SIGTERM.
//!
//! The jobs are [`coldstart::serve::jobs::ClusterJobs`]: real snapshots, retention, audit
//! and cold-start restore against the configured store and this cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use coldstart::config::{Config, Overrides};
use coldstart::schedule::leader::{LeaderElector, LeaseConfig, NamespaceOutcome, ensure_namespace};
use coldstart::serve::jobs::ClusterJobs;
use coldstart::serve::{Service, ServiceConfig, sole_leader, system_clock};
use coldstart::snapshot::key_source::KeySource;
use coldstart::web::metrics::Metrics;
use coldstart::web::{self, AppState, Auth};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Global;
use super::snapshot::KeyArgs;

/// The global `--store` default: a value other than this came from the user.
const GLOBAL_STORE_DEFAULT: &str = "file://./coldstart-data";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the status page, API and metrics (overrides `listen`).
    #[arg(long, env = "COLDSTART_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// The YAML config file (usually mounted from a ConfigMap).
    #[arg(long, env = "COLDSTART_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// RPO target, e.g. 15m (overrides `rpo.target`).
    #[arg(long, env = "COLDSTART_RPO_TARGET", value_name = "DURATION")]
    pub rpo_target: Option<String>,
    /// Snapshot cron, e.g. "*/15 * * * *" (overrides `schedules.snapshot.cron`).
    #[arg(long, env = "COLDSTART_SNAPSHOT_CRON", value_name = "CRON")]
    pub snapshot_cron: Option<String>,
    /// Time zone of the snapshot schedule (overrides `schedules.snapshot.timeZone`).
    #[arg(long, env = "COLDSTART_TIME_ZONE", value_name = "IANA")]
    pub time_zone: Option<String>,
    /// Restore automatically on a detected cold start (overrides `coldStart.autoRestore`).
    #[arg(long, env = "COLDSTART_AUTO_RESTORE", value_name = "BOOL")]
    pub auto_restore: Option<bool>,
    /// Bearer token source for mutating endpoints: env:VAR or file:PATH (overrides `api.token`).
    #[arg(long, env = "COLDSTART_API_TOKEN", value_name = "SOURCE")]
    pub api_token: Option<String>,
    /// Namespace of the leader Lease (default: the pod's namespace, then `coldstart`).
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    pub lease_namespace: Option<String>,
    /// The cloud the auto-restore's preflight (and drills) check bindings against, as for
    /// `restore` and `start`: `auto` (the simulated cloud on a simulated cluster, else
    /// none), `aws`, `sim`, `none`.
    #[arg(long, value_enum, env = "COLDSTART_CLOUD", default_value_t = coldstart::cloud::CloudChoice::Auto)]
    pub cloud: coldstart::cloud::CloudChoice,
    /// This replica's identity on the Lease (default: the pod name).
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub identity: Option<String>,
    /// Validate the configuration and exit.
    #[arg(long)]
    pub check_config: bool,
    /// The encryption key, from the same places as every other command (overrides
    /// `encryption.key`; `COLDSTART_ENCRYPTION_KEY` is used when neither names one).
    #[command(flatten)]
    pub key: KeyArgs,
}

pub async fn run(args: ServeArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let store_url = (config.store.url.is_none() || global.store != GLOBAL_STORE_DEFAULT)
        .then(|| global.store.clone());
    // The key flags win over the config; COLDSTART_ENCRYPTION_KEY only fills a gap.
    let flag_key = KeySource::from_flags(
        args.key.encryption_key_file.as_deref(),
        args.key.encryption_key_secret.as_deref(),
        args.key.encryption_key_context.as_deref(),
    )?
    .filter(|k| !matches!(k, KeySource::Env(_)) || config.encryption.key.is_none());
    config.apply(&Overrides {
        listen: args.listen.clone(),
        store_url,
        rpo_target: args.rpo_target.clone(),
        snapshot_cron: args.snapshot_cron.clone(),
        time_zone: args.time_zone.clone(),
        auto_restore: args.auto_restore,
        api_token: args.api_token.clone(),
        lease_namespace: args.lease_namespace.clone(),
        encryption_key: flag_key.as_ref().map(ToString::to_string),
    });
    let settings = config.validate().context("invalid configuration")?;
    settings.check_sources().context("invalid configuration")?;
    if args.check_config {
        println!("configuration is valid");
        return Ok(ExitCode::SUCCESS);
    }
    let token = settings
        .api_token
        .as_ref()
        .map(|s| s.read())
        .transpose()
        .map_err(|e| anyhow::anyhow!("api.token: {e}"))?;
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("coldstart-{}", uuid::Uuid::new_v4().simple()));
    let client = global.client().await?;

    let (state, actions_rx) = AppState::new(
        Auth {
            token,
            protect_reads: settings.protect_reads,
        },
        Arc::new(Metrics::new()),
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let (publish_tx, publish_rx) = watch::channel(BTreeMap::new());
    let (leader_rx, elector) = match &settings.leader {
        Some(l) => {
            // Known before the elector starts: a missing namespace is created, or the run
            // ends here with what to do (never a create retried forever).
            match ensure_namespace(&client, &l.namespace).await? {
                NamespaceOutcome::Created => {
                    tracing::info!(namespace = %l.namespace, "created the Lease namespace")
                }
                NamespaceOutcome::Existed => {}
            }
            let cfg = LeaseConfig {
                lease_duration: l.lease_duration,
                renew_deadline: l.renew_deadline,
                retry_period: l.retry_period,
                ..LeaseConfig::new(&l.namespace, &l.lease_name, &identity)
            };
            let (rx, handle) =
                LeaderElector::new(client.clone(), cfg, publish_rx).spawn(shutdown.clone());
            (rx, Some(handle))
        }
        None => (sole_leader(&identity), None),
    };

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("failed to listen on {}", settings.listen))?;
    tracing::info!(addr = %listener.local_addr()?, %identity, "coldstart serve listening");
    let server = {
        let shutdown = shutdown.clone();
        let app = web::router(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        })
    };

    let key = flag_key.or_else(|| settings.encryption_key.clone());
    let jobs = real_jobs(&settings, key.as_ref(), client.clone(), global, &args).await?;
    let service = Service::new(
        Arc::new(jobs),
        ServiceConfig::from_settings(&settings, &identity),
        state,
        system_clock(),
        publish_tx,
    );
    let stopped = service.run(leader_rx, actions_rx, shutdown.clone()).await;
    if let Some(job) = &stopped.abandoned {
        tracing::warn!(job, "abandoned the job in progress at shutdown");
    }
    if let Some(h) = elector {
        let _ = h.await;
    }
    server.await??;
    Ok(ExitCode::SUCCESS)
}

async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    token.cancel();
}

/// The service's jobs, from the validated settings.
async fn real_jobs(
    settings: &coldstart::config::Settings,
    key: Option<&KeySource>,
    client: kube::Client,
    global: &Global,
    args: &ServeArgs,
) -> anyhow::Result<ClusterJobs> {
    let store = coldstart::store::Store::open(&settings.store_url)
        .with_context(|| format!("store.url {}", settings.store_url))?;
    let keys = match key {
        Some(src) => src
            .load(global.kubeconfig.as_deref(), global.context.as_deref())
            .await
            .context("encryption.key")?,
        None => coldstart::snapshot::crypto::Keys::plaintext(),
    };
    // The same flag and default as `restore` and `start`: an unknown value is an error.
    let cloud = args.cloud;
    let (kc_name, server) = coldstart::k8s::connect::kubeconfig_cluster(
        global.kubeconfig.as_deref(),
        global.context.as_deref(),
    )
    .unwrap_or_else(|| ("in-cluster".to_owned(), None));
    let mut selector = Vec::new();
    for term in settings
        .operator_selector
        .split(',')
        .filter(|t| !t.trim().is_empty())
    {
        if let Some((k, v)) = term.split_once('=') {
            selector.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Ok(ClusterJobs {
        client,
        store,
        keys,
        snapshot: coldstart::snapshot::write::Options {
            cluster_name: settings.cluster_name.clone().unwrap_or(kc_name),
            server: server.unwrap_or_default(),
            allow_plaintext_secrets: settings.allow_plaintext_secrets,
            data_policy: settings.data_policy,
            cloud,
            ..Default::default()
        },
        restore: coldstart::restore::RestoreOptions {
            plan: coldstart::restore::plan::PlanOptions {
                operator_selector: selector,
                ..Default::default()
            },
            cloud,
            hydration: settings.hydration,
            ..Default::default()
        },
        own_namespace: args.lease_namespace.clone(),
        rpo_target: settings.rpo_target,
        cloud,
    })
}
