//! The launcher's admin endpoint: what a cluster whose API server is kube-apiserver (which
//! has no `/sim/v1` paths) answers there instead. `POST /sim/v1/teardown` deletes the cluster
//! the way a cloud does; `GET /sim/v1/cloud` is the simulated cloud's state and ledger and
//! `POST /sim/v1/cloud` adds what the account already holds, exactly as on the embedded
//! server. The kubeconfig names the endpoint in a cluster extension; a bearer token from the
//! same kubeconfig guards it. coldstart's client (`k8s::test_bed`) reaches it on the paths the
//! embedded server serves, so every `/sim/v1` caller works against both.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::ControlPlane;
use crate::cloud::Cloud;

#[derive(Clone)]
struct AdminState {
    cp: Arc<Mutex<ControlPlane>>,
    cloud: Arc<Cloud>,
    token: String,
}

/// A running admin endpoint; stops when dropped.
#[derive(Debug)]
pub struct Admin {
    pub endpoint: crate::kubeconfig::AdminEndpoint,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve the admin endpoint for `cp` and its `cloud` on a free loopback port.
pub async fn serve(cp: Arc<Mutex<ControlPlane>>, cloud: Arc<Cloud>) -> std::io::Result<Admin> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let token = uuid::Uuid::new_v4().simple().to_string();
    let state = AdminState {
        cp,
        cloud,
        token: token.clone(),
    };
    let app = Router::new()
        .route("/sim/v1/teardown", post(teardown))
        .route("/sim/v1/cloud", get(cloud_state).post(add_to_cloud))
        .merge(crate::cloud_api::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Admin {
        endpoint: crate::kubeconfig::AdminEndpoint {
            url: format!("http://{addr}"),
            token,
        },
        task,
    })
}

async fn authorize(
    State(s): State<AdminState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == s.token);
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    next.run(req).await
}

/// A Kubernetes-shaped `Status`, so a kube-rs client routed here reports it as the API error
/// it is.
fn status(code: StatusCode, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": code.canonical_reason().unwrap_or_default().replace(' ', ""),
        "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

async fn cloud_state(State(s): State<AdminState>) -> Response {
    crate::cloud_api::state(&s.cloud)
}

impl crate::cloud_api::HasCloud for AdminState {
    fn cloud(&self) -> &Cloud {
        &self.cloud
    }
}

async fn add_to_cloud(State(s): State<AdminState>, body: Bytes) -> Response {
    let response = crate::http::add_to_cloud(&s.cloud, &body);
    let aks = serde_json::from_slice::<crate::cloud::Existing>(&body)
        .is_ok_and(|e| e.node_resource_group.is_some());
    if response.status().is_success()
        && aks
        && let Err(e) = label_nodes_for_aks(&*s.cp.lock().await, &s.cloud).await
    {
        return status(StatusCode::INTERNAL_SERVER_ERROR, &e);
    }
    response
}

/// Label every node with the cloud's node resource group, as AKS does
/// (`kubernetes.azure.com/cluster`), as the embedded server does for its own nodes.
async fn label_nodes_for_aks(cp: &ControlPlane, cloud: &Cloud) -> Result<(), String> {
    let Some(group) = cloud.lock().node_resource_group.clone() else {
        return Ok(());
    };
    let client = cp.client().await.map_err(|e| e.to_string())?;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let list = nodes
        .list(&Default::default())
        .await
        .map_err(|e| format!("failed to list the nodes to label: {e}"))?;
    let patch = json!({"metadata": {"labels": {"kubernetes.azure.com/cluster": group}}});
    for node in list.items {
        let name = node.metadata.name.unwrap_or_default();
        nodes
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(|e| format!("failed to label node {name}: {e}"))?;
    }
    Ok(())
}

/// Delete the cluster the way a cloud does: the disks of `Delete` volumes go with it, nodes
/// terminate (disks detach), addresses the load-balancer controller allocated are released,
/// buckets whose claims say Delete are deleted; then an empty cluster answers.
async fn teardown(State(s): State<AdminState>) -> Response {
    match teardown_cluster(&s.cp, &s.cloud).await {
        Ok(uid) => {
            let restarted_in = s.cp.lock().await.started_in;
            axum::Json(json!({"uid": uid, "restarted_in_ms": restarted_in.as_millis() as u64}))
                .into_response()
        }
        Err(e) => status(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// Tear the cluster down with the cloud's side of it; returns the new `kube-system` uid.
pub async fn teardown_cluster(cp: &Mutex<ControlPlane>, cloud: &Cloud) -> Result<String, String> {
    let mut cp = cp.lock().await;
    let doomed = delete_policy_disks(&cp).await?;
    let uid = cp.teardown().await.map_err(|e| e.to_string())?;
    cloud.lock().delete_cluster(&doomed);
    // The new cluster's nodes are in the same node resource group.
    label_nodes_for_aks(&cp, cloud).await?;
    tracing::info!(disks_deleted = doomed.len(), "real cluster torn down");
    Ok(uid)
}

/// The disks of every PV whose reclaim policy is `Delete` (what a cluster deletion takes).
async fn delete_policy_disks(cp: &ControlPlane) -> Result<Vec<String>, String> {
    let client = cp.client().await.map_err(|e| e.to_string())?;
    let pvs: kube::Api<k8s_openapi::api::core::v1::PersistentVolume> = kube::Api::all(client);
    let list = pvs
        .list(&Default::default())
        .await
        .map_err(|e| format!("failed to list the volumes the cluster deletion takes: {e}"))?;
    Ok(list
        .items
        .iter()
        .filter_map(|pv| serde_json::to_value(pv).ok())
        .filter(|v| {
            v.pointer("/spec/persistentVolumeReclaimPolicy")
                .and_then(Value::as_str)
                == Some("Delete")
        })
        .filter_map(|v| crate::controllers::storage_disk_of(&v))
        .collect())
}
