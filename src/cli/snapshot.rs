//! `coldstart snapshot` and `coldstart snapshots list|show|verify|prune|unlock`.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use coldstart::bindings::{Bindings, DataPolicy, Pin};
use coldstart::k8s::RetryPolicy;
use coldstart::snapshot::crypto::Keys;
use coldstart::snapshot::key_source::KeySource;
use coldstart::snapshot::prune::{self, Policy};
use coldstart::snapshot::rules::Selection;
use coldstart::snapshot::{read, write};
use coldstart::store::{Store, lock};
use serde_json::json;

use super::Global;

/// Where the encryption key comes from (first match wins: file, Secret, environment).
#[derive(Debug, Args, Clone)]
pub struct KeyArgs {
    /// File holding the base64 32-byte key (else $COLDSTART_ENCRYPTION_KEY).
    #[arg(long, global = true, value_name = "PATH")]
    pub encryption_key_file: Option<PathBuf>,
    /// Kubernetes Secret holding the key, NAMESPACE/NAME[/KEY] (key defaults to `key`). Keep
    /// it in another cluster (see --encryption-key-context): the key must survive this one.
    #[arg(long, global = true, value_name = "NS/NAME[/KEY]")]
    pub encryption_key_secret: Option<String>,
    /// Kubeconfig context to read --encryption-key-secret from (default: the current one).
    #[arg(long, global = true, value_name = "NAME")]
    pub encryption_key_context: Option<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Name recorded as the cluster's identity (default: the kubeconfig's cluster name).
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Store Secrets even without an encryption key (the manifest says so).
    #[arg(long)]
    pub allow_plaintext_secrets: bool,
    /// Data policy of volumes whose claim has no `coldstart.dev/data-policy` annotation;
    /// `snapshot` and `transfer-or-snapshot` volumes get a cloud snapshot.
    #[arg(long, value_enum, env = "COLDSTART_DATA_POLICY", default_value_t = DataPolicy::Transfer)]
    pub data_policy: DataPolicy,
    /// The cloud that takes those snapshots: `auto` (the simulated cloud on a simulated
    /// cluster, else none), `aws`, `sim`, `none`.
    #[arg(long, value_enum, env = "COLDSTART_CLOUD", default_value_t = coldstart::cloud::CloudChoice::Auto)]
    pub cloud: coldstart::cloud::CloudChoice,
    /// Only these namespaces (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub include_namespaces: Vec<String>,
    /// Leave out these namespaces.
    #[arg(long, value_delimiter = ',')]
    pub exclude_namespaces: Vec<String>,
    /// Only these resources (`plural` or `plural.group`, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub include_resources: Vec<String>,
    /// Leave out these resources.
    #[arg(long, value_delimiter = ',')]
    pub exclude_resources: Vec<String>,
    /// Only objects matching this label selector.
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// Resources listed at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Give up on a request the API server keeps failing after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub api_retry_budget: u64,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// List complete snapshots, oldest first.
    List(KeyOnly),
    /// Show one snapshot's manifest summary.
    Show(ShowArgs),
    /// Re-read every byte of a snapshot, checking every hash and decryption.
    Verify(IdArgs),
    /// Forget snapshots retention does not keep, and delete data nothing references.
    Prune(PruneArgs),
    /// Remove the writer lock left by a crashed snapshot or prune.
    Unlock,
}

#[derive(Debug, Args)]
pub struct KeyOnly {
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    pub id: String,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub id: String,
    /// Print the bindings table (volumes, load balancers, buckets).
    #[arg(long)]
    pub bindings: bool,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[arg(long, default_value_t = 0)]
    pub keep_last: usize,
    #[arg(long, default_value_t = 0)]
    pub keep_daily: usize,
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: usize,
    /// Leave unreferenced data younger than this many seconds (a writer may still use it).
    #[arg(long, default_value_t = 3600)]
    pub grace_seconds: u64,
    /// Say what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The cloud holding the cloud snapshots of forgotten snapshots (deleted with them):
    /// `auto` (the simulated cloud when --kubeconfig names a simulated cluster, else
    /// none: they are listed as left), `aws`, `sim`, `none`.
    #[arg(long, value_enum, env = "COLDSTART_CLOUD", default_value_t = coldstart::cloud::CloudChoice::Auto)]
    pub cloud: coldstart::cloud::CloudChoice,
    #[command(flatten)]
    pub key: KeyArgs,
}

/// The key the user gave, if any.
pub(crate) async fn load_keys(k: &KeyArgs, global: &Global) -> anyhow::Result<Option<Keys>> {
    let source = KeySource::from_flags(
        k.encryption_key_file.as_deref(),
        k.encryption_key_secret.as_deref(),
        k.encryption_key_context.as_deref(),
    )?;
    match source {
        Some(s) => Ok(Some(
            s.load(global.kubeconfig.as_deref(), global.context.as_deref())
                .await?,
        )),
        None => Ok(None),
    }
}

pub async fn snapshot(args: SnapshotArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let keys = load_keys(&args.key, global).await?;
    let store = Store::open(&global.store)?;
    let client = global.client().await?;
    let (kc_name, server) = global.cluster_identity();
    let opts = write::Options {
        selection: Selection {
            include_namespaces: args.include_namespaces,
            exclude_namespaces: args.exclude_namespaces,
            include_resources: args.include_resources,
            exclude_resources: args.exclude_resources,
            label_selector: args.selector,
        },
        cluster_name: args.cluster_name.unwrap_or(kc_name),
        server,
        concurrency: args.concurrency,
        retry: RetryPolicy {
            budget: Duration::from_secs(args.api_retry_budget),
            ..Default::default()
        },
        allow_plaintext_secrets: args.allow_plaintext_secrets,
        data_policy: args.data_policy,
        cloud: args.cloud,
        ..Default::default()
    };
    let encrypted = keys.is_some();
    let keys = keys.unwrap_or_else(Keys::plaintext);
    let progress = Arc::new(write::CaptureProgress::default());
    let bar =
        (!global.json && std::io::stderr().is_terminal()).then(|| spawn_bar(progress.clone()));
    let started = Instant::now();
    let result = write::take(&client, &store, &keys, &opts, progress).await;
    if let Some((bar, task)) = bar {
        task.abort();
        bar.finish_and_clear();
    }
    let m = result?;
    let duration_ms = started.elapsed().as_millis() as u64;
    if !encrypted {
        tracing::warn!(
            plaintext_secrets = m.plaintext_secrets,
            "snapshot stored WITHOUT encryption"
        );
    }
    if global.json {
        println!(
            "{}",
            json!({
                "id": m.id,
                "objects": m.stats.objects,
                "bytes_written": m.stats.bytes_written,
                "bytes_total": m.stats.bytes_total,
                "bytes_stored": m.stats.bytes_stored,
                "duration_ms": duration_ms,
                "encrypted": encrypted,
                "bindings": {
                    "volumes": m.bindings.volumes.len(),
                    "load_balancers": m.bindings.load_balancers.len(),
                    "buckets": m.bindings.buckets.len(),
                },
                "unavailable": m.unavailable,
            })
        );
    } else {
        for u in &m.unavailable {
            eprintln!(
                "warning: {} was unavailable and is not in this snapshot",
                u.group_version
            );
        }
        println!("{}", m.id);
    }
    Ok(ExitCode::SUCCESS)
}

fn spawn_bar(
    progress: Arc<write::CaptureProgress>,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed}] resources {pos}/{len}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let task = tokio::spawn(async move {
        loop {
            b.set_length(progress.resources_total.load(Ordering::Relaxed));
            b.set_position(progress.resources_done.load(Ordering::Relaxed));
            b.set_message(format!(
                "{} objects, {} written",
                progress.objects.load(Ordering::Relaxed),
                indicatif::HumanBytes(progress.bytes_written.load(Ordering::Relaxed))
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (bar, task)
}

pub async fn snapshots(cmd: SnapshotsCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let store = Store::open(&global.store)?;
    let keys = |k: Option<Keys>| k.unwrap_or_else(Keys::plaintext);
    match cmd {
        SnapshotsCommand::List(a) => {
            let keys = keys(load_keys(&a.key, global).await?);
            let listing = read::list_all(&store, &keys).await?;
            for d in &listing.damaged {
                eprintln!(
                    "warning: snapshot {} is damaged and skipped: {}",
                    d.id, d.error
                );
            }
            let all = listing.snapshots;
            if global.json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|m| {
                        json!({"id": m.id, "cluster": m.cluster, "startedAt": m.started_at,
                        "objects": m.stats.objects, "bytesStored": m.stats.bytes_stored})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<26} {:<20} {:>9} {:>12}  STARTED",
                    "ID", "CLUSTER", "OBJECTS", "STORED"
                );
                for m in all {
                    println!(
                        "{:<26} {:<20} {:>9} {:>12}  {}",
                        m.id,
                        m.cluster.name,
                        m.stats.objects,
                        indicatif::HumanBytes(m.stats.bytes_stored).to_string(),
                        m.started_at.to_rfc3339()
                    );
                }
            }
        }
        SnapshotsCommand::Show(a) => {
            let keys = keys(load_keys(&a.key, global).await?);
            let m = read::manifest(&store, &keys, &a.id).await?;
            if global.json {
                let mut v = serde_json::to_value(&m)?;
                if !a.bindings
                    && let Some(o) = v.as_object_mut()
                {
                    o.remove("resources");
                }
                println!("{v}");
            } else if a.bindings {
                print_bindings(&m.bindings);
            } else {
                println!("id:          {}", m.id);
                println!(
                    "cluster:     {} (kube-system uid {}) {}",
                    m.cluster.name, m.cluster.uid, m.cluster.server
                );
                println!(
                    "taken:       {} .. {}",
                    m.started_at.to_rfc3339(),
                    m.finished_at.to_rfc3339()
                );
                println!("coldstart:   {}", m.coldstart_version);
                println!(
                    "encryption:  {}{}",
                    m.encryption,
                    if m.plaintext_secrets {
                        " (Secrets stored in PLAINTEXT)"
                    } else {
                        ""
                    }
                );
                println!(
                    "objects:     {} ({} as JSON)",
                    m.stats.objects,
                    indicatif::HumanBytes(m.stats.bytes_total)
                );
                println!(
                    "stored:      {} in {} packs; this run wrote {}",
                    indicatif::HumanBytes(m.stats.bytes_stored),
                    m.packs.len(),
                    indicatif::HumanBytes(m.stats.bytes_written)
                );
                println!(
                    "bindings:    {} volumes, {} load balancers, {} buckets",
                    m.bindings.volumes.len(),
                    m.bindings.load_balancers.len(),
                    m.bindings.buckets.len()
                );
                for u in &m.unavailable {
                    println!("unavailable: {} ({})", u.group_version, u.error);
                }
            }
        }
        SnapshotsCommand::Verify(a) => {
            let keys = keys(load_keys(&a.key, global).await?);
            let v = read::verify(&store, &keys, &a.id).await?;
            if global.json {
                println!(
                    "{}",
                    json!({"id": a.id, "ok": true, "objects": v.objects, "packs": v.packs, "bytes_read": v.bytes_read})
                );
            } else {
                println!(
                    "snapshot {} is whole: {} objects in {} packs, {} read and verified",
                    a.id,
                    v.objects,
                    v.packs,
                    indicatif::HumanBytes(v.bytes_read)
                );
            }
        }
        SnapshotsCommand::Prune(a) => {
            let keys = keys(load_keys(&a.key, global).await?);
            let policy = Policy {
                keep_last: a.keep_last,
                keep_daily: a.keep_daily,
                keep_weekly: a.keep_weekly,
            };
            // Only a cluster connection that works can reach the simulated cloud; AWS
            // needs none.
            let client = match a.cloud {
                coldstart::cloud::CloudChoice::None | coldstart::cloud::CloudChoice::Aws => None,
                _ => global.client().await.ok(),
            };
            let cloud = coldstart::cloud::snapshots::provider(a.cloud, client).await;
            let r = prune::prune(
                &store,
                &keys,
                policy,
                Duration::from_secs(a.grace_seconds),
                a.dry_run,
                cloud.as_deref(),
            )
            .await?;
            if global.json {
                println!(
                    "{}",
                    json!({"kept": r.kept, "forgotten": r.forgotten, "packs_deleted": r.packs_deleted, "bytes_freed": r.bytes_freed, "dry_run": a.dry_run,
                        "cloud_snapshots_deleted": r.cloud_snapshots_deleted, "cloud_snapshots_left": r.cloud_snapshots_left})
                );
            } else {
                let verb = if a.dry_run { "would forget" } else { "forgot" };
                println!(
                    "kept {} snapshots; {verb} {}: {}",
                    r.kept.len(),
                    r.forgotten.len(),
                    r.forgotten.join(", ")
                );
                println!(
                    "{} {} packs ({})",
                    if a.dry_run { "would delete" } else { "deleted" },
                    r.packs_deleted,
                    indicatif::HumanBytes(r.bytes_freed)
                );
                if !r.cloud_snapshots_deleted.is_empty() {
                    println!(
                        "{} cloud snapshots: {}",
                        if a.dry_run { "would delete" } else { "deleted" },
                        r.cloud_snapshots_deleted.join(", ")
                    );
                }
                if !r.cloud_snapshots_left.is_empty() {
                    eprintln!(
                        "warning: left {} cloud snapshots no kept snapshot names (no cloud to delete them with; pass --cloud): {}",
                        r.cloud_snapshots_left.len(),
                        r.cloud_snapshots_left.join(", ")
                    );
                }
            }
        }
        SnapshotsCommand::Unlock => match lock::force_unlock(&store).await? {
            Some(info) => println!(
                "removed the writer lock held by {} ({} since {})",
                info.holder, info.purpose, info.acquired
            ),
            None => println!("the store was not locked"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn print_bindings(b: &Bindings) {
    println!("VOLUMES");
    println!(
        "  {:<28} {:<8} {:<22} {:<40} {:<12} {:<6} {:<8} CLAIM",
        "PV", "PROVIDER", "DRIVER", "DISK", "ZONE", "SIZE", "RECLAIM"
    );
    for v in &b.volumes {
        println!(
            "  {:<28} {:<8} {:<22} {:<40} {:<12} {:<6} {:<8} {}",
            v.pv,
            format!("{:?}", v.provider).to_lowercase(),
            v.csi_driver,
            v.disk_id,
            v.zone.as_deref().unwrap_or("-"),
            v.size.as_deref().unwrap_or("-"),
            v.reclaim_policy.as_deref().unwrap_or("-"),
            v.claim
                .as_ref()
                .map(|c| format!("{}/{}", c.namespace, c.name))
                .unwrap_or_else(|| "-".to_owned())
        );
    }
    println!("LOAD BALANCERS");
    println!(
        "  {:<32} {:<8} {:<36} {:<24} DNS",
        "SERVICE", "PINNED", "PIN", "ADDRESS"
    );
    for l in &b.load_balancers {
        let pin = match &l.pin {
            None => "-".to_owned(),
            Some(Pin::AwsEip { allocations }) => format!("aws-eip {}", allocations.join(",")),
            Some(Pin::Azure { pip_name, ipv4, .. }) => format!(
                "azure {}",
                pip_name.as_deref().or(ipv4.as_deref()).unwrap_or("-")
            ),
            Some(Pin::LoadBalancerIp { address }) => format!("loadBalancerIP {address}"),
            Some(Pin::Metallb { addresses }) => format!("metallb {}", addresses.join(",")),
        };
        let addr: Vec<&str> = l
            .ingress_ips
            .iter()
            .chain(&l.ingress_hostnames)
            .map(String::as_str)
            .collect();
        println!(
            "  {:<32} {:<8} {:<36} {:<24} {}",
            format!("{}/{}", l.namespace, l.name),
            if l.pinned { "yes" } else { "NO" },
            pin,
            if addr.is_empty() {
                "-".to_owned()
            } else {
                addr.join(",")
            },
            if l.dns_names.is_empty() {
                "-".to_owned()
            } else {
                l.dns_names.join(",")
            }
        );
    }
    println!("BUCKETS");
    println!(
        "  {:<40} {:<18} {:<28} {:<8} DELETION",
        "CLAIM", "KIND", "BUCKET", "ADOPTED"
    );
    for k in &b.buckets {
        println!(
            "  {:<40} {:<18} {:<28} {:<8} {}",
            match &k.namespace {
                Some(ns) => format!("{}/{}", ns, k.name),
                None => k.name.clone(),
            },
            serde_json::to_value(k.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            k.bucket.as_deref().unwrap_or("-"),
            if k.adopted { "yes" } else { "no" },
            k.deletion_policy.as_deref().unwrap_or("-")
        );
    }
}
