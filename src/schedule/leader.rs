//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go does it.
//!
//! Every replica runs an elector. The leader renews the Lease (`renewTime`) every
//! `retry_period`; the others watch it. A follower takes over only after the record has not
//! changed for `lease_duration`, measured on its *own* clock from when it last saw the
//! record change, so clock skew between nodes does not matter. Writes carry the
//! `resourceVersion` they read: of two followers racing for an expired lease, one gets 409
//! Conflict and stays a follower.
//!
//! A leader that cannot renew for `renew_deadline` (shorter than `lease_duration`) steps
//! down on its own before anyone else can take over, so two leaders never run jobs at once.
//!
//! The leader also publishes a few annotations on the Lease (e.g. whether the cold-start
//! restore is verified) that followers read, so every replica answers `/readyz` alike.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Timing and identity of one elector.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica: the pod name.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why a round of election failed (the elector keeps trying).
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("failed to read lease {name}: {source}")]
    Read { name: String, source: kube::Error },
    #[error("failed to write lease {name}: {source}")]
    Write { name: String, source: kube::Error },
    #[error(
        "the Lease namespace {namespace} does not exist and coldstart could not create it: {source}; create it, or set leaderElection.namespace (--lease-namespace, POD_NAMESPACE) to one that exists"
    )]
    Namespace {
        namespace: String,
        source: kube::Error,
    },
}

/// What [`ensure_namespace`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceOutcome {
    Existed,
    Created,
}

/// Make sure the Lease namespace exists, creating it if it does not: an elector in a
/// missing namespace would retry its create forever and never lead. A namespace that
/// cannot be read or created is an error that says what to do, before the elector starts.
pub async fn ensure_namespace(
    client: &kube::Client,
    namespace: &str,
) -> Result<NamespaceOutcome, LeaderError> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: Api<Namespace> = Api::all(client.clone());
    let err = |source| LeaderError::Namespace {
        namespace: namespace.to_owned(),
        source,
    };
    if api.get_opt(namespace).await.map_err(err)?.is_some() {
        return Ok(NamespaceOutcome::Existed);
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "coldstart".to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(NamespaceOutcome::Created),
        // Another replica created it between our read and our create.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(NamespaceOutcome::Existed),
        Err(e) => Err(err(e)),
    }
}

/// What an elector currently believes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderState {
    /// This replica leads and may run jobs.
    pub leading: bool,
    /// Who holds the lease, as last seen.
    pub holder: Option<String>,
    /// Annotations the leader published on the lease.
    pub annotations: BTreeMap<String, String>,
}

/// The lease record as far as the decision goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    pub resource_version: Option<String>,
    pub renew_time: Option<String>,
}

/// What to do with the lease in one round. Pure: see [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No lease yet: create it with us as holder.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder stopped renewing: take it over.
    TakeOver,
    /// Someone else holds a live lease.
    Follow,
}

/// Decide a round: `unchanged_for` is how long, by our own clock, the record has looked
/// exactly like this.
pub fn decide(
    me: &str,
    record: Option<&Record>,
    unchanged_for: Duration,
    lease_duration: Duration,
) -> Step {
    match record {
        None => Step::Create,
        Some(r) => match r.holder.as_deref() {
            Some(h) if h == me => Step::Renew,
            None | Some("") => Step::TakeOver,
            Some(_) if unchanged_for >= lease_duration => Step::TakeOver,
            Some(_) => Step::Follow,
        },
    }
}

/// One replica's elector.
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Option<(Record, Instant)>,
    last_renewed: Option<Instant>,
    publish: watch::Receiver<BTreeMap<String, String>>,
}

impl LeaderElector {
    /// `publish` holds the annotations to keep on the lease while leading.
    pub fn new(
        client: kube::Client,
        cfg: LeaseConfig,
        publish: watch::Receiver<BTreeMap<String, String>>,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
            last_renewed: None,
            publish,
        }
    }

    fn record_of(lease: &Lease) -> Record {
        let spec = lease.spec.as_ref();
        Record {
            holder: spec.and_then(|s| s.holder_identity.clone()),
            resource_version: lease.metadata.resource_version.clone(),
            renew_time: spec
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0.to_string()),
        }
    }

    fn now_micro() -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::now())
    }

    /// One round of acquire-or-renew. Returns the state after it.
    pub async fn round(&mut self) -> Result<LeaderState, LeaderError> {
        let name = self.cfg.name.clone();
        let current = self
            .api
            .get_opt(&name)
            .await
            .map_err(|source| LeaderError::Read {
                name: name.clone(),
                source,
            })?;
        let record = current.as_ref().map(Self::record_of);
        let now = Instant::now();
        let unchanged_for = match (&self.observed, &record) {
            (Some((seen, at)), Some(r)) if seen == r => now.duration_since(*at),
            _ => {
                if let Some(r) = &record {
                    self.observed = Some((r.clone(), now));
                }
                Duration::ZERO
            }
        };
        let step = decide(
            &self.cfg.identity,
            record.as_ref(),
            unchanged_for,
            self.cfg.lease_duration,
        );
        let lease_seconds = i32::try_from(self.cfg.lease_duration.as_secs().max(1)).unwrap_or(15);
        let annotations = self.publish.borrow().clone();
        let written = match step {
            Step::Follow => return Ok(self.state(current.as_ref())),
            Step::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        annotations: Some(annotations),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.cfg.identity.clone()),
                        lease_duration_seconds: Some(lease_seconds),
                        acquire_time: Some(Self::now_micro()),
                        renew_time: Some(Self::now_micro()),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                self.write(self.api.create(&PostParams::default(), &lease).await)?
            }
            Step::Renew | Step::TakeOver => {
                let Some(mut lease) = current else {
                    return Ok(LeaderState::default());
                };
                let spec = lease.spec.get_or_insert_with(Default::default);
                if step == Step::TakeOver {
                    spec.holder_identity = Some(self.cfg.identity.clone());
                    spec.acquire_time = Some(Self::now_micro());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    tracing::info!(lease = %name, previous = ?record.as_ref().and_then(|r| r.holder.clone()), "taking over the leader lease");
                }
                spec.renew_time = Some(Self::now_micro());
                spec.lease_duration_seconds = Some(lease_seconds);
                let mut all = lease.metadata.annotations.take().unwrap_or_default();
                all.retain(|k, _| !k.starts_with(PUBLISHED_PREFIX));
                all.extend(annotations);
                lease.metadata.annotations = Some(all);
                // `resourceVersion` stays as read: a concurrent writer makes this a 409.
                self.write(
                    self.api
                        .replace(&name, &PostParams::default(), &lease)
                        .await,
                )?
            }
        };
        match written {
            Some(lease) => {
                self.last_renewed = Some(Instant::now());
                let r = Self::record_of(&lease);
                self.observed = Some((r, Instant::now()));
                Ok(self.state(Some(&lease)))
            }
            // Lost a race: whoever won shows up in the next round.
            None => Ok(LeaderState {
                leading: false,
                holder: record.and_then(|r| r.holder),
                annotations: BTreeMap::new(),
            }),
        }
    }

    /// Conflicts and races count as "not this round"; other failures are errors.
    fn write(&mut self, result: Result<Lease, kube::Error>) -> Result<Option<Lease>, LeaderError> {
        match result {
            Ok(l) => Ok(Some(l)),
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
                tracing::debug!(lease = %self.cfg.name, "lost a lease race");
                self.last_renewed = None;
                Ok(None)
            }
            Err(source) => Err(LeaderError::Write {
                name: self.cfg.name.clone(),
                source,
            }),
        }
    }

    /// Whether we still lead: we renewed within the renew deadline.
    fn leading(&self) -> bool {
        self.last_renewed
            .is_some_and(|t| t.elapsed() < self.cfg.renew_deadline)
    }

    fn state(&self, lease: Option<&Lease>) -> LeaderState {
        let holder = lease
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.clone());
        let annotations = lease
            .and_then(|l| l.metadata.annotations.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k.starts_with(PUBLISHED_PREFIX))
            .collect();
        LeaderState {
            leading: holder.as_deref() == Some(self.cfg.identity.as_str()) && self.leading(),
            holder,
            annotations,
        }
    }

    /// Give the lease up (on shutdown) so a successor need not wait for it to expire.
    pub async fn release(&mut self) -> Result<(), LeaderError> {
        let name = self.cfg.name.clone();
        let Some(mut lease) =
            self.api
                .get_opt(&name)
                .await
                .map_err(|source| LeaderError::Read {
                    name: name.clone(),
                    source,
                })?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(Self::now_micro());
        self.last_renewed = None;
        self.write(
            self.api
                .replace(&name, &PostParams::default(), &lease)
                .await,
        )?;
        Ok(())
    }

    /// Run rounds every `retry_period` until `stop`, publishing the state. On `stop` the
    /// lease is released. Returns the receiver side of the state.
    pub fn spawn(
        mut self,
        stop: CancellationToken,
    ) -> (watch::Receiver<LeaderState>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(LeaderState::default());
        let handle = tokio::spawn(async move {
            loop {
                match self.round().await {
                    Ok(state) => {
                        tx.send_if_modified(|old| {
                            let changed = *old != state;
                            if changed && old.leading != state.leading {
                                tracing::info!(identity = %self.cfg.identity, leading = state.leading, holder = ?state.holder, "leadership changed");
                            }
                            *old = state;
                            changed
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "leader election round failed");
                        if !self.leading() {
                            tx.send_if_modified(|old| {
                                let was = old.leading;
                                old.leading = false;
                                was
                            });
                        }
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(self.cfg.retry_period) => {}
                }
            }
            tx.send_modify(|s| s.leading = false);
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "failed to release the leader lease");
            }
        });
        (rx, handle)
    }
}

/// Annotations the leader publishes on the lease start with this.
pub const PUBLISHED_PREFIX: &str = "coldstart.dev/";

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: Option<&str>) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            resource_version: Some("7".to_owned()),
            renew_time: None,
        }
    }

    #[test]
    fn election_steps_follow_the_table() {
        let lease = Duration::from_secs(15);
        let cases = [
            ("no lease yet: create it", None, 0, Step::Create),
            ("we hold it: renew", Some(rec(Some("a"))), 0, Step::Renew),
            (
                "we hold it even if stale: renew",
                Some(rec(Some("a"))),
                60,
                Step::Renew,
            ),
            (
                "released lease: take it",
                Some(rec(None)),
                0,
                Step::TakeOver,
            ),
            (
                "empty holder: take it",
                Some(rec(Some(""))),
                0,
                Step::TakeOver,
            ),
            (
                "live holder: follow",
                Some(rec(Some("b"))),
                14,
                Step::Follow,
            ),
            (
                "holder silent for the lease duration: take over",
                Some(rec(Some("b"))),
                15,
                Step::TakeOver,
            ),
        ];
        for (name, record, secs, want) in cases {
            let got = decide("a", record.as_ref(), Duration::from_secs(secs), lease);
            assert_eq!(got, want, "{name}");
        }
    }
}
