//! `coldstart stop`, `coldstart start`, `coldstart demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use coldstart::bindings::DataPolicy;
use coldstart::demo::{self, DemoOptions, Narrator};
use coldstart::lifecycle::stop::{DEFAULT_ORDER, Group};
use coldstart::lifecycle::{self, StartOptions, StopOptions};
use coldstart::progress::Progress;
use coldstart::restore::{RestoreOptions, plan::PinStyle};
use coldstart::snapshot::write;

use super::Global;
use super::restore::{
    PreflightArgs, ShapeArgs, TargetArgs, open_store, print_findings, print_report, refused,
    restore_exit,
};
use super::snapshot::KeyArgs;

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Show every step and change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Cancel a stop on a cluster that still runs: undo every recorded change and bring
    /// the workloads back.
    #[arg(long, conflicts_with = "dry_run")]
    pub undo: bool,
    /// Quiesce order (start brings them back in reverse).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = DEFAULT_ORDER.to_vec())]
    pub order: Vec<Group>,
    /// How this cloud pins a LoadBalancer address.
    #[arg(long, value_enum, default_value_t = PinStyle::LoadBalancerIp)]
    pub pin_style: PinStyle,
    /// Seconds to wait for pods to go and volumes to detach (with --undo: for the workloads
    /// to be ready again).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Cluster name recorded in the snapshot (default: the kubeconfig's cluster).
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Data policy of volumes whose claim has no `coldstart.dev/data-policy` annotation.
    #[arg(long, value_enum, env = "COLDSTART_DATA_POLICY", default_value_t = DataPolicy::Transfer)]
    pub data_policy: DataPolicy,
    /// Move disks and public IPs out of the AKS node resource group (which Azure deletes
    /// with the cluster) into this resource group, once the volumes are detached.
    #[arg(long, value_name = "RG")]
    pub move_to_resource_group: Option<String>,
    #[command(flatten)]
    pub preflight: PreflightArgs,
    #[command(flatten)]
    pub key: KeyArgs,
}

pub async fn stop_cmd(args: StopArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let (store, keys) = open_store(global, &args.key).await?;
    let client = global.client().await?;
    if args.undo {
        let r =
            lifecycle::undo_stop(&client, &store, &keys, Duration::from_secs(args.timeout)).await?;
        if global.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "stop undone: {} changes reverted, {} workloads back at their replicas{}",
                r.changes_undone,
                r.workloads_restarted,
                match &r.snapshot {
                    Some(id) => format!(" (final snapshot {id} kept)"),
                    None => " (the stop had not finished)".to_owned(),
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (kc_name, server) = global.cluster_identity();
    let opts = StopOptions {
        pin_style: args.pin_style,
        order: args.order,
        quiesce_timeout: Duration::from_secs(args.timeout),
        snapshot: write::Options {
            cluster_name: args.cluster_name.unwrap_or(kc_name),
            server,
            data_policy: args.data_policy,
            cloud: args.preflight.cloud,
            ..Default::default()
        },
        dry_run: args.dry_run,
        cloud: args.preflight.cloud,
        accept_missing: args.preflight.accept(),
        move_to_resource_group: args.move_to_resource_group,
    };
    let progress = Arc::new(Mutex::new(Progress::default()));
    let r = match lifecycle::stop(&client, &store, &keys, &opts, &progress).await {
        Err(lifecycle::LifecycleError::Refused(p)) => return refused(&p, global.json),
        other => other?,
    };
    if global.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", r.preflight.table());
    println!("what would have been lost:");
    print_findings(&r.findings, false)?;
    println!(
        "{} ({}):",
        if r.dry_run {
            "changes that stop WOULD make"
        } else {
            "changes made"
        },
        r.changes.len()
    );
    for c in &r.changes {
        println!("  {}: {}", c.object.display(), c.description);
    }
    for s in &r.steps {
        println!(
            "quiesce {:?}: {}",
            s.group,
            s.workloads
                .iter()
                .map(|w| format!("{} ({})", w.object.display(), w.replicas))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match &r.snapshot {
        Some(id) => println!(
            "stopped: final snapshot {id} ({} objects), marker written",
            r.snapshot_objects
        ),
        None => println!("dry run: nothing changed"),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Start from this snapshot instead of the one `stop` marked.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Seconds to wait for each group to become ready.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub preflight: PreflightArgs,
    #[command(flatten)]
    pub key: KeyArgs,
}

pub async fn start_cmd(args: StartArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let (store, keys) = open_store(global, &args.key).await?;
    let client = global.client().await?;
    let opts = StartOptions {
        restore: RestoreOptions {
            plan: args.shape.plan_options()?,
            verify_timeout: Duration::from_secs(args.timeout),
            cloud: args.preflight.cloud,
            accept_missing: args.preflight.accept(),
            hydration: args.preflight.hydration(),
            hydration_timeout: Duration::from_secs(args.preflight.hydration_timeout),
            ..Default::default()
        },
        snapshot: args.snapshot,
        ready_timeout: Duration::from_secs(args.timeout),
        consent: args.target.consent(global),
    };
    let progress = Arc::new(Mutex::new(Progress::default()));
    if let Ok(mut p) = progress.lock() {
        p.begin("start");
    }
    let bar = super::progress_bar(global.json, progress.clone());
    let r = lifecycle::start(&client, &store, &keys, &opts, &progress).await;
    bar.finish();
    let r = match r {
        Err(lifecycle::LifecycleError::Restore(coldstart::restore::RestoreError::Refused(p))) => {
            return refused(&p, global.json);
        }
        other => other?,
    };
    if global.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_report(&r.restore, false)?;
        for (g, ms) in &r.scaled_up {
            println!("  started {g:?} in {:.1} s", *ms as f64 / 1000.0);
        }
        println!(
            "start {}: RTO {:.1} s",
            if r.restore.partly_up {
                "PARTLY UP (held workloads listed above; run `coldstart start` again once their bindings are back)"
            } else if r.restore.succeeded {
                "complete"
            } else {
                "NOT VERIFIED"
            },
            r.rto_ms as f64 / 1000.0
        );
    }
    Ok(restore_exit(&r.restore))
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps its kubeconfig and snapshot store (default: a temporary
    /// directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the simulated cluster up after the run (its kubeconfig is printed), until Ctrl-C.
    /// The status page of a demo is not served yet: run `coldstart serve` against it.
    #[arg(long)]
    pub keep: bool,
    /// Which API server the cluster has: `embedded` (coldstart's simulated one) or
    /// `kubernetes` (Kubernetes' own control plane from tests/kube/build.sh, found through
    /// $COLDSTART_KUBE_BIN, with the simulated cloud's controllers beside it).
    #[arg(long, value_enum, default_value_t = super::sim::ControlPlaneKind::Embedded)]
    pub control_plane: super::sim::ControlPlaneKind,
}

/// Prints each step as it starts and ends, with its duration.
struct Terminal {
    started: Instant,
}

impl Narrator for Terminal {
    fn step(&self, title: &str) {
        println!("[{:>5.1}s] ▶ {title}", self.started.elapsed().as_secs_f64());
    }
    fn done(&self, summary: &str, elapsed: Duration) {
        println!("         ✔ {summary} ({:.1}s)", elapsed.as_secs_f64());
    }
}

pub async fn demo_cmd(args: DemoArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let opts = DemoOptions {
        dir,
        // The real control plane starts in ~10 s and settles through its own controllers.
        settle_timeout: Duration::from_secs(match args.control_plane {
            super::sim::ControlPlaneKind::Embedded => 30,
            super::sim::ControlPlaneKind::Kubernetes => 120,
        }),
        control_plane: match args.control_plane {
            super::sim::ControlPlaneKind::Embedded => demo::ControlPlane::Embedded,
            super::sim::ControlPlaneKind::Kubernetes => demo::ControlPlane::Kubernetes,
        },
    };
    let progress = Arc::new(Mutex::new(Progress::default()));
    let terminal = Terminal {
        started: Instant::now(),
    };
    let quiet = demo::Quiet;
    let narrator: &dyn Narrator = if global.json { &quiet } else { &terminal };
    let (report, running) = demo::run(&opts, narrator, &progress).await?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if let Some(stop) = &report.stop {
            println!(
                "\nwhat a deletion would have lost before `stop` ({} findings):",
                report.findings.len()
            );
            print_findings(&report.findings, false)?;
            println!(
                "\n`stop` changed {} objects so nothing was losable:",
                stop.changes.len()
            );
            for c in &stop.changes {
                println!("  {}: {}", c.object.display(), c.description);
            }
        }
        println!(
            "\n{:<8} {:<42} {:<46} {:<46} SAME",
            "KIND", "NAME", "BEFORE", "AFTER"
        );
        for r in &report.rows {
            println!(
                "{:<8} {:<42} {:<46} {:<46} {}",
                r.kind,
                r.name,
                r.before,
                r.after,
                if r.same { "yes" } else { "NO" }
            );
        }
        println!();
        println!(
            "volumes reused   {:>4}    new disks     {:>3}",
            report.volumes_reused, report.new_disks
        );
        println!(
            "addresses reused {:>4}    new addresses {:>3}",
            report.ips_reused, report.new_ips
        );
        println!(
            "buckets reused   {:>4}    new buckets   {:>3}",
            report.buckets_reused, report.new_buckets
        );
        println!("DNS names same   {:>4}", report.dns_names_same);
        println!(
            "objects restored {:>4}    RTO {:.1} s, RPO {} s",
            report.objects_restored,
            report.rto_ms as f64 / 1000.0,
            report.rpo_s
        );
        println!(
            "\nverdict: {}",
            if report.verified {
                "every disk, address, DNS name and bucket is the original; nothing new was provisioned"
            } else {
                "NOT VERIFIED: see the rows marked NO above"
            }
        );
    }
    if args.keep {
        println!(
            "simulated cluster still up at {} (kubeconfig {}); Ctrl-C to stop",
            running.url(),
            report.kubeconfig
        );
        super::sim::shutdown_signal().await;
    }
    running.stop().await;
    Ok(if report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
