//! The verbs the controllers act through, so one implementation of each controller runs
//! against the embedded API server (this crate's [`Sim`]) and against a real kube-apiserver
//! ([`super::kube_api::KubeApi`]). The cloud outside the cluster is reached through the same
//! handle: it lives beside the API server either way (in the embedded server's process, or
//! in the launcher of the real control plane).
//!
//! The verbs are synchronous because the reconcile functions are: they run on the
//! controllers' own thread, never on an async runtime's worker, so a slow API call stalls
//! nothing else.

use serde_json::Value;

use crate::apiserver::WriteOpts;
use crate::cloud::Cloud;
use crate::patch::PatchKind;
use crate::semantics::UpdateScope;
use crate::status::ApiError;
use crate::{Actor, Sim};

/// Which controllers a cluster needs from the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The embedded API server runs no controller of its own: the simulator plays
    /// kube-controller-manager (PV binder, StatefulSet and Deployment pods and readiness,
    /// namespace defaults) as well as the cloud.
    Everything,
    /// kube-controller-manager, kube-scheduler and kwok run beside the API server: the
    /// simulator plays only what a cloud and its operators add (CSI provisioner and
    /// attacher, the Service load-balancer controller and external-dns, bucket operators,
    /// the operators that race a restore).
    CloudOnly,
}

/// A served resource: where its objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
}

/// The API verbs and the cloud, as the controllers use them. `ns` is ignored for
/// cluster-scoped resources. Every error is the API server's own (code and reason), so a
/// reconcile can tell a conflict from a refusal.
pub trait Api: Send + Sync {
    fn role(&self) -> Role;
    fn cloud(&self) -> &Cloud;
    /// The resource at its preferred version, if served.
    fn served(&self, group: &str, plural: &str) -> Result<Option<Served>, ApiError>;
    /// The resource serving `kind` at `api_version`, if served.
    fn served_kind(&self, api_version: &str, kind: &str) -> Result<Option<Served>, ApiError>;
    fn get(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError>;
    /// Every object of the resource, in all namespaces (empty when it is not served).
    fn list(&self, group: &str, plural: &str) -> Result<Vec<Value>, ApiError>;
    fn create(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        obj: Value,
        actor: &Actor,
    ) -> Result<Value, ApiError>;
    /// Replace the object (`scope` Main) or its status subresource (`scope` Status).
    fn update(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        obj: Value,
        scope: UpdateScope,
        actor: &Actor,
    ) -> Result<Value, ApiError>;
    /// JSON merge patch of the main resource.
    fn merge_patch(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
        patch: &Value,
        actor: &Actor,
    ) -> Result<(), ApiError>;
    fn delete(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<(), ApiError>;
}

fn not_served(group: &str, plural: &str) -> ApiError {
    ApiError::internal(format!("{plural}.{group} is not served"))
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Sim {
    fn served_def(
        &self,
        group: &str,
        plural: &str,
    ) -> Result<crate::registry::ResourceDef, ApiError> {
        self.def(group, plural)
            .ok_or_else(|| not_served(group, plural))
    }
}

fn served_of(d: &crate::registry::ResourceDef) -> Served {
    Served {
        group: d.group.clone(),
        version: d.version.clone(),
        plural: d.plural.clone(),
        kind: d.kind.clone(),
        namespaced: d.namespaced,
    }
}

impl Api for Sim {
    fn role(&self) -> Role {
        Role::Everything
    }

    fn cloud(&self) -> &Cloud {
        &self.cloud
    }

    fn served(&self, group: &str, plural: &str) -> Result<Option<Served>, ApiError> {
        Ok(self.def(group, plural).as_ref().map(served_of))
    }

    fn served_kind(&self, api_version: &str, kind: &str) -> Result<Option<Served>, ApiError> {
        Ok(self.registry().by_kind(api_version, kind).map(served_of))
    }

    fn get(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let Some(d) = self.def(group, plural) else {
            return Ok(None);
        };
        match Sim::get(self, &d, d.namespaced.then_some(ns), name) {
            Ok(s) => Ok(Some(s.value())),
            Err(e) if e.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self, group: &str, plural: &str) -> Result<Vec<Value>, ApiError> {
        let Some(d) = self.def(group, plural) else {
            return Ok(Vec::new());
        };
        Ok(self
            .store
            .all(&d.group_resource(), None)
            .into_iter()
            .map(|(_, s)| s.value())
            .collect())
    }

    fn create(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        obj: Value,
        actor: &Actor,
    ) -> Result<Value, ApiError> {
        let d = self.served_def(group, plural)?;
        Sim::create(
            self,
            &d,
            d.namespaced.then_some(ns),
            obj,
            actor,
            WriteOpts::default(),
        )
        .map(|s| s.value())
    }

    fn update(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        obj: Value,
        scope: UpdateScope,
        actor: &Actor,
    ) -> Result<Value, ApiError> {
        let d = self.served_def(group, plural)?;
        let name = name_of(&obj).to_owned();
        Sim::update(
            self,
            &d,
            d.namespaced.then_some(ns),
            &name,
            obj,
            scope,
            actor,
            WriteOpts::default(),
        )
        .map(|s| s.value())
    }

    fn merge_patch(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
        patch: &Value,
        actor: &Actor,
    ) -> Result<(), ApiError> {
        let d = self.served_def(group, plural)?;
        Sim::patch(
            self,
            &d,
            d.namespaced.then_some(ns),
            name,
            PatchKind::Merge,
            patch.to_string().as_bytes(),
            UpdateScope::Main,
            actor,
            WriteOpts::default(),
        )
        .map(|_| ())
    }

    fn delete(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<(), ApiError> {
        let d = self.served_def(group, plural)?;
        Sim::delete(
            self,
            &d,
            d.namespaced.then_some(ns),
            name,
            None,
            false,
            actor,
            WriteOpts::default(),
        )
        .map(|_| ())
    }
}

/// The embedded server seen as kube-apiserver with kube-controller-manager beside it: the
/// same store, the cloud-only role. For testing the real control plane's half of each
/// controller without starting one.
#[cfg(test)]
pub(crate) struct BesideKcm<'a>(pub &'a Sim);

#[cfg(test)]
impl Api for BesideKcm<'_> {
    fn role(&self) -> Role {
        Role::CloudOnly
    }
    fn cloud(&self) -> &Cloud {
        &self.0.cloud
    }
    fn served(&self, group: &str, plural: &str) -> Result<Option<Served>, ApiError> {
        Api::served(self.0, group, plural)
    }
    fn served_kind(&self, api_version: &str, kind: &str) -> Result<Option<Served>, ApiError> {
        self.0.served_kind(api_version, kind)
    }
    fn get(&self, g: &str, p: &str, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
        Api::get(self.0, g, p, ns, name)
    }
    fn list(&self, g: &str, p: &str) -> Result<Vec<Value>, ApiError> {
        Api::list(self.0, g, p)
    }
    fn create(&self, g: &str, p: &str, ns: &str, o: Value, a: &Actor) -> Result<Value, ApiError> {
        Api::create(self.0, g, p, ns, o, a)
    }
    fn update(
        &self,
        g: &str,
        p: &str,
        ns: &str,
        o: Value,
        s: UpdateScope,
        a: &Actor,
    ) -> Result<Value, ApiError> {
        Api::update(self.0, g, p, ns, o, s, a)
    }
    fn merge_patch(
        &self,
        g: &str,
        p: &str,
        ns: &str,
        name: &str,
        patch: &Value,
        a: &Actor,
    ) -> Result<(), ApiError> {
        self.0.merge_patch(g, p, ns, name, patch, a)
    }
    fn delete(&self, g: &str, p: &str, ns: &str, name: &str, a: &Actor) -> Result<(), ApiError> {
        Api::delete(self.0, g, p, ns, name, a)
    }
}
