//! The simulated cloud as a verification target: its whole state is one read
//! (`GET /sim/v1/cloud` through the cluster connection), then every binding is judged
//! against it by the same rules as a real cloud. Its ledger (every creation, in order) is
//! what a restore counts "nothing new" against.
//!
//! It reaches the simulated cloud the way a production provider reaches its cloud: over
//! HTTP, decoding the answer with its own wire types ([`wire`]), never the simulator's.

use std::collections::BTreeMap;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::rules::{
    self, AddressFacts, Association, BucketFacts, DnsFacts, Lookup, Versioning, VolumeFacts,
};
use super::{CloudVerifier, Kind, Ledger, LedgerError, LookupError, Verdict};
use crate::bindings::Bindings;
use wire::CloudState;

/// The `/sim/v1/cloud` answer, as far as verification reads it (other fields are ignored,
/// so the simulator may grow without breaking its clients).
pub mod wire {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
    pub struct CloudState {
        /// The cloud's region (what an unmoved bucket is in).
        #[serde(default)]
        pub region: Option<String>,
        #[serde(default)]
        pub disks: BTreeMap<String, Disk>,
        #[serde(default)]
        pub addresses: BTreeMap<String, Address>,
        #[serde(default)]
        pub load_balancers: BTreeMap<String, LoadBalancer>,
        #[serde(default)]
        pub dns: BTreeMap<String, DnsRecord>,
        #[serde(default)]
        pub buckets: BTreeMap<String, Bucket>,
        #[serde(default)]
        pub ledger: Vec<LedgerEntry>,
        #[serde(default)]
        pub snapshots: BTreeMap<String, DiskSnapshot>,
    }

    #[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
    pub struct Disk {
        /// The disk's id (also its key in [`CloudState::disks`]).
        #[serde(default)]
        pub id: String,
        pub zone: String,
        #[serde(default)]
        pub attached_to: Option<String>,
        /// What is written on the disk (the simulated cloud's stand-in for data).
        #[serde(default)]
        pub data_token: String,
        /// The cloud snapshot it was created from.
        #[serde(default)]
        pub from_snapshot: Option<String>,
        /// When a disk created from a snapshot is fully hydrated (RFC 3339).
        #[serde(default)]
        pub hydrated_at: Option<String>,
        #[serde(default)]
        pub tags: BTreeMap<String, String>,
    }

    impl Disk {
        /// Milliseconds of hydration left at `now` (0 once hydrated, or never hydrating).
        pub fn hydration_left_ms(&self, now: chrono::DateTime<chrono::Utc>) -> u64 {
            self.hydrated_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(0, |until| {
                    (until.with_timezone(&chrono::Utc) - now)
                        .num_milliseconds()
                        .max(0) as u64
                })
        }
    }

    /// A cloud snapshot of a disk.
    #[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
    pub struct DiskSnapshot {
        #[serde(default)]
        pub id: String,
        pub size_gib: u64,
        /// The disk's data when the snapshot was taken.
        #[serde(default)]
        pub data_token: String,
    }

    #[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
    pub struct Address {
        pub ip: String,
        pub allocation_id: String,
        /// An Azure-style public IP name.
        #[serde(default)]
        pub name: Option<String>,
        /// The load balancer it is associated with.
        #[serde(default)]
        pub load_balancer: Option<String>,
    }

    #[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
    pub struct LoadBalancer {
        /// `namespace/name` of the Service it serves.
        pub service: String,
    }

    #[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
    pub struct DnsRecord {
        pub target: String,
    }

    #[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
    pub struct Bucket {
        pub region: String,
        pub versioning: bool,
    }

    #[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
    pub struct LedgerEntry {
        pub seq: u64,
        /// `disk`, `ip`, `load-balancer`, `dns`, `bucket`.
        pub resource: String,
        /// `created`, `deleted`, `updated`, …
        pub action: String,
    }

    impl CloudState {
        /// An address by IP, allocation id or public IP name.
        pub fn find_address(&self, key: &str) -> Option<&Address> {
            self.addresses.get(key).or_else(|| {
                self.addresses
                    .values()
                    .find(|a| a.allocation_id == key || a.name.as_deref() == Some(key))
            })
        }
    }
}

/// Reads the simulated cloud behind the cluster `client` points at.
#[derive(Clone)]
pub struct SimVerifier {
    client: kube::Client,
}

impl SimVerifier {
    pub fn new(client: kube::Client) -> Self {
        SimVerifier { client }
    }
}

async fn fetch(client: &kube::Client) -> Result<CloudState, String> {
    let req = http::Request::get("/sim/v1/cloud")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client.request_text(req).await.map_err(|e| {
        format!("failed to read the simulated cloud (is this a simulated cluster?): {e}")
    })?;
    serde_json::from_str(&text).map_err(|e| format!("failed to parse the simulated cloud: {e}"))
}

/// Whether the cluster behind `client` is a simulated one (its cloud answers).
pub async fn is_simulated(client: &kube::Client) -> bool {
    fetch(client).await.is_ok()
}

impl CloudVerifier for SimVerifier {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn verify<'a>(&'a self, bindings: &'a Bindings) -> BoxFuture<'a, Vec<Verdict>> {
        async move {
            match fetch(&self.client).await {
                Ok(cloud) => judge(&cloud, bindings),
                Err(why) => super::none::unverifiable(bindings, &why),
            }
        }
        .boxed()
    }

    fn ledger(&self) -> BoxFuture<'_, Result<Option<Ledger>, LedgerError>> {
        async move {
            let cloud = fetch(&self.client).await.map_err(|detail| LedgerError {
                provider: "sim",
                detail,
            })?;
            Ok(Some(ledger(&cloud)))
        }
        .boxed()
    }

    fn allocations<'a>(
        &'a self,
        ips: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, LookupError>> {
        async move {
            let cloud = fetch(&self.client).await.map_err(|detail| LookupError {
                provider: "sim",
                detail,
            })?;
            Ok(ips
                .iter()
                .filter_map(|ip| {
                    let a = cloud.addresses.get(ip)?;
                    Some((ip.clone(), a.allocation_id.clone()))
                })
                .collect())
        }
        .boxed()
    }
}

impl super::ResourceMover for SimVerifier {
    fn move_to_group<'a>(
        &'a self,
        ids: &'a [String],
        group: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, super::MoveError>> {
        async move {
            let fail = |detail: String| super::MoveError {
                provider: "sim",
                ids: ids.to_vec(),
                group: group.to_owned(),
                detail,
            };
            let body = serde_json::json!({"ids": ids, "destinationGroup": group}).to_string();
            let req = http::Request::post("/sim/v1/cloud/move")
                .header("content-type", "application/json")
                .body(body.into_bytes())
                .map_err(|e| fail(e.to_string()))?;
            let text = self
                .client
                .request_text(req)
                .await
                .map_err(|e| fail(e.to_string()))?;
            #[derive(serde::Deserialize)]
            struct Moved {
                moved: BTreeMap<String, String>,
            }
            serde_json::from_str::<Moved>(&text)
                .map(|m| m.moved)
                .map_err(|e| fail(format!("failed to parse the answer: {e}")))
        }
        .boxed()
    }
}

/// The simulated cloud's disks and creations, in the provider-neutral shape.
pub fn ledger(cloud: &CloudState) -> Ledger {
    Ledger {
        disks: cloud.disks.keys().cloned().collect(),
        creations: cloud
            .ledger
            .iter()
            .filter(|e| e.action == "created")
            .filter_map(|e| {
                let kind = match e.resource.as_str() {
                    "disk" => Kind::Volume,
                    "ip" => Kind::Address,
                    "bucket" => Kind::Bucket,
                    "dns" => Kind::Dns,
                    // A load balancer carries an address, which is counted on its own; a
                    // kind this client does not know is not one of its bindings.
                    _ => return None,
                };
                Some((e.seq, kind))
            })
            .collect(),
    }
}

/// Every verdict of `bindings` against a simulated cloud's state.
pub fn judge(cloud: &CloudState, bindings: &Bindings) -> Vec<Verdict> {
    let mut out = Vec::new();
    for v in &bindings.volumes {
        let seen = match cloud.disks.get(&v.disk_id) {
            Some(d) => Lookup::Found(VolumeFacts {
                zone: Some(d.zone.clone()),
                state: if d.attached_to.is_some() {
                    "in-use"
                } else {
                    "available"
                }
                .to_owned(),
                attached_to: d.attached_to.iter().cloned().collect(),
            }),
            None => Lookup::Absent,
        };
        out.push(rules::volume(v, seen));
    }
    for lb in &bindings.load_balancers {
        let keys = rules::address_targets(lb);
        if keys.is_empty() {
            out.push(rules::address_unrecorded(lb));
        }
        for k in keys {
            let seen = match cloud.find_address(k.as_str()) {
                Some(a) => Lookup::Found(AddressFacts {
                    public_ip: Some(a.ip.clone()),
                    association: a
                        .load_balancer
                        .as_ref()
                        .map(|id| Association::LoadBalancer {
                            name: id.clone(),
                            service: cloud.load_balancers.get(id).map(|l| l.service.clone()),
                        }),
                }),
                None => Lookup::Absent,
            };
            out.push(rules::address(lb, &k, seen));
        }
        for name in rules::dns_names(lb) {
            let seen = match cloud.dns.get(&name) {
                Some(r) => Lookup::Found(DnsFacts {
                    values: vec![r.target.clone()],
                }),
                None => Lookup::Absent,
            };
            out.push(rules::dns(lb, &name, seen));
        }
    }
    for b in rules::buckets_to_check(&bindings.buckets) {
        let seen = match rules::bucket_target(b).and_then(|n| cloud.buckets.get(&n)) {
            Some(x) => Lookup::Found(BucketFacts {
                region: Some(x.region.clone()),
                versioning: if x.versioning {
                    Versioning::Enabled
                } else {
                    Versioning::Off
                },
                object_lock: None,
            }),
            None => Lookup::Absent,
        };
        out.push(rules::bucket(b, cloud.region.as_deref(), seen));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_types_read_the_simulators_answer_and_ignore_what_they_do_not_know() {
        let answer = serde_json::json!({
            "region": "eu-west-1",
            "disks": {"vol-1": {"id": "vol-1", "zone": "eu-west-1a", "size_gib": 10,
                "data_token": "x", "attached_to": null, "created_at": "t"}},
            "addresses": {"203.0.113.1": {"ip": "203.0.113.1", "allocation_id": "eipalloc-1",
                "name": "pip", "reserved": true, "load_balancer": "lb-1", "created_at": "t"}},
            "load_balancers": {"lb-1": {"id": "lb-1", "service": "a/web", "ip": "203.0.113.1",
                "created_at": "t"}},
            "pools": {}, "dns": {}, "buckets": {},
            "ledger": [
                {"seq": 1, "at": "t", "resource": "disk", "action": "created", "id": "vol-1", "cause": "c"},
                {"seq": 2, "at": "t", "resource": "load-balancer", "action": "created", "id": "lb-1", "cause": "c"},
                {"seq": 3, "at": "t", "resource": "ip", "action": "released", "id": "x", "cause": "c"},
                {"seq": 4, "at": "t", "resource": "volume-snapshot", "action": "created", "id": "s", "cause": "c"}],
            "something_new": {"a": 1},
        });
        let cloud: CloudState = serde_json::from_value(answer).expect("decodes");
        assert_eq!(
            cloud.find_address("pip").map(|a| a.ip.as_str()),
            Some("203.0.113.1")
        );
        assert_eq!(
            cloud.find_address("eipalloc-1").map(|a| a.ip.as_str()),
            Some("203.0.113.1")
        );
        let l = ledger(&cloud);
        assert_eq!(l.creations, vec![(1, Kind::Volume)]);
        assert!(l.disks.contains("vol-1"));
    }
}
