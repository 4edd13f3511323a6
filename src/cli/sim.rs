//! `coldstart sim ...`: run a simulated cluster, or act on a running one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use coldstart_sim::seed::{self, Seed};
use coldstart_sim::{self as sim, Sim, SimConfig, faults::Faults};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve a simulated cluster until interrupted (Ctrl-C / SIGTERM).
    Serve(ServeArgs),
    /// Delete the simulated cluster the way a cloud deletes one (`--kubeconfig` names it):
    /// `Delete`-policy disks and controller-allocated IPs go, a new empty cluster answers.
    Teardown,
    /// Print the simulated cloud: disks, addresses, load balancers, DNS, buckets, ledger.
    Cloud,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Write a kubeconfig for the cluster's admin to this path.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig_out: Option<PathBuf>,
    /// Cluster name (kubeconfig context and cluster identity).
    #[arg(long, default_value = "sim")]
    pub name: String,
    /// What the cluster holds at start: `empty`, `platform` (a multi-tenant data platform
    /// with disks, IPs, DNS and buckets), or `scale:N` (N objects of realistic size).
    #[arg(long, default_value = "empty")]
    pub seed: String,
    /// Injected faults, e.g. `latency=20ms,error-rate=0.05,throttle-rate=0.2,writes-only`.
    #[arg(long, value_name = "SPEC")]
    pub faults: Option<String>,
}

pub async fn run(cmd: SimCommand, global: &Global) -> anyhow::Result<ExitCode> {
    match cmd {
        SimCommand::Serve(args) => serve(args, global).await,
        SimCommand::Teardown => {
            let out = sim_call(global, http::Method::POST, "/sim/v1/teardown").await?;
            if global.json {
                println!("{out}");
            } else {
                println!(
                    "cluster torn down; a new empty cluster answers (kube-system uid {})",
                    out["uid"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Cloud => {
            let out = sim_call(global, http::Method::GET, "/sim/v1/cloud").await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Call a `/sim/v1` endpoint of the simulated cluster the kubeconfig points at.
async fn sim_call(
    global: &Global,
    method: http::Method,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let client = global.client().await?;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .body(Vec::new())
        .context("failed to build request")?;
    let text = client.request_text(req).await.with_context(|| {
        format!("failed to call {path}: is --kubeconfig a simulated cluster's?")
    })?;
    serde_json::from_str(&text).context("failed to decode the simulated cluster's answer")
}

async fn serve(args: ServeArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let faults = match &args.faults {
        Some(f) => Faults::parse(f).context("invalid --faults")?,
        None => Faults::default(),
    };
    let sim = Sim::new(SimConfig {
        cluster_name: args.name.clone(),
        faults,
    });
    let seed: Seed = args.seed.parse().context("invalid --seed")?;
    let started = std::time::Instant::now();
    seed::load(&sim, seed);
    tracing::info!(seed = %args.seed, elapsed_ms = started.elapsed().as_millis() as u64, "seeded");
    let running = sim::start(sim, args.addr)
        .await
        .with_context(|| format!("failed to listen on {}", args.addr))?;
    if let Some(path) = &args.kubeconfig_out {
        std::fs::write(path, running.kubeconfig())
            .with_context(|| format!("failed to write kubeconfig to {}", path.display()))?;
    }
    if global.json {
        println!(
            "{}",
            serde_json::json!({"url": running.url(), "kubeconfig": args.kubeconfig_out})
        );
    } else {
        println!(
            "simulated cluster {:?} listening on {}",
            args.name,
            running.url()
        );
        if let Some(path) = &args.kubeconfig_out {
            println!("kubeconfig written to {}", path.display());
        }
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Resolve on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
