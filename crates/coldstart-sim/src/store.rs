//! The simulated cluster's etcd: every object as its serialized JSON, a cluster-wide
//! resourceVersion, an index of owner references for garbage collection, and a bounded
//! history of change events so a watch can resume from a resourceVersion.
//!
//! Objects are kept as bytes, not parsed trees: a LIST of 100k objects is then a
//! concatenation, and memory stays close to the size of the data itself.
//! Every write is a read-modify-write under one lock ([`Store::write`]), which is what makes
//! create-if-absent and optimistic concurrency exact.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::broadcast;

use super::registry::GroupResource;
use super::status::ApiError;

/// How many change events a watch can resume across; older resourceVersions get 410 Gone,
/// as from an API server whose watch cache has moved on.
const HISTORY: usize = 50_000;

/// Watchers that fall this far behind are dropped and must re-list, as with a real server.
const WATCH_BUFFER: usize = 100_000;

/// (namespace, name); namespace is empty for cluster-scoped objects.
pub type ObjKey = (String, String);

/// One stored object.
#[derive(Debug, Clone)]
pub struct Stored {
    pub raw: Bytes,
    pub rv: u64,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub owners: Vec<String>,
}

impl Stored {
    pub fn value(&self) -> Value {
        // The bytes were produced by serde_json from a Value, so they always parse back.
        serde_json::from_slice(&self.raw).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventType,
    pub gr: GroupResource,
    pub namespace: String,
    pub name: String,
    pub object: Arc<Stored>,
}

/// What a write closure decides.
#[derive(Debug)]
pub enum Write {
    /// Store this object (resourceVersion is set by the store).
    Put(Value),
    /// Remove the object.
    Delete,
    /// Leave it as it is and answer with the current object.
    Keep,
}

#[derive(Debug, Default)]
struct State {
    rv: u64,
    tables: HashMap<GroupResource, BTreeMap<ObjKey, Arc<Stored>>>,
    /// owner uid → dependents
    dependents: HashMap<String, HashSet<(GroupResource, ObjKey)>>,
    /// uid → where the object lives
    by_uid: HashMap<String, (GroupResource, ObjKey)>,
    history: VecDeque<Arc<Event>>,
}

/// The object store.
#[derive(Debug)]
pub struct Store {
    state: RwLock<State>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn owners_of(v: &Value) -> Vec<String> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A page of a LIST.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Arc<Stored>>,
    /// Key of the last item returned, when more remain.
    pub next: Option<ObjKey>,
    pub rv: u64,
}

impl Store {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(WATCH_BUFFER);
        Store {
            state: RwLock::new(State::default()),
            tx,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written map (writes are single
        // inserts/removes), so a poisoned lock is still consistent.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn resource_version(&self) -> u64 {
        self.read().rv
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    pub fn get(&self, gr: &GroupResource, namespace: &str, name: &str) -> Option<Arc<Stored>> {
        let st = self.read();
        st.tables
            .get(gr)?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn count(&self, gr: &GroupResource) -> usize {
        self.read().tables.get(gr).map_or(0, BTreeMap::len)
    }

    /// Where the object with this uid lives, if it exists.
    pub fn locate_uid(&self, uid: &str) -> Option<(GroupResource, ObjKey)> {
        self.read().by_uid.get(uid).cloned()
    }

    /// Dependents (by ownerReference) of the object with this uid.
    pub fn dependents_of(&self, uid: &str) -> Vec<(GroupResource, ObjKey)> {
        self.read()
            .dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A page of objects, in (namespace, name) order, after `after`, keeping those for which
    /// `keep` is true, at most `limit` of them (0 = all).
    pub fn list(
        &self,
        gr: &GroupResource,
        namespace: Option<&str>,
        after: Option<&ObjKey>,
        limit: usize,
        mut keep: impl FnMut(&ObjKey, &Stored) -> bool,
    ) -> Page {
        let st = self.read();
        let mut items = Vec::new();
        let mut next = None;
        let mut last_key: Option<&ObjKey> = None;
        if let Some(table) = st.tables.get(gr) {
            let lower = match (after, namespace) {
                (Some(k), _) => Bound::Excluded(k.clone()),
                (None, Some(ns)) => Bound::Included((ns.to_owned(), String::new())),
                (None, None) => Bound::Unbounded,
            };
            for (k, v) in table.range((lower, Bound::Unbounded)) {
                if let Some(ns) = namespace
                    && k.0 != ns
                {
                    break;
                }
                if !keep(k, v) {
                    continue;
                }
                if limit > 0 && items.len() == limit {
                    next = last_key.cloned();
                    break;
                }
                last_key = Some(k);
                items.push(v.clone());
            }
        }
        Page {
            items,
            next,
            rv: st.rv,
        }
    }

    /// Every object of a resource, in one namespace or all.
    pub fn all(&self, gr: &GroupResource, namespace: Option<&str>) -> Vec<(ObjKey, Arc<Stored>)> {
        let st = self.read();
        let Some(table) = st.tables.get(gr) else {
            return Vec::new();
        };
        match namespace {
            Some(ns) => table
                .range((ns.to_owned(), String::new())..)
                .take_while(|(k, _)| k.0 == ns)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => table.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// The resources that have at least one object in this namespace.
    pub fn namespace_contents(&self, namespace: &str) -> Vec<(GroupResource, ObjKey)> {
        let st = self.read();
        let mut out = Vec::new();
        for (gr, table) in &st.tables {
            for (k, _) in table
                .range((namespace.to_owned(), String::new())..)
                .take_while(|(k, _)| k.0 == namespace)
            {
                out.push((gr.clone(), k.clone()));
            }
        }
        out
    }

    /// Atomically read, decide, and write one object. `decide` sees the current object (if
    /// any) and the resourceVersion a write would get. Returns the object as stored (or as
    /// deleted), or `None` when a Keep found nothing.
    pub fn write<F>(
        &self,
        gr: &GroupResource,
        namespace: &str,
        name: &str,
        decide: F,
    ) -> Result<Option<Arc<Stored>>, ApiError>
    where
        F: FnOnce(Option<&Arc<Stored>>, u64) -> Result<Write, ApiError>,
    {
        let key: ObjKey = (namespace.to_owned(), name.to_owned());
        let mut st = self.write_lock();
        let current = st.tables.get(gr).and_then(|t| t.get(&key)).cloned();
        let next_rv = st.rv + 1;
        match decide(current.as_ref(), next_rv)? {
            Write::Keep => Ok(current),
            Write::Put(mut value) => {
                if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert(
                        "resourceVersion".to_owned(),
                        Value::String(next_rv.to_string()),
                    );
                }
                let raw = serde_json::to_vec(&value)
                    .map_err(|e| ApiError::internal(format!("failed to encode object: {e}")))?;
                let uid = value
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let stored = Arc::new(Stored {
                    raw: Bytes::from(raw),
                    rv: next_rv,
                    uid,
                    labels: labels_of(&value),
                    owners: owners_of(&value),
                });
                st.rv = next_rv;
                if let Some(old) = &current {
                    unindex(&mut st, gr, &key, old);
                }
                index(&mut st, gr, &key, &stored);
                st.tables
                    .entry(gr.clone())
                    .or_default()
                    .insert(key.clone(), stored.clone());
                let kind = if current.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                emit(&mut st, &self.tx, kind, gr, key, stored.clone());
                Ok(Some(stored))
            }
            Write::Delete => {
                let Some(old) = current else {
                    return Ok(None);
                };
                st.rv = next_rv;
                if let Some(t) = st.tables.get_mut(gr) {
                    t.remove(&key);
                }
                unindex(&mut st, gr, &key, &old);
                // The DELETED event carries the last state with the deletion's resourceVersion.
                let mut last = (*old).clone();
                last.rv = next_rv;
                let last = Arc::new(last);
                emit(&mut st, &self.tx, EventType::Deleted, gr, key, last.clone());
                Ok(Some(last))
            }
        }
    }

    /// Events after `rv`, if the history still reaches back that far.
    pub fn events_since(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        let st = self.read();
        let oldest = st.history.front().map_or(st.rv + 1, |e| e.object.rv);
        if rv + 1 < oldest && rv < st.rv {
            return None;
        }
        Some(
            st.history
                .iter()
                .filter(|e| e.object.rv > rv)
                .cloned()
                .collect(),
        )
    }

    /// Drop every object (a cluster deleted): nothing is emitted, watchers are cut off, and
    /// resourceVersions keep increasing so no client mistakes the new cluster for the old.
    pub fn wipe(&self) {
        let mut st = self.write_lock();
        let rv = st.rv + 1;
        *st = State {
            rv,
            ..State::default()
        };
    }

    /// Insert objects without events or checks: seeding a cluster before anyone watches.
    /// Each value must already carry its metadata.
    pub fn bulk_insert(&self, gr: &GroupResource, objects: Vec<(ObjKey, Value)>) {
        let mut st = self.write_lock();
        for (key, mut value) in objects {
            st.rv += 1;
            let rv = st.rv;
            if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("resourceVersion".to_owned(), Value::String(rv.to_string()));
            }
            let Ok(raw) = serde_json::to_vec(&value) else {
                continue;
            };
            let stored = Arc::new(Stored {
                raw: Bytes::from(raw),
                rv,
                uid: value
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                labels: labels_of(&value),
                owners: owners_of(&value),
            });
            index(&mut st, gr, &key, &stored);
            st.tables.entry(gr.clone()).or_default().insert(key, stored);
        }
    }
}

fn index(st: &mut State, gr: &GroupResource, key: &ObjKey, s: &Stored) {
    if !s.uid.is_empty() {
        st.by_uid.insert(s.uid.clone(), (gr.clone(), key.clone()));
    }
    for o in &s.owners {
        st.dependents
            .entry(o.clone())
            .or_default()
            .insert((gr.clone(), key.clone()));
    }
}

fn unindex(st: &mut State, gr: &GroupResource, key: &ObjKey, s: &Stored) {
    if !s.uid.is_empty() {
        st.by_uid.remove(&s.uid);
    }
    for o in &s.owners {
        if let Some(set) = st.dependents.get_mut(o) {
            set.remove(&(gr.clone(), key.clone()));
            if set.is_empty() {
                st.dependents.remove(o);
            }
        }
    }
}

fn emit(
    st: &mut State,
    tx: &broadcast::Sender<Arc<Event>>,
    kind: EventType,
    gr: &GroupResource,
    key: ObjKey,
    object: Arc<Stored>,
) {
    let ev = Arc::new(Event {
        kind,
        gr: gr.clone(),
        namespace: key.0,
        name: key.1,
        object,
    });
    if st.history.len() == HISTORY {
        st.history.pop_front();
    }
    st.history.push_back(ev.clone());
    // No receivers is fine: nobody is watching.
    let _ = tx.send(ev);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gr() -> GroupResource {
        GroupResource {
            group: String::new(),
            plural: "configmaps".into(),
        }
    }

    fn put(store: &Store, ns: &str, name: &str) -> Arc<Stored> {
        store
            .write(&gr(), ns, name, |_, _| {
                Ok(Write::Put(
                    json!({"metadata": {"name": name, "namespace": ns}}),
                ))
            })
            .expect("write")
            .expect("stored")
    }

    #[test]
    fn every_write_gets_a_higher_resource_version() {
        let s = Store::new();
        let a = put(&s, "ns", "a");
        let b = put(&s, "ns", "b");
        assert!(b.rv > a.rv);
        assert_eq!(
            a.value()["metadata"]["resourceVersion"],
            json!(a.rv.to_string())
        );
    }

    #[test]
    fn paging_returns_every_object_once_in_order() {
        let s = Store::new();
        for i in 0..25 {
            put(&s, &format!("ns{}", i % 3), &format!("cm{i:02}"));
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = s.list(&gr(), None, after.as_ref(), 7, |_, _| true);
            seen.extend(page.items.iter().map(|x| x.rv));
            match page.next {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25);
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), 25);
    }

    #[test]
    fn a_namespaced_list_sees_only_its_namespace() {
        let s = Store::new();
        put(&s, "a", "x");
        put(&s, "b", "y");
        put(&s, "ab", "z");
        let page = s.list(&gr(), Some("a"), None, 0, |_, _| true);
        assert_eq!(page.items.len(), 1);
    }

    #[test]
    fn a_watch_can_resume_from_recent_history_but_not_from_before_it() {
        let s = Store::new();
        let a = put(&s, "ns", "a");
        put(&s, "ns", "b");
        let since = s.events_since(a.rv).expect("in history");
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].name, "b");
    }
}
