//! The simulated cloud as a verification target: its whole state is one read
//! (`GET /sim/v1/cloud` through the cluster connection), then every binding is judged
//! against it by the same rules as a real cloud. Its ledger (every creation, in order) is
//! what a restore counts "nothing new" against.
//!
//! This is the one product module outside `demo`/`drill` that names the simulator's types:
//! they are the serde shape of the `/sim/v1/cloud` answer it reads over HTTP.

use std::collections::BTreeMap;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::rules::{
    self, AddressFacts, Association, BucketFacts, DnsFacts, Observed, Versioning, VolumeFacts,
};
use super::{CloudVerifier, Kind, Ledger, LedgerError, LookupError, Verdict};
use crate::bindings::Bindings;
use coldstart_sim::cloud::{Action, CloudState, Resource, ZONES};

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

/// The simulated cloud's one region: its zones without the zone letter.
fn region() -> &'static str {
    ZONES[0].trim_end_matches(|c: char| c.is_ascii_alphabetic())
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
            .filter(|e| e.action == Action::Created)
            .filter_map(|e| {
                let kind = match e.resource {
                    Resource::Disk => Kind::Volume,
                    Resource::Ip => Kind::Address,
                    Resource::Bucket => Kind::Bucket,
                    Resource::Dns => Kind::Dns,
                    // A load balancer carries an address, which is counted on its own.
                    Resource::LoadBalancer => return None,
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
            Some(d) => Observed::Found(VolumeFacts {
                zone: Some(d.zone.clone()),
                state: if d.attached_to.is_some() {
                    "in-use"
                } else {
                    "available"
                }
                .to_owned(),
                attached_to: d.attached_to.iter().cloned().collect(),
            }),
            None => Observed::Absent,
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
                Some(a) => Observed::Found(AddressFacts {
                    public_ip: Some(a.ip.clone()),
                    association: a
                        .load_balancer
                        .as_ref()
                        .map(|id| Association::LoadBalancer {
                            name: id.clone(),
                            service: cloud.load_balancers.get(id).map(|l| l.service.clone()),
                        }),
                }),
                None => Observed::Absent,
            };
            out.push(rules::address(lb, &k, seen));
        }
        for name in rules::dns_names(lb) {
            let seen = match cloud.dns.get(&name) {
                Some(r) => Observed::Found(DnsFacts {
                    values: vec![r.target.clone()],
                }),
                None => Observed::Absent,
            };
            out.push(rules::dns(lb, &name, seen));
        }
    }
    for b in rules::buckets_to_check(&bindings.buckets) {
        let seen = match rules::bucket_target(b).and_then(|n| cloud.buckets.get(&n)) {
            Some(x) => Observed::Found(BucketFacts {
                region: Some(x.region.clone()),
                versioning: if x.versioning {
                    Versioning::Enabled
                } else {
                    Versioning::Off
                },
                object_lock: None,
            }),
            None => Observed::Absent,
        };
        out.push(rules::bucket(b, Some(region()), seen));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_clouds_region_is_that_of_its_zones() {
        assert_eq!(region(), "eu-west-1");
    }
}
