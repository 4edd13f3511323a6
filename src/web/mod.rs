//! The web face of `coldstart serve`: the status page an SRE keeps open during a drill or
//! a recovery, the JSON API behind it, health and readiness probes, and `/metrics`.
//!
//! ```text
//!  service loop ──writes──▶ ServiceView (RwLock) ◀──reads── page, /api/v1/*, /metrics
//!  restore      ──writes──▶ Progress    (Mutex)  ◀──reads──┘
//!  POST /api/v1/{snapshots,drills} ──Action──▶ mpsc ──▶ service loop
//! ```
//!
//! Handlers never wait on a job: they read a copy of the view and answer. [`router`]
//! builds everything from an [`AppState`], so tests drive it with `oneshot`, no socket.

pub mod metrics;
pub mod page;
pub mod view;

use std::sync::{Arc, Mutex, RwLock};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use self::metrics::Metrics;
use self::view::ServiceView;
use crate::progress::Progress;

/// What a POST asks the service loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Snapshot,
    Drill,
}

/// Who may call what.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Bearer token for mutating endpoints; without one they are refused.
    pub token: Option<String>,
    /// Require the token for reads too.
    pub protect_reads: bool,
}

/// Everything a handler reads.
#[derive(Clone)]
pub struct AppState {
    pub view: Arc<RwLock<ServiceView>>,
    pub progress: Arc<Mutex<Progress>>,
    pub actions: mpsc::Sender<Action>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Auth>,
}

/// Manual runs waiting for the service loop: one. The API documents that a second POST
/// while a run is queued answers 429, so a burst of clicks runs once, not four times.
pub const QUEUED_ACTIONS: usize = 1;

impl AppState {
    /// A fresh state and the receiving end of its action queue (the service loop's).
    pub fn new(auth: Auth, metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<Action>) {
        let (actions, rx) = mpsc::channel(QUEUED_ACTIONS);
        let state = AppState {
            view: Arc::new(RwLock::new(ServiceView::default())),
            progress: Arc::new(Mutex::new(Progress::default())),
            actions,
            metrics,
            auth: Arc::new(auth),
        };
        (state, rx)
    }

    /// A consistent copy of the view (the lock is never held across an await).
    pub fn view(&self) -> ServiceView {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn progress(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let reads = Router::new()
        .route("/", get(page_handler))
        .route("/api/v1/status", get(status))
        .route("/api/v1/snapshots", get(snapshots).post(post_snapshot))
        .route("/api/v1/schedules", get(schedules))
        .route("/api/v1/bindings", get(bindings))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/progress", get(progress))
        .route("/api/v1/drills", get(drills).post(post_drill))
        .route("/api/v1/events", get(events))
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .merge(reads)
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

fn api_error(code: StatusCode, message: &str) -> Response {
    (code, Json(json!({"error": message}))).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Constant-time comparison that leaks neither the token nor its length: both sides are
/// hashed to fixed-size digests first (so the comparison's duration does not depend on
/// where, or whether in length, they differ), then the digests are compared in constant
/// time (`blake3::Hash`'s `PartialEq` is constant-time).
fn token_matches(given: &str, expected: &str) -> bool {
    blake3::hash(given.as_bytes()) == blake3::hash(expected.as_bytes())
}

/// Mutating requests always need the token; reads only when `protect_reads`.
async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mutating =
        req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD;
    if !mutating && !state.auth.protect_reads {
        return next.run(req).await;
    }
    let Some(expected) = state.auth.token.as_deref() else {
        return api_error(
            StatusCode::FORBIDDEN,
            "mutating endpoints are disabled: no api.token is configured",
        );
    };
    match bearer(req.headers()) {
        Some(given) if token_matches(given, expected) => next.run(req).await,
        _ => {
            let mut resp = api_error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"coldstart\""),
            );
            resp
        }
    }
}

async fn page_handler(State(state): State<AppState>) -> Response {
    let html = page::render(&state.view(), &state.progress(), Utc::now());
    let mut resp = Html(html).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The summary: what the top of the page shows.
#[derive(Debug, Serialize)]
struct Status {
    cluster: view::ClusterView,
    replica: view::ReplicaView,
    ready: view::Readiness,
    rpo: view::RpoStatus,
    last_snapshot: Option<view::SnapshotRow>,
    next_runs: Vec<view::ScheduleRow>,
    running: Option<view::RunningJob>,
    progress: Option<ProgressSummary>,
    bindings: BindingCounts,
    findings: std::collections::BTreeMap<&'static str, usize>,
    last_drill: Option<view::DrillRow>,
}

#[derive(Debug, Serialize)]
struct ProgressSummary {
    operation: String,
    phase: String,
    done: usize,
    total: usize,
    elapsed_ms: i64,
    finished: bool,
    succeeded: Option<bool>,
}

#[derive(Debug, Serialize)]
struct BindingCounts {
    total: usize,
    volumes: usize,
    addresses: usize,
    buckets: usize,
    unverified: usize,
    missing: usize,
}

fn summarize_progress(p: &Progress, now: chrono::DateTime<Utc>) -> Option<ProgressSummary> {
    let started = p.started_at?;
    Some(ProgressSummary {
        operation: p.operation.clone(),
        phase: p.phase.clone(),
        done: p.done(),
        total: p.total(),
        elapsed_ms: (now - started).num_milliseconds().max(0),
        finished: p.finished,
        succeeded: p.succeeded,
    })
}

async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let v = state.view();
    let now = Utc::now();
    let count = |k| v.bindings.iter().filter(|b| b.kind == k).count();
    let s = Status {
        cluster: v.cluster.clone(),
        replica: v.replica.clone(),
        ready: v.ready.clone(),
        rpo: v.rpo(now),
        last_snapshot: v.snapshots.first().cloned(),
        next_runs: v.schedules.clone(),
        running: v.running.clone(),
        progress: summarize_progress(&state.progress(), now),
        bindings: BindingCounts {
            total: v.bindings.len(),
            volumes: count(view::BindingKind::Volume),
            addresses: count(view::BindingKind::Address),
            buckets: count(view::BindingKind::Bucket),
            unverified: v
                .bindings
                .iter()
                .filter(|b| b.verification == view::BindingState::Unverified)
                .count(),
            missing: v
                .bindings
                .iter()
                .filter(|b| b.verification == view::BindingState::Missing)
                .count(),
        },
        findings: v
            .findings_by_severity()
            .into_iter()
            .map(|(s, n)| (s.as_str(), n))
            .collect(),
        last_drill: v.drills.iter().max_by_key(|d| d.at).cloned(),
    };
    Json(serde_json::to_value(s).unwrap_or_default())
}

async fn snapshots(State(state): State<AppState>) -> Json<serde_json::Value> {
    let v = state.view();
    Json(json!({"items": v.snapshots}))
}

async fn schedules(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"items": state.view().schedules}))
}

async fn bindings(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"items": state.view().bindings}))
}

async fn audit(State(state): State<AppState>) -> Json<serde_json::Value> {
    let v = state.view();
    Json(json!({"at": v.audit.at, "items": v.audit.findings}))
}

async fn progress(State(state): State<AppState>) -> Json<serde_json::Value> {
    let p = state.progress();
    let v = state.view();
    let last_rto_ms = v.drills.iter().max_by_key(|d| d.at).map(|d| d.rto_ms);
    let elapsed_ms = p
        .started_at
        .map(|s| (Utc::now() - s).num_milliseconds().max(0));
    Json(json!({
        "operation": p.operation,
        "phase": p.phase,
        "started_at": p.started_at,
        "elapsed_ms": elapsed_ms,
        "last_drill_rto_ms": last_rto_ms,
        "current_tier": p.current_tier.map(|t| t.name()),
        "tiers": p.tiers.iter().map(|(t, c)| json!({"tier": t.name(), "total": c.total, "done": c.done, "failed": c.failed})).collect::<Vec<_>>(),
        "done": p.done(),
        "total": p.total(),
        "finished": p.finished,
        "succeeded": p.succeeded,
    }))
}

async fn drills(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"items": state.view().drills}))
}

async fn events(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"items": state.view().events}))
}

async fn post_snapshot(State(state): State<AppState>) -> Response {
    enqueue(&state, Action::Snapshot, "snapshot")
}

async fn post_drill(State(state): State<AppState>) -> Response {
    enqueue(&state, Action::Drill, "drill")
}

fn enqueue(state: &AppState, action: Action, name: &str) -> Response {
    let replica = state.view().replica;
    if !replica.leading {
        let leader = replica.leader.unwrap_or_else(|| "unknown".to_owned());
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("this replica is not the leader (the leader is {leader}); retry"),
        );
    }
    match state.actions.try_send(action) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({"accepted": name, "status": "/api/v1/status"})),
        )
            .into_response(),
        Err(mpsc::error::TrySendError::Full(_)) => api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "a run is already queued; wait for it",
        ),
        Err(mpsc::error::TrySendError::Closed(_)) => api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service is shutting down",
        ),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let r = state.view().ready;
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({"ready": r.ready, "reason": r.reason}))).into_response()
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .render(&state.view(), &state.progress(), Utc::now());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
