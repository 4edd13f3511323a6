//! The Service load-balancer controller and external-dns, as one: a LoadBalancer Service
//! gets a load balancer on its pinned address when that address exists and is free,
//! otherwise on a NEW address; naming the address it already holds reserves it (so it
//! survives the cluster); hostname annotations become DNS records pointing at it.

use serde_json::{Value, json};

use super::{Requeue, get, patch_main, set_status, str_at};
use crate::status::ApiError;
use crate::{Actor, Sim};

const CLEANUP_FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";

fn controller() -> Actor {
    Actor::system("system:serviceaccount:kube-system:service-controller")
}

fn annotation<'a>(svc: &'a Value, key: &str) -> Option<&'a str> {
    svc.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The address a Service pins, in any provider's form: an IP, an EIP allocation id, or an
/// Azure public IP name (all resolved against the cloud).
pub fn pin_of(svc: &Value) -> Option<String> {
    annotation(
        svc,
        "service.beta.kubernetes.io/aws-load-balancer-eip-allocations",
    )
    .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned())
    .or_else(|| {
        annotation(svc, "service.beta.kubernetes.io/azure-load-balancer-ipv4").map(str::to_owned)
    })
    .or_else(|| annotation(svc, "service.beta.kubernetes.io/azure-pip-name").map(str::to_owned))
    .or_else(|| {
        annotation(svc, "metallb.io/loadBalancerIPs")
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned())
    })
    .or_else(|| {
        annotation(svc, "metallb.universe.tf/loadBalancerIPs")
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned())
    })
    .or_else(|| annotation(svc, "metallb.universe.tf/load-balancer-ips").map(str::to_owned))
    .or_else(|| {
        str_at(svc, "/spec/loadBalancerIP")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    })
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

pub fn reconcile(sim: &Sim, ns: &str, name: &str) -> Result<Requeue, ApiError> {
    let Some(svc) = get(sim, "", "services", ns, name) else {
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
        let cloud = sim.cloud.lock();
        cloud
            .load_balancers
            .values()
            .find(|lb| lb.service == key)
            .cloned()
    };
    if !is_lb || deleting {
        if let Some(lb) = current_lb {
            sim.cloud.lock().delete_load_balancer(
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
            patch_main(
                sim,
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
        patch_main(
            sim,
            "",
            "services",
            ns,
            name,
            &json!({"metadata": {"finalizers": finalizers}}),
            &controller(),
        )?;
    }
    let pin = pin_of(&svc);
    let ip = {
        let mut cloud = sim.cloud.lock();
        let pinned = pin.as_deref().and_then(|p| cloud.find_address(p).cloned());
        match (&current_lb, &pinned) {
            // Holding the pinned address already: make sure it is a reservation.
            (Some(lb), Some(a)) if a.ip == lb.ip => {
                let _ = cloud.reserve_address(&a.ip, &format!("pinned by Service {key}"));
                lb.ip.clone()
            }
            // The pin moved to another free address: move the load balancer.
            (Some(lb), Some(a)) if a.load_balancer.is_none() => {
                cloud.delete_load_balancer(&lb.id, &format!("Service {key} pinned to {}", a.ip));
                let _ = cloud.reserve_address(&a.ip, &format!("pinned by Service {key}"));
                cloud
                    .create_load_balancer(&key, &a.ip, &format!("Service {key}"))
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .ip
            }
            (Some(lb), _) => lb.ip.clone(),
            (None, Some(a)) if a.load_balancer.is_none() => {
                let _ = cloud.reserve_address(&a.ip, &format!("pinned by Service {key}"));
                cloud
                    .create_load_balancer(
                        &key,
                        &a.ip,
                        &format!("Service {key} on its pinned address"),
                    )
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .ip
            }
            (None, _) => {
                let why = match (&pin, &pinned) {
                    (None, _) => format!("allocated for Service {key} (no pinned address)"),
                    (Some(p), None) => {
                        format!("allocated for Service {key}: pinned address {p} does not exist")
                    }
                    (Some(p), Some(a)) => format!(
                        "allocated for Service {key}: pinned address {p} is in use by {}",
                        a.load_balancer.as_deref().unwrap_or("?")
                    ),
                };
                let a = cloud.allocate_address(false, None, &why);
                cloud
                    .create_load_balancer(&key, &a.ip, &format!("Service {key}"))
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .ip
            }
        }
    };
    let hostnames = hostnames_of(&svc);
    if !hostnames.is_empty() {
        let target = dns_target(&svc).unwrap_or_else(|| ip.clone());
        let mut cloud = sim.cloud.lock();
        for h in &hostnames {
            cloud.upsert_dns(h, &target, &format!("external-dns for Service {key}"));
        }
    }
    if let Some(svc) = get(sim, "", "services", ns, name) {
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
    fn every_provider_pin_is_recognised() {
        let cases = [
            (
                json!({"metadata": {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-eip-allocations": "eipalloc-1,eipalloc-2"}}}),
                Some("eipalloc-1"),
            ),
            (
                json!({"metadata": {"annotations": {"service.beta.kubernetes.io/azure-pip-name": "pip-web"}}}),
                Some("pip-web"),
            ),
            (
                json!({"metadata": {"annotations": {"service.beta.kubernetes.io/azure-load-balancer-ipv4": "1.2.3.4"}}}),
                Some("1.2.3.4"),
            ),
            (
                json!({"metadata": {"annotations": {"metallb.io/loadBalancerIPs": "10.0.0.5"}}}),
                Some("10.0.0.5"),
            ),
            (
                json!({"metadata": {"annotations": {"metallb.universe.tf/loadBalancerIPs": "10.0.0.6"}}}),
                Some("10.0.0.6"),
            ),
            (
                json!({"metadata": {}, "spec": {"loadBalancerIP": "5.6.7.8"}}),
                Some("5.6.7.8"),
            ),
            (json!({"metadata": {}, "spec": {}}), None),
        ];
        for (svc, want) in cases {
            assert_eq!(pin_of(&svc).as_deref(), want, "{svc}");
        }
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
