//! Planned whole-cluster stop and start. `stop` makes nothing losable (PVs retained,
//! addresses pinned, buckets orphaned: each change recorded with its undo), quiesces in
//! order, waits for pods to go and volumes to detach, then takes a final snapshot, verifies
//! it and leaves a marker naming it in the store. `start` restores that snapshot (the
//! cold-start path, gate included) and scales everything back in reverse order.
//!
//! Both are re-runnable: an interrupted stop continues (fixes are idempotent, recorded
//! replicas survive), a start skips what already exists.

pub mod stop;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};

use crate::audit::{self, Finding};
use crate::cloud::CloudChoice;
use crate::k8s::Resources;
use crate::preflight::{self, AcceptMissing, Preflight};
use crate::progress::Progress;
use crate::restore::plan::PinStyle;
use crate::restore::{self, RestoreOptions, RestoreReport};
use crate::snapshot::crypto::{Keys, Role};
use crate::snapshot::{format, read, write};
use crate::store::{Store, layout};

use self::stop::{Change, Group, QuiesceStep};

/// What a stop leaves in the store for the start (and for `stop --undo`). Written before the
/// stop's first change, without a snapshot, so an interrupted stop can be undone or
/// continued with every original value; written again with the final snapshot at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopMarker {
    pub cluster: String,
    /// The final snapshot; None while the stop is under way (or was interrupted).
    pub snapshot: Option<String>,
    pub stopped_at: DateTime<Utc>,
    pub changes: Vec<Change>,
    pub steps: Vec<QuiesceStep>,
}

#[derive(Debug, Clone)]
pub struct StopOptions {
    pub pin_style: PinStyle,
    pub order: Vec<Group>,
    pub quiesce_timeout: Duration,
    pub snapshot: write::Options,
    pub dry_run: bool,
    /// The cloud the live bindings are checked against before anything is changed.
    pub cloud: CloudChoice,
    /// Broken bindings to stop without; any other one refuses the stop. Also names
    /// bindings in a node resource group the stop may leave to be deleted.
    pub accept_missing: AcceptMissing,
    /// Where disks and public IPs in the AKS node resource group are moved (after the
    /// volumes detach), so the cluster's deletion does not take them.
    pub move_to_resource_group: Option<String>,
}

impl Default for StopOptions {
    fn default() -> Self {
        StopOptions {
            pin_style: PinStyle::LoadBalancerIp,
            order: stop::DEFAULT_ORDER.to_vec(),
            quiesce_timeout: Duration::from_secs(600),
            snapshot: write::Options::default(),
            dry_run: false,
            cloud: CloudChoice::None,
            accept_missing: AcceptMissing::default(),
            move_to_resource_group: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StopReport {
    /// What would have been lost before the stop fixed it.
    pub findings: Vec<Finding>,
    /// The live bindings as the cloud saw them before anything changed.
    pub preflight: Preflight,
    pub changes: Vec<Change>,
    pub steps: Vec<QuiesceStep>,
    pub snapshot: Option<String>,
    pub snapshot_objects: u64,
    pub dry_run: bool,
    pub phase_ms: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Stop(#[from] stop::StopError),
    #[error("failed to prepare the stop, so nothing in the cluster was changed: {0}")]
    StorePreflight(write::WriteError),
    #[error(
        "failed to start: the stop recorded in {0} did not finish (no final snapshot); re-run `coldstart stop` to finish it, or `coldstart stop --undo` to cancel it"
    )]
    StopIncomplete(String),
    #[error(
        "failed to take the final snapshot: {0}; the cluster is quiesced and its fixes are in place: re-run `coldstart stop` to retry"
    )]
    Snapshot(#[from] write::WriteError),
    #[error("failed to verify the final snapshot: {0}; re-run `coldstart stop` to take another")]
    Verify(read::ReadError),
    #[error("failed to read the stop marker: {0}")]
    Marker(String),
    #[error(
        "failed to record the stop in {url} before changing anything: {detail}; nothing in the cluster was changed"
    )]
    Record { url: String, detail: String },
    #[error(
        "there is no stopped marker in {0}: was `coldstart stop` run against this store? Use `coldstart start --snapshot ID` to start from a given snapshot"
    )]
    NotStopped(String),
    #[error(transparent)]
    Restore(#[from] restore::RestoreError),
    #[error("failed to list workloads: {0}")]
    List(kube::Error),
    #[error(transparent)]
    Verifier(#[from] crate::cloud::VerifierError),
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    #[error(
        "{0}; nothing was changed (a spec.loadBalancerIP AWS ignores needs its Elastic IP allocation to be pinned)"
    )]
    Allocations(#[from] crate::cloud::LookupError),
    #[error("refused at preflight, nothing was changed: {}", .0.refusal())]
    Refused(Box<Preflight>),
    #[error(
        "refused, nothing was changed: {} live in the AKS node resource group, which Azure deletes with the cluster whatever the reclaim policy, and {reason}. Give --move-to-resource-group RG where coldstart can move them (--cloud sim); on Azure, move each (`az resource move --destination-group RG --ids ID`, disks once detached) or snapshot the disks, or stop without them with --accept-missing ID",
        .bindings.join(", ")
    )]
    NodeResourceGroup {
        bindings: Vec<String>,
        reason: String,
    },
    #[error("{0}; the cluster is quiesced: fix it and re-run `coldstart stop` to continue")]
    Move(#[from] crate::cloud::MoveError),
}

fn set(progress: &Arc<Mutex<Progress>>, phase: &str) {
    if let Ok(mut p) = progress.lock() {
        p.phase(phase);
    }
}

async fn workloads(client: &kube::Client) -> Result<Vec<stop::Scalable>, LifecycleError> {
    let mut out = Vec::new();
    for (kind, plural) in [
        ("Deployment", "deployments"),
        ("StatefulSet", "statefulsets"),
    ] {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", kind), plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        // Page by page, each kept as what the quiesce plan reads: thirty thousand
        // Deployments with their pod templates were 400 MiB. kube-system is the platform's,
        // not the workload's: leave it running.
        out.extend(
            crate::k8s::list_mapped(&api, &ListParams::default(), ("apps/v1", kind), |w| {
                (w.pointer("/metadata/namespace").and_then(|n| n.as_str()) != Some("kube-system"))
                    .then(|| stop::Scalable::of(&w))
            })
            .await
            .map_err(LifecycleError::List)?,
        );
    }
    Ok(out)
}

/// The planned stop recorded in the store, if any.
pub async fn read_marker(store: &Store, keys: &Keys) -> Result<Option<StopMarker>, LifecycleError> {
    let Some(bytes) = store
        .get_opt(layout::STOP_MARKER)
        .await
        .map_err(|e| LifecycleError::Marker(e.to_string()))?
    else {
        return Ok(None);
    };
    format::decode_json(keys, Role::Marker, &bytes, "the stop marker")
        .map(Some)
        .map_err(|e| LifecycleError::Marker(e.to_string()))
}

/// The quiesce steps of the stop marker, read again after a start's restore: the marker
/// must still be the stop into `id` the start began from.
async fn quiesced_steps(
    store: &Store,
    keys: &Keys,
    id: &str,
) -> Result<Vec<QuiesceStep>, LifecycleError> {
    match read_marker(store, keys).await? {
        Some(m) if m.snapshot.as_deref() == Some(id) => Ok(m.steps),
        _ => Err(LifecycleError::Marker(format!(
            "it no longer records the stop into snapshot {id} (another `coldstart stop` or `start` ran during this start); the restore is done and the quiesced workloads are still down: run `coldstart start` again"
        ))),
    }
}

/// Write the marker, read it back and open it: the proof that the store keeps what the
/// stop records, with this key, before the stop relies on it.
async fn write_marker(
    store: &Store,
    keys: &Keys,
    marker: &StopMarker,
) -> Result<(), LifecycleError> {
    let fail = |detail: String| LifecycleError::Record {
        url: store.url().to_owned(),
        detail,
    };
    store
        .put(
            layout::STOP_MARKER,
            Bytes::from(format::encode_json(keys, Role::Marker, marker)),
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
    let back = read_marker(store, keys)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if back.as_ref() != Some(marker) {
        return Err(fail(
            "the marker read back differs from what was written".to_owned(),
        ));
    }
    Ok(())
}

/// The quiesce steps of a re-run stop: a workload an interrupted stop already scaled to 0
/// keeps the replicas that stop recorded (the cluster no longer shows them).
fn merge_steps(previous: Option<&[QuiesceStep]>, mut steps: Vec<QuiesceStep>) -> Vec<QuiesceStep> {
    let Some(previous) = previous else {
        return steps;
    };
    for step in &mut steps {
        for w in &mut step.workloads {
            if w.replicas == 0
                && let Some(p) = previous
                    .iter()
                    .flat_map(|s| &s.workloads)
                    .find(|p| p.object == w.object)
            {
                w.replicas = p.replicas;
            }
        }
    }
    steps
}

/// Stop the cluster so that deleting it loses nothing.
pub async fn stop(
    client: &kube::Client,
    store: &Store,
    keys: &Keys,
    opts: &StopOptions,
    progress: &Arc<Mutex<Progress>>,
) -> Result<StopReport, LifecycleError> {
    let mut phase_ms = BTreeMap::new();
    let mut t = Instant::now();
    let mut mark = |name: &str, t: &mut Instant| {
        phase_ms.insert(name.to_owned(), t.elapsed().as_millis() as u64);
        *t = Instant::now();
    };
    set(progress, "auditing");
    // One discovery for the whole stop: the audit, the fixes and every quiesce step.
    let resources = Resources::discover(client)
        .await
        .map_err(stop::StopError::from)?;
    let inputs = audit::collect_with(client, &resources, None).await?;
    let findings: Vec<Finding> = audit::audit(&inputs, Utc::now(), Duration::MAX)
        .into_iter()
        // The final snapshot takes the snapshot (and the cloud snapshots) these ask for.
        .filter(|f| {
            !matches!(
                f.kind,
                audit::FindingKind::NoSnapshot | audit::FindingKind::CloudSnapshotStale
            )
        })
        .collect();
    // A binding already broken is known before the shutdown, not at the next start.
    set(progress, "checking bindings against the cloud");
    let verifier = crate::cloud::verifier(opts.cloud, Some(client.clone())).await?;
    let pre = preflight::check(
        client,
        verifier.as_ref(),
        &audit::live_bindings(&inputs),
        &[],
        &opts.accept_missing,
    )
    .await?;
    if !opts.dry_run && !pre.refused().is_empty() {
        return Err(LifecycleError::Refused(Box::new(pre)));
    }
    // What the provider deletes with the cluster whatever the reclaim policy is moved out
    // once the volumes are detached, or the stop refuses now, before any change.
    let moved_out: Vec<_> = crate::bindings::azure::in_node_group(
        &inputs.persistent_volumes,
        &inputs.services,
        inputs.node_resource_group.as_deref(),
    )
    .into_iter()
    .filter(|b| {
        !opts
            .accept_missing
            .accepts_binding(b.target(), &b.subject())
    })
    .collect();
    let mover = match (&opts.move_to_resource_group, moved_out.is_empty()) {
        (Some(group), false) => crate::cloud::mover(opts.cloud, client)
            .await
            .map(|m| (group.clone(), m)),
        _ => None,
    };
    if !opts.dry_run && !moved_out.is_empty() && mover.is_none() {
        return Err(LifecycleError::NodeResourceGroup {
            bindings: moved_out
                .iter()
                .map(|b| format!("{} ({})", b.target(), b.subject()))
                .collect(),
            reason: match &opts.move_to_resource_group {
                None => "no --move-to-resource-group was given".to_owned(),
                Some(_) => format!(
                    "coldstart cannot move resources in this cloud (--cloud {:?})",
                    opts.cloud
                )
                .to_lowercase(),
            },
        });
    }
    // An interrupted stop already changed things: keep its changes (and their undos).
    let previous = read_marker(store, keys)
        .await?
        .filter(|m| m.cluster == opts.snapshot.cluster_name);
    let mut changes: Vec<Change> = previous
        .as_ref()
        .map(|m| m.changes.clone())
        .unwrap_or_default();
    // A loadBalancerIP AWS ignores is rewritten to the allocation the cloud names for it.
    let ignored = stop::ignored_aws_pins(&inputs);
    let allocations = if ignored.is_empty() {
        Default::default()
    } else {
        verifier.allocations(&ignored).await?
    };
    for c in stop::plan_fixes(&inputs, opts.pin_style, &allocations) {
        if !changes
            .iter()
            .any(|x| x.object == c.object && x.description == c.description)
        {
            changes.push(c);
        }
    }
    let steps = merge_steps(
        previous.as_ref().map(|m| m.steps.as_slice()),
        stop::plan_quiesce(workloads(client).await?, &opts.order),
    );
    mark("audit", &mut t);
    if opts.dry_run {
        return Ok(StopReport {
            findings,
            preflight: pre,
            changes,
            steps,
            snapshot: None,
            snapshot_objects: 0,
            dry_run: true,
            phase_ms,
        });
    }
    // Nothing is changed before everything the stop needs is known to work: the final
    // snapshot must be possible and the store must keep the record of the undos.
    set(progress, "checking the store, the key and the snapshot");
    write::preflight(client, store, keys, &opts.snapshot)
        .await
        .map_err(LifecycleError::StorePreflight)?;
    let mut marker = StopMarker {
        cluster: opts.snapshot.cluster_name.clone(),
        snapshot: None,
        stopped_at: Utc::now(),
        changes: changes.clone(),
        steps: steps.clone(),
    };
    write_marker(store, keys, &marker).await?;
    mark("preflight", &mut t);
    set(progress, "making nothing losable");
    stop::apply_changes(client, &resources, &changes, false).await?;
    mark("fix", &mut t);
    for step in &steps {
        set(
            progress,
            &format!("quiescing {:?}", step.group).to_lowercase(),
        );
        stop::scale_step(client, &resources, step, true).await?;
        stop::wait_step(client, &resources, step, true, opts.quiesce_timeout).await?;
    }
    set(progress, "waiting for volumes to detach");
    stop::wait_detached(client, opts.quiesce_timeout).await?;
    mark("quiesce", &mut t);
    if let Some((group, m)) = &mover {
        set(progress, "moving resources out of the node resource group");
        let ids: Vec<String> = moved_out.iter().map(|b| b.target().to_owned()).collect();
        let moved = m.move_to_group(&ids, group).await?;
        let recorded = stop::moved_changes(&moved_out, &moved, group);
        stop::apply_changes(client, &resources, &recorded, false).await?;
        changes.extend(recorded.iter().cloned());
        marker.changes.extend(recorded);
        write_marker(store, keys, &marker).await?;
        mark("move", &mut t);
    }
    set(progress, "taking the final snapshot");
    let manifest = write::take(
        client,
        store,
        keys,
        &opts.snapshot,
        Arc::new(write::CaptureProgress::default()),
    )
    .await?;
    read::open_stored(store, keys, &manifest.id)
        .await
        .map_err(LifecycleError::Verify)?;
    mark("snapshot", &mut t);
    marker.snapshot = Some(manifest.id.clone());
    marker.stopped_at = Utc::now();
    write_marker(store, keys, &marker).await?;
    if let Ok(mut p) = progress.lock() {
        p.finish(true);
    }
    Ok(StopReport {
        findings,
        preflight: pre,
        changes,
        steps,
        snapshot: Some(manifest.id),
        snapshot_objects: manifest.stats.objects,
        dry_run: false,
        phase_ms,
    })
}

/// What `stop --undo` put back.
#[derive(Debug, Clone, Serialize)]
pub struct UndoReport {
    /// The final snapshot of the stop undone (None: the stop was interrupted before it).
    pub snapshot: Option<String>,
    pub changes_undone: usize,
    pub workloads_restarted: usize,
}

/// Cancel a stop on a cluster that still runs: undo every recorded change and bring the
/// quiesced workloads back (data → operators → apps). The marker is removed.
pub async fn undo_stop(
    client: &kube::Client,
    store: &Store,
    keys: &Keys,
    ready_timeout: Duration,
) -> Result<UndoReport, LifecycleError> {
    let marker = read_marker(store, keys)
        .await?
        .ok_or_else(|| LifecycleError::NotStopped(store.url().to_owned()))?;
    let resources = Resources::discover(client)
        .await
        .map_err(stop::StopError::from)?;
    for step in marker.steps.iter().rev() {
        stop::scale_step(client, &resources, step, false).await?;
        stop::wait_step(client, &resources, step, false, ready_timeout).await?;
    }
    let undone = stop::apply_changes(client, &resources, &marker.changes, true).await?;
    store
        .delete(layout::STOP_MARKER)
        .await
        .map_err(|e| LifecycleError::Marker(e.to_string()))?;
    Ok(UndoReport {
        snapshot: marker.snapshot.clone(),
        changes_undone: undone,
        workloads_restarted: marker.steps.iter().map(|s| s.workloads.len()).sum(),
    })
}

#[derive(Debug, Clone)]
pub struct StartOptions {
    pub restore: RestoreOptions,
    /// Start from this snapshot instead of the stop marker's.
    pub snapshot: Option<String>,
    pub ready_timeout: Duration,
    /// What the operator accepts about the target (another cluster's snapshot, a
    /// non-empty cluster); see [`restore::target`].
    pub consent: restore::target::Consent,
}

#[derive(Debug, Clone, Serialize)]
pub struct StartReport {
    pub snapshot: String,
    pub restore: RestoreReport,
    /// Groups brought back, in order, with how long each took to be ready.
    pub scaled_up: Vec<(Group, u64)>,
    pub rto_ms: u64,
    pub phase_ms: BTreeMap<String, u64>,
}

/// Start a stopped cluster (or a fresh one) from the stop's snapshot.
pub async fn start(
    client: &kube::Client,
    store: &Store,
    keys: &Keys,
    opts: &StartOptions,
    progress: &Arc<Mutex<Progress>>,
) -> Result<StartReport, LifecycleError> {
    let started = Instant::now();
    let marker = read_marker(store, keys).await?;
    let id = match (&opts.snapshot, &marker) {
        (Some(id), _) => id.clone(),
        (None, Some(m)) => match &m.snapshot {
            Some(id) => id.clone(),
            None => return Err(LifecycleError::StopIncomplete(store.url().to_owned())),
        },
        (None, None) => return Err(LifecycleError::NotStopped(store.url().to_owned())),
    };
    let stopped_into_id = marker
        .as_ref()
        .is_some_and(|m| m.snapshot.as_ref() == Some(&id));
    // The marker's steps name every quiesced workload (~200 bytes each, tens of thousands
    // in a large cluster): not held through the restore, whose verifying pass and apply
    // are the start's peak, but read again once they are needed.
    let quiesced = stopped_into_id && marker.is_some_and(|m| !m.steps.is_empty());
    set(progress, "reading and verifying the snapshot");
    // Verified whole, left in the store: the restore reads it back tier by tier.
    let snap = read::open_stored(store, keys, &id)
        .await
        .map_err(LifecycleError::Verify)?;
    // Nothing is written before the target is known to be the right one.
    restore::target::check(client, &id, &snap.manifest.cluster, &opts.consent)
        .await
        .map_err(restore::RestoreError::from)?;
    let source = restore::source::from_stored(store, keys, snap);
    let mut ropts = opts.restore.clone();
    // The start brings operators back itself, in reverse quiesce order.
    ropts.scale_operators = !quiesced;
    // One discovery for the whole start: the restore refreshes it once its CRDs are in, and
    // the workloads are scaled up with it.
    let mut resources = Resources::discover(client)
        .await
        .map_err(stop::StopError::from)?;
    let report = restore::run_in(client, &mut resources, &source, &ropts, progress).await?;
    drop(source);
    let mut phase_ms = report.phase_ms.clone();
    let mut scaled_up = Vec::new();
    if report.succeeded {
        let mut steps = match quiesced {
            true => quiesced_steps(store, keys, &id).await?,
            false => Vec::new(),
        };
        // What uses a binding accepted as missing stays down; everything else comes back.
        for step in &mut steps {
            step.workloads
                .retain(|w| !report.preflight.holds(&w.object.workload()));
        }
        let mut brought_back = Ok(());
        for step in steps.iter().rev() {
            let t = Instant::now();
            set(
                progress,
                &format!("starting {:?}", step.group).to_lowercase(),
            );
            brought_back = async {
                stop::scale_step(client, &resources, step, false).await?;
                stop::wait_step(client, &resources, step, false, opts.ready_timeout).await
            }
            .await;
            if brought_back.is_err() {
                break;
            }
            let ms = t.elapsed().as_millis() as u64;
            phase_ms.insert(format!("start-{:?}", step.group).to_lowercase(), ms);
            scaled_up.push((step.group, ms));
        }
        // The quotas get their limits back once the workloads have their pods again, and
        // also when a step is stuck: a namespace must not stay without its limits.
        set(progress, "giving quotas their limits back");
        restore::put_back_quotas(client).await?;
        brought_back?;
        // Only once everything is back: nothing fires into a half-restored platform.
        set(progress, "resuming CronJobs");
        stop::resume_cronjobs(client, &resources).await?;
        // A partly-up start keeps the marker: once the missing bindings are back, running
        // `start` again brings the held workloads up.
        if !report.partly_up && stopped_into_id {
            let _ = store.delete(layout::STOP_MARKER).await;
        }
    }
    if let Ok(mut p) = progress.lock() {
        p.finish(report.succeeded);
    }
    Ok(StartReport {
        snapshot: id,
        rto_ms: started.elapsed().as_millis() as u64,
        restore: report,
        scaled_up,
        phase_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker_into(snapshot: &str) -> StopMarker {
        StopMarker {
            cluster: "prod".into(),
            snapshot: Some(snapshot.into()),
            stopped_at: Utc::now(),
            changes: Vec::new(),
            steps: vec![QuiesceStep {
                group: Group::Operators,
                workloads: Vec::new(),
            }],
        }
    }

    #[tokio::test]
    async fn a_start_takes_the_steps_of_the_stop_it_began_from_read_after_its_restore() {
        let (store, keys) = (Store::memory(), Keys::from_master(&[3; 32]));
        write_marker(&store, &keys, &marker_into("snap-a"))
            .await
            .unwrap();
        let steps = quiesced_steps(&store, &keys, "snap-a").await.unwrap();
        assert_eq!(steps.len(), 1);
    }

    #[tokio::test]
    async fn a_marker_replaced_during_the_restore_fails_the_start_naming_what_to_do() {
        let (store, keys) = (Store::memory(), Keys::from_master(&[3; 32]));
        write_marker(&store, &keys, &marker_into("snap-b"))
            .await
            .unwrap();
        let err = quiesced_steps(&store, &keys, "snap-a").await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("snapshot snap-a"), "{msg}");
        assert!(msg.contains("run `coldstart start` again"), "{msg}");
        store.delete(layout::STOP_MARKER).await.unwrap();
        assert!(quiesced_steps(&store, &keys, "snap-a").await.is_err());
    }
}
