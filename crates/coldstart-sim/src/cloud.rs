//! The simulated cloud behind the simulated cluster: disks (each with a data token, so an
//! old disk can be told from a new empty one), IP addresses (static reservations vs
//! addresses a controller allocated), load balancers, DNS records and buckets — and a
//! ledger of everything created, changed or deleted, with time and cause. The ledger is
//! how a test proves that a restore provisioned **nothing new**.
//!
//! The cloud outlives clusters: [`Cloud::delete_cluster`] applies what a cloud does when a
//! cluster is deleted (release what the cluster's controllers allocated, keep the rest).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// The zones the simulated cloud has (and the simulated cluster's nodes are spread over).
pub const ZONES: [&str; 3] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"];

/// The CSI driver that provisions and names the simulated cloud's disks.
pub const CSI_DRIVER: &str = "ebs.csi.aws.com";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Disk {
    pub id: String,
    pub zone: String,
    pub size_gib: u64,
    /// What is written on the disk. A newly provisioned disk is empty ("").
    pub data_token: String,
    pub attached_to: Option<String>,
    pub created_at: String,
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
    /// The load balancer it is associated with.
    pub load_balancer: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoadBalancer {
    pub id: String,
    /// `namespace/name` of the Service it serves.
    pub service: String,
    pub ip: String,
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
    pub dns: BTreeMap<String, DnsRecord>,
    pub buckets: BTreeMap<String, Bucket>,
    pub ledger: Vec<LedgerEntry>,
    #[serde(skip)]
    next: u64,
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

    /// The last ledger sequence number (0 before anything happened).
    pub fn position(&self) -> u64 {
        self.next
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
                Resource::Dns => {}
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

    pub fn create_load_balancer(
        &mut self,
        service: &str,
        ip: &str,
        cause: &str,
    ) -> Result<LoadBalancer, CloudError> {
        let addr = self
            .addresses
            .get(ip)
            .ok_or_else(|| CloudError::NoAddress(ip.to_owned()))?;
        if let Some(lb) = &addr.load_balancer {
            return Err(CloudError::AddressInUse(ip.to_owned(), lb.clone()));
        }
        let id = format!("lb-{}", hex_id(self.next));
        let lb = LoadBalancer {
            id: id.clone(),
            service: service.to_owned(),
            ip: ip.to_owned(),
            created_at: now(),
        };
        self.load_balancers.insert(id.clone(), lb.clone());
        self.record(Resource::LoadBalancer, Action::Created, &id, cause);
        if let Some(a) = self.addresses.get_mut(ip) {
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

    /// Delete a load balancer; its address is released unless it is a reservation.
    pub fn delete_load_balancer(&mut self, id: &str, cause: &str) {
        let Some(lb) = self.load_balancers.remove(id) else {
            return;
        };
        self.record(Resource::LoadBalancer, Action::Deleted, id, cause);
        let release = match self.addresses.get_mut(&lb.ip) {
            Some(a) => {
                a.load_balancer = None;
                !a.reserved
            }
            None => false,
        };
        if release {
            self.addresses.remove(&lb.ip);
            self.record(Resource::Ip, Action::Released, &lb.ip, cause);
        }
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
            region: "eu-west-1".to_owned(),
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
        c.create_load_balancer("ns/svc", &a.ip, "svc")
            .expect("free address");
        let n = c.created_since(mark);
        assert_eq!((n.disks, n.ips, n.load_balancers, n.buckets), (1, 1, 1, 0));
    }

    #[test]
    fn deleting_a_cluster_releases_allocated_addresses_and_keeps_reservations() {
        let mut c = CloudState::default();
        let pinned = c.allocate_address(true, None, "reserved by hand");
        let ephemeral = c.allocate_address(false, None, "controller");
        c.create_load_balancer("a/pinned", &pinned.ip, "svc")
            .expect("free");
        c.create_load_balancer("a/ephemeral", &ephemeral.ip, "svc")
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
        c.create_load_balancer("a/one", &a.ip, "svc").expect("free");
        assert!(matches!(
            c.create_load_balancer("b/two", &a.ip, "svc"),
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
