//! Lease-based leader election: on both API servers ([`Plane`]) for the elector itself (a
//! Lease's optimistic concurrency is the API server's), on the embedded one for two `serve`
//! replicas driven by a manual clock and fake jobs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use coldstart::schedule::leader::{LeaderElector, LeaseConfig};
use coldstart_sim::seed::Seed;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Bed, Plane, TestCluster, on_both_planes};

fn cfg(identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_millis(1500),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(200),
        ..LeaseConfig::new("default", "coldstart", identity)
    }
}

async fn wait_for(
    what: &str,
    rx: &watch::Receiver<coldstart::schedule::leader::LeaderState>,
    want: bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.borrow().leading != want {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_planes!(
    a_second_replica_takes_over_within_the_lease_duration_when_the_leader_dies = takeover
);

async fn takeover(plane: Plane) {
    let cluster = Bed::start(plane, Seed::Empty).await;
    let (_pa, publish_a) = watch::channel(BTreeMap::from([(
        "coldstart.dev/ready".to_owned(),
        "true".to_owned(),
    )]));
    let (_pb, publish_b) = watch::channel(BTreeMap::new());
    let a = LeaderElector::new(cluster.client().await, cfg("replica-a"), publish_a);
    let stop_a = CancellationToken::new();
    let (rx_a, handle_a) = a.spawn(stop_a.clone());
    wait_for("replica-a leads", &rx_a, true).await;

    let b = LeaderElector::new(cluster.client().await, cfg("replica-b"), publish_b);
    let stop_b = CancellationToken::new();
    let (rx_b, handle_b) = b.spawn(stop_b.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!rx_b.borrow().leading, "one leader at a time");
    assert_eq!(rx_b.borrow().holder.as_deref(), Some("replica-a"));
    assert_eq!(
        rx_b.borrow()
            .annotations
            .get("coldstart.dev/ready")
            .map(String::as_str),
        Some("true"),
        "followers read what the leader publishes"
    );

    // Kill the leader: it stops renewing and does not release the lease.
    handle_a.abort();
    let killed = Instant::now();
    wait_for("replica-b takes over", &rx_b, true).await;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_millis(1500 + 200 + 500),
        "took over in {took:?}, expected within the lease duration plus one retry"
    );
    let lease = Api::<Lease>::namespaced(cluster.client().await, "default")
        .get("coldstart")
        .await
        .expect("lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));

    // A graceful stop releases the lease at once.
    stop_b.cancel();
    handle_b.await.expect("join");
    let lease = Api::<Lease>::namespaced(cluster.client().await, "default")
        .get("coldstart")
        .await
        .expect("lease");
    assert_eq!(lease.spec.expect("spec").holder_identity, None);
    drop(stop_a);
    cluster.stop().await;
}

on_both_planes!(of_three_replicas_racing_for_the_lease_exactly_one_wins = three_race);

async fn three_race(plane: Plane) {
    let cluster = Bed::start(plane, Seed::Empty).await;
    let mut electors = Vec::new();
    for id in ["r1", "r2", "r3"] {
        let (_tx, rx) = watch::channel(BTreeMap::new());
        let e = LeaderElector::new(cluster.client().await, cfg(id), rx);
        electors.push(e.spawn(CancellationToken::new()));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..10 {
        let leaders = electors
            .iter()
            .filter(|(rx, _)| rx.borrow().leading)
            .count();
        assert_eq!(leaders, 1, "exactly one leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (_, h) in electors {
        h.abort();
    }
    cluster.stop().await;
}

/// Two `serve` replicas (service loop + elector each) on one simulated cluster: the leader
/// takes the scheduled snapshot; killed, the other replica takes over and snapshots.
#[tokio::test]
async fn when_the_leading_replica_is_killed_the_other_takes_over_and_takes_the_snapshots() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use crate::serve::{FakeJobs, ManualClock, app_state, config};
    use coldstart::serve::Service;
    use coldstart::web::Auth;

    let cluster = TestCluster::start_with(Seed::Platform).await;
    let clock = ManualClock::new("2025-01-10T10:07:00Z");
    let store = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut replicas = Vec::new();
    for id in ["replica-a", "replica-b"] {
        let mut jobs = FakeJobs::new(&clock);
        jobs.store = store.clone();
        // Both replicas read the same store: the last snapshot is from 10:00.
        jobs.inventory.snapshots =
            vec![crate::serve::snapshot_at("snap-0", "2025-01-10T10:00:00Z")];
        let jobs = Arc::new(jobs);
        let (state, actions) = app_state(Auth::default());
        let (publish, published) = watch::channel(BTreeMap::new());
        let stop = CancellationToken::new();
        let elector = LeaderElector::new(cluster.client().await, cfg(id), published);
        let (leader_rx, elector_task) = elector.spawn(stop.clone());
        let service = Service::new(
            jobs.clone(),
            config(|c| c.identity = id.to_owned()),
            state.clone(),
            clock.clock(),
            publish,
        );
        let service_task = tokio::spawn(service.run(leader_rx.clone(), actions, stop.clone()));
        replicas.push((jobs, state, leader_rx, elector_task, service_task));
        if id == "replica-a" {
            wait_for("replica-a leads", &replicas[0].2, true).await;
        }
    }
    let (jobs_a, _, _, elector_a, service_a) = &replicas[0];
    clock.set("2025-01-10T10:15:00Z");
    crate::helpers::wait_until("the leader took the 10:15 snapshot", || {
        jobs_a.snapshots.load(Ordering::SeqCst) == 1
    })
    .await;
    let (jobs_b, state_b, rx_b, _, _) = &replicas[1];
    assert_eq!(
        jobs_b.snapshots.load(Ordering::SeqCst),
        0,
        "the follower runs nothing"
    );
    crate::helpers::wait_until("the follower mirrors the leader's readiness", || {
        state_b.view().ready.ready
    })
    .await;

    // Kill replica-a: no release, no goodbye.
    elector_a.abort();
    service_a.abort();
    wait_for("replica-b takes over", rx_b, true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        jobs_b.snapshots.load(Ordering::SeqCst),
        0,
        "nothing due before 10:30"
    );
    clock.set("2025-01-10T10:30:00Z");
    crate::helpers::wait_until("the new leader takes the 10:30 snapshot", || {
        jobs_b.snapshots.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert!(state_b.view().replica.leading);
    assert_eq!(state_b.view().snapshots[0].trigger, "schedule");
    for (_, _, _, e, s) in replicas {
        e.abort();
        s.abort();
    }
    cluster.stop().await;
}

on_both_planes!(
    a_missing_lease_namespace_is_created_before_the_elector_runs_and_it_then_leads =
        namespace_created_first
);

async fn namespace_created_first(plane: Plane) {
    use coldstart::schedule::leader::{NamespaceOutcome, ensure_namespace};
    let cluster = Bed::start(plane, Seed::Empty).await;
    let client = cluster.client().await;
    assert!(
        cluster
            .get("", "namespaces", "", "coldstart-ha")
            .await
            .is_none()
    );
    assert_eq!(
        ensure_namespace(&client, "coldstart-ha")
            .await
            .expect("created"),
        NamespaceOutcome::Created
    );
    assert_eq!(
        ensure_namespace(&client, "coldstart-ha")
            .await
            .expect("exists"),
        NamespaceOutcome::Existed
    );
    let (_p, publish) = watch::channel(BTreeMap::new());
    let cfg = LeaseConfig {
        lease_duration: Duration::from_millis(1500),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(200),
        ..LeaseConfig::new("coldstart-ha", "coldstart", "replica-a")
    };
    let stop = CancellationToken::new();
    let (rx, handle) = LeaderElector::new(client, cfg, publish).spawn(stop.clone());
    wait_for("the replica leads in the created namespace", &rx, true).await;
    stop.cancel();
    let _ = handle.await;
    cluster.stop().await;
}
