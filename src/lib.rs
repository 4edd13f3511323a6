//! coldstart: make a whole Kubernetes cluster safe to stop and start again.
//!
//! Each module owns one thing in the life of a cluster's disaster recovery; each opens
//! with a paragraph on what it owns.

/// The allocator's purge delay, set in-process.
pub mod allocator;
/// The retention audit: what would be lost if the cluster were deleted now.
pub mod audit;
/// The bindings a cold start reuses: disks behind volumes, pinned addresses, buckets.
pub mod bindings;
/// Cloud verification: does every binding still point at something real?
pub mod cloud;
/// The `serve` configuration: YAML file, overrides, validation naming the field.
pub mod config;
/// `coldstart demo`: the simulated platform through audit, stop, deletion and start.
pub mod demo;
/// Drills: rehearse a cold start in a shadow cluster, verify bindings, keep a report.
pub mod drill;
/// Shared Kubernetes plumbing: connecting, discovery once per run, the one retry layer, waits.
pub mod k8s;
/// Planned stop and start of a whole cluster.
pub mod lifecycle;
/// Preflight: every recorded binding checked against the cloud before the first write.
pub mod preflight;
/// Live progress of a restore, stop, start or drill, read by the page and the terminal bar.
pub mod progress;
/// Cold-start restore: plan, admission gate, tiered apply, verification.
pub mod restore;
/// When scheduled jobs are due (pure) and which replica runs them (Lease election).
pub mod schedule;
/// The `coldstart serve` loop: leader-only jobs on schedules, through the `Jobs` trait.
pub mod serve;
/// Snapshots: capture, format, encryption, reading back verified, retention.
pub mod snapshot;
/// The snapshot store: object storage backends by URL, key layout, the writer lock.
pub mod store;
/// Logging and tracing set-up shared by every command.
pub mod telemetry;
/// Chainable fixture builders for tests (unit tests, and `tests/` through the `testing`
/// feature).
#[cfg(any(test, feature = "testing"))]
pub mod testing;
/// The status page, JSON API, probes and `/metrics` of `coldstart serve`.
pub mod web;
