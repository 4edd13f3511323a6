//! The verdict rules, as pure functions: (binding, what the cloud was observed to hold) →
//! [`Verdict`]. Providers call [`volume`], [`address`], [`bucket`] and [`dns`] with the facts
//! they fetched; which targets a binding has is decided here too ([`address_targets`],
//! [`bucket_target`], [`dns_names`]), so every provider checks the same things.
//!
//! The rules in one table (see also `docs/runbooks/dr-drill.md`):
//!
//! | binding | missing | moved | in-use-elsewhere | in-use (expected) |
//! |---|---|---|---|---|
//! | disk | not found, deleting, deleted, error | other zone than the PV's node affinity | — | attached (to production's node) |
//! | address | not found / released | — | associated with an instance, an ENI, or a load balancer that is not the Service's | on the Service's own load balancer |
//! | bucket | not found | other region than the cluster's | — | — (`unprotected` when versioning is off) |
//! | DNS name | no record | record points elsewhere | — | — |

use serde::{Deserialize, Serialize};

use super::{Kind, Status, Verdict};
use crate::bindings::{BucketBinding, BucketKind, LoadBalancerBinding, Pin, VolumeBinding};

/// What a provider observed about one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    /// The cloud answered: there is no such thing.
    Absent,
    /// The cloud could not be asked, or did not say (no permission, wrong provider): why.
    Unknown(String),
}

/// A disk as the cloud sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeFacts {
    pub zone: Option<String>,
    /// The provider's state word: `available`, `in-use`, `creating`, `deleting`, `error`…
    pub state: String,
    /// Instances (or nodes) it is attached to.
    pub attached_to: Vec<String>,
}

/// What an address is associated with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Association {
    /// A load balancer, by name; `service` when the cloud knows which Service it serves.
    LoadBalancer {
        name: String,
        service: Option<String>,
    },
    Instance(String),
    /// A network interface that belongs to no load balancer the provider recognised.
    NetworkInterface {
        id: String,
        description: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressFacts {
    pub public_ip: Option<String>,
    pub association: Option<Association>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    Enabled,
    Suspended,
    /// Never enabled.
    Off,
    /// Not known (the provider could not read it).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketFacts {
    pub region: Option<String>,
    pub versioning: Versioning,
    /// Object lock, described (`COMPLIANCE 30 days`, `enabled`), if on.
    pub object_lock: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsFacts {
    /// The record's values: addresses, CNAME or alias targets.
    pub values: Vec<String>,
}

/// How a Service's address is looked up in the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressKey {
    /// An EIP allocation id (`eipalloc-…`).
    Allocation(String),
    /// A public IP.
    Ip(String),
    /// A provider resource name (Azure public IP name).
    Name(String),
}

impl AddressKey {
    pub fn as_str(&self) -> &str {
        match self {
            AddressKey::Allocation(s) | AddressKey::Ip(s) | AddressKey::Name(s) => s,
        }
    }
}

/// The addresses a Service must get back: its pin, else the address it answered on. Empty
/// when the snapshot recorded neither (an ingress hostname only).
pub fn address_targets(lb: &LoadBalancerBinding) -> Vec<AddressKey> {
    match &lb.pin {
        Some(Pin::AwsEip { allocations }) => allocations
            .iter()
            .cloned()
            .map(AddressKey::Allocation)
            .collect(),
        Some(Pin::Azure { ipv4: Some(ip), .. }) => vec![AddressKey::Ip(ip.clone())],
        Some(Pin::Azure {
            pip_name: Some(name),
            ..
        }) => vec![AddressKey::Name(name.clone())],
        Some(Pin::Azure { .. }) => Vec::new(),
        Some(Pin::LoadBalancerIp { address }) => vec![AddressKey::Ip(address.clone())],
        Some(Pin::Metallb { addresses }) => addresses.iter().cloned().map(AddressKey::Ip).collect(),
        None => lb.ingress_ips.iter().cloned().map(AddressKey::Ip).collect(),
    }
}

/// The bucket a bucket binding names (a Crossplane resource is named after its bucket
/// unless `crossplane.io/external-name` says otherwise).
pub fn bucket_target(b: &BucketBinding) -> Option<String> {
    b.bucket
        .clone()
        .or_else(|| (b.kind == BucketKind::Crossplane).then(|| b.name.clone()))
}

/// The bucket bindings worth a verdict: a COSI `Bucket` is skipped when a claim names the
/// same bucket (one bucket, one verdict).
pub fn buckets_to_check(all: &[BucketBinding]) -> Vec<&BucketBinding> {
    all.iter()
        .filter(|b| {
            b.kind != BucketKind::CosiBucket
                || !all.iter().any(|o| {
                    o.kind != BucketKind::CosiBucket
                        && bucket_target(o).is_some()
                        && bucket_target(o) == bucket_target(b)
                })
        })
        .collect()
}

/// The DNS names a Service answers on, normalised.
pub fn dns_names(lb: &LoadBalancerBinding) -> Vec<String> {
    let mut out: Vec<String> = lb.dns_names.iter().map(|n| normalise_host(n)).collect();
    out.dedup();
    out
}

pub fn volume_subject(v: &VolumeBinding) -> String {
    v.pv.clone()
}

pub fn service_subject(lb: &LoadBalancerBinding) -> String {
    format!("{}/{}", lb.namespace, lb.name)
}

pub fn bucket_subject(b: &BucketBinding) -> String {
    let kind = match b.kind {
        BucketKind::CosiBucketClaim => "BucketClaim",
        BucketKind::CosiBucket => "Bucket.objectstorage.k8s.io",
        BucketKind::Crossplane => "Bucket.crossplane",
        BucketKind::CrossplaneNamespaced => "Bucket.crossplane-namespaced",
        BucketKind::Ack => "Bucket.ack",
        BucketKind::RookObc => "ObjectBucketClaim",
    };
    match &b.namespace {
        Some(ns) => format!("{kind} {ns}/{}", b.name),
        None => format!("{kind} {}", b.name),
    }
}

fn verdict(kind: Kind, subject: String, target: &str, status: Status, reason: String) -> Verdict {
    Verdict {
        kind,
        subject,
        target: target.to_owned(),
        status,
        reason,
        holders: Vec::new(),
    }
}

/// The verdict on a volume's disk.
pub fn volume(v: &VolumeBinding, seen: Lookup<VolumeFacts>) -> Verdict {
    let holders = match &seen {
        Lookup::Found(f) => f.attached_to.clone(),
        _ => Vec::new(),
    };
    let (status, reason) = match seen {
        Lookup::Unknown(why) => (Status::Unverifiable, why),
        Lookup::Absent => (
            Status::Missing,
            "no such disk: deleted, or in another account or region; the volume's data is not there to restore".to_owned(),
        ),
        Lookup::Found(f) => match (&v.zone, &f.zone) {
            (Some(want), Some(got)) if want != got => (
                Status::Moved,
                format!(
                    "disk is in zone {got}, the PV's node affinity says {want}: pods cannot mount it"
                ),
            ),
            _ => match f.state.as_str() {
                "deleting" | "deleted" => (Status::Missing, format!("disk is {}", f.state)),
                "error" => (
                    Status::Missing,
                    "disk is in state error: unusable".to_owned(),
                ),
                _ if !f.attached_to.is_empty() || f.state == "in-use" => (
                    Status::InUse,
                    format!(
                        "attached to {}: expected while production runs; after a cold start the old nodes are gone and it detaches",
                        if f.attached_to.is_empty() {
                            "an instance".to_owned()
                        } else {
                            f.attached_to.join(", ")
                        }
                    ),
                ),
                state => (
                    Status::Ok,
                    format!(
                        "{state}{}",
                        f.zone.map(|z| format!(" in {z}")).unwrap_or_default()
                    ),
                ),
            },
        },
    };
    let mut out = verdict(Kind::Volume, volume_subject(v), &v.disk_id, status, reason);
    if status == Status::InUse {
        out.holders = holders;
    }
    out
}

/// Whether a load balancer is the one the snapshot recorded for this Service: the cloud
/// says it serves the Service, or the Service's recorded ingress hostname is the load
/// balancer's DNS name (`<name>-<hash>.elb.<region>.amazonaws.com`).
fn is_services_own(lb: &LoadBalancerBinding, name: &str, service: Option<&str>) -> bool {
    if let Some(s) = service {
        return s == service_subject(lb);
    }
    let name = name.to_ascii_lowercase();
    lb.ingress_hostnames.iter().any(|h| {
        let h = normalise_host(h);
        h == name || h.starts_with(&format!("{name}-")) || h.starts_with(&format!("{name}."))
    })
}

/// The verdict on one of a Service's addresses.
pub fn address(lb: &LoadBalancerBinding, key: &AddressKey, seen: Lookup<AddressFacts>) -> Verdict {
    let unpinned = if lb.pinned {
        ""
    } else {
        " (not pinned: released if the cluster is deleted; `coldstart stop` pins it)"
    };
    let (status, reason) = match seen {
        Lookup::Unknown(why) => (Status::Unverifiable, why),
        Lookup::Absent => (
            Status::Missing,
            format!("no such address: released or never allocated in this account{unpinned}"),
        ),
        Lookup::Found(f) => match f.association {
            None => (
                Status::Ok,
                format!(
                    "allocated{} and free for the restore to take{unpinned}",
                    f.public_ip.map(|ip| format!(" ({ip})")).unwrap_or_default()
                ),
            ),
            Some(Association::LoadBalancer { name, service })
                if is_services_own(lb, &name, service.as_deref()) =>
            {
                (
                    Status::InUse,
                    format!(
                        "on this Service's own load balancer {name}: expected while production runs{unpinned}"
                    ),
                )
            }
            Some(Association::LoadBalancer { name, service }) => (
                Status::InUseElsewhere,
                format!(
                    "associated with load balancer {name}{}, not the one recorded for {}",
                    service
                        .map(|s| format!(" (Service {s})"))
                        .unwrap_or_default(),
                    service_subject(lb)
                ),
            ),
            Some(Association::Instance(id)) => (
                Status::InUseElsewhere,
                format!("associated with instance {id}, not a load balancer of this Service"),
            ),
            Some(Association::NetworkInterface { id, description }) => (
                Status::InUseElsewhere,
                format!(
                    "associated with network interface {id}{}, not a load balancer of this Service",
                    description.map(|d| format!(" ({d})")).unwrap_or_default()
                ),
            ),
        },
    };
    verdict(
        Kind::Address,
        service_subject(lb),
        key.as_str(),
        status,
        reason,
    )
}

/// A verdict for a Service whose snapshot recorded no address at all.
pub fn address_unrecorded(lb: &LoadBalancerBinding) -> Verdict {
    let target = lb
        .ingress_hostnames
        .first()
        .cloned()
        .unwrap_or_else(|| "(none)".to_owned());
    verdict(
        Kind::Address,
        service_subject(lb),
        &target,
        Status::Unverifiable,
        "no pinned or recorded address (hostname only): nothing to check; a cold start gets a new load balancer".to_owned(),
    )
}

/// The verdict on a bucket. `expected_region` is the cluster's region, when known.
pub fn bucket(
    b: &BucketBinding,
    expected_region: Option<&str>,
    seen: Lookup<BucketFacts>,
) -> Verdict {
    let Some(name) = bucket_target(b) else {
        return verdict(
            Kind::Bucket,
            bucket_subject(b),
            "(none)",
            Status::Unverifiable,
            "the claim names no bucket (it would create a new one)".to_owned(),
        );
    };
    let (status, reason) = match seen {
        Lookup::Unknown(why) => (Status::Unverifiable, why),
        Lookup::Absent => (
            Status::Missing,
            "no such bucket: deleted, or owned by another account".to_owned(),
        ),
        Lookup::Found(f) => {
            let lock = f
                .object_lock
                .as_deref()
                .map(|l| format!("; object lock {l}"))
                .unwrap_or_default();
            match (expected_region, f.region.as_deref()) {
                (Some(want), Some(got)) if want != got => (
                    Status::Moved,
                    format!("bucket is in region {got}, the cluster is in {want}"),
                ),
                (_, region) => {
                    let region = region.map(|r| format!(" in {r}")).unwrap_or_default();
                    match f.versioning {
                        Versioning::Enabled => (
                            Status::Ok,
                            format!("exists{region}; versioning enabled{lock}"),
                        ),
                        Versioning::Suspended | Versioning::Off => (
                            Status::Unprotected,
                            format!(
                                "exists{region}; versioning {}: deleted or overwritten objects cannot be recovered{lock}",
                                if f.versioning == Versioning::Off {
                                    "off"
                                } else {
                                    "suspended"
                                }
                            ),
                        ),
                        Versioning::Unknown => (
                            Status::Ok,
                            format!("exists{region}; versioning not readable{lock}"),
                        ),
                    }
                }
            }
        }
    };
    verdict(Kind::Bucket, bucket_subject(b), &name, status, reason)
}

/// A host name or record value, compared case-insensitively without the trailing dot or
/// the `dualstack.` prefix Route53 aliases carry.
pub fn normalise_host(s: &str) -> String {
    let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
    s.strip_prefix("dualstack.").map(str::to_owned).unwrap_or(s)
}

/// The verdict on one DNS name of a Service: it must resolve to what the snapshot says
/// (the external-dns target if set, else the recorded ingress addresses).
pub fn dns(lb: &LoadBalancerBinding, name: &str, seen: Lookup<DnsFacts>) -> Verdict {
    let expected: Vec<String> = if lb.dns_targets.is_empty() {
        lb.ingress_ips
            .iter()
            .chain(lb.ingress_hostnames.iter())
            .map(|s| normalise_host(s))
            .collect()
    } else {
        lb.dns_targets.iter().map(|s| normalise_host(s)).collect()
    };
    let (status, reason) = match seen {
        Lookup::Unknown(why) => (Status::Unverifiable, why),
        Lookup::Absent => (
            Status::Missing,
            "no DNS record: clients cannot find the Service".to_owned(),
        ),
        Lookup::Found(_) if expected.is_empty() => (
            Status::Unverifiable,
            "the snapshot recorded no address to compare the record with".to_owned(),
        ),
        Lookup::Found(f) => {
            let values: Vec<String> = f.values.iter().map(|v| normalise_host(v)).collect();
            if values.iter().any(|v| expected.contains(v)) {
                (Status::Ok, format!("points at {}", values.join(", ")))
            } else {
                (
                    Status::Moved,
                    format!(
                        "points at {}, the snapshot says {}",
                        if values.is_empty() {
                            "nothing".to_owned()
                        } else {
                            values.join(", ")
                        },
                        expected.join(", ")
                    ),
                )
            }
        }
    };
    verdict(Kind::Dns, service_subject(lb), name, status, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::Provider;

    fn vol(zone: Option<&str>) -> VolumeBinding {
        VolumeBinding {
            pv: "pv-data".into(),
            provider: Provider::Aws,
            csi_driver: "ebs.csi.aws.com".into(),
            source: "csi".into(),
            volume_handle: "vol-1".into(),
            disk_id: "vol-1".into(),
            zone: zone.map(str::to_owned),
            size: None,
            storage_class: None,
            reclaim_policy: None,
            claim: None,
            fs_type: None,
            data_policy: Default::default(),
            latency_critical: false,
            quiesce: false,
            cloud_snapshot: None,
        }
    }

    fn facts(zone: &str, state: &str, attached: &[&str]) -> Lookup<VolumeFacts> {
        Lookup::Found(VolumeFacts {
            zone: Some(zone.into()),
            state: state.into(),
            attached_to: attached.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    #[test]
    fn a_disk_is_judged_by_existence_zone_state_and_attachment() {
        let cases = [
            (
                "available in its zone",
                Some("eu-west-1a"),
                facts("eu-west-1a", "available", &[]),
                Status::Ok,
            ),
            (
                "attached to production's node",
                Some("eu-west-1a"),
                facts("eu-west-1a", "in-use", &["i-0prod"]),
                Status::InUse,
            ),
            ("gone", Some("eu-west-1a"), Lookup::Absent, Status::Missing),
            (
                "being deleted",
                Some("eu-west-1a"),
                facts("eu-west-1a", "deleting", &[]),
                Status::Missing,
            ),
            (
                "broken",
                None,
                facts("eu-west-1a", "error", &[]),
                Status::Missing,
            ),
            (
                "in another zone",
                Some("eu-west-1a"),
                facts("eu-west-1b", "available", &[]),
                Status::Moved,
            ),
            (
                "no recorded zone",
                None,
                facts("eu-west-1b", "available", &[]),
                Status::Ok,
            ),
            (
                "no permission",
                None,
                Lookup::Unknown("denied".into()),
                Status::Unverifiable,
            ),
        ];
        for (name, zone, seen, want) in cases {
            let v = volume(&vol(zone), seen);
            assert_eq!(v.status, want, "{name}: {}", v.reason);
            assert_eq!(
                (v.kind, v.subject.as_str(), v.target.as_str()),
                (Kind::Volume, "pv-data", "vol-1"),
                "{name}"
            );
        }
        let v = volume(&vol(None), facts("eu-west-1a", "in-use", &["i-0prod"]));
        assert!(
            v.reason.contains("i-0prod"),
            "the instance is named: {}",
            v.reason
        );
    }

    fn svc(pin: Option<Pin>, hostnames: &[&str]) -> LoadBalancerBinding {
        LoadBalancerBinding {
            namespace: "shop".into(),
            name: "web".into(),
            pinned: pin.is_some(),
            pin,
            ingress_ips: vec!["203.0.113.7".into()],
            ingress_hostnames: hostnames.iter().map(|s| (*s).to_owned()).collect(),
            dns_names: vec!["shop.example.com".into()],
            dns_targets: vec![],
            load_balancer_class: None,
        }
    }

    fn assoc(a: Option<Association>) -> Lookup<AddressFacts> {
        Lookup::Found(AddressFacts {
            public_ip: Some("203.0.113.7".into()),
            association: a,
        })
    }

    #[test]
    fn an_address_is_fine_free_or_on_its_own_load_balancer_and_fails_anywhere_else() {
        let eip = || {
            Some(Pin::AwsEip {
                allocations: vec!["eipalloc-1".into()],
            })
        };
        let nlb = "k8s-shop-web-0a1b2c3d4e-0123456789abcdef.elb.eu-west-1.amazonaws.com";
        let lb = |name: &str, service: Option<&str>| {
            Some(Association::LoadBalancer {
                name: name.into(),
                service: service.map(str::to_owned),
            })
        };
        let cases = [
            ("free", svc(eip(), &[nlb]), assoc(None), Status::Ok),
            (
                "on its own NLB (by hostname)",
                svc(eip(), &[nlb]),
                assoc(lb("k8s-shop-web-0a1b2c3d4e", None)),
                Status::InUse,
            ),
            (
                "on its own LB (the cloud names the Service)",
                svc(eip(), &[]),
                assoc(lb("lb-1", Some("shop/web"))),
                Status::InUse,
            ),
            (
                "on another NLB",
                svc(eip(), &[nlb]),
                assoc(lb("k8s-other-api-99", None)),
                Status::InUseElsewhere,
            ),
            (
                "on another Service's LB",
                svc(eip(), &[]),
                assoc(lb("lb-2", Some("shop/api"))),
                Status::InUseElsewhere,
            ),
            (
                "on an instance",
                svc(eip(), &[nlb]),
                assoc(Some(Association::Instance("i-0bad".into()))),
                Status::InUseElsewhere,
            ),
            (
                "on a stray interface",
                svc(eip(), &[nlb]),
                assoc(Some(Association::NetworkInterface {
                    id: "eni-1".into(),
                    description: None,
                })),
                Status::InUseElsewhere,
            ),
            (
                "released",
                svc(eip(), &[nlb]),
                Lookup::Absent,
                Status::Missing,
            ),
            (
                "unknown",
                svc(None, &[]),
                Lookup::Unknown("denied".into()),
                Status::Unverifiable,
            ),
        ];
        for (name, b, seen, want) in cases {
            let key = address_targets(&b).remove(0);
            let v = address(&b, &key, seen);
            assert_eq!(v.status, want, "{name}: {}", v.reason);
            assert_eq!(v.subject, "shop/web", "{name}");
        }
    }

    #[test]
    fn a_services_address_targets_come_from_its_pin_else_its_ingress() {
        let cases = [
            (
                Some(Pin::AwsEip {
                    allocations: vec!["eipalloc-1".into(), "eipalloc-2".into()],
                }),
                vec![
                    AddressKey::Allocation("eipalloc-1".into()),
                    AddressKey::Allocation("eipalloc-2".into()),
                ],
            ),
            (
                Some(Pin::LoadBalancerIp {
                    address: "198.51.100.1".into(),
                }),
                vec![AddressKey::Ip("198.51.100.1".into())],
            ),
            (
                Some(Pin::Azure {
                    pip_name: Some("pip-web".into()),
                    ipv4: None,
                    resource_group: None,
                }),
                vec![AddressKey::Name("pip-web".into())],
            ),
            (
                Some(Pin::Metallb {
                    addresses: vec!["10.0.0.5".into()],
                }),
                vec![AddressKey::Ip("10.0.0.5".into())],
            ),
            (None, vec![AddressKey::Ip("203.0.113.7".into())]),
        ];
        for (pin, want) in cases {
            assert_eq!(address_targets(&svc(pin.clone(), &[])), want, "{pin:?}");
        }
        let mut hostname_only = svc(None, &["a.elb.amazonaws.com"]);
        hostname_only.ingress_ips.clear();
        assert!(address_targets(&hostname_only).is_empty());
        assert_eq!(
            address_unrecorded(&hostname_only).status,
            Status::Unverifiable
        );
    }

    fn claim(bucket: Option<&str>) -> BucketBinding {
        BucketBinding {
            kind: BucketKind::CosiBucketClaim,
            group: "objectstorage.k8s.io".into(),
            resource: "bucketclaims".into(),
            namespace: Some("tenant-a".into()),
            name: "data".into(),
            bucket: bucket.map(str::to_owned),
            deletion_policy: None,
            adopted: true,
            bucket_class: None,
            management_policies: vec![],
        }
    }

    fn found(region: &str, versioning: Versioning) -> Lookup<BucketFacts> {
        Lookup::Found(BucketFacts {
            region: Some(region.into()),
            versioning,
            object_lock: None,
        })
    }

    #[test]
    fn a_bucket_is_judged_by_existence_region_and_versioning() {
        let cases = [
            (
                "versioned, home region",
                found("eu-west-1", Versioning::Enabled),
                Status::Ok,
            ),
            (
                "versioning off",
                found("eu-west-1", Versioning::Off),
                Status::Unprotected,
            ),
            (
                "versioning suspended",
                found("eu-west-1", Versioning::Suspended),
                Status::Unprotected,
            ),
            (
                "another region",
                found("us-east-1", Versioning::Enabled),
                Status::Moved,
            ),
            ("gone", Lookup::Absent, Status::Missing),
            (
                "denied",
                Lookup::Unknown("access denied".into()),
                Status::Unverifiable,
            ),
        ];
        for (name, seen, want) in cases {
            let v = bucket(&claim(Some("t-data")), Some("eu-west-1"), seen);
            assert_eq!(v.status, want, "{name}: {}", v.reason);
            assert_eq!(
                (v.subject.as_str(), v.target.as_str()),
                ("BucketClaim tenant-a/data", "t-data")
            );
        }
        assert_eq!(
            bucket(&claim(None), None, Lookup::Absent).status,
            Status::Unverifiable
        );
    }

    #[test]
    fn a_cosi_bucket_behind_a_claim_is_checked_once() {
        let mut cosi = claim(Some("t-data"));
        cosi.kind = BucketKind::CosiBucket;
        cosi.namespace = None;
        let mut lone = cosi.clone();
        lone.bucket = Some("other".into());
        let all = [claim(Some("t-data")), cosi, lone];
        let checked: Vec<String> = buckets_to_check(&all)
            .iter()
            .map(|b| bucket_subject(b))
            .collect();
        assert_eq!(
            checked,
            [
                "BucketClaim tenant-a/data",
                "Bucket.objectstorage.k8s.io data"
            ]
        );
    }

    #[test]
    fn a_dns_name_must_point_at_the_recorded_address_or_target() {
        let nlb = "k8s-shop-web-1.elb.eu-west-1.amazonaws.com";
        let rec = |vals: &[&str]| {
            Lookup::Found(DnsFacts {
                values: vals.iter().map(|s| (*s).to_owned()).collect(),
            })
        };
        let cases = [
            (
                "A record on the ingress IP",
                svc(None, &[]),
                rec(&["203.0.113.7"]),
                Status::Ok,
            ),
            (
                "alias on the NLB",
                svc(None, &[nlb]),
                rec(&["dualstack.K8S-shop-web-1.elb.eu-west-1.amazonaws.com."]),
                Status::Ok,
            ),
            (
                "points elsewhere",
                svc(None, &[]),
                rec(&["198.51.100.9"]),
                Status::Moved,
            ),
            ("no record", svc(None, &[]), Lookup::Absent, Status::Missing),
        ];
        for (name, b, seen, want) in cases {
            let v = dns(&b, "shop.example.com", seen);
            assert_eq!(v.status, want, "{name}: {}", v.reason);
        }
        let mut targeted = svc(None, &[]);
        targeted.dns_targets = vec!["edge.example.net".into()];
        assert_eq!(
            dns(&targeted, "shop.example.com", rec(&["edge.example.net."])).status,
            Status::Ok
        );
    }
}
