//! Command-line interface: argument definitions and dispatch to the library. This is the
//! binary's thin shell; every decision lives in the library modules.

mod serve;
mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use coldstart::telemetry::LogFormat;

/// coldstart makes a whole Kubernetes cluster safe to stop and start again.
///
/// It snapshots every object and the cloud bindings behind them (disks, load-balancer IPs,
/// DNS names, buckets), restores them on a cold start before any operator runs, and proves
/// nothing new was provisioned.
#[derive(Debug, Parser)]
#[command(
    name = "coldstart",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Path to the kubeconfig (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Snapshot store URL: file://DIR, memory://, s3://BUCKET/PREFIX, az://..., gs://...
    #[arg(
        long,
        global = true,
        env = "COLDSTART_STORE",
        default_value = "file://./coldstart-data",
        value_name = "URL"
    )]
    pub store: String,
    /// Print machine-readable JSON on stdout instead of human output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=coldstart=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run or control a simulated cluster and cloud (the test bed and `demo` default).
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Run in the cluster: scheduled snapshots, drills, cold-start restore, status page.
    Serve(serve::ServeArgs),
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Sim(cmd) => sim::run(cmd, &cli.global).await,
        Command::Serve(args) => serve::run(args, &cli.global).await,
    }
}
