//! The simulated cloud's write API, as a provider SDK would call it: snapshot a disk,
//! create a disk from a snapshot, enable Fast Snapshot Restore, delete a disk or a
//! snapshot (losing a disk is how a test or `coldstart sim cloud delete disk` plays a
//! zone outage or an operator's mistake). Reads stay on `GET /sim/v1/cloud`.
//!
//! ```text
//!  POST   /sim/v1/cloud/snapshots                   {"diskId", "tags"}   → Snapshot
//!  DELETE /sim/v1/cloud/snapshots/{id}
//!  POST   /sim/v1/cloud/snapshots/{id}/fast-restore {"zones"}
//!  POST   /sim/v1/cloud/disks                       {"fromSnapshot", "zone", "tags"} → Disk
//!  DELETE /sim/v1/cloud/disks/{id}
//!  DELETE /sim/v1/cloud/buckets/{name}
//!  POST   /sim/v1/cloud/move                        {"ids", "destinationGroup"} (az resource move)
//! ```
//!
//! The same routes are served wherever the cloud lives: beside the embedded API server, and
//! on the admin endpoint of a real control plane's launcher ([`HasCloud`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Sim;
use super::cloud::{Cloud, CloudError};
use super::status::ApiError;

/// `POST /sim/v1/cloud/snapshots`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSnapshot {
    pub disk_id: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// `POST /sim/v1/cloud/disks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDisk {
    pub from_snapshot: String,
    pub zone: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// `POST /sim/v1/cloud/snapshots/{id}/fast-restore`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FastRestore {
    pub zones: Vec<String>,
}

/// A server state that holds the simulated cloud.
pub trait HasCloud: Clone + Send + Sync + 'static {
    fn cloud(&self) -> &Cloud;
}

impl HasCloud for Arc<Sim> {
    fn cloud(&self) -> &Cloud {
        &self.cloud
    }
}

/// The write routes, merged into the router of whatever serves the cloud.
pub fn routes<S: HasCloud>() -> Router<S> {
    Router::new()
        .route("/sim/v1/cloud/snapshots", post(create_snapshot::<S>))
        .route("/sim/v1/cloud/snapshots/{id}", delete(delete_snapshot::<S>))
        .route(
            "/sim/v1/cloud/snapshots/{id}/fast-restore",
            post(fast_restore::<S>),
        )
        .route("/sim/v1/cloud/disks", post(create_disk::<S>))
        .route("/sim/v1/cloud/disks/{id}", delete(delete_disk::<S>))
        .route("/sim/v1/cloud/disks/{id}/attach", post(attach_disk::<S>))
        .route("/sim/v1/cloud/buckets/{name}", delete(delete_bucket::<S>))
        .route("/sim/v1/cloud/move", post(move_resources::<S>))
}

/// `GET /sim/v1/cloud`: the cloud's state and ledger, with its region (a client learns the
/// region from the answer, as from a real cloud's API).
pub fn state(cloud: &Cloud) -> Response {
    let mut state = json!(cloud.snapshot());
    state["region"] = json!(super::cloud::region());
    answer(StatusCode::OK, state)
}

/// `POST /sim/v1/cloud/move` `{"ids": [...], "destinationGroup": "rg"}`: what
/// `az resource move` does; answers each id with its id after the move.
async fn move_resources<S: HasCloud>(State(s): State<S>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Move {
        ids: Vec<String>,
        destination_group: String,
    }
    let m: Move = match decode(&body) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let moved = s
        .cloud()
        .lock()
        .move_resources(&m.ids, &m.destination_group, "az resource move");
    match moved {
        Ok(moved) => answer(StatusCode::OK, json!({"moved": moved})),
        Err(e) => ApiError::bad_request(format!("failed to move: {e}")).into_response(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("failed to decode the request: {e}")))
}

fn answer(code: StatusCode, v: Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn failed(e: CloudError) -> Response {
    match &e {
        CloudError::NoDisk(id) => ApiError::not_found("disk", id).into_response(),
        CloudError::NoSnapshot(id) => ApiError::not_found("snapshot", id).into_response(),
        CloudError::DiskInUse(id, _) => ApiError::conflict("disk", id).into_response(),
        _ => ApiError::bad_request(e.to_string()).into_response(),
    }
}

async fn create_snapshot<S: HasCloud>(State(sim): State<S>, body: Bytes) -> Response {
    let req: CreateSnapshot = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match sim
        .cloud()
        .lock()
        .create_snapshot(&req.disk_id, req.tags, "CreateSnapshot")
    {
        Ok(s) => answer(StatusCode::CREATED, json!(s)),
        Err(e) => failed(e),
    }
}

async fn delete_snapshot<S: HasCloud>(State(sim): State<S>, Path(id): Path<String>) -> Response {
    match sim.cloud().lock().delete_snapshot(&id, "DeleteSnapshot") {
        Ok(()) => answer(StatusCode::OK, json!({"deleted": id})),
        Err(e) => failed(e),
    }
}

async fn fast_restore<S: HasCloud>(
    State(sim): State<S>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let req: FastRestore = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut cloud = sim.cloud().lock();
    match cloud.enable_fast_restore(&id, &req.zones) {
        Ok(()) => answer(StatusCode::OK, json!(cloud.snapshots.get(&id))),
        Err(e) => failed(e),
    }
}

async fn create_disk<S: HasCloud>(State(sim): State<S>, body: Bytes) -> Response {
    let req: CreateDisk = match decode(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match sim.cloud().lock().create_disk_from_snapshot(
        &req.from_snapshot,
        &req.zone,
        req.tags,
        "CreateVolume",
    ) {
        Ok(d) => answer(StatusCode::CREATED, json!(d)),
        Err(e) => failed(e),
    }
}

/// `DELETE /sim/v1/cloud/buckets/NAME`: the bucket is lost, as by S3's DeleteBucket from
/// outside the cluster (what a drill must notice).
async fn delete_bucket<S: HasCloud>(State(sim): State<S>, Path(name): Path<String>) -> Response {
    match sim.cloud().lock().delete_bucket(&name, "DeleteBucket") {
        Ok(()) => answer(StatusCode::OK, json!({"deleted": name})),
        Err(e) => failed(e),
    }
}

/// `POST /sim/v1/cloud/disks/{id}/attach` `{"instance": "i-…"}`: what `aws ec2
/// attach-volume` does from outside the cluster (a forgotten instance holding a disk).
async fn attach_disk<S: HasCloud>(
    State(sim): State<S>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Attach {
        instance: String,
    }
    let a: Attach = match decode(&body) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    match sim.cloud().lock().attach_disk(&id, &a.instance) {
        Ok(()) => answer(
            StatusCode::OK,
            json!({"attached": id, "instance": a.instance}),
        ),
        Err(e) => failed(e),
    }
}

async fn delete_disk<S: HasCloud>(State(sim): State<S>, Path(id): Path<String>) -> Response {
    match sim.cloud().lock().delete_disk(&id, "DeleteVolume") {
        Ok(()) => answer(StatusCode::OK, json!({"deleted": id})),
        Err(e) => failed(e),
    }
}
