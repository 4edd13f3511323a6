//! The snapshot store: where snapshots live, outside the cluster they protect. A `Store` is
//! an `object_store` backend (local directory, memory, S3 or an S3-compatible server, Azure
//! Blob, GCS) chosen by URL, plus a key prefix. It is opened once per command and shared by
//! every task of that command; it holds no state beyond its connection.
//!
//! Every key is built in [`layout`]; the single-writer lock that keeps two snapshots (or a
//! snapshot and a prune) from interleaving lives in [`lock`].

pub mod layout;
pub mod lock;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

/// Why the snapshot store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "failed to open snapshot store {url:?}: {reason} (expected file://DIR, memory://, s3://BUCKET/PREFIX, az://CONTAINER/PREFIX or gs://BUCKET/PREFIX)"
    )]
    Open { url: String, reason: String },
    #[error("failed to configure snapshot store {url:?}: {source}")]
    Configure {
        url: String,
        source: Box<object_store::Error>,
    },
    #[error(
        "failed to write {key} to the snapshot store {url}: {source} (is the store reachable and writable? check --store and its credentials)"
    )]
    Put {
        url: String,
        key: String,
        source: Box<object_store::Error>,
    },
    #[error(
        "failed to read {key} from the snapshot store {url}: {source} (is the store reachable? check --store and its credentials)"
    )]
    Get {
        url: String,
        key: String,
        source: Box<object_store::Error>,
    },
    #[error("failed to read {key} from the snapshot store {url}: it does not exist")]
    NotFound { url: String, key: String },
    #[error(
        "failed to list {prefix} in the snapshot store {url}: {source} (is the store reachable? check --store and its credentials)"
    )]
    List {
        url: String,
        prefix: String,
        source: Box<object_store::Error>,
    },
    #[error("failed to delete {key} from the snapshot store {url}: {source}")]
    Delete {
        url: String,
        key: String,
        source: Box<object_store::Error>,
    },
}

/// One object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key relative to the store's prefix.
    pub key: String,
    pub size: u64,
    pub modified: DateTime<Utc>,
}

/// Whether a conditional create wrote the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Written,
    AlreadyExists,
}

/// A snapshot store: a backend and a prefix inside it.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

/// Environment variable naming a custom S3 endpoint (MinIO, moto, Ceph RGW); takes precedence
/// over `AWS_ENDPOINT_URL`.
pub const S3_ENDPOINT_ENV: &str = "COLDSTART_S3_ENDPOINT";

impl Store {
    /// Open the store a URL names. Credentials and endpoints come from the environment the
    /// way each cloud's own tools read them (`AWS_*`, `AZURE_*`, `GOOGLE_*`).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        crate::k8s::connect::init_tls();
        let fail = |reason: String| StoreError::Open {
            url: url.to_owned(),
            reason,
        };
        let configure = |source| StoreError::Configure {
            url: url.to_owned(),
            source: Box::new(source),
        };
        if let Some(dir) = url.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(fail("no directory given".to_owned()));
            }
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {dir}: {e}")))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(configure)?
                .with_automatic_cleanup(true);
            return Ok(Self::new(Arc::new(fs), "", url));
        }
        if url.starts_with("memory://") {
            return Ok(Self::memory());
        }
        let parsed = url::Url::parse(url).map_err(|e| fail(e.to_string()))?;
        let bucket = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| fail("no bucket or container given".to_owned()))?;
        let prefix = parsed.path().trim_matches('/');
        let inner: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                let endpoint = std::env::var(S3_ENDPOINT_ENV)
                    .ok()
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
                if let Some(ep) = endpoint {
                    if ep.starts_with("http://") {
                        b = b.with_allow_http(true);
                    }
                    b = b.with_endpoint(ep);
                }
                if std::env::var("AWS_REGION").is_err()
                    && std::env::var("AWS_DEFAULT_REGION").is_err()
                {
                    b = b.with_region("us-east-1");
                }
                Arc::new(b.build().map_err(configure)?)
            }
            "az" | "azure" | "abfs" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(bucket)
                    .build()
                    .map_err(configure)?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(configure)?,
            ),
            other => return Err(fail(format!("unknown scheme {other:?}"))),
        };
        Ok(Self::new(inner, prefix, url))
    }

    /// An empty in-memory store (tests; `memory://` lives as long as the process).
    pub fn memory() -> Self {
        Self::new(
            Arc::new(object_store::memory::InMemory::new()),
            "",
            "memory://",
        )
    }

    /// A store over any backend, keys under `prefix`.
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Self {
        Store {
            inner,
            prefix: Path::from(prefix),
            url: url.to_owned(),
        }
    }

    /// The URL this store was opened from (for messages).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in key.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    fn relative(&self, path: &Path) -> String {
        match path.prefix_match(&self.prefix) {
            Some(parts) => parts
                .map(|p| p.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join("/"),
            None => path.to_string(),
        }
    }

    /// Write (or overwrite) an object.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.inner
            .put(&self.path(key), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|source| StoreError::Put {
                url: self.url.clone(),
                key: key.to_owned(),
                source: Box::new(source),
            })
    }

    /// Write an object only if none exists under `key` (conditional put).
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<Created, StoreError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(&self.path(key), PutPayload::from_bytes(bytes), opts)
            .await
        {
            Ok(_) => Ok(Created::Written),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Created::AlreadyExists),
            Err(source) => Err(StoreError::Put {
                url: self.url.clone(),
                key: key.to_owned(),
                source: Box::new(source),
            }),
        }
    }

    /// Read a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let err = |source| match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                url: self.url.clone(),
                key: key.to_owned(),
            },
            source => StoreError::Get {
                url: self.url.clone(),
                key: key.to_owned(),
                source: Box::new(source),
            },
        };
        let got = self.inner.get(&self.path(key)).await.map_err(err)?;
        got.bytes().await.map_err(err)
    }

    /// Read an object that may not exist.
    pub async fn get_opt(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.get(key).await {
            Ok(b) => Ok(Some(b)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every object under `dir` (recursively), in no particular order.
    pub async fn list(&self, dir: &str) -> Result<Vec<Listed>, StoreError> {
        let prefix = self.path(dir);
        self.inner
            .list(Some(&prefix))
            .map_ok(|m| Listed {
                key: self.relative(&m.location),
                size: m.size,
                modified: m.last_modified,
            })
            .try_collect()
            .await
            .map_err(|source| StoreError::List {
                url: self.url.clone(),
                prefix: dir.to_owned(),
                source: Box::new(source),
            })
    }

    /// The ids stored under `dir` (snapshots, drills), sorted, ignoring stray names.
    pub async fn ids(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = self
            .list(dir)
            .await?
            .into_iter()
            .map(|l| layout::name_of(&l.key).to_owned())
            .filter(|id| layout::is_snapshot_id(id))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Delete an object; deleting one that is already gone succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::Delete {
                url: self.url.clone(),
                key: key.to_owned(),
                source: Box::new(source),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_conditional_create_never_overwrites() {
        let store = Store::memory();
        assert_eq!(
            store.create("a/b", Bytes::from_static(b"1")).await.unwrap(),
            Created::Written
        );
        assert_eq!(
            store.create("a/b", Bytes::from_static(b"2")).await.unwrap(),
            Created::AlreadyExists
        );
        assert_eq!(store.get("a/b").await.unwrap(), Bytes::from_static(b"1"));
    }

    #[tokio::test]
    async fn a_file_store_keeps_keys_relative_to_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("file://{}", dir.path().display())).unwrap();
        store
            .put("packs/ab/abc", Bytes::from_static(b"x"))
            .await
            .unwrap();
        let listed = store.list("packs").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "packs/ab/abc");
        assert!(store.get_opt("nope").await.unwrap().is_none());
        store.delete("packs/ab/abc").await.unwrap();
        store.delete("packs/ab/abc").await.unwrap();
    }

    #[tokio::test]
    async fn a_prefixed_store_lists_keys_without_its_prefix() {
        let store = Store::new(
            Arc::new(object_store::memory::InMemory::new()),
            "team/prod",
            "memory://",
        );
        store
            .put("index/ff", Bytes::from_static(b"x"))
            .await
            .unwrap();
        let listed = store.list("index").await.unwrap();
        assert_eq!(listed[0].key, "index/ff");
    }

    #[test]
    fn unknown_store_urls_say_which_schemes_exist() {
        let err = Store::open("ftp://x/y").unwrap_err().to_string();
        assert!(err.contains("unknown scheme"), "{err}");
        assert!(err.contains("s3://BUCKET/PREFIX"), "{err}");
    }
}
