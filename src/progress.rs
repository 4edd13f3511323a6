//! Live progress of a restore (and of the stop/start that wrap it): phase, per-tier counts
//! and elapsed time. Shared behind a mutex so the status page and a terminal progress bar
//! read what the restore writes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::restore::plan::Tier;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TierProgress {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    /// `restore`, `stop`, `start`, `drill`.
    pub operation: String,
    pub phase: String,
    pub started_at: Option<DateTime<Utc>>,
    pub current_tier: Option<Tier>,
    pub tiers: BTreeMap<Tier, TierProgress>,
    pub finished: bool,
    pub succeeded: Option<bool>,
}

impl Progress {
    pub fn begin(&mut self, operation: &str) {
        *self = Progress {
            operation: operation.to_owned(),
            phase: "starting".to_owned(),
            started_at: Some(Utc::now()),
            ..Default::default()
        };
    }

    pub fn phase(&mut self, phase: &str) {
        self.phase = phase.to_owned();
    }

    pub fn start_tier(&mut self, tier: Tier, total: usize) {
        self.phase = format!("restoring {}", tier.name());
        self.current_tier = Some(tier);
        self.tiers.insert(
            tier,
            TierProgress {
                total,
                ..Default::default()
            },
        );
    }

    pub fn object_done(&mut self, tier: Tier, failed: bool) {
        let t = self.tiers.entry(tier).or_default();
        t.done += 1;
        if failed {
            t.failed += 1;
        }
    }

    pub fn finish(&mut self, succeeded: bool) {
        self.finished = true;
        self.succeeded = Some(succeeded);
        self.current_tier = None;
        self.phase = if succeeded { "done" } else { "failed" }.to_owned();
    }

    pub fn done(&self) -> usize {
        self.tiers.values().map(|t| t.done).sum()
    }

    pub fn total(&self) -> usize {
        self.tiers.values().map(|t| t.total).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_objects_per_tier_and_in_total() {
        let mut p = Progress::default();
        p.begin("restore");
        p.start_tier(Tier::Namespaces, 2);
        p.object_done(Tier::Namespaces, false);
        p.object_done(Tier::Namespaces, true);
        p.start_tier(Tier::Config, 3);
        assert_eq!((p.done(), p.total()), (2, 5));
        assert_eq!(p.tiers[&Tier::Namespaces].failed, 1);
        p.finish(false);
        assert_eq!(p.phase, "failed");
    }
}
