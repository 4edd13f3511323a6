//! Waiting on the cluster with watches, not sleep loops: `kube::runtime`'s
//! `await_condition` for one object, a watcher-fed set for "until none is left". A wait
//! wakes on the change it is waiting for, and a failing watch is an error, never "not yet".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::time::Duration;

use futures::TryStreamExt as _;
use kube::Resource;
use kube::api::Api;
use kube::runtime::wait::{Condition, await_condition};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;

/// Why a wait ended without its condition.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("failed to watch: {0}")]
    Watch(#[source] watcher::Error),
}

/// Wait up to `timeout` until `cond` holds for the object `name` (which may not exist
/// yet). Returns the object as it was when the condition held.
pub async fn until<K>(
    api: Api<K>,
    name: &str,
    timeout: Duration,
    cond: impl Condition<K>,
) -> Result<Option<K>, WaitError>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api, name, cond)).await {
        Ok(Ok(obj)) => Ok(obj),
        Ok(Err(kube::runtime::wait::Error::ProbeFailed(e))) => Err(WaitError::Watch(e)),
        Err(_) => Err(WaitError::Timeout(timeout)),
    }
}

/// Wait up to `timeout` until `api` lists no object at all. On timeout, the objects still
/// there are returned (so the caller can say which).
pub async fn until_none_left<K>(api: Api<K>, timeout: Duration) -> Result<(), NoneLeftError<K>>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    until_none_left_of(api, timeout, |_| true).await
}

/// [`until_none_left`], counting only the objects `counts` picks (a field selector cannot
/// name every field: a VolumeAttachment's volume is one it cannot).
pub async fn until_none_left_of<K>(
    api: Api<K>,
    timeout: Duration,
    counts: impl Fn(&K) -> bool,
) -> Result<(), NoneLeftError<K>>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let mut left: BTreeMap<(Option<String>, String), K> = BTreeMap::new();
    let watch = async {
        let mut listing: BTreeMap<(Option<String>, String), K> = BTreeMap::new();
        let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
        loop {
            let Some(ev) = stream.try_next().await.map_err(WaitError::Watch)? else {
                // The watcher restarts itself; an ended stream is not "empty".
                continue;
            };
            let settled = match ev {
                Event::Init => {
                    listing.clear();
                    false
                }
                Event::InitApply(o) => {
                    if counts(&o) {
                        listing.insert(key(&o), o);
                    }
                    false
                }
                Event::InitDone => {
                    left = std::mem::take(&mut listing);
                    true
                }
                Event::Apply(o) => {
                    if counts(&o) {
                        left.insert(key(&o), o);
                    } else {
                        left.remove(&key(&o));
                    }
                    true
                }
                Event::Delete(o) => {
                    left.remove(&key(&o));
                    true
                }
            };
            if settled && left.is_empty() {
                return Ok::<(), WaitError>(());
            }
        }
    };
    let waited = tokio::time::timeout(timeout, watch).await;
    match waited {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(NoneLeftError::Wait(e)),
        Err(_) => Err(NoneLeftError::Remaining {
            timeout,
            objects: left.into_values().collect(),
        }),
    }
}

/// An object's (namespace, name).
pub type Key = (Option<String>, String);

/// Wait up to `timeout` until `done` holds for every object `wanted` names, each judged
/// with its own value (`None` while it does not exist), with one watch over `api` (all
/// of the kind, or one namespace, narrowed by `config`'s selectors) rather than one per
/// object: ten thousand Deployments brought back by `start` are one watch whose objects
/// stream through one at a time, not ten thousand watches each holding its object. On
/// timeout, returns the keys not done.
pub async fn until_all<K, W>(
    api: Api<K>,
    wanted: HashMap<Key, W>,
    config: watcher::Config,
    timeout: Duration,
    done: impl Fn(&W, Option<&K>) -> bool,
) -> Result<(), AllError>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let mut pending: HashSet<Key> = wanted.keys().cloned().collect();
    let watch = async {
        // Keys judged during the current (re)list; what it did not list does not exist.
        let mut listed: HashSet<Key> = HashSet::new();
        let mut stream = std::pin::pin!(watcher::watcher(api, config));
        let judge = |pending: &mut HashSet<Key>, k: Key, o: Option<&K>| {
            if let Some(w) = wanted.get(&k) {
                if done(w, o) {
                    pending.remove(&k);
                } else {
                    pending.insert(k);
                }
            }
        };
        loop {
            let Some(ev) = stream.try_next().await.map_err(WaitError::Watch)? else {
                continue;
            };
            match ev {
                Event::Init => listed.clear(),
                Event::InitApply(o) => {
                    let k = key(&o);
                    if wanted.contains_key(&k) {
                        listed.insert(k.clone());
                        judge(&mut pending, k, Some(&o));
                    }
                }
                Event::InitDone => {
                    for k in wanted.keys().filter(|k| !listed.contains(*k)) {
                        judge(&mut pending, k.clone(), None);
                    }
                    listed.clear();
                }
                Event::Apply(o) => judge(&mut pending, key(&o), Some(&o)),
                Event::Delete(o) => judge(&mut pending, key(&o), None),
            }
            // Every key starts pending and leaves only when judged done from what the API
            // server sent (a listed object, or its absence from a complete listing).
            if pending.is_empty() {
                return Ok::<(), WaitError>(());
            }
        }
    };
    match tokio::time::timeout(timeout, watch).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(AllError::Wait(e)),
        Err(_) => {
            let mut left: Vec<Key> = pending.into_iter().collect();
            left.sort();
            Err(AllError::Remaining { timeout, left })
        }
    }
}

fn key<K: Resource>(o: &K) -> Key {
    let m = o.meta();
    (m.namespace.clone(), m.name.clone().unwrap_or_default())
}

/// Why [`until_all`] ended before every object was done.
#[derive(Debug, thiserror::Error)]
pub enum AllError {
    #[error("{} not there yet after {timeout:?}", left.len())]
    Remaining { timeout: Duration, left: Vec<Key> },
    #[error(transparent)]
    Wait(WaitError),
}

/// Why [`until_none_left`] ended with objects left.
#[derive(Debug, thiserror::Error)]
pub enum NoneLeftError<K: Debug> {
    #[error("{} still there after {timeout:?}", objects.len())]
    Remaining { timeout: Duration, objects: Vec<K> },
    #[error(transparent)]
    Wait(WaitError),
}

/// Wakes whenever an object of any watched kind changes: for a condition spread over
/// several kinds (a restore's verification judges claims, volumes, Services and bucket
/// objects together), which is re-checked on every change instead of on a timer.
pub struct Changes {
    stream: futures::stream::BoxStream<'static, Result<(), watcher::Error>>,
}

impl Changes {
    /// Watch every object of each of `apis` (cluster-wide).
    pub fn of(apis: Vec<Api<kube::api::DynamicObject>>) -> Self {
        use futures::StreamExt as _;
        use kube::runtime::WatchStreamExt as _;
        let streams = apis.into_iter().map(|api| {
            watcher::watcher(api, watcher::Config::default())
                // A failing watch is retried with backoff, not in a tight loop.
                .default_backoff()
                .map_ok(|_| ())
                .boxed()
        });
        Changes {
            stream: futures::stream::select_all(streams).boxed(),
        }
    }

    /// Wait for the next change, at most `max`: true on a change, false when `max` passed
    /// without one. A watch error also wakes the caller (true): the caller's own LISTs are
    /// what decide, and report, an API failure; the watch only says when to look again.
    pub async fn next(&mut self, max: Duration) -> bool {
        use futures::StreamExt as _;
        match tokio::time::timeout(max, self.stream.next()).await {
            Ok(Some(Ok(()))) => true,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "watch failed; looking again");
                true
            }
            // Every watcher ended (none was given): nothing will wake us but the clock.
            Ok(None) => {
                tokio::time::sleep(max).await;
                false
            }
            Err(_) => false,
        }
    }
}
