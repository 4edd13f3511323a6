//! The simulated cluster: an HTTP server that speaks enough of the Kubernetes API that
//! kube-rs and the real `kubectl` cannot tell it from an API server for the calls they make,
//! because no real API server can be installed where coldstart is built and demonstrated.
//!
//! Data flow:
//!
//! ```text
//!  kubectl / kube-rs ──HTTP──▶ http (auth, faults, routing, tables, watch)
//!                                 │
//!                                 ▼
//!          controllers ──▶ apiserver (verbs) ──▶ admission (VAP + CEL, quota) ──▶ store
//!              ▲                                                           │
//!              └──────────────────────── change events ◀───────────────────┘
//! ```
//!
//! A `Sim` lives as long as its server; `teardown` wipes the cluster the way a cloud
//! deletes one while the cloud's retained resources survive.

pub mod admission;
pub mod apiserver;
pub mod cloud;
/// The simulated cloud's write API (snapshots, disks from snapshots, Fast Snapshot Restore).
pub mod cloud_api;
pub mod control_plane;
pub mod controllers;
pub mod faults;
pub mod http;
pub mod kubeconfig;
pub mod patch;
pub mod platform;
/// ResourceQuota's pure rules: usage, admission and the recount.
pub mod quota;
pub mod registry;
pub mod seed;
pub mod selector;
pub mod semantics;
pub mod status;
pub mod store;
pub mod structural;
pub mod table;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::{Value, json};

use self::faults::Faults;
use self::registry::{GroupResource, Registry};
use self::store::Store;

/// Who is making a request, as authentication decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub username: String,
    pub groups: Vec<String>,
}

impl Actor {
    /// An in-cluster component acting under its own identity.
    pub fn system(username: &str) -> Self {
        Actor {
            username: username.to_owned(),
            groups: vec!["system:authenticated".to_owned()],
        }
    }

    /// The cluster administrator the generated kubeconfig authenticates as.
    pub fn admin() -> Self {
        Actor {
            username: "kubernetes-admin".to_owned(),
            groups: vec![
                "system:masters".to_owned(),
                "system:authenticated".to_owned(),
            ],
        }
    }

    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// Cluster IPs and node ports, handed out as a real allocator would (unique, in range).
#[derive(Debug, Default)]
pub struct Allocator {
    next_ip: u32,
    next_port: u32,
}

/// The NodePort range every cluster uses by default.
const NODE_PORT_BASE: u32 = 30000;
const NODE_PORT_COUNT: u32 = 2768;

impl Allocator {
    pub fn cluster_ip(&mut self) -> String {
        // 10.96.0.0/12: the default service CIDR; .1 is the `kubernetes` Service.
        self.next_ip += 1;
        let n = self.next_ip;
        format!(
            "10.{}.{}.{}",
            96 + (n >> 16) % 16,
            (n >> 8) & 0xff,
            n & 0xff
        )
    }

    pub fn node_port(&mut self) -> u32 {
        let p = NODE_PORT_BASE + self.next_port % NODE_PORT_COUNT;
        self.next_port += 1;
        p
    }
}

/// Settings for a simulated cluster.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// Name shown in the kubeconfig and used as the cluster's identity.
    pub cluster_name: String,
    pub faults: Faults,
}

/// One simulated cluster.
#[derive(Debug)]
pub struct Sim {
    pub store: Store,
    /// The cloud outside the cluster; it survives teardown.
    pub cloud: cloud::Cloud,
    registry: RwLock<Registry>,
    alloc: Mutex<Allocator>,
    pub faults: RwLock<Faults>,
    tokens: RwLock<HashMap<String, Actor>>,
    pub cel: admission::ProgramCache,
    /// Held from a create's quota admission to its recount in a namespace with quotas, so
    /// two creates cannot both take the last of a quota.
    quota_admission: Mutex<()>,
    pub cluster_name: String,
    /// The admin's bearer token, written into generated kubeconfigs.
    pub admin_token: String,
    /// Which controllers reconciling through this server play: all of them, except in the
    /// tests of the half that runs beside a real kube-controller-manager.
    role: controllers::Role,
}

impl Sim {
    pub fn new(config: SimConfig) -> Arc<Self> {
        Self::playing(config, controllers::Role::Everything)
    }

    /// The embedded server seen as kube-apiserver with kube-controller-manager beside it:
    /// controllers reconciling through it play only the cloud's half. For testing that half
    /// without starting a real control plane.
    #[cfg(test)]
    pub(crate) fn beside_kcm() -> Arc<Self> {
        Self::playing(SimConfig::default(), controllers::Role::CloudOnly)
    }

    fn playing(config: SimConfig, role: controllers::Role) -> Arc<Self> {
        let admin_token = format!("sim-admin-{}", uuid::Uuid::new_v4().simple());
        let mut tokens = HashMap::new();
        tokens.insert(admin_token.clone(), Actor::admin());
        let sim = Arc::new(Sim {
            store: Store::new(),
            cloud: cloud::Cloud::default(),
            registry: RwLock::new(Registry::new()),
            alloc: Mutex::new(Allocator::default()),
            faults: RwLock::new(config.faults),
            tokens: RwLock::new(tokens),
            cel: admission::ProgramCache::default(),
            quota_admission: Mutex::new(()),
            cluster_name: if config.cluster_name.is_empty() {
                "sim".to_owned()
            } else {
                config.cluster_name
            },
            admin_token,
            role,
        });
        sim.bootstrap();
        sim
    }

    pub fn registry(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    fn registry_mut(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|e| e.into_inner())
    }

    fn alloc(&self) -> MutexGuard<'_, Allocator> {
        self.alloc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The identity a bearer token authenticates as.
    pub fn authenticate(&self, token: &str) -> Option<Actor> {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// Issue a token for another identity (a service account, an operator, a test user).
    pub fn issue_token(&self, actor: Actor) -> String {
        let token = format!("sim-{}", uuid::Uuid::new_v4().simple());
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), actor);
        token
    }

    /// What a new cluster has before anyone touches it: the system namespaces and the
    /// `kubernetes` Service.
    fn bootstrap(&self) {
        let sys = Actor::system("system:apiserver");
        let ns_def = self
            .registry()
            .get("", "v1", "namespaces")
            .cloned()
            .expect("namespaces are a built-in resource");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = self.create(
                &ns_def,
                None,
                json!({"metadata": {"name": ns}}),
                &sys,
                Default::default(),
            );
        }
        if let Some(node) = self.registry().get("", "v1", "nodes").cloned() {
            let node_group = self.cloud.lock().node_resource_group.clone();
            for (i, zone) in cloud::ZONES.iter().enumerate() {
                let name = format!("sim-node-{}", i + 1);
                let _ = self.create(
                    &node,
                    None,
                    json!({"metadata": {"name": name, "labels": {
                        "kubernetes.io/hostname": name,
                        "topology.kubernetes.io/zone": zone,
                        "topology.ebs.csi.aws.com/zone": zone}},
                        "spec": {"providerID": format!("aws:///{zone}/i-0{:016x}", rand::random::<u64>())}}),
                    &sys,
                    Default::default(),
                );
            }
            if node_group.is_some() {
                self.label_nodes_for_aks();
            }
        }
        if let Some(svc) = self.registry().get("", "v1", "services").cloned() {
            let _ = self.create(
                &svc,
                Some("default"),
                json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                       "spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
                &sys,
                Default::default(),
            );
        }
    }

    /// Label every node with the cloud's node resource group, as AKS does
    /// (`kubernetes.azure.com/cluster`).
    pub fn label_nodes_for_aks(&self) {
        let Some(group) = self.cloud.lock().node_resource_group.clone() else {
            return;
        };
        let Some(node) = self.registry().get("", "v1", "nodes").cloned() else {
            return;
        };
        let patch = json!({"metadata": {"labels": {"kubernetes.azure.com/cluster": group}}});
        for ((_, name), _) in self.store.all(&node.group_resource(), None) {
            let _ = self.patch(
                &node,
                None,
                &name,
                patch::PatchKind::Merge,
                patch.to_string().as_bytes(),
                semantics::UpdateScope::Main,
                &Actor::admin(),
                Default::default(),
            );
        }
    }

    /// Delete the cluster: every object and every CRD-served type gone, a fresh cluster in
    /// its place at the same address.
    pub fn wipe_cluster(&self) {
        self.store.wipe();
        *self.registry_mut() = Registry::new();
        *self.alloc() = Allocator::default();
        self.bootstrap();
    }

    /// Delete the cluster the way a cloud does: `Delete`-policy disks deleted, addresses
    /// the controllers allocated released, buckets whose claims say Delete deleted; then a
    /// new, empty cluster answers at the same address. Returns the new cluster's summary.
    pub fn teardown(&self) -> Value {
        let mut doomed = Vec::new();
        if let Some(pv) = self.def("", "persistentvolumes") {
            for (_, s) in self.store.all(&pv.group_resource(), None) {
                let v = s.value();
                if v.pointer("/spec/persistentVolumeReclaimPolicy")
                    .and_then(Value::as_str)
                    == Some("Delete")
                {
                    doomed.extend(controllers::storage_disk_of(&v));
                }
            }
        }
        self.cloud.lock().delete_cluster(&doomed);
        self.wipe_cluster();
        tracing::info!(disks_deleted = doomed.len(), "simulated cluster torn down");
        self.summary()
    }

    /// The UID of `kube-system`: what tools commonly use as a cluster's identity. A
    /// recreated cluster has a new one.
    pub fn cluster_uid(&self) -> String {
        self.store
            .get(&apiserver::namespaces_gr(), "", "kube-system")
            .map(|s| s.uid.clone())
            .unwrap_or_default()
    }

    /// A JSON summary for `/sim/v1/cluster`.
    pub fn summary(&self) -> Value {
        let reg = self.registry();
        let mut counts = serde_json::Map::new();
        for d in reg.all() {
            let n = self.store.count(&d.group_resource());
            if n > 0 {
                counts.insert(
                    if d.group.is_empty() {
                        d.plural.clone()
                    } else {
                        format!("{}.{}", d.plural, d.group)
                    },
                    json!(n),
                );
            }
        }
        json!({
            "name": self.cluster_name,
            "uid": self.cluster_uid(),
            "resourceVersion": self.store.resource_version().to_string(),
            "objects": counts,
        })
    }

    /// Look a resource up by group and plural at its preferred version.
    pub fn def(&self, group: &str, plural: &str) -> Option<registry::ResourceDef> {
        self.registry()
            .preferred(&GroupResource {
                group: group.to_owned(),
                plural: plural.to_owned(),
            })
            .cloned()
    }
}

/// A running simulated cluster.
#[derive(Debug)]
pub struct Running {
    pub sim: Arc<Sim>,
    pub addr: SocketAddr,
    controllers: Option<controllers::Controllers>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig (YAML) for the admin of this cluster.
    pub fn kubeconfig(&self) -> String {
        kubeconfig::render(&self.sim.cluster_name, &self.url(), &self.sim.admin_token)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(c) = self.controllers.take() {
            let _ = tokio::task::spawn_blocking(move || c.stop()).await;
        }
        let _ = (&mut self.task).await;
    }
}

/// Start a simulated cluster's HTTP server and controllers on `addr` (port 0 picks a
/// free one).
pub async fn start(sim: Arc<Sim>, addr: SocketAddr) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = http::router(sim.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    let controllers = Some(controllers::spawn(sim.clone()));
    Ok(Running {
        sim,
        addr,
        controllers,
        shutdown: Some(tx),
        task,
    })
}
