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

/// One write to the API server; which object it touches is the verb's `group`, `plural`
/// and `ns`, and the name given here (or the object's own).
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    Create(&'a Value),
    /// Replace the object (`Main`) or its status subresource (`Status`).
    Update(&'a Value, UpdateScope),
    /// JSON merge patch of the main resource.
    MergePatch {
        name: &'a str,
        patch: &'a Value,
    },
    Delete {
        name: &'a str,
    },
}

/// The API verbs and the cloud, as the controllers use them. `ns` is ignored for
/// cluster-scoped resources. Every error is the API server's own (code and reason), so a
/// reconcile can tell a conflict from a refusal.
///
/// An implementation answers reads and carries out [`Write`]s; the write verbs the
/// controllers call are built on `write` once, here.
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
    /// Carry out one write as `actor`: the object as stored after a create or an update,
    /// `None` after a patch or a delete.
    fn write(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        write: Write<'_>,
        actor: &Actor,
    ) -> Result<Option<Value>, ApiError>;

    fn create(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        obj: Value,
        actor: &Actor,
    ) -> Result<Value, ApiError> {
        stored(self.write(group, plural, ns, Write::Create(&obj), actor)?)
    }
    /// Replace the object (`scope` Main) or its status subresource (`scope` Status).
    fn update(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        obj: Value,
        scope: UpdateScope,
        actor: &Actor,
    ) -> Result<Value, ApiError> {
        stored(self.write(group, plural, ns, Write::Update(&obj, scope), actor)?)
    }
    /// JSON merge patch of the main resource.
    fn merge_patch(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
        patch: &Value,
        actor: &Actor,
    ) -> Result<(), ApiError> {
        self.write(group, plural, ns, Write::MergePatch { name, patch }, actor)
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
        self.write(group, plural, ns, Write::Delete { name }, actor)
            .map(|_| ())
    }
}

/// The object a create or an update stored (every implementation returns it for those).
fn stored(v: Option<Value>) -> Result<Value, ApiError> {
    v.ok_or_else(|| ApiError::internal("the API server returned no object"))
}

fn not_served(group: &str, plural: &str) -> ApiError {
    ApiError::internal(format!("{plural}.{group} is not served"))
}

/// The name an object gives itself (an update names its target so).
pub(crate) fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Sim {
    /// Where a verb on `group`/`plural` in `ns` lands: the served resource, and the
    /// namespace when it is namespaced.
    fn target<'a>(
        &self,
        group: &str,
        plural: &str,
        ns: &'a str,
    ) -> Result<(crate::registry::ResourceDef, Option<&'a str>), ApiError> {
        let d = self
            .def(group, plural)
            .ok_or_else(|| not_served(group, plural))?;
        let ns = d.namespaced.then_some(ns);
        Ok((d, ns))
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
        self.role
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

    fn write(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        write: Write<'_>,
        actor: &Actor,
    ) -> Result<Option<Value>, ApiError> {
        let (d, ns) = self.target(group, plural, ns)?;
        let opts = WriteOpts::default();
        Ok(match write {
            Write::Create(obj) => {
                Some(Sim::create(self, &d, ns, obj.clone(), actor, opts)?.value())
            }
            Write::Update(obj, scope) => {
                let name = name_of(obj);
                Some(Sim::update(self, &d, ns, name, obj.clone(), scope, actor, opts)?.value())
            }
            Write::MergePatch { name, patch } => {
                let body = patch.to_string();
                let (kind, scope) = (PatchKind::Merge, UpdateScope::Main);
                Sim::patch(
                    self,
                    &d,
                    ns,
                    name,
                    kind,
                    body.as_bytes(),
                    scope,
                    actor,
                    opts,
                )?;
                None
            }
            Write::Delete { name } => {
                Sim::delete(self, &d, ns, name, None, false, actor, opts)?;
                None
            }
        })
    }
}
