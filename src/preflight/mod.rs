//! Preflight: before the first write, check every recorded binding — disk, address,
//! bucket — against the cloud, and decide what happens to each one that is missing,
//! attached elsewhere or moved. `restore` and `start` run it on the snapshot's bindings,
//! `audit` and `stop` on the live cluster's, so a binding that is already broken is known
//! before a shutdown, not 300 s into a restore.
//!
//! ```text
//!  bindings ─▶ CloudVerifier (I/O: verdicts) ─┐
//!  target's nodes (I/O: one LIST) ────────────┼─▶ decide (pure) ─▶ Preflight
//!  snapshot objects, --accept-missing ────────┘     rows: one per binding, with its problem
//!                                                   held: the workloads that use an accepted one
//! ```
//!
//! A problem not named by `--accept-missing` refuses the whole run (nothing written). An
//! accepted one degrades it: only the workloads that use that binding stay down (and the
//! objects that would provision a replacement are not restored), the gate for that concern
//! stays up, and everything else comes back. The table and the exit codes are described in
//! `docs/runbooks/cold-start-recovery.md`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::bindings::consumers::{self, WorkloadRef};
use crate::bindings::{Bindings, BucketBinding, BucketKind};
use crate::cloud::{CloudVerifier, Kind, Status, Verdict, rules};
use crate::restore::plan::Tier;
use crate::restore::plan::{ORIGINAL_REPLICAS, Plan};
use crate::restore::{Recorded, RestoreSource};

/// Annotation on a workload a degraded restore keeps down: why, in words.
pub const HELD: &str = "coldstart.dev/held";

/// Exit code of a run that refused at preflight, before any write.
pub const EXIT_REFUSED: u8 = 4;
/// Exit code of a run that brought back everything except what it held.
pub const EXIT_PARTLY_UP: u8 = 3;

/// Which broken bindings the operator accepts to start without (`--accept-missing`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptMissing {
    /// `--accept-missing all`: every broken binding, said explicitly.
    pub all: bool,
    /// Binding ids (disk id, IP or allocation id, bucket name) or names (PV name,
    /// `namespace/service`, `namespace/claim`).
    pub names: BTreeSet<String>,
}

impl AcceptMissing {
    /// From the repeated / comma-separated flag values; `all` alone accepts everything.
    pub fn from_flags(values: &[String]) -> Self {
        let mut out = AcceptMissing::default();
        for v in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
            match v {
                "" => {}
                "all" => out.all = true,
                v => {
                    out.names.insert(v.to_owned());
                }
            }
        }
        out
    }

    fn accepts(&self, row: &BindingCheck) -> bool {
        self.accepts_binding(&row.target, &row.subject)
    }

    /// Whether a binding is named: by its target (disk id, address, bucket) or its subject
    /// (`Kind name`, or the name alone).
    pub fn accepts_binding(&self, target: &str, subject: &str) -> bool {
        self.all
            || self.names.contains(target)
            || self.names.contains(subject)
            || subject
                .split_once(' ')
                .is_some_and(|(_, name)| self.names.contains(name))
    }
}

/// Why a binding cannot be brought back as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// The cloud has no such disk, address or bucket.
    Missing,
    /// It exists but something outside this cluster holds it: a disk attached to an
    /// instance that is not one of this cluster's nodes, an address on another load
    /// balancer or instance.
    AttachedElsewhere,
    /// It exists in another zone or region than recorded.
    Moved,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Missing => "missing",
            Problem::AttachedElsewhere => "attached-elsewhere",
            Problem::Moved => "moved",
        }
    }
}

/// One binding, as the preflight judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingCheck {
    pub kind: Kind,
    pub subject: String,
    pub target: String,
    /// The cloud's verdict.
    pub status: Status,
    pub reason: String,
    /// What stops the run, if anything.
    pub problem: Option<Problem>,
    /// Named by `--accept-missing`: the run goes on without it.
    pub accepted: bool,
    /// A broken disk whose data policy brings the volume back from this cloud snapshot:
    /// recoverable, not a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_snapshot: Option<String>,
}

impl BindingCheck {
    /// `refused`, `accepted`, `snapshot` (restored from its cloud snapshot) or `ok` — the
    /// decision column of the table.
    pub fn decision(&self) -> &'static str {
        if self.from_snapshot.is_some() {
            return "snapshot";
        }
        match (self.problem, self.accepted) {
            (None, _) => "ok",
            (Some(_), true) => "accepted",
            (Some(_), false) => "REFUSED",
        }
    }
}

/// A workload kept down because it uses a binding that is not coming back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub workload: WorkloadRef,
    pub because: Vec<String>,
}

/// An object not restored at all, because restoring it would provision a replacement for
/// the binding (a new address, a new bucket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withheld {
    /// API group (`""` for the core group).
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub because: String,
}

impl Withheld {
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    fn is(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> bool {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        group == self.group
            && kind == self.kind
            && namespace == self.namespace.as_deref()
            && name == self.name
    }
}

/// What the preflight found and decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preflight {
    /// The cloud checked (`sim`, `aws`, `none`).
    pub cloud: String,
    pub rows: Vec<BindingCheck>,
    pub held: Vec<Held>,
    pub withheld: Vec<Withheld>,
}

impl Preflight {
    /// The problems nobody accepted: any one refuses the run.
    pub fn refused(&self) -> Vec<&BindingCheck> {
        self.rows
            .iter()
            .filter(|r| r.problem.is_some() && !r.accepted)
            .collect()
    }

    /// The problems accepted: the run goes on without them.
    pub fn accepted(&self) -> Vec<&BindingCheck> {
        self.rows
            .iter()
            .filter(|r| r.problem.is_some() && r.accepted)
            .collect()
    }

    /// Whether the run is degraded (something accepted as missing).
    pub fn degraded(&self) -> bool {
        !self.accepted().is_empty()
    }

    /// Binding kinds with an accepted problem: the gate keeps those policies up.
    pub fn held_concerns(&self) -> BTreeSet<Kind> {
        self.accepted().iter().map(|r| r.kind).collect()
    }

    /// Whether `workload` is held.
    pub fn holds(&self, workload: &WorkloadRef) -> bool {
        self.held.iter().any(|h| &h.workload == workload)
    }

    /// The refused problems in one line, with what to do: for errors and logs.
    pub fn refusal(&self) -> String {
        let refused = self.refused();
        format!(
            "{}; bring {} back, or run without {} with --accept-missing {}",
            refused
                .iter()
                .map(|r| format!(
                    "{} {} of {} is {}",
                    r.kind.as_str(),
                    r.target,
                    r.subject,
                    r.problem.map_or("", Problem::as_str)
                ))
                .collect::<Vec<_>>()
                .join("; "),
            if refused.len() == 1 { "it" } else { "them" },
            if refused.len() == 1 { "it" } else { "them" },
            refused
                .iter()
                .map(|r| r.target.as_str())
                .collect::<Vec<_>>()
                .join(",")
        )
    }

    /// The table an operator reads: one line per binding that is not plainly fine, then
    /// what is held.
    pub fn table(&self) -> String {
        let mut out = format!("preflight against cloud `{}`:\n", self.cloud);
        let shown: Vec<&BindingCheck> = self
            .rows
            .iter()
            .filter(|r| r.problem.is_some() || !matches!(r.status, Status::Ok | Status::InUse))
            .collect();
        let ok = self.rows.len() - shown.len();
        out += &format!("  {ok} of {} bindings ok\n", self.rows.len());
        if !shown.is_empty() {
            out += &format!(
                "  {:<9} {:<8} {:<40} {:<28} {:<18} REASON\n",
                "DECISION", "KIND", "SUBJECT", "TARGET", "STATUS"
            );
            for r in shown {
                let status = r.problem.map_or(r.status.as_str(), Problem::as_str);
                out += &format!(
                    "  {:<9} {:<8} {:<40} {:<28} {:<18} {}\n",
                    r.decision(),
                    r.kind.as_str(),
                    r.subject,
                    r.target,
                    status,
                    r.reason
                );
            }
        }
        for h in &self.held {
            out += &format!(
                "  HELD     {} ({})\n",
                h.workload.display(),
                h.because.join("; ")
            );
        }
        for w in &self.withheld {
            out += &format!("  WITHHELD {} ({})\n", w.display(), w.because);
        }
        let refused = self.refused();
        if !refused.is_empty() {
            out += &format!(
                "  refused: restore or re-create {} (see the runbook), or start without {} with --accept-missing {}\n",
                if refused.len() == 1 { "it" } else { "them" },
                if refused.len() == 1 { "it" } else { "them" },
                refused
                    .iter()
                    .map(|r| r.target.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        out
    }

    /// What verification must still prove: the recorded bindings minus the accepted ones.
    pub fn verify_scope(&self, recorded: &Recorded) -> Recorded {
        let accepted = self.accepted();
        let gone = |kind: Kind, subject: &str| {
            accepted
                .iter()
                .any(|r| r.kind == kind && r.subject == subject)
        };
        Recorded {
            volumes: recorded
                .volumes
                .iter()
                .filter(|v| !gone(Kind::Volume, &v.pv))
                .cloned()
                .collect(),
            addresses: recorded
                .addresses
                .iter()
                .filter(|a| !gone(Kind::Address, &format!("{}/{}", a.namespace, a.name)))
                .cloned()
                .collect(),
            buckets: recorded
                .buckets
                .iter()
                .filter(|b| {
                    !self
                        .withheld
                        .iter()
                        .any(|w| w.kind == b.kind && w.namespace == b.namespace && w.name == b.name)
                })
                .cloned()
                .collect(),
        }
    }

    /// Shape the plan: withheld objects are left out; held workloads are restored at 0
    /// replicas (CronJobs suspended) with their replicas recorded and the reason in
    /// [`HELD`]; a held operator is not scaled up after verification.
    pub fn hold(&self, plan: &mut Plan) {
        for items in plan.tiers.values_mut() {
            items.retain(|p| {
                !self
                    .withheld
                    .iter()
                    .any(|w| w.is(&p.api_version, &p.kind, p.namespace.as_deref(), &p.name))
            });
            for p in items.iter_mut() {
                let Some(h) = self.held.iter().find(|h| h.workload.is(&p.object)) else {
                    continue;
                };
                let why = h.because.join("; ");
                hold_object(&mut p.object, &why);
                p.operator = false;
                p.transforms.push(format!("held at 0: {why}"));
            }
        }
    }
}

/// The patch that brings back a workload an earlier run held (its live object carries
/// [`HELD`]), now that nothing holds it: recorded replicas (or `suspend: false`), the
/// annotations removed. None when it was not held.
pub fn release_patch(kind: &str, live: &Value) -> Option<Value> {
    live.pointer("/metadata/annotations")?.get(HELD)?;
    if kind == "CronJob" {
        return Some(
            json!({"spec": {"suspend": false}, "metadata": {"annotations": {HELD: null}}}),
        );
    }
    let replicas: i64 = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ORIGINAL_REPLICAS))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    Some(json!({"spec": {"replicas": replicas},
        "metadata": {"annotations": {HELD: null, ORIGINAL_REPLICAS: null}}}))
}

/// Keep one workload object down, recording what to bring it back to.
fn hold_object(obj: &mut Value, why: &str) {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    if obj["kind"] == "CronJob" {
        obj["spec"]["suspend"] = json!(true);
    } else {
        let recorded = obj["metadata"]["annotations"][ORIGINAL_REPLICAS]
            .as_str()
            .map(str::to_owned);
        let replicas = recorded.unwrap_or_else(|| {
            obj.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .to_string()
        });
        obj["metadata"]["annotations"][ORIGINAL_REPLICAS] = json!(replicas);
        obj["spec"]["replicas"] = json!(0);
    }
    obj["metadata"]["annotations"][HELD] = json!(why);
}

/// The kind a bucket binding's object has.
fn bucket_object_kind(b: &BucketBinding) -> &'static str {
    match b.kind {
        BucketKind::CosiBucketClaim => "BucketClaim",
        BucketKind::RookObc => "ObjectBucketClaim",
        BucketKind::CosiBucket
        | BucketKind::Crossplane
        | BucketKind::CrossplaneNamespaced
        | BucketKind::Ack => "Bucket",
    }
}

/// The identities a node is known by in the cloud: its name and the instance id at the end
/// of its `spec.providerID` (`aws:///eu-west-1a/i-0abc…`).
pub fn node_identities(nodes: &[Value]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for n in nodes {
        if let Some(name) = n.pointer("/metadata/name").and_then(Value::as_str) {
            out.insert(name.to_owned());
        }
        if let Some(id) = n.pointer("/spec/providerID").and_then(Value::as_str)
            && let Some(last) = id.rsplit('/').next().filter(|s| !s.is_empty())
        {
            out.insert(last.to_owned());
        }
    }
    out
}

/// The problem a verdict is, for a run on a cluster whose nodes are `nodes`.
fn problem_of(v: &Verdict, nodes: &BTreeSet<String>) -> Option<(Problem, Option<String>)> {
    if v.kind == Kind::Dns {
        // external-dns writes the record again once the Service has its address.
        return None;
    }
    match v.status {
        Status::Missing => Some((Problem::Missing, None)),
        Status::InUseElsewhere => Some((Problem::AttachedElsewhere, None)),
        Status::Moved => Some((Problem::Moved, None)),
        Status::InUse if v.kind == Kind::Volume => {
            let foreign: Vec<&str> = v
                .holders
                .iter()
                .filter(|h| !nodes.contains(*h))
                .map(String::as_str)
                .collect();
            (!foreign.is_empty()).then(|| {
                (
                    Problem::AttachedElsewhere,
                    Some(format!(
                        "attached to {}, which is not a node of this cluster: detach it (or stop what runs there) first",
                        foreign.join(", ")
                    )),
                )
            })
        }
        _ => None,
    }
}

/// Decide (pure): every verdict becomes a row; the accepted problems decide what is held
/// and withheld, from the snapshot's `objects` (empty for a live check).
pub fn decide(
    cloud: &str,
    verdicts: &[Verdict],
    bindings: &Bindings,
    objects: &[Value],
    nodes: &BTreeSet<String>,
    accept: &AcceptMissing,
) -> Preflight {
    let mut out = Preflight {
        cloud: cloud.to_owned(),
        ..Default::default()
    };
    let mut held: BTreeMap<WorkloadRef, Vec<String>> = BTreeMap::new();
    for v in verdicts {
        let found = problem_of(v, nodes);
        let mut row = BindingCheck {
            kind: v.kind,
            subject: v.subject.clone(),
            target: v.target.clone(),
            status: v.status,
            reason: found
                .as_ref()
                .and_then(|(_, r)| r.clone())
                .unwrap_or_else(|| v.reason.clone()),
            problem: found.map(|(p, _)| p),
            accepted: false,
            from_snapshot: None,
        };
        // A broken disk whose data policy restores it from a cloud snapshot comes back,
        // on a new disk: nothing to refuse, hold or withhold.
        if let Some(problem) = row.problem
            && row.kind == Kind::Volume
            && let Some(v) = bindings
                .volumes
                .iter()
                .find(|b| b.pv == row.subject)
                .filter(|b| crate::restore::data_policy::recoverable(b))
        {
            let snap = v.cloud_snapshot.as_ref().map(|s| s.id.clone());
            row.reason = format!(
                "{}; data policy {} brings it back from cloud snapshot {}",
                problem.as_str(),
                v.data_policy.as_str(),
                snap.as_deref().unwrap_or("?")
            );
            row.problem = None;
            row.from_snapshot = snap;
        }
        row.accepted = row.problem.is_some() && accept.accepts(&row);
        if row.accepted
            && let Some(problem) = row.problem
        {
            let why = format!(
                "{} {} of {} is {}",
                row.kind.as_str(),
                row.target,
                row.subject,
                problem.as_str()
            );
            let (users, withheld) = users_of(&row, bindings, objects, &why);
            for u in users {
                held.entry(u).or_default().push(why.clone());
            }
            for w in withheld {
                if !out.withheld.contains(&w) {
                    out.withheld.push(w);
                }
            }
        }
        out.rows.push(row);
    }
    out.held = held
        .into_iter()
        .map(|(workload, mut because)| {
            because.dedup();
            Held { workload, because }
        })
        .collect();
    out
}

/// The workloads that use an accepted binding, and the objects that would replace it.
fn users_of(
    row: &BindingCheck,
    bindings: &Bindings,
    objects: &[Value],
    why: &str,
) -> (Vec<WorkloadRef>, Vec<Withheld>) {
    match row.kind {
        Kind::Volume => {
            let mut users = Vec::new();
            // The PV and its claim wait for the disk: a re-run restore creates them once it
            // is back (restored from a backup under the recorded id, or the PV edited).
            let mut withheld = vec![Withheld {
                group: String::new(),
                kind: "PersistentVolume".into(),
                namespace: None,
                name: row.subject.clone(),
                because: why.to_owned(),
            }];
            for c in bindings
                .volumes
                .iter()
                .filter(|v| v.pv == row.subject)
                .filter_map(|v| v.claim.as_ref())
            {
                users.extend(consumers::claim_users(objects, &c.namespace, &c.name));
                withheld.push(Withheld {
                    group: String::new(),
                    kind: "PersistentVolumeClaim".into(),
                    namespace: Some(c.namespace.clone()),
                    name: c.name.clone(),
                    because: why.to_owned(),
                });
            }
            (users, withheld)
        }
        Kind::Address => {
            let Some((ns, name)) = row.subject.split_once('/') else {
                return (Vec::new(), Vec::new());
            };
            // Restoring the Service would have the cloud allocate a new address for it.
            let withheld = Withheld {
                group: String::new(),
                kind: "Service".into(),
                namespace: Some(ns.to_owned()),
                name: name.to_owned(),
                because: why.to_owned(),
            };
            (
                consumers::service_backends(objects, ns, name),
                vec![withheld],
            )
        }
        Kind::Bucket => {
            // Every bucket object naming the same bucket (a claim and its COSI Bucket):
            // restoring one would have its provisioner create a new, empty bucket.
            let same: Vec<&BucketBinding> = bindings
                .buckets
                .iter()
                .filter(|b| {
                    rules::bucket_subject(b) == row.subject
                        || rules::bucket_target(b).as_deref() == Some(row.target.as_str())
                })
                .collect();
            let users = same
                .iter()
                .flat_map(|b| consumers::bucket_users(objects, b))
                .collect();
            let withheld = same
                .iter()
                .map(|b| Withheld {
                    group: b.group.clone(),
                    kind: bucket_object_kind(b).to_owned(),
                    namespace: b.namespace.clone(),
                    name: b.name.clone(),
                    because: why.to_owned(),
                })
                .collect();
            (users, withheld)
        }
        Kind::Dns => (Vec::new(), Vec::new()),
    }
}

/// Why the preflight could not run.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "failed to list the cluster's nodes (preflight compares disk attachments with them): {0}"
    )]
    Nodes(kube::Error),
    #[error("failed to read the snapshot's workloads to find who uses a missing binding: {0}")]
    Read(#[source] crate::snapshot::read::ReadError),
}

/// The I/O shell: the target cluster's nodes and the cloud's verdicts, then [`decide`].
pub async fn check(
    client: &kube::Client,
    verifier: &dyn CloudVerifier,
    bindings: &Bindings,
    objects: &[Value],
    accept: &AcceptMissing,
) -> Result<Preflight, PreflightError> {
    let (verdicts, nodes) = observe(client, verifier, bindings).await?;
    Ok(decide(
        verifier.name(),
        &verdicts,
        bindings,
        objects,
        &nodes,
        accept,
    ))
}

/// The cloud's verdicts on `bindings` and the target cluster's node identities.
async fn observe(
    client: &kube::Client,
    verifier: &dyn CloudVerifier,
    bindings: &Bindings,
) -> Result<(Vec<Verdict>, BTreeSet<String>), PreflightError> {
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let nodes = api
        .list(&Default::default())
        .await
        .map_err(PreflightError::Nodes)?;
    let nodes: Vec<Value> = nodes
        .items
        .iter()
        .filter_map(|n| serde_json::to_value(n).ok())
        .collect();
    Ok((verifier.verify(bindings).await, node_identities(&nodes)))
}

/// [`check`] for a restore: the snapshot's bindings and objects. Who uses a binding only
/// matters once a missing one is accepted, and only workloads, Services and custom
/// resources (bucket accesses, managed buckets) say it: those tiers are read then, and the
/// common case reads no object at all.
pub async fn check_source(
    client: &kube::Client,
    verifier: &dyn CloudVerifier,
    source: &RestoreSource,
    accept: &AcceptMissing,
) -> Result<Preflight, PreflightError> {
    let (verdicts, nodes) = observe(client, verifier, &source.bindings).await?;
    let decided = |objects: &[Value]| {
        decide(
            verifier.name(),
            &verdicts,
            &source.bindings,
            objects,
            &nodes,
            accept,
        )
    };
    let first = decided(&[]);
    if first.accepted().is_empty() {
        return Ok(first);
    }
    let users = source
        .objects
        .collect(|t| matches!(t, Tier::Services | Tier::CustomResources | Tier::Workloads))
        .await
        .map_err(PreflightError::Read)?;
    Ok(decided(&users))
}

#[cfg(test)]
mod tests;
