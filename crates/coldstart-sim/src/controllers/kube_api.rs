//! The controllers' verbs against a real kube-apiserver, and their runner there: the same
//! reconcile functions as on the embedded server ([`Role::CloudOnly`]: the cloud's half),
//! fed by `kube::runtime` watchers instead of the embedded store's change events.
//!
//! Each controller identity is kept: requests impersonate the actor's user name (in
//! `system:masters`, as the test bed has no RBAC roles for the simulated cloud's service
//! accounts), so an admission policy or webhook sees who writes, as on the embedded server.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::runtime::watcher;
use serde_json::Value;

use super::api::{Api, Role, Served, Write, name_of};
use super::{Key, Requeue, keys_for, reconcile};
use crate::Actor;
use crate::cloud::Cloud;
use crate::semantics::UpdateScope;
use crate::status::ApiError;

/// What the simulated cloud's controllers watch on a real control plane. The bucket types
/// are custom resources that may only be installed later (a restore brings their CRDs):
/// their watchers retry until they are served.
const WATCHED: &[(&str, &str)] = &[
    ("", "persistentvolumeclaims"),
    ("", "persistentvolumes"),
    ("", "services"),
    ("apps", "deployments"),
    ("storage.k8s.io", "volumeattachments"),
    ("objectstorage.k8s.io", "bucketclaims"),
    ("objectstorage.k8s.io", "buckets"),
    ("s3.aws.upbound.io", "buckets"),
    ("s3.aws.m.upbound.io", "buckets"),
    ("s3.services.k8s.aws", "buckets"),
    ("objectbucket.io", "objectbucketclaims"),
    ("objectbucket.io", "objectbuckets"),
    ("snapshot.storage.k8s.io", "volumesnapshots"),
];

/// A watcher whose resource is not served (yet) looks again this often: slow enough to be
/// cheap, fast enough that buckets restored right after their CRD are reconciled promptly.
const UNSERVED_RETRY: Duration = Duration::from_secs(1);

/// The verbs through a `kube::Client`, called from the controllers' own thread.
pub struct KubeApi {
    handle: tokio::runtime::Handle,
    config: kube::Config,
    admin: kube::Client,
    /// One impersonating client per controller identity.
    clients: Mutex<HashMap<String, kube::Client>>,
    cloud: Arc<Cloud>,
    /// Discovery answers; only hits are kept, so a type installed later is found.
    served: Mutex<HashMap<(String, String), Served>>,
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi").finish_non_exhaustive()
    }
}

/// A kube-rs error as the API server's status; a failure to reach it is a 503.
pub fn api_error(e: kube::Error) -> ApiError {
    match e {
        kube::Error::Api(s) => ApiError::remote(s.code, &s.reason, s.message),
        other => ApiError::remote(503, "ServiceUnavailable", other.to_string()),
    }
}

fn served_of(ar: &ApiResource, caps: &ApiCapabilities) -> Served {
    Served {
        group: ar.group.clone(),
        version: ar.version.clone(),
        plural: ar.plural.clone(),
        kind: ar.kind.clone(),
        namespaced: caps.scope == Scope::Namespaced,
    }
}

fn resource_of(s: &Served) -> ApiResource {
    ApiResource {
        group: s.group.clone(),
        version: s.version.clone(),
        api_version: if s.group.is_empty() {
            s.version.clone()
        } else {
            format!("{}/{}", s.group, s.version)
        },
        kind: s.kind.clone(),
        plural: s.plural.clone(),
    }
}

fn to_dynamic(v: Value) -> Result<DynamicObject, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("not an object: {e}")))
}

fn to_value(o: &DynamicObject) -> Result<Value, ApiError> {
    serde_json::to_value(o).map_err(|e| ApiError::internal(e.to_string()))
}

impl KubeApi {
    /// `config` is the admin's; `handle` a runtime the calls are driven on (the caller's
    /// thread must not be one of its workers).
    pub fn new(
        config: kube::Config,
        cloud: Arc<Cloud>,
        handle: tokio::runtime::Handle,
    ) -> Result<Self, ApiError> {
        let admin = kube::Client::try_from(config.clone()).map_err(api_error)?;
        Ok(KubeApi {
            handle,
            config,
            admin,
            clients: Mutex::new(HashMap::new()),
            cloud,
            served: Mutex::new(HashMap::new()),
        })
    }

    fn client_for(&self, actor: &Actor) -> Result<kube::Client, ApiError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&actor.username) {
            return Ok(c.clone());
        }
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(actor.username.clone());
        config.auth_info.impersonate_groups = Some(vec![
            "system:masters".to_owned(),
            "system:authenticated".to_owned(),
        ]);
        // A client spawns its connection worker: on the runtime, not this plain thread.
        let _runtime = self.handle.enter();
        let c = kube::Client::try_from(config).map_err(api_error)?;
        clients.insert(actor.username.clone(), c.clone());
        Ok(c)
    }

    /// The resource's handle in `ns` (when namespaced) for writes as `actor`.
    fn api_as(
        &self,
        actor: &Actor,
        group: &str,
        plural: &str,
        ns: &str,
    ) -> Result<kube::Api<DynamicObject>, ApiError> {
        self.api(self.client_for(actor)?, group, plural, ns)
    }

    fn api(
        &self,
        client: kube::Client,
        group: &str,
        plural: &str,
        ns: &str,
    ) -> Result<kube::Api<DynamicObject>, ApiError> {
        let s = self.served(group, plural)?.ok_or_else(|| {
            ApiError::remote(404, "NotFound", format!("{plural}.{group} is not served"))
        })?;
        let ar = resource_of(&s);
        Ok(if s.namespaced {
            kube::Api::namespaced_with(client, ns, &ar)
        } else {
            kube::Api::all_with(client, &ar)
        })
    }

    fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ApiError> {
        self.handle.block_on(f).map_err(api_error)
    }
}

impl Api for KubeApi {
    fn role(&self) -> Role {
        Role::CloudOnly
    }

    fn cloud(&self) -> &Cloud {
        &self.cloud
    }

    fn served(&self, group: &str, plural: &str) -> Result<Option<Served>, ApiError> {
        let key = (group.to_owned(), plural.to_owned());
        if let Some(s) = self
            .served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Some(s.clone()));
        }
        let found = match self
            .handle
            .block_on(kube::discovery::group(&self.admin, group))
        {
            Ok(g) => g
                .recommended_resources()
                .iter()
                .find(|(ar, _)| ar.plural == plural)
                .map(|(ar, caps)| served_of(ar, caps)),
            Err(kube::Error::Discovery(_)) => None,
            Err(e) => return Err(api_error(e)),
        };
        if let Some(s) = &found {
            self.served
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, s.clone());
        }
        Ok(found)
    }

    fn served_kind(&self, api_version: &str, kind: &str) -> Result<Option<Served>, ApiError> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        match self
            .handle
            .block_on(kube::discovery::pinned_kind(&self.admin, &gvk))
        {
            Ok((ar, caps)) => Ok(Some(served_of(&ar, &caps))),
            Err(kube::Error::Discovery(_)) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(api_error(e)),
        }
    }

    fn get(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        if self.served(group, plural)?.is_none() {
            return Ok(None);
        }
        let api = self.api(self.admin.clone(), group, plural, ns)?;
        self.block_on(api.get_opt(name))?
            .as_ref()
            .map(to_value)
            .transpose()
    }

    fn list(&self, group: &str, plural: &str) -> Result<Vec<Value>, ApiError> {
        let Some(s) = self.served(group, plural)? else {
            return Ok(Vec::new());
        };
        let api: kube::Api<DynamicObject> =
            kube::Api::all_with(self.admin.clone(), &resource_of(&s));
        let list = self.block_on(api.list(&ListParams::default()))?;
        // List items carry no apiVersion/kind on kube-apiserver; the controllers read both.
        list.items
            .iter()
            .map(|o| {
                to_value(o).map(|mut v| {
                    v["apiVersion"] = Value::from(resource_of(&s).api_version);
                    v["kind"] = Value::from(s.kind.clone());
                    v
                })
            })
            .collect()
    }

    fn write(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        write: Write<'_>,
        actor: &Actor,
    ) -> Result<Option<Value>, ApiError> {
        let api = self.api_as(actor, group, plural, ns)?;
        let pp = PostParams::default();
        let stored = match write {
            Write::Create(obj) => self.block_on(api.create(&pp, &to_dynamic(obj.clone())?))?,
            Write::Update(obj, scope) => {
                let name = name_of(obj);
                let obj = to_dynamic(obj.clone())?;
                match scope {
                    UpdateScope::Status => self.block_on(api.replace_status(name, &pp, &obj))?,
                    UpdateScope::Main => self.block_on(api.replace(name, &pp, &obj))?,
                }
            }
            Write::MergePatch { name, patch } => {
                self.block_on(api.patch(name, &PatchParams::default(), &Patch::Merge(patch)))?;
                return Ok(None);
            }
            Write::Delete { name } => {
                return match self.block_on(api.delete(name, &DeleteParams::default())) {
                    // Gone already: what deleting wanted.
                    Ok(_) | Err(ApiError { code: 404, .. }) => Ok(None),
                    Err(e) => Err(e),
                };
            }
        };
        to_value(&stored).map(Some)
    }
}

/// The simulated cloud's controllers running against a real control plane; they stop when
/// this is dropped (the watchers are aborted and the work thread sees its queue close).
#[derive(Debug)]
pub struct Beside {
    watchers: Vec<tokio::task::JoinHandle<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Beside {
    fn drop(&mut self) {
        for w in &self.watchers {
            w.abort();
        }
        // The thread ends once every watcher (each holding a sender) is gone.
        self.thread.take();
    }
}

/// Start the cloud's controllers against the cluster `config` (the admin's) names, acting on
/// `cloud`. Must be called within a multi-threaded tokio runtime.
pub fn spawn_beside(config: kube::Config, cloud: Arc<Cloud>) -> Result<Beside, ApiError> {
    let handle = tokio::runtime::Handle::current();
    let api = KubeApi::new(config, cloud, handle.clone())?;
    let (tx, rx) = mpsc::channel::<Key>();
    let mut watchers = Vec::new();
    for (group, plural) in WATCHED {
        let tx = tx.clone();
        let admin = api.admin.clone();
        watchers.push(handle.spawn(feed(admin, group, plural, tx)));
    }
    drop(tx);
    let thread = std::thread::Builder::new()
        .name("sim-cloud-controllers".into())
        .spawn(move || run_queue(&api, &rx))
        .map_err(|e| ApiError::internal(format!("failed to start the controllers: {e}")))?;
    Ok(Beside {
        watchers,
        thread: Some(thread),
    })
}

/// Watch one resource and queue the keys its changes touch. A resource not served yet is
/// looked for again until it is (its CRD may come with a restore).
async fn feed(
    admin: kube::Client,
    group: &'static str,
    plural: &'static str,
    tx: mpsc::Sender<Key>,
) {
    loop {
        let served = match kube::discovery::group(&admin, group).await {
            Ok(g) => g
                .recommended_resources()
                .into_iter()
                .find(|(ar, _)| ar.plural == plural),
            Err(_) => None,
        };
        let Some((ar, _)) = served else {
            tokio::time::sleep(UNSERVED_RETRY).await;
            continue;
        };
        let api: kube::Api<DynamicObject> = kube::Api::all_with(admin.clone(), &ar);
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let obj = match ev {
                Ok(
                    watcher::Event::Apply(o)
                    | watcher::Event::InitApply(o)
                    | watcher::Event::Delete(o),
                ) => o,
                Ok(_) => continue,
                Err(e) => {
                    // The type went away (its CRD deleted with the cluster) or the API server
                    // restarts: look for it again.
                    tracing::debug!(%group, %plural, error = %e, "watch failed; re-discovering");
                    break;
                }
            };
            let Ok(v) = serde_json::to_value(&obj) else {
                continue;
            };
            let ns = obj.metadata.namespace.clone().unwrap_or_default();
            let name = obj.metadata.name.clone().unwrap_or_default();
            for k in keys_for(group, plural, &ns, &name, &v) {
                if tx.send(k).is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(UNSERVED_RETRY).await;
    }
}

/// The work queue: each key reconciled once per pass, requeued as the reconcile asks.
fn run_queue(api: &KubeApi, rx: &mpsc::Receiver<Key>) {
    let mut due: HashMap<Key, Instant> = HashMap::new();
    loop {
        let now = Instant::now();
        let ready: HashSet<Key> = due
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in ready {
            due.remove(&k);
            if let Requeue::After(d) = reconcile(api, &k) {
                let at = Instant::now() + d;
                due.entry(k).and_modify(|t| *t = (*t).min(at)).or_insert(at);
            }
        }
        let wait = due
            .values()
            .min()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        match rx.recv_timeout(wait) {
            Ok(k) => {
                let now = Instant::now();
                due.insert(k, now);
                while let Ok(k) = rx.try_recv() {
                    due.insert(k, now);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}
