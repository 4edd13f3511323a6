//! AKS: the node resource group (`MC_…`) is deleted with the cluster, with every managed
//! disk and public IP in it, whatever the reclaim policy. The audit names them, `stop`
//! moves them out (as `az resource move` does) or refuses with what to do, and `start`
//! finds them where they were moved. Each scenario runs on both API servers ([`Plane`]).

use std::time::Duration;

use crate::helpers::{
    Bed, Plane, keys, on_both_planes, progress, sim_start_opts, sim_stop_opts, wait_until_async,
};
use coldstart::audit::{self, FindingKind};
use coldstart::lifecycle::{self, LifecycleError, StopOptions};
use coldstart::store::Store;
use coldstart::testing::{deployment, lb_service, pv, pvc};
use coldstart_sim::seed::Seed;
use serde_json::json;

const NODE_RG: &str = "MC_shop_aks1_westeurope";

fn disk_id(group: &str) -> String {
    format!("/subscriptions/0000/resourceGroups/{group}/providers/Microsoft.Compute/disks/orders")
}

/// An AKS-style cluster whose node resource group holds the disk behind `shop/orders` and
/// the public IP `pip-front` of `shop/front`, both in use.
async fn aks_cluster(plane: Plane) -> Bed {
    let c = Bed::start(plane, Seed::Empty).await;
    let existing = json!({
        "nodeResourceGroup": NODE_RG,
        "disks": [{"id": disk_id(NODE_RG), "zone": "eu-west-1a", "data": "orders-v1"}],
        "addresses": [{"ip": "198.51.100.40", "pipName": "pip-front", "resourceGroup": NODE_RG}],
    });
    c.add_to_cloud(&serde_json::from_value(existing).expect("what the account holds"))
        .await;
    let yaml = [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n".to_owned(),
        pv("orders")
            .set(
                "/spec",
                json!({"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "csi": {"driver": "disk.csi.azure.com", "volumeHandle": disk_id(NODE_RG)},
                    "claimRef": {"namespace": "shop", "name": "orders"}}),
            )
            .yaml(),
        pvc("shop", "orders")
            .spec("volumeName", json!("orders"))
            .spec("accessModes", json!(["ReadWriteOnce"]))
            .spec("resources", json!({"requests": {"storage": "10Gi"}}))
            .yaml(),
        deployment("shop", "orders")
            .replicas(1)
            .spec("selector", json!({"matchLabels": {"app": "orders"}}))
            .spec(
                "template",
                json!({"metadata": {"labels": {"app": "orders"}},
                    "spec": {"containers": [{"name": "app", "image": "shop"}],
                        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "orders"}}]}}),
            )
            .yaml(),
        lb_service("shop", "front")
            .annotation("service.beta.kubernetes.io/azure-pip-name", "pip-front")
            .spec("ports", json!([{"port": 80}]))
            .spec("selector", json!({"app": "orders"}))
            .yaml(),
    ]
    .join("---\n");
    c.apply(&yaml, &[]).await;
    wait_until_async("the disk is attached and the Service answers", async || {
        let cloud = c.cloud().await;
        cloud
            .disks
            .get(&disk_id(NODE_RG))
            .is_some_and(|d| d.attached_to.is_some())
            && c.get("", "services", "shop", "front")
                .await
                .is_some_and(|s| {
                    s.pointer("/status/loadBalancer/ingress/0/ip") == Some(&json!("198.51.100.40"))
                })
    })
    .await;
    c
}

fn stop_opts(move_to: Option<&str>) -> StopOptions {
    StopOptions {
        move_to_resource_group: move_to.map(str::to_owned),
        ..sim_stop_opts("aks1")
    }
}

on_both_planes!(
    the_audit_names_what_the_node_resource_group_takes_and_a_teardown_takes_it =
        audit_names_the_node_resource_group
);

async fn audit_names_the_node_resource_group(plane: Plane) {
    let c = aks_cluster(plane).await;
    let client = c.client().await;
    let inputs = audit::collect(&client, None).await.expect("inputs");
    assert_eq!(inputs.node_resource_group.as_deref(), Some(NODE_RG));
    let named: Vec<String> = audit::audit(&inputs, chrono::Utc::now(), Duration::from_secs(900))
        .into_iter()
        .filter(|f| f.kind == FindingKind::DeletedWithNodeResourceGroup)
        .map(|f| f.object)
        .collect();
    assert_eq!(
        named,
        vec!["PersistentVolume orders", "Service shop/front"],
        "a Retain disk and a reserved IP are lost all the same"
    );
    c.teardown().await;
    let cloud = c.cloud().await;
    assert!(
        !cloud.disks.contains_key(&disk_id(NODE_RG)),
        "the disk went"
    );
    assert!(
        !cloud.addresses.contains_key("198.51.100.40"),
        "the public IP went"
    );
    c.stop().await;
}

on_both_planes!(
    stop_refuses_before_any_change_when_it_cannot_move_them_out =
        stop_refuses_without_a_destination
);

async fn stop_refuses_without_a_destination(plane: Plane) {
    let c = aks_cluster(plane).await;
    let client = c.client().await;
    let err = lifecycle::stop(
        &client,
        &Store::memory(),
        &keys(),
        &stop_opts(None),
        &progress(),
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(err, LifecycleError::NodeResourceGroup { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&disk_id(NODE_RG))
            && msg.contains("pip-front")
            && msg.contains("--move-to-resource-group")
            && msg.contains("az resource move"),
        "{msg}"
    );
    let d = c
        .get("apps", "deployments", "shop", "orders")
        .await
        .expect("deployment");
    assert_eq!(d["spec"]["replicas"], 1, "nothing was changed");
    c.stop().await;
}

on_both_planes!(
    stop_moves_them_out_of_the_node_resource_group_and_start_finds_them_there =
        stop_moves_start_finds
);

async fn stop_moves_start_finds(plane: Plane) {
    let c = aks_cluster(plane).await;
    let client = c.client().await;
    let store = Store::memory();
    let (keys, progress) = (keys(), progress());
    lifecycle::stop(
        &client,
        &store,
        &keys,
        &stop_opts(Some("shop-keep")),
        &progress,
    )
    .await
    .expect("stop");
    let moved = disk_id("shop-keep");
    let pv = c
        .get("", "persistentvolumes", "", "orders")
        .await
        .expect("PV");
    assert_eq!(
        pv["metadata"]["annotations"][coldstart::bindings::azure::DISK_MOVED_TO],
        moved.as_str()
    );
    c.teardown().await;
    let cloud = c.cloud().await;
    assert_eq!(
        cloud.disks.get(&moved).map(|d| d.data_token.as_str()),
        Some("orders-v1"),
        "the disk survived the cluster, data and all"
    );
    assert!(
        cloud.addresses.contains_key("198.51.100.40"),
        "so did the IP"
    );
    let mark = c.cloud().await.position();
    let started = lifecycle::start(&client, &store, &keys, &sim_start_opts(), &progress)
        .await
        .expect("start");
    assert!(started.restore.succeeded, "{:#?}", started.restore);
    assert_eq!(
        (
            started.restore.volumes_reused,
            started.restore.ips_reused,
            started.restore.new_disks,
            started.restore.new_ips
        ),
        (1, 1, 0, 0)
    );
    let pv = c
        .get("", "persistentvolumes", "", "orders")
        .await
        .expect("PV");
    assert_eq!(
        pv["spec"]["csi"]["volumeHandle"],
        moved.as_str(),
        "the restored PV names the disk where it is now"
    );
    let created = c.cloud().await.created_since(mark);
    assert_eq!((created.disks, created.ips), (0, 0), "nothing new");
    c.stop().await;
}
