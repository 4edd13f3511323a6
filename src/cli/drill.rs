//! `coldstart drill`, `coldstart drills list|show`, `coldstart verify-bindings`: rehearse a
//! cold start and check the cloud, wired to the store, the cluster and the cloud.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, Subcommand};
use coldstart::cloud::{self, CloudChoice, CloudVerifier, Tally, Verdict};
use coldstart::drill::{self, DrillOptions, DrillReport, DrillTarget};
use coldstart::progress::Progress;
use coldstart::restore::RestoreOptions;
use coldstart::snapshot::read;

use super::Global;
use super::restore::{ShapeArgs, open_store, pick};
use super::snapshot::KeyArgs;

/// Where to verify bindings.
#[derive(Debug, Args, Clone)]
pub struct CloudArgs {
    /// Cloud to check the bindings against: `aws` (credentials and region from the usual
    /// AWS sources, AWS_ENDPOINT_URL honoured), `sim` (the simulated cloud behind
    /// --kubeconfig), `none` (report every binding as unverifiable).
    #[arg(long, value_enum, default_value_t = CloudChoice::None)]
    pub cloud: CloudChoice,
}

impl CloudArgs {
    async fn verifier(&self, global: &Global) -> anyhow::Result<Box<dyn CloudVerifier>> {
        let client = match self.cloud {
            CloudChoice::Sim | CloudChoice::Auto => Some(
                coldstart::k8s::connect::connect(
                    global.kubeconfig.as_deref(),
                    global.context.as_deref(),
                )
                .await?,
            ),
            _ => None,
        };
        Ok(cloud::verifier(self.cloud, client).await?)
    }
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Snapshot to drill (default: the newest complete one).
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Rehearse on this real scratch cluster instead of an in-process shadow cluster.
    /// Nothing of production's is attached there (see docs/runbooks/dr-drill.md).
    #[arg(long, value_name = "PATH")]
    pub target_kubeconfig: Option<PathBuf>,
    /// Context of --target-kubeconfig (default: its current context).
    #[arg(long, value_name = "NAME", requires = "target_kubeconfig")]
    pub target_context: Option<String>,
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// Seconds the rehearsal restore waits for claims to bind and addresses to appear.
    #[arg(long, default_value_t = 120)]
    pub verify_timeout: u64,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Subcommand)]
pub enum DrillsCommand {
    /// Drill reports in the store, oldest first.
    List(DrillsListArgs),
    /// One drill report in full.
    Show(DrillShowArgs),
}

#[derive(Debug, Args)]
pub struct DrillsListArgs {
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct DrillShowArgs {
    pub id: String,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct VerifyBindingsArgs {
    /// Snapshot whose bindings to check (default: the newest complete one).
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    #[command(flatten)]
    pub cloud: CloudArgs,
    #[command(flatten)]
    pub key: KeyArgs,
}

pub async fn drill_cmd(args: DrillArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let (store, keys) = open_store(global, &args.key).await?;
    let id = pick(&store, &keys, args.snapshot.as_deref()).await?;
    let verifier = args.cloud.verifier(global).await?;
    let target = match &args.target_kubeconfig {
        None => DrillTarget::Shadow,
        Some(path) => DrillTarget::Cluster {
            client: coldstart::k8s::connect::connect(Some(path), args.target_context.as_deref())
                .await?,
            label: format!("cluster {}", path.display()),
        },
    };
    let opts = DrillOptions {
        target,
        restore: RestoreOptions {
            plan: args.shape.plan_options()?,
            verify_timeout: Duration::from_secs(args.verify_timeout),
            operator_timeout: Duration::from_secs(args.verify_timeout),
            cloud: args.cloud.cloud,
            ..Default::default()
        },
    };
    let progress = Arc::new(Mutex::new(Progress::default()));
    if let Ok(mut p) = progress.lock() {
        p.begin("drill");
    }
    let bar = super::progress_bar(global.json, progress.clone());
    let report = drill::run_drill(&store, &keys, &id, &opts, verifier.as_ref(), &progress).await?;
    bar.finish();
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub async fn drills_cmd(cmd: DrillsCommand, global: &Global) -> anyhow::Result<ExitCode> {
    match cmd {
        DrillsCommand::List(args) => {
            let (store, keys) = open_store(global, &args.key).await?;
            let all = drill::history(&store, &keys).await?;
            if global.json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(ExitCode::SUCCESS);
            }
            if all.is_empty() {
                println!("no drills yet: run `coldstart drill`");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<30} {:<7} {:<30} {:<10} {:>9} {:>8} {:>8}  CLOUD",
                "DRILL", "RESULT", "SNAPSHOT", "TARGET", "RTO", "RPO", "FAILING"
            );
            for r in &all {
                println!(
                    "{:<30} {:<7} {:<30} {:<10} {:>9} {:>8} {:>8}  {}",
                    r.id,
                    if r.passed { "passed" } else { "FAILED" },
                    r.snapshot,
                    r.target.chars().take(10).collect::<String>(),
                    r.rto_ms
                        .map(|m| format!("{:.1} s", m as f64 / 1000.0))
                        .unwrap_or_else(|| "-".into()),
                    r.rpo_s
                        .map(|s| format!("{s} s"))
                        .unwrap_or_else(|| "-".into()),
                    r.failures.len(),
                    r.cloud
                );
            }
        }
        DrillsCommand::Show(args) => {
            let (store, keys) = open_store(global, &args.key).await?;
            let r = drill::load(&store, &keys, &args.id).await?;
            if global.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_report(&r);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn verify_bindings_cmd(
    args: VerifyBindingsArgs,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let (store, keys) = open_store(global, &args.key).await?;
    let id = pick(&store, &keys, args.snapshot.as_deref()).await?;
    let manifest = read::manifest(&store, &keys, &id).await?;
    let verifier = args.cloud.verifier(global).await?;
    let verdicts = verifier.verify(&manifest.bindings).await;
    let tally = Tally::of(&verdicts);
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "snapshot": id, "cloud": verifier.name(), "tally": tally, "verdicts": verdicts,
            }))?
        );
    } else {
        println!(
            "bindings of snapshot {id} on {}: {}",
            verifier.name(),
            if tally.failing() == 0 {
                "no failures"
            } else {
                "FAILING"
            }
        );
        print_verdicts(&verdicts);
    }
    Ok(if tally.failing() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_verdicts(verdicts: &[Verdict]) {
    if verdicts.is_empty() {
        println!("  (the snapshot recorded no bindings)");
        return;
    }
    println!(
        "  {:<8} {:<40} {:<30} {:<16} REASON",
        "KIND", "SUBJECT", "TARGET", "VERDICT"
    );
    for v in verdicts {
        println!(
            "  {:<8} {:<40} {:<30} {:<16} {}",
            v.kind.as_str(),
            v.subject,
            v.target,
            if v.status.fails() {
                v.status.as_str().to_uppercase()
            } else {
                v.status.as_str().to_owned()
            },
            v.reason
        );
    }
}

fn print_report(r: &DrillReport) {
    println!(
        "drill {} of snapshot {} ({}): {}",
        r.id,
        r.snapshot,
        r.cluster,
        if r.passed { "PASSED" } else { "FAILED" }
    );
    for s in &r.steps {
        println!(
            "  {} {:<18} {:>7} ms  {}",
            if s.ok { "ok  " } else { "FAIL" },
            s.name,
            s.ms,
            s.detail
        );
    }
    if let (Some(rto), Some(rpo)) = (r.rto_ms, r.rpo_s) {
        println!(
            "  rehearsal RTO {:.1} s, RPO {} s, {} objects{}",
            rto as f64 / 1000.0,
            rpo,
            r.objects,
            r.tiers
                .iter()
                .map(|(t, c)| format!(" {t}={}", c.total))
                .collect::<String>()
        );
    }
    print_verdicts(&r.verdicts);
    if r.tally.unverifiable > 0 {
        println!(
            "  {} bindings could not be verified: they are NOT known to be fine",
            r.tally.unverifiable
        );
    }
    for d in &r.data {
        let check = match &d.check {
            coldstart::cloud::snapshots::DataCheck::Matches => {
                "holds the snapshot's data".to_owned()
            }
            coldstart::cloud::snapshots::DataCheck::Differs(why) => format!("DIFFERS: {why}"),
            coldstart::cloud::snapshots::DataCheck::Unverifiable(why) => {
                format!("not verified: {why}")
            }
        };
        println!(
            "  data: PV {} restored from {} onto the drill's disk {}: {check}",
            d.pv, d.snapshot, d.disk
        );
    }
    for l in &r.left_out {
        println!("  left out of the rehearsal: {l}");
    }
    for f in &r.failures {
        println!("  FAILURE {f}");
    }
}
