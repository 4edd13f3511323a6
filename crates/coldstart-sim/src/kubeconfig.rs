//! The kubeconfig a simulated cluster hands out: one cluster, one admin user, one context,
//! all named after the cluster. The embedded server's admin has a bearer token; a real
//! control plane's admin has a client certificate, and its cluster names the launcher's
//! admin endpoint in an extension (kubectl and kube-rs keep extensions and ignore them).

use base64::Engine;
use serde_json::json;

use super::control_plane::pki::CertPair;

/// Name of the cluster extension that points at a launcher's admin endpoint.
pub const ADMIN_EXTENSION: &str = "coldstart.dev/sim-admin";

/// Where `coldstart sim teardown` reaches a launched control plane.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdminEndpoint {
    pub url: String,
    pub token: String,
}

/// Render a kubeconfig (YAML) for `server` with a bearer `token`.
pub fn render(cluster: &str, server: &str, token: &str) -> String {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server}}],
        "users": [{"name": format!("{cluster}-admin"), "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": format!("{cluster}-admin")}}],
        "current-context": cluster,
        "preferences": {},
    });
    // A JSON value always serializes to YAML.
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// Render a kubeconfig for a TLS `server` whose certificate `ca_pem` signed, the user
/// authenticating with the client certificate `user`.
pub fn render_tls(
    cluster: &str,
    server: &str,
    ca_pem: &str,
    user: &CertPair,
    admin: Option<&AdminEndpoint>,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut c = json!({"server": server, "certificate-authority-data": b64(ca_pem)});
    if let Some(a) = admin {
        c["extensions"] = json!([{"name": ADMIN_EXTENSION, "extension": a}]);
    }
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": c}],
        "users": [{"name": format!("{cluster}-admin"), "user": {
            "client-certificate-data": b64(&user.cert_pem),
            "client-key-data": b64(&user.key_pem),
        }}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": format!("{cluster}-admin")}}],
        "current-context": cluster,
        "preferences": {},
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_names_the_server_and_token() {
        let y = render("sim", "http://127.0.0.1:1234", "tok");
        let v: serde_yaml::Value = serde_yaml::from_str(&y).expect("yaml");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:1234"
        );
        assert_eq!(v["users"][0]["user"]["token"], "tok");
        assert_eq!(v["current-context"], "sim");
    }

    #[test]
    fn a_tls_kubeconfig_carries_the_admin_endpoint_that_kube_rs_reads_back() {
        let pair = CertPair {
            cert_pem: "CERT".to_owned(),
            key_pem: "KEY".to_owned(),
        };
        let admin = AdminEndpoint {
            url: "http://127.0.0.1:9".to_owned(),
            token: "t".to_owned(),
        };
        let y = render_tls("c", "https://127.0.0.1:6443", "CA", &pair, Some(&admin));
        let kc = kube::config::Kubeconfig::from_yaml(&y).expect("kube-rs reads it");
        let ext = kc.clusters[0]
            .cluster
            .as_ref()
            .and_then(|c| c.extensions.as_ref())
            .and_then(|e| e.iter().find(|e| e.name == ADMIN_EXTENSION))
            .expect("the admin extension");
        assert_eq!(
            serde_json::from_value::<AdminEndpoint>(ext.extension.clone()).expect("endpoint"),
            admin
        );
        let plain = render_tls("c", "https://127.0.0.1:6443", "CA", &pair, None);
        let kc = kube::config::Kubeconfig::from_yaml(&plain).expect("kube-rs reads it");
        assert!(
            kc.clusters[0]
                .cluster
                .as_ref()
                .is_some_and(|c| c.extensions.is_none())
        );
    }
}
