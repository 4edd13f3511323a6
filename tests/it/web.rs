//! The router, called in-process with `oneshot`: page, JSON API, auth, probes, metrics,
//! and the Grafana dashboard's queries against what `/metrics` exports.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, header};
use chrono::{Duration as ChronoDuration, Utc};
use coldstart::progress::Progress;
use coldstart::restore::plan::Tier;
use coldstart::web::view::{
    AuditView, BindingKind, BindingRow, BindingState, ClusterView, DrillRow, Event, FindingLevel,
    FindingRow, Outcome, Readiness, ReplicaView, ScheduleRow, ServiceView, SnapshotRow,
};
use coldstart::web::{self, AppState, Auth};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::serve::app_state;

pub async fn call(state: &AppState, method: &str, uri: &str, token: Option<&str>) -> (u16, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = web::router(state.clone())
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("router answers");
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

pub async fn get(state: &AppState, uri: &str) -> (u16, serde_json::Value) {
    let (code, text) = call(state, "GET", uri, None).await;
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

pub async fn get_text(state: &AppState, uri: &str) -> (u16, String) {
    call(state, "GET", uri, None).await
}

pub async fn post(state: &AppState, uri: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let (code, text) = call(state, "POST", uri, token).await;
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// A cluster mid-way through a cold-start restore, with history: what an SRE would see.
pub fn realistic_view() -> (ServiceView, Progress) {
    let now = Utc::now();
    let snap = |i: i64, objects: u64, written: u64, trigger: &str| {
        let taken_at = now - ChronoDuration::minutes(6 + i * 15);
        let hash = ["7f3a9c", "e41b80", "2c9d17", "a05f3e"][i as usize % 4];
        SnapshotRow {
            id: format!("{}-{hash}", taken_at.format("%Y%m%dT%H%MZ")),
            taken_at,
            objects,
            bytes_total: 187_000_000 + objects * 1000,
            bytes_written: written,
            duration_ms: 4_200 + (i as u64) * 350,
            complete: true,
            verified: i != 1,
            trigger: trigger.to_owned(),
        }
    };
    let binding =
        |kind, object: &str, target: &str, verification, reason: Option<&str>| BindingRow {
            kind,
            object: object.to_owned(),
            target: target.to_owned(),
            verification,
            reason: reason.map(str::to_owned),
        };
    let view = ServiceView {
        cluster: ClusterView {
            name: "prod-eu1".to_owned(),
            uid: "6c1f0d4e-9a57-4b1e-8f2a-3d9e7c5b1a20".to_owned(),
        },
        replica: ReplicaView {
            identity: "coldstart-6d9f7c8b5-x2x7q".to_owned(),
            leading: true,
            leader: Some("coldstart-6d9f7c8b5-x2x7q".to_owned()),
        },
        ready: Readiness {
            ready: false,
            reason: "cold start: restore of 20250110T1000Z-7f3a9c in progress".to_owned(),
        },
        rpo_target_seconds: 900,
        snapshots: vec![
            snap(0, 48_213, 2_310_000, "schedule"),
            snap(1, 48_190, 1_870_000, "schedule"),
            snap(2, 48_187, 1_640_000, "manual"),
            snap(3, 48_102, 190_000_000, "schedule"),
        ],
        schedules: vec![
            ScheduleRow {
                job: "snapshot".to_owned(),
                cron: "*/15 * * * *".to_owned(),
                time_zone: "Europe/Berlin".to_owned(),
                last_run: Some(now - ChronoDuration::minutes(6)),
                next_run: Some(now + ChronoDuration::minutes(9)),
            },
            ScheduleRow {
                job: "audit".to_owned(),
                cron: "*/5 * * * *".to_owned(),
                time_zone: "UTC".to_owned(),
                last_run: Some(now - ChronoDuration::minutes(1)),
                next_run: Some(now + ChronoDuration::minutes(4)),
            },
            ScheduleRow {
                job: "drill".to_owned(),
                cron: "0 4 * * 0".to_owned(),
                time_zone: "Europe/Berlin".to_owned(),
                last_run: None,
                next_run: Some(now + ChronoDuration::hours(62)),
            },
        ],
        bindings: vec![
            binding(
                BindingKind::Volume,
                "PersistentVolume kafka/data-kafka-0",
                "vol-0a1b2c3d4e5f60718 (eu-west-1a)",
                BindingState::Ok,
                None,
            ),
            binding(
                BindingKind::Volume,
                "PersistentVolume kafka/data-kafka-1",
                "vol-0f9e8d7c6b5a40312 (eu-west-1b)",
                BindingState::Ok,
                None,
            ),
            binding(
                BindingKind::Volume,
                "PersistentVolume zookeeper/data-zk-0",
                "vol-04c2b1a0f9e8d7c61 (eu-west-1a)",
                BindingState::Unverified,
                Some("still attached to terminated node i-0d1e2f3a"),
            ),
            binding(
                BindingKind::Volume,
                "PersistentVolume pg/pgdata",
                "vol-09a8b7c6d5e4f3a21 (eu-west-1c)",
                BindingState::Missing,
                Some("DescribeVolumes: InvalidVolume.NotFound"),
            ),
            binding(
                BindingKind::Address,
                "Service ingress/public",
                "52.18.44.201 (shop.example.com, api.example.com)",
                BindingState::Ok,
                None,
            ),
            binding(
                BindingKind::Address,
                "Service iot/mqtt",
                "34.240.11.7 (mqtt.example.com)",
                BindingState::Unverified,
                Some("address allocated by the controller, not pinned"),
            ),
            binding(
                BindingKind::Bucket,
                "BucketClaim tenant-a/exports",
                "tenant-a-exports-7f3a",
                BindingState::Ok,
                None,
            ),
            binding(
                BindingKind::Bucket,
                "Bucket crossplane/analytics",
                "analytics-lake-eu1",
                BindingState::Ok,
                None,
            ),
        ],
        audit: AuditView {
            at: Some(now - ChronoDuration::minutes(1)),
            findings: vec![
                FindingRow {
                    severity: FindingLevel::Critical,
                    kind: "delete-reclaim-policy".to_owned(),
                    object: "PersistentVolume zookeeper/data-zk-0".to_owned(),
                    message: "reclaim policy Delete: the disk is deleted with the cluster"
                        .to_owned(),
                },
                FindingRow {
                    severity: FindingLevel::Warning,
                    kind: "unpinned-address".to_owned(),
                    object: "Service iot/mqtt".to_owned(),
                    message: "34.240.11.7 was allocated by the controller and would be released"
                        .to_owned(),
                },
                FindingRow {
                    severity: FindingLevel::Info,
                    kind: "bucket-orphan".to_owned(),
                    object: "BucketClaim tenant-b/scratch".to_owned(),
                    message: "bucket is deleted with its claim (class says Delete)".to_owned(),
                },
            ],
        },
        drills: vec![
            DrillRow {
                id: "drill-2025-01-05".to_owned(),
                at: now - ChronoDuration::days(5),
                snapshot_id: "20250105T0345Z-a41c".to_owned(),
                rto_ms: 312_000,
                rpo_s: 840,
                hydration_ms: 5_400_000,
                passed: true,
                failures: vec![],
            },
            DrillRow {
                id: "drill-2024-12-29".to_owned(),
                at: now - ChronoDuration::days(12),
                snapshot_id: "20241229T0350Z-19be".to_owned(),
                rto_ms: 655_000,
                rpo_s: 610,
                hydration_ms: 0,
                passed: false,
                failures: vec![
                    "Service iot/mqtt came back on a new address 34.240.99.1".to_owned(),
                ],
            },
        ],
        running: None,
        events: vec![
            Event {
                at: now - ChronoDuration::minutes(1),
                job: "audit".to_owned(),
                outcome: Outcome::Succeeded,
                message: "3 finding(s)".to_owned(),
            },
            Event {
                at: now - ChronoDuration::minutes(6),
                job: "snapshot".to_owned(),
                outcome: Outcome::Succeeded,
                message: "snapshot 20250110T1000Z-7f3a9c of 48213 objects in 4200 ms".to_owned(),
            },
            Event {
                at: now - ChronoDuration::minutes(30),
                job: "snapshot".to_owned(),
                outcome: Outcome::Failed,
                message: "failed to put chunk: store answered 503 Slow Down".to_owned(),
            },
        ],
    };
    let mut p = Progress::default();
    p.begin("restore");
    p.started_at = Some(now - ChronoDuration::seconds(134));
    for (tier, total, done, failed) in [
        (Tier::Crds, 42, 42, 0),
        (Tier::Namespaces, 31, 31, 0),
        (Tier::Classes, 6, 6, 0),
        (Tier::PersistentVolumes, 18, 18, 0),
        (Tier::PersistentVolumeClaims, 18, 18, 0),
        (Tier::Config, 21_804, 13_377, 2),
        (Tier::Services, 212, 0, 0),
    ] {
        p.start_tier(tier, total);
        for i in 0..done {
            p.object_done(tier, i < failed);
        }
    }
    p.current_tier = Some(Tier::Config);
    p.phase("restoring config");
    (view, p)
}

pub fn state_with(view: ServiceView, progress: Progress, auth: Auth) -> AppState {
    let (state, rx) = app_state(auth);
    // No service loop consumes actions here; the receiver must outlive the test for POSTs
    // to be accepted rather than answered "shutting down".
    let _ = Box::leak(Box::new(rx));
    *state.view.write().expect("view") = view;
    *state.progress.lock().expect("progress") = progress;
    state
}

fn token_auth() -> Auth {
    Auth {
        token: Some("s3cr3t-api-token-9b1f2c".to_owned()),
        protect_reads: false,
    }
}

#[tokio::test]
async fn mutating_endpoints_answer_401_without_the_bearer_token() {
    let (view, p) = realistic_view();
    let state = state_with(view, p, token_auth());
    for uri in ["/api/v1/snapshots", "/api/v1/drills"] {
        let (code, body) = post(&state, uri, None).await;
        assert_eq!(code, 401, "{uri}: {body}");
        let (code, _) = post(&state, uri, Some("wrong")).await;
        assert_eq!(code, 401, "{uri} with a wrong token");
    }
    let (code, body) = post(&state, "/api/v1/snapshots", Some("s3cr3t-api-token-9b1f2c")).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["accepted"], "snapshot");
}

#[tokio::test]
async fn mutating_endpoints_are_refused_when_no_token_is_configured() {
    let (view, p) = realistic_view();
    let state = state_with(view, p, Auth::default());
    let (code, body) = post(&state, "/api/v1/snapshots", Some("anything")).await;
    assert_eq!(code, 403, "{body}");
}

#[tokio::test]
async fn read_endpoints_are_open_unless_configured_otherwise() {
    let (view, p) = realistic_view();
    let open = state_with(view.clone(), p.clone(), token_auth());
    let closed = state_with(
        view,
        p,
        Auth {
            protect_reads: true,
            ..token_auth()
        },
    );
    for uri in [
        "/",
        "/api/v1/status",
        "/api/v1/snapshots",
        "/api/v1/schedules",
        "/api/v1/bindings",
        "/api/v1/audit",
        "/api/v1/progress",
        "/api/v1/drills",
        "/api/v1/events",
    ] {
        assert_eq!(call(&open, "GET", uri, None).await.0, 200, "{uri} open");
        assert_eq!(
            call(&closed, "GET", uri, None).await.0,
            401,
            "{uri} protected"
        );
        assert_eq!(
            call(&closed, "GET", uri, Some("s3cr3t-api-token-9b1f2c"))
                .await
                .0,
            200,
            "{uri} with the token"
        );
    }
    // Probes and metrics stay open: kubelet and Prometheus carry no token.
    for uri in ["/healthz", "/readyz", "/metrics"] {
        assert_ne!(call(&closed, "GET", uri, None).await.0, 401, "{uri}");
    }
}

#[tokio::test]
async fn a_secret_value_never_appears_on_the_page_the_api_or_the_metrics() {
    let (view, p) = realistic_view();
    let state = state_with(view, p, token_auth());
    let secret = "s3cr3t-api-token-9b1f2c";
    for uri in [
        "/",
        "/api/v1/status",
        "/api/v1/snapshots",
        "/api/v1/schedules",
        "/api/v1/bindings",
        "/api/v1/audit",
        "/api/v1/progress",
        "/api/v1/drills",
        "/api/v1/events",
        "/metrics",
        "/readyz",
    ] {
        let (_, body) = call(&state, "GET", uri, Some(secret)).await;
        assert!(!body.contains(secret), "{uri} leaks the token");
    }
    let (_, body) = call(&state, "POST", "/api/v1/snapshots", Some(secret)).await;
    assert!(!body.contains(secret));
}

#[tokio::test]
async fn the_status_summary_carries_rpo_next_runs_progress_and_counts() {
    let (view, p) = realistic_view();
    let state = state_with(view, p, token_auth());
    let (code, s) = get(&state, "/api/v1/status").await;
    assert_eq!(code, 200);
    assert_eq!(s["cluster"]["name"], "prod-eu1");
    assert_eq!(s["rpo"]["level"], "green");
    assert_eq!(s["rpo"]["target_seconds"], 900);
    assert_eq!(s["next_runs"][0]["job"], "snapshot");
    assert_eq!(s["progress"]["operation"], "restore");
    assert_eq!(s["progress"]["done"], 13_377 + 42 + 31 + 6 + 18 + 18);
    assert_eq!(s["bindings"]["volumes"], 4);
    assert_eq!(s["bindings"]["missing"], 1);
    assert_eq!(s["findings"]["critical"], 1);
    assert_eq!(s["last_drill"]["rto_ms"], 312_000);
    assert_eq!(s["ready"]["ready"], false);
    let (_, p) = get(&state, "/api/v1/progress").await;
    assert_eq!(p["current_tier"], "config");
    assert_eq!(p["last_drill_rto_ms"], 312_000);
    assert_eq!(p["tiers"].as_array().map(Vec::len), Some(7));
}

#[tokio::test]
async fn readyz_is_false_until_the_cold_start_restore_is_verified() {
    let (mut view, p) = realistic_view();
    let state = state_with(view.clone(), p.clone(), token_auth());
    assert_eq!(get(&state, "/readyz").await.0, 503);
    assert_eq!(get_text(&state, "/healthz").await.0, 200);
    view.ready = Readiness {
        ready: true,
        reason: "cold start: restore verified".to_owned(),
    };
    let state = state_with(view, p, token_auth());
    assert_eq!(get(&state, "/readyz").await.0, 200);
}

#[tokio::test]
async fn the_page_shows_every_section_and_refreshes_itself_without_javascript() {
    let (view, p) = realistic_view();
    let state = state_with(view, p, token_auth());
    let (code, html) = get_text(&state, "/").await;
    assert_eq!(code, 200);
    assert!(html.contains(r#"<meta http-equiv="refresh" content="5">"#));
    assert!(html.contains(r#"name="viewport""#));
    assert!(!html.contains("<script"), "readable without JavaScript");
    for needle in [
        "prod-eu1",
        "6c1f0d4e-9a57-4b1e-8f2a-3d9e7c5b1a20",
        "card rpo green",
        "Next runs",
        "restore progress",
        "persistent-volume-claims",
        "of the last drill",
        "vol-0a1b2c3d4e5f60718",
        "52.18.44.201 (shop.example.com, api.example.com)",
        "tenant-a-exports-7f3a",
        "DescribeVolumes: InvalidVolume.NotFound",
        "delete-reclaim-policy",
        "5 min 12 s",
        "5 min 12 s + 1 h 30 min hydrating",
        "came back on a new address",
        "not ready",
    ] {
        assert!(html.contains(needle), "page lacks {needle:?}");
    }
}

#[tokio::test]
async fn the_rpo_badge_turns_amber_then_red_as_the_last_snapshot_ages() {
    let (mut view, p) = realistic_view();
    let newest = view.snapshots[0].taken_at;
    for s in &mut view.snapshots {
        s.taken_at = s.taken_at - (newest - Utc::now()) - ChronoDuration::minutes(20);
    }
    let state = state_with(view.clone(), p.clone(), token_auth());
    assert!(get_text(&state, "/").await.1.contains("card rpo amber"));
    for s in &mut view.snapshots {
        s.taken_at -= ChronoDuration::hours(1);
    }
    let state = state_with(view, p, token_auth());
    assert!(get_text(&state, "/").await.1.contains("card rpo red"));
    assert_eq!(get(&state, "/api/v1/status").await.1["rpo"]["level"], "red");
}

#[tokio::test]
async fn page_text_from_the_cluster_is_escaped() {
    let (mut view, p) = realistic_view();
    view.cluster.name = "<script>alert(1)</script>".to_owned();
    view.bindings[0].object = "PersistentVolume \"><img src=x>".to_owned();
    let state = state_with(view, p, token_auth());
    let html = get_text(&state, "/").await.1;
    assert!(!html.contains("<script>alert"));
    assert!(!html.contains("<img src=x>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

/// Every metric family `/metrics` exports (`_bucket`/`_count`/`_sum`/`_total` included).
async fn exported_metric_names(state: &AppState) -> BTreeSet<String> {
    let (code, text) = get_text(state, "/metrics").await;
    assert_eq!(code, 200);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn metrics_export_rpo_snapshots_bindings_findings_restore_and_drills() {
    let (view, p) = realistic_view();
    let state = state_with(view, p, token_auth());
    state.metrics.observe_snapshot_duration(4.2);
    let (_, text) = get_text(&state, "/metrics").await;
    for needle in [
        "coldstart_snapshot_last_success_timestamp_seconds ",
        "coldstart_snapshot_duration_seconds_bucket{le=\"5.0\"} 1",
        "coldstart_snapshot_objects 48213",
        "coldstart_snapshot_bytes{kind=\"written\"} 2310000",
        "coldstart_bindings{kind=\"volume\",verification=\"missing\"} 1",
        "coldstart_audit_findings{severity=\"critical\"} 1",
        "coldstart_restore_objects_done 13492",
        "coldstart_restore_objects_total 22131",
        "coldstart_restore_in_progress{operation=\"restore\"} 1",
        "coldstart_drill_last_rto_seconds 312.0",
        "coldstart_drill_last_rpo_seconds 840.0",
        "coldstart_rpo_target_seconds 900.0",
        "coldstart_ready 0",
        "coldstart_leader 1",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle:?}:\n{text}");
    }
    assert!(
        text.contains("coldstart_rpo_seconds 3"),
        "age of a 6-minute-old snapshot"
    );
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_is_exported() {
    let (view, p) = realistic_view();
    let state = state_with(view, p, token_auth());
    state.metrics.observe_snapshot_duration(1.0);
    state
        .metrics
        .count_run("snapshot", coldstart::web::view::Outcome::Succeeded);
    let exported = exported_metric_names(&state).await;
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/dashboards/coldstart.json"
        ))
        .expect("dashboards/coldstart.json"),
    )
    .expect("dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "the dashboard has panels with queries");
    let mut used = BTreeSet::new();
    for e in &exprs {
        for name in metric_names_in(e) {
            used.insert(name);
        }
    }
    assert!(used.len() >= 10, "queries name metrics: {used:?}");
    let missing: Vec<_> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "dashboard queries metrics /metrics lacks: {missing:?}"
    );
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if k == "expr" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_owned());
                    }
                } else {
                    collect_exprs(v, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Identifiers starting with `coldstart_` in a PromQL expression.
fn metric_names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("coldstart_") {
        let start = i + pos;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
        {
            end += 1;
        }
        if !preceded {
            names.push(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[tokio::test]
async fn a_second_post_while_a_run_is_queued_answers_429_as_documented() {
    let (view, p) = realistic_view();
    let state = state_with(view, p, token_auth());
    let token = Some("s3cr3t-api-token-9b1f2c");
    let (code, body) = post(&state, "/api/v1/snapshots", token).await;
    assert_eq!(code, 202, "{body}");
    let (code, body) = post(&state, "/api/v1/snapshots", token).await;
    assert_eq!(code, 429, "the queue holds one run: {body}");
    let (code, _) = post(&state, "/api/v1/drills", token).await;
    assert_eq!(code, 429, "whatever the action");
}
