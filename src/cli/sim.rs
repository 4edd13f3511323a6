//! `coldstart sim ...`: run a simulated cluster, or act on a running one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use coldstart_sim::seed::{self, Seed};
use coldstart_sim::{self as sim, Sim, SimConfig, cloud, faults::Faults};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve a simulated cluster until interrupted (Ctrl-C / SIGTERM).
    Serve(SimServeArgs),
    /// Delete the simulated cluster the way a cloud deletes one (`--kubeconfig` names it):
    /// `Delete`-policy disks and controller-allocated IPs go, a new empty cluster answers.
    Teardown,
    /// Print the simulated cloud (disks, addresses, pools, load balancers, DNS, buckets,
    /// ledger), or add to it what a real account already holds.
    Cloud {
        #[command(subcommand)]
        action: Option<CloudAction>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CloudAction {
    /// Add a resource that exists before any cluster (as in a real account).
    Create {
        #[command(subcommand)]
        what: CreateCloud,
    },
    /// Delete a disk or a snapshot (losing a disk: a zone outage, an operator's mistake).
    Delete {
        #[command(subcommand)]
        what: DeleteCloud,
    },
    /// Take a cloud snapshot of a disk (its data at this moment, under a new `snap-…` id).
    Snapshot {
        /// The disk id (`vol-…`).
        disk: String,
    },
    /// Enable Fast Snapshot Restore for a snapshot in some zones: a disk created from it
    /// there is hydrated at once.
    FastRestore {
        /// The snapshot id (`snap-…`).
        snapshot: String,
        /// Zones, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        zones: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeleteCloud {
    /// A disk; it must not be attached.
    Disk { id: String },
    /// A cloud snapshot.
    Snapshot { id: String },
}

#[derive(Debug, Subcommand)]
pub enum CreateCloud {
    /// A disk, e.g. the one behind a static PersistentVolume.
    Disk {
        /// The disk id (`vol-…`), as a PersistentVolume's volume handle names it.
        id: String,
        #[arg(long)]
        zone: String,
        /// What is written on it (so a reused disk can be told from a new empty one).
        #[arg(long, default_value = "")]
        data: String,
        #[arg(long, default_value_t = 10)]
        size_gib: u64,
    },
    /// A static address reservation.
    Address {
        ip: String,
        /// Its AWS Elastic IP allocation id (`eipalloc-…`).
        #[arg(long)]
        allocation_id: Option<String>,
        /// Its Azure public IP resource name.
        #[arg(long)]
        pip_name: Option<String>,
        /// The Azure resource group it lives in.
        #[arg(long)]
        resource_group: Option<String>,
    },
    /// Make the cluster AKS-style: its node resource group (`MC_…`), labelled on its nodes
    /// and deleted with the cluster with every disk and address in it.
    NodeResourceGroup { name: String },
    /// A MetalLB address pool.
    Pool {
        name: String,
        /// The pool's addresses, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        addresses: Vec<String>,
    },
    /// A bucket.
    Bucket {
        name: String,
        #[arg(long, default_value = "")]
        data: String,
    },
}

impl CreateCloud {
    fn existing(self) -> cloud::Existing {
        let mut e = cloud::Existing::default();
        match self {
            CreateCloud::Disk {
                id,
                zone,
                data,
                size_gib,
            } => e.disks.push(cloud::ExistingDisk {
                id,
                zone,
                size_gib,
                data,
            }),
            CreateCloud::Address {
                ip,
                allocation_id,
                pip_name,
                resource_group,
            } => e.addresses.push(cloud::ExistingAddress {
                ip,
                allocation_id,
                pip_name,
                resource_group,
            }),
            CreateCloud::NodeResourceGroup { name } => e.node_resource_group = Some(name),
            CreateCloud::Pool { name, addresses } => {
                e.pools.push(cloud::ExistingPool { name, addresses })
            }
            CreateCloud::Bucket { name, data } => {
                e.buckets.push(cloud::ExistingBucket { name, data })
            }
        }
        e
    }
}

#[derive(Debug, Args)]
pub struct SimServeArgs {
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
    /// What the cloud account already holds, as YAML or JSON: `disks` (id, zone, data),
    /// `addresses` (ip, allocationId, pipName), `pools` (name, addresses), `buckets` (name,
    /// data).
    #[arg(long, value_name = "FILE")]
    pub cloud: Option<PathBuf>,
    /// Which API server answers: `embedded` (coldstart's simulated one, with the simulated
    /// cloud) or `kubernetes` (etcd, kube-apiserver, kube-controller-manager, kube-scheduler
    /// and kwok from tests/kube/build.sh, found through $COLDSTART_KUBE_BIN).
    #[arg(long, value_enum, default_value_t = ControlPlaneKind::Embedded)]
    pub control_plane: ControlPlaneKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ControlPlaneKind {
    Embedded,
    Kubernetes,
}

pub async fn run(cmd: SimCommand, global: &Global) -> anyhow::Result<ExitCode> {
    match cmd {
        SimCommand::Serve(args) => serve(args, global).await,
        SimCommand::Teardown => {
            let out = match admin_endpoint(global)? {
                // A real control plane: its launcher re-creates the cluster.
                Some(endpoint) => {
                    coldstart::k8s::test_bed::call(&endpoint, "POST", "/sim/v1/teardown")
                        .await
                        .context("failed to tear the cluster down")?
                }
                None => {
                    sim_call(global, http::Method::POST, "/sim/v1/teardown", Vec::new()).await?
                }
            };
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
        SimCommand::Cloud { action: None } => {
            let out = sim_call(global, http::Method::GET, "/sim/v1/cloud", Vec::new()).await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Cloud {
            action: Some(action),
        } => {
            let (method, path, body) = match action {
                CloudAction::Create { what } => (
                    http::Method::POST,
                    "/sim/v1/cloud".to_owned(),
                    serde_json::to_vec(&what.existing())?,
                ),
                CloudAction::Delete {
                    what: DeleteCloud::Disk { id },
                } => (
                    http::Method::DELETE,
                    format!("/sim/v1/cloud/disks/{id}"),
                    Vec::new(),
                ),
                CloudAction::Delete {
                    what: DeleteCloud::Snapshot { id },
                } => (
                    http::Method::DELETE,
                    format!("/sim/v1/cloud/snapshots/{id}"),
                    Vec::new(),
                ),
                CloudAction::Snapshot { disk } => (
                    http::Method::POST,
                    "/sim/v1/cloud/snapshots".to_owned(),
                    serde_json::to_vec(&sim::cloud_api::CreateSnapshot {
                        disk_id: disk,
                        tags: Default::default(),
                    })?,
                ),
                CloudAction::FastRestore { snapshot, zones } => (
                    http::Method::POST,
                    format!("/sim/v1/cloud/snapshots/{snapshot}/fast-restore"),
                    serde_json::to_vec(&sim::cloud_api::FastRestore { zones })?,
                ),
            };
            let out = sim_call(global, method, &path, body).await?;
            if global.json {
                println!("{out}");
            } else {
                println!("done in the simulated cloud: {out}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The launcher's admin endpoint the kubeconfig names (a real control plane's), if any.
fn admin_endpoint(
    global: &Global,
) -> anyhow::Result<Option<coldstart::k8s::test_bed::AdminEndpoint>> {
    let kc = match &global.kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path),
        None => kube::config::Kubeconfig::read(),
    };
    // No readable kubeconfig: the embedded path reports the error with its own context.
    let Ok(kc) = kc else { return Ok(None) };
    Ok(coldstart::k8s::test_bed::admin_endpoint(
        &kc,
        global.context.as_deref(),
    ))
}

/// Call a `/sim/v1` endpoint of the simulated cluster the kubeconfig points at.
async fn sim_call(
    global: &Global,
    method: http::Method,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<serde_json::Value> {
    let client = global.client().await?;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .context("failed to build request")?;
    let text = client.request_text(req).await.map_err(|e| match e {
        // The simulated cloud's own refusal (already exists, invalid): say it as it is.
        kube::Error::Api(s) => anyhow::anyhow!("the simulated cloud refused: {}", s.message),
        e => anyhow::Error::new(e).context(format!(
            "failed to call {path}: is --kubeconfig a simulated cluster's?"
        )),
    })?;
    serde_json::from_str(&text).context("failed to decode the simulated cluster's answer")
}

async fn serve(args: SimServeArgs, global: &Global) -> anyhow::Result<ExitCode> {
    if args.control_plane == ControlPlaneKind::Kubernetes {
        return serve_kubernetes(args, global).await;
    }
    let faults = match &args.faults {
        Some(f) => Faults::parse(f).context("invalid --faults")?,
        None => Faults::default(),
    };
    let sim = Sim::new(SimConfig {
        cluster_name: args.name.clone(),
        faults,
    });
    let seed: Seed = args.seed.parse().context("invalid --seed")?;
    if let Some(path) = &args.cloud {
        load_cloud(&sim.cloud, path)?;
    }
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

/// Add what `--cloud` says the account already holds.
fn load_cloud(cloud: &cloud::Cloud, path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read --cloud {}", path.display()))?;
    let existing: cloud::Existing = serde_yaml::from_str(&text).with_context(|| {
        format!(
            "failed to parse --cloud {}: expected disks, addresses, pools, buckets",
            path.display()
        )
    })?;
    cloud
        .lock()
        .add_existing(&existing)
        .with_context(|| format!("failed to load --cloud {}", path.display()))
}

/// Serve Kubernetes' own control plane until interrupted; `sim teardown` reaches it through
/// the admin endpoint the kubeconfig names.
async fn serve_kubernetes(args: SimServeArgs, global: &Global) -> anyhow::Result<ExitCode> {
    use sim::control_plane::{self, launch::Launched};
    let seed: Seed = args.seed.parse().context("invalid --seed")?;
    anyhow::ensure!(
        args.faults.is_none(),
        "--faults needs the embedded control plane"
    );
    let cloud = std::sync::Arc::new(cloud::Cloud::default());
    if let Some(path) = &args.cloud {
        load_cloud(&cloud, path)?;
    }
    let bin_dir = control_plane::locate_binaries()?;
    let launched = Launched::start(control_plane::Config::new(&args.name, bin_dir), cloud, seed)
        .await
        .context("failed to start the Kubernetes control plane")?;
    let (startup, memory) = (launched.startup, launched.memory.clone());
    let total_rss: u64 = memory.iter().map(|m| m.rss_bytes).sum();
    let (url, state_dir) = (launched.url.clone(), launched.state_dir.clone());
    tracing::info!(elapsed_ms = launched.seeded_in.as_millis() as u64, seed = %args.seed, "seeded through the API");
    let kubeconfig = launched.kubeconfig().await;
    if let Some(path) = &args.kubeconfig_out {
        std::fs::write(path, &kubeconfig)
            .with_context(|| format!("failed to write kubeconfig to {}", path.display()))?;
    }
    if global.json {
        println!(
            "{}",
            serde_json::json!({
                "url": url,
                "kubeconfig": args.kubeconfig_out,
                "control_plane": "kubernetes",
                "startup_ms": startup.as_millis() as u64,
                "memory": memory,
                "rss_bytes": total_rss,
                "state_dir": state_dir,
            })
        );
    } else {
        println!(
            "Kubernetes control plane {:?} listening on {url} (started in {:.1} s, {} MiB resident: {})",
            args.name,
            startup.as_secs_f64(),
            total_rss >> 20,
            memory
                .iter()
                .map(|m| format!("{} {} MiB", m.component, m.rss_bytes >> 20))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("state and logs in {}", state_dir.display());
        if let Some(path) = &args.kubeconfig_out {
            println!("kubeconfig written to {}", path.display());
        }
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    launched.shutdown().await;
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
