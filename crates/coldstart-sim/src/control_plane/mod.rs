//! Kubernetes' own control plane as a test bed: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and kwok (fake nodes whose pods go Running),
//! started as child processes from binaries that `tests/kube/build.sh` built, configured the
//! way controller-runtime's envtest configures them (TLS from a private CA, RBAC, a client
//! certificate for the admin in `system:masters`, one identity per component).
//!
//! ```text
//!   launcher ──spawns──▶ etcd ◀── kube-apiserver (TLS, RBAC) ◀── kube-controller-manager
//!      │                                 ▲        ▲                 kube-scheduler
//!      ├─ admin endpoint (teardown,      │        └──────────────── kwok (nodes, pods)
//!      │   cloud state and ledger)  kubectl / coldstart (admin kubeconfig)
//!      └─ the simulated cloud and its controllers (CSI provisioner and attacher, Service
//!         load balancers, external-dns, buckets, operators), acting through the API
//! ```
//!
//! `teardown` is a cluster deleted and created again on the same address: every component
//! stops, etcd's data dir goes, everything starts again; the new cluster has a new
//! `kube-system` uid, as a re-created managed cluster does.

pub mod admin;
pub mod launch;
pub mod pki;
pub mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use self::pki::{CertPair, Pki};
use self::process::{Component, PortLease, lease_port};

/// Environment variable naming the directory that holds the binaries (`tests/run` sets it to
/// what `tests/kube/build.sh` prints).
pub const BIN_ENV: &str = "COLDSTART_KUBE_BIN";

/// The binaries a control plane needs, in the order they start.
pub const BINARIES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

/// Annotation kwok selects the nodes it manages by.
const KWOK_ANNOTATION: &str = "kwok.x-k8s.io/node";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the Kubernetes control plane binaries are not built: {detail}; run tests/kube/build.sh and set {BIN_ENV} to the directory it prints"
    )]
    Missing { detail: String },
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start {name} ({bin}): {source}")]
    Spawn {
        name: &'static str,
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} exited ({status}); last lines of {log}:\n{tail}", log = .log.display())]
    Exited {
        name: &'static str,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("timed out after {secs} s waiting until {what}")]
    Timeout { what: String, secs: u64 },
    #[error("failed to make certificates: {0}")]
    Pki(#[from] rcgen::Error),
    #[error("failed to build a client for kube-apiserver: {0}")]
    Client(String),
}

/// Where the binaries live: `$COLDSTART_KUBE_BIN`, or else the newest complete build in
/// `tests/kube/build.sh`'s default cache.
pub fn locate_binaries() -> Result<PathBuf, Error> {
    locate_binaries_in(std::env::var_os(BIN_ENV).map(PathBuf::from))
}

/// [`locate_binaries`] with the directory `$COLDSTART_KUBE_BIN` would name.
pub fn locate_binaries_in(named: Option<PathBuf>) -> Result<PathBuf, Error> {
    let dir = match named {
        Some(d) => d,
        None => default_cache_bin().ok_or_else(|| Error::Missing {
            detail: format!(
                "{BIN_ENV} is not set and no complete build is in ~/.cache/coldstart/kube"
            ),
        })?,
    };
    let missing: Vec<&str> = BINARIES
        .iter()
        .copied()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Missing {
            detail: format!("{} lacks {}", dir.display(), missing.join(", ")),
        });
    }
    Ok(dir)
}

fn default_cache_bin() -> Option<PathBuf> {
    let root = std::env::var_os("COLDSTART_KUBE_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/coldstart/kube"))
        })?;
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| BINARIES.iter().all(|b| bin.join(b).is_file()))
        .filter_map(|bin| Some((bin.metadata().ok()?.modified().ok()?, bin)))
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub cluster_name: String,
    pub bin_dir: PathBuf,
    /// Fake nodes: (name, zone). kwok keeps them Ready.
    pub nodes: Vec<(String, String)>,
}

impl Config {
    /// Two nodes in each of three zones, named as the simulated platform's zones are.
    pub fn new(cluster_name: &str, bin_dir: PathBuf) -> Self {
        let nodes = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
            .iter()
            .flat_map(|z| (0..2).map(move |i| (format!("node-{z}-{i}"), (*z).to_owned())))
            .collect();
        Config {
            cluster_name: cluster_name.to_owned(),
            bin_dir,
            nodes,
        }
    }
}

/// Loopback ports, chosen once so that a re-created cluster answers on the same address;
/// leased for the control plane's whole life, so no other one takes them while a teardown
/// restarts the components.
#[derive(Debug)]
struct Ports {
    etcd_client: PortLease,
    etcd_peer: PortLease,
    apiserver: PortLease,
}

/// Memory of each component, bytes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Memory {
    pub component: &'static str,
    pub rss_bytes: u64,
}

/// A running control plane. Dropping it kills every component.
#[derive(Debug)]
pub struct ControlPlane {
    config: Config,
    /// Certificates, kubeconfigs, etcd's data dir and every log live here.
    dir: tempfile::TempDir,
    ports: Ports,
    ca_pem: String,
    admin: CertPair,
    components: Vec<Component>,
    /// How long the last (re)start took until every node was Ready.
    pub started_in: Duration,
}

impl ControlPlane {
    pub async fn start(config: Config) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("coldstart-kube-")
            .tempdir()
            .map_err(|source| Error::Io {
                what: "create a temp dir".to_owned(),
                source,
            })?;
        let ports = Ports {
            etcd_client: lease_port()?,
            etcd_peer: lease_port()?,
            apiserver: lease_port()?,
        };
        let pki = Pki::new(&config.cluster_name)?;
        let ca_pem = pki.ca_pem();
        let admin = pki.client("kubernetes-admin", Some("system:masters"))?;
        let mut cp = ControlPlane {
            config,
            dir,
            ports,
            ca_pem,
            admin,
            components: Vec::new(),
            started_in: Duration::ZERO,
        };
        cp.write_files(&pki)?;
        cp.boot().await?;
        Ok(cp)
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.apiserver.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin's kubeconfig; `admin` names the launcher's admin endpoint (teardown).
    pub fn kubeconfig(&self, admin: Option<&super::kubeconfig::AdminEndpoint>) -> String {
        super::kubeconfig::render_tls(
            &self.config.cluster_name,
            &self.url(),
            &self.ca_pem,
            &self.admin,
            admin,
        )
    }

    /// Resident memory of every component.
    pub fn memory(&self) -> Vec<Memory> {
        self.components
            .iter()
            .map(|c| Memory {
                component: c.name,
                rss_bytes: c.rss_bytes().unwrap_or(0),
            })
            .collect()
    }

    /// Delete the cluster and create an empty one on the same address: stop every
    /// component, remove etcd's data, start again. Returns the new `kube-system` uid.
    pub async fn teardown(&mut self) -> Result<String, Error> {
        self.stop_components().await;
        let data = self.path("etcd-data");
        std::fs::remove_dir_all(&data).map_err(|source| Error::Io {
            what: format!("remove {}", data.display()),
            source,
        })?;
        self.boot().await?;
        self.kube_system_uid().await
    }

    /// Stop every component (etcd last).
    pub async fn stop(mut self) {
        self.stop_components().await;
    }

    /// Stop every component of a shared control plane (its temp dir goes when it drops).
    pub async fn shutdown(&mut self) {
        self.stop_components().await;
    }

    async fn stop_components(&mut self) {
        while let Some(c) = self.components.pop() {
            c.stop().await;
        }
    }

    pub async fn kube_system_uid(&self) -> Result<String, Error> {
        let client = self.client().await?;
        let ns: serde_json::Value = get_json(&client, "/api/v1/namespaces/kube-system")
            .await
            .map_err(Error::Client)?;
        Ok(ns["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// A kube-rs client as the admin.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        kube::Client::try_from(self.config().await?).map_err(|e| Error::Client(e.to_string()))
    }

    /// The admin's client configuration.
    pub async fn config(&self) -> Result<kube::Config, Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig(None))
            .map_err(|e| Error::Client(e.to_string()))?;
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| Error::Client(e.to_string()))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf, Error> {
        let p = self.path(name);
        std::fs::write(&p, text).map_err(|source| Error::Io {
            what: format!("write {}", p.display()),
            source,
        })?;
        Ok(p)
    }

    /// Certificates, keys and the components' kubeconfigs (each its own identity).
    fn write_files(&self, pki: &Pki) -> Result<(), Error> {
        self.write("ca.crt", &self.ca_pem)?;
        let serving = pki.server(
            "kube-apiserver",
            &[
                "127.0.0.1",
                "localhost",
                "10.96.0.1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )?;
        self.write("apiserver.crt", &serving.cert_pem)?;
        self.write("apiserver.key", &serving.key_pem)?;
        let (sa_key, sa_pub) = pki::service_account_key()?;
        self.write("sa.key", &sa_key)?;
        self.write("sa.pub", &sa_pub)?;
        // The bootstrap RBAC policy binds these user names to the components' roles.
        for (file, user, group) in [
            (
                "controller-manager.kubeconfig",
                "system:kube-controller-manager",
                None,
            ),
            ("scheduler.kubeconfig", "system:kube-scheduler", None),
            // kwok plays every kubelet (node status, leases, pod status); the Node authorizer
            // that would scope a kubelet is not enabled, so it acts as an admin.
            ("kwok.kubeconfig", "kwok", Some("system:masters")),
        ] {
            let pair = pki.client(user, group)?;
            let kc = super::kubeconfig::render_tls(
                &self.config.cluster_name,
                &self.url(),
                &self.ca_pem,
                &pair,
                None,
            );
            self.write(file, &kc)?;
        }
        Ok(())
    }

    /// Start every component in order and wait until the cluster is usable: the API server
    /// ready, the fake nodes Ready, the `default` service account made.
    async fn boot(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let (etcd_client, etcd_peer, apiserver) = (
            self.ports.etcd_client.port,
            self.ports.etcd_peer.port,
            self.ports.apiserver.port,
        );
        let dir = self.dir.path().to_path_buf();
        let d = |name: &str| dir.join(name).display().to_string();
        let etcd_url = format!("http://127.0.0.1:{}", etcd_client);
        let peer_url = format!("http://127.0.0.1:{}", etcd_peer);
        let etcd_args = vec![
            format!("--data-dir={}", d("etcd-data")),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            // A test bed's durability is the temp dir's; fsync would only slow restores.
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        self.spawn("etcd", &etcd_args)?;
        self.wait_tcp(etcd_client, "etcd").await?;

        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            // v1.37 refuses a loopback address in the `kubernetes` Service's endpoints;
            // nothing in this cluster dials that Service, so no reconciler keeps them.
            "--endpoint-reconciler-type=none".to_owned(),
            format!("--secure-port={}", apiserver),
            format!("--cert-dir={}", d("apiserver-certs")),
            format!("--tls-cert-file={}", d("apiserver.crt")),
            format!("--tls-private-key-file={}", d("apiserver.key")),
            format!("--client-ca-file={}", d("ca.crt")),
            "--service-cluster-ip-range=10.96.0.0/12".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            "--allow-privileged=true".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", d("sa.pub")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            "--profiling=false".to_owned(),
        ];
        self.spawn("kube-apiserver", &apiserver_args)?;
        // Listening first, then ready: fewer failed /readyz calls for kube-rs to log.
        self.wait_tcp(apiserver, "kube-apiserver").await?;
        self.wait_ready().await?;

        let cluster_name = self.config.cluster_name.clone();
        let stages = self.config.bin_dir.join("kwok-stages.yaml");
        let kcm = d("controller-manager.kubeconfig");
        let kcm_args = |port: u16| {
            vec![
                format!("--kubeconfig={kcm}"),
                format!("--authentication-kubeconfig={kcm}"),
                format!("--authorization-kubeconfig={kcm}"),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", d("controller-manager-certs")),
                format!("--service-account-private-key-file={}", d("sa.key")),
                format!("--root-ca-file={}", d("ca.crt")),
                // Each controller acts as its own service account, with the bootstrap policy's
                // role for it, as in a kubeadm cluster.
                "--use-service-account-credentials=true".to_owned(),
                "--controllers=*".to_owned(),
                "--leader-elect=false".to_owned(),
                format!("--cluster-name={cluster_name}"),
            ]
        };
        let sched = d("scheduler.kubeconfig");
        let sched_args = |port: u16| {
            vec![
                format!("--kubeconfig={sched}"),
                format!("--authentication-kubeconfig={sched}"),
                format!("--authorization-kubeconfig={sched}"),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", d("scheduler-certs")),
                "--leader-elect=false".to_owned(),
            ]
        };
        let kwok_args = |port: u16| {
            vec![
                format!("--kubeconfig={}", d("kwok.kubeconfig")),
                format!("--config={}", stages.display()),
                "--manage-all-nodes=false".to_owned(),
                format!("--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake"),
                "--node-lease-duration-seconds=40".to_owned(),
                "--cidr=10.244.0.0/16".to_owned(),
                "--node-ip=10.0.0.1".to_owned(),
                format!("--server-address=127.0.0.1:{port}"),
            ]
        };
        self.spawn_listening("kube-controller-manager", kcm_args)
            .await?;
        self.spawn_listening("kube-scheduler", sched_args).await?;
        self.spawn_listening("kwok", kwok_args).await?;

        let client = self.client().await?;
        self.create_nodes(&client).await?;
        self.wait_nodes_ready(&client).await?;
        self.wait_default_service_account(&client).await?;
        self.started_in = started.elapsed();
        Ok(())
    }

    fn spawn(&mut self, name: &'static str, args: &[String]) -> Result<(), Error> {
        let bin = self.config.bin_dir.join(name);
        let log = self.path(&format!("{name}.log"));
        let c = Component::spawn(name, &bin, args, log)?;
        self.components.push(c);
        Ok(())
    }

    /// Start a component that serves only its own health and metrics on a port leased as it
    /// starts (held while the component runs), and wait until it listens. A process that is
    /// no control plane can still take the port before the component binds it; such a
    /// component is started again on another port, nothing else depending on which one.
    async fn spawn_listening(
        &mut self,
        name: &'static str,
        args: impl Fn(u16) -> Vec<String>,
    ) -> Result<(), Error> {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let lease = lease_port()?;
            let port = lease.port;
            self.spawn(name, &args(port))?;
            if let Some(c) = self.components.last_mut() {
                c.lease = Some(lease);
            }
            match self.wait_tcp(port, name).await {
                Err(Error::Exited {
                    name: exited, tail, ..
                }) if exited == name
                    && tail.contains("address already in use")
                    && attempt < ATTEMPTS =>
                {
                    // The last one spawned is the one that exited.
                    if let Some(c) = self.components.pop() {
                        c.stop().await;
                    }
                }
                done => return done,
            }
        }
        unreachable!("the last attempt returns")
    }

    fn check_alive(&mut self) -> Result<(), Error> {
        self.components
            .iter_mut()
            .try_for_each(Component::check_alive)
    }

    async fn poll<F, Fut>(&mut self, what: &str, secs: u64, mut cond: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            self.check_alive()?;
            if cond().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    secs,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_tcp(&mut self, port: u16, name: &str) -> Result<(), Error> {
        self.poll(&format!("{name} listens on {port}"), 60, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let client = self.client().await?;
        self.poll("kube-apiserver answers /readyz", 120, || {
            let client = client.clone();
            async move {
                let Ok(req) = http::Request::get("/readyz").body(Vec::new()) else {
                    return false;
                };
                client
                    .request_text(req)
                    .await
                    .is_ok_and(|t| t.trim() == "ok")
            }
        })
        .await
    }

    async fn create_nodes(&mut self, client: &kube::Client) -> Result<(), Error> {
        for (name, zone) in self.config.nodes.clone() {
            let region = zone.trim_end_matches(char::is_alphabetic).to_owned();
            let node = json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    // What a kubelet sets: the attach/detach controller only attaches
                    // volumes (VolumeAttachments for CSI) to nodes that carry it.
                    "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0",
                        "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "topology.kubernetes.io/zone": zone,
                        "topology.kubernetes.io/region": region,
                        // The EBS CSI node plugin's topology key, which its volumes' node
                        // affinity names.
                        "topology.ebs.csi.aws.com/zone": zone,
                    },
                },
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                },
            });
            let body = serde_json::to_vec(&node).unwrap_or_default();
            let what = format!("node {name} is created");
            self.poll(&what, 30, || {
                let client = client.clone();
                let body = body.clone();
                async move {
                    let Ok(req) = http::Request::post("/api/v1/nodes")
                        .header("Content-Type", "application/json")
                        .body(body)
                    else {
                        return false;
                    };
                    match client.request_text(req).await {
                        Ok(_) => true,
                        // Already there (a retried create): fine.
                        Err(kube::Error::Api(s)) => s.code == 409,
                        Err(_) => false,
                    }
                }
            })
            .await?;
        }
        Ok(())
    }

    async fn wait_nodes_ready(&mut self, client: &kube::Client) -> Result<(), Error> {
        let want = self.config.nodes.len();
        self.poll(&format!("kwok reports {want} nodes Ready"), 60, || {
            let client = client.clone();
            async move {
                let Ok(list) = get_json(&client, "/api/v1/nodes").await else {
                    return false;
                };
                let ready = list["items"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter(|n| {
                                n["status"]["conditions"].as_array().is_some_and(|cs| {
                                    cs.iter()
                                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                                })
                            })
                            .count()
                    })
                    .unwrap_or(0);
                ready >= want
            }
        })
        .await
    }

    /// Pods can only be created once the service-account controller has made `default`.
    async fn wait_default_service_account(&mut self, client: &kube::Client) -> Result<(), Error> {
        self.poll("the default service account exists", 60, || {
            let client = client.clone();
            async move {
                get_json(
                    &client,
                    "/api/v1/namespaces/default/serviceaccounts/default",
                )
                .await
                .is_ok()
            }
        })
        .await
    }
}

async fn get_json(client: &kube::Client, path: &str) -> Result<serde_json::Value, String> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client.request_text(req).await.map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_the_binaries_is_refused_with_the_command_that_builds_them() {
        let empty = tempfile::tempdir().expect("tempdir");
        std::fs::write(empty.path().join("etcd"), "").expect("write");
        let err = locate_binaries_in(Some(empty.path().to_path_buf()))
            .expect_err("binaries are missing")
            .to_string();
        assert!(err.contains("run tests/kube/build.sh"), "{err}");
        assert!(
            err.contains("kube-apiserver, kube-controller-manager, kube-scheduler, kwok"),
            "{err}"
        );
        assert!(!err.contains("lacks etcd"), "{err}");
    }

    #[test]
    fn the_default_nodes_spread_over_three_zones() {
        let c = Config::new("t", PathBuf::new());
        let mut zones: Vec<&str> = c.nodes.iter().map(|(_, z)| z.as_str()).collect();
        zones.dedup();
        assert_eq!(zones, ["eu-west-1a", "eu-west-1b", "eu-west-1c"]);
        assert_eq!(c.nodes.len(), 6);
    }
}
