//! AWS as a verification target: EC2 `DescribeVolumes` (exists, state, attachments, zone),
//! `DescribeAddresses` + `DescribeNetworkInterfaces` (what an Elastic IP is associated
//! with: an instance, a load balancer's interface, something else), S3 `HeadBucket`,
//! `GetBucketLocation`, `GetBucketVersioning`, `GetObjectLockConfiguration`, and Route53
//! `ListResourceRecordSets` in the hosted zone that holds each DNS name.
//!
//! Read-only calls only. Credentials and region come from the usual places (environment,
//! profile, web identity, instance metadata); `AWS_ENDPOINT_URL` points every client at
//! another endpoint (moto's server in tests). A call that is denied or fails makes the
//! verdicts it would have informed `unverifiable` with the reason, and the rest go on.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ec2::types::Filter;
use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::rules::{
    self, AddressFacts, AddressKey, Association, BucketFacts, DnsFacts, Lookup, Versioning,
    VolumeFacts,
};
use super::snapshots::{
    DataCheck, DiskSnapshots, Hydration, RESTORED_FOR, RestoreRequest, RestoredDisk, SnapshotError,
    TakenSnapshot,
};
use super::{CloudVerifier, Kind, Verdict};
use crate::bindings::{Bindings, Provider};

/// Volume ids per `DescribeVolumes` call (the API's filter takes up to 200 values).
const VOLUMES_PER_CALL: usize = 200;

/// One Elastic IP as `DescribeAddresses` showed it.
#[derive(Debug, Clone)]
struct Eip {
    allocation_id: Option<String>,
    facts: AddressFacts,
}

/// The default AWS configuration chain (`AWS_ENDPOINT_URL` honoured).
async fn env_config() -> SdkConfig {
    crate::k8s::connect::init_tls();
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Verifies bindings against one AWS account and region.
#[derive(Clone)]
pub struct AwsVerifier {
    ec2: aws_sdk_ec2::Client,
    s3: aws_sdk_s3::Client,
    route53: aws_sdk_route53::Client,
    /// The cluster's region: where its buckets are expected to live.
    region: Option<String>,
}

impl std::fmt::Debug for AwsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsVerifier")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AwsVerifier {
    /// Clients from the default AWS configuration chain (`AWS_ENDPOINT_URL` honoured).
    pub async fn from_env() -> Self {
        Self::from_config(&env_config().await)
    }

    /// Clients from an explicit configuration (tests point it at moto). S3 uses path-style
    /// addressing when an endpoint is set, as S3-compatible servers expect.
    pub fn from_config(conf: &SdkConfig) -> Self {
        crate::k8s::connect::init_tls();
        let s3 = aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(conf.endpoint_url().is_some())
            .build();
        AwsVerifier {
            ec2: aws_sdk_ec2::Client::new(conf),
            s3: aws_sdk_s3::Client::from_conf(s3),
            route53: aws_sdk_route53::Client::new(conf),
            region: conf.region().map(|r| r.as_ref().to_owned()),
        }
    }

    async fn volumes(&self, ids: &[String]) -> Result<BTreeMap<String, VolumeFacts>, String> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(VOLUMES_PER_CALL) {
            let mut pages = self
                .ec2
                .describe_volumes()
                .filters(
                    Filter::builder()
                        .name("volume-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| describe("ec2:DescribeVolumes", &e))?;
                for v in page.volumes() {
                    let Some(id) = v.volume_id() else { continue };
                    out.insert(
                        id.to_owned(),
                        VolumeFacts {
                            zone: v.availability_zone().map(str::to_owned),
                            state: v.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                            attached_to: v
                                .attachments()
                                .iter()
                                .filter_map(|a| a.instance_id())
                                .map(str::to_owned)
                                .collect(),
                        },
                    );
                }
            }
        }
        Ok(out)
    }

    /// Every Elastic IP of the region (an account has few), with what each is associated
    /// with; a load balancer is recognised by its interface's `ELB <type>/<name>/<id>`
    /// description.
    async fn addresses(&self) -> Result<Vec<Eip>, String> {
        let resp = self
            .ec2
            .describe_addresses()
            .send()
            .await
            .map_err(|e| describe("ec2:DescribeAddresses", &e))?;
        let enis: Vec<String> = resp
            .addresses()
            .iter()
            .filter(|a| a.instance_id().is_none_or(str::is_empty))
            .filter_map(|a| a.network_interface_id())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let descriptions = if enis.is_empty() {
            BTreeMap::new()
        } else {
            self.ec2
                .describe_network_interfaces()
                .set_network_interface_ids(Some(enis))
                .send()
                .await
                .map(|r| {
                    r.network_interfaces()
                        .iter()
                        .filter_map(|n| {
                            Some((
                                n.network_interface_id()?.to_owned(),
                                n.description().map(str::to_owned),
                            ))
                        })
                        .collect()
                })
                // Safe: the interfaces only describe what holds an address (a load
                // balancer's name in the verdict's text); the association itself comes from
                // DescribeAddresses above, whose error is propagated.
                .unwrap_or_default()
        };
        Ok(resp
            .addresses()
            .iter()
            .map(|a| {
                let instance = a.instance_id().filter(|s| !s.is_empty());
                let eni = a.network_interface_id().filter(|s| !s.is_empty());
                let association = match (instance, eni) {
                    (Some(i), _) => Some(Association::Instance(i.to_owned())),
                    (None, Some(eni)) => {
                        let description = descriptions.get(eni).cloned().flatten();
                        Some(match description.as_deref().and_then(elb_name) {
                            Some(name) => Association::LoadBalancer {
                                name,
                                service: None,
                            },
                            None => Association::NetworkInterface {
                                id: eni.to_owned(),
                                description,
                            },
                        })
                    }
                    (None, None) => None,
                };
                Eip {
                    allocation_id: a.allocation_id().map(str::to_owned),
                    facts: AddressFacts {
                        public_ip: a.public_ip().map(str::to_owned),
                        association,
                    },
                }
            })
            .collect())
    }

    async fn bucket(&self, name: &str) -> Lookup<BucketFacts> {
        let mut region = match self.s3.head_bucket().bucket(name).send().await {
            Ok(out) => out.bucket_region().map(str::to_owned),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let header = e
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region").map(str::to_owned));
                match status {
                    Some(404) => return Lookup::Absent,
                    // The bucket exists in another region than the client's.
                    Some(301) if header.is_some() => header,
                    Some(403) => {
                        return Lookup::Unknown(
                            "s3:HeadBucket denied: no permission, or the bucket belongs to another account".to_owned(),
                        );
                    }
                    _ => return Lookup::Unknown(describe("s3:HeadBucket", &e)),
                }
            }
        };
        if let Ok(loc) = self.s3.get_bucket_location().bucket(name).send().await {
            region = Some(location_region(
                loc.location_constraint().map(|c| c.as_str()),
            ));
        }
        let versioning = match self.s3.get_bucket_versioning().bucket(name).send().await {
            Ok(v) => match v.status().map(|s| s.as_str()) {
                Some("Enabled") => Versioning::Enabled,
                Some("Suspended") => Versioning::Suspended,
                _ => Versioning::Off,
            },
            // A 200 the SDK could not parse (moto names the root element after the
            // operation): read the status from the body itself.
            Err(e) => e
                .raw_response()
                .filter(|r| r.status().as_u16() == 200)
                .and_then(|r| r.body().bytes())
                .map_or(Versioning::Unknown, |b| {
                    versioning_from_xml(&String::from_utf8_lossy(b))
                }),
        };
        let object_lock = self
            .s3
            .get_object_lock_configuration()
            .bucket(name)
            .send()
            .await
            // Safe: S3 answers a bucket without object lock with an error
            // (ObjectLockConfigurationNotFoundError); the lock only adds a note to the
            // bucket's verdict, which rests on HeadBucket and its region, both propagated.
            .ok()
            .and_then(|o| o.object_lock_configuration().cloned())
            .filter(|c| {
                c.object_lock_enabled()
                    .is_some_and(|e| e.as_str() == "Enabled")
            })
            .map(|c| match c.rule().and_then(|r| r.default_retention()) {
                Some(d) => format!(
                    "{} {}",
                    d.mode().map(|m| m.as_str()).unwrap_or("enabled"),
                    match (d.days(), d.years()) {
                        (Some(n), _) => format!("{n} days"),
                        (_, Some(n)) => format!("{n} years"),
                        _ => String::new(),
                    }
                )
                .trim()
                .to_owned(),
                None => "enabled".to_owned(),
            });
        Lookup::Found(BucketFacts {
            region,
            versioning,
            object_lock,
        })
    }

    /// Hosted zones by name (normalised), for finding the zone of a DNS name.
    async fn hosted_zones(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let resp = self
                .route53
                .list_hosted_zones()
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| describe("route53:ListHostedZones", &e))?;
            out.extend(
                resp.hosted_zones()
                    .iter()
                    .map(|z| (rules::normalise_host(z.name()), z.id().to_owned())),
            );
            match resp.next_marker() {
                Some(m) if resp.is_truncated() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn record(&self, zones: &[(String, String)], name: &str) -> Lookup<DnsFacts> {
        let Some((_, zone)) = zones
            .iter()
            .filter(|(z, _)| name == z || name.ends_with(&format!(".{z}")))
            .max_by_key(|(z, _)| z.len())
        else {
            return Lookup::Unknown(format!("no Route53 hosted zone for {name} in this account"));
        };
        let resp = match self
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .start_record_name(name)
            .max_items(20)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Lookup::Unknown(describe("route53:ListResourceRecordSets", &e)),
        };
        let values: Vec<String> = resp
            .resource_record_sets()
            .iter()
            .filter(|r| rules::normalise_host(r.name()) == name)
            .filter(|r| matches!(r.r#type().as_str(), "A" | "AAAA" | "CNAME"))
            .flat_map(|r| {
                r.resource_records()
                    .iter()
                    .map(|v| v.value().to_owned())
                    .chain(r.alias_target().map(|a| a.dns_name().to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if values.is_empty() {
            Lookup::Absent
        } else {
            Lookup::Found(DnsFacts { values })
        }
    }

    async fn judge(&self, bindings: &Bindings) -> Vec<Verdict> {
        let mut out = Vec::new();

        let ebs: Vec<String> = bindings
            .volumes
            .iter()
            .filter(|v| v.provider == Provider::Aws)
            .map(|v| v.disk_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let volumes = if ebs.is_empty() {
            Ok(BTreeMap::new())
        } else {
            self.volumes(&ebs).await
        };
        for v in &bindings.volumes {
            let seen = if v.provider != Provider::Aws {
                Lookup::Unknown(format!(
                    "not an EBS volume ({}): not checked on AWS",
                    v.csi_driver
                ))
            } else {
                match &volumes {
                    Ok(found) => found
                        .get(&v.disk_id)
                        .cloned()
                        .map_or(Lookup::Absent, Lookup::Found),
                    Err(why) => Lookup::Unknown(why.clone()),
                }
            };
            out.push(rules::volume(v, seen));
        }

        let addresses = if bindings.load_balancers.is_empty() {
            Ok(Vec::new())
        } else {
            self.addresses().await
        };
        let zones = if bindings
            .load_balancers
            .iter()
            .any(|l| !l.dns_names.is_empty())
        {
            self.hosted_zones().await
        } else {
            Ok(Vec::new())
        };
        for lb in &bindings.load_balancers {
            let keys = rules::address_targets(lb);
            if keys.is_empty() {
                out.push(rules::address_unrecorded(lb));
            }
            for k in keys {
                let seen = match (&addresses, &k) {
                    (Err(why), _) => Lookup::Unknown(why.clone()),
                    (Ok(_), AddressKey::Name(n)) => Lookup::Unknown(format!(
                        "{n} is a named address (Azure public IP), not an Elastic IP"
                    )),
                    (Ok(all), AddressKey::Allocation(id)) => all
                        .iter()
                        .find(|e| e.allocation_id.as_deref() == Some(id))
                        .map_or(Lookup::Absent, |e| Lookup::Found(e.facts.clone())),
                    (Ok(all), AddressKey::Ip(ip)) => all
                        .iter()
                        .find(|e| e.facts.public_ip.as_deref() == Some(ip))
                        .map_or(Lookup::Absent, |e| Lookup::Found(e.facts.clone())),
                };
                out.push(rules::address(lb, &k, seen));
            }
            for name in rules::dns_names(lb) {
                let seen = match &zones {
                    Ok(z) => self.record(z, &name).await,
                    Err(why) => Lookup::Unknown(why.clone()),
                };
                out.push(rules::dns(lb, &name, seen));
            }
        }

        for b in rules::buckets_to_check(&bindings.buckets) {
            let seen = match rules::bucket_target(b) {
                Some(name) => self.bucket(&name).await,
                None => Lookup::Absent,
            };
            out.push(rules::bucket(b, self.region.as_deref(), seen));
        }
        out
    }
}

impl CloudVerifier for AwsVerifier {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn verify<'a>(&'a self, bindings: &'a Bindings) -> BoxFuture<'a, Vec<Verdict>> {
        self.judge(bindings).boxed()
    }

    /// The ledger AWS can give: every EBS volume of the region (`DescribeVolumes`, paged)
    /// and, as creations, each volume by its `CreateTime` and each bucket of the account
    /// by its `CreationDate` (`ListBuckets`), the time in milliseconds as the sequence — so
    /// a mark is the newest creation seen, and whatever is created after it counts, with
    /// no local clock involved. What it cannot give, precisely: addresses (an Elastic IP
    /// carries no allocation time, and a load balancer's own addresses are no Elastic IPs:
    /// new addresses are counted from the cluster side alone); a resource created *and
    /// deleted* between the mark and the end (no history, only what exists); and a bucket
    /// created in the same second as the newest one before the mark (`CreationDate` has
    /// one-second resolution).
    fn ledger(&self) -> BoxFuture<'_, Result<Option<super::Ledger>, super::LedgerError>> {
        async move {
            let fail = |detail: String| super::LedgerError {
                provider: "aws",
                detail,
            };
            let mut ledger = super::Ledger::default();
            let mut pages = self.ec2.describe_volumes().into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| fail(describe("ec2:DescribeVolumes", &e)))?;
                for v in page.volumes() {
                    if let Some(id) = v.volume_id() {
                        ledger.disks.insert(id.to_owned());
                    }
                    if let Some(ms) = v.create_time().and_then(|t| t.to_millis().ok()) {
                        ledger
                            .creations
                            .push((u64::try_from(ms).unwrap_or(0), Kind::Volume));
                    }
                }
            }
            let buckets = self
                .s3
                .list_buckets()
                .send()
                .await
                .map_err(|e| fail(describe("s3:ListBuckets", &e)))?;
            for b in buckets.buckets() {
                if let Some(ms) = b.creation_date().and_then(|t| t.to_millis().ok()) {
                    ledger
                        .creations
                        .push((u64::try_from(ms).unwrap_or(0), Kind::Bucket));
                }
            }
            ledger.creations.sort();
            Ok(Some(ledger))
        }
        .boxed()
    }

    fn allocations<'a>(
        &'a self,
        ips: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, super::LookupError>> {
        async move {
            let all = self
                .addresses()
                .await
                .map_err(|detail| super::LookupError {
                    provider: "aws",
                    detail,
                })?;
            Ok(all
                .into_iter()
                .filter_map(|e| {
                    let ip = e.facts.public_ip?;
                    (ips.contains(&ip)).then_some((ip, e.allocation_id?))
                })
                .collect())
        }
        .boxed()
    }
}

/// An AWS error in one line: the API, the error code and message when the service sent
/// them, else the transport failure.
/// EBS snapshots: `CreateSnapshot`, `DeleteSnapshot`, `CreateVolume` from a snapshot (after
/// `EnableFastSnapshotRestores` when asked), and `DescribeVolumes` by tag to find the disk
/// an earlier run of the same restore created.
#[derive(Clone)]
pub struct AwsSnapshots {
    ec2: aws_sdk_ec2::Client,
}

impl std::fmt::Debug for AwsSnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSnapshots").finish_non_exhaustive()
    }
}

impl AwsSnapshots {
    pub async fn from_env() -> Self {
        Self::from_config(&env_config().await)
    }

    pub fn from_config(conf: &SdkConfig) -> Self {
        crate::k8s::connect::init_tls();
        AwsSnapshots {
            ec2: aws_sdk_ec2::Client::new(conf),
        }
    }
}

fn snap_err(action: String, detail: String) -> SnapshotError {
    SnapshotError::Call {
        provider: "aws",
        action,
        detail,
    }
}

fn tag_spec(
    resource: aws_sdk_ec2::types::ResourceType,
    tags: &BTreeMap<String, String>,
) -> aws_sdk_ec2::types::TagSpecification {
    aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

impl DiskSnapshots for AwsSnapshots {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn take<'a>(
        &'a self,
        disk: &'a str,
        tags: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<TakenSnapshot, SnapshotError>> {
        async move {
            // The snapshot is point-in-time when the call returns; it completes in the
            // background, and a restore from it waits on EBS, not on us.
            let out = self
                .ec2
                .create_snapshot()
                .volume_id(disk)
                .description("coldstart: taken with a cluster snapshot")
                .tag_specifications(tag_spec(aws_sdk_ec2::types::ResourceType::Snapshot, tags))
                .send()
                .await
                .map_err(|e| {
                    snap_err(
                        format!("snapshot disk {disk}"),
                        describe("ec2:CreateSnapshot", &e),
                    )
                })?;
            let id = out.snapshot_id().unwrap_or_default().to_owned();
            if id.is_empty() {
                return Err(snap_err(
                    format!("snapshot disk {disk}"),
                    "ec2:CreateSnapshot answered without a snapshot id".into(),
                ));
            }
            Ok(TakenSnapshot {
                id,
                size_gib: out.volume_size().and_then(|s| u64::try_from(s).ok()),
            })
        }
        .boxed()
    }

    fn delete<'a>(&'a self, snapshot: &'a str) -> BoxFuture<'a, Result<bool, SnapshotError>> {
        async move {
            match self
                .ec2
                .delete_snapshot()
                .snapshot_id(snapshot)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e)
                    if e.as_service_error()
                        .and_then(|s| aws_sdk_ec2::error::ProvideErrorMetadata::code(s))
                        == Some("InvalidSnapshot.NotFound") =>
                {
                    Ok(false)
                }
                Err(e) => Err(snap_err(
                    format!("delete snapshot {snapshot}"),
                    describe("ec2:DeleteSnapshot", &e),
                )),
            }
        }
        .boxed()
    }

    fn restore<'a>(
        &'a self,
        req: &'a RestoreRequest,
    ) -> BoxFuture<'a, Result<RestoredDisk, SnapshotError>> {
        async move {
            let action = || format!("create a disk from snapshot {}", req.snapshot);
            let found = self
                .ec2
                .describe_volumes()
                .filters(
                    Filter::builder()
                        .name("snapshot-id")
                        .values(&req.snapshot)
                        .build(),
                )
                .filters(
                    Filter::builder()
                        .name(format!("tag:{RESTORED_FOR}"))
                        .values(&req.restored_for)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| snap_err(action(), describe("ec2:DescribeVolumes", &e)))?;
            if let Some(id) = found.volumes().iter().find_map(|v| v.volume_id()) {
                return Ok(RestoredDisk {
                    disk_id: id.to_owned(),
                    created: false,
                    hydration_ms: 0,
                });
            }
            if req.fast_restore {
                self.ec2
                    .enable_fast_snapshot_restores()
                    .availability_zones(&req.zone)
                    .source_snapshot_ids(&req.snapshot)
                    .send()
                    .await
                    .map_err(|e| {
                        snap_err(action(), describe("ec2:EnableFastSnapshotRestores", &e))
                    })?;
            }
            let mut create = self
                .ec2
                .create_volume()
                .snapshot_id(&req.snapshot)
                .availability_zone(&req.zone)
                .tag_specifications(tag_spec(
                    aws_sdk_ec2::types::ResourceType::Volume,
                    &req.disk_tags(),
                ));
            if let Some(rate) = req.initialization_rate_mib_s {
                create = create.volume_initialization_rate(rate as i32);
            }
            let out = create
                .send()
                .await
                .map_err(|e| snap_err(action(), describe("ec2:CreateVolume", &e)))?;
            let id = out.volume_id().unwrap_or_default().to_owned();
            let size = out.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
            Ok(RestoredDisk {
                disk_id: id,
                created: true,
                hydration_ms: super::snapshots::hydration_estimate(
                    "aws",
                    size,
                    req.fast_restore,
                    req.initialization_rate_mib_s,
                )
                .as_millis() as u64,
            })
        }
        .boxed()
    }

    fn hydration<'a>(&'a self, _disk: &'a str) -> BoxFuture<'a, Result<Hydration, SnapshotError>> {
        // EBS reports no per-volume hydration progress; the restore's estimate stands.
        async move {
            Ok(Hydration {
                hydrating: false,
                remaining_ms: 0,
            })
        }
        .boxed()
    }

    fn check_data<'a>(
        &'a self,
        disk: &'a str,
        _snapshot: &'a str,
    ) -> BoxFuture<'a, Result<DataCheck, SnapshotError>> {
        async move {
            Ok(DataCheck::Unverifiable(format!(
                "EBS cannot read disk {disk} without attaching it: mount it in the scratch cluster and check a checksum file"
            )))
        }
        .boxed()
    }
}

fn describe<E, R>(api: &str, e: &aws_sdk_ec2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(s) => format!(
            "{api} failed: {} {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or_default()
        )
        .trim()
        .to_owned(),
        None => format!(
            "{api} failed: {}",
            aws_sdk_ec2::error::DisplayErrorContext(e)
        ),
    }
}

/// The load balancer's name from its network interface's description
/// (`ELB net/<name>/<id>`, `ELB app/<name>/<id>`, classic `ELB <name>`).
pub fn elb_name(description: &str) -> Option<String> {
    let rest = description.strip_prefix("ELB ")?;
    let mut parts = rest.split('/');
    match (parts.next(), parts.next()) {
        (Some("net" | "app" | "gwy"), Some(name)) => Some(name.to_owned()),
        (Some(name), None) if !name.is_empty() => Some(name.to_owned()),
        _ => None,
    }
}

/// The versioning status in a `GetBucketVersioning` body: none means never enabled.
pub fn versioning_from_xml(body: &str) -> Versioning {
    if body.contains("<Status>Enabled</Status>") {
        Versioning::Enabled
    } else if body.contains("<Status>Suspended</Status>") {
        Versioning::Suspended
    } else {
        Versioning::Off
    }
}

/// `GetBucketLocation`'s answer as a region: empty means us-east-1, `EU` is eu-west-1.
pub fn location_region(constraint: Option<&str>) -> String {
    match constraint {
        None | Some("") => "us-east-1".to_owned(),
        Some("EU") => "eu-west-1".to_owned(),
        Some(r) => r.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_balancers_interface_is_recognised_by_its_description() {
        let cases = [
            (
                "ELB net/k8s-shop-web-0a1b2c3d4e/50dc6c495c0c9188",
                Some("k8s-shop-web-0a1b2c3d4e"),
            ),
            ("ELB app/my-alb/50dc6c495c0c9188", Some("my-alb")),
            ("ELB classic-lb", Some("classic-lb")),
            ("Primary network interface", None),
            ("", None),
        ];
        for (d, want) in cases {
            assert_eq!(elb_name(d).as_deref(), want, "{d}");
        }
    }

    #[test]
    fn an_empty_location_constraint_is_us_east_1() {
        assert_eq!(location_region(None), "us-east-1");
        assert_eq!(location_region(Some("")), "us-east-1");
        assert_eq!(location_region(Some("EU")), "eu-west-1");
        assert_eq!(location_region(Some("eu-central-1")), "eu-central-1");
    }
}
