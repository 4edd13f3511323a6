//! Command-line interface: argument definitions and dispatch to the library. This is the
//! binary's thin shell; every decision lives in the library modules.

mod drill;
mod lifecycle;
mod restore;
mod serve;
mod sim;
mod snapshot;

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
    /// Take a snapshot of the cluster and its bindings into the store; prints its id.
    Snapshot(snapshot::SnapshotArgs),
    /// List, inspect, verify and prune the snapshots in the store.
    #[command(subcommand)]
    Snapshots(snapshot::SnapshotsCommand),
    /// Restore a snapshot into a (fresh) cluster: gate, tiers, verification, operators.
    Restore(restore::RestoreArgs),
    /// Show or lift the admission gate a restore installs.
    #[command(subcommand)]
    Gate(restore::GateCommand),
    /// What would be lost if this cluster were deleted now.
    Audit(restore::AuditArgs),
    /// Planned stop: make nothing losable, quiesce in order, final snapshot, marker.
    Stop(lifecycle::StopArgs),
    /// Start a stopped cluster from its final snapshot and bring everything back in order.
    Start(lifecycle::StartArgs),
    /// The whole story on the simulated platform: audit, stop, deletion, start, verdict.
    Demo(lifecycle::DemoArgs),
    /// Run in the cluster: scheduled snapshots, drills, cold-start restore, status page.
    Serve(serve::ServeArgs),
    /// Rehearse a cold start of a snapshot in a shadow cluster, verify its bindings against
    /// the cloud, record the report; exits 1 when the drill fails.
    Drill(drill::DrillArgs),
    /// List and show recorded drill reports.
    #[command(subcommand)]
    Drills(drill::DrillsCommand),
    /// Check that every binding of a snapshot still points at something real in the cloud.
    VerifyBindings(drill::VerifyBindingsArgs),
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Sim(cmd) => sim::run(cmd, &cli.global).await,
        Command::Snapshot(args) => snapshot::snapshot(args, &cli.global).await,
        Command::Snapshots(cmd) => snapshot::snapshots(cmd, &cli.global).await,
        Command::Restore(args) => restore::restore_cmd(args, &cli.global).await,
        Command::Gate(cmd) => restore::gate_cmd(cmd, &cli.global).await,
        Command::Audit(args) => restore::audit_cmd(args, &cli.global).await,
        Command::Stop(args) => lifecycle::stop_cmd(args, &cli.global).await,
        Command::Start(args) => lifecycle::start_cmd(args, &cli.global).await,
        Command::Demo(args) => lifecycle::demo_cmd(args, &cli.global).await,
        Command::Serve(args) => serve::run(args, &cli.global).await,
        Command::Drill(args) => drill::drill_cmd(args, &cli.global).await,
        Command::Drills(cmd) => drill::drills_cmd(cmd, &cli.global).await,
        Command::VerifyBindings(args) => drill::verify_bindings_cmd(args, &cli.global).await,
    }
}

impl Global {
    /// A client for the cluster `--kubeconfig`/`--context` name.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        Ok(
            coldstart::k8s::connect::connect(self.kubeconfig.as_deref(), self.context.as_deref())
                .await?,
        )
    }

    /// The kubeconfig's cluster name and server URL (what a snapshot records as identity).
    pub fn cluster_identity(&self) -> (String, String) {
        let (name, server) = coldstart::k8s::connect::kubeconfig_cluster(
            self.kubeconfig.as_deref(),
            self.context.as_deref(),
        )
        .unwrap_or_else(|| ("unknown".to_owned(), None));
        (name, server.unwrap_or_default())
    }
}

/// A terminal progress bar fed by a restore's live progress; nothing when piped or --json.
pub struct Bar(Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)>);

impl Bar {
    pub fn finish(self) {
        if let Some((bar, task)) = self.0 {
            task.abort();
            bar.finish_and_clear();
        }
    }
}

pub fn progress_bar(
    json: bool,
    progress: std::sync::Arc<std::sync::Mutex<coldstart::progress::Progress>>,
) -> Bar {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return Bar(None);
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let b = bar.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Ok(p) = progress.lock() {
                b.set_length(p.total() as u64);
                b.set_position(p.done() as u64);
                b.set_message(p.phase.clone());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    Bar(Some((bar, task)))
}
