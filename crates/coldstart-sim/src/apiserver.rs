//! The API server's verbs over the store: create, get, update, patch, delete (with
//! finalizers, namespace termination and owner-reference garbage collection), and the
//! `scale` subresource. HTTP handlers and the in-process controllers both go through these,
//! so a controller is subject to the same admission and concurrency rules as kubectl.

use std::sync::Arc;

use serde_json::{Value, json};

use super::admission::{self, Operation};
use super::patch::{self, PatchKind};
use super::quota::{self, Quota};
use super::registry::{GroupResource, ResourceDef, defs_from_crd};
use super::semantics::{
    self, Stamp, UpdateScope, has_finalizers, prepare_create, prepare_update, ready_to_remove,
    resource_name,
};
use super::status::ApiError;
use super::store::{Stored, Write};
use super::{Actor, Sim};

pub fn namespaces_gr() -> GroupResource {
    GroupResource {
        group: String::new(),
        plural: "namespaces".into(),
    }
}

fn crd_gr() -> GroupResource {
    GroupResource {
        group: "apiextensions.k8s.io".into(),
        plural: "customresourcedefinitions".into(),
    }
}

fn storageclasses_gr() -> GroupResource {
    GroupResource {
        group: "storage.k8s.io".into(),
        plural: "storageclasses".into(),
    }
}

fn resourcequotas_gr() -> GroupResource {
    GroupResource {
        group: String::new(),
        plural: "resourcequotas".into(),
    }
}

/// Options that change how a write is carried out.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOpts {
    pub dry_run: bool,
}

fn ns_key(def: &ResourceDef, namespace: Option<&str>) -> String {
    if def.namespaced {
        namespace.unwrap_or_default().to_owned()
    } else {
        String::new()
    }
}

impl Sim {
    fn stamp(&self) -> Stamp {
        let suffix: String = {
            use rand::Rng;
            const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
            let mut rng = rand::rng();
            (0..5)
                .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
                .collect()
        };
        Stamp {
            uid: uuid::Uuid::new_v4().to_string(),
            now: self.now_rfc3339(),
            suffix,
        }
    }

    pub fn now_rfc3339(&self) -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn require_namespace(&self, def: &ResourceDef, ns: Option<&str>) -> Result<(), ApiError> {
        if !def.namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or_default();
        let Some(found) = self.store.get(&namespaces_gr(), "", ns) else {
            return Err(ApiError::not_found("namespaces", ns));
        };
        if found
            .value()
            .pointer("/metadata/deletionTimestamp")
            .is_some()
        {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )));
        }
        Ok(())
    }

    pub fn get(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Arc<Stored>, ApiError> {
        self.store
            .get(&def.group_resource(), &ns_key(def, namespace), name)
            .ok_or_else(|| ApiError::not_found(&resource_name(def), name))
    }

    /// Create an object.
    pub fn create(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        obj: Value,
        actor: &Actor,
        opts: WriteOpts,
    ) -> Result<Arc<Stored>, ApiError> {
        let mut obj = prepare_create(def, namespace, obj, &self.stamp())?;
        self.require_namespace(def, namespace)?;
        self.defaults_needing_state(def, &mut obj);
        let name = semantics::meta_str(&obj, "name")
            .unwrap_or_default()
            .to_owned();
        let crd_defs = if def.group_resource() == crd_gr() {
            let defs = defs_from_crd(&obj)
                .map_err(|e| ApiError::invalid(&def.kind, &name, e.to_string()))?;
            Some(defs)
        } else {
            None
        };
        admission::check(self, Operation::Create, def, None, Some(&obj), None, actor)?;
        let ns = ns_key(def, namespace);
        // ResourceQuota admits last, after the policies, as kube-apiserver orders its plugins.
        let _quota_turn = self.admit_by_quota(def, &ns, &name, &obj)?;
        if opts.dry_run {
            return Ok(Arc::new(dry_stored(&obj)));
        }
        let stored = self
            .store
            .write(&def.group_resource(), &ns, &name, |cur, _| {
                if cur.is_some() {
                    return Err(ApiError::already_exists(&resource_name(def), &name));
                }
                Ok(Write::Put(obj))
            })?
            .ok_or_else(|| ApiError::internal("failed to store the object"))?;
        if let Some(defs) = crd_defs {
            self.serve_crd(&name, defs)?;
        }
        self.recount_quotas(&ns, &def.group_resource());
        // kube-controller-manager's garbage collector deletes an object whose every owner is
        // absent (no object has the uid its ownerReference names) as soon as it sees it.
        if !stored.owners.is_empty()
            && stored
                .owners
                .iter()
                .all(|o| self.store.locate_uid(o).is_none())
        {
            let _ = self.delete(
                def,
                Some(&ns),
                &name,
                None,
                false,
                &Actor::system("system:serviceaccount:kube-system:generic-garbage-collector"),
                WriteOpts::default(),
            );
        }
        Ok(stored)
    }

    /// Quota admission of a create in `ns`: refused as kube-apiserver words it, or admitted
    /// with the namespace's quota turn held until the caller has written and recounted.
    fn admit_by_quota(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        obj: &Value,
    ) -> Result<Option<std::sync::MutexGuard<'_, ()>>, ApiError> {
        if ns.is_empty() || self.store.count(&resourcequotas_gr()) == 0 {
            return Ok(None);
        }
        let turn = self
            .quota_admission
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let quotas: Vec<Quota> = self
            .store
            .all(&resourcequotas_gr(), Some(ns))
            .iter()
            .map(|(_, s)| Quota::from_object(&s.value()))
            .collect();
        quota::admit(&quotas, &def.group, &def.plural, obj).map_err(|quota::Refusal(why)| {
            ApiError::forbidden_object(&resource_name(def), name, &why)
        })?;
        Ok(Some(turn))
    }

    /// Play kube-controller-manager's resource-quota controller for `ns` after a write to
    /// `changed`: each quota counting that resource (or every quota, when a quota itself
    /// changed) gets `status.hard` from its spec and `status.used` recounted from the store.
    fn recount_quotas(&self, ns: &str, changed: &GroupResource) {
        if ns.is_empty() || self.store.count(&resourcequotas_gr()) == 0 {
            return;
        }
        let rq = resourcequotas_gr();
        for ((_, name), stored) in self.store.all(&rq, Some(ns)) {
            let obj = stored.value();
            let mut q = Quota::from_object(&obj);
            q.hard = quota::resource_list(obj.pointer("/spec/hard"));
            let counted = quota::counted_resources(q.hard.keys());
            if *changed != rq && !counted.contains(&(changed.group.clone(), changed.plural.clone()))
            {
                continue;
            }
            let mut objects = Vec::new();
            for (group, plural) in &counted {
                let gr = GroupResource {
                    group: group.clone(),
                    plural: plural.clone(),
                };
                for (_, s) in self.store.all(&gr, Some(ns)) {
                    objects.push((group.as_str(), plural.as_str(), s.value()));
                }
            }
            let used = quota::recount(&q, objects.iter().map(|(g, p, v)| (*g, *p, v)));
            let status = quota::status(&q, &used);
            if obj.get("status") == Some(&status) {
                continue;
            }
            let _ = self.store.write(&rq, ns, &name, |cur, _| {
                let Some(cur) = cur else {
                    return Ok(Write::Keep);
                };
                let mut v = cur.value();
                v["status"] = status.clone();
                Ok(Write::Put(v))
            });
        }
    }

    /// Register a CRD's resources and mark it Established, as the apiextensions server does.
    fn serve_crd(
        &self,
        name: &str,
        defs: Vec<super::registry::ResourceDef>,
    ) -> Result<(), ApiError> {
        self.registry_mut().apply_crd(name, defs);
        let now = self.now_rfc3339();
        self.store.write(&crd_gr(), "", name, |cur, _| {
            let Some(cur) = cur else { return Ok(Write::Keep) };
            let mut v = cur.value();
            let names = v.pointer("/spec/names").cloned().unwrap_or(json!({}));
            v["status"] = json!({
                "acceptedNames": names,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
                "storedVersions": v.pointer("/spec/versions").and_then(Value::as_array)
                    .map(|vs| vs.iter().filter(|x| x.get("storage").and_then(Value::as_bool) == Some(true))
                        .filter_map(|x| x.get("name").cloned()).collect::<Vec<_>>())
                    .unwrap_or_default(),
            });
            Ok(Write::Put(v))
        })?;
        Ok(())
    }

    /// Defaults that depend on cluster state: Service cluster IPs and node ports.
    fn defaults_needing_state(&self, def: &ResourceDef, obj: &mut Value) {
        // The DefaultStorageClass admission plugin: a claim naming no class (neither field
        // nor beta annotation) gets the default class's name, the newest if several.
        if def.group.is_empty()
            && def.plural == "persistentvolumeclaims"
            && crate::controllers::storage::claim_class(obj).is_none()
            && let Some(class) = self.default_storage_class()
            && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("storageClassName".into(), json!(class));
        }
        if def.group.is_empty() && def.plural == "services" {
            let ty = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_owned();
            let mut alloc = self.alloc();
            if ty != "ExternalName" {
                let cip = obj.pointer("/spec/clusterIP").and_then(Value::as_str);
                if cip.is_none() || cip == Some("") {
                    let ip = alloc.cluster_ip();
                    obj["spec"]["clusterIP"] = json!(ip);
                    obj["spec"]["clusterIPs"] = json!([ip]);
                } else if obj.pointer("/spec/clusterIPs").is_none() {
                    let ip = cip.map(str::to_owned);
                    obj["spec"]["clusterIPs"] = json!([ip]);
                }
            }
            if (ty == "NodePort" || ty == "LoadBalancer")
                && let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut)
            {
                for p in ports {
                    if p.get("nodePort").and_then(Value::as_u64).is_none() {
                        p["nodePort"] = json!(alloc.node_port());
                    }
                }
            }
        }
    }

    /// The class a claim naming none gets (`GetDefaultClass`): of the classes marked default
    /// (GA or beta annotation), the newest, then by name.
    fn default_storage_class(&self) -> Option<String> {
        const MARKS: [&str; 2] = [
            "storageclass.kubernetes.io/is-default-class",
            "storageclass.beta.kubernetes.io/is-default-class",
        ];
        self.store
            .all(&storageclasses_gr(), None)
            .iter()
            .map(|(_, s)| s.value())
            .filter(|sc| {
                MARKS.iter().any(|m| {
                    sc.pointer("/metadata/annotations")
                        .and_then(|a| a.get(*m))
                        .and_then(Value::as_str)
                        == Some("true")
                })
            })
            .filter_map(|sc| {
                let created = semantics::meta_str(&sc, "creationTimestamp")?.to_owned();
                let name = semantics::meta_str(&sc, "name")?.to_owned();
                Some((created, std::cmp::Reverse(name)))
            })
            .max()
            .map(|(_, std::cmp::Reverse(name))| name)
    }

    /// Replace an object (PUT), on the main resource or its status.
    pub fn update(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        new: Value,
        scope: UpdateScope,
        actor: &Actor,
        opts: WriteOpts,
    ) -> Result<Arc<Stored>, ApiError> {
        self.modify(
            def,
            namespace,
            name,
            actor,
            opts,
            |_| Ok(new.clone()),
            scope,
            false,
        )
    }

    /// PATCH an object; a server-side apply of an absent object creates it.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        scope: UpdateScope,
        actor: &Actor,
        opts: WriteOpts,
    ) -> Result<Arc<Stored>, ApiError> {
        let p = patch::decode(kind, body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if kind == PatchKind::Apply
            && self
                .store
                .get(&def.group_resource(), &ns_key(def, namespace), name)
                .is_none()
        {
            let mut obj = p;
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.entry("name").or_insert_with(|| json!(name));
            }
            return self.create(def, namespace, obj, actor, opts);
        }
        self.modify(
            def,
            namespace,
            name,
            actor,
            opts,
            |cur| {
                let mut next = patch::apply(kind, cur, &p)
                    .map_err(|e| ApiError::invalid(&def.kind, name, e.to_string()))?;
                // A patch only names a resourceVersion when the client wants a precondition.
                if p.pointer("/metadata/resourceVersion").is_none()
                    && let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    m.remove("resourceVersion");
                }
                Ok(next)
            },
            scope,
            kind == PatchKind::Apply,
        )
    }

    /// The shared read-modify-write of update and patch. Admission runs outside the store
    /// lock (it reads policies from the store), so the write re-checks that nothing changed
    /// in between and starts over if something did.
    #[allow(clippy::too_many_arguments)]
    fn modify(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        actor: &Actor,
        opts: WriteOpts,
        change: impl Fn(&Value) -> Result<Value, ApiError>,
        scope: UpdateScope,
        _apply: bool,
    ) -> Result<Arc<Stored>, ApiError> {
        let ns = ns_key(def, namespace);
        let gr = def.group_resource();
        for _ in 0..MAX_INTERNAL_RETRIES {
            let cur = self.get(def, namespace, name)?;
            let current = cur.value();
            let wanted = change(&current)?;
            let next = prepare_update(def, &current, wanted, scope)?;
            if next == current {
                return Ok(cur);
            }
            let sub = match scope {
                UpdateScope::Status => Some("status"),
                UpdateScope::Main => None,
            };
            admission::check(
                self,
                Operation::Update,
                def,
                sub,
                Some(&next),
                Some(&current),
                actor,
            )?;
            if opts.dry_run {
                return Ok(Arc::new(dry_stored(&next)));
            }
            let remove = ready_to_remove(&next);
            let is_crd = gr == crd_gr();
            let crd_value = is_crd.then(|| next.clone());
            let written = self.store.write(&gr, &ns, name, |now, _| match now {
                Some(now) if now.rv == cur.rv => Ok(if remove {
                    Write::Delete
                } else {
                    Write::Put(next)
                }),
                _ => Err(raced()),
            });
            let stored = match written {
                Err(e) if is_raced(&e) => continue,
                other => other?.ok_or_else(|| ApiError::not_found(&resource_name(def), name))?,
            };
            if remove {
                self.after_removal(def, &ns, name, &stored);
            } else if let Some(v) = crd_value
                && let Ok(defs) = defs_from_crd(&v)
            {
                self.registry_mut().apply_crd(name, defs);
            }
            // A pod that finishes, a Service that becomes a load balancer, a quota whose
            // limits change: the quotas of the namespace are recounted.
            self.recount_quotas(&ns, &gr);
            return Ok(stored);
        }
        Err(ApiError::conflict(&resource_name(def), name))
    }

    /// DELETE an object: objects with finalizers are marked, others removed; a namespace
    /// terminates its contents first; dependents are collected unless orphaned.
    #[allow(clippy::too_many_arguments)]
    pub fn delete(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        preconditions: Option<&Value>,
        orphan: bool,
        actor: &Actor,
        opts: WriteOpts,
    ) -> Result<Arc<Stored>, ApiError> {
        let ns = ns_key(def, namespace);
        let gr = def.group_resource();
        let is_namespace = gr == namespaces_gr();
        for _ in 0..MAX_INTERNAL_RETRIES {
            let cur = self.get(def, namespace, name)?;
            let mut v = cur.value();
            if let Some(pre) = preconditions {
                let want_uid = pre.get("uid").and_then(Value::as_str);
                let want_rv = pre.get("resourceVersion").and_then(Value::as_str);
                if want_uid.is_some_and(|u| Some(u) != semantics::meta_str(&v, "uid"))
                    || want_rv
                        .is_some_and(|r| Some(r) != semantics::meta_str(&v, "resourceVersion"))
                {
                    return Err(ApiError::conflict(&resource_name(def), name));
                }
            }
            admission::check(self, Operation::Delete, def, None, None, Some(&v), actor)?;
            if opts.dry_run {
                return Ok(Arc::new(dry_stored(&v)));
            }
            let marked = v.pointer("/metadata/deletionTimestamp").is_some();
            let decision = if is_namespace || has_finalizers(&v) {
                if marked {
                    Write::Keep
                } else {
                    v["metadata"]["deletionTimestamp"] = json!(self.now_rfc3339());
                    v["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    if is_namespace {
                        v["status"] = json!({"phase": "Terminating"});
                    }
                    Write::Put(v)
                }
            } else {
                Write::Delete
            };
            let removed = matches!(decision, Write::Delete);
            let written = self.store.write(&gr, &ns, name, |now, _| match now {
                Some(now) if now.rv == cur.rv => Ok(decision),
                _ => Err(raced()),
            });
            let stored = match written {
                Err(e) if is_raced(&e) => continue,
                other => other?.ok_or_else(|| ApiError::not_found(&resource_name(def), name))?,
            };
            if is_namespace {
                self.terminate_namespace(name);
            } else if removed {
                self.after_removal_opts(def, &ns, name, &stored, orphan);
            }
            return Ok(stored);
        }
        Err(ApiError::conflict(&resource_name(def), name))
    }

    fn after_removal(&self, def: &ResourceDef, ns: &str, name: &str, stored: &Stored) {
        self.after_removal_opts(def, ns, name, stored, false);
    }

    /// What follows an object's removal: a CRD unserves its resources and deletes its
    /// objects; owned objects are collected; a terminating namespace may now be empty.
    fn after_removal_opts(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        stored: &Stored,
        orphan: bool,
    ) {
        if def.group_resource() == crd_gr() {
            let gr = self.registry().all().find_map(|d| {
                (format!("{}.{}", d.plural, d.group) == name).then(|| d.group_resource())
            });
            self.registry_mut().remove_crd(name);
            if let Some(gr) = gr {
                for ((ons, oname), _) in self.store.all(&gr, None) {
                    let _ = self
                        .store
                        .write(&gr, &ons, &oname, |_, _| Ok(Write::Delete));
                }
            }
        }
        if !orphan && !stored.uid.is_empty() {
            self.collect_dependents(&stored.uid);
        }
        self.recount_quotas(ns, &def.group_resource());
        if !ns.is_empty() {
            self.finish_namespace_if_empty(ns);
        }
    }

    /// Garbage-collect objects whose every owner is gone.
    fn collect_dependents(&self, owner_uid: &str) {
        for (gr, (ns, name)) in self.store.dependents_of(owner_uid) {
            let Some(obj) = self.store.get(&gr, &ns, &name) else {
                continue;
            };
            let alive = obj
                .owners
                .iter()
                .any(|o| o != owner_uid && self.store.locate_uid(o).is_some());
            if alive {
                continue;
            }
            let Some(def) = self.registry().preferred(&gr).cloned() else {
                continue;
            };
            let _ = self.delete(
                &def,
                Some(&ns),
                &name,
                None,
                false,
                &Actor::system("system:serviceaccount:kube-system:generic-garbage-collector"),
                WriteOpts::default(),
            );
        }
    }

    /// Delete everything in a terminating namespace, then the namespace once it is empty.
    fn terminate_namespace(&self, ns: &str) {
        let gc = Actor::system("system:serviceaccount:kube-system:namespace-controller");
        for (gr, (ons, name)) in self.store.namespace_contents(ns) {
            let Some(def) = self.registry().preferred(&gr).cloned() else {
                continue;
            };
            let _ = self.delete(
                &def,
                Some(&ons),
                &name,
                None,
                false,
                &gc,
                WriteOpts::default(),
            );
        }
        self.finish_namespace_if_empty(ns);
    }

    fn finish_namespace_if_empty(&self, ns: &str) {
        let Some(obj) = self.store.get(&namespaces_gr(), "", ns) else {
            return;
        };
        if obj.value().pointer("/metadata/deletionTimestamp").is_none() {
            return;
        }
        if self.store.namespace_contents(ns).is_empty() {
            let _ = self
                .store
                .write(&namespaces_gr(), "", ns, |_, _| Ok(Write::Delete));
        }
    }

    /// GET of the `scale` subresource, as an `autoscaling/v1` Scale.
    pub fn get_scale(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let paths = def.scale.as_ref().ok_or_else(ApiError::path_not_found)?;
        let obj = self.get(def, namespace, name)?.value();
        Ok(scale_of(&obj, paths))
    }

    /// PUT/PATCH of the `scale` subresource: only the spec replicas of the object move.
    pub fn set_scale(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        name: &str,
        change: impl FnOnce(&Value) -> Result<Value, ApiError>,
        actor: &Actor,
        opts: WriteOpts,
    ) -> Result<Value, ApiError> {
        let paths = def.scale.clone().ok_or_else(ApiError::path_not_found)?;
        let cur = self.get(def, namespace, name)?.value();
        let scale = change(&scale_of(&cur, &paths))?;
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::invalid("Scale", name, "spec.replicas: Required value"))?;
        if replicas < 0 {
            return Err(ApiError::invalid(
                "Scale",
                name,
                "spec.replicas: Invalid value: must be greater than or equal to 0",
            ));
        }
        if let Some(rv) = scale
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && Some(rv) != semantics::meta_str(&cur, "resourceVersion")
        {
            return Err(ApiError::conflict(&resource_name(def), name));
        }
        let spec_path = paths.spec_replicas.clone();
        let stored = self.modify(
            def,
            namespace,
            name,
            actor,
            opts,
            |c| {
                let mut next = c.clone();
                semantics::set_json_path(&mut next, &spec_path, json!(replicas));
                Ok(next)
            },
            UpdateScope::Main,
            false,
        )?;
        Ok(scale_of(&stored.value(), &paths))
    }
}

fn scale_of(obj: &Value, paths: &super::registry::ScalePaths) -> Value {
    let replicas = semantics::json_path(obj, &paths.spec_replicas)
        .cloned()
        .unwrap_or(json!(0));
    let status_replicas = semantics::json_path(obj, &paths.status_replicas)
        .cloned()
        .unwrap_or(json!(0));
    let selector = paths
        .label_selector
        .as_deref()
        .and_then(|p| semantics::json_path(obj, p))
        .cloned()
        .or_else(|| {
            obj.pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| {
                    json!(
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                })
        })
        .unwrap_or(json!(""));
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": replicas},
        "status": {"replicas": status_replicas, "selector": selector},
    })
}

fn dry_stored(v: &Value) -> Stored {
    Stored {
        raw: bytes::Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        rv: 0,
        uid: String::new(),
        labels: Default::default(),
        owners: Vec::new(),
    }
}

/// How often a write that raced another one is retried before the caller sees a conflict.
const MAX_INTERNAL_RETRIES: usize = 16;

const RACED: &str = "coldstart-sim-raced";

/// Marks a write that found the object changed since it was read; never reaches a client.
fn raced() -> ApiError {
    ApiError::internal(RACED)
}

fn is_raced(e: &ApiError) -> bool {
    e.code == 500 && e.message == RACED
}
