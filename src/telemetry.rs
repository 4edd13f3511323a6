//! Tracing set-up: human-readable logs on stderr by default, JSON lines with
//! `--log-format json`, filtered by `RUST_LOG` (default [`DEFAULT_FILTER`]).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `info`, without kube-rs's own line per failed request (`kube_client::client::builder`) or
/// per dropped watch connection (`kube_client::client`). coldstart retries what can be
/// retried and reports every API error itself, with the object and what to do
/// (`k8s::retry`): kube-rs's lines only repeat it, and they read as failures when a retried
/// 429 then succeeds or a watch reconnects. `RUST_LOG=info,kube_client=debug` shows them.
pub const DEFAULT_FILTER: &str = "info,kube_client::client=off";

/// Install the global subscriber. Logs go to stderr so stdout stays clean for `--json`.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
