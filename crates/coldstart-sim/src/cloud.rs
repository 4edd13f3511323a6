//! The simulated cloud behind the simulated cluster: disks (each with a data token, so an
//! old disk can be told from a new empty one), IP addresses (static reservations vs
//! addresses a controller allocated), load balancers, DNS records and buckets — and a
//! ledger of everything created, changed or deleted, with time and cause. The ledger is
//! how a test proves that a restore provisioned **nothing new**.
//!
//! The cloud outlives clusters: [`Cloud::delete_cluster`] applies what a cloud does when a
//! cluster is deleted (release what the cluster's controllers allocated, keep the rest).
//!
//! Snapshots copy a disk's data token at their point in time. A disk created from a
//! snapshot gets a new id and the snapshot's data, and is *hydrating* (lazily loaded, with
//! degraded throughput, as EBS restores are) until `hydrated_at`, unless Fast Snapshot
//! Restore is enabled for the snapshot in the disk's zone. Simulated time is compressed:
//! [`HYDRATION_MS_PER_GIB`] stands for hours on a real cloud.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// The zones the simulated cloud has (and the simulated cluster's nodes are spread over).
pub const ZONES: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];

/// The simulated cloud's one region: its zones without the zone letter.
pub fn region() -> &'static str {
    ZONES[0].trim_end_matches(|c: char| c.is_ascii_alphabetic())
}

/// The CSI driver that provisions and names the simulated cloud's disks.
pub const CSI_DRIVER: &str = "ebs.csi.aws.com";

/// Every CSI driver whose disks this cloud holds: EBS volumes, and Azure managed disks
/// (known by their resource id, for the AKS node resource group).
pub const CSI_DRIVERS: [&str; 2] = [CSI_DRIVER, "disk.csi.azure.com"];

/// How long a disk restored from a snapshot hydrates, per GiB, in the simulated cloud.
/// Real EBS lazy loading of a 100 GiB volume takes hours; here a 10 GiB disk hydrates in
/// two seconds, long enough for a test to see it and short enough not to slow the suite.
pub const HYDRATION_MS_PER_GIB: u64 = 200;

/// The share of full throughput a hydrating disk delivers (first-touch reads fetch from
/// the snapshot store).
pub const HYDRATING_THROUGHPUT_PERCENT: u8 = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Disk {
    pub id: String,
    pub zone: String,
    pub size_gib: u64,
    /// What is written on the disk. A newly provisioned disk is empty ("").
    pub data_token: String,
    pub attached_to: Option<String>,
    pub created_at: String,
    /// The snapshot it was created from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_snapshot: Option<String>,
    /// When a disk created from a snapshot is fully hydrated (RFC 3339). Before that its
    /// reads are served lazily from the snapshot at degraded throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hydrated_at: Option<String>,
    /// Tags, as a cloud keeps them (coldstart tags a disk it restores with its PV, so a
    /// re-run finds it instead of creating another).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl Disk {
    /// Whether it is still hydrating at `now`, and the share of full throughput it gives.
    pub fn hydration(&self, now: chrono::DateTime<chrono::Utc>) -> Hydration {
        match self
            .hydrated_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            Some(until) if until > now => Hydration {
                hydrating: true,
                remaining_ms: (until.with_timezone(&chrono::Utc) - now)
                    .num_milliseconds()
                    .max(0) as u64,
                throughput_percent: HYDRATING_THROUGHPUT_PERCENT,
            },
            _ => Hydration {
                hydrating: false,
                remaining_ms: 0,
                throughput_percent: 100,
            },
        }
    }
}

/// A disk's hydration at one moment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Hydration {
    pub hydrating: bool,
    pub remaining_ms: u64,
    pub throughput_percent: u8,
}

/// A point-in-time copy of a disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    /// `snap-…`.
    pub id: String,
    pub disk_id: String,
    pub zone: String,
    pub size_gib: u64,
    /// The disk's data at the moment the snapshot was taken.
    pub data_token: String,
    pub created_at: String,
    /// Zones where Fast Snapshot Restore is enabled: a disk created there is fully
    /// hydrated at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fast_restore_zones: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Address {
    pub ip: String,
    /// EIP-style allocation id (`eipalloc-…`).
    pub allocation_id: String,
    /// Azure-style public IP resource name, if it has one.
    pub name: Option<String>,
    /// A static reservation survives the cluster; a controller-allocated one does not.
    pub reserved: bool,
    /// The load balancer it is associated with (the first, when Services share it).
    pub load_balancer: Option<String>,
    /// The MetalLB-style address pool it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The Azure-style resource group it lives in, if any (an AKS cluster's node resource
    /// group is deleted with the cluster, with everything in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    pub created_at: String,
}

/// A MetalLB-style address pool: addresses the cluster's load balancers hand out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub addresses: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoadBalancer {
    pub id: String,
    /// `namespace/name` of the Service it serves.
    pub service: String,
    pub ip: String,
    /// Services with the same key may share the address (MetalLB `allow-shared-ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_key: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsRecord {
    pub name: String,
    pub target: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub region: String,
    pub versioning: bool,
    pub data_token: String,
    /// `namespace/name` (or `name` for cluster-scoped) of the claim that manages it.
    pub managed_by: Option<String>,
    /// Whether deleting the cluster (and so its claim) deletes the bucket.
    pub delete_with_claim: bool,
    pub created_at: String,
}

/// What kind of cloud resource a ledger entry is about.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    Disk,
    Ip,
    LoadBalancer,
    Dns,
    Bucket,
    Snapshot,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Created,
    Deleted,
    Updated,
    Attached,
    Detached,
    Associated,
    Released,
    Reserved,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerEntry {
    pub seq: u64,
    pub at: String,
    pub resource: Resource,
    pub action: Action,
    pub id: String,
    pub cause: String,
}

/// The whole cloud, as `GET /sim/v1/cloud` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CloudState {
    pub disks: BTreeMap<String, Disk>,
    pub addresses: BTreeMap<String, Address>,
    pub load_balancers: BTreeMap<String, LoadBalancer>,
    #[serde(default)]
    pub pools: BTreeMap<String, Pool>,
    pub dns: BTreeMap<String, DnsRecord>,
    pub buckets: BTreeMap<String, Bucket>,
    #[serde(default)]
    pub snapshots: BTreeMap<String, Snapshot>,
    pub ledger: Vec<LedgerEntry>,
    /// The cluster's AKS-style node resource group: deleting the cluster deletes every
    /// disk (by its resource id) and address in it, whatever the reclaim policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_resource_group: Option<String>,
    #[serde(skip)]
    next: u64,
}

/// What a cloud account already holds before any cluster exists: `sim cloud create …`,
/// `POST /sim/v1/cloud`, `sim serve --cloud FILE`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Existing {
    #[serde(default)]
    pub disks: Vec<ExistingDisk>,
    #[serde(default)]
    pub addresses: Vec<ExistingAddress>,
    #[serde(default)]
    pub pools: Vec<ExistingPool>,
    #[serde(default)]
    pub buckets: Vec<ExistingBucket>,
    #[serde(default)]
    pub snapshots: Vec<ExistingSnapshot>,
    /// Make the cluster an AKS-style one whose node resource group is this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_resource_group: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExistingDisk {
    pub id: String,
    pub zone: String,
    #[serde(default = "default_size")]
    pub size_gib: u64,
    /// What is written on it (so a test can tell it from a new empty disk).
    #[serde(default)]
    pub data: String,
}

fn default_size() -> u64 {
    10
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExistingAddress {
    pub ip: String,
    #[serde(default)]
    pub allocation_id: Option<String>,
    #[serde(default)]
    pub pip_name: Option<String>,
    /// The resource group the public IP lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExistingPool {
    pub name: String,
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExistingBucket {
    pub name: String,
    #[serde(default)]
    pub data: String,
}

/// A disk snapshot the account holds (one another cluster of the account took).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExistingSnapshot {
    pub id: String,
    pub disk_id: String,
    pub zone: String,
    #[serde(default = "default_size")]
    pub size_gib: u64,
    /// The data it holds (what a disk created from it starts with).
    #[serde(default)]
    pub data: String,
}

/// Counts of cloud resources created since a ledger position.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewResources {
    pub disks: usize,
    pub ips: usize,
    pub load_balancers: usize,
    pub buckets: usize,
}

/// Why a cloud operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CloudError {
    #[error("no disk {0}")]
    NoDisk(String),
    #[error("disk {0} is attached to {1}")]
    DiskInUse(String, String),
    #[error("no address {0}")]
    NoAddress(String),
    #[error("address {0} is associated with load balancer {1}")]
    AddressInUse(String, String),
    #[error("no bucket {0}")]
    NoBucket(String),
    #[error("no snapshot {0}")]
    NoSnapshot(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("invalid {what} {value:?}: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The resource group an Azure-style resource id names (`…/resourceGroups/<group>/…`).
pub fn resource_group_of(id: &str) -> Option<&str> {
    let mut parts = id.split('/');
    parts
        .by_ref()
        .find(|p| p.eq_ignore_ascii_case("resourceGroups"))?;
    parts.next().filter(|g| !g.is_empty())
}

fn in_resource_group(id: &str, group: &str) -> Option<String> {
    let current = resource_group_of(id)?;
    let marker = id
        .split('/')
        .find(|p| p.eq_ignore_ascii_case("resourceGroups"))?;
    Some(id.replacen(
        &format!("/{marker}/{current}/"),
        &format!("/{marker}/{group}/"),
        1,
    ))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn hex_id(n: u64) -> String {
    // 17 hex digits, like AWS resource ids; derived from a counter plus randomness so ids
    // never repeat across a cloud's life.
    let r: u64 = rand::random::<u64>() & 0xffff_ffff_f000_0000;
    format!("{:017x}", (r | (n & 0x0fff_ffff)) & 0x0fff_ffff_ffff_ffff)
}

impl CloudState {
    fn record(&mut self, resource: Resource, action: Action, id: &str, cause: &str) {
        self.next += 1;
        self.ledger.push(LedgerEntry {
            seq: self.next,
            at: now(),
            resource,
            action,
            id: id.to_owned(),
            cause: cause.to_owned(),
        });
    }

    /// The last ledger sequence number (0 before anything happened). Read from the ledger,
    /// not the id counter: the counter is not on the wire, and a state read back from `GET
    /// /sim/v1/cloud` must mark the same position as the cloud it came from.
    pub fn position(&self) -> u64 {
        self.ledger.last().map_or(0, |e| e.seq)
    }

    /// What was created after ledger position `since`.
    pub fn created_since(&self, since: u64) -> NewResources {
        let mut n = NewResources::default();
        for e in self
            .ledger
            .iter()
            .filter(|e| e.seq > since && e.action == Action::Created)
        {
            match e.resource {
                Resource::Disk => n.disks += 1,
                Resource::Ip => n.ips += 1,
                Resource::LoadBalancer => n.load_balancers += 1,
                Resource::Bucket => n.buckets += 1,
                Resource::Dns | Resource::Snapshot => {}
            }
        }
        n
    }

    pub fn create_disk(
        &mut self,
        zone: &str,
        size_gib: u64,
        data_token: &str,
        cause: &str,
    ) -> Disk {
        let id = format!("vol-{}", hex_id(self.next));
        let disk = Disk {
            id: id.clone(),
            zone: zone.to_owned(),
            size_gib,
            data_token: data_token.to_owned(),
            attached_to: None,
            created_at: now(),
            from_snapshot: None,
            hydrated_at: None,
            tags: BTreeMap::new(),
        };
        self.disks.insert(id.clone(), disk.clone());
        self.record(Resource::Disk, Action::Created, &id, cause);
        disk
    }

    pub fn delete_disk(&mut self, id: &str, cause: &str) -> Result<(), CloudError> {
        let disk = self
            .disks
            .get(id)
            .ok_or_else(|| CloudError::NoDisk(id.to_owned()))?;
        if let Some(node) = &disk.attached_to {
            return Err(CloudError::DiskInUse(id.to_owned(), node.clone()));
        }
        self.disks.remove(id);
        self.record(Resource::Disk, Action::Deleted, id, cause);
        Ok(())
    }

    pub fn attach_disk(&mut self, id: &str, node: &str) -> Result<(), CloudError> {
        let disk = self
            .disks
            .get_mut(id)
            .ok_or_else(|| CloudError::NoDisk(id.to_owned()))?;
        match &disk.attached_to {
            Some(n) if n == node => Ok(()),
            Some(n) => Err(CloudError::DiskInUse(id.to_owned(), n.clone())),
            None => {
                disk.attached_to = Some(node.to_owned());
                self.record(
                    Resource::Disk,
                    Action::Attached,
                    id,
                    &format!("attached to {node}"),
                );
                Ok(())
            }
        }
    }

    /// Take a snapshot of a disk: its data token now, under a new `snap-…` id.
    pub fn create_snapshot(
        &mut self,
        disk_id: &str,
        tags: BTreeMap<String, String>,
        cause: &str,
    ) -> Result<Snapshot, CloudError> {
        let disk = self
            .disks
            .get(disk_id)
            .ok_or_else(|| CloudError::NoDisk(disk_id.to_owned()))?;
        let snap = Snapshot {
            id: format!("snap-{}", hex_id(self.next)),
            disk_id: disk.id.clone(),
            zone: disk.zone.clone(),
            size_gib: disk.size_gib,
            data_token: disk.data_token.clone(),
            created_at: now(),
            fast_restore_zones: Vec::new(),
            tags,
        };
        self.snapshots.insert(snap.id.clone(), snap.clone());
        self.record(
            Resource::Snapshot,
            Action::Created,
            &snap.id,
            &format!("{cause}: of {disk_id}"),
        );
        Ok(snap)
    }

    pub fn delete_snapshot(&mut self, id: &str, cause: &str) -> Result<(), CloudError> {
        self.snapshots
            .remove(id)
            .ok_or_else(|| CloudError::NoSnapshot(id.to_owned()))?;
        self.record(Resource::Snapshot, Action::Deleted, id, cause);
        Ok(())
    }

    /// Enable Fast Snapshot Restore for a snapshot in `zones`.
    pub fn enable_fast_restore(&mut self, id: &str, zones: &[String]) -> Result<(), CloudError> {
        if let Some(z) = zones.iter().find(|z| !ZONES.contains(&z.as_str())) {
            return Err(CloudError::Invalid {
                what: "zone",
                value: z.clone(),
                why: "not a zone of the simulated cloud (eu-west-1a, eu-west-1b, eu-west-1c)",
            });
        }
        let snap = self
            .snapshots
            .get_mut(id)
            .ok_or_else(|| CloudError::NoSnapshot(id.to_owned()))?;
        for z in zones {
            if !snap.fast_restore_zones.contains(z) {
                snap.fast_restore_zones.push(z.clone());
            }
        }
        snap.fast_restore_zones.sort();
        let why = format!("fast snapshot restore enabled in {}", zones.join(", "));
        self.record(Resource::Snapshot, Action::Updated, id, &why);
        Ok(())
    }

    /// Create a disk from a snapshot in `zone`: a new id, the snapshot's data, hydrating
    /// for [`HYDRATION_MS_PER_GIB`] per GiB unless Fast Snapshot Restore is enabled there.
    pub fn create_disk_from_snapshot(
        &mut self,
        snapshot_id: &str,
        zone: &str,
        tags: BTreeMap<String, String>,
        cause: &str,
    ) -> Result<Disk, CloudError> {
        if !ZONES.contains(&zone) {
            return Err(CloudError::Invalid {
                what: "zone",
                value: zone.to_owned(),
                why: "not a zone of the simulated cloud (eu-west-1a, eu-west-1b, eu-west-1c)",
            });
        }
        let snap = self
            .snapshots
            .get(snapshot_id)
            .ok_or_else(|| CloudError::NoSnapshot(snapshot_id.to_owned()))?
            .clone();
        let fast = snap.fast_restore_zones.iter().any(|z| z == zone);
        let id = format!("vol-{}", hex_id(self.next));
        let hydrated_at = (!fast).then(|| {
            let ms = snap.size_gib.saturating_mul(HYDRATION_MS_PER_GIB);
            (chrono::Utc::now() + chrono::Duration::milliseconds(ms as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        });
        let disk = Disk {
            id: id.clone(),
            zone: zone.to_owned(),
            size_gib: snap.size_gib,
            data_token: snap.data_token.clone(),
            attached_to: None,
            created_at: now(),
            from_snapshot: Some(snap.id.clone()),
            hydrated_at,
            tags,
        };
        self.disks.insert(id.clone(), disk.clone());
        let how = if fast {
            "fast snapshot restore: hydrated at once".to_owned()
        } else {
            format!(
                "hydrating for {} ms at {HYDRATING_THROUGHPUT_PERCENT}% throughput",
                snap.size_gib.saturating_mul(HYDRATION_MS_PER_GIB)
            )
        };
        self.record(
            Resource::Disk,
            Action::Created,
            &id,
            &format!("{cause}: from snapshot {snapshot_id}, {how}"),
        );
        Ok(disk)
    }

    pub fn detach_disk(&mut self, id: &str, cause: &str) {
        if let Some(disk) = self.disks.get_mut(id)
            && disk.attached_to.take().is_some()
        {
            self.record(Resource::Disk, Action::Detached, id, cause);
        }
    }

    /// Allocate a new public address. `reserved` makes it a static reservation.
    pub fn allocate_address(&mut self, reserved: bool, name: Option<&str>, cause: &str) -> Address {
        let n = self.next + 1;
        let ip = loop {
            let candidate = format!(
                "203.0.{}.{}",
                113 + (rand::random::<u8>() % 8),
                1 + (rand::random::<u8>() % 254)
            );
            if !self.addresses.contains_key(&candidate) {
                break candidate;
            }
        };
        let a = Address {
            ip: ip.clone(),
            allocation_id: format!("eipalloc-{}", hex_id(n)),
            name: name.map(str::to_owned),
            reserved,
            load_balancer: None,
            pool: None,
            resource_group: None,
            created_at: now(),
        };
        self.addresses.insert(ip.clone(), a.clone());
        self.record(Resource::Ip, Action::Created, &ip, cause);
        a
    }

    /// Find an address by IP, allocation id or resource name.
    pub fn find_address(&self, key: &str) -> Option<&Address> {
        self.addresses.get(key).or_else(|| {
            self.addresses
                .values()
                .find(|a| a.allocation_id == key || a.name.as_deref() == Some(key))
        })
    }

    /// Make an address a static reservation (it then survives the cluster).
    pub fn reserve_address(&mut self, ip: &str, cause: &str) -> Result<(), CloudError> {
        let a = self
            .addresses
            .get_mut(ip)
            .ok_or_else(|| CloudError::NoAddress(ip.to_owned()))?;
        if !a.reserved {
            a.reserved = true;
            self.record(Resource::Ip, Action::Reserved, ip, cause);
        }
        Ok(())
    }

    /// Create a load balancer for `service` on `ip`. The address must exist and be free,
    /// unless every load balancer on it was created with the same `share_key` (MetalLB's
    /// `allow-shared-ip`).
    pub fn create_load_balancer(
        &mut self,
        service: &str,
        ip: &str,
        share_key: Option<&str>,
        cause: &str,
    ) -> Result<LoadBalancer, CloudError> {
        if !self.addresses.contains_key(ip) {
            return Err(CloudError::NoAddress(ip.to_owned()));
        }
        if let Some(other) = self
            .load_balancers
            .values()
            .find(|lb| lb.ip == ip && (share_key.is_none() || lb.share_key.as_deref() != share_key))
        {
            return Err(CloudError::AddressInUse(ip.to_owned(), other.id.clone()));
        }
        let id = format!("lb-{}", hex_id(self.next));
        let lb = LoadBalancer {
            id: id.clone(),
            service: service.to_owned(),
            ip: ip.to_owned(),
            share_key: share_key.map(str::to_owned),
            created_at: now(),
        };
        self.load_balancers.insert(id.clone(), lb.clone());
        self.record(Resource::LoadBalancer, Action::Created, &id, cause);
        if let Some(a) = self.addresses.get_mut(ip)
            && a.load_balancer.is_none()
        {
            a.load_balancer = Some(id.clone());
        }
        self.record(
            Resource::Ip,
            Action::Associated,
            ip,
            &format!("associated with {id} for {service}"),
        );
        Ok(lb)
    }

    /// Delete a load balancer; its address is released when no other load balancer shares
    /// it, unless it is a reservation.
    pub fn delete_load_balancer(&mut self, id: &str, cause: &str) {
        let Some(lb) = self.load_balancers.remove(id) else {
            return;
        };
        self.record(Resource::LoadBalancer, Action::Deleted, id, cause);
        let still = self
            .load_balancers
            .values()
            .find(|other| other.ip == lb.ip)
            .map(|other| other.id.clone());
        let release = match self.addresses.get_mut(&lb.ip) {
            Some(a) => {
                a.load_balancer = still.clone();
                still.is_none() && !a.reserved
            }
            None => false,
        };
        if release {
            self.addresses.remove(&lb.ip);
            self.record(Resource::Ip, Action::Released, &lb.ip, cause);
        }
    }

    /// A disk that already exists in the account (created outside any cluster).
    pub fn create_disk_with_id(
        &mut self,
        id: &str,
        zone: &str,
        size_gib: u64,
        data_token: &str,
        cause: &str,
    ) -> Result<Disk, CloudError> {
        if id.trim().is_empty() {
            return Err(CloudError::Invalid {
                what: "disk id",
                value: id.to_owned(),
                why: "a disk needs an id",
            });
        }
        if !ZONES.contains(&zone) {
            return Err(CloudError::Invalid {
                what: "zone",
                value: zone.to_owned(),
                why: "not a zone of the simulated cloud (eu-west-1a, eu-west-1b, eu-west-1c)",
            });
        }
        if self.disks.contains_key(id) {
            return Err(CloudError::Exists(format!("disk {id}")));
        }
        let disk = Disk {
            id: id.to_owned(),
            zone: zone.to_owned(),
            size_gib,
            data_token: data_token.to_owned(),
            attached_to: None,
            created_at: now(),
            from_snapshot: None,
            hydrated_at: None,
            tags: BTreeMap::new(),
        };
        self.disks.insert(id.to_owned(), disk.clone());
        self.record(Resource::Disk, Action::Created, id, cause);
        Ok(disk)
    }

    /// A static address reservation that already exists in the account: an IP, optionally
    /// with an AWS allocation id (`eipalloc-…`) or an Azure public IP name.
    pub fn create_static_address(
        &mut self,
        ip: &str,
        allocation_id: Option<&str>,
        name: Option<&str>,
        cause: &str,
    ) -> Result<Address, CloudError> {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(CloudError::Invalid {
                what: "address",
                value: ip.to_owned(),
                why: "not an IP address",
            });
        }
        if self.addresses.contains_key(ip) {
            return Err(CloudError::Exists(format!("address {ip}")));
        }
        for key in allocation_id.iter().chain(name.iter()) {
            if self.find_address(key).is_some() {
                return Err(CloudError::Exists(format!("address {key}")));
            }
        }
        let a = Address {
            ip: ip.to_owned(),
            allocation_id: allocation_id
                .map(str::to_owned)
                .unwrap_or_else(|| format!("eipalloc-{}", hex_id(self.next + 1))),
            name: name.map(str::to_owned),
            reserved: true,
            load_balancer: None,
            pool: None,
            resource_group: None,
            created_at: now(),
        };
        self.addresses.insert(ip.to_owned(), a.clone());
        self.record(Resource::Ip, Action::Created, ip, cause);
        Ok(a)
    }

    /// A MetalLB-style address pool. Its addresses are the network's, not a controller's:
    /// they survive the cluster (existing ones join the pool).
    pub fn create_pool(
        &mut self,
        name: &str,
        addresses: &[String],
        cause: &str,
    ) -> Result<Pool, CloudError> {
        if self.pools.contains_key(name) {
            return Err(CloudError::Exists(format!("pool {name}")));
        }
        if addresses.is_empty() {
            return Err(CloudError::Invalid {
                what: "pool",
                value: name.to_owned(),
                why: "a pool needs at least one address",
            });
        }
        for ip in addresses {
            if !self.addresses.contains_key(ip) {
                self.create_static_address(ip, None, None, &format!("{cause} (pool {name})"))?;
            }
            if let Some(a) = self.addresses.get_mut(ip) {
                a.pool = Some(name.to_owned());
                a.reserved = true;
            }
        }
        let pool = Pool {
            name: name.to_owned(),
            addresses: addresses.to_vec(),
            created_at: now(),
        };
        self.pools.insert(name.to_owned(), pool.clone());
        Ok(pool)
    }

    /// The first address of `pool` no load balancer uses.
    pub fn free_pool_address(&self, pool: &str) -> Option<String> {
        self.pools
            .get(pool)?
            .addresses
            .iter()
            .find(|ip| !self.load_balancers.values().any(|lb| &lb.ip == *ip))
            .cloned()
    }

    /// A bucket that already exists in the account.
    pub fn create_existing_bucket(
        &mut self,
        name: &str,
        data_token: &str,
        cause: &str,
    ) -> Result<Bucket, CloudError> {
        if name.trim().is_empty() {
            return Err(CloudError::Invalid {
                what: "bucket name",
                value: name.to_owned(),
                why: "a bucket needs a name",
            });
        }
        if self.buckets.contains_key(name) {
            return Err(CloudError::Exists(format!("bucket {name}")));
        }
        Ok(self.create_bucket(name, data_token, cause))
    }

    pub fn upsert_dns(&mut self, name: &str, target: &str, cause: &str) {
        match self.dns.get_mut(name) {
            Some(r) if r.target == target => {}
            Some(r) => {
                r.target = target.to_owned();
                r.updated_at = now();
                self.record(
                    Resource::Dns,
                    Action::Updated,
                    name,
                    &format!("{cause}: now {target}"),
                );
            }
            None => {
                self.dns.insert(
                    name.to_owned(),
                    DnsRecord {
                        name: name.to_owned(),
                        target: target.to_owned(),
                        updated_at: now(),
                    },
                );
                self.record(
                    Resource::Dns,
                    Action::Created,
                    name,
                    &format!("{cause}: {target}"),
                );
            }
        }
    }

    pub fn create_bucket(&mut self, name: &str, data_token: &str, cause: &str) -> Bucket {
        let b = Bucket {
            name: name.to_owned(),
            region: region().to_owned(),
            versioning: false,
            data_token: data_token.to_owned(),
            managed_by: None,
            delete_with_claim: false,
            created_at: now(),
        };
        self.buckets.insert(name.to_owned(), b.clone());
        self.record(Resource::Bucket, Action::Created, name, cause);
        b
    }

    pub fn delete_bucket(&mut self, name: &str, cause: &str) -> Result<(), CloudError> {
        self.buckets
            .remove(name)
            .ok_or_else(|| CloudError::NoBucket(name.to_owned()))?;
        self.record(Resource::Bucket, Action::Deleted, name, cause);
        Ok(())
    }

    /// Add what an account already holds. All or nothing: on an error nothing is added.
    pub fn add_existing(&mut self, e: &Existing) -> Result<(), CloudError> {
        const CAUSE: &str = "existed before the cluster";
        let mut next = self.clone();
        for d in &e.disks {
            next.create_disk_with_id(&d.id, &d.zone, d.size_gib, &d.data, CAUSE)?;
        }
        for a in &e.addresses {
            next.create_static_address(
                &a.ip,
                a.allocation_id.as_deref(),
                a.pip_name.as_deref(),
                CAUSE,
            )?;
            if let Some(x) = next.addresses.get_mut(&a.ip) {
                x.resource_group = a.resource_group.clone();
            }
        }
        if let Some(g) = &e.node_resource_group {
            next.node_resource_group = Some(g.clone());
        }
        for p in &e.pools {
            next.create_pool(&p.name, &p.addresses, CAUSE)?;
        }
        for b in &e.buckets {
            next.create_existing_bucket(&b.name, &b.data, CAUSE)?;
        }
        for s in &e.snapshots {
            if next.snapshots.contains_key(&s.id) {
                return Err(CloudError::Exists(format!("snapshot {}", s.id)));
            }
            next.snapshots.insert(
                s.id.clone(),
                Snapshot {
                    id: s.id.clone(),
                    disk_id: s.disk_id.clone(),
                    zone: s.zone.clone(),
                    size_gib: s.size_gib,
                    data_token: s.data.clone(),
                    created_at: now(),
                    fast_restore_zones: Vec::new(),
                    tags: BTreeMap::new(),
                },
            );
            next.record(Resource::Snapshot, Action::Created, &s.id, CAUSE);
        }
        *self = next;
        Ok(())
    }

    /// Move disks (by resource id) and addresses (by IP, allocation id or name) to another
    /// resource group, as `az resource move` does: a disk's id changes with its group and it
    /// must be detached first. All or nothing. Returns each id with its id after the move.
    pub fn move_resources(
        &mut self,
        ids: &[String],
        group: &str,
        cause: &str,
    ) -> Result<BTreeMap<String, String>, CloudError> {
        if group.is_empty() {
            return Err(CloudError::Invalid {
                what: "resource group",
                value: group.to_owned(),
                why: "empty",
            });
        }
        let mut next = self.clone();
        let mut moved = BTreeMap::new();
        for id in ids {
            if let Some(disk) = next.disks.get(id).cloned() {
                if let Some(node) = &disk.attached_to {
                    return Err(CloudError::DiskInUse(id.clone(), node.clone()));
                }
                let new_id = in_resource_group(id, group).ok_or_else(|| CloudError::Invalid {
                    what: "disk id",
                    value: id.clone(),
                    why: "not a resource id with a resource group",
                })?;
                next.disks.remove(id);
                next.disks.insert(
                    new_id.clone(),
                    Disk {
                        id: new_id.clone(),
                        ..disk
                    },
                );
                next.record(
                    Resource::Disk,
                    Action::Updated,
                    &new_id,
                    &format!("{cause}: moved from {id}"),
                );
                moved.insert(id.clone(), new_id);
            } else if let Some(ip) = next.find_address(id).map(|a| a.ip.clone()) {
                if let Some(a) = next.addresses.get_mut(&ip) {
                    a.resource_group = Some(group.to_owned());
                }
                next.record(
                    Resource::Ip,
                    Action::Updated,
                    &ip,
                    &format!("{cause}: moved to resource group {group}"),
                );
                moved.insert(id.clone(), id.clone());
            } else {
                return Err(CloudError::NoDisk(id.clone()));
            }
        }
        *self = next;
        Ok(moved)
    }

    /// What a cloud does when a cluster is deleted. `delete_disks` are the disks of PVs
    /// whose reclaim policy is `Delete`.
    pub fn delete_cluster(&mut self, delete_disks: &[String]) {
        const CAUSE: &str = "cluster deleted";
        // Nodes are terminated: every disk comes off its node.
        let attached: Vec<String> = self
            .disks
            .values()
            .filter(|d| d.attached_to.is_some())
            .map(|d| d.id.clone())
            .collect();
        for id in attached {
            self.detach_disk(&id, "node terminated with the cluster");
        }
        for id in delete_disks {
            let _ = self.delete_disk(
                id,
                "cluster deleted: PersistentVolume reclaim policy Delete",
            );
        }
        let lbs: Vec<String> = self.load_balancers.keys().cloned().collect();
        for id in lbs {
            self.delete_load_balancer(&id, CAUSE);
        }
        if let Some(group) = self.node_resource_group.clone() {
            let cause = format!("cluster deleted: node resource group {group} deleted");
            let disks: Vec<String> = self
                .disks
                .keys()
                .filter(|id| resource_group_of(id).is_some_and(|g| g.eq_ignore_ascii_case(&group)))
                .cloned()
                .collect();
            for id in disks {
                let _ = self.delete_disk(&id, &cause);
            }
            let ips: Vec<String> = self
                .addresses
                .values()
                .filter(|a| {
                    a.resource_group
                        .as_deref()
                        .is_some_and(|g| g.eq_ignore_ascii_case(&group))
                })
                .map(|a| a.ip.clone())
                .collect();
            for ip in ips {
                self.addresses.remove(&ip);
                self.record(Resource::Ip, Action::Deleted, &ip, &cause);
            }
        }
        let doomed: Vec<String> = self
            .buckets
            .values()
            .filter(|b| b.managed_by.is_some() && b.delete_with_claim)
            .map(|b| b.name.clone())
            .collect();
        for name in doomed {
            let _ = self.delete_bucket(
                &name,
                "cluster deleted: bucket claim deletion policy Delete",
            );
        }
        for b in self.buckets.values_mut() {
            b.managed_by = None;
        }
    }
}

/// The cloud, shared by the cluster's controllers and the `/sim/v1/cloud` endpoints.
#[derive(Debug, Default)]
pub struct Cloud(Mutex<CloudState>);

impl Cloud {
    pub fn lock(&self) -> MutexGuard<'_, CloudState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> CloudState {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_counts_what_was_created_after_a_position() {
        let mut c = CloudState::default();
        c.create_disk("eu-west-1a", 10, "old", "seed");
        let mark = c.position();
        c.create_disk("eu-west-1a", 10, "", "provisioned");
        let a = c.allocate_address(false, None, "lb");
        c.create_load_balancer("ns/svc", &a.ip, None, "svc")
            .expect("free address");
        let n = c.created_since(mark);
        assert_eq!((n.disks, n.ips, n.load_balancers, n.buckets), (1, 1, 1, 0));
    }

    #[test]
    fn deleting_a_cluster_releases_allocated_addresses_and_keeps_reservations() {
        let mut c = CloudState::default();
        let pinned = c.allocate_address(true, None, "reserved by hand");
        let ephemeral = c.allocate_address(false, None, "controller");
        c.create_load_balancer("a/pinned", &pinned.ip, None, "svc")
            .expect("free");
        c.create_load_balancer("a/ephemeral", &ephemeral.ip, None, "svc")
            .expect("free");
        c.delete_cluster(&[]);
        assert!(c.load_balancers.is_empty());
        assert!(c.addresses.contains_key(&pinned.ip));
        assert!(!c.addresses.contains_key(&ephemeral.ip));
    }

    #[test]
    fn deleting_a_cluster_deletes_delete_policy_disks_and_claim_deleted_buckets() {
        let mut c = CloudState::default();
        let keep = c.create_disk("eu-west-1a", 10, "kafka", "seed");
        let gone = c.create_disk("eu-west-1a", 10, "scratch", "seed");
        c.attach_disk(&gone.id, "node-1").expect("attach");
        c.create_bucket("retained", "t", "seed");
        c.create_bucket("deleted", "t", "seed");
        if let Some(b) = c.buckets.get_mut("deleted") {
            b.managed_by = Some("ns/claim".into());
            b.delete_with_claim = true;
        }
        c.delete_cluster(std::slice::from_ref(&gone.id));
        assert!(c.disks.contains_key(&keep.id));
        assert!(
            !c.disks.contains_key(&gone.id),
            "attached disks are detached, then deleted"
        );
        assert!(c.buckets.contains_key("retained"));
        assert!(!c.buckets.contains_key("deleted"));
    }

    #[test]
    fn an_address_serves_one_load_balancer_at_a_time() {
        let mut c = CloudState::default();
        let a = c.allocate_address(true, Some("pip-web"), "seed");
        c.create_load_balancer("a/one", &a.ip, None, "svc")
            .expect("free");
        assert!(matches!(
            c.create_load_balancer("b/two", &a.ip, None, "svc"),
            Err(CloudError::AddressInUse(..))
        ));
        assert_eq!(
            c.find_address("pip-web").map(|x| x.ip.clone()),
            Some(a.ip.clone())
        );
        assert_eq!(
            c.find_address(&a.allocation_id).map(|x| x.ip.clone()),
            Some(a.ip)
        );
    }

    #[test]
    fn dns_upserts_record_only_real_changes() {
        let mut c = CloudState::default();
        c.upsert_dns("api.example.com", "1.2.3.4", "svc");
        c.upsert_dns("api.example.com", "1.2.3.4", "svc");
        c.upsert_dns("api.example.com", "5.6.7.8", "svc");
        let actions: Vec<Action> = c.ledger.iter().map(|e| e.action).collect();
        assert_eq!(actions, vec![Action::Created, Action::Updated]);
    }
}
