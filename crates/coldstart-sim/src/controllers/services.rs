//! The Service load-balancer controller and external-dns, as one, behaving as each
//! provider's controller does: a LoadBalancer Service pinned to an address (an Elastic IP
//! allocation, an Azure public IP name or IPv4, MetalLB addresses, `spec.loadBalancerIP`)
//! gets a load balancer on it when that address exists and is free (or shared under the
//! same MetalLB `allow-shared-ip` key); a pin to an address that does not exist or is taken
//! fails as the provider fails: no address, a Warning event, retried. An unpinned Service
//! gets an address from its MetalLB pool if it names one, else a NEW address. Naming the
//! address it already holds reserves it (so it survives the cluster); hostname annotations
//! become DNS records pointing at it (one per `set-identifier` for weighted records).

use serde_json::{Value, json};

use super::{Api, Requeue, set_status, str_at};
use crate::Actor;
use crate::cloud::CloudState;
use crate::status::ApiError;

const CLEANUP_FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";

/// A failed pin is retried at this pace: the address may be created later (as in a real
/// account), and a slower pace keeps the event count meaningful.
const PIN_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

fn controller() -> Actor {
    Actor::system("system:serviceaccount:kube-system:service-controller")
}

fn annotation<'a>(svc: &'a Value, key: &str) -> Option<&'a str> {
    svc.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What a Service asks of its load-balancer controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// No pin: a new address.
    Any,
    /// Pinned addresses, in the provider's terms (IPs, EIP allocation ids, an Azure public
    /// IP name), resolved against the cloud; the first is the one the Service answers on.
    Pinned {
        via: &'static str,
        keys: Vec<String>,
    },
    /// An address from this MetalLB pool.
    Pool(String),
}

const PIN_ANNOTATIONS: &[&str] = &[
    "service.beta.kubernetes.io/aws-load-balancer-eip-allocations",
    "service.beta.kubernetes.io/azure-load-balancer-ipv4",
    "service.beta.kubernetes.io/azure-pip-name",
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
    "metallb.universe.tf/load-balancer-ips",
];
const POOL_ANNOTATIONS: &[&str] = &[
    "metallb.io/address-pool",
    "metallb.universe.tf/address-pool",
];
const SHARE_ANNOTATIONS: &[&str] = &[
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
];

fn split(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What a Service asks for (a blank annotation is no pin, as the providers read them).
pub fn ask_of(svc: &Value) -> Ask {
    for via in PIN_ANNOTATIONS {
        if let Some(v) = annotation(svc, via) {
            let keys = split(v);
            if !keys.is_empty() {
                return Ask::Pinned { via, keys };
            }
        }
    }
    if let Some(ip) = str_at(svc, "/spec/loadBalancerIP").filter(|s| !s.trim().is_empty()) {
        return Ask::Pinned {
            via: "spec.loadBalancerIP",
            keys: vec![ip.trim().to_owned()],
        };
    }
    match POOL_ANNOTATIONS.iter().find_map(|k| annotation(svc, k)) {
        Some(pool) => Ask::Pool(pool.trim().to_owned()),
        None => Ask::Any,
    }
}

/// The `allow-shared-ip` key of a Service, if it has one.
pub fn share_key_of(svc: &Value) -> Option<String> {
    SHARE_ANNOTATIONS
        .iter()
        .find_map(|k| annotation(svc, k))
        .map(str::to_owned)
}

/// Where a Service's load balancer goes, decided from the cloud as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On this existing address.
    On(String),
    /// On a new address the controller allocates.
    New,
    /// Nowhere: the provider refuses, with this message.
    Fail(String),
}

/// Decide where a Service's load balancer goes (pure: the cloud is read, not changed).
pub fn place(cloud: &CloudState, key: &str, ask: &Ask, share_key: Option<&str>) -> Placement {
    let usable = |ip: &str| {
        cloud.load_balancers.values().all(|lb| {
            lb.ip != ip
                || lb.service == key
                || (share_key.is_some() && lb.share_key.as_deref() == share_key)
        })
    };
    match ask {
        Ask::Any => Placement::New,
        Ask::Pool(pool) => match cloud.pools.get(pool) {
            None => Placement::Fail(format!("address pool {pool} does not exist")),
            // A Service keeps the pool address it holds; otherwise the first free one.
            Some(p) => p
                .addresses
                .iter()
                .find(|ip| {
                    cloud
                        .load_balancers
                        .values()
                        .any(|lb| lb.service == key && lb.ip == **ip)
                })
                .or_else(|| p.addresses.iter().find(|ip| usable(ip)))
                .map_or_else(
                    || Placement::Fail(format!("address pool {pool} has no free address")),
                    |ip| Placement::On(ip.clone()),
                ),
        },
        Ask::Pinned { via, keys } => {
            let mut first = None;
            for k in keys {
                let Some(a) = cloud.find_address(k) else {
                    return Placement::Fail(format!(
                        "{via}: address {k} does not exist in this account"
                    ));
                };
                if !usable(&a.ip) {
                    return Placement::Fail(format!(
                        "{via}: address {k} ({}) is in use by another load balancer",
                        a.ip
                    ));
                }
                first.get_or_insert(a.ip.clone());
            }
            first.map_or(Placement::New, Placement::On)
        }
    }
}

/// DNS names external-dns would publish for a Service (both annotation prefixes).
pub fn hostnames_of(svc: &Value) -> Vec<String> {
    [
        "external-dns.alpha.kubernetes.io/hostname",
        "external-dns.kubernetes.io/hostname",
    ]
    .iter()
    .filter_map(|k| annotation(svc, k))
    .flat_map(|v| {
        v.split(',')
            .map(|h| h.trim().trim_end_matches('.').to_owned())
    })
    .filter(|h| !h.is_empty())
    .collect()
}

fn dns_target(svc: &Value) -> Option<String> {
    [
        "external-dns.alpha.kubernetes.io/target",
        "external-dns.kubernetes.io/target",
    ]
    .iter()
    .find_map(|k| annotation(svc, k))
    .map(str::to_owned)
}

pub fn reconcile(sim: &dyn Api, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    let Some(svc) = sim.get("", "services", ns, name)? else {
        return Ok(Requeue::No);
    };
    let key = format!("{ns}/{name}");
    // A Service with a load-balancer class belongs to that class's controller; the default
    // cloud controller (this one) leaves it alone, as in Kubernetes.
    let is_lb = str_at(&svc, "/spec/type") == Some("LoadBalancer")
        && str_at(&svc, "/spec/loadBalancerClass").is_none();
    let deleting = svc.pointer("/metadata/deletionTimestamp").is_some();
    let has_finalizer = svc
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
    let current_lb = {
        let cloud = sim.cloud().lock();
        cloud
            .load_balancers
            .values()
            .find(|lb| lb.service == key)
            .cloned()
    };
    if !is_lb || deleting {
        if let Some(lb) = current_lb {
            sim.cloud().lock().delete_load_balancer(
                &lb.id,
                &format!("Service {key} deleted or no longer a LoadBalancer"),
            );
        }
        if has_finalizer {
            let finalizers: Vec<Value> = svc
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|f| {
                    f.iter()
                        .filter(|x| *x != CLEANUP_FINALIZER)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            sim.merge_patch(
                "",
                "services",
                ns,
                name,
                &json!({"metadata": {"finalizers": finalizers}}),
                &controller(),
            )?;
        }
        return Ok(Requeue::No);
    }
    if !has_finalizer {
        let mut finalizers: Vec<Value> = svc
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        finalizers.push(json!(CLEANUP_FINALIZER));
        sim.merge_patch(
            "",
            "services",
            ns,
            name,
            &json!({"metadata": {"finalizers": finalizers}}),
            &controller(),
        )?;
    }
    let ask = ask_of(&svc);
    let share = share_key_of(&svc);
    let placed = {
        let mut cloud = sim.cloud().lock();
        match place(&cloud, &key, &ask, share.as_deref()) {
            Placement::On(ip) if current_lb.as_ref().is_some_and(|lb| lb.ip == ip) => {
                if matches!(ask, Ask::Pinned { .. }) {
                    let _ = cloud.reserve_address(&ip, &format!("pinned by Service {key}"));
                }
                Ok(ip)
            }
            Placement::On(ip) => {
                if let Some(lb) = &current_lb {
                    cloud.delete_load_balancer(&lb.id, &format!("Service {key} moved to {ip}"));
                }
                if matches!(ask, Ask::Pinned { .. }) {
                    let _ = cloud.reserve_address(&ip, &format!("pinned by Service {key}"));
                }
                cloud
                    .create_load_balancer(
                        &key,
                        &ip,
                        share.as_deref(),
                        &format!("Service {key} on {ip}"),
                    )
                    .map(|lb| lb.ip)
                    .map_err(|e| e.to_string())
            }
            Placement::New => match &current_lb {
                Some(lb) => Ok(lb.ip.clone()),
                None => {
                    let a = cloud.allocate_address(
                        false,
                        None,
                        &format!("allocated for Service {key} (no pinned address)"),
                    );
                    cloud
                        .create_load_balancer(
                            &key,
                            &a.ip,
                            share.as_deref(),
                            &format!("Service {key}"),
                        )
                        .map(|lb| lb.ip)
                        .map_err(|e| e.to_string())
                }
            },
            Placement::Fail(why) => Err(why),
        }
    };
    let ip = match placed {
        Ok(ip) => ip,
        Err(why) => {
            // The provider's controller fails and retries; the Service has no address.
            super::warn(
                sim,
                &svc,
                "SyncLoadBalancerFailed",
                &format!("Error syncing load balancer: failed to ensure load balancer: {why}"),
                &controller(),
            )?;
            if let Some(svc) = sim.get("", "services", ns, name)? {
                set_status(
                    sim,
                    "",
                    "services",
                    &svc,
                    json!({"loadBalancer": {}}),
                    &controller(),
                )?;
            }
            return Ok(Requeue::After(PIN_RETRY));
        }
    };
    let hostnames = hostnames_of(&svc);
    if !hostnames.is_empty() {
        let target = dns_target(&svc).unwrap_or_else(|| ip.clone());
        // Weighted records: one record per set identifier under the same name.
        let set_id = [
            "external-dns.alpha.kubernetes.io/set-identifier",
            "external-dns.kubernetes.io/set-identifier",
        ]
        .iter()
        .find_map(|k| annotation(&svc, k));
        let mut cloud = sim.cloud().lock();
        for h in &hostnames {
            let record = match set_id {
                Some(id) => format!("{h} [{id}]"),
                None => h.clone(),
            };
            cloud.upsert_dns(&record, &target, &format!("external-dns for Service {key}"));
        }
    }
    if let Some(svc) = sim.get("", "services", ns, name)? {
        set_status(
            sim,
            "",
            "services",
            &svc,
            json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}),
            &controller(),
        )?;
    }
    Ok(Requeue::No)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_pin_is_recognised_and_a_blank_one_is_none() {
        let ann = |k: &str, v: &str| json!({"metadata": {"annotations": {k: v}}});
        let pinned = |via: &'static str, keys: &[&str]| Ask::Pinned {
            via,
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        };
        let eips = "service.beta.kubernetes.io/aws-load-balancer-eip-allocations";
        let cases = [
            (
                ann(eips, "eipalloc-1, eipalloc-2"),
                pinned(eips, &["eipalloc-1", "eipalloc-2"]),
            ),
            (
                ann("service.beta.kubernetes.io/azure-pip-name", "pip-web"),
                pinned("service.beta.kubernetes.io/azure-pip-name", &["pip-web"]),
            ),
            (
                ann(
                    "service.beta.kubernetes.io/azure-load-balancer-ipv4",
                    "1.2.3.4",
                ),
                pinned(
                    "service.beta.kubernetes.io/azure-load-balancer-ipv4",
                    &["1.2.3.4"],
                ),
            ),
            (
                ann("metallb.io/loadBalancerIPs", "10.0.0.5"),
                pinned("metallb.io/loadBalancerIPs", &["10.0.0.5"]),
            ),
            (
                ann("metallb.universe.tf/loadBalancerIPs", "10.0.0.6"),
                pinned("metallb.universe.tf/loadBalancerIPs", &["10.0.0.6"]),
            ),
            (
                json!({"metadata": {}, "spec": {"loadBalancerIP": "5.6.7.8"}}),
                pinned("spec.loadBalancerIP", &["5.6.7.8"]),
            ),
            (
                ann("metallb.io/address-pool", "public"),
                Ask::Pool("public".into()),
            ),
            (ann(eips, " "), Ask::Any),
            (
                json!({"metadata": {}, "spec": {"loadBalancerIP": ""}}),
                Ask::Any,
            ),
            (json!({"metadata": {}, "spec": {}}), Ask::Any),
        ];
        for (svc, want) in cases {
            assert_eq!(ask_of(&svc), want, "{svc}");
        }
    }

    fn cloud_with(ips: &[(&str, Option<&str>)]) -> CloudState {
        let mut c = CloudState::default();
        for (ip, alloc) in ips {
            c.create_static_address(ip, *alloc, None, "test")
                .expect("new");
        }
        c
    }

    #[test]
    fn a_pin_to_an_address_that_does_not_exist_fails_instead_of_allocating() {
        let c = cloud_with(&[("52.0.0.1", Some("eipalloc-a"))]);
        let ask = Ask::Pinned {
            via: "eips",
            keys: vec!["eipalloc-a".into(), "eipalloc-missing".into()],
        };
        assert!(
            matches!(place(&c, "a/web", &ask, None), Placement::Fail(m) if m.contains("eipalloc-missing"))
        );
        let ask = Ask::Pinned {
            via: "spec.loadBalancerIP",
            keys: vec!["9.9.9.9".into()],
        };
        assert!(matches!(place(&c, "a/web", &ask, None), Placement::Fail(_)));
        let ask = Ask::Pinned {
            via: "eips",
            keys: vec!["eipalloc-a".into()],
        };
        assert_eq!(
            place(&c, "a/web", &ask, None),
            Placement::On("52.0.0.1".into())
        );
    }

    #[test]
    fn services_share_an_address_only_under_the_same_allow_shared_ip_key() {
        let mut c = cloud_with(&[("1.2.3.4", None)]);
        c.create_load_balancer("d/tcp", "1.2.3.4", Some("k"), "test")
            .expect("free");
        let ask = Ask::Pinned {
            via: "spec.loadBalancerIP",
            keys: vec!["1.2.3.4".into()],
        };
        assert_eq!(
            place(&c, "d/udp", &ask, Some("k")),
            Placement::On("1.2.3.4".into())
        );
        assert!(matches!(
            place(&c, "d/udp", &ask, Some("other")),
            Placement::Fail(_)
        ));
        assert!(matches!(place(&c, "d/udp", &ask, None), Placement::Fail(_)));
        c.create_load_balancer("d/udp", "1.2.3.4", Some("k"), "test")
            .expect("shared");
        let tcp = c
            .load_balancers
            .values()
            .find(|l| l.service == "d/tcp")
            .map(|l| l.id.clone());
        c.delete_load_balancer(&tcp.expect("lb"), "test");
        assert_eq!(
            c.addresses["1.2.3.4"].load_balancer.as_deref(),
            c.load_balancers.values().next().map(|l| l.id.as_str()),
            "the address stays with the Service still sharing it"
        );
    }

    #[test]
    fn a_pool_service_gets_the_first_free_pool_address() {
        let mut c = CloudState::default();
        c.create_pool("public", &["10.0.0.1".into(), "10.0.0.2".into()], "test")
            .expect("pool");
        c.create_load_balancer("a/one", "10.0.0.1", None, "test")
            .expect("free");
        assert_eq!(
            place(&c, "a/two", &Ask::Pool("public".into()), None),
            Placement::On("10.0.0.2".into())
        );
        assert!(matches!(
            place(&c, "a/two", &Ask::Pool("nope".into()), None),
            Placement::Fail(_)
        ));
    }

    #[test]
    fn hostnames_come_from_both_external_dns_prefixes() {
        let svc = json!({"metadata": {"annotations": {
            "external-dns.alpha.kubernetes.io/hostname": "a.example.com.,b.example.com",
            "external-dns.kubernetes.io/hostname": "c.example.com"}}});
        assert_eq!(
            hostnames_of(&svc),
            vec!["a.example.com", "b.example.com", "c.example.com"]
        );
    }
}
