//! The simulated API server through kube-rs and raw HTTP: discovery, every served resource
//! listable, and Kubernetes-shaped errors for bad requests.

use crate::helpers::{TestCluster, http};
use coldstart_sim::seed::Seed;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, Scope};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_discovery_finds_and_lists_every_served_resource() {
    let c = TestCluster::start_with(Seed::Scale(500)).await;
    let client = c.client().await;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let mut listed = 0;
    let mut objects = 0;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(kube::discovery::verbs::LIST) {
                continue;
            }
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Cluster => Api::all_with(client.clone(), &ar),
                Scope::Namespaced => Api::all_with(client.clone(), &ar),
            };
            let list = api
                .list(&ListParams::default().limit(100))
                .await
                .unwrap_or_else(|e| panic!("list {}: {e}", ar.plural));
            listed += 1;
            objects += list.items.len();
        }
    }
    assert!(listed >= 35, "only {listed} listable resources");
    assert!(objects > 0);
    assert!(
        discovery.groups().any(|g| g.name() == "example.com"),
        "the seed's CRD group is discovered"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_resource_version_is_a_409_conflict_status() {
    let c = TestCluster::start().await;
    let client = c.client().await;
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "default");
    let mut cm: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "x"}, "data": {"a": "1"}})).expect("cm");
    let created = api
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");
    cm.metadata.resource_version = created.metadata.resource_version.clone();
    cm.data = Some([("a".to_owned(), "2".to_owned())].into());
    api.replace("x", &PostParams::default(), &cm)
        .await
        .expect("first update");
    let err = api
        .replace("x", &PostParams::default(), &cm)
        .await
        .expect_err("stale");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
        }
        other => panic!("unexpected {other}"),
    }
    let dup = api
        .create(&PostParams::default(), &created)
        .await
        .expect_err("exists");
    assert!(matches!(dup, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_kubernetes_status_errors() {
    let c = TestCluster::start().await;
    let u = c.url();
    // (method, url, content type, body, expected code, expected reason)
    type Case<'a> = (
        &'a str,
        String,
        Option<&'a str>,
        Option<String>,
        u16,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "GET",
            format!("{u}/api/v1/namespaces/default/configmaps/nope"),
            None,
            None,
            404,
            "NotFound",
        ),
        (
            "GET",
            format!("{u}/apis/nope.example.com/v1/things"),
            None,
            None,
            404,
            "NotFound",
        ),
        (
            "GET",
            format!("{u}/api/v1/configmaps?continue=%21%21"),
            None,
            None,
            400,
            "BadRequest",
        ),
        (
            "GET",
            format!("{u}/api/v1/configmaps?labelSelector=a+in+b"),
            None,
            None,
            400,
            "BadRequest",
        ),
        (
            "GET",
            format!("{u}/api/v1/pods?fieldSelector=spec.bogus%3Dx"),
            None,
            None,
            400,
            "BadRequest",
        ),
        (
            "POST",
            format!("{u}/api/v1/namespaces/default/configmaps"),
            Some("application/json"),
            Some("{not json".into()),
            400,
            "BadRequest",
        ),
        (
            "POST",
            format!("{u}/api/v1/namespaces/default/configmaps"),
            Some("application/json"),
            Some(r#"{"metadata":{"name":"Bad_Name"}}"#.into()),
            422,
            "Invalid",
        ),
        (
            "POST",
            format!("{u}/api/v1/namespaces/ghost/configmaps"),
            Some("application/json"),
            Some(r#"{"metadata":{"name":"a"}}"#.into()),
            404,
            "NotFound",
        ),
        (
            "POST",
            format!("{u}/api/v1/namespaces/default/configmaps"),
            Some("text/plain"),
            Some("x".into()),
            415,
            "UnsupportedMediaType",
        ),
        (
            "PATCH",
            format!("{u}/api/v1/namespaces/default/configmaps/nope"),
            Some("application/merge-patch+json"),
            Some("{}".into()),
            404,
            "NotFound",
        ),
        (
            "PUT",
            format!("{u}/api/v1/namespaces/default/configmaps"),
            Some("application/json"),
            Some("{}".into()),
            405,
            "MethodNotAllowed",
        ),
    ];
    for (method, url, ct, body, code, reason) in cases {
        let (got, status) = http(method, &url, ct, body).await;
        assert_eq!(got, code, "{method} {url}: {status}");
        assert_eq!(status["kind"], "Status", "{method} {url}");
        assert_eq!(status["reason"], reason, "{method} {url}");
        assert_eq!(status["code"], code, "{method} {url}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_unauthorized() {
    let c = TestCluster::start().await;
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/namespaces", c.url()))
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_throttling_answers_429_with_retry_after() {
    let c = TestCluster::start().await;
    let (code, _) = http(
        "PUT",
        &format!("{}/sim/v1/faults", c.url()),
        Some("application/json"),
        Some(r#"{"throttleRate": 1.0}"#.into()),
    )
    .await;
    assert_eq!(code, 200);
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/namespaces", c.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn finalizers_hold_a_deleted_object_until_they_are_removed() {
    let c = TestCluster::start().await;
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(c.client().await, "default");
    let cm = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .expect("cm");
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    api.delete("held", &Default::default())
        .await
        .expect("delete accepted");
    let held = api.get("held").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizer");
    assert!(
        api.get_opt("held").await.expect("get").is_none(),
        "gone once finalizers are removed"
    );
    c.stop().await;
}
