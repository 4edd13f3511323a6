//! The HTTP face of the simulated cluster: authentication (bearer tokens, impersonation),
//! injected faults, URL routing onto the API server's verbs, discovery and OpenAPI
//! documents, server-side tables and watch streams. The routing is a pure function of the
//! path ([`parse_path`]) so it is tested without a socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};
use tokio_stream::wrappers::ReceiverStream;

use super::apiserver::WriteOpts;
use super::faults::{Faults, Verdict};
use super::patch::PatchKind;
use super::registry::ResourceDef;
use super::selector::{FieldSelector, LabelSelector};
use super::semantics::UpdateScope;
use super::status::{self, ApiError};
use super::store::{EventType, ObjKey, Stored};
use super::table;
use super::{Actor, Sim};

/// Where a request is going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    CoreVersions,
    Groups,
    Group(String),
    Resources { group: String, version: String },
    OpenApiRoot,
    OpenApiDoc { group: String, version: String },
    Object(Target),
    NotFound,
}

/// A resource URL, broken into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// Route a request path.
pub fn parse_path(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api"] => return Route::CoreVersions,
        ["apis"] => return Route::Groups,
        ["apis", g] => return Route::Group((*g).to_owned()),
        ["openapi", "v3"] => return Route::OpenApiRoot,
        ["openapi", "v3", "api", v] => {
            return Route::OpenApiDoc {
                group: String::new(),
                version: (*v).to_owned(),
            };
        }
        ["openapi", "v3", "apis", g, v] => {
            return Route::OpenApiDoc {
                group: (*g).to_owned(),
                version: (*v).to_owned(),
            };
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotFound,
    };
    let (namespace, rest) = match rest {
        [] => {
            return Route::Resources {
                group: group.to_owned(),
                version: version.to_owned(),
            };
        }
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => (
            Some((*ns).to_owned()),
            std::iter::once(*plural)
                .chain(tail.iter().copied())
                .collect::<Vec<_>>(),
        ),
        other => (None, other.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return Route::NotFound,
    };
    Route::Object(Target {
        group: group.to_owned(),
        version: version.to_owned(),
        namespace,
        plural: plural.to_owned(),
        name: name.map(str::to_owned),
        sub: sub.map(str::to_owned),
    })
}

/// The router for a simulated cluster: the Kubernetes API plus `/sim/v1` controls.
pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/version", get(version))
        .route("/sim/v1/cluster", get(sim_cluster))
        .route("/sim/v1/faults", get(get_faults).put(put_faults))
        .route("/sim/v1/cloud", get(sim_cloud).post(add_existing))
        .route("/sim/v1/teardown", axum::routing::post(sim_teardown))
        .merge(super::cloud_api::routes())
        .fallback(api)
        .with_state(sim)
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-coldstart-sim",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
            "platform": "linux/amd64",
        }),
    )
}

async fn sim_cluster(State(sim): State<Arc<Sim>>) -> Response {
    json_response(StatusCode::OK, sim.summary())
}

async fn sim_cloud(State(sim): State<Arc<Sim>>) -> Response {
    super::cloud_api::state(&sim.cloud)
}

/// Add what a cloud account already holds (disks, addresses, pools, buckets).
async fn add_existing(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let response = add_to_cloud(&sim.cloud, &body);
    let aks = serde_json::from_slice::<super::cloud::Existing>(&body)
        .is_ok_and(|e| e.node_resource_group.is_some());
    if response.status().is_success() && aks {
        // AKS labels its nodes with their node resource group.
        sim.label_nodes_for_aks();
    }
    response
}

/// `POST /sim/v1/cloud`, wherever the cloud lives (beside the embedded server or in a real
/// control plane's launcher).
pub(crate) fn add_to_cloud(cloud: &super::cloud::Cloud, body: &[u8]) -> Response {
    let existing: super::cloud::Existing = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => {
            return ApiError::bad_request(format!("failed to decode the resources: {e}"))
                .into_response();
        }
    };
    match cloud.lock().add_existing(&existing) {
        Ok(()) => json_response(StatusCode::CREATED, json!(existing)),
        Err(super::cloud::CloudError::Exists(what)) => {
            ApiError::already_exists("cloud resource", &what).into_response()
        }
        Err(e) => ApiError::bad_request(format!("failed to add to the cloud: {e}")).into_response(),
    }
}

async fn sim_teardown(State(sim): State<Arc<Sim>>) -> Response {
    let s = sim.clone();
    match tokio::task::spawn_blocking(move || s.teardown()).await {
        Ok(summary) => json_response(StatusCode::OK, summary),
        Err(e) => ApiError::internal(format!("failed to tear down: {e}")).into_response(),
    }
}

async fn get_faults(State(sim): State<Arc<Sim>>) -> Response {
    let f = sim.faults.read().unwrap_or_else(|e| e.into_inner()).clone();
    json_response(StatusCode::OK, json!(f))
}

async fn put_faults(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            *sim.faults.write().unwrap_or_else(|e| e.into_inner()) = f.clone();
            json_response(StatusCode::OK, json!(f))
        }
        Err(e) => ApiError::bad_request(format!("failed to decode faults: {e}")).into_response(),
    }
}

fn json_response(code: StatusCode, v: Value) -> Response {
    bytes_response(code, Bytes::from(v.to_string()))
}

fn bytes_response(code: StatusCode, b: Bytes) -> Response {
    let mut r = (code, b).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Bearer tokens identify callers; a request without credentials is the cluster admin,
/// because kubectl (client-go) never sends credentials over plain HTTP and the simulated
/// cluster only listens on loopback. A wrong token is still refused.
fn authenticate(sim: &Sim, headers: &HeaderMap) -> Result<Actor, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let actor = match token {
        None => Actor::admin(),
        Some(t) => sim
            .authenticate(t.trim())
            .ok_or_else(ApiError::unauthorized)?,
    };
    match headers
        .get("Impersonate-User")
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(actor),
        Some(_) if !actor.is_admin() => Err(ApiError::forbidden(format!(
            "users \"{}\" is forbidden: User cannot impersonate",
            actor.username
        ))),
        Some(user) => {
            let mut groups: Vec<String> = headers
                .get_all("Impersonate-Group")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect();
            groups.push("system:authenticated".to_owned());
            Ok(Actor {
                username: user.to_owned(),
                groups,
            })
        }
    }
}

async fn inject_faults(sim: &Sim, method: &Method) -> Result<(), ApiError> {
    let faults = sim.faults.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(d) = faults.latency() {
        tokio::time::sleep(d).await;
    }
    let is_write = !matches!(*method, Method::GET | Method::HEAD);
    let draw: f64 = rand::random();
    match faults.verdict(is_write, draw) {
        Verdict::Pass => Ok(()),
        Verdict::Throttle => Err(ApiError::too_many_requests()),
        Verdict::Fail => Err(if draw * 1000.0 % 2.0 < 1.0 {
            ApiError::internal("injected fault")
        } else {
            ApiError::unavailable()
        }),
    }
}

async fn api(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match api_inner(&sim, &method, &uri, &query, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %uri, code = e.code, reason = e.reason, "request failed");
            e.into_response()
        }
    }
}

async fn api_inner(
    sim: &Arc<Sim>,
    method: &Method,
    uri: &Uri,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = authenticate(sim, headers)?;
    inject_faults(sim, method).await?;
    let route = parse_path(uri.path());
    let get_only = |r: Result<Response, ApiError>| {
        if *method == Method::GET {
            r
        } else {
            Err(ApiError::method_not_allowed())
        }
    };
    match route {
        Route::CoreVersions => get_only(Ok(json_response(
            StatusCode::OK,
            json!({"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ))),
        Route::Groups => get_only(Ok(json_response(
            StatusCode::OK,
            sim.registry().group_list(),
        ))),
        Route::Group(g) => {
            let doc = sim
                .registry()
                .group(&g)
                .ok_or_else(ApiError::path_not_found)?;
            get_only(Ok(json_response(StatusCode::OK, doc)))
        }
        Route::Resources { group, version } => {
            let reg = sim.registry();
            if !reg.has_group_version(&group, &version) {
                return Err(ApiError::path_not_found());
            }
            get_only(Ok(json_response(
                StatusCode::OK,
                reg.resource_list(&group, &version),
            )))
        }
        Route::OpenApiRoot => get_only(Ok(json_response(
            StatusCode::OK,
            sim.registry().openapi_root(),
        ))),
        Route::OpenApiDoc { group, version } => {
            let doc = sim
                .registry()
                .openapi_doc(&group, &version)
                .ok_or_else(ApiError::path_not_found)?;
            get_only(Ok(json_response(StatusCode::OK, doc)))
        }
        Route::NotFound => Err(ApiError::path_not_found()),
        Route::Object(t) => object(sim, method, t, query, headers, body, &actor).await,
    }
}

fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let v: Result<Value, String> = if ct.contains("yaml") {
        serde_yaml::from_slice(body).map_err(|e| e.to_string())
    } else if ct.contains("json") || ct.is_empty() {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        return Err(ApiError::unsupported_media_type(ct));
    };
    v.map_err(|e| ApiError::bad_request(format!("failed to decode the request body: {e}")))
}

fn write_opts(query: &HashMap<String, String>) -> WriteOpts {
    WriteOpts {
        dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
    }
}

/// An object as served at the version the client asked for.
fn serve_object(def: &ResourceDef, stored: &Stored) -> Bytes {
    if needs_version_rewrite(def, stored) {
        let mut v = stored.value();
        v["apiVersion"] = json!(def.api_version());
        Bytes::from(v.to_string())
    } else {
        stored.raw.clone()
    }
}

fn needs_version_rewrite(def: &ResourceDef, stored: &Stored) -> bool {
    if def.group.is_empty() {
        return false;
    }
    let want = format!("\"apiVersion\":\"{}\"", def.api_version());
    !stored
        .raw
        .windows(want.len())
        .take(256)
        .any(|w| w == want.as_bytes())
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
}

#[allow(clippy::too_many_arguments)]
async fn object(
    sim: &Arc<Sim>,
    method: &Method,
    t: Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
    actor: &Actor,
) -> Result<Response, ApiError> {
    let def = sim
        .registry()
        .get(&t.group, &t.version, &t.plural)
        .cloned()
        .ok_or_else(ApiError::path_not_found)?;
    if t.namespace.is_some() && !def.namespaced {
        return Err(ApiError::path_not_found());
    }
    if def.create_only {
        if *method != Method::POST || t.name.is_some() {
            return Err(ApiError::method_not_allowed());
        }
        return Ok(json_response(
            StatusCode::CREATED,
            review(sim, &def, decode_body(headers, &body)?, actor),
        ));
    }
    let ns = t.namespace.as_deref();
    let opts = write_opts(query);
    let ok = |s: &Stored| bytes_response(StatusCode::OK, serve_object(&def, s));
    match (method.clone(), t.name.as_deref(), t.sub.as_deref()) {
        (Method::GET, None, None) => {
            if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                watch(sim, &def, ns, query, headers)
            } else {
                list(sim, &def, ns, query, headers)
            }
        }
        (Method::GET, Some(name), None | Some("status")) => {
            let s = sim.get(&def, ns, name)?;
            if table::wants_table(accept(headers)) {
                let v = s.value();
                return Ok(json_response(
                    StatusCode::OK,
                    table::table(
                        &def,
                        &[v],
                        json!({"resourceVersion": s.rv.to_string()}),
                        chrono::Utc::now(),
                        query.get("includeObject").is_some_and(|x| x == "Object"),
                    ),
                ));
            }
            Ok(ok(&s))
        }
        (Method::GET, Some(name), Some("scale")) => Ok(json_response(
            StatusCode::OK,
            sim.get_scale(&def, ns, name)?,
        )),
        (Method::POST, None, None) => {
            let obj = decode_body(headers, &body)?;
            let s = sim.create(&def, ns, obj, actor, opts)?;
            Ok(bytes_response(StatusCode::CREATED, serve_object(&def, &s)))
        }
        (Method::PUT, Some(name), sub @ (None | Some("status") | Some("finalize"))) => {
            let obj = decode_body(headers, &body)?;
            let scope = if sub == Some("status") {
                UpdateScope::Status
            } else {
                UpdateScope::Main
            };
            let s = sim.update(&def, ns, name, obj, scope, actor, opts)?;
            Ok(ok(&s))
        }
        (Method::PUT, Some(name), Some("scale")) => {
            let scale = decode_body(headers, &body)?;
            let out = sim.set_scale(&def, ns, name, |_| Ok(scale), actor, opts)?;
            Ok(json_response(StatusCode::OK, out))
        }
        (Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let kind = patch_kind(headers)?;
            let scope = if sub == Some("status") {
                UpdateScope::Status
            } else {
                UpdateScope::Main
            };
            let existed = sim.get(&def, ns, name).is_ok();
            let s = sim.patch(&def, ns, name, kind, &body, scope, actor, opts)?;
            let code = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(bytes_response(code, serve_object(&def, &s)))
        }
        (Method::PATCH, Some(name), Some("scale")) => {
            let kind = patch_kind(headers)?;
            let p = super::patch::decode(kind, &body)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let out = sim.set_scale(
                &def,
                ns,
                name,
                |cur| {
                    super::patch::apply(kind, cur, &p)
                        .map_err(|e| ApiError::invalid("Scale", name, e.to_string()))
                },
                actor,
                opts,
            )?;
            Ok(json_response(StatusCode::OK, out))
        }
        (Method::DELETE, Some(name), None) => {
            let options: Option<Value> = if body.is_empty() {
                None
            } else {
                Some(decode_body(headers, &body)?)
            };
            let pre = options.as_ref().and_then(|o| o.get("preconditions"));
            let orphan = options
                .as_ref()
                .and_then(|o| o.get("propagationPolicy"))
                .and_then(Value::as_str)
                .or(query.get("propagationPolicy").map(String::as_str))
                == Some("Orphan");
            let dry = opts.dry_run
                || options
                    .as_ref()
                    .and_then(|o| o.get("dryRun"))
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| x == "All"));
            let s = sim.delete(
                &def,
                ns,
                name,
                pre,
                orphan,
                actor,
                WriteOpts { dry_run: dry },
            )?;
            Ok(ok(&s))
        }
        (Method::DELETE, None, None) => {
            let (labels, fields) = selectors(query)?;
            let page = sim.store.list(&def.group_resource(), ns, None, 0, |k, s| {
                labels.matches(&s.labels) && fields.matches(&k.0, &k.1)
            });
            for s in page.items {
                let v = s.value();
                let (Some(n), o_ns) = (
                    v.pointer("/metadata/name").and_then(Value::as_str),
                    v.pointer("/metadata/namespace").and_then(Value::as_str),
                ) else {
                    continue;
                };
                match sim.delete(&def, o_ns, n, None, false, actor, opts) {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(StatusCode::OK, status::success()))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn patch_kind(headers: &HeaderMap) -> Result<PatchKind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    PatchKind::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))
}

fn review(sim: &Sim, def: &ResourceDef, body: Value, actor: &Actor) -> Value {
    let mut out = body;
    out["apiVersion"] = json!(def.api_version());
    out["kind"] = json!(def.kind);
    let user = json!({"username": actor.username, "groups": actor.groups});
    match def.plural.as_str() {
        "selfsubjectreviews" => out["status"] = json!({"userInfo": user}),
        "tokenreviews" => {
            let token = out
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or("");
            out["status"] = match sim.authenticate(token) {
                Some(a) => json!({"authenticated": true,
                                  "user": {"username": a.username, "groups": a.groups}}),
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
        }
        _ => {
            out["status"] = json!({"allowed": true, "reason": "the simulated cluster allows every authenticated request"})
        }
    }
    out
}

fn selectors(query: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((labels, fields))
}

/// A continue token: where the next page starts and the resourceVersion of the list's first
/// page. kube-apiserver serves every page of a list at its first page's revision, so a
/// watch from the list's resourceVersion misses nothing; this store keeps no old
/// revisions, so later pages hold live objects but still report the first page's version
/// (a watch from it replays what changed while the pages were read: at least once, never
/// lost). Reporting each page's own, later version lost changes to earlier pages' objects:
/// a paged watcher (kube's `watcher`) then waited forever on a change it never saw.
fn encode_continue(k: &ObjKey, rv: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([k.0, k.1, rv]).to_string())
}

fn decode_continue(s: &str) -> Result<(ObjKey, u64), ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {s:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let (ns, name, rv): (String, String, u64) = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok(((ns, name), rv))
}

fn list(
    sim: &Sim,
    def: &ResourceDef,
    ns: Option<&str>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(query)?;
    let limit: usize = query
        .get("limit")
        .map(|l| {
            l.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))
        })
        .transpose()?
        .unwrap_or(0);
    let after = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(|c| decode_continue(c))
        .transpose()?;
    let page = sim.store.list(
        &def.group_resource(),
        ns,
        after.as_ref().map(|(k, _)| k),
        limit,
        |k, s| labels.matches(&s.labels) && fields.matches(&k.0, &k.1),
    );
    let rv = after.as_ref().map_or(page.rv, |(_, first)| *first);
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(next) = &page.next {
        meta["continue"] = json!(encode_continue(next, rv));
    }
    if table::wants_table(accept(headers)) {
        let items: Vec<Value> = page.items.iter().map(|s| s.value()).collect();
        let include = query.get("includeObject").is_some_and(|x| x == "Object");
        return Ok(json_response(
            StatusCode::OK,
            table::table(def, &items, meta, chrono::Utc::now(), include),
        ));
    }
    // Concatenate the stored bytes: no parse, no re-encode, for lists of any size.
    let head = format!(
        "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        def.list_kind,
        def.api_version(),
        meta
    );
    let mut out = Vec::with_capacity(
        head.len() + page.items.iter().map(|s| s.raw.len() + 1).sum::<usize>() + 2,
    );
    out.extend_from_slice(head.as_bytes());
    for (i, s) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&serve_object(def, s));
    }
    out.extend_from_slice(b"]}");
    Ok(bytes_response(StatusCode::OK, Bytes::from(out)))
}

/// Longest a watch stays open without a client-chosen timeout (a real server picks
/// 30–60 minutes; clients re-watch either way).
const DEFAULT_WATCH_SECS: u64 = 1800;

fn watch(
    sim: &Arc<Sim>,
    def: &ResourceDef,
    ns: Option<&str>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(query)?;
    let gr = def.group_resource();
    let as_table = table::wants_table(accept(headers));
    // Subscribe before reading history or the current list, so nothing falls in between.
    let mut rx = sim.store.subscribe();
    let since: Option<u64> = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))
        })
        .transpose()?;
    let matches = {
        let labels = labels.clone();
        let fields = fields.clone();
        let ns = ns.map(str::to_owned);
        move |ev_ns: &str, name: &str, s: &Stored| {
            ns.as_deref().is_none_or(|n| n == ev_ns)
                && labels.matches(&s.labels)
                && fields.matches(ev_ns, name)
        }
    };
    let mut initial: Vec<(EventType, Arc<Stored>)> = Vec::new();
    let mut expired = false;
    match since {
        None => {
            let page = sim
                .store
                .list(&gr, ns, None, 0, |k, s| matches(&k.0, &k.1, s));
            initial.extend(page.items.into_iter().map(|s| (EventType::Added, s)));
        }
        Some(rv) => match sim.store.events_since(rv) {
            Some(evs) => initial.extend(
                evs.into_iter()
                    .filter(|e| e.gr == gr && matches(&e.namespace, &e.name, &e.object))
                    .map(|e| (e.kind, e.object.clone())),
            ),
            None => expired = true,
        },
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(DEFAULT_WATCH_SECS);
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let def = def.clone();
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let sim = sim.clone();
    tokio::spawn(async move {
        let line = |kind: &str, obj: &Stored| -> Bytes {
            let body = if as_table {
                let v = obj.value();
                table::table(
                    &def,
                    &[v],
                    json!({"resourceVersion": obj.rv.to_string()}),
                    chrono::Utc::now(),
                    false,
                )
                .to_string()
            } else {
                String::from_utf8_lossy(&serve_object(&def, obj)).into_owned()
            };
            Bytes::from(format!("{{\"type\":\"{kind}\",\"object\":{body}}}\n"))
        };
        if expired {
            let status = ApiError::gone("too old resource version").to_status();
            let _ = tx
                .send(Ok(Bytes::from(format!(
                    "{{\"type\":\"ERROR\",\"object\":{status}}}\n"
                ))))
                .await;
            return;
        }
        let mut last = since.unwrap_or(0);
        for (kind, obj) in initial {
            last = last.max(obj.rv);
            if tx.send(Ok(line(kind.as_str(), &obj))).await.is_err() {
                return;
            }
        }
        if since.is_none() {
            last = last.max(sim.store.resource_version());
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tick.tick(), if bookmarks => {
                    let b = format!("{{\"type\":\"BOOKMARK\",\"object\":{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{}\"}}}}}}\n", def.kind, def.api_version(), last);
                    if tx.send(Ok(Bytes::from(b))).await.is_err() { return; }
                }
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.object.rv <= last || ev.gr != gr || !matches(&ev.namespace, &ev.name, &ev.object) {
                            continue;
                        }
                        last = ev.object.rv;
                        if tx.send(Ok(line(ev.kind.as_str(), &ev.object))).await.is_err() {
                            return;
                        }
                    }
                    // Fell too far behind, or the cluster was wiped: end the watch; the
                    // client re-lists, as it would after a real server restart.
                    Err(_) => return,
                },
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(out)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(
        g: &str,
        v: &str,
        ns: Option<&str>,
        p: &str,
        n: Option<&str>,
        s: Option<&str>,
    ) -> Route {
        Route::Object(Target {
            group: g.into(),
            version: v.into(),
            namespace: ns.map(Into::into),
            plural: p.into(),
            name: n.map(Into::into),
            sub: s.map(Into::into),
        })
    }

    #[test]
    fn paths_route_to_discovery_collections_objects_and_subresources() {
        let cases = [
            ("/api", Route::CoreVersions),
            ("/apis", Route::Groups),
            ("/apis/apps", Route::Group("apps".into())),
            (
                "/api/v1",
                Route::Resources {
                    group: String::new(),
                    version: "v1".into(),
                },
            ),
            ("/openapi/v3", Route::OpenApiRoot),
            (
                "/openapi/v3/apis/apps/v1",
                Route::OpenApiDoc {
                    group: "apps".into(),
                    version: "v1".into(),
                },
            ),
            (
                "/api/v1/namespaces",
                target("", "v1", None, "namespaces", None, None),
            ),
            (
                "/api/v1/namespaces/a",
                target("", "v1", None, "namespaces", Some("a"), None),
            ),
            (
                "/api/v1/namespaces/a/status",
                target("", "v1", None, "namespaces", Some("a"), Some("status")),
            ),
            (
                "/api/v1/namespaces/a/pods",
                target("", "v1", Some("a"), "pods", None, None),
            ),
            ("/api/v1/pods", target("", "v1", None, "pods", None, None)),
            (
                "/apis/apps/v1/namespaces/x/deployments/d/scale",
                target(
                    "apps",
                    "v1",
                    Some("x"),
                    "deployments",
                    Some("d"),
                    Some("scale"),
                ),
            ),
            (
                "/apis/storage.k8s.io/v1/storageclasses/gp3",
                target(
                    "storage.k8s.io",
                    "v1",
                    None,
                    "storageclasses",
                    Some("gp3"),
                    None,
                ),
            ),
            ("/nonsense", Route::NotFound),
            ("/api/v1/namespaces/a/pods/p/status/extra", Route::NotFound),
        ];
        for (path, want) in cases {
            assert_eq!(parse_path(path), want, "{path}");
        }
    }

    #[test]
    fn continue_tokens_round_trip_and_garbage_is_a_bad_request() {
        let k = ("ns".to_owned(), "name".to_owned());
        assert_eq!(
            decode_continue(&encode_continue(&k, 42)).expect("valid"),
            (k, 42)
        );
        assert_eq!(decode_continue("!!!").expect_err("invalid").code, 400);
    }
}
