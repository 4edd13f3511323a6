//! `coldstart restore`, `coldstart gate`, `coldstart audit`: the cold-start path and its
//! checks, wired to the store and the cluster.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use coldstart::audit::{self, Severity, SnapshotFacts};
use coldstart::cloud::CloudChoice;
use coldstart::preflight::{self, AcceptMissing, Preflight};
use coldstart::progress::Progress;
use coldstart::restore::apply::Existing;
use coldstart::restore::plan::{PinStyle, PlanOptions, Tier};
use coldstart::restore::{self, RestoreOptions, RestoreReport, source};
use coldstart::snapshot::crypto::Keys;
use coldstart::snapshot::read;
use coldstart::store::Store;
use futures::StreamExt as _;

use super::Global;
use super::snapshot::{KeyArgs, load_keys};

/// How the new cluster is shaped and how hard to push it.
#[derive(Debug, Args, Clone)]
pub struct ShapeArgs {
    /// Label selector (key=value[,key=value]) marking operators, restored at 0 replicas and
    /// scaled up only after verification.
    #[arg(
        long,
        default_value = "coldstart.dev/operator=true",
        value_name = "SELECTOR"
    )]
    pub operator_selector: String,
    /// How this cloud pins a LoadBalancer address.
    #[arg(long, value_enum, default_value_t = PinStyle::LoadBalancerIp)]
    pub pin_style: PinStyle,
    /// Keep every nodePort, not only the ones set explicitly.
    #[arg(long)]
    pub preserve_node_ports: bool,
    /// Keep every clusterIP, not only the ones set explicitly (allocated ones are cleared
    /// by default: the new cluster's service range may differ).
    #[arg(long)]
    pub preserve_cluster_ips: bool,
}

/// The preflight: which cloud to check bindings against, which broken ones to accept.
#[derive(Debug, Args, Clone)]
pub struct PreflightArgs {
    /// Cloud to check every recorded disk, address and bucket against before the first
    /// write: `auto` (the simulated cloud on a simulated cluster, else none), `aws`
    /// (credentials and region from the usual AWS sources), `sim`, `none` (unverifiable).
    #[arg(long, value_enum, env = "COLDSTART_CLOUD", default_value_t = CloudChoice::Auto)]
    pub cloud: CloudChoice,
    /// Go on without these broken bindings (disk id, IP or allocation id, bucket name, or
    /// PV / namespace/Service / namespace/claim name; comma-separated or repeated): the
    /// workloads that use them stay down, the rest comes back (exit code 3). `all` accepts
    /// every one, explicitly.
    #[arg(long, value_delimiter = ',', value_name = "ID")]
    pub accept_missing: Vec<String>,
    /// Enable Fast Snapshot Restore for each cloud snapshot a volume is restored from, in
    /// the zone of its new disk: no hydration (the cloud bills it per snapshot and zone).
    #[arg(long)]
    pub fast_snapshot_restore: bool,
    /// AWS volume initialization rate for disks restored from snapshots, MiB/s (100–300):
    /// a predictable hydration instead of lazy loading.
    #[arg(long, value_name = "MIB_S")]
    pub volume_initialization_rate: Option<u32>,
    /// Seconds a latency-critical volume restored from a snapshot is waited for to
    /// hydrate.
    #[arg(long, default_value_t = 600)]
    pub hydration_timeout: u64,
}

impl PreflightArgs {
    pub fn accept(&self) -> AcceptMissing {
        AcceptMissing::from_flags(&self.accept_missing)
    }

    pub fn hydration(&self) -> restore::data_policy::HydrationOptions {
        restore::data_policy::HydrationOptions {
            fast_restore: self.fast_snapshot_restore,
            initialization_rate_mib_s: self.volume_initialization_rate,
        }
    }
}

/// The exit code of a restore or start that ran: 0 all back and verified, 3 verified but
/// workloads held for accepted missing bindings, 1 not verified.
pub(crate) fn restore_exit(r: &RestoreReport) -> ExitCode {
    if r.succeeded && r.partly_up {
        ExitCode::from(preflight::EXIT_PARTLY_UP)
    } else if r.succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Print a preflight refusal (table, or JSON) and give its exit code.
pub(crate) fn refused(p: &Preflight, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"refused": true, "preflight": p}))?
        );
    } else {
        print!("{}", p.table());
        eprintln!(
            "error: refused at preflight, nothing was written: {}",
            p.refusal()
        );
    }
    Ok(ExitCode::from(preflight::EXIT_REFUSED))
}

impl ShapeArgs {
    pub fn plan_options(&self) -> anyhow::Result<restore::plan::PlanOptions> {
        let mut selector = Vec::new();
        for term in self
            .operator_selector
            .split(',')
            .filter(|t| !t.trim().is_empty())
        {
            let (k, v) = term.split_once('=').with_context(|| {
                format!("failed to parse --operator-selector term {term:?}: expected key=value")
            })?;
            selector.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        Ok(restore::plan::PlanOptions {
            operator_selector: selector,
            preserve_node_ports: self.preserve_node_ports,
            preserve_cluster_ips: self.preserve_cluster_ips,
            pin_style: self.pin_style,
        })
    }
}

/// What a restore into a cluster other than a fresh one of the same name needs to be told.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// This cluster's name, compared with the snapshot's (default: the kubeconfig's
    /// cluster name).
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// Restore a snapshot of another cluster: give that cluster's name, as the snapshot
    /// records it, to confirm.
    #[arg(long, value_name = "NAME")]
    pub from_cluster: Option<String>,
    /// Restore into a cluster that already holds workloads and is not the one the snapshot
    /// was taken from (existing objects are kept).
    #[arg(long)]
    pub into_non_empty: bool,
}

impl TargetArgs {
    pub fn consent(&self, global: &Global) -> restore::target::Consent {
        restore::target::Consent {
            from_cluster: self.from_cluster.clone(),
            into_non_empty: self.into_non_empty,
            target_name: Some(
                self.cluster_name
                    .clone()
                    .unwrap_or_else(|| global.cluster_identity().0),
            ),
        }
    }
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot to restore (default: the newest complete one).
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Print the ordered plan and every transform; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// What to do with objects that already exist.
    #[arg(long, value_enum, default_value_t = Existing::Skip)]
    pub existing: Existing,
    /// The most creates in flight within a tier: the number adapts below it, starting at 64
    /// (or here when lower), halving when the API server throttles (429) and growing by one
    /// a window while it keeps up. Raise it only for a control plane shown to write faster
    /// with more in flight.
    #[arg(long, default_value_t = coldstart::restore::apply::INITIAL_CONCURRENCY)]
    pub concurrency: usize,
    /// Seconds to wait for claims to bind and addresses to appear.
    #[arg(long, default_value_t = 300)]
    pub verify_timeout: u64,
    #[command(flatten)]
    pub preflight: PreflightArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Do NOT install the admission gate (shows what goes wrong without it; never in
    /// production).
    #[arg(long, hide = true)]
    pub no_gate: bool,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub key: KeyArgs,
}

pub(crate) async fn open_store(global: &Global, key: &KeyArgs) -> anyhow::Result<(Store, Keys)> {
    let store = Store::open(&global.store)?;
    let keys = load_keys(key, global)
        .await?
        .unwrap_or_else(Keys::plaintext);
    Ok((store, keys))
}

/// The snapshot to use: the one named, or the newest.
pub(crate) async fn pick(store: &Store, keys: &Keys, id: Option<&str>) -> anyhow::Result<String> {
    if let Some(id) = id {
        return Ok(id.to_owned());
    }
    let all = read::list(store, keys).await?;
    all.iter()
        .max_by_key(|m| m.started_at)
        .map(|m| m.id.clone())
        .with_context(|| {
            format!(
                "failed to find a snapshot in {}: take one with `coldstart snapshot`",
                store.url()
            )
        })
}

pub async fn restore_cmd(args: RestoreArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let (store, keys) = open_store(global, &args.key).await?;
    // Read, decrypt and verify everything before the first write, keeping only where each
    // object lies: the restore reads them back tier by tier. Without --snapshot, the newest
    // snapshot that is whole: a damaged newer one is skipped with a warning.
    let snap = match args.snapshot.as_deref() {
        Some(id) => read::open_stored(&store, &keys, id).await?,
        None => read::open_newest_stored(&store, &keys, |_| true)
            .await?
            .with_context(|| {
                format!(
                    "failed to find a whole snapshot in {}: take one with `coldstart snapshot` (`coldstart snapshots list` shows damaged ones)",
                    store.url()
                )
            })?,
    };
    let (id, cluster) = (snap.manifest.id.clone(), snap.manifest.cluster.clone());
    let src = source::from_stored(&store, &keys, snap);
    let plan_opts = args.shape.plan_options()?;
    if args.dry_run {
        // The cloud is not asked in a dry run: a transfer-or-snapshot volume says both.
        let data: Vec<_> = src
            .bindings
            .volumes
            .iter()
            .map(|v| {
                restore::data_policy::decide(
                    v,
                    &restore::data_policy::DiskState::Unknown,
                    dry_run_provider(args.preflight.cloud),
                    &args.preflight.hydration(),
                )
            })
            .collect();
        print_plan(&src, &plan_opts, &data, global.json).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = global.client().await?;
    // Nothing is written before the target is known to be the right one.
    restore::target::check(&client, &id, &cluster, &args.target.consent(global)).await?;
    let opts = RestoreOptions {
        plan: plan_opts,
        apply: restore::apply::ApplyOptions {
            concurrency: args.concurrency,
            existing: args.existing,
            ..Default::default()
        },
        gate: !args.no_gate,
        verify_timeout: Duration::from_secs(args.verify_timeout),
        cloud: args.preflight.cloud,
        accept_missing: args.preflight.accept(),
        hydration: args.preflight.hydration(),
        hydration_timeout: Duration::from_secs(args.preflight.hydration_timeout),
        ..Default::default()
    };
    let progress = Arc::new(Mutex::new(Progress::default()));
    if let Ok(mut p) = progress.lock() {
        p.begin("restore");
    }
    let bar = super::progress_bar(global.json, progress.clone());
    let report = restore::run(&client, &src, &opts, &progress).await;
    bar.finish();
    match report {
        Err(restore::RestoreError::Refused(p)) => refused(&p, global.json),
        Err(e) => Err(e.into()),
        Ok(report) => {
            print_report(&report, global.json)?;
            Ok(restore_exit(&report))
        }
    }
}

/// The provider whose hydration figures a dry run estimates with (it asks no cloud).
fn dry_run_provider(cloud: coldstart::cloud::CloudChoice) -> &'static str {
    match cloud {
        coldstart::cloud::CloudChoice::Sim => "sim",
        _ => "aws",
    }
}

/// Print the plan (`restore --dry-run`) tier by tier as it is read and planned: what is
/// held is a batch of planned objects, not the whole plan, whatever the snapshot's size.
/// With `json`, one document: `{"tiers": {tier: [planned, ...], ...}, "data": [...]}`.
async fn print_plan(
    src: &restore::RestoreSource,
    opts: &PlanOptions,
    data: &[restore::data_policy::VolumeDecision],
    json: bool,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    if json {
        out.write_all(b"{\"tiers\":{")?;
    } else {
        print_data(&mut out, data)?;
    }
    let mut first_tier = true;
    for tier in Tier::ALL {
        let count = src.objects.count(|t| t == tier);
        if count == 0 {
            continue;
        }
        if json {
            if !first_tier {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut out, &tier)?;
            out.write_all(b":[")?;
        } else {
            writeln!(out, "== tier {} ({count} objects)", tier.name())?;
        }
        first_tier = false;
        let mut planned = restore::plan_tier(src, opts, tier, |_| {});
        let mut first = true;
        while let Some(p) = planned.next().await {
            let p = p?;
            if json {
                if !first {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut out, &p)?;
            } else {
                writeln!(
                    out,
                    "  {} {}",
                    p.kind,
                    p.namespace
                        .as_deref()
                        .map(|n| format!("{n}/{}", p.name))
                        .unwrap_or_else(|| p.name.clone())
                )?;
                for t in &p.transforms {
                    writeln!(out, "      ~ {t}")?;
                }
            }
            first = false;
        }
        if json {
            out.write_all(b"]")?;
        }
    }
    if json {
        out.write_all(b"},\"data\":")?;
        serde_json::to_writer(&mut out, data)?;
        out.write_all(b"}\n")?;
    }
    out.flush()?;
    Ok(())
}

fn print_data(
    out: &mut impl std::io::Write,
    data: &[restore::data_policy::VolumeDecision],
) -> std::io::Result<()> {
    writeln!(out, "== data, per volume")?;
    for d in data {
        let how = match d.source {
            restore::data_policy::DataSource::Transfer => "TRANSFER".to_owned(),
            restore::data_policy::DataSource::FromSnapshot => format!(
                "FROM SNAPSHOT {} (hydration ~{})",
                d.snapshot.as_deref().unwrap_or("?"),
                humantime_ms(d.hydration_estimate_ms)
            ),
        };
        writeln!(
            out,
            "  {} ({}): {how}",
            d.pv,
            d.claim.as_deref().unwrap_or("unclaimed")
        )?;
        writeln!(out, "      ~ {}", d.why)?;
    }
    Ok(())
}

fn humantime_ms(ms: u64) -> String {
    coldstart::audit::humantime(Duration::from_millis(ms))
}

pub(crate) fn print_report(r: &RestoreReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    print!("{}", r.preflight.table());
    println!(
        "restore of snapshot {}: {}",
        r.snapshot,
        match (r.succeeded, r.partly_up) {
            (true, false) => "VERIFIED",
            (true, true) => "PARTLY UP (verified, with workloads held)",
            (false, _) => "NOT VERIFIED",
        }
    );
    println!(
        "  {:<26} {:>7} {:>8} {:>8} {:>8} {:>7}",
        "TIER", "TOTAL", "CREATED", "EXISTING", "UPDATED", "FAILED"
    );
    for (tier, c) in &r.tiers {
        println!(
            "  {:<26} {:>7} {:>8} {:>8} {:>8} {:>7}",
            tier.name(),
            c.total,
            c.created,
            c.existing,
            c.updated,
            c.failed
        );
    }
    for f in &r.failures {
        println!("  FAILED {} ({}): {}", f.object, f.tier.name(), f.reason);
    }
    println!(
        "  volumes reused {}/{}, addresses reused {}/{}, buckets reused {}/{}",
        r.volumes_reused,
        r.verification.volumes_expected,
        r.ips_reused,
        r.verification.ips_expected,
        r.buckets_reused,
        r.verification.buckets_expected
    );
    println!(
        "  new disks {}, new addresses {}, new buckets {}{}",
        r.new_disks,
        r.new_ips,
        r.new_buckets,
        if r.verification.cloud_ledger {
            " (checked against the cloud ledger)"
        } else {
            ""
        }
    );
    if r.volumes_from_snapshot > 0 {
        println!(
            "  volumes from cloud snapshots {} (new disks by data policy); hydration left ~{}, RTO with hydration {:.1} s",
            r.volumes_from_snapshot,
            humantime_ms(r.hydration_ms),
            r.rto_with_hydration_ms as f64 / 1000.0
        );
        for d in r.data.iter().filter(|d| d.new_disk.is_some()) {
            println!(
                "    {} on new disk {} from {} (hydrating ~{}): {}",
                d.pv,
                d.new_disk.as_deref().unwrap_or("?"),
                d.snapshot.as_deref().unwrap_or("?"),
                humantime_ms(d.hydration_estimate_ms),
                d.why
            );
        }
    }
    for p in &r.verification.problems {
        println!("  PROBLEM {p}");
    }
    println!(
        "  gate: {}; operators scaled up: {}",
        r.gate,
        r.operators_scaled_up.len()
    );
    println!("  RTO {:.1} s, RPO {} s", r.rto_ms as f64 / 1000.0, r.rpo_s);
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// Show whether the restore gate is installed.
    Status,
    /// Lift the gate by hand (after a failed verification, once you have looked).
    Off,
}

pub async fn gate_cmd(cmd: GateCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let client = global.client().await?;
    match cmd {
        GateCommand::Status => {
            let installed = restore::gate::status(&client).await?;
            if global.json {
                println!(
                    "{}",
                    serde_json::json!({"installed": !installed.is_empty(), "policies": installed})
                );
            } else if installed.is_empty() {
                println!("gate: not installed");
            } else {
                println!("gate: INSTALLED ({})", installed.join(", "));
            }
        }
        GateCommand::Off => {
            let n = restore::gate::lift(&client).await?;
            println!("gate lifted ({n} policies removed)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The newest snapshot must be younger than this (seconds).
    #[arg(long, default_value_t = 900)]
    pub rpo_target: u64,
    /// Exit non-zero when a finding is at or above this severity (for CI).
    #[arg(long, value_enum)]
    pub fail_on: Option<Severity>,
    /// Cloud to check the live bindings against (`auto`: the simulated cloud on a
    /// simulated cluster, else none); a broken one is a critical finding.
    #[arg(long, value_enum, env = "COLDSTART_CLOUD", default_value_t = CloudChoice::Auto)]
    pub cloud: CloudChoice,
    /// Data policy of volumes whose claim has no `coldstart.dev/data-policy` annotation
    /// (as the snapshots are taken with).
    #[arg(long, value_enum, env = "COLDSTART_DATA_POLICY", default_value_t = coldstart::bindings::DataPolicy::Transfer)]
    pub data_policy: coldstart::bindings::DataPolicy,
    #[command(flatten)]
    pub key: KeyArgs,
}

/// The newest snapshot's facts, if the store has one (an unreadable store is an error).
pub(crate) async fn newest_facts(
    store: &Store,
    keys: &Keys,
) -> anyhow::Result<Option<SnapshotFacts>> {
    let all = read::list(store, keys).await?;
    Ok(all
        .into_iter()
        .max_by_key(|m| m.started_at)
        .map(|m| SnapshotFacts::of(&m.id, m.started_at, &m.bindings)))
}

pub async fn audit_cmd(args: AuditArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let (store, keys) = open_store(global, &args.key).await?;
    let client = global.client().await?;
    let facts = newest_facts(&store, &keys).await?;
    let inputs = audit::Inputs {
        data_policy: args.data_policy,
        ..audit::collect(&client, facts).await?
    };
    let mut findings = audit::audit(
        &inputs,
        chrono::Utc::now(),
        Duration::from_secs(args.rpo_target),
    );
    let verifier = coldstart::cloud::verifier(args.cloud, Some(client.clone())).await?;
    let pre = preflight::check(
        &client,
        verifier.as_ref(),
        &audit::live_bindings(&inputs),
        &[],
        &AcceptMissing::default(),
    )
    .await?;
    let mut broken = audit::binding_findings(&pre);
    broken.append(&mut findings);
    let findings = broken;
    if !global.json {
        print!("{}", pre.table());
    }
    print_findings(&findings, global.json)?;
    Ok(match args.fail_on {
        Some(t) if audit::fails(&findings, t) => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    })
}

pub(crate) fn print_findings(findings: &[audit::Finding], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(findings)?);
        return Ok(());
    }
    if findings.is_empty() {
        println!("nothing would be lost if this cluster were deleted now");
        return Ok(());
    }
    println!("{:<9} {:<44} WHAT WOULD BE LOST", "SEVERITY", "OBJECT");
    for f in findings {
        println!("{:<9} {:<44} {}", f.severity.as_str(), f.object, f.message);
        println!("{:<9} {:<44}   fix: {}", "", "", f.fix);
    }
    Ok(())
}
