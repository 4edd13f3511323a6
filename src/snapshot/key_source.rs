//! Where the encryption key comes from, for every command and for `serve` alike: a file,
//! a Kubernetes Secret (best kept in another cluster: the key must outlive this one), or
//! `COLDSTART_ENCRYPTION_KEY`. One parser and one loader, so `serve` cannot drift from the
//! CLI. The key itself is never logged or shown; [`KeySource`]'s `Display` names where it
//! comes from, never what it is.

use std::fmt;
use std::path::{Path, PathBuf};

use super::crypto::{self, KEY_ENV, Keys};

/// One place to read the key from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Env(String),
    /// `data[field]` of Secret `namespace/name`, read through the kubeconfig `context`
    /// (default: the command's own).
    Secret {
        namespace: String,
        name: String,
        field: String,
        context: Option<String>,
    },
}

/// Why the key could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("failed to parse the encryption key Secret {0:?}: expected NAMESPACE/NAME[/KEY]")]
    SecretSpec(String),
    #[error(
        "failed to parse the encryption key source {0:?}: expected env:VAR, file:PATH or secret:NAMESPACE/NAME[/KEY]"
    )]
    Spec(String),
    #[error("failed to read the encryption key from {source_name}: {detail}")]
    Read { source_name: String, detail: String },
    #[error("failed to connect to the cluster holding the encryption key Secret: {0}")]
    Connect(String),
    #[error("failed to read the encryption key Secret {namespace}/{name}: {source}")]
    Secret {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(transparent)]
    Parse(#[from] crypto::CryptoError),
}

impl fmt::Display for KeySource {
    /// The config form (`file:PATH`, `env:VAR`, `secret:NS/NAME/KEY`): where, not what.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "file:{}", p.display()),
            KeySource::Env(v) => write!(f, "env:{v}"),
            KeySource::Secret {
                namespace,
                name,
                field,
                ..
            } => write!(f, "secret:{namespace}/{name}/{field}"),
        }
    }
}

impl KeySource {
    /// `NAMESPACE/NAME[/KEY]` (the key defaults to `key`).
    pub fn secret(spec: &str, context: Option<&str>) -> Result<Self, KeyError> {
        let mut parts = spec.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(ns), Some(name), field) if !ns.is_empty() && !name.is_empty() => {
                Ok(KeySource::Secret {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                    field: field.filter(|f| !f.is_empty()).unwrap_or("key").to_owned(),
                    context: context.map(str::to_owned),
                })
            }
            _ => Err(KeyError::SecretSpec(spec.to_owned())),
        }
    }

    /// The config form: `env:VAR`, `file:PATH`, `secret:NAMESPACE/NAME[/KEY]`.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if let Some(var) = s.strip_prefix("env:").filter(|v| !v.is_empty()) {
            Ok(KeySource::Env(var.to_owned()))
        } else if let Some(path) = s.strip_prefix("file:").filter(|v| !v.is_empty()) {
            Ok(KeySource::File(PathBuf::from(path)))
        } else if let Some(spec) = s.strip_prefix("secret:") {
            KeySource::secret(spec, None)
        } else {
            Err(KeyError::Spec(s.to_owned()))
        }
    }

    /// The CLI's choice: `--encryption-key-file`, else `--encryption-key-secret`, else
    /// `COLDSTART_ENCRYPTION_KEY` when it is set, else none (plaintext).
    pub fn from_flags(
        file: Option<&Path>,
        secret: Option<&str>,
        secret_context: Option<&str>,
    ) -> Result<Option<Self>, KeyError> {
        if let Some(path) = file {
            return Ok(Some(KeySource::File(path.to_owned())));
        }
        if let Some(spec) = secret {
            return KeySource::secret(spec, secret_context).map(Some);
        }
        Ok(Self::from_env())
    }

    /// `COLDSTART_ENCRYPTION_KEY`, when set and not empty.
    pub fn from_env() -> Option<Self> {
        std::env::var(KEY_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|_| KeySource::Env(KEY_ENV.to_owned()))
    }

    /// Read and parse the key. A Secret is read through `kubeconfig` with the source's own
    /// context, else `context`.
    pub async fn load(
        &self,
        kubeconfig: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Keys, KeyError> {
        let read = |detail: String| KeyError::Read {
            source_name: self.to_string(),
            detail,
        };
        let text = match self {
            KeySource::File(p) => std::fs::read_to_string(p).map_err(|e| read(e.to_string()))?,
            KeySource::Env(v) => std::env::var(v).map_err(|_| read(format!("{v} is not set")))?,
            KeySource::Secret {
                namespace,
                name,
                field,
                context: own,
            } => {
                let client = crate::k8s::connect::connect(kubeconfig, own.as_deref().or(context))
                    .await
                    .map_err(|e| KeyError::Connect(e.to_string()))?;
                let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
                    kube::Api::namespaced(client, namespace);
                let secret = api.get(name).await.map_err(|source| KeyError::Secret {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    source,
                })?;
                let bytes = secret
                    .data
                    .and_then(|d| d.get(field).cloned())
                    .ok_or_else(|| read(format!("the Secret has no key {field:?}")))?;
                String::from_utf8_lossy(&bytes.0).into_owned()
            }
        };
        let key = crypto::parse_key(&text, &self.to_string())?;
        Ok(Keys::from_master(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_form_parses_and_prints_back_without_the_key() {
        for s in ["env:K", "file:/run/key", "secret:coldstart/key/master"] {
            assert_eq!(KeySource::parse(s).expect(s).to_string(), s);
        }
        assert_eq!(
            KeySource::parse("secret:coldstart/key")
                .expect("default field")
                .to_string(),
            "secret:coldstart/key/key"
        );
        assert!(
            KeySource::parse("c2VjcmV0").is_err(),
            "a bare value is refused"
        );
        assert!(KeySource::parse("secret:only-namespace").is_err());
    }

    #[test]
    fn a_file_flag_wins_over_a_secret_flag() {
        let s = KeySource::from_flags(Some(Path::new("/k")), Some("a/b"), None).expect("valid");
        assert_eq!(s, Some(KeySource::File("/k".into())));
        let s = KeySource::from_flags(None, Some("a/b"), Some("dr")).expect("valid");
        assert_eq!(
            s,
            Some(KeySource::Secret {
                namespace: "a".into(),
                name: "b".into(),
                field: "key".into(),
                context: Some("dr".into())
            })
        );
    }

    #[tokio::test]
    async fn a_key_file_loads_and_a_bad_one_names_its_source_not_its_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good");
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        std::fs::write(&good, format!("{key}\n")).expect("write");
        KeySource::File(good).load(None, None).await.expect("loads");
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "not-a-key-sekrit").expect("write");
        let err = KeySource::File(bad.clone())
            .load(None, None)
            .await
            .expect_err("refused")
            .to_string();
        assert!(err.contains(&bad.display().to_string()), "{err}");
        assert!(!err.contains("sekrit"), "{err}");
    }
}
