//! Seeds: what a simulated cluster holds when it starts.
//!
//! `scale:N` is N objects of realistic size (2–10 KB, mostly near the low end, with
//! compressible config-like text) spread over many types and namespaces: the load for
//! snapshot and restore benchmarks. It is generated deterministically, so two runs of a
//! benchmark see the same cluster.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::Sim;
use super::registry::GroupResource;

/// Why a seed could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeedError {
    #[error("unknown seed {0:?} (known: platform, scale:N, empty)")]
    Unknown(String),
    #[error("invalid object count in {0:?}: expected scale:N with N a whole number")]
    Count(String),
}

/// A parsed `--seed` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    Empty,
    Scale(usize),
    Platform,
}

impl std::str::FromStr for Seed {
    type Err = SeedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "empty" => Ok(Seed::Empty),
            "platform" => Ok(Seed::Platform),
            _ => match s.strip_prefix("scale:") {
                Some(n) => n
                    .replace('_', "")
                    .parse()
                    .map(Seed::Scale)
                    .map_err(|_| SeedError::Count(s.to_owned())),
                None => Err(SeedError::Unknown(s.to_owned())),
            },
        }
    }
}

/// Objects per namespace in a scale seed: enough to make per-namespace lists realistic,
/// few enough that there are many namespaces.
const PER_NAMESPACE: usize = 1000;

/// An object to insert, keyed by (namespace, name).
type Seeded = ((String, String), Value);

const WORDS: &[&str] = &[
    "kafka",
    "broker",
    "replication",
    "factor",
    "retention",
    "ms",
    "segment",
    "bytes",
    "zookeeper",
    "connect",
    "timeout",
    "tenant",
    "ingest",
    "pipeline",
    "flink",
    "checkpoint",
    "interval",
    "parallelism",
    "topic",
    "partition",
    "consumer",
    "group",
    "offset",
    "reset",
    "earliest",
    "latest",
    "ssl",
    "endpoint",
    "identification",
    "algorithm",
    "https",
    "sasl",
    "mechanism",
    "scram",
    "sha",
    "512",
    "log",
    "level",
    "info",
    "debug",
    "warn",
    "metrics",
    "reporter",
    "prometheus",
    "port",
    "9404",
    "jvm",
    "heap",
    "xmx",
    "4g",
    "gc",
    "g1",
];

fn text(rng: &mut StdRng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        let k = rng.random_range(2..5);
        for i in 0..k {
            if i > 0 {
                out.push('.');
            }
            out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        }
        out.push('=');
        out.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        out.push_str(&rng.random_range(0..10_000u32).to_string());
        out.push('\n');
    }
    out
}

/// A size between 2 and 10 KB, skewed low the way real config objects are.
fn size(rng: &mut StdRng) -> usize {
    let u: f64 = rng.random();
    1500 + (u * u * u * 8000.0) as usize
}

fn meta(sim: &Sim, name: &str, ns: &str, app: &str) -> Value {
    json!({
        "name": name,
        "namespace": ns,
        "uid": uuid::Uuid::new_v4().to_string(),
        "creationTimestamp": sim.now_rfc3339(),
        "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "scale-seed"},
        "annotations": {"coldstart.dev/seed": "scale"},
    })
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    })
}

/// Load `seed` into `sim`.
pub fn load(sim: &Sim, seed: Seed) {
    match seed {
        Seed::Empty => {}
        Seed::Scale(n) => scale(sim, n),
        Seed::Platform => super::platform::load(sim),
    }
}

/// N objects over many namespaces and types, inserted directly (no events, no admission):
/// seeding 100k objects this way takes seconds.
pub fn scale(sim: &Sim, n: usize) {
    let admin = super::Actor::admin();
    let _ = sim.create(
        &sim.def("apiextensions.k8s.io", "customresourcedefinitions")
            .expect("CRDs are built in"),
        None,
        widget_crd(),
        &admin,
        Default::default(),
    );
    let mut rng = StdRng::seed_from_u64(0xc01d_57a7);
    let namespaces = n.div_ceil(PER_NAMESPACE).max(1);
    let ns_def = sim.def("", "namespaces").expect("built in");
    for i in 0..namespaces {
        let _ = sim.create(
            &ns_def,
            None,
            json!({"metadata": {"name": format!("tenant-{i:04}"), "labels": {"coldstart.dev/tenant": "true"}}}),
            &admin,
            Default::default(),
        );
    }
    // (group, plural, share in per-mille)
    let kinds: &[(&str, &str, u32)] = &[
        ("", "configmaps", 330),
        ("", "secrets", 200),
        ("", "services", 100),
        ("apps", "deployments", 100),
        ("", "serviceaccounts", 80),
        ("rbac.authorization.k8s.io", "roles", 50),
        ("rbac.authorization.k8s.io", "rolebindings", 50),
        ("networking.k8s.io", "networkpolicies", 40),
        ("example.com", "widgets", 50),
    ];
    let mut batches: Vec<(GroupResource, Vec<Seeded>)> = kinds
        .iter()
        .map(|(g, p, _)| {
            (
                GroupResource {
                    group: (*g).to_owned(),
                    plural: (*p).to_owned(),
                },
                Vec::new(),
            )
        })
        .collect();
    for i in 0..n {
        let ns = format!("tenant-{:04}", i % namespaces);
        let pick = rng.random_range(0..1000u32);
        let mut acc = 0;
        let mut which = 0;
        for (k, (_, _, share)) in kinds.iter().enumerate() {
            acc += share;
            if pick < acc {
                which = k;
                break;
            }
        }
        let app = format!("app-{}", i % 97);
        let name = format!("obj-{i:07}");
        let sz = size(&mut rng);
        let body = text(&mut rng, sz);
        let m = meta(sim, &name, &ns, &app);
        let obj = match kinds[which].1 {
            "configmaps" => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": m,
                "data": {"application.properties": body}}),
            "secrets" => {
                use base64::Engine;
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": m, "type": "Opaque",
                "data": {"credentials": base64::engine::general_purpose::STANDARD.encode(body.as_bytes())}})
            }
            "services" => json!({"apiVersion": "v1", "kind": "Service", "metadata": m,
                "spec": {"type": "ClusterIP", "clusterIP": format!("10.{}.{}.{}", 100 + (i >> 16) % 16, (i >> 8) & 0xff, i & 0xff),
                         "selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
                "metadata_note": body.len()}),
            "deployments" => json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": m,
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app}},
                    "template": {"metadata": {"labels": {"app": app}},
                        "spec": {"containers": [{"name": "main", "image": format!("registry.example.com/{app}:1.{}", i % 40),
                            "args": body.lines().take(60).collect::<Vec<_>>()}]}}},
                "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 1}}),
            "serviceaccounts" => {
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": m,
                "metadata_note": body})
            }
            "roles" => {
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": m,
                "rules": [{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"],
                           "resourceNames": body.lines().take(40).map(|l| l.split('=').next().unwrap_or("x").replace('.', "-")).collect::<Vec<_>>()}]})
            }
            "rolebindings" => {
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": m,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": body.lines().take(30).enumerate().map(|(j, _)| json!({"kind": "ServiceAccount", "name": format!("sa-{j}"), "namespace": ns})).collect::<Vec<_>>()})
            }
            "networkpolicies" => {
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": m,
                "spec": {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"],
                         "ingress": body.lines().take(30).enumerate().map(|(j, _)| json!({"from": [{"podSelector": {"matchLabels": {"app": format!("client-{j}")}}}], "ports": [{"port": 8000 + j, "protocol": "TCP"}]})).collect::<Vec<_>>()}})
            }
            _ => json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": m,
                "spec": {"size": sz, "config": body}}),
        };
        let mut obj = obj;
        // The filler fields above only exist to give small kinds a realistic size; move
        // them where an API server would keep unknown data: an annotation.
        if let Some(note) = obj.as_object_mut().and_then(|o| o.remove("metadata_note")) {
            obj["metadata"]["annotations"]["coldstart.dev/notes"] = json!(note.to_string());
        }
        batches[which].1.push(((ns, name), obj));
    }
    for (gr, objects) in batches {
        sim.store.bulk_insert(&gr, objects);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_from_their_cli_names() {
        assert_eq!("scale:100000".parse(), Ok(Seed::Scale(100_000)));
        assert_eq!("scale:100_000".parse(), Ok(Seed::Scale(100_000)));
        assert_eq!("platform".parse(), Ok(Seed::Platform));
        assert!(matches!(
            "scale:x".parse::<Seed>(),
            Err(SeedError::Count(_))
        ));
        assert!(matches!("huge".parse::<Seed>(), Err(SeedError::Unknown(_))));
    }

    #[test]
    fn a_scale_seed_makes_n_objects_of_realistic_size() {
        let sim = Sim::new(Default::default());
        scale(&sim, 2000);
        let reg = sim.registry();
        let mut total = 0;
        let mut bytes = 0;
        for d in reg.all() {
            for (k, s) in sim.store.all(&d.group_resource(), None) {
                if k.0.starts_with("tenant-") {
                    total += 1;
                    bytes += s.raw.len();
                }
            }
        }
        assert_eq!(total, 2000);
        let avg = bytes / total;
        assert!((2000..=10_000).contains(&avg), "average object size {avg}");
    }
}
