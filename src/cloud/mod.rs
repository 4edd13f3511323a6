//! Cloud verification: does every binding a snapshot recorded still point at something
//! real? A disk that was deleted, an address now associated with someone else's machine, a
//! bucket gone or moved to another region — each would need manual fixes on the day of a
//! cold start, so a drill finds them first.
//!
//! ```text
//!  Bindings ─▶ provider fetches facts (aws: EC2, S3, Route53 │ sim: /sim/v1/cloud │ none)
//!           ─▶ rules (pure: binding + observed facts → Verdict) ─▶ Vec<Verdict>
//! ```
//!
//! Verifiers only observe; every decision is in [`rules`], table-tested. The one part that
//! changes the cloud is [`snapshots`]: cloud snapshots of disks whose data policy asks for
//! them, and disks restored from them. The verdicts and what to do about each are described in
//! `docs/runbooks/dr-drill.md`.

pub mod aws;
pub mod none;
pub mod rules;
pub mod sim;
pub mod snapshots;

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::bindings::Bindings;

/// What kind of binding a verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The disk behind a PersistentVolume.
    Volume,
    /// The address (EIP, static IP) a LoadBalancer Service is pinned to.
    Address,
    /// The bucket a bucket claim owns.
    Bucket,
    /// A DNS name a Service answers on.
    Dns,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Volume => "volume",
            Kind::Address => "address",
            Kind::Bucket => "bucket",
            Kind::Dns => "dns",
        }
    }
}

/// What the cloud says about one binding.
///
/// Only `missing`, `in-use-elsewhere` and `moved` fail a drill: they are what would need a
/// manual fix after a cold start. `in-use` is what a drill normally sees (production is
/// running and holds its own disks and addresses); `unprotected` and `unverifiable` are
/// shown, never counted as fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Exists, where the snapshot says, free for a restore to reuse.
    Ok,
    /// Exists and is held by what the snapshot recorded (a disk attached to production's
    /// node, an address on production's own load balancer): expected during a drill.
    InUse,
    /// Exists and is usable, but not protected the way a DR target should be (a bucket
    /// without versioning).
    Unprotected,
    /// Does not exist (deleted, released, or in another account).
    Missing,
    /// Held by something the snapshot did not record: another instance, another load
    /// balancer. A restore would fail to take it, or take it from its new owner.
    InUseElsewhere,
    /// Exists, but in another zone or region than recorded: workloads pinned to the
    /// recorded topology cannot use it.
    Moved,
    /// Could not be checked (no provider, no permission, not this provider's resource).
    Unverifiable,
}

impl Status {
    /// Whether this verdict fails a drill.
    pub fn fails(self) -> bool {
        matches!(
            self,
            Status::Missing | Status::InUseElsewhere | Status::Moved
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::InUse => "in-use",
            Status::Unprotected => "unprotected",
            Status::Missing => "missing",
            Status::InUseElsewhere => "in-use-elsewhere",
            Status::Moved => "moved",
            Status::Unverifiable => "unverifiable",
        }
    }
}

/// The verdict on one binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub kind: Kind,
    /// What in the cluster holds the binding: a PV name, `namespace/service`, or a bucket
    /// claim as `Kind namespace/name`.
    pub subject: String,
    /// What in the cloud it points at: a disk id, an allocation id or IP, a bucket, a DNS
    /// name.
    pub target: String,
    pub status: Status,
    /// Why, in words an operator can act on.
    pub reason: String,
    /// What holds the target when the cloud says it is in use: the instances or nodes a
    /// disk is attached to. A restore compares them with the new cluster's nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<String>,
}

impl Verdict {
    /// `kind subject → target: status (reason)`, for failure lists and logs.
    pub fn line(&self) -> String {
        format!(
            "{} {} → {}: {} ({})",
            self.kind.as_str(),
            self.subject,
            self.target,
            self.status.as_str(),
            self.reason
        )
    }
}

/// Counts of verdicts by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub ok: usize,
    pub in_use: usize,
    pub unprotected: usize,
    pub missing: usize,
    pub in_use_elsewhere: usize,
    pub moved: usize,
    pub unverifiable: usize,
}

impl Tally {
    pub fn of(verdicts: &[Verdict]) -> Self {
        let mut t = Tally::default();
        for v in verdicts {
            *match v.status {
                Status::Ok => &mut t.ok,
                Status::InUse => &mut t.in_use,
                Status::Unprotected => &mut t.unprotected,
                Status::Missing => &mut t.missing,
                Status::InUseElsewhere => &mut t.in_use_elsewhere,
                Status::Moved => &mut t.moved,
                Status::Unverifiable => &mut t.unverifiable,
            } += 1;
        }
        t
    }

    pub fn failing(&self) -> usize {
        self.missing + self.in_use_elsewhere + self.moved
    }
}

/// Checks bindings against a cloud. Implementations only fetch facts and hand them to
/// [`rules`]; a fetch that fails makes the affected verdicts `unverifiable`, never an error,
/// so one denied permission does not hide every other finding.
pub trait CloudVerifier: Send + Sync {
    /// The provider's name (`aws`, `sim`, `none`), as recorded in a drill report.
    fn name(&self) -> &'static str;
    /// One verdict per binding target (a Service pinned to two EIPs gets two), in the
    /// bindings' order: volumes, addresses, DNS names, buckets.
    fn verify<'a>(&'a self, bindings: &'a Bindings) -> BoxFuture<'a, Vec<Verdict>>;
    /// The cloud's record of the disks it holds and of everything it created, in order,
    /// when this provider can read one (`None`: it keeps none, and a restore counts what
    /// is new from the cluster side alone). A restore reads it before its first write (the
    /// mark) and after verifying, and counts what was created in between.
    fn ledger(&self) -> BoxFuture<'_, Result<Option<Ledger>, LedgerError>> {
        futures::FutureExt::boxed(async { Ok(None) })
    }
    /// The Elastic IP allocation holding each of `ips`, where the provider has such a thing
    /// (AWS, the simulated cloud); an IP that is no allocation is left out, and a provider
    /// without allocations answers none. `stop` needs it to rewrite a
    /// `spec.loadBalancerIP` that AWS ignores into the annotation its controllers read.
    fn allocations<'a>(
        &'a self,
        _ips: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, LookupError>> {
        futures::FutureExt::boxed(async { Ok(BTreeMap::new()) })
    }
}

/// Moves resources out of a resource group the cluster's deletion would take with it
/// (Azure's `az resource move`): the one thing `stop` asks a cloud to *do*, kept apart from
/// the verifiers, which only observe. Only the simulated cloud has one today; for a real
/// Azure account `stop` refuses and says what to run.
pub trait ResourceMover: Send + Sync {
    /// Move `ids` (disk resource ids, public IP names or addresses) to `group`; answers each
    /// id with its id after the move (a disk's id names its group).
    fn move_to_group<'a>(
        &'a self,
        ids: &'a [String],
        group: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, MoveError>>;
}

/// Why resources could not be moved.
#[derive(Debug, thiserror::Error)]
#[error("failed to move {ids:?} to resource group {group} in the {provider} cloud: {detail}")]
pub struct MoveError {
    pub provider: &'static str,
    pub ids: Vec<String>,
    pub group: String,
    pub detail: String,
}

/// The mover for `provider`, if coldstart can move resources in that cloud.
pub async fn mover(provider: CloudChoice, client: &kube::Client) -> Option<Box<dyn ResourceMover>> {
    match provider {
        CloudChoice::Sim => Some(Box::new(sim::SimVerifier::new(client.clone()))),
        CloudChoice::Auto if sim::is_simulated(client).await => {
            Some(Box::new(sim::SimVerifier::new(client.clone())))
        }
        _ => None,
    }
}

/// Why a cloud could not be asked about addresses.
#[derive(Debug, thiserror::Error)]
#[error("failed to look up Elastic IP allocations in the {provider} cloud: {detail}")]
pub struct LookupError {
    pub provider: &'static str,
    pub detail: String,
}

/// What a cloud created, in order, and the disks it holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Every disk id the cloud holds.
    pub disks: std::collections::BTreeSet<String>,
    /// Every creation, as (sequence number, what kind of thing), oldest first.
    pub creations: Vec<(u64, Kind)>,
}

/// Counts of what a cloud created after a mark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CreatedSince {
    pub disks: usize,
    pub ips: usize,
    pub buckets: usize,
}

impl Ledger {
    /// Where the ledger stands: the sequence number of its last creation (0 when empty).
    pub fn position(&self) -> u64 {
        self.creations.last().map_or(0, |c| c.0)
    }

    /// What was created after `mark`.
    pub fn created_since(&self, mark: u64) -> CreatedSince {
        let mut n = CreatedSince::default();
        for (_, kind) in self.creations.iter().filter(|c| c.0 > mark) {
            match kind {
                Kind::Volume => n.disks += 1,
                Kind::Address => n.ips += 1,
                Kind::Bucket => n.buckets += 1,
                Kind::Dns => {}
            }
        }
        n
    }
}

/// Why a cloud's ledger could not be read.
#[derive(Debug, thiserror::Error)]
#[error("failed to read the {provider} cloud's ledger: {detail}")]
pub struct LedgerError {
    pub provider: &'static str,
    pub detail: String,
}

/// Which cloud to verify against (`--cloud`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CloudChoice {
    /// AWS: EC2 volumes and Elastic IPs, S3 buckets, Route53 records. Credentials and
    /// region from the usual AWS sources; `AWS_ENDPOINT_URL` points it elsewhere (moto).
    Aws,
    /// The simulated cloud behind the simulated cluster.
    Sim,
    /// No cloud: every binding is reported as unverifiable.
    None,
    /// The simulated cloud when the cluster is a simulated one (it serves `/sim/v1/cloud`),
    /// else no cloud. Never guesses a real provider: pass `aws` for AWS.
    Auto,
}

/// Build the verifier for `provider`. `sim` reads the simulated cloud through `client`.
pub async fn verifier(
    provider: CloudChoice,
    client: Option<kube::Client>,
) -> Result<Box<dyn CloudVerifier>, VerifierError> {
    Ok(match provider {
        CloudChoice::Aws => Box::new(aws::AwsVerifier::from_env().await),
        CloudChoice::Sim => Box::new(sim::SimVerifier::new(
            client.ok_or(VerifierError::NeedsCluster)?,
        )),
        CloudChoice::None => Box::new(none::NoVerifier),
        CloudChoice::Auto => match client {
            Some(c) if sim::is_simulated(&c).await => Box::new(sim::SimVerifier::new(c)),
            _ => Box::new(none::NoVerifier),
        },
    })
}

/// Why a verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error(
        "failed to build the sim cloud verifier: it reads the simulated cloud through a cluster connection; give --kubeconfig of a simulated cluster"
    )]
    NeedsCluster,
}
