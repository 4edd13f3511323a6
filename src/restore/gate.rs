//! The admission gate: ValidatingAdmissionPolicies (and their bindings) that, for every
//! identity but coldstart's own, deny what would provision something new while a restore
//! runs — a PVC without `spec.volumeName`, a LoadBalancer Service without a pinned address,
//! a bucket claim that would create a bucket. Installed before the first write, lifted
//! after verification. The policies are pure data ([`policies`]); installing and lifting
//! are thin calls.

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::bindings::{BUCKET_APIS, BucketKind, PIN_ANNOTATIONS};

/// Label on every gate object, so status and lifting find them all.
pub const GATE_LABEL: &str = "coldstart.dev/gate";
/// Field manager for server-side apply of the gate.
const MANAGER: &str = "coldstart";
/// An object carrying this annotation is judged by the gate even when coldstart sends it:
/// how [`install`] proves the gate is enforced (with a dry run) while its own identity is
/// exempt.
pub const PROBE_ANNOTATION: &str = "coldstart.dev/gate-probe";
/// How long [`install`] waits for the API server to enforce the gate it just installed.
const ENFORCED_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);
/// What every gate denial says.
const DENIAL: &str = "coldstart is restoring this cluster";

fn policy(name: &str, exempt: &str, rules: Value, validations: Value) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": {GATE_LABEL: "true"}},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules},
            "matchConditions": [{"name": "not-coldstart",
                "expression": format!(
                    "request.userInfo.username != {} || (has(object.metadata.annotations) && {} in object.metadata.annotations)",
                    cel_string(exempt),
                    cel_string(PROBE_ANNOTATION)
                )}],
            "validations": validations,
        }
    })
}

fn binding(name: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": {GATE_LABEL: "true"}},
        "spec": {"policyName": name, "validationActions": ["Deny"]}
    })
}

/// A CEL string literal.
fn cel_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The CEL that holds when an object of a bucket API adopts an existing bucket rather than
/// asking for a new one (what bindings calls `adopted`).
fn adopts_cel(kind: BucketKind) -> String {
    let ann = |k: &str| {
        format!(
            "has(object.metadata.annotations) && {k} in object.metadata.annotations && object.metadata.annotations[{k}] != ''",
            k = cel_string(k)
        )
    };
    match kind {
        BucketKind::CosiBucketClaim => {
            "has(object.spec.existingBucketName) && object.spec.existingBucketName != ''".into()
        }
        BucketKind::CosiBucket => {
            "has(object.spec.existingBucketID) && object.spec.existingBucketID != ''".into()
        }
        BucketKind::Crossplane | BucketKind::CrossplaneNamespaced => ann("crossplane.io/external-name"),
        BucketKind::Ack => format!(
            "{} && object.metadata.annotations['services.k8s.aws/adoption-policy'] == 'adopt'",
            ann("services.k8s.aws/adoption-policy")
        ),
        BucketKind::RookObc => {
            "has(object.spec.bucketName) && object.spec.bucketName != '' && !has(object.spec.generateBucketName)".into()
        }
    }
}

/// The gate's policies and bindings, exempting `exempt` (coldstart's own username).
pub fn policies(exempt: &str) -> Vec<Value> {
    // A blank pin is no pin (bindings reads it so, and so do the providers).
    let pin_check = PIN_ANNOTATIONS
        .iter()
        .map(|a| {
            let k = cel_string(a);
            format!(
                "({k} in object.metadata.annotations && object.metadata.annotations[{k}].matches({}))",
                cel_string(r"\S")
            )
        })
        .collect::<Vec<_>>()
        .join(" || ");
    let pvcs = policy(
        "coldstart-gate-volumes",
        exempt,
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["persistentvolumeclaims"]}]),
        json!([{
            "expression": "has(object.spec.volumeName) && object.spec.volumeName != ''",
            "message": "coldstart is restoring this cluster: a PersistentVolumeClaim must name its volume (spec.volumeName) so no new disk is provisioned",
            "reason": "Forbidden",
        }]),
    );
    let services = policy(
        "coldstart-gate-addresses",
        exempt,
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["services"]}]),
        json!([{
            "expression": format!(
                "!has(object.spec.type) || object.spec.type != 'LoadBalancer' || (has(object.spec.loadBalancerIP) && object.spec.loadBalancerIP.matches({nonblank})) || (has(object.metadata.annotations) && ({pin_check}))",
                nonblank = cel_string(r"\S")
            ),
            "message": "coldstart is restoring this cluster: a LoadBalancer Service must pin its address so no new IP is allocated",
            "reason": "Forbidden",
        }]),
    );
    let buckets = policy(
        "coldstart-gate-buckets",
        exempt,
        json!(BUCKET_APIS
            .iter()
            .map(|a| json!({"apiGroups": [a.group], "apiVersions": ["*"], "operations": ["CREATE"], "resources": [a.plural]}))
            .collect::<Vec<_>>()),
        json!([{
            "expression": BUCKET_APIS
                .iter()
                .map(|a| format!(
                    "(request.kind.group == {} && request.kind.kind == {} && ({}))",
                    cel_string(a.group),
                    cel_string(a.kind),
                    adopts_cel(a.bucket_kind)
                ))
                .collect::<Vec<_>>()
                .join(" || "),
            "message": "coldstart is restoring this cluster: a bucket claim must name an existing bucket so no new bucket is created",
            "reason": "Forbidden",
        }]),
    );
    let mut out = Vec::new();
    for p in [pvcs, services, buckets] {
        let name = p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        out.push(p);
        out.push(binding(&name));
    }
    out
}

fn api_for(client: &kube::Client, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    let plural = format!("{}s", kind.to_lowercase()).replace("policys", "policies");
    let ar = ApiResource::from_gvk_with_plural(&gvk, &plural);
    Api::all_with(client.clone(), &ar)
}

/// Why the gate could not be installed, inspected or lifted.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(
        "failed to install the admission gate ({name}): {source}; the cluster must serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (Kubernetes ≥ 1.30)"
    )]
    Install { name: String, source: kube::Error },
    #[error("failed to list the admission gate: {0}")]
    List(kube::Error),
    #[error(
        "failed to lift the admission gate ({name}): {source}; lift it by hand with `coldstart gate off`"
    )]
    Lift { name: String, source: kube::Error },
    #[error(
        "the admission gate was installed but not proven enforced after {waited:?}: a dry-run probe ({probe}, namespace default) was {last}. Admitted: the API server does not run the ValidatingAdmissionPolicy admission plugin (Kubernetes ≥ 1.30); refused otherwise: coldstart may not create it there (RBAC) or the namespace is missing. Nothing was restored"
    )]
    NotEnforced {
        waited: std::time::Duration,
        probe: &'static str,
        last: String,
    },
}

/// The objects a new disk or a new address would start from, marked as probes: the gate
/// must deny each (a bucket API may not be served, so buckets are not probed; their policy
/// is loaded with the others).
fn probes() -> [(&'static str, &'static str, Value); 2] {
    let meta = json!({"generateName": "coldstart-gate-probe-", "namespace": "default",
                      "annotations": {PROBE_ANNOTATION: "true"}});
    [
        (
            "a claim without a volume",
            "persistentvolumeclaims",
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
        (
            "an unpinned LoadBalancer Service",
            "services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                   "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}}),
        ),
    ]
}

/// Wait until the API server denies each probe (a dry run: nothing is created). kube-apiserver
/// enforces a new binding once its policy informer has it, a moment after the create; until
/// then an operator started by someone else could provision what the gate is for.
async fn until_enforced(client: &kube::Client) -> Result<(), GateError> {
    let started = std::time::Instant::now();
    let pp = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    for (probe, plural, obj) in probes() {
        let gvk = GroupVersionKind::gvk("", "v1", obj["kind"].as_str().unwrap_or_default());
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            "default",
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        );
        let obj: DynamicObject =
            serde_json::from_value(obj).map_err(|e| GateError::NotEnforced {
                waited: started.elapsed(),
                probe,
                last: format!("not buildable ({e})"),
            })?;
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            let last = match api.create(&pp, &obj).await {
                Err(kube::Error::Api(s)) if s.message.contains(DENIAL) => break,
                Ok(_) => "admitted".to_owned(),
                // Forbidden by RBAC, or no `default` namespace: waiting changes nothing.
                Err(kube::Error::Api(s)) if matches!(s.code, 401 | 403 | 404) => {
                    return Err(GateError::NotEnforced {
                        waited: started.elapsed(),
                        probe,
                        last: format!("refused otherwise: {} ({})", s.message, s.code),
                    });
                }
                Err(e) => format!("refused otherwise: {}", crate::k8s::describe(&e)),
            };
            if started.elapsed() >= ENFORCED_WITHIN {
                return Err(GateError::NotEnforced {
                    waited: started.elapsed(),
                    probe,
                    last,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
        }
    }
    Ok(())
}

/// Install (or refresh) the gate, and return once the API server enforces it (a dry-run
/// probe of each guarded kind is denied). Server-side apply, so re-running after a crash
/// converges.
pub async fn install(client: &kube::Client, exempt: &str) -> Result<usize, GateError> {
    let items = policies(exempt);
    for obj in &items {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        api_for(client, kind)
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await
            .map_err(|source| GateError::Install {
                name: name.clone(),
                source,
            })?;
    }
    until_enforced(client).await?;
    Ok(items.len() / 2)
}

/// The gate policies currently installed (by name).
pub async fn status(client: &kube::Client) -> Result<Vec<String>, GateError> {
    let lp = ListParams::default().labels(&format!("{GATE_LABEL}=true"));
    let list = api_for(client, "ValidatingAdmissionPolicy")
        .list(&lp)
        .await
        .map_err(GateError::List)?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect())
}

/// The gate policy that guards one kind of binding.
pub fn policy_for(kind: crate::cloud::Kind) -> Option<&'static str> {
    match kind {
        crate::cloud::Kind::Volume => Some("coldstart-gate-volumes"),
        crate::cloud::Kind::Address => Some("coldstart-gate-addresses"),
        crate::cloud::Kind::Bucket => Some("coldstart-gate-buckets"),
        crate::cloud::Kind::Dns => None,
    }
}

/// Remove every gate object (bindings first, so nothing is half-enforced).
pub async fn lift(client: &kube::Client) -> Result<usize, GateError> {
    lift_except(client, &[]).await
}

/// Remove every gate object but the policies named in `keep` (and their bindings): a
/// degraded restore keeps guarding what it could not bring back.
pub async fn lift_except(client: &kube::Client, keep: &[&str]) -> Result<usize, GateError> {
    let lp = ListParams::default().labels(&format!("{GATE_LABEL}=true"));
    let mut removed = 0;
    for kind in [
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy",
    ] {
        let api = api_for(client, kind);
        let list = api.list(&lp).await.map_err(GateError::List)?;
        for item in list.items {
            let name = item.metadata.name.unwrap_or_default();
            if keep.contains(&name.as_str()) {
                continue;
            }
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => removed += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => return Err(GateError::Lift { name, source }),
            }
        }
    }
    Ok(removed / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_has_a_bound_policy_for_volumes_addresses_and_buckets() {
        let objs = policies("system:serviceaccount:coldstart:coldstart");
        let names: Vec<&str> = objs
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        assert_eq!(names.len(), 6);
        for n in [
            "coldstart-gate-volumes",
            "coldstart-gate-addresses",
            "coldstart-gate-buckets",
        ] {
            assert_eq!(
                names.iter().filter(|x| **x == n).count(),
                2,
                "{n} has a policy and a binding"
            );
        }
        assert!(
            objs[0]["spec"]["matchConditions"][0]["expression"]
                .as_str()
                .is_some_and(|e| e.contains("'system:serviceaccount:coldstart:coldstart'"))
        );
    }

    #[test]
    fn cel_strings_are_quoted_safely() {
        assert_eq!(cel_string("a'b"), "'a\\'b'");
    }
}
