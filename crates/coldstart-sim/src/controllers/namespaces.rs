//! What controllers put into every new namespace: the `default` ServiceAccount and the
//! `kube-root-ca.crt` ConfigMap. A snapshot must not need them and a restore must not trip
//! over them (they exist before it writes).

use serde_json::json;

use super::{Api, Requeue, str_at};
use crate::Actor;
use crate::status::ApiError;

pub fn reconcile(sim: &dyn Api, name: &str) -> Result<Requeue, ApiError> {
    let Some(ns) = sim.get("", "namespaces", "", name)? else {
        return Ok(Requeue::No);
    };
    if str_at(&ns, "/status/phase") != Some("Active") {
        return Ok(Requeue::No);
    }
    if sim.get("", "serviceaccounts", name, "default")?.is_none() {
        let actor = Actor::system("system:serviceaccount:kube-system:service-account-controller");
        let _ = sim.create(
            "",
            "serviceaccounts",
            name,
            json!({"metadata": {"name": "default"}}),
            &actor,
        );
    }
    if sim
        .get("", "configmaps", name, "kube-root-ca.crt")?
        .is_none()
    {
        let actor = Actor::system("system:serviceaccount:kube-system:root-ca-cert-publisher");
        let _ = sim.create(
            "",
            "configmaps",
            name,
            json!({"metadata": {"name": "kube-root-ca.crt",
                                "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                   "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIBsimulatedcoldstart\n-----END CERTIFICATE-----\n"}}),
            &actor,
        );
    }
    Ok(Requeue::No)
}
