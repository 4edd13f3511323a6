//! Injected faults for reliability tests: added latency, a rate of 5xx errors and a rate of
//! 429 throttling, set at start (`--faults latency=20ms,error-rate=0.05,throttle-rate=0.2`)
//! or at run time (`PUT /sim/v1/faults`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Faults applied to Kubernetes API requests (never to `/sim/v1`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    pub latency_ms: u64,
    /// Fraction of requests answered 500/503.
    pub error_rate: f64,
    /// Fraction of requests answered 429 with Retry-After.
    pub throttle_rate: f64,
    /// Only fault writes (POST/PUT/PATCH/DELETE), so discovery and reads still work.
    pub writes_only: bool,
}

/// Why a `--faults` string could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultsError {
    #[error("unknown fault {0:?} (known: latency, error-rate, throttle-rate, writes-only)")]
    Unknown(String),
    #[error("invalid value for {0}: {1:?}")]
    Value(&'static str, String),
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Throttle,
    Fail,
}

fn rate(name: &'static str, v: &str) -> Result<f64, FaultsError> {
    let r: f64 = v
        .parse()
        .map_err(|_| FaultsError::Value(name, v.to_owned()))?;
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(FaultsError::Value(name, v.to_owned()))
    }
}

impl Faults {
    pub fn parse(s: &str) -> Result<Self, FaultsError> {
        let mut f = Faults::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, "true"));
            match k {
                "latency" => {
                    let ms = v.strip_suffix("ms").unwrap_or(v);
                    f.latency_ms = ms
                        .parse()
                        .map_err(|_| FaultsError::Value("latency", v.to_owned()))?;
                }
                "error-rate" => f.error_rate = rate("error-rate", v)?,
                "throttle-rate" => f.throttle_rate = rate("throttle-rate", v)?,
                "writes-only" => f.writes_only = v != "false",
                other => return Err(FaultsError::Unknown(other.to_owned())),
            }
        }
        Ok(f)
    }

    pub fn latency(&self) -> Option<Duration> {
        (self.latency_ms > 0).then(|| Duration::from_millis(self.latency_ms))
    }

    /// Decide a request's fate from a uniform draw in [0, 1).
    pub fn verdict(&self, is_write: bool, draw: f64) -> Verdict {
        if self.writes_only && !is_write {
            return Verdict::Pass;
        }
        if draw < self.throttle_rate {
            Verdict::Throttle
        } else if draw < self.throttle_rate + self.error_rate {
            Verdict::Fail
        } else {
            Verdict::Pass
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faults_string_parses_into_rates_and_latency() {
        let f = Faults::parse("latency=20ms,error-rate=0.1,throttle-rate=0.25,writes-only")
            .expect("valid");
        assert_eq!(f.latency_ms, 20);
        assert_eq!(f.error_rate, 0.1);
        assert_eq!(f.throttle_rate, 0.25);
        assert!(f.writes_only);
    }

    #[test]
    fn bad_fault_strings_name_the_problem() {
        assert_eq!(
            Faults::parse("error-rate=2"),
            Err(FaultsError::Value("error-rate", "2".into()))
        );
        assert!(matches!(
            Faults::parse("explode=1"),
            Err(FaultsError::Unknown(_))
        ));
    }

    #[test]
    fn draws_below_the_throttle_rate_are_throttled_then_errors_then_passes() {
        let f = Faults::parse("error-rate=0.2,throttle-rate=0.3").expect("valid");
        assert_eq!(f.verdict(true, 0.1), Verdict::Throttle);
        assert_eq!(f.verdict(true, 0.4), Verdict::Fail);
        assert_eq!(f.verdict(true, 0.6), Verdict::Pass);
        let w = Faults::parse("throttle-rate=1,writes-only").expect("valid");
        assert_eq!(w.verdict(false, 0.0), Verdict::Pass);
    }
}
