//! No cloud: every binding gets a verdict, and every verdict is `unverifiable`. A drill
//! without cloud access still says what it did not check instead of calling it fine.

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::rules::{self, Lookup};
use super::{CloudVerifier, Verdict};
use crate::bindings::Bindings;

const WHY: &str = "not checked: no cloud provider (--cloud none)";

#[derive(Debug, Clone, Copy, Default)]
pub struct NoVerifier;

impl CloudVerifier for NoVerifier {
    fn name(&self) -> &'static str {
        "none"
    }

    fn verify<'a>(&'a self, bindings: &'a Bindings) -> BoxFuture<'a, Vec<Verdict>> {
        async move { unverifiable(bindings, WHY) }.boxed()
    }
}

/// Every verdict of `bindings`, each unverifiable for the same reason.
pub fn unverifiable(bindings: &Bindings, why: &str) -> Vec<Verdict> {
    let mut out = Vec::new();
    for v in &bindings.volumes {
        out.push(rules::volume(v, Lookup::Unknown(why.to_owned())));
    }
    for lb in &bindings.load_balancers {
        let keys = rules::address_targets(lb);
        if keys.is_empty() {
            out.push(rules::address_unrecorded(lb));
        }
        for k in keys {
            out.push(rules::address(lb, &k, Lookup::Unknown(why.to_owned())));
        }
        for name in rules::dns_names(lb) {
            out.push(rules::dns(lb, &name, Lookup::Unknown(why.to_owned())));
        }
    }
    for b in rules::buckets_to_check(&bindings.buckets) {
        out.push(rules::bucket(b, None, Lookup::Unknown(why.to_owned())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Status;

    #[tokio::test]
    async fn without_a_cloud_nothing_is_reported_as_fine() {
        let b: Bindings = serde_json::from_value(serde_json::json!({
            "volumes": [{"pv": "pv-1", "provider": "aws", "csiDriver": "ebs.csi.aws.com", "source": "csi",
                "volumeHandle": "vol-1", "diskId": "vol-1", "zone": null, "size": null, "storageClass": null,
                "reclaimPolicy": null, "claim": null, "fsType": null}],
            "loadBalancers": [{"namespace": "shop", "name": "web", "pin": {"provider": "load-balancer-ip", "address": "203.0.113.7"},
                "pinned": true, "ingressIps": ["203.0.113.7"], "ingressHostnames": [], "dnsNames": ["shop.example.com"],
                "dnsTargets": [], "loadBalancerClass": null}],
            "buckets": []
        }))
        .expect("bindings");
        let verdicts = NoVerifier.verify(&b).await;
        assert_eq!(verdicts.len(), 3);
        assert!(verdicts.iter().all(|v| v.status == Status::Unverifiable));
    }
}
