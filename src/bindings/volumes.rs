//! Volume bindings: which cloud disk a PersistentVolume is, from its CSI source or a removed
//! in-tree source (recorded under the CSI driver that replaces it).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::data_policy::{CloudSnapshot, DataPolicy};
use super::{owned, str_at};

/// The cloud a disk lives in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aws,
    Azure,
    Gcp,
    /// Any other CSI driver (its name is in `csi_driver`).
    Other,
}

/// The PVC a PV is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRef {
    pub namespace: String,
    pub name: String,
}

/// One PersistentVolume and the disk behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeBinding {
    pub pv: String,
    pub provider: Provider,
    /// The CSI driver (for in-tree sources, the driver that replaces them).
    pub csi_driver: String,
    /// `csi` or the in-tree source's field name (`awsElasticBlockStore`, …).
    pub source: String,
    /// The CSI volume handle (for in-tree sources, the handle the CSI migration uses).
    pub volume_handle: String,
    /// The disk's own id: `vol-…`, the Azure disk resource id, the GCE disk name.
    pub disk_id: String,
    pub zone: Option<String>,
    pub size: Option<String>,
    pub storage_class: Option<String>,
    pub reclaim_policy: Option<String>,
    pub claim: Option<ClaimRef>,
    pub fs_type: Option<String>,
    /// How a cold start brings the data back (the claim's annotation, else the default).
    #[serde(default)]
    pub data_policy: DataPolicy,
    /// The claim cannot live with a hydrating disk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub latency_critical: bool,
    /// Quiesce the claim's workloads around its cloud snapshot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quiesce: bool,
    /// The cloud snapshot taken with the cluster snapshot (snapshot policies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_snapshot: Option<CloudSnapshot>,
}

/// Node-affinity keys that carry a volume's zone, most specific first.
const ZONE_KEYS: &[&str] = &[
    "topology.ebs.csi.aws.com/zone",
    "topology.disk.csi.azure.com/zone",
    "topology.gke.io/zone",
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];

/// Labels in-tree volumes carried their zone in (before node affinity existed for them).
const ZONE_LABELS: &[&str] = &[
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];

fn zone_from_labels(pv: &Value) -> Option<String> {
    let labels = pv.pointer("/metadata/labels")?;
    ZONE_LABELS
        .iter()
        .find_map(|k| labels.get(*k).and_then(Value::as_str))
        .filter(|z| !z.is_empty())
        .map(str::to_owned)
}

fn zone_from_affinity(pv: &Value) -> Option<String> {
    let terms = pv
        .pointer("/spec/nodeAffinity/required/nodeSelectorTerms")?
        .as_array()?;
    let exprs: Vec<&Value> = terms
        .iter()
        .filter_map(|t| t.get("matchExpressions").and_then(Value::as_array))
        .flatten()
        .collect();
    ZONE_KEYS.iter().find_map(|key| {
        exprs
            .iter()
            .find(|e| e.get("key").and_then(Value::as_str) == Some(key))
            .and_then(|e| e.pointer("/values/0"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

fn provider_of(driver: &str) -> Provider {
    match driver {
        "ebs.csi.aws.com" => Provider::Aws,
        "disk.csi.azure.com" => Provider::Azure,
        "pd.csi.storage.gke.io" => Provider::Gcp,
        _ => Provider::Other,
    }
}

/// The disk id inside a CSI handle: Azure keeps the whole resource id, GCE the disk name.
fn disk_id_of(provider: &Provider, handle: &str) -> String {
    match provider {
        Provider::Gcp => handle.rsplit('/').next().unwrap_or(handle).to_owned(),
        _ => handle.to_owned(),
    }
}

fn gce_zone(handle: &str) -> Option<String> {
    let parts: Vec<&str> = handle.split('/').collect();
    parts
        .iter()
        .position(|p| *p == "zones")
        .and_then(|i| parts.get(i + 1))
        .map(|z| (*z).to_owned())
}

/// The in-tree volume sources coldstart knows, each recorded under the CSI driver that
/// replaced it (the CSI migration's mapping).
pub const IN_TREE_SOURCES: [&str; 6] = [
    "awsElasticBlockStore",
    "azureDisk",
    "gcePersistentDisk",
    "cinder",
    "vsphereVolume",
    "portworxVolume",
];

/// Node-affinity keys that pin a volume to one node: its data is on that node's own
/// storage (local PVs and local-path use the hostname, TopoLVM and OpenEBS LocalPV their own).
const NODE_KEYS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.topolvm.io/node",
    "openebs.io/nodename",
];

/// A volume whose data lives on one node's own storage rather than in the cloud: deleting
/// the cluster's nodes deletes it, whatever its reclaim policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLocal {
    /// `hostPath`, `local`, or the CSI driver that keeps it on the node.
    pub source: String,
    /// The directory on the node, when the volume names it.
    pub path: Option<String>,
    /// The node its affinity pins it to, when it names one.
    pub node: Option<String>,
}

/// Whether a PV's data is node-local: a `hostPath` or `local` source, or any other volume
/// (a node-local CSI driver) whose node affinity pins it to a single node.
pub fn node_local(pv: &Value) -> Option<NodeLocal> {
    let spec = pv.get("spec")?;
    let node = node_from_affinity(pv);
    for source in ["hostPath", "local"] {
        if let Some(src) = spec.get(source) {
            return Some(NodeLocal {
                source: source.to_owned(),
                path: owned(str_at(src, "/path")),
                node,
            });
        }
    }
    let driver = str_at(spec, "/csi/driver")?;
    if provider_of(driver) != Provider::Other {
        return None;
    }
    Some(NodeLocal {
        source: driver.to_owned(),
        path: None,
        node: Some(node?),
    })
}

fn node_from_affinity(pv: &Value) -> Option<String> {
    pv.pointer("/spec/nodeAffinity/required/nodeSelectorTerms")?
        .as_array()?
        .iter()
        .filter_map(|t| t.get("matchExpressions").and_then(Value::as_array))
        .flatten()
        .find(|e| str_at(e, "/key").is_some_and(|k| NODE_KEYS.contains(&k)))
        .and_then(|e| str_at(e, "/values/0"))
        .map(str::to_owned)
}

/// The class a PV belongs to, as Kubernetes reads it (`GetPersistentVolumeClass`): the
/// beta `volume.beta.kubernetes.io/storage-class` annotation first, then the field.
fn class_of(pv: &Value) -> Option<&str> {
    pv.pointer("/metadata/annotations")
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .or_else(|| pv.pointer("/spec/storageClassName"))
        .and_then(Value::as_str)
}

/// The binding of one PV, if it is backed by a disk.
pub fn extract(pv: &Value) -> Option<VolumeBinding> {
    let spec = pv.get("spec")?;
    let (source, driver, handle, fs_type, mut zone) = if let Some(csi) = spec.get("csi") {
        (
            "csi",
            str_at(csi, "/driver")?.to_owned(),
            str_at(csi, "/volumeHandle")?.to_owned(),
            owned(str_at(csi, "/fsType")),
            None,
        )
    } else if let Some(ebs) = spec.get("awsElasticBlockStore") {
        // In-tree ids look like `aws://us-east-1a/vol-123` or plain `vol-123`.
        let raw = str_at(ebs, "/volumeID")?;
        let (zone, id) = match raw.strip_prefix("aws://") {
            Some(rest) => match rest.split_once('/') {
                Some((z, id)) => ((!z.is_empty()).then(|| z.to_owned()), id.to_owned()),
                None => (None, rest.to_owned()),
            },
            None => (None, raw.to_owned()),
        };
        (
            "awsElasticBlockStore",
            "ebs.csi.aws.com".to_owned(),
            id,
            owned(str_at(ebs, "/fsType")),
            zone,
        )
    } else if let Some(az) = spec.get("azureDisk") {
        (
            "azureDisk",
            "disk.csi.azure.com".to_owned(),
            str_at(az, "/diskURI")?.to_owned(),
            owned(str_at(az, "/fsType")),
            None,
        )
    } else if let Some(cinder) = spec.get("cinder") {
        (
            "cinder",
            "cinder.csi.openstack.org".to_owned(),
            str_at(cinder, "/volumeID")?.to_owned(),
            owned(str_at(cinder, "/fsType")),
            None,
        )
    } else if let Some(vs) = spec.get("vsphereVolume") {
        (
            "vsphereVolume",
            "csi.vsphere.vmware.com".to_owned(),
            str_at(vs, "/volumePath")?.to_owned(),
            owned(str_at(vs, "/fsType")),
            None,
        )
    } else if let Some(px) = spec.get("portworxVolume") {
        (
            "portworxVolume",
            "pxd.portworx.com".to_owned(),
            str_at(px, "/volumeID")?.to_owned(),
            owned(str_at(px, "/fsType")),
            None,
        )
    } else if let Some(gce) = spec.get("gcePersistentDisk") {
        let zone = zone_from_affinity(pv).or_else(|| zone_from_labels(pv));
        let name = str_at(gce, "/pdName")?;
        // The CSI migration library's handle for an in-tree PD.
        let handle = format!(
            "projects/UNSPECIFIED/zones/{}/disks/{name}",
            zone.as_deref().unwrap_or("UNSPECIFIED")
        );
        (
            "gcePersistentDisk",
            "pd.csi.storage.gke.io".to_owned(),
            handle,
            owned(str_at(gce, "/fsType")),
            zone,
        )
    } else {
        return None;
    };
    let provider = provider_of(&driver);
    if zone.is_none() {
        zone = zone_from_affinity(pv).or_else(|| zone_from_labels(pv));
    }
    if zone.is_none() && provider == Provider::Gcp {
        zone = gce_zone(&handle);
    }
    let claim = match (
        str_at(spec, "/claimRef/namespace"),
        str_at(spec, "/claimRef/name"),
    ) {
        (Some(namespace), Some(name)) => Some(ClaimRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
        _ => None,
    };
    // A disk `stop` moved out of a group deleted with the cluster has a new id; the PV's
    // handle is immutable, so the annotation says where the disk is now.
    let handle = pv
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(super::azure::DISK_MOVED_TO))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or(handle, str::to_owned);
    Some(VolumeBinding {
        pv: str_at(pv, "/metadata/name")?.to_owned(),
        disk_id: disk_id_of(&provider, &handle),
        provider,
        csi_driver: driver,
        source: source.to_owned(),
        volume_handle: handle,
        zone,
        size: owned(str_at(spec, "/capacity/storage")),
        storage_class: owned(class_of(pv)),
        reclaim_policy: owned(str_at(spec, "/persistentVolumeReclaimPolicy")),
        claim,
        fs_type,
        data_policy: DataPolicy::default(),
        latency_critical: false,
        quiesce: false,
        cloud_snapshot: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(source: Value, zone_key: Option<(&str, &str)>) -> Value {
        let mut spec = json!({"capacity": {"storage": "20Gi"}, "storageClassName": "gp3",
            "persistentVolumeReclaimPolicy": "Delete",
            "claimRef": {"namespace": "db", "name": "data", "uid": "old"}});
        for (k, v) in source.as_object().unwrap() {
            spec[k] = v.clone();
        }
        if let Some((k, z)) = zone_key {
            spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": k, "operator": "In", "values": [z]}]}]}});
        }
        json!({"metadata": {"name": "pv-1"}, "spec": spec})
    }

    #[test]
    fn every_disk_source_yields_provider_driver_handle_disk_and_zone() {
        // (case, source, zone label, provider, driver, handle, disk id, zone)
        let cases = [
            (
                "ebs csi",
                json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0abc", "fsType": "ext4"}}),
                Some(("topology.ebs.csi.aws.com/zone", "eu-west-1a")),
                Provider::Aws,
                "ebs.csi.aws.com",
                "vol-0abc",
                "vol-0abc",
                Some("eu-west-1a"),
            ),
            (
                "azure csi",
                json!({"csi": {"driver": "disk.csi.azure.com", "volumeHandle": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"}}),
                Some(("topology.disk.csi.azure.com/zone", "westeurope-1")),
                Provider::Azure,
                "disk.csi.azure.com",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1",
                Some("westeurope-1"),
            ),
            (
                "gce csi, zone from handle",
                json!({"csi": {"driver": "pd.csi.storage.gke.io", "volumeHandle": "projects/p/zones/europe-west1-b/disks/pd-1"}}),
                None,
                Provider::Gcp,
                "pd.csi.storage.gke.io",
                "projects/p/zones/europe-west1-b/disks/pd-1",
                "pd-1",
                Some("europe-west1-b"),
            ),
            (
                "in-tree ebs with zone in id",
                json!({"awsElasticBlockStore": {"volumeID": "aws://us-east-1c/vol-0def"}}),
                None,
                Provider::Aws,
                "ebs.csi.aws.com",
                "vol-0def",
                "vol-0def",
                Some("us-east-1c"),
            ),
            (
                "in-tree ebs plain id",
                json!({"awsElasticBlockStore": {"volumeID": "vol-0fed"}}),
                Some(("topology.kubernetes.io/zone", "us-east-1b")),
                Provider::Aws,
                "ebs.csi.aws.com",
                "vol-0fed",
                "vol-0fed",
                Some("us-east-1b"),
            ),
            (
                "in-tree azure disk",
                json!({"azureDisk": {"diskName": "d2", "diskURI": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d2"}}),
                None,
                Provider::Azure,
                "disk.csi.azure.com",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d2",
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d2",
                None,
            ),
            (
                "in-tree gce pd",
                json!({"gcePersistentDisk": {"pdName": "pd-2"}}),
                Some(("failure-domain.beta.kubernetes.io/zone", "us-central1-a")),
                Provider::Gcp,
                "pd.csi.storage.gke.io",
                "projects/UNSPECIFIED/zones/us-central1-a/disks/pd-2",
                "pd-2",
                Some("us-central1-a"),
            ),
            (
                "in-tree ebs, zone only in the legacy label",
                json!({"awsElasticBlockStore": {"volumeID": "vol-0aaa"}}),
                None,
                Provider::Aws,
                "ebs.csi.aws.com",
                "vol-0aaa",
                "vol-0aaa",
                None,
            ),
            (
                "in-tree cinder",
                json!({"cinder": {"volumeID": "c-1"}}),
                Some(("topology.kubernetes.io/zone", "nova")),
                Provider::Other,
                "cinder.csi.openstack.org",
                "c-1",
                "c-1",
                Some("nova"),
            ),
            (
                "in-tree vsphere",
                json!({"vsphereVolume": {"volumePath": "[ds1] volumes/v1.vmdk"}}),
                None,
                Provider::Other,
                "csi.vsphere.vmware.com",
                "[ds1] volumes/v1.vmdk",
                "[ds1] volumes/v1.vmdk",
                None,
            ),
            (
                "other csi driver",
                json!({"csi": {"driver": "rook-ceph.rbd.csi.ceph.com", "volumeHandle": "0001-abc"}}),
                None,
                Provider::Other,
                "rook-ceph.rbd.csi.ceph.com",
                "0001-abc",
                "0001-abc",
                None,
            ),
        ];
        for (name, source, zone_key, provider, driver, handle, disk, zone) in cases {
            let b = extract(&pv(source, zone_key)).unwrap_or_else(|| panic!("{name}: no binding"));
            assert_eq!(b.provider, provider, "{name}");
            assert_eq!(b.csi_driver, driver, "{name}");
            assert_eq!(b.volume_handle, handle, "{name}");
            assert_eq!(b.disk_id, disk, "{name}");
            assert_eq!(b.zone.as_deref(), zone, "{name}");
            assert_eq!(b.size.as_deref(), Some("20Gi"), "{name}");
            assert_eq!(b.storage_class.as_deref(), Some("gp3"), "{name}");
            assert_eq!(b.reclaim_policy.as_deref(), Some("Delete"), "{name}");
            assert_eq!(
                b.claim,
                Some(ClaimRef {
                    namespace: "db".into(),
                    name: "data".into()
                }),
                "{name}"
            );
        }
    }

    #[test]
    fn an_in_tree_volume_takes_its_zone_from_the_labels_it_carried() {
        let pv = json!({"metadata": {"name": "x", "labels": {"failure-domain.beta.kubernetes.io/zone": "us-east-1d"}},
            "spec": {"awsElasticBlockStore": {"volumeID": "vol-9"}}});
        assert_eq!(
            extract(&pv).and_then(|b| b.zone).as_deref(),
            Some("us-east-1d")
        );
    }

    #[test]
    fn volumes_without_a_disk_have_no_binding() {
        let cases = [
            json!({"metadata": {"name": "x"}, "spec": {"hostPath": {"path": "/data"}}}),
            json!({"metadata": {"name": "x"}, "spec": {"nfs": {"server": "n", "path": "/"}}}),
            json!({"metadata": {"name": "x"}}),
        ];
        for pv in cases {
            assert_eq!(extract(&pv), None, "{pv}");
        }
    }

    #[test]
    fn host_path_local_and_node_pinned_csi_volumes_are_node_local_and_cloud_disks_are_not() {
        let on_node = |key: &str| {
            json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": key, "operator": "In", "values": ["worker-1"]}]}]}})
        };
        let local = |source: Value, affinity: Option<Value>| {
            let mut pv = json!({"metadata": {"name": "x"}, "spec": source});
            if let Some(a) = affinity {
                pv["spec"]["nodeAffinity"] = a;
            }
            node_local(&pv).map(|l| (l.source, l.path, l.node))
        };
        let some = |source: &str, path: Option<&str>, node: Option<&str>| {
            Some((
                source.to_owned(),
                path.map(str::to_owned),
                node.map(str::to_owned),
            ))
        };
        assert_eq!(
            local(
                json!({"hostPath": {"path": "/tmp/hostpath-provisioner/db/data"}}),
                None
            ),
            some("hostPath", Some("/tmp/hostpath-provisioner/db/data"), None)
        );
        assert_eq!(
            local(
                json!({"local": {"path": "/mnt/disks/ssd1"}}),
                Some(on_node("kubernetes.io/hostname"))
            ),
            some("local", Some("/mnt/disks/ssd1"), Some("worker-1"))
        );
        assert_eq!(
            local(
                json!({"csi": {"driver": "topolvm.io", "volumeHandle": "h"}}),
                Some(on_node("topology.topolvm.io/node"))
            ),
            some("topolvm.io", None, Some("worker-1"))
        );
        // A zonal cloud disk, and an unknown CSI driver not pinned to a node, are not.
        assert_eq!(
            local(
                json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}),
                Some(on_node("kubernetes.io/hostname"))
            ),
            None
        );
        assert_eq!(
            local(
                json!({"csi": {"driver": "nfs.csi.k8s.io", "volumeHandle": "n"}}),
                None
            ),
            None
        );
    }

    #[test]
    fn a_volume_s_class_is_read_from_the_beta_annotation_first() {
        let pv = json!({"metadata": {"name": "x",
                "annotations": {"volume.beta.kubernetes.io/storage-class": "fast"}},
            "spec": {"storageClassName": "gp3", "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}});
        assert_eq!(extract(&pv).unwrap().storage_class.as_deref(), Some("fast"));
    }

    #[test]
    fn an_unbound_volume_has_no_claim() {
        let b = extract(&json!({"metadata": {"name": "x"},
            "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}}))
        .unwrap();
        assert_eq!(b.claim, None);
        assert_eq!(b.reclaim_policy, None);
    }
}
