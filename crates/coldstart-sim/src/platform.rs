//! The `platform` seed: a small but realistic multi-tenant data platform, the kind the
//! field report migrated — tenants as namespaces with quotas, Kafka and ZooKeeper
//! StatefulSets on disks with data (some `Retain`, some `Delete`), LoadBalancer Services
//! that IoT devices have whitelisted (some pinned, some controller-allocated) with DNS
//! names, tenant buckets through claims, CRDs with custom resources, operators that
//! recreate what they manage, RBAC, Secrets and ConfigMaps.

use serde_json::{Value, json};

use super::Actor;
use super::controllers::api::{Api, Role, Served};
use super::controllers::{MANAGES_ANNOTATION, OPERATOR_LABEL};

/// How long a custom resource's kind may take to be served after its CRD is created:
/// kube-apiserver serves it once the CRD is established (within a second or two), the
/// embedded server at once.
const ESTABLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn served_kind(sim: &dyn Api, av: &str, kind: &str) -> Option<Served> {
    let deadline = std::time::Instant::now() + ESTABLISH_TIMEOUT;
    loop {
        match sim.served_kind(av, kind) {
            Ok(Some(s)) => return Some(s),
            Ok(None) if sim.role() == Role::CloudOnly && std::time::Instant::now() < deadline => {}
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(%av, %kind, error = %e, "platform seed: discovery failed");
                if std::time::Instant::now() >= deadline {
                    return None;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Tenants of the platform; each gets a namespace, quota, config, credentials and RBAC.
pub const TENANTS: [&str; 3] = ["tenant-a", "tenant-b", "tenant-c"];

/// The approval a CRD in a protected group carries (the COSI CRDs name their API review).
fn approval(group: &str) -> Value {
    if group.ends_with("k8s.io") {
        json!({"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/container-object-storage-interface-api/pull/2"})
    } else {
        json!({})
    }
}

fn crd(group: &str, plural: &str, kind: &str, scope: &str, version: &str, columns: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}"), "annotations": approval(group)},
        "spec": {"group": group, "scope": scope,
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": [{"name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns}]}
    })
}

fn kafka_statefulset() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "kafka", "namespace": "kafka", "labels": {"app": "kafka", "coldstart.dev/tier": "data"}},
        "spec": {"replicas": 3, "serviceName": "kafka-headless",
            "selector": {"matchLabels": {"app": "kafka"}},
            "template": {"metadata": {"labels": {"app": "kafka"}},
                "spec": {"containers": [{"name": "kafka", "image": "quay.io/strimzi/kafka:0.45.0-kafka-3.9.0",
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/kafka"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3-retain",
                         "resources": {"requests": {"storage": "100Gi"}}}}]}
    })
}

fn kafka_bootstrap_service(pinned: Option<&str>) -> Value {
    let mut annotations =
        json!({"external-dns.alpha.kubernetes.io/hostname": "kafka.platform.example.com"});
    if let Some(alloc) = pinned {
        annotations["service.beta.kubernetes.io/aws-load-balancer-eip-allocations"] = json!(alloc);
    }
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kafka-bootstrap", "namespace": "kafka", "labels": {"app": "kafka"}, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "selector": {"app": "kafka"},
                 "ports": [{"name": "tls", "port": 9093, "targetPort": 9093, "protocol": "TCP"}]}
    })
}

fn operator(ns: &str, name: &str, manages: &[Value]) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns,
            "labels": {"app": name, OPERATOR_LABEL: "true", "coldstart.dev/tier": "operators"},
            "annotations": {MANAGES_ANNOTATION: serde_json::to_string(manages).unwrap_or_default()}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"serviceAccountName": name, "containers": [{"name": "operator", "image": format!("registry.example.com/{name}:2.1"), "resources": requests()}]}}}
    })
}

/// What each container asks for: a tenant namespace's ResourceQuota limits requests, and
/// kube-apiserver's quota admission refuses a pod there that does not state them.
fn requests() -> Value {
    json!({"requests": {"cpu": "100m", "memory": "128Mi"}})
}

fn app_deployment(ns: &str, name: &str, claim: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": name, "image": format!("registry.example.com/{ns}/{name}:1.4.2"), "resources": requests(),
        "env": [{"name": "KAFKA_BOOTSTRAP", "value": "kafka-bootstrap.kafka.svc:9093"}],
        "envFrom": [{"secretRef": {"name": format!("{ns}-credentials")}}]}]});
    if let Some(c) = claim {
        spec["volumes"] = json!([{"name": "data", "persistentVolumeClaim": {"claimName": c}}]);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name, "coldstart.dev/tier": if claim.is_some() {"data"} else {"apps"}}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}
    })
}

/// The objects and cloud resources of the platform. Cloud resources (disks with data,
/// reserved IPs, buckets) are created first, as they would predate the cluster.
pub fn load(sim: &dyn Api) {
    let admin = Actor::admin();
    let create = |v: Value| {
        let av = v["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = v["kind"].as_str().unwrap_or_default().to_owned();
        let Some(def) = served_kind(sim, &av, &kind) else {
            tracing::warn!(%av, %kind, "platform seed: type not served");
            return;
        };
        let ns = v
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Err(e) = sim.create(&def.group, &def.plural, &ns, v, &admin) {
            tracing::warn!(%kind, error = %e, "platform seed: object not created");
        }
    };

    // --- the cloud as it was before this cluster ---
    let (kafka_disks, zk_disks, pg_disk, kafka_ip, ingress_ip) = {
        let mut cloud = sim.cloud().lock();
        let kafka: Vec<_> = (0..3)
            .map(|i| {
                cloud.create_disk(
                    super::cloud::ZONES[i],
                    100,
                    &format!("kafka-{i}:topics-and-offsets"),
                    "platform seed: Kafka broker data",
                )
            })
            .collect();
        let zk: Vec<_> = (0..3)
            .map(|i| {
                cloud.create_disk(
                    super::cloud::ZONES[i],
                    10,
                    &format!("zookeeper-{i}:snapshots"),
                    "platform seed: ZooKeeper data",
                )
            })
            .collect();
        let pg = cloud.create_disk(
            super::cloud::ZONES[0],
            20,
            "postgres:tenant-a-tables",
            "platform seed: dynamically provisioned for tenant-a/pg-data",
        );
        let kafka_ip = cloud.allocate_address(
            true,
            Some("kafka-bootstrap"),
            "platform seed: Elastic IP whitelisted by IoT devices",
        );
        let ingress_ip = cloud.allocate_address(
            true,
            Some("ingress"),
            "platform seed: static IP for the ingress",
        );
        for t in TENANTS {
            cloud.create_bucket(
                &format!("{t}-data"),
                &format!("{t}:objects"),
                "platform seed: tenant bucket",
            );
        }
        cloud.create_bucket(
            "platform-logs",
            "platform:logs",
            "platform seed: log archive",
        );
        cloud.create_bucket(
            "platform-scratch",
            "platform:scratch",
            "platform seed: created by Crossplane",
        );
        cloud.create_bucket(
            "tenant-b-scratch",
            "tenant-b:scratch",
            "platform seed: created by the tenant-b bucket operator",
        );
        (kafka, zk, pg, kafka_ip, ingress_ip)
    };

    // --- cluster-wide ---
    create(crd(
        "objectstorage.k8s.io",
        "bucketclaims",
        "BucketClaim",
        "Namespaced",
        "v1alpha1",
        json!([{"name": "Bucket", "type": "string", "jsonPath": ".status.bucketName"},
               {"name": "Ready", "type": "boolean", "jsonPath": ".status.bucketReady"}]),
    ));
    create(crd(
        "objectstorage.k8s.io",
        "bucketclasses",
        "BucketClass",
        "Cluster",
        "v1alpha1",
        json!([]),
    ));
    create(crd(
        "objectstorage.k8s.io",
        "buckets",
        "Bucket",
        "Cluster",
        "v1alpha1",
        json!([{"name": "BucketID", "type": "string", "jsonPath": ".status.bucketID"}]),
    ));
    create(crd(
        "s3.aws.upbound.io",
        "buckets",
        "Bucket",
        "Cluster",
        "v1beta1",
        json!([{"name": "External-Name", "type": "string", "jsonPath": ".metadata.annotations.crossplane\\.io/external-name"}]),
    ));
    create(crd(
        "kafka.strimzi.io",
        "kafkatopics",
        "KafkaTopic",
        "Namespaced",
        "v1beta2",
        json!([{"name": "Partitions", "type": "integer", "jsonPath": ".spec.partitions"}]),
    ));
    create(crd(
        "platform.example.com",
        "tenants",
        "Tenant",
        "Cluster",
        "v1",
        json!([{"name": "Owner", "type": "string", "jsonPath": ".spec.owner"}]),
    ));
    create(
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "gp3", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": super::cloud::CSI_DRIVER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
        "parameters": {"type": "gp3"}}),
    );
    create(
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "gp3-retain"},
        "provisioner": super::cloud::CSI_DRIVER, "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate",
        "parameters": {"type": "gp3"}}),
    );
    create(
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "platform-critical"}, "value": 1000000, "description": "Kafka, ZooKeeper, ingress"}),
    );
    create(
        json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "BucketClass",
        "metadata": {"name": "standard"}, "driverName": "s3.objectstorage.k8s.io", "deletionPolicy": "Delete"}),
    );
    create(
        json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "BucketClass",
        "metadata": {"name": "retained"}, "driverName": "s3.objectstorage.k8s.io", "deletionPolicy": "Retain"}),
    );
    create(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "platform-tenant"},
        "rules": [{"apiGroups": ["", "apps"], "resources": ["configmaps", "deployments", "services"], "verbs": ["get", "list", "watch", "create", "update"]}]}),
    );

    // --- data tier: Kafka (Retain) and ZooKeeper (Delete) on existing disks ---
    for ns in ["kafka", "ingress-nginx", "bucket-system"] {
        create(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"coldstart.dev/platform": "true"}}}),
        );
    }
    for (i, d) in kafka_disks.iter().enumerate() {
        create(json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": format!("pv-kafka-{i}"), "annotations": {"pv.kubernetes.io/provisioned-by": super::cloud::CSI_DRIVER}},
            "spec": {"capacity": {"storage": "100Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "gp3-retain",
                "csi": {"driver": super::cloud::CSI_DRIVER, "volumeHandle": d.id, "fsType": "xfs"},
                "claimRef": {"namespace": "kafka", "name": format!("data-kafka-{i}")},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": [d.zone]}]}]}}}}));
        create(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": format!("data-kafka-{i}"), "namespace": "kafka", "labels": {"app": "kafka"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3-retain",
                     "resources": {"requests": {"storage": "100Gi"}}, "volumeName": format!("pv-kafka-{i}")}}));
    }
    for (i, d) in zk_disks.iter().enumerate() {
        // ZooKeeper's volumes were dynamically provisioned with the default class: Delete.
        create(json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": format!("pv-zookeeper-{i}"), "annotations": {"pv.kubernetes.io/provisioned-by": super::cloud::CSI_DRIVER}},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "gp3",
                "awsElasticBlockStore": {"volumeID": format!("aws://{}/{}", d.zone, d.id), "fsType": "ext4"},
                "claimRef": {"namespace": "kafka", "name": format!("datadir-zookeeper-{i}")},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [d.zone]}]}]}}}}));
        create(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": format!("datadir-zookeeper-{i}"), "namespace": "kafka", "labels": {"app": "zookeeper"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3",
                     "resources": {"requests": {"storage": "10Gi"}}, "volumeName": format!("pv-zookeeper-{i}")}}));
    }
    create(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "zookeeper", "namespace": "kafka", "labels": {"app": "zookeeper", "coldstart.dev/tier": "data"}},
        "spec": {"replicas": 3, "serviceName": "zookeeper-headless", "selector": {"matchLabels": {"app": "zookeeper"}},
            "template": {"metadata": {"labels": {"app": "zookeeper"}},
                "spec": {"priorityClassName": "platform-critical", "containers": [{"name": "zookeeper", "image": "zookeeper:3.9"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "datadir"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "10Gi"}}}}]}}));
    create(kafka_statefulset());
    create(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kafka-headless", "namespace": "kafka"},
        "spec": {"clusterIP": "None", "selector": {"app": "kafka"}, "ports": [{"name": "tcp", "port": 9092}]}}));
    create(kafka_bootstrap_service(Some(&kafka_ip.allocation_id)));
    for (i, topic) in ["telemetry", "commands", "audit"].iter().enumerate() {
        create(
            json!({"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaTopic",
            "metadata": {"name": topic, "namespace": "kafka", "labels": {"strimzi.io/cluster": "kafka"}},
            "spec": {"partitions": 12 * (i + 1), "replicas": 3, "config": {"retention.ms": "604800000"}}}),
        );
    }
    create(
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "strimzi-cluster-operator", "namespace": "kafka"}}),
    );
    create(operator(
        "kafka",
        "strimzi-cluster-operator",
        &[kafka_statefulset(), kafka_bootstrap_service(None)],
    ));

    // --- ingress: pinned with spec.loadBalancerIP on a reserved address ---
    create(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx",
            "annotations": {"external-dns.kubernetes.io/hostname": "apps.platform.example.com"}},
        "spec": {"type": "LoadBalancer", "loadBalancerIP": ingress_ip.ip, "selector": {"app": "ingress-nginx"},
                 "ports": [{"name": "https", "port": 443, "targetPort": 443, "nodePort": 31443}]}}));
    create(app_deployment(
        "ingress-nginx",
        "ingress-nginx-controller",
        None,
    ));

    // --- platform buckets via Crossplane: logs kept (Orphan), scratch deleted with the cluster ---
    create(
        json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket",
        "metadata": {"name": "platform-logs", "annotations": {"crossplane.io/external-name": "platform-logs"}},
        "spec": {"deletionPolicy": "Orphan", "forProvider": {"region": "eu-west-1"}}}),
    );
    create(
        json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket",
        "metadata": {"name": "platform-scratch"},
        "spec": {"deletionPolicy": "Delete", "forProvider": {"region": "eu-west-1"}}}),
    );

    // --- tenants ---
    for (i, t) in TENANTS.iter().enumerate() {
        create(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": t, "labels": {"coldstart.dev/tenant": "true"}}}),
        );
        create(
            json!({"apiVersion": "platform.example.com/v1", "kind": "Tenant",
            "metadata": {"name": t}, "spec": {"owner": format!("team-{i}@example.com"), "namespace": t}}),
        );
        create(
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "quota", "namespace": t},
            "spec": {"hard": {"requests.cpu": "16", "requests.memory": "64Gi", "persistentvolumeclaims": "10"}}}),
        );
        create(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pipeline-config", "namespace": t},
            "data": {"topics": "telemetry,commands", "parallelism": format!("{}", 4 + i)}}),
        );
        create(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{t}-credentials"), "namespace": t},
            "type": "Opaque",
            "data": {"KAFKA_PASSWORD": base64_of(&format!("s3cr3t-{t}-kafka")), "S3_SECRET_KEY": base64_of(&format!("s3cr3t-{t}-s3"))}}),
        );
        create(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "pipeline", "namespace": t}}),
        );
        create(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "tenant-admins", "namespace": t},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "platform-tenant"},
            "subjects": [{"kind": "Group", "name": format!("{t}-admins"), "apiGroup": "rbac.authorization.k8s.io"}]}),
        );
        create(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "isolate", "namespace": t},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}}),
        );
        create(app_deployment(t, "ingest", None));
        // Brownfield COSI: a Bucket object names the cloud bucket, the claim names the
        // Bucket object.
        create(
            json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "Bucket",
            "metadata": {"name": format!("{t}-data")},
            "spec": {"existingBucketID": format!("{t}-data"), "bucketClassName": "retained",
                     "driverName": "s3.objectstorage.k8s.io", "deletionPolicy": "Retain",
                     "bucketClaim": {"name": "data", "namespace": t}}}),
        );
        create(
            json!({"apiVersion": "objectstorage.k8s.io/v1alpha1", "kind": "BucketClaim",
            "metadata": {"name": "data", "namespace": t},
            "spec": {"existingBucketName": format!("{t}-data"), "bucketClassName": "retained"}}),
        );
    }
    // tenant-a: a PostgreSQL whose volume was dynamically provisioned (Delete) and an MQTT
    // endpoint whose IP the field devices whitelisted — controller-allocated, not pinned.
    let pg_pv = format!("pvc-{}", uuid::Uuid::new_v4());
    create(json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pg_pv, "annotations": {"pv.kubernetes.io/provisioned-by": super::cloud::CSI_DRIVER}},
        "spec": {"capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "gp3",
            "csi": {"driver": super::cloud::CSI_DRIVER, "volumeHandle": pg_disk.id, "fsType": "ext4"},
            "claimRef": {"namespace": "tenant-a", "name": "pg-data"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "topology.ebs.csi.aws.com/zone", "operator": "In", "values": [pg_disk.zone]}]}]}}}}));
    create(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "pg-data", "namespace": "tenant-a"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "volumeName": pg_pv,
                 "resources": {"requests": {"storage": "20Gi"}}}}));
    create(app_deployment("tenant-a", "postgres", Some("pg-data")));
    create(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "mqtt", "namespace": "tenant-a",
            "annotations": {"external-dns.alpha.kubernetes.io/hostname": "mqtt.tenant-a.example.com"}},
        "spec": {"type": "LoadBalancer", "selector": {"app": "ingest"}, "ports": [{"name": "mqtts", "port": 8883, "targetPort": 8883}]}}));
    // tenant-b: an API on a controller-allocated address, and an operator-managed bucket.
    create(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "api", "namespace": "tenant-b",
            "annotations": {"external-dns.kubernetes.io/hostname": "api.tenant-b.example.com"}},
        "spec": {"type": "LoadBalancer", "selector": {"app": "ingest"}, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}));
    // Its scratch bucket is a Crossplane managed resource the tenant's operator declares,
    // deleted with the cluster (deletionPolicy Delete).
    let scratch = json!({"apiVersion": "s3.aws.upbound.io/v1beta1", "kind": "Bucket",
        "metadata": {"name": "tenant-b-scratch", "labels": {"tenant": "tenant-b"}},
        "spec": {"deletionPolicy": "Delete", "forProvider": {"region": "eu-west-1"}}});
    create(scratch.clone());
    create(
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bucket-operator", "namespace": "tenant-b"}}),
    );
    create(operator("tenant-b", "bucket-operator", &[scratch]));
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}
