//! The kubeconfig a simulated cluster hands out: one cluster, one admin user with a bearer
//! token, one context, all named after the cluster.

use serde_json::json;

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
}
