//! The `coldstart serve` configuration: a YAML file (mounted from a ConfigMap), then
//! environment variables and flags on top ([`Overrides`]), then validation into
//! [`Settings`], the typed form the service runs on.
//!
//! Unknown fields are refused and every error names the field it is about
//! (`schedules.snapshot.cron: invalid cron expression …`), so a typo fails at start, not
//! at 3 a.m. Secret *values* never appear here: credentials, the encryption key and the
//! API token are given as sources (`env:VAR` or `file:PATH`) and read at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::schedule::Schedule;
use crate::snapshot::key_source::KeySource;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl ConfigError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The offending field, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::Read { .. } => None,
        }
    }
}

/// The file as written. Field names are camelCase, like Kubernetes objects.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Address of the status page, API and metrics (default `0.0.0.0:8080`).
    pub listen: Option<String>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub encryption: EncryptionConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub schedules: SchedulesConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub rpo: RpoConfig,
    #[serde(default)]
    pub ordering: OrderingConfig,
    #[serde(default)]
    pub cold_start: ColdStartConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
    /// How long a run in progress may take to finish after SIGTERM before it is abandoned.
    pub shutdown_grace: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterConfig {
    /// Display name of the cluster (its identity is the kube-system UID).
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoreConfig {
    /// `file://DIR`, `memory://`, `s3://BUCKET/PREFIX`, `az://…`, `gs://…`.
    pub url: Option<String>,
    /// No longer read: refused with what to do instead (see [`NOT_READ`]).
    #[serde(default, skip_serializing)]
    pub credentials: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EncryptionConfig {
    /// `env:VAR`, `file:PATH` or `secret:NAMESPACE/NAME[/KEY]` (read through the
    /// kubeconfig; keep it in another cluster). The key must live outside the cluster.
    pub key: Option<String>,
    #[serde(default)]
    pub allow_plaintext_secrets: bool,
}

/// How volumes' data comes back (see `docs/runbooks/cold-start-recovery.md`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataConfig {
    /// Data policy of volumes whose claim has no `coldstart.dev/data-policy` annotation:
    /// `transfer` (default), `snapshot`, `transfer-or-snapshot`.
    pub default_policy: Option<crate::bindings::DataPolicy>,
    /// Enable Fast Snapshot Restore for snapshots a volume is restored from.
    #[serde(default)]
    pub fast_snapshot_restore: bool,
    /// AWS volume initialization rate for disks restored from snapshots, MiB/s.
    pub volume_initialization_rate: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SchedulesConfig {
    pub snapshot: Option<ScheduleConfig>,
    pub drill: Option<ScheduleConfig>,
    pub audit: Option<ScheduleConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleConfig {
    /// Five-field crontab expression, e.g. `*/15 * * * *`.
    pub cron: String,
    /// IANA zone the expression is read in (default UTC).
    pub time_zone: Option<String>,
    /// Start up to this long after each slot (e.g. `30s`).
    pub jitter: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetentionConfig {
    pub keep_last: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RpoConfig {
    /// Maximum acceptable age of the last good snapshot, e.g. `15m`.
    pub target: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrderingConfig {
    /// Label selector for operators: restored at 0 replicas, scaled up last, in `operators`
    /// order.
    pub operator_selector: Option<String>,
    /// No longer read: refused with what to do instead (see [`NOT_READ`]).
    #[serde(default, skip_serializing)]
    pub operators: Option<serde_yaml::Value>,
    /// No longer read: refused with what to do instead (see [`NOT_READ`]).
    #[serde(default, skip_serializing)]
    pub quiesce: Option<serde_yaml::Value>,
}

/// Fields earlier versions accepted and validated but `serve` never used, with what to do
/// instead. A field that is accepted must change what the service does; these did not, so
/// a configuration that sets them is refused rather than silently ignored.
pub const NOT_READ: [(&str, &str); 3] = [
    (
        "store.credentials",
        "is not read: the store's credentials come from the environment the way each cloud's own tools read them (workload identity, AWS_*, AZURE_*, GOOGLE_*); remove the field",
    ),
    (
        "ordering.operators",
        "is not read: operators are the workloads matching ordering.operatorSelector and are scaled up in the order the snapshot lists them; remove the field",
    ),
    (
        "ordering.quiesce",
        "is not read: `serve` never stops a cluster; give the order to `coldstart stop --order`; remove the field",
    ),
];

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ColdStartConfig {
    /// Restore the latest snapshot automatically when a cold start is detected.
    #[serde(default)]
    pub auto_restore: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiConfig {
    /// Bearer token for the mutating endpoints: `env:VAR` or `file:PATH`. Without it they
    /// are refused.
    pub token: Option<String>,
    /// Require the token for read-only endpoints and the page too.
    #[serde(default)]
    pub protect_reads: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderElectionConfig {
    /// Default true; false runs a single replica without a Lease.
    pub enabled: Option<bool>,
    pub namespace: Option<String>,
    pub lease_name: Option<String>,
    pub lease_duration: Option<String>,
    pub renew_deadline: Option<String>,
    pub retry_period: Option<String>,
}

/// Environment variables and flags that override the file; `None` leaves it alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub store_url: Option<String>,
    pub rpo_target: Option<String>,
    pub snapshot_cron: Option<String>,
    pub time_zone: Option<String>,
    pub auto_restore: Option<bool>,
    pub api_token: Option<String>,
    pub lease_namespace: Option<String>,
    /// Where the encryption key comes from, in the `encryption.key` form (from the CLI's
    /// key flags or `COLDSTART_ENCRYPTION_KEY`: see [`KeySource::from_flags`]).
    pub encryption_key: Option<String>,
}

/// Where a secret comes from. The value itself is never in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    fn parse(field: &str, s: &str) -> Result<Self, ConfigError> {
        if let Some(var) = s.strip_prefix("env:").filter(|v| !v.is_empty()) {
            Ok(SecretSource::Env(var.to_owned()))
        } else if let Some(path) = s.strip_prefix("file:").filter(|v| !v.is_empty()) {
            Ok(SecretSource::File(PathBuf::from(path)))
        } else {
            Err(ConfigError::invalid(
                field,
                "must be env:VAR or file:PATH (the secret itself never goes in the config)",
            ))
        }
    }

    /// Read the secret (trailing newline removed).
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretSource::Env(v) => {
                std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))
            }
            SecretSource::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("failed to read {}: {e}", p.display())),
        }
    }
}

impl Settings {
    /// Read every secret source once (the values are dropped): a source that does not
    /// exist fails here, naming its field, instead of at the first snapshot. The encryption
    /// key must also parse as a key.
    pub fn check_sources(&self) -> Result<(), ConfigError> {
        // A key in a Secret is read when serve connects (no cluster here); a file or an
        // environment variable is read now and must parse as a key.
        if let Some(src) = &self.encryption_key {
            let text = match src {
                KeySource::File(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                    ConfigError::invalid(
                        "encryption.key",
                        format!("failed to read {}: {e}", p.display()),
                    )
                })?),
                KeySource::Env(v) => Some(std::env::var(v).map_err(|_| {
                    ConfigError::invalid("encryption.key", format!("{v} is not set"))
                })?),
                KeySource::Secret { .. } => None,
            };
            if let Some(text) = text {
                crate::snapshot::crypto::parse_key(&text, &src.to_string())
                    .map_err(|e| ConfigError::invalid("encryption.key", e.to_string()))?;
            }
        }
        if let Some(src) = &self.api_token {
            src.read()
                .map_err(|e| ConfigError::invalid("api.token", e))?;
        }
        Ok(())
    }
}

/// A validated, typed configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cluster_name: Option<String>,
    pub listen: SocketAddr,
    pub store_url: String,
    pub encryption_key: Option<KeySource>,
    pub allow_plaintext_secrets: bool,
    pub data_policy: crate::bindings::DataPolicy,
    pub hydration: crate::restore::data_policy::HydrationOptions,
    pub snapshot: Schedule,
    pub drill: Option<Schedule>,
    pub audit: Option<Schedule>,
    pub retention: Retention,
    pub rpo_target: Duration,
    pub operator_selector: String,
    pub auto_restore: bool,
    pub api_token: Option<SecretSource>,
    pub protect_reads: bool,
    pub leader: Option<LeaderSettings>,
    pub shutdown_grace: Duration,
}

/// How many snapshots to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    pub keep_last: u32,
    pub daily: u32,
    pub weekly: u32,
}

#[derive(Debug, Clone)]
pub struct LeaderSettings {
    pub namespace: String,
    pub lease_name: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// Snapshot every 15 minutes unless told otherwise: the usual RPO asked of a platform.
const DEFAULT_SNAPSHOT_CRON: &str = "*/15 * * * *";
/// Amber past the target, red past twice the target (see the status page).
const DEFAULT_RPO_TARGET: &str = "30m";
/// Long enough for a large incremental snapshot to write its manifest.
const DEFAULT_SHUTDOWN_GRACE: &str = "60s";

impl Config {
    /// Parse YAML; unknown fields and wrong types are refused with their path.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "config".to_owned()
            } else {
                path
            };
            ConfigError::invalid(&field, strip_location(&e.into_inner().to_string()))
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// Put environment variables and flags on top of the file.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(v) = &o.listen {
            self.listen = Some(v.clone());
        }
        if let Some(v) = &o.store_url {
            self.store.url = Some(v.clone());
        }
        if let Some(v) = &o.rpo_target {
            self.rpo.target = Some(v.clone());
        }
        if o.snapshot_cron.is_some() || o.time_zone.is_some() {
            let s = self
                .schedules
                .snapshot
                .get_or_insert_with(|| ScheduleConfig {
                    cron: DEFAULT_SNAPSHOT_CRON.to_owned(),
                    ..Default::default()
                });
            if let Some(v) = &o.snapshot_cron {
                s.cron = v.clone();
            }
            if let Some(v) = &o.time_zone {
                s.time_zone = Some(v.clone());
            }
        }
        if let Some(v) = o.auto_restore {
            self.cold_start.auto_restore = v;
        }
        if let Some(v) = &o.api_token {
            self.api.token = Some(v.clone());
        }
        if let Some(v) = &o.lease_namespace {
            self.leader_election.namespace = Some(v.clone());
        }
        if let Some(v) = &o.encryption_key {
            self.encryption.key = Some(v.clone());
        }
    }

    /// Check every field and produce typed settings.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let listen_s = self.listen.as_deref().unwrap_or("0.0.0.0:8080");
        let listen = listen_s.parse().map_err(|_| {
            ConfigError::invalid(
                "listen",
                format!("{listen_s:?} is not an address such as 0.0.0.0:8080"),
            )
        })?;
        let store_url = self.store.url.clone().ok_or_else(|| {
            ConfigError::invalid("store.url", "is required (e.g. s3://bucket/prefix)")
        })?;
        const SCHEMES: [&str; 6] = [
            "file://",
            "memory://",
            "s3://",
            "az://",
            "azure://",
            "gs://",
        ];
        if !SCHEMES.iter().any(|p| store_url.starts_with(p)) {
            return Err(ConfigError::invalid(
                "store.url",
                format!(
                    "{store_url:?} must start with one of {}",
                    SCHEMES.join(", ")
                ),
            ));
        }
        let set = [
            self.store.credentials.is_some(),
            self.ordering.operators.is_some(),
            self.ordering.quiesce.is_some(),
        ];
        if let Some((field, why)) = NOT_READ
            .iter()
            .zip(set)
            .find_map(|(f, set)| set.then_some(f))
        {
            return Err(ConfigError::invalid(field, *why));
        }
        let encryption_key = self
            .encryption
            .key
            .as_deref()
            .map(|s| {
                KeySource::parse(s).map_err(|_| {
                    ConfigError::invalid(
                        "encryption.key",
                        "must be env:VAR, file:PATH or secret:NAMESPACE/NAME[/KEY] (the key itself never goes in the config)",
                    )
                })
            })
            .transpose()?;
        if encryption_key.is_none() && !self.encryption.allow_plaintext_secrets {
            return Err(ConfigError::invalid(
                "encryption.key",
                "is required (env:VAR, file:PATH or secret:NAMESPACE/NAME[/KEY]; or --encryption-key-file, --encryption-key-secret, COLDSTART_ENCRYPTION_KEY) unless encryption.allowPlaintextSecrets is true",
            ));
        }
        let default_snapshot = ScheduleConfig {
            cron: DEFAULT_SNAPSHOT_CRON.to_owned(),
            ..Default::default()
        };
        let snapshot = schedule(
            "schedules.snapshot",
            self.schedules
                .snapshot
                .as_ref()
                .unwrap_or(&default_snapshot),
        )?;
        let drill = self
            .schedules
            .drill
            .as_ref()
            .map(|s| schedule("schedules.drill", s))
            .transpose()?;
        let audit = self
            .schedules
            .audit
            .as_ref()
            .map(|s| schedule("schedules.audit", s))
            .transpose()?;
        let retention = Retention {
            keep_last: self.retention.keep_last.unwrap_or(24),
            daily: self.retention.daily.unwrap_or(7),
            weekly: self.retention.weekly.unwrap_or(4),
        };
        if retention.keep_last == 0 {
            return Err(ConfigError::invalid(
                "retention.keepLast",
                "must be at least 1: pruning every snapshot leaves nothing to restore",
            ));
        }
        let rpo_target = duration(
            "rpo.target",
            self.rpo.target.as_deref().unwrap_or(DEFAULT_RPO_TARGET),
        )?;
        if rpo_target.is_zero() {
            return Err(ConfigError::invalid(
                "rpo.target",
                "must be greater than zero",
            ));
        }
        let api_token = self
            .api
            .token
            .as_deref()
            .map(|s| SecretSource::parse("api.token", s))
            .transpose()?;
        if self.api.protect_reads && api_token.is_none() {
            return Err(ConfigError::invalid(
                "api.protectReads",
                "needs api.token to protect anything",
            ));
        }
        let le = &self.leader_election;
        let leader = if le.enabled.unwrap_or(true) {
            let l = LeaderSettings {
                namespace: le
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "coldstart".to_owned()),
                lease_name: le
                    .lease_name
                    .clone()
                    .unwrap_or_else(|| "coldstart".to_owned()),
                lease_duration: duration(
                    "leaderElection.leaseDuration",
                    le.lease_duration.as_deref().unwrap_or("15s"),
                )?,
                renew_deadline: duration(
                    "leaderElection.renewDeadline",
                    le.renew_deadline.as_deref().unwrap_or("10s"),
                )?,
                retry_period: duration(
                    "leaderElection.retryPeriod",
                    le.retry_period.as_deref().unwrap_or("2s"),
                )?,
            };
            if l.renew_deadline >= l.lease_duration {
                return Err(ConfigError::invalid(
                    "leaderElection.renewDeadline",
                    "must be shorter than leaseDuration, or two leaders could overlap",
                ));
            }
            if l.retry_period.is_zero() || l.retry_period >= l.renew_deadline {
                return Err(ConfigError::invalid(
                    "leaderElection.retryPeriod",
                    "must be greater than zero and shorter than renewDeadline",
                ));
            }
            Some(l)
        } else {
            None
        };
        let shutdown_grace = duration(
            "shutdownGrace",
            self.shutdown_grace
                .as_deref()
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        )?;
        Ok(Settings {
            cluster_name: self.cluster.name.clone(),
            listen,
            store_url,
            encryption_key,
            allow_plaintext_secrets: self.encryption.allow_plaintext_secrets,
            data_policy: self.data.default_policy.unwrap_or_default(),
            hydration: crate::restore::data_policy::HydrationOptions {
                fast_restore: self.data.fast_snapshot_restore,
                initialization_rate_mib_s: self.data.volume_initialization_rate,
            },
            snapshot,
            drill,
            audit,
            retention,
            rpo_target,
            operator_selector: self
                .ordering
                .operator_selector
                .clone()
                .unwrap_or_else(|| "coldstart.dev/operator=true".to_owned()),
            auto_restore: self.cold_start.auto_restore,
            api_token,
            protect_reads: self.api.protect_reads,
            leader,
            shutdown_grace,
        })
    }
}

fn schedule(field: &str, s: &ScheduleConfig) -> Result<Schedule, ConfigError> {
    let tz = s.time_zone.as_deref().unwrap_or("UTC");
    let parsed = Schedule::parse(&s.cron, tz).map_err(|e| {
        let which = match e {
            crate::schedule::ScheduleError::TimeZone(_) => "timeZone",
            crate::schedule::ScheduleError::Cron { .. } => "cron",
        };
        ConfigError::invalid(&format!("{field}.{which}"), e.to_string())
    })?;
    let jitter = s
        .jitter
        .as_deref()
        .map(|j| duration(&format!("{field}.jitter"), j))
        .transpose()?
        .unwrap_or_default();
    Ok(parsed.with_jitter(jitter))
}

fn duration(field: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        ConfigError::invalid(
            field,
            format!("{s:?} is not a duration such as 15m or 1h30m: {e}"),
        )
    })
}

/// serde_yaml appends " at line L column C"; keep it, it helps, but drop the duplicated
/// path prefix serde_path_to_error already gives.
fn strip_location(msg: &str) -> String {
    msg.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
cluster: { name: prod-eu1 }
listen: 0.0.0.0:9090
store: { url: s3://dr-bucket/prod-eu1 }
encryption: { key: env:COLDSTART_KEY }
schedules:
  snapshot: { cron: "*/15 * * * *", timeZone: Europe/Berlin, jitter: 30s }
  drill: { cron: "0 4 * * 0" }
  audit: { cron: "*/5 * * * *" }
retention: { keepLast: 12, daily: 7, weekly: 4 }
rpo: { target: 15m }
ordering:
  operatorSelector: coldstart.dev/operator=true
coldStart: { autoRestore: true }
api: { token: file:/var/run/secrets/coldstart/api-token }
leaderElection: { namespace: coldstart, leaseDuration: 15s, renewDeadline: 10s, retryPeriod: 2s }
shutdownGrace: 2m
"#;

    fn err(yaml: &str) -> ConfigError {
        match Config::from_yaml(yaml).and_then(|c| c.validate()) {
            Ok(_) => panic!("config should be refused:\n{yaml}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_complete_config_validates_into_typed_settings() {
        let s = Config::from_yaml(GOOD)
            .expect("parses")
            .validate()
            .expect("valid");
        assert_eq!(s.listen.port(), 9090);
        assert_eq!(s.rpo_target, Duration::from_secs(900));
        assert_eq!(s.snapshot.expr(), "*/15 * * * *");
        assert_eq!(s.snapshot.time_zone().name(), "Europe/Berlin");
        assert_eq!(
            s.encryption_key,
            Some(KeySource::Env("COLDSTART_KEY".to_owned()))
        );
        assert!(s.auto_restore);
        assert_eq!(s.retention.keep_last, 12);
        assert_eq!(s.shutdown_grace, Duration::from_secs(120));
        assert_eq!(
            s.leader.expect("leader election").lease_duration,
            Duration::from_secs(15)
        );
    }

    #[test]
    fn invalid_config_is_refused_with_the_offending_field_named() {
        let cases = [
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\nschedules: {snapshot: {cron: '*/15 * * *'}}",
                "schedules.snapshot.cron",
            ),
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\nschedules: {snapshot: {cron: '0 * * * *', timeZone: Mars/Base}}",
                "schedules.snapshot.timeZone",
            ),
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\nschedules: {drill: {cron: nope}}",
                "schedules.drill.cron",
            ),
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\nschedules: {snapshot: {crom: '0 * * * *'}}",
                "schedules.snapshot",
            ),
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\nrpo: {target: soon}",
                "rpo.target",
            ),
            (
                "store: {url: ftp://b}\nencryption: {key: env:K}",
                "store.url",
            ),
            ("encryption: {key: env:K}", "store.url"),
            ("store: {url: s3://b}", "encryption.key"),
            (
                "store: {url: s3://b}\nencryption: {key: hunter2}",
                "encryption.key",
            ),
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\nretention: {keepLast: 0}",
                "retention.keepLast",
            ),
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\nretention: {keepLast: many}",
                "retention.keepLast",
            ),
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\nlisten: here",
                "listen",
            ),
            (
                "store: {url: s3://b, credentials: ambient}\nencryption: {key: env:K}",
                "store.credentials",
            ),
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\nordering: {quiesce: [apps, data], operators: [a/b]}",
                "ordering.operators",
            ),
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\napi: {token: s3cr3t}",
                "api.token",
            ),
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\nleaderElection: {leaseDuration: 5s, renewDeadline: 10s}",
                "leaderElection.renewDeadline",
            ),
            (
                "store: {url: s3://b}\nencryption: {key: env:K}\nsnapshots: {}",
                "snapshots",
            ),
        ];
        for (yaml, field) in cases {
            let e = err(yaml);
            assert!(
                e.to_string().starts_with(field),
                "expected an error naming {field}, got: {e}"
            );
        }
        let e = err(
            "store: {url: s3://b}\nencryption: {key: env:K}\nschedules: {snapshot: {cron: '*/15 * * *'}}",
        );
        assert!(e.to_string().contains("invalid cron expression"), "{e}");
        let e = err("store: {url: s3://b}\nencryption: {key: env:K}\nsnapshots: {}");
        assert!(e.to_string().contains("unknown field `snapshots`"), "{e}");
    }

    #[test]
    fn flags_and_environment_override_the_file() {
        let mut c = Config::from_yaml(GOOD).expect("parses");
        c.apply(&Overrides {
            listen: Some("127.0.0.1:0".to_owned()),
            store_url: Some("file:///tmp/x".to_owned()),
            rpo_target: Some("1h".to_owned()),
            snapshot_cron: Some("0 * * * *".to_owned()),
            auto_restore: Some(false),
            ..Default::default()
        });
        let s = c.validate().expect("valid");
        assert_eq!(s.listen.to_string(), "127.0.0.1:0");
        assert_eq!(s.store_url, "file:///tmp/x");
        assert_eq!(s.rpo_target, Duration::from_secs(3600));
        assert_eq!(s.snapshot.expr(), "0 * * * *");
        assert_eq!(
            s.snapshot.time_zone().name(),
            "Europe/Berlin",
            "zone kept from the file"
        );
        assert!(!s.auto_restore);
    }

    #[test]
    fn a_minimal_config_gets_sensible_defaults() {
        let s = Config::from_yaml(
            "store: {url: 'memory://'}\nencryption: {allowPlaintextSecrets: true}",
        )
        .expect("parses")
        .validate()
        .expect("valid");
        assert_eq!(s.snapshot.expr(), "*/15 * * * *");
        assert_eq!(s.rpo_target, Duration::from_secs(1800));
        assert!(s.api_token.is_none());
        assert!(s.leader.is_some());
    }

    #[test]
    fn a_secret_source_that_does_not_exist_is_refused_naming_its_field() {
        let yaml = |key: &str, token: &str| {
            format!("store: {{url: s3://b}}\nencryption: {{key: {key}}}\napi: {{token: {token}}}")
        };
        let settings = |y: String| {
            serde_yaml::from_str::<Config>(&y)
                .unwrap()
                .validate()
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken").unwrap();
        let (k, t) = (
            format!("file:{}", key.display()),
            format!("file:{}", token.display()),
        );
        settings(yaml(&k, &t)).check_sources().unwrap();
        let cases = [
            (yaml("file:/nonexistent/key", &t), "encryption.key"),
            (
                yaml("env:COLDSTART_TEST_UNSET_VARIABLE", &t),
                "encryption.key",
            ),
            (yaml(&t, &t), "encryption.key"),
            (yaml(&k, "file:/nonexistent/token"), "api.token"),
        ];
        for (y, field) in cases {
            let err = settings(y).check_sources().unwrap_err();
            assert_eq!(err.field(), Some(field), "{err}");
        }
    }
}
