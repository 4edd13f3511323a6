//! Load-balancer bindings: how each LoadBalancer Service's address is pinned (if it is),
//! the address it answers on now, and the DNS names external-dns publishes for it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{owned, str_at};

/// The AWS Load Balancer Controller's pin: Elastic IP allocation ids, one per subnet.
pub const AWS_EIPS: &str = "service.beta.kubernetes.io/aws-load-balancer-eip-allocations";
const AZURE_PIP: &str = "service.beta.kubernetes.io/azure-pip-name";
const AZURE_IPV4: &str = "service.beta.kubernetes.io/azure-load-balancer-ipv4";
pub(super) const AZURE_RG: &str = "service.beta.kubernetes.io/azure-load-balancer-resource-group";
const METALLB: &[&str] = &[
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
    "metallb.universe.tf/load-balancer-ips",
];
/// Every annotation through which a Service pins its address, on any provider. A blank
/// value pins nothing (the providers read it as no address); `spec.loadBalancerIP` is the
/// other pin.
pub const PIN_ANNOTATIONS: [&str; 6] = [
    AWS_EIPS,
    AZURE_PIP,
    AZURE_IPV4,
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
    "metallb.universe.tf/load-balancer-ips",
];

/// Annotations only the AWS load-balancer controllers read: a Service carrying one is on
/// AWS, where `spec.loadBalancerIP` is ignored.
const AWS_ONLY: &[&str] = &[
    "service.beta.kubernetes.io/aws-load-balancer-type",
    "service.beta.kubernetes.io/aws-load-balancer-scheme",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type",
    AWS_EIPS,
];
const SHARE_KEYS: &[&str] = &[
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
];

/// What is wrong with how a Service pins its address: checked, not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinProblem {
    /// The pin names addresses the Service does not answer on.
    Mismatch {
        pinned: Vec<String>,
        answers: Vec<String>,
    },
    /// `spec.loadBalancerIP` on AWS, whose controllers ignore it.
    IgnoredOnAws { address: String },
    /// A MetalLB address shared with other Services (`allow-shared-ip`): a restore must
    /// bring them back together, on the same key.
    Shared { address: String, key: String },
}

/// Check a Service's pin against the address it answers on and its provider's rules.
pub fn pin_problems(svc: &Value) -> Vec<PinProblem> {
    let mut out = Vec::new();
    let Some(b) = extract(svc) else {
        return out;
    };
    let on_aws = AWS_ONLY.iter().any(|k| annotation(svc, k).is_some());
    if on_aws && let Some(ip) = str_at(svc, "/spec/loadBalancerIP") {
        out.push(PinProblem::IgnoredOnAws {
            address: ip.to_owned(),
        });
    }
    let pinned_ips: Vec<String> = match &b.pin {
        Some(Pin::LoadBalancerIp { address }) => vec![address.clone()],
        Some(Pin::Metallb { addresses }) => addresses.clone(),
        Some(Pin::Azure { ipv4: Some(ip), .. }) => vec![ip.clone()],
        _ => Vec::new(),
    };
    // On AWS a loadBalancerIP is ignored (reported above), not a pin that moved.
    let ignored = on_aws && matches!(b.pin, Some(Pin::LoadBalancerIp { .. }));
    let answers_on_pin = pinned_ips.iter().any(|p| b.ingress_ips.contains(p));
    if !pinned_ips.is_empty() && !b.ingress_ips.is_empty() && !answers_on_pin && !ignored {
        out.push(PinProblem::Mismatch {
            pinned: pinned_ips.clone(),
            answers: b.ingress_ips.clone(),
        });
    }
    if let Some(key) = SHARE_KEYS.iter().find_map(|k| annotation(svc, k))
        && let Some(address) = pinned_ips.first().or(b.ingress_ips.first())
    {
        out.push(PinProblem::Shared {
            address: address.clone(),
            key: key.to_owned(),
        });
    }
    out
}

/// external-dns reads both prefixes; the `alpha` one is the historical default.
const DNS_PREFIXES: &[&str] = &[
    "external-dns.alpha.kubernetes.io/",
    "external-dns.kubernetes.io/",
];

/// How a Service's address is pinned, per provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "kebab-case")]
pub enum Pin {
    /// AWS Load Balancer Controller: Elastic IP allocations, one per subnet.
    AwsEip { allocations: Vec<String> },
    /// Azure: a named public IP resource and/or an explicit IPv4 address.
    #[serde(rename_all = "camelCase")]
    Azure {
        pip_name: Option<String>,
        ipv4: Option<String>,
        resource_group: Option<String>,
    },
    /// GCP (and any provider honouring it): `spec.loadBalancerIP` with a reserved address.
    LoadBalancerIp { address: String },
    /// MetalLB address annotations (current or legacy prefix).
    Metallb { addresses: Vec<String> },
}

/// One LoadBalancer Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerBinding {
    pub namespace: String,
    pub name: String,
    pub pin: Option<Pin>,
    /// Whether the address survives a cold start: pinned, not allocated by a controller.
    pub pinned: bool,
    /// Current addresses from `status.loadBalancer.ingress`.
    pub ingress_ips: Vec<String>,
    pub ingress_hostnames: Vec<String>,
    /// DNS names external-dns publishes (`hostname` annotations, both prefixes).
    pub dns_names: Vec<String>,
    /// Explicit DNS targets (`target` annotations), if any.
    pub dns_targets: Vec<String>,
    pub load_balancer_class: Option<String>,
}

fn annotation<'a>(svc: &'a Value, key: &str) -> Option<&'a str> {
    svc.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The provider mechanism that pins a Service to an address: what `stop` writes before the
/// snapshot and what a restore writes on a Service that was never pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum PinStyle {
    /// `spec.loadBalancerIP` (GCP, and the simulated cloud).
    LoadBalancerIp,
    /// `metallb.io/loadBalancerIPs`.
    Metallb,
    /// `service.beta.kubernetes.io/azure-load-balancer-ipv4`.
    Azure,
    /// `service.beta.kubernetes.io/aws-load-balancer-eip-allocations` (needs the address's
    /// Elastic IP allocation id).
    Aws,
}

/// A pin as two merge patches: the one that pins a Service and the one that takes it off.
#[derive(Debug, Clone, PartialEq)]
pub struct PinPatch {
    pub patch: Value,
    pub undo: Value,
    /// Where the pin is written, for the plan and the stop report.
    pub mechanism: String,
}

impl PinStyle {
    /// The style this Service must be pinned with: one MetalLB serves (any `metallb.*`
    /// annotation) is pinned the way MetalLB reads pins, whatever the cluster-wide style.
    pub fn for_service(self, svc: &Value) -> PinStyle {
        let metallb = svc
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .is_some_and(|a| a.keys().any(|k| k.starts_with("metallb.")));
        if metallb { PinStyle::Metallb } else { self }
    }

    /// The patches that pin a Service to `ip`. AWS pins an Elastic IP allocation, not an
    /// address: without one (an NLB's own address) there is nothing to pin to, and the error
    /// says so.
    pub fn pin(self, ip: &str, allocation: Option<&str>) -> Result<PinPatch, String> {
        let annotation = |key: &str, value: &str, mechanism: String| PinPatch {
            patch: json!({"metadata": {"annotations": {key: value}}}),
            undo: json!({"metadata": {"annotations": {key: null}}}),
            mechanism,
        };
        match self {
            PinStyle::LoadBalancerIp => Ok(PinPatch {
                patch: json!({"spec": {"loadBalancerIP": ip}}),
                undo: json!({"spec": {"loadBalancerIP": null}}),
                mechanism: "spec.loadBalancerIP".into(),
            }),
            PinStyle::Metallb => Ok(annotation(METALLB[0], ip, METALLB[0].into())),
            PinStyle::Azure => Ok(annotation(AZURE_IPV4, ip, AZURE_IPV4.into())),
            PinStyle::Aws => match allocation {
                Some(a) => Ok(annotation(AWS_EIPS, a, format!("EIP allocation {a}"))),
                None => Err(format!("{ip} has no Elastic IP allocation to pin to")),
            },
        }
    }
}

/// Whether a Service names its address in any provider's form (a blank pin is none).
pub fn is_pinned(svc: &Value) -> bool {
    pin_of(svc).is_some()
}

/// How a Service pins its address, if it does.
pub fn pin_of(svc: &Value) -> Option<Pin> {
    if let Some(eips) = annotation(svc, AWS_EIPS) {
        return Some(Pin::AwsEip {
            allocations: split_list(eips),
        });
    }
    let pip = annotation(svc, AZURE_PIP);
    let ipv4 = annotation(svc, AZURE_IPV4);
    if pip.is_some() || ipv4.is_some() {
        return Some(Pin::Azure {
            pip_name: owned(pip),
            ipv4: owned(ipv4),
            resource_group: owned(annotation(svc, AZURE_RG)),
        });
    }
    if let Some(ips) = METALLB.iter().find_map(|k| annotation(svc, k)) {
        return Some(Pin::Metallb {
            addresses: split_list(ips),
        });
    }
    str_at(svc, "/spec/loadBalancerIP")
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
        .map(|ip| Pin::LoadBalancerIp {
            address: ip.to_owned(),
        })
}

fn dns(svc: &Value, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = DNS_PREFIXES
        .iter()
        .filter_map(|p| annotation(svc, &format!("{p}{suffix}")))
        .flat_map(split_list)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The binding of one Service, if it is of type LoadBalancer.
/// Whether a Service is of type LoadBalancer: the only kind a cloud gives an address to.
pub fn is_load_balancer(svc: &Value) -> bool {
    str_at(svc, "/spec/type") == Some("LoadBalancer")
}

pub fn extract(svc: &Value) -> Option<LoadBalancerBinding> {
    if !is_load_balancer(svc) {
        return None;
    }
    let ingress = svc
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array);
    let field = |f: &str| -> Vec<String> {
        ingress
            .into_iter()
            .flatten()
            .filter_map(|i| i.get(f).and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    };
    let pin = pin_of(svc);
    Some(LoadBalancerBinding {
        namespace: str_at(svc, "/metadata/namespace")
            .unwrap_or("default")
            .to_owned(),
        name: str_at(svc, "/metadata/name")?.to_owned(),
        pinned: pin.is_some(),
        pin,
        ingress_ips: field("ip"),
        ingress_hostnames: field("hostname"),
        dns_names: dns(svc, "hostname"),
        dns_targets: dns(svc, "target"),
        load_balancer_class: owned(str_at(svc, "/spec/loadBalancerClass")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(annotations: Value, spec_extra: Value, ingress: Value) -> Value {
        let mut spec = json!({"type": "LoadBalancer", "ports": [{"port": 443}]});
        for (k, v) in spec_extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
               "spec": spec, "status": {"loadBalancer": {"ingress": ingress}}})
    }

    #[test]
    fn every_provider_pin_is_recognised() {
        let cases = [
            (
                "aws eips",
                json!({AWS_EIPS: "eipalloc-1, eipalloc-2"}),
                json!({}),
                Some(Pin::AwsEip {
                    allocations: vec!["eipalloc-1".into(), "eipalloc-2".into()],
                }),
            ),
            (
                "azure pip",
                json!({AZURE_PIP: "pip-web", AZURE_RG: "rg-net"}),
                json!({}),
                Some(Pin::Azure {
                    pip_name: Some("pip-web".into()),
                    ipv4: None,
                    resource_group: Some("rg-net".into()),
                }),
            ),
            (
                "azure ipv4",
                json!({AZURE_IPV4: "20.1.2.3"}),
                json!({}),
                Some(Pin::Azure {
                    pip_name: None,
                    ipv4: Some("20.1.2.3".into()),
                    resource_group: None,
                }),
            ),
            (
                "gcp loadBalancerIP",
                json!({}),
                json!({"loadBalancerIP": "34.1.2.3"}),
                Some(Pin::LoadBalancerIp {
                    address: "34.1.2.3".into(),
                }),
            ),
            (
                "metallb",
                json!({"metallb.io/loadBalancerIPs": "192.168.1.10"}),
                json!({}),
                Some(Pin::Metallb {
                    addresses: vec!["192.168.1.10".into()],
                }),
            ),
            (
                "metallb legacy",
                json!({"metallb.universe.tf/loadBalancerIPs": "192.168.1.11"}),
                json!({}),
                Some(Pin::Metallb {
                    addresses: vec!["192.168.1.11".into()],
                }),
            ),
            ("controller allocated", json!({}), json!({}), None),
            (
                "empty annotation is no pin",
                json!({AWS_EIPS: " "}),
                json!({}),
                None,
            ),
        ];
        for (name, ann, spec, pin) in cases {
            let b = extract(&svc(ann, spec, json!([{"ip": "1.2.3.4"}]))).unwrap();
            assert_eq!(b.pinned, pin.is_some(), "{name}");
            assert_eq!(b.pin, pin, "{name}");
            assert_eq!(b.ingress_ips, vec!["1.2.3.4".to_owned()], "{name}");
        }
    }

    #[test]
    fn pins_are_checked_against_the_answering_address_and_the_provider() {
        let cases = [
            (
                "pin answers elsewhere",
                svc(
                    json!({}),
                    json!({"loadBalancerIP": "5.5.5.5"}),
                    json!([{"ip": "1.2.3.4"}]),
                ),
                vec![PinProblem::Mismatch {
                    pinned: vec!["5.5.5.5".into()],
                    answers: vec!["1.2.3.4".into()],
                }],
            ),
            (
                "loadBalancerIP on AWS",
                svc(
                    json!({"service.beta.kubernetes.io/aws-load-balancer-type": "external"}),
                    json!({"loadBalancerIP": "1.2.3.4"}),
                    json!([{"hostname": "k8s.elb.amazonaws.com"}]),
                ),
                vec![PinProblem::IgnoredOnAws {
                    address: "1.2.3.4".into(),
                }],
            ),
            (
                "shared MetalLB address",
                svc(
                    json!({"metallb.io/allow-shared-ip": "dns"}),
                    json!({"loadBalancerIP": "1.2.3.4"}),
                    json!([{"ip": "1.2.3.4"}]),
                ),
                vec![PinProblem::Shared {
                    address: "1.2.3.4".into(),
                    key: "dns".into(),
                }],
            ),
            (
                "a pin that holds",
                svc(
                    json!({"metallb.io/loadBalancerIPs": "1.2.3.4"}),
                    json!({}),
                    json!([{"ip": "1.2.3.4"}]),
                ),
                vec![],
            ),
        ];
        for (name, s, want) in cases {
            assert_eq!(pin_problems(&s), want, "{name}");
        }
    }

    #[test]
    fn dns_names_come_from_both_external_dns_prefixes() {
        let b = extract(&svc(
            json!({"external-dns.alpha.kubernetes.io/hostname": "a.example.com,b.example.com",
                   "external-dns.kubernetes.io/hostname": "c.example.com",
                   "external-dns.kubernetes.io/target": "lb.example.net"}),
            json!({}),
            json!([{"hostname": "k8s-shop-web.elb.amazonaws.com"}]),
        ))
        .unwrap();
        assert_eq!(
            b.dns_names,
            ["a.example.com", "b.example.com", "c.example.com"]
        );
        assert_eq!(b.dns_targets, ["lb.example.net"]);
        assert_eq!(b.ingress_hostnames, ["k8s-shop-web.elb.amazonaws.com"]);
        assert!(b.ingress_ips.is_empty());
    }

    #[test]
    fn only_load_balancer_services_bind_an_address() {
        let cluster_ip = json!({"metadata": {"name": "x"}, "spec": {"type": "ClusterIP"}});
        assert_eq!(extract(&cluster_ip), None);
        let pending =
            json!({"metadata": {"name": "x", "namespace": "a"}, "spec": {"type": "LoadBalancer"}});
        let b = extract(&pending).unwrap();
        assert!(b.ingress_ips.is_empty() && !b.pinned);
    }
}
