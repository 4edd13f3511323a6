//! Reading the cluster: discovery of every served resource (preferred version per group,
//! CRDs and aggregated APIs included) and paged LISTs that survive a throttling or failing
//! API server. An aggregated API that does not answer discovery is reported, not fatal.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::format::{ResourceRef, Unavailable};
use crate::k8s::RetryPolicy;
use crate::k8s::retry::{RetryCount, is_retryable};

/// Objects per LIST page. A page in flight is held as its body and its objects' compact
/// JSON (its objects are parsed one at a time, [`for_each_item`]), ~1 MiB each at 250
/// objects of a few KB; the page size times the listing concurrency is most of what a
/// snapshot holds beyond its packs.
pub const PAGE_SIZE: u32 = 250;

/// Why reading the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "failed to {what}: the API server kept answering {last} for {elapsed:?} ({attempts} attempts); it is overloaded or down: retry later or raise --api-retry-budget"
    )]
    RetriesExhausted {
        what: String,
        last: String,
        attempts: u32,
        elapsed: Duration,
    },
    #[error("failed to {what}: the API server answered {status}: {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
    #[error("failed to {what}: {source}")]
    Decode {
        what: String,
        source: serde_json::Error,
    },
    #[error("failed to {what}: {detail}")]
    Request { what: String, detail: String },
}

/// A GET; returns the body of the first 2xx answer. Throttling, server errors and
/// transport failures are retried by the client's retry layer within `policy`'s budget
/// (carried on the request), so what arrives here is final.
pub async fn get(
    client: &kube::Client,
    path: &str,
    what: &str,
    policy: &RetryPolicy,
) -> Result<Bytes, CaptureError> {
    let started = Instant::now();
    let tally = RetryCount::default();
    let mut req = http::Request::get(path)
        .body(kube::client::Body::empty())
        .map_err(|e| CaptureError::Request {
            what: what.to_owned(),
            detail: e.to_string(),
        })?;
    req.extensions_mut().insert(*policy);
    req.extensions_mut().insert(tally.clone());
    let exhausted = |last: String| CaptureError::RetriesExhausted {
        what: what.to_owned(),
        last,
        attempts: tally.attempts(),
        elapsed: started.elapsed(),
    };
    let resp = client
        .send(req)
        .await
        .map_err(|e| exhausted(format!("a transport error ({e})")))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| CaptureError::Request {
            what: what.to_owned(),
            detail: format!("the answer broke off: {e}"),
        })?;
    match status {
        200..300 => Ok(body),
        s if is_retryable(s) => Err(exhausted(format!("HTTP {status}"))),
        _ => Err(CaptureError::Refused {
            what: what.to_owned(),
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        }),
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &kube::Client,
    path: &str,
    what: &str,
    policy: &RetryPolicy,
) -> Result<T, CaptureError> {
    let body = get(client, path, what, policy).await?;
    serde_json::from_slice(&body).map_err(|source| CaptureError::Decode {
        what: what.to_owned(),
        source,
    })
}

#[derive(Debug, Deserialize)]
struct ResourceList {
    #[serde(default)]
    resources: Vec<ApiResource>,
}

#[derive(Debug, Deserialize)]
struct ApiResource {
    name: String,
    kind: String,
    namespaced: bool,
    #[serde(default)]
    verbs: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct GroupList {
    #[serde(default)]
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    name: String,
    preferred_version: Option<GroupVersion>,
    #[serde(default)]
    versions: Vec<GroupVersion>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupVersion {
    group_version: String,
    version: String,
}

/// What discovery found.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    pub resources: Vec<ResourceRef>,
    pub unavailable: Vec<Unavailable>,
}

fn listable(group: &str, version: &str, list: ResourceList) -> impl Iterator<Item = ResourceRef> {
    list.resources
        .into_iter()
        .filter(|r| !r.name.contains('/') && r.verbs.iter().any(|v| v == "list"))
        .map(move |r| ResourceRef {
            group: group.to_owned(),
            version: version.to_owned(),
            resource: r.name,
            kind: r.kind,
            namespaced: r.namespaced,
        })
}

/// Every listable resource at its group's preferred version.
pub async fn discover(
    client: &kube::Client,
    policy: &RetryPolicy,
) -> Result<Discovered, CaptureError> {
    let mut out = Discovered::default();
    let core: ResourceList =
        get_json(client, "/api/v1", "discover the core API (/api/v1)", policy).await?;
    out.resources.extend(listable("", "v1", core));
    let groups: GroupList =
        get_json(client, "/apis", "discover API groups (/apis)", policy).await?;
    let lookups = groups.groups.into_iter().filter_map(|g| {
        let pv = g
            .preferred_version
            .or_else(|| g.versions.into_iter().next())?;
        Some((g.name, pv))
    });
    let found = futures::future::join_all(lookups.map(|(group, pv)| async move {
        let path = format!("/apis/{}", pv.group_version);
        let what = format!("discover {}", pv.group_version);
        // An aggregated API whose backend is down fails here: report it and go on, the
        // way `kubectl api-resources` does.
        let quick = RetryPolicy {
            budget: policy.budget.min(Duration::from_secs(10)),
            ..*policy
        };
        (
            group,
            pv,
            get_json::<ResourceList>(client, &path, &what, &quick).await,
        )
    }))
    .await;
    for (group, pv, result) in found {
        match result {
            Ok(list) => out.resources.extend(listable(&group, &pv.version, list)),
            Err(e) => out.unavailable.push(Unavailable {
                group_version: pv.group_version,
                error: e.to_string(),
            }),
        }
    }
    Ok(out)
}

/// A LIST page's metadata: where the next page starts.
#[derive(Debug, Default, Deserialize)]
pub struct PageMeta {
    #[serde(rename = "continue", default)]
    pub continue_token: Option<String>,
}

/// The URL of a page of `r` (all namespaces).
pub fn list_path(
    r: &ResourceRef,
    label_selector: Option<&str>,
    continue_token: Option<&str>,
) -> String {
    let base = if r.group.is_empty() {
        format!("/api/{}/{}", r.version, r.resource)
    } else {
        format!("/apis/{}/{}/{}", r.group, r.version, r.resource)
    };
    let mut q = format!("{base}?limit={PAGE_SIZE}");
    if let Some(sel) = label_selector.filter(|s| !s.is_empty()) {
        q.push_str("&labelSelector=");
        q.push_str(&urlencoding::encode(sel));
    }
    if let Some(c) = continue_token.filter(|s| !s.is_empty()) {
        q.push_str("&continue=");
        q.push_str(&urlencoding::encode(c));
    }
    q
}

/// Parse a page body, handing each item to `each` as soon as it is parsed, and return the
/// token of the next page (None on the last). One parsed object is held at a time: a whole
/// page parsed at once is several times its body (every string, map and index of every
/// object), and the pages in flight are most of what a snapshot holds. CPU work: call from
/// a blocking thread.
pub fn for_each_item(
    body: &[u8],
    what: &str,
    each: impl FnMut(Value),
) -> Result<Option<String>, CaptureError> {
    let decode = |source| CaptureError::Decode {
        what: what.to_owned(),
        source,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let token = PageSeed { each }.deserialize(&mut de).map_err(decode)?;
    de.end().map_err(decode)?;
    Ok(token.filter(|t| !t.is_empty()))
}

/// A LIST page (`{"items": [...], "metadata": {"continue": ...}, ...}`) read with its
/// items passed on one by one; yields the continue token.
struct PageSeed<F> {
    each: F,
}

impl<'de, F: FnMut(Value)> DeserializeSeed<'de> for PageSeed<F> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(Value)> Visitor<'de> for PageSeed<F> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a LIST page")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut token = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "items" => map.next_value_seed(Items {
                    each: &mut self.each,
                })?,
                "metadata" => token = map.next_value::<PageMeta>()?.continue_token,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(token)
    }
}

/// A page's `items`, each handed on as soon as it is parsed.
struct Items<'a, F> {
    each: &'a mut F,
}

impl<'de, F: FnMut(Value)> DeserializeSeed<'de> for Items<'_, F> {
    type Value = ();

    // `"items": null` is what some servers send for an empty list.
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, F: FnMut(Value)> Visitor<'de> for Items<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of objects")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<Value>()? {
            (self.each)(item);
        }
        Ok(())
    }
}

/// UID of `kube-system`: the cluster's identity.
pub async fn cluster_uid(
    client: &kube::Client,
    policy: &RetryPolicy,
) -> Result<String, CaptureError> {
    let ns: Value = get_json(
        client,
        "/api/v1/namespaces/kube-system",
        "read namespace kube-system (the cluster's identity)",
        policy,
    )
    .await?;
    Ok(ns
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_paths_page_and_select() {
        let r = ResourceRef {
            group: "apps".into(),
            version: "v1".into(),
            resource: "deployments".into(),
            kind: "Deployment".into(),
            namespaced: true,
        };
        assert_eq!(
            list_path(&r, None, None),
            "/apis/apps/v1/deployments?limit=250"
        );
        assert_eq!(
            list_path(&r, Some("app=a,tier in (x)"), Some("tok/1")),
            "/apis/apps/v1/deployments?limit=250&labelSelector=app%3Da%2Ctier%20in%20%28x%29&continue=tok%2F1"
        );
    }

    #[test]
    fn a_page_hands_on_its_items_in_order_and_yields_the_next_token() {
        let body = br#"{"kind":"ConfigMapList","apiVersion":"v1",
            "metadata":{"resourceVersion":"7","continue":"next"},
            "items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}"#;
        let mut names = Vec::new();
        let token = for_each_item(body, "list", |o| {
            names.push(
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .unwrap();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(token.as_deref(), Some("next"));
    }

    #[test]
    fn the_last_page_has_no_token_and_null_items_are_an_empty_page() {
        let mut n = 0;
        let last = br#"{"items":null,"metadata":{"continue":""}}"#;
        assert_eq!(for_each_item(last, "list", |_| n += 1).unwrap(), None);
        assert_eq!(
            for_each_item(br#"{"items":[]}"#, "list", |_| n += 1).unwrap(),
            None
        );
        assert_eq!(n, 0);
    }

    #[test]
    fn a_broken_page_is_a_decode_error_naming_what_was_read() {
        let err = for_each_item(br#"{"items":[{"a":1},"#, "list configmaps", |_| {}).unwrap_err();
        assert!(matches!(err, CaptureError::Decode { ref what, .. } if what == "list configmaps"));
    }
}
