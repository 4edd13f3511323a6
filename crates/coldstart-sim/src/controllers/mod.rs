//! The controllers that make a stop and start hard, running inside the simulated cluster:
//! the PV binder and a dynamic provisioner (a PVC without `volumeName` gets a NEW disk; a
//! PV whose claim uid is stale is `Released`, and with `Delete` its disk is deleted), the
//! StatefulSet and Deployment controllers (claims from templates, readiness, disk
//! attachment), kube-scheduler's volume binding (a `WaitForFirstConsumer` claim waits for
//! its first pod's node, and its disk goes to that node's zone), the Service load-balancer controller (pinned address reused when free, else
//! a NEW one) with external-dns-style records, a bucket operator (COSI and Crossplane styles:
//! adopt the named bucket, else create a NEW one), the CSI snapshotter (a `VolumeSnapshot`
//! gets a cloud snapshot of its claim's disk), namespace defaults, and "operators":
//! Deployments that create the objects they manage whenever they are running — what races a
//! naive restore.
//!
//! Every controller acts through the API server's verbs ([`api::Api`]) under its own
//! identity, so an admission gate applies to it exactly as to any client. Two runners feed
//! the same reconcile functions: on the embedded server a work queue fed by the store's
//! change events (all of the above, [`Role::Everything`]); beside a real kube-apiserver
//! ([`kube_api`]) one fed by `kube::runtime` watchers, running only the cloud's half
//! ([`Role::CloudOnly`]: kube-controller-manager binds, runs StatefulSets and Deployments,
//! and asks for attachments). Each runs on its own thread so a slow reconcile never stalls
//! the API.

pub mod api;
mod buckets;
pub mod kube_api;
mod namespaces;
mod services;
pub mod snapshots;
pub(crate) mod storage;
mod workloads;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

pub use self::api::{Api, Role};
use super::semantics::UpdateScope;
use super::status::ApiError;
use super::store::EventType;
use super::{Actor, Sim};

/// Label that marks a Deployment as an operator (the label coldstart's restore looks for by
/// default, so the simulated platform is labelled the way a user would label theirs).
pub const OPERATOR_LABEL: &str = "coldstart.dev/operator";
/// Annotation holding the JSON list of objects an operator creates when they are absent.
pub const MANAGES_ANNOTATION: &str = "sim.coldstart.dev/manages";

/// What to reconcile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Pvc(String, String),
    Pv(String),
    Service(String, String),
    StatefulSet(String, String),
    Deployment(String, String),
    BucketClaim(String, String),
    CosiBucket(String),
    /// A Crossplane bucket: (group, namespace or "", name): v1 cluster-scoped, v2 `.m.`
    /// namespaced.
    CrossplaneBucket(String, String, String),
    AckBucket(String, String),
    /// A Rook/NooBaa ObjectBucketClaim (its ObjectBucket's changes land here too).
    ObjectBucketClaim(String, String),
    Namespace(String),
    /// A VolumeAttachment kube-controller-manager's attach/detach controller made (only with
    /// [`Role::CloudOnly`]: the embedded role attaches as its workloads start).
    VolumeAttachment(String),
    VolumeSnapshot(String, String),
    /// A pod whose claims may wait for their first consumer (only with
    /// [`Role::Everything`]: beside a real control plane kube-scheduler selects the node).
    Pod(String, String),
}

/// When to look at a key again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    No,
    After(Duration),
}

/// Pending work is retried at this pace: fast enough that tests settle in well under a
/// second, slow enough not to spin.
pub(crate) const RETRY: Duration = Duration::from_millis(200);

/// Running operators re-check what they manage this often (they recreate what is deleted).
const OPERATOR_RESYNC: Duration = Duration::from_millis(500);

pub fn keys_for(group: &str, plural: &str, ns: &str, name: &str, obj: &Value) -> Vec<Key> {
    let (ns, name) = (ns.to_owned(), name.to_owned());
    match (group, plural) {
        ("", "persistentvolumeclaims") => vec![Key::Pvc(ns, name)],
        ("", "persistentvolumes") => {
            let mut keys = vec![Key::Pv(name)];
            if let (Some(cns), Some(cname)) = (
                obj.pointer("/spec/claimRef/namespace")
                    .and_then(Value::as_str),
                obj.pointer("/spec/claimRef/name").and_then(Value::as_str),
            ) {
                keys.push(Key::Pvc(cns.to_owned(), cname.to_owned()));
            }
            keys
        }
        ("", "services") => vec![Key::Service(ns, name)],
        ("", "namespaces") => vec![Key::Namespace(name)],
        ("", "pods") => vec![Key::Pod(ns, name)],
        ("apps", "statefulsets") => vec![Key::StatefulSet(ns, name)],
        ("apps", "deployments") => vec![Key::Deployment(ns, name)],
        ("objectstorage.k8s.io", "bucketclaims") => vec![Key::BucketClaim(ns, name)],
        // A COSI Bucket's readiness is its claim's: look at both.
        ("objectstorage.k8s.io", "buckets") => {
            let mut keys = vec![Key::CosiBucket(name)];
            if let (Some(cns), Some(cname)) = (
                obj.pointer("/spec/bucketClaim/namespace")
                    .and_then(Value::as_str),
                obj.pointer("/spec/bucketClaim/name")
                    .and_then(Value::as_str),
            ) {
                keys.push(Key::BucketClaim(cns.to_owned(), cname.to_owned()));
            }
            keys
        }
        (g @ ("s3.aws.upbound.io" | "s3.aws.m.upbound.io"), "buckets") => {
            vec![Key::CrossplaneBucket(g.to_owned(), ns, name)]
        }
        ("s3.services.k8s.aws", "buckets") => vec![Key::AckBucket(ns, name)],
        ("objectbucket.io", "objectbucketclaims") => vec![Key::ObjectBucketClaim(ns, name)],
        // An ObjectBucket's reclaim policy decides what deleting its claim does.
        ("objectbucket.io", "objectbuckets") => match (
            obj.pointer("/spec/claimRef/namespace")
                .and_then(Value::as_str),
            obj.pointer("/spec/claimRef/name").and_then(Value::as_str),
        ) {
            (Some(cns), Some(cname)) => {
                vec![Key::ObjectBucketClaim(cns.to_owned(), cname.to_owned())]
            }
            _ => Vec::new(),
        },
        ("storage.k8s.io", "volumeattachments") => vec![Key::VolumeAttachment(name)],
        (snapshots::GROUP, "volumesnapshots") => vec![Key::VolumeSnapshot(ns, name)],
        _ => Vec::new(),
    }
}

/// Every key the controllers care about, for the first pass over a seeded cluster.
fn all_keys(sim: &Sim) -> Vec<Key> {
    let mut keys = Vec::new();
    for (group, plural) in [
        ("", "namespaces"),
        ("", "persistentvolumes"),
        ("", "persistentvolumeclaims"),
        ("", "services"),
        ("apps", "statefulsets"),
        ("apps", "deployments"),
        ("objectstorage.k8s.io", "bucketclaims"),
        ("objectstorage.k8s.io", "buckets"),
        ("s3.aws.upbound.io", "buckets"),
        ("s3.aws.m.upbound.io", "buckets"),
        ("s3.services.k8s.aws", "buckets"),
        ("objectbucket.io", "objectbucketclaims"),
        (snapshots::GROUP, "volumesnapshots"),
    ] {
        let Some(def) = sim.def(group, plural) else {
            continue;
        };
        for ((ns, name), s) in sim.store.all(&def.group_resource(), None) {
            // ClusterIP Services, and Deployments that are ready without volumes or operator
            // labels, need nothing; skip them (a 100k seed has tens of thousands).
            if plural == "services" && !contains(&s.raw, b"LoadBalancer") {
                continue;
            }
            if plural == "deployments"
                && contains(&s.raw, b"readyReplicas")
                && !contains(&s.raw, OPERATOR_LABEL.as_bytes())
                && !contains(&s.raw, b"persistentVolumeClaim")
            {
                continue;
            }
            keys.extend(keys_for(group, plural, &ns, &name, &Value::Null));
        }
    }
    keys
}

/// Resources whose change event must carry the object: their keys name another object
/// (a PV's claim, a COSI Bucket's claim, an ObjectBucket's claim).
fn needs_object(plural: &str) -> bool {
    matches!(plural, "persistentvolumes" | "buckets" | "objectbuckets")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reconcile one key through `sim`'s verbs; what is not this role's to do is left alone.
pub fn reconcile(sim: &dyn Api, key: &Key) -> Requeue {
    let result = match key {
        Key::Pvc(ns, name) => storage::reconcile_pvc(sim, ns, name),
        Key::Pv(name) => storage::reconcile_pv(sim, name),
        Key::Service(ns, name) => services::reconcile(sim, ns, name),
        Key::StatefulSet(ns, name) => workloads::reconcile_statefulset(sim, ns, name),
        Key::Deployment(ns, name) => workloads::reconcile_deployment(sim, ns, name),
        Key::BucketClaim(ns, name) => buckets::reconcile_claim(sim, ns, name),
        Key::CosiBucket(name) => buckets::reconcile_cosi_bucket(sim, name),
        Key::CrossplaneBucket(group, ns, name) => {
            buckets::reconcile_crossplane(sim, group, ns, name)
        }
        Key::AckBucket(ns, name) => buckets::reconcile_ack(sim, ns, name),
        Key::ObjectBucketClaim(ns, name) => buckets::reconcile_obc(sim, ns, name),
        Key::Namespace(name) => namespaces::reconcile(sim, name),
        Key::VolumeAttachment(name) => workloads::reconcile_volume_attachment(sim, name),
        Key::VolumeSnapshot(ns, name) => snapshots::reconcile(sim, ns, name),
        Key::Pod(ns, name) => storage::reconcile_pod(sim, ns, name),
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            // Conflicts and denials are expected (another writer, an admission gate): try
            // again shortly, as a real controller's work queue does.
            tracing::debug!(?key, error = %e, "reconcile failed; retrying");
            Requeue::After(RETRY)
        }
    }
}

/// Handle to the controller thread; dropping it does not stop the thread, `stop` does.
#[derive(Debug)]
pub struct Controllers {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Controllers {
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start the controllers for `sim` on their own thread.
pub fn spawn(sim: Arc<Sim>) -> Controllers {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut rx = sim.store.subscribe();
    let thread = std::thread::Builder::new()
        .name("sim-controllers".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let mut due: HashMap<Key, Instant> = HashMap::new();
                let now = Instant::now();
                for k in all_keys(&sim) {
                    due.insert(k, now);
                }
                loop {
                    // Run everything that is due, each key once per pass.
                    let now = Instant::now();
                    let ready: Vec<Key> = due
                        .iter()
                        .filter(|(_, t)| **t <= now)
                        .map(|(k, _)| k.clone())
                        .collect();
                    let mut seen = HashSet::new();
                    for k in ready {
                        due.remove(&k);
                        if !seen.insert(k.clone()) {
                            continue;
                        }
                        if let Requeue::After(d) = reconcile(sim.as_ref(), &k) {
                            let at = Instant::now() + d;
                            due.entry(k).and_modify(|t| *t = (*t).min(at)).or_insert(at);
                        }
                    }
                    let next = due.values().min().copied();
                    let sleep = next
                        .map(|t| t.saturating_duration_since(Instant::now()))
                        .unwrap_or(Duration::from_secs(3600));
                    tokio::select! {
                        _ = stop_rx.changed() => return,
                        _ = tokio::time::sleep(sleep) => {}
                        ev = rx.recv() => match ev {
                            Ok(ev) => {
                                let now = Instant::now();
                                let obj = if ev.kind == EventType::Deleted || needs_object(&ev.gr.plural) {
                                    ev.object.value()
                                } else {
                                    Value::Null
                                };
                                for k in keys_for(&ev.gr.group, &ev.gr.plural, &ev.namespace, &ev.name, &obj) {
                                    due.insert(k, now);
                                }
                                // Drain whatever else is queued before reconciling.
                                while let Ok(ev) = rx.try_recv() {
                                    let obj = if needs_object(&ev.gr.plural) { ev.object.value() } else { Value::Null };
                                    for k in keys_for(&ev.gr.group, &ev.gr.plural, &ev.namespace, &ev.name, &obj) {
                                        due.insert(k, now);
                                    }
                                }
                            }
                            Err(RecvError::Lagged(_)) => {
                                let now = Instant::now();
                                for k in all_keys(&sim) {
                                    due.insert(k, now);
                                }
                            }
                            Err(RecvError::Closed) => return,
                        },
                    }
                }
            });
        })
        .ok();
    Controllers {
        stop: stop_tx,
        thread,
    }
}

/// The disk id behind a PV (CSI handle, or an in-tree EBS volume id).
pub fn storage_disk_of(pv: &Value) -> Option<String> {
    storage::disk_of(pv)
}

// ---- small helpers shared by the controllers ----

/// Replace the status of an object if it differs.
pub(crate) fn set_status(
    api: &dyn Api,
    group: &str,
    plural: &str,
    obj: &Value,
    status: Value,
    actor: &Actor,
) -> Result<(), ApiError> {
    if obj.get("status") == Some(&status) {
        return Ok(());
    }
    let ns = str_at(obj, "/metadata/namespace").unwrap_or_default();
    let mut next = obj.clone();
    next["status"] = status;
    api.update(group, plural, ns, next, UpdateScope::Status, actor)
        .map(|_| ())
}

/// Record a Warning event about `obj`, as a controller does when it cannot do its job
/// (one event per object and reason: repeats only bump its count, as the event recorder
/// aggregates them).
pub(crate) fn warn(
    sim: &dyn Api,
    obj: &Value,
    reason: &str,
    message: &str,
    actor: &Actor,
) -> Result<(), ApiError> {
    let ns = str_at(obj, "/metadata/namespace").unwrap_or("default");
    let name = str_at(obj, "/metadata/name").unwrap_or_default();
    let event_name = format!("{name}.{}", reason.to_lowercase());
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if let Some(existing) = sim.get("", "events", ns, &event_name)? {
        let count = existing["count"].as_i64().unwrap_or(1) + 1;
        return sim.merge_patch(
            "",
            "events",
            ns,
            &event_name,
            &serde_json::json!({"count": count, "message": message, "lastTimestamp": now}),
            actor,
        );
    }
    let event = serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name, "namespace": ns},
        "involvedObject": {
            "apiVersion": obj["apiVersion"], "kind": obj["kind"], "namespace": ns,
            "name": name, "uid": obj["metadata"]["uid"],
        },
        "type": "Warning", "reason": reason, "message": message, "count": 1,
        "firstTimestamp": now, "lastTimestamp": now,
        "source": {"component": actor.username},
    });
    sim.create("", "events", ns, event, actor).map(|_| ())
}

pub(crate) fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}
