//! What Azure deletes with an AKS cluster whatever the reclaim policy: the cluster's *node
//! resource group* (`MC_<resource group>_<cluster>_<region>` by default, or the name given
//! with `--node-resource-group`) goes with the cluster, and with it every managed disk and
//! public IP inside. A disk says where it lives in its resource id
//! (`/subscriptions/…/resourceGroups/<group>/providers/Microsoft.Compute/disks/<name>`); a
//! Service's public IP lives in the group its
//! `service.beta.kubernetes.io/azure-load-balancer-resource-group` annotation names, and
//! without one in the node resource group. AKS labels every node with its node resource
//! group (`kubernetes.azure.com/cluster`).
//!
//! `stop` moves such resources out (as `az resource move` does: a disk's id changes with
//! its group). A PersistentVolume's `volumeHandle` is immutable, so the new id travels in
//! the [`DISK_MOVED_TO`] annotation: bindings read it as the disk, the restore plan writes
//! it into the restored PV.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::load_balancers::{AZURE_RG, Pin, pin_of};
use super::str_at;

/// AKS labels each node with the name of its node resource group.
pub const NODE_GROUP_LABEL: &str = "kubernetes.azure.com/cluster";
/// The prefix AKS gives a node resource group it names itself.
pub const DEFAULT_NODE_GROUP_PREFIX: &str = "MC_";
/// Annotation on a PersistentVolume whose disk `stop` moved out of the node resource group:
/// the disk's id now (the PV's `volumeHandle` cannot change).
pub const DISK_MOVED_TO: &str = "coldstart.dev/disk-moved-to";
/// The annotation naming the resource group of a Service's public IP.
pub const PIP_RESOURCE_GROUP: &str = AZURE_RG;

/// The resource group an Azure resource id names.
pub fn resource_group_of(id: &str) -> Option<&str> {
    let mut parts = id.split('/');
    parts
        .by_ref()
        .find(|p| p.eq_ignore_ascii_case("resourceGroups"))?;
    parts.next().filter(|g| !g.is_empty())
}

/// The same resource id in another resource group: where `az resource move` puts it.
pub fn in_resource_group(id: &str, group: &str) -> Option<String> {
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

/// The node resource group of an AKS cluster, from its nodes' label (None: not AKS, or
/// no node says).
pub fn node_resource_group(nodes: &[Value]) -> Option<String> {
    nodes.iter().find_map(|n| {
        n.pointer("/metadata/labels")
            .and_then(|l| l.get(NODE_GROUP_LABEL))
            .and_then(Value::as_str)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
    })
}

/// Whether `group` is a node resource group: the one the nodes name, or one AKS named
/// itself (`MC_…`). Resource group names are case-insensitive.
pub fn is_node_group(group: &str, node_group: Option<&str>) -> bool {
    node_group.is_some_and(|n| n.eq_ignore_ascii_case(group))
        || group
            .get(..DEFAULT_NODE_GROUP_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(DEFAULT_NODE_GROUP_PREFIX))
}

/// A binding Azure deletes with the cluster, whatever its reclaim policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum InNodeGroup {
    /// A PersistentVolume's managed disk.
    Disk {
        pv: String,
        disk_id: String,
        group: String,
    },
    /// A Service's public IP: by name (`azure-pip-name`) or address.
    PublicIp {
        namespace: String,
        service: String,
        address: String,
        group: String,
    },
}

impl InNodeGroup {
    /// `PersistentVolume NAME` / `Service NS/NAME`.
    pub fn subject(&self) -> String {
        match self {
            InNodeGroup::Disk { pv, .. } => format!("PersistentVolume {pv}"),
            InNodeGroup::PublicIp {
                namespace, service, ..
            } => format!("Service {namespace}/{service}"),
        }
    }

    /// The disk id or public IP.
    pub fn target(&self) -> &str {
        match self {
            InNodeGroup::Disk { disk_id, .. } => disk_id,
            InNodeGroup::PublicIp { address, .. } => address,
        }
    }

    pub fn group(&self) -> &str {
        match self {
            InNodeGroup::Disk { group, .. } | InNodeGroup::PublicIp { group, .. } => group,
        }
    }
}

/// Every disk and public IP that lives in the node resource group. A Service's public IP
/// without a resource group annotation is counted only when the cluster is known to be AKS
/// (`node_group`): elsewhere the default group is the cluster's own.
pub fn in_node_group(
    persistent_volumes: &[Value],
    services: &[Value],
    node_group: Option<&str>,
) -> Vec<InNodeGroup> {
    let mut out = Vec::new();
    for pv in persistent_volumes {
        let Some(v) = super::volume_of(pv) else {
            continue;
        };
        if v.provider != super::Provider::Azure {
            continue;
        }
        if let Some(group) = resource_group_of(&v.disk_id).filter(|g| is_node_group(g, node_group))
        {
            out.push(InNodeGroup::Disk {
                pv: v.pv.clone(),
                disk_id: v.disk_id.clone(),
                group: group.to_owned(),
            });
        }
    }
    for svc in services {
        let Some(Pin::Azure {
            pip_name,
            ipv4,
            resource_group,
        }) = pin_of(svc)
        else {
            continue;
        };
        let group = match resource_group {
            Some(g) => Some(g).filter(|g| is_node_group(g, node_group)),
            None => node_group.map(str::to_owned),
        };
        let (Some(group), Some(address)) = (group, pip_name.or(ipv4)) else {
            continue;
        };
        out.push(InNodeGroup::PublicIp {
            namespace: str_at(svc, "/metadata/namespace")
                .unwrap_or_default()
                .to_owned(),
            service: str_at(svc, "/metadata/name").unwrap_or_default().to_owned(),
            address,
            group,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{lb_service, pv};
    use serde_json::json;

    const NODE_RG: &str = "MC_shop_aks1_westeurope";

    fn disk(group: &str, name: &str) -> String {
        format!(
            "/subscriptions/0000/resourceGroups/{group}/providers/Microsoft.Compute/disks/{name}"
        )
    }

    #[test]
    fn a_resource_id_names_its_group_and_moves_to_another() {
        let id = disk(NODE_RG, "pvc-1");
        assert_eq!(resource_group_of(&id), Some(NODE_RG));
        assert_eq!(
            in_resource_group(&id, "shop-keep").as_deref(),
            Some(disk("shop-keep", "pvc-1").as_str())
        );
        assert_eq!(resource_group_of("vol-0abc"), None);
        assert!(is_node_group("mc_shop_aks1_westeurope", None));
        assert!(is_node_group("custom-nodes", Some("Custom-Nodes")));
        assert!(!is_node_group("shop", Some(NODE_RG)));
    }

    #[test]
    fn disks_and_public_ips_in_the_node_group_are_found_and_the_rest_are_not() {
        let csi = |name: &str, id: &str| {
            pv(name)
                .set(
                    "/spec/csi",
                    json!({"driver": "disk.csi.azure.com", "volumeHandle": id}),
                )
                .build()
        };
        let pvs = vec![
            csi("doomed", &disk(NODE_RG, "pvc-1")),
            csi("kept", &disk("shop", "data")),
            pv("ebs").csi_disk("vol-1").build(),
        ];
        let svc = |name: &str| {
            lb_service("web", name).annotation("service.beta.kubernetes.io/azure-pip-name", name)
        };
        let services = vec![
            svc("default-group").build(),
            svc("own-group")
                .annotation(PIP_RESOURCE_GROUP, "shop-net")
                .build(),
            svc("named-node-group")
                .annotation(PIP_RESOURCE_GROUP, NODE_RG)
                .build(),
            lb_service("web", "unpinned").build(),
        ];
        let found: Vec<(String, String)> = in_node_group(&pvs, &services, Some(NODE_RG))
            .iter()
            .map(|b| (b.subject(), b.target().to_owned()))
            .collect();
        assert_eq!(
            found,
            vec![
                ("PersistentVolume doomed".to_owned(), disk(NODE_RG, "pvc-1")),
                (
                    "Service web/default-group".to_owned(),
                    "default-group".to_owned()
                ),
                (
                    "Service web/named-node-group".to_owned(),
                    "named-node-group".to_owned()
                ),
            ]
        );
        let not_aks = in_node_group(&pvs, &services, None);
        assert_eq!(
            not_aks.len(),
            2,
            "without AKS nodes only MC_ groups count: {not_aks:#?}"
        );
    }

    #[test]
    fn the_node_group_comes_from_the_aks_node_label() {
        let node = json!({"metadata": {"name": "aks-1", "labels": {NODE_GROUP_LABEL: NODE_RG}}});
        assert_eq!(
            node_resource_group(&[json!({}), node]).as_deref(),
            Some(NODE_RG)
        );
        assert_eq!(node_resource_group(&[]), None);
    }
}
