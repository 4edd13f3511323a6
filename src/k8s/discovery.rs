//! Discovery, once per run: every served (group, version, kind) and whether it is
//! namespaced, turned into typed `Api` handles on demand. A run (restore, stop, start,
//! audit) discovers once and passes [`Resources`] down; only a run that creates CRDs
//! refreshes it, because custom resources become servable only then.

use std::collections::HashMap;

use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::discovery::{Discovery, Scope};

use super::K8sError;

/// What the cluster serves: (group, version, kind) → how to reach it.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    by_gvk: HashMap<(String, String, String), (ApiResource, bool)>,
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

impl Resources {
    /// Ask the cluster what it serves (one discovery run).
    pub async fn discover(client: &kube::Client) -> Result<Self, K8sError> {
        let d = Discovery::new(client.clone())
            .run()
            .await
            .map_err(K8sError::Discovery)?;
        let mut by_gvk = HashMap::new();
        for g in d.groups() {
            for v in g.versions() {
                for (ar, caps) in g.versioned_resources(v) {
                    by_gvk.insert(
                        (ar.group.clone(), ar.version.clone(), ar.kind.clone()),
                        (ar, caps.scope == Scope::Namespaced),
                    );
                }
            }
        }
        Ok(Resources { by_gvk })
    }

    /// Whether the cluster serves `api_version`/`kind`.
    pub fn serves(&self, api_version: &str, kind: &str) -> bool {
        self.resource(api_version, kind).is_some()
    }

    /// How to reach `api_version`/`kind`, and whether it is namespaced.
    pub fn resource(&self, api_version: &str, kind: &str) -> Option<&(ApiResource, bool)> {
        let (g, v) = split_api_version(api_version);
        self.by_gvk
            .get(&(g.to_owned(), v.to_owned(), kind.to_owned()))
    }

    /// The API for objects of `api_version`/`kind` (in `namespace` when namespaced, across
    /// all namespaces when `namespace` is None), if the cluster serves the type.
    pub fn api(
        &self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Option<Api<DynamicObject>> {
        let (ar, namespaced) = self.resource(api_version, kind)?;
        Some(match (namespace, namespaced) {
            (Some(ns), true) => Api::namespaced_with(client.clone(), ns, ar),
            _ => Api::all_with(client.clone(), ar),
        })
    }

    /// Like [`Resources::api`], but a type the cluster does not serve is an error naming it.
    pub fn require(
        &self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, K8sError> {
        self.api(client, api_version, kind, namespace)
            .ok_or_else(|| K8sError::NotServed {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            })
    }

    /// A map built from explicit entries (tests; no cluster needed).
    pub fn from_resources(entries: impl IntoIterator<Item = (ApiResource, bool)>) -> Self {
        Resources {
            by_gvk: entries
                .into_iter()
                .map(|(ar, ns)| {
                    (
                        (ar.group.clone(), ar.version.clone(), ar.kind.clone()),
                        (ar, ns),
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::GroupVersionKind;

    #[test]
    fn api_versions_split_into_group_and_version_with_core_as_the_empty_group() {
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(
            split_api_version("s3.aws.upbound.io/v1beta1"),
            ("s3.aws.upbound.io", "v1beta1")
        );
    }

    #[test]
    fn only_the_types_discovery_found_are_served_with_their_scope() {
        let deploy = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        );
        let r = Resources::from_resources([(deploy, true)]);
        assert!(r.serves("apps/v1", "Deployment"));
        assert!(!r.serves("s3.aws.upbound.io/v1beta1", "Bucket"));
        assert_eq!(r.resource("apps/v1", "Deployment").map(|x| x.1), Some(true));
    }
}
