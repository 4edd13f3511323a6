//! Schedules: when a snapshot, drill or audit is due, and which replica may run it.
//!
//! Due-ness is a pure function of (schedule, job state, now) — [`next_due`] — so every
//! case (first run, several runs missed, a run still going, daylight-saving changes) is a
//! table test with an injected clock. The service loop asks it once per tick and acts on
//! the [`Decision`]; it never reads the clock itself in here.
//!
//! Only the leader runs jobs: [`leader`] elects one replica through a Kubernetes Lease.
//!
//! Cron expressions are the five-field crontab form (`*/15 * * * *`, minute first, day of
//! week 0–7 with 0 and 7 both Sunday) or `@hourly`/`@daily`/`@weekly`/`@monthly`, read in
//! an IANA time zone. Daylight-saving rules, like Vixie cron's:
//! - a schedule with a fixed hour (`30 2 * * *`) runs once per local day: a time skipped by
//!   a spring-forward runs at the end of the gap, a time repeated by a fall-back runs once;
//! - a schedule that runs every hour (`*/15 * * * *`) follows real time: the skipped hour
//!   has no runs and the repeated hour has them twice, so the interval never stretches.

pub mod leader;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use cron::TimeUnitSpec;

/// Why a schedule could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression {expr:?}: {reason}")]
    Cron { expr: String, reason: String },
    #[error("unknown time zone {0:?} (use an IANA name such as UTC or Europe/Berlin)")]
    TimeZone(String),
}

/// A parsed cron schedule in a time zone, with optional jitter.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: cron::Schedule,
    tz: Tz,
    jitter: Duration,
    /// Every hour matches: evaluate in real time (see the module docs).
    hourly: bool,
}

/// How far the clock is searched for the next slot: a schedule such as `0 0 30 2 *`
/// (30 February) never fires, and must not loop.
const MAX_MISSED_COUNTED: u32 = 10_000;

impl Schedule {
    /// Parse a crontab expression in an IANA time zone.
    pub fn parse(expr: &str, time_zone: &str) -> Result<Self, ScheduleError> {
        let tz =
            Tz::from_str(time_zone).map_err(|_| ScheduleError::TimeZone(time_zone.to_owned()))?;
        let six = to_six_fields(expr).map_err(|reason| ScheduleError::Cron {
            expr: expr.to_owned(),
            reason,
        })?;
        let cron = cron::Schedule::from_str(&six).map_err(|e| ScheduleError::Cron {
            expr: expr.to_owned(),
            reason: e.to_string(),
        })?;
        let hourly = cron.hours().is_all();
        let s = Schedule {
            expr: expr.to_owned(),
            cron,
            tz,
            jitter: Duration::ZERO,
            hourly,
        };
        if s.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::Cron {
                expr: expr.to_owned(),
                reason: "it never fires".to_owned(),
            });
        }
        Ok(s)
    }

    /// Spread starts over up to `jitter` after each slot (deterministic per slot), so many
    /// clusters on the same schedule do not hit one store at the same second.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first slot strictly after `t`, or None if the schedule never fires again.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.hourly {
            self.next_in_real_time(t)
        } else {
            let naive = t.with_timezone(&self.tz).naive_local();
            let mut from = naive;
            loop {
                let next = self
                    .cron
                    .after(&Utc.from_utc_datetime(&from))
                    .next()?
                    .naive_utc();
                let real = self.local_to_utc(next);
                if real > t {
                    return Some(real);
                }
                from = next;
            }
        }
    }

    /// Follow real time across offset changes: search with the offset in force, and where
    /// the offset changes before the candidate, restart from the change with the new one.
    /// (Searching in local fields alone would skip the hour a fall-back repeats.)
    fn next_in_real_time(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset_at = |x: DateTime<Utc>| self.tz.offset_from_utc_datetime(&x.naive_utc()).fix();
        let second = chrono::Duration::seconds(1);
        let mut from = t;
        let mut off = offset_at(t);
        // Each round crosses one offset change; a few cover any real zone.
        for _ in 0..8 {
            let candidate = self
                .cron
                .after(&from.with_timezone(&off))
                .next()?
                .with_timezone(&Utc);
            if offset_at(candidate) == off {
                return Some(candidate);
            }
            let (mut lo, mut hi) = (from, candidate);
            while hi - lo > second {
                let mid = lo + (hi - lo) / 2;
                if offset_at(mid) == off {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            from = hi - second;
            off = offset_at(hi);
        }
        None
    }

    /// The instant a local wall-clock time means: the earlier one when a fall-back repeats
    /// it, the end of the gap when a spring-forward skips it.
    fn local_to_utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(d) | chrono::LocalResult::Ambiguous(d, _) => {
                d.with_timezone(&Utc)
            }
            chrono::LocalResult::None => {
                // Gaps are whole minutes (30 or 60 in practice): the first minute that
                // exists is where the clock jumped to.
                let minute = chrono::Duration::minutes(1);
                let mut probe = local;
                for _ in 0..24 * 60 {
                    probe += minute;
                    if let chrono::LocalResult::Single(d) | chrono::LocalResult::Ambiguous(d, _) =
                        self.tz.from_local_datetime(&probe)
                    {
                        return d.with_timezone(&Utc);
                    }
                }
                Utc.from_utc_datetime(&local)
            }
        }
    }

    /// The delay after `slot` this schedule's jitter gives it (stable for a slot, so every
    /// replica and every tick agree).
    pub fn jitter_for(&self, slot: DateTime<Utc>) -> Duration {
        let max = self.jitter.as_secs();
        if max == 0 {
            return Duration::ZERO;
        }
        // FNV-1a over the expression and the slot: cheap, stable across builds.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.expr.bytes().chain(slot.timestamp().to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Duration::from_secs(h % (max + 1))
    }
}

/// Rewrite a crontab expression into the `cron` crate's form: a leading seconds field, and
/// days of week 1–7 from Sunday instead of 0–7.
fn to_six_fields(expr: &str) -> Result<String, String> {
    let expr = expr.trim();
    if expr.starts_with('@') {
        return match expr {
            "@hourly" | "@daily" | "@weekly" | "@monthly" | "@yearly" => Ok(expr.to_owned()),
            "@midnight" => Ok("@daily".to_owned()),
            "@annually" => Ok("@yearly".to_owned()),
            _ => Err(format!("unknown shorthand {expr}")),
        };
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    }
    let dow = shift_days_of_week(fields[4])?;
    Ok(format!(
        "0 {} {} {} {} {}",
        fields[0], fields[1], fields[2], fields[3], dow
    ))
}

fn shift_days_of_week(field: &str) -> Result<String, String> {
    let shift = |n: &str| -> Result<String, String> {
        match n.parse::<u8>() {
            Ok(7) => Ok("1".to_owned()),
            Ok(d) if d <= 6 => Ok((d + 1).to_string()),
            Ok(d) => Err(format!("day of week {d} is out of range 0-7")),
            Err(_) => Ok(n.to_owned()),
        }
    };
    let mut parts = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let range = match range.split_once('-') {
            Some((a, b)) => {
                let b = if b == "7" {
                    "6".to_owned()
                } else {
                    b.to_owned()
                };
                let sunday_too = range.ends_with("-7");
                let r = format!("{}-{}", shift(a)?, shift(&b)?);
                if sunday_too && step.is_none() {
                    // `5-7` is Friday to Sunday: Sunday is 1 in the shifted numbering.
                    format!("{r},1")
                } else {
                    r
                }
            }
            None => shift(range)?,
        };
        parts.push(match step {
            Some(s) => format!("{range}/{s}"),
            None => range,
        });
    }
    Ok(parts.join(","))
}

/// What the scheduler knows about one job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobState {
    /// The slot the last run served (or when the last run happened, if it was not
    /// scheduled); None if it never ran.
    pub last_run: Option<DateTime<Utc>>,
    /// A run is in progress.
    pub running: bool,
}

/// What to do about one job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start a run for `slot` now. `missed` earlier slots passed without a run; they are
    /// served by this one run, not replayed.
    Run { slot: DateTime<Utc>, missed: u32 },
    /// Nothing to do until `next` (jitter included).
    Wait { next: DateTime<Utc> },
    /// A slot is due but the previous run is still going: runs never overlap. It starts as
    /// soon as the previous one ends.
    Busy { due: DateTime<Utc> },
    /// The schedule never fires again.
    Never,
}

/// Is a job due? Pure: the clock is `now`.
///
/// A job that never ran is due at once: a cluster without a snapshot has no recovery point.
pub fn next_due(schedule: &Schedule, state: &JobState, now: DateTime<Utc>) -> Decision {
    let Some(last) = state.last_run else {
        return if state.running {
            Decision::Busy { due: now }
        } else {
            Decision::Run {
                slot: now,
                missed: 0,
            }
        };
    };
    let Some(first) = schedule.next_after(last) else {
        return Decision::Never;
    };
    let start_at = |slot: DateTime<Utc>| slot + schedule.jitter_for(slot);
    if first > now {
        return Decision::Wait {
            next: start_at(first),
        };
    }
    // Walk the slots that have passed: the latest one is served, the others were missed.
    let mut slot = first;
    let mut missed = 0u32;
    while let Some(next) = schedule.next_after(slot) {
        if next > now || missed >= MAX_MISSED_COUNTED {
            break;
        }
        slot = next;
        missed += 1;
    }
    // An overdue slot (one was missed) starts at once; jitter only spreads punctual starts.
    if missed == 0 && start_at(slot) > now {
        return Decision::Wait {
            next: start_at(slot),
        };
    }
    if state.running {
        Decision::Busy { due: slot }
    } else {
        Decision::Run { slot, missed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    fn sched(expr: &str, tz: &str) -> Schedule {
        Schedule::parse(expr, tz).expect("valid schedule")
    }

    fn run(slot: &str, missed: u32) -> Decision {
        Decision::Run {
            slot: at(slot),
            missed,
        }
    }

    fn wait(next: &str) -> Decision {
        Decision::Wait { next: at(next) }
    }

    #[test]
    fn due_ness_follows_the_table() {
        struct Case {
            name: &'static str,
            expr: &'static str,
            tz: &'static str,
            last: Option<&'static str>,
            running: bool,
            now: &'static str,
            want: Decision,
        }
        let cases = [
            Case {
                name: "a job that never ran is due at once",
                expr: "*/15 * * * *",
                tz: "UTC",
                last: None,
                running: false,
                now: "2025-01-10T10:07:00Z",
                want: run("2025-01-10T10:07:00Z", 0),
            },
            Case {
                name: "between two slots it waits for the next one",
                expr: "*/15 * * * *",
                tz: "UTC",
                last: Some("2025-01-10T10:00:00Z"),
                running: false,
                now: "2025-01-10T10:07:00Z",
                want: wait("2025-01-10T10:15:00Z"),
            },
            Case {
                name: "exactly at the slot it runs",
                expr: "*/15 * * * *",
                tz: "UTC",
                last: Some("2025-01-10T10:00:00Z"),
                running: false,
                now: "2025-01-10T10:15:00Z",
                want: run("2025-01-10T10:15:00Z", 0),
            },
            Case {
                name: "several runs missed are served by one run for the latest slot",
                expr: "*/15 * * * *",
                tz: "UTC",
                last: Some("2025-01-10T10:00:00Z"),
                running: false,
                now: "2025-01-10T11:05:00Z",
                want: run("2025-01-10T11:00:00Z", 3),
            },
            Case {
                name: "a run never starts while the previous one is still going",
                expr: "*/15 * * * *",
                tz: "UTC",
                last: Some("2025-01-10T10:00:00Z"),
                running: true,
                now: "2025-01-10T10:16:00Z",
                want: Decision::Busy {
                    due: at("2025-01-10T10:15:00Z"),
                },
            },
            Case {
                name: "a long run that overlapped a slot is followed by one catch-up run",
                expr: "*/15 * * * *",
                tz: "UTC",
                last: Some("2025-01-10T10:00:00Z"),
                running: false,
                now: "2025-01-10T10:22:00Z",
                want: run("2025-01-10T10:15:00Z", 0),
            },
            Case {
                name: "a daily run follows the local time zone",
                expr: "0 3 * * *",
                tz: "Europe/Berlin",
                last: Some("2025-01-09T02:00:00Z"),
                running: false,
                now: "2025-01-10T01:30:00Z",
                want: wait("2025-01-10T02:00:00Z"),
            },
            Case {
                name: "a time skipped by spring-forward runs at the end of the gap",
                expr: "30 2 * * *",
                tz: "Europe/Berlin",
                // 02:30 CET on 29 March.
                last: Some("2025-03-29T01:30:00Z"),
                running: false,
                now: "2025-03-30T00:10:00Z",
                // 30 March 02:30 does not exist; 03:00 CEST is 01:00 UTC.
                want: wait("2025-03-30T01:00:00Z"),
            },
            Case {
                name: "after the gap the fixed-time schedule is back to normal",
                expr: "30 2 * * *",
                tz: "Europe/Berlin",
                last: Some("2025-03-30T01:00:00Z"),
                running: false,
                now: "2025-03-30T12:00:00Z",
                // 31 March 02:30 CEST.
                want: wait("2025-03-31T00:30:00Z"),
            },
            Case {
                name: "a time repeated by fall-back runs only once",
                expr: "30 2 * * *",
                tz: "Europe/Berlin",
                // The first 02:30 of 26 October (CEST) was served.
                last: Some("2025-10-26T00:30:00Z"),
                running: false,
                // The second 02:30 (CET) is 01:30 UTC; it must not run again.
                now: "2025-10-26T01:45:00Z",
                want: wait("2025-10-27T01:30:00Z"),
            },
            Case {
                name: "an every-15-minutes schedule runs through the repeated hour",
                expr: "*/15 * * * *",
                tz: "Europe/Berlin",
                // 02:45 CEST, just before the clocks go back.
                last: Some("2025-10-26T00:45:00Z"),
                running: false,
                // Now 02:00 CET (01:00 UTC): the repeated 02:00 is a slot of its own.
                now: "2025-10-26T01:00:00Z",
                want: run("2025-10-26T01:00:00Z", 0),
            },
            Case {
                name: "an every-15-minutes schedule has no gap longer than 15 minutes at spring-forward",
                expr: "*/15 * * * *",
                tz: "Europe/Berlin",
                // 01:45 CET, the last slot before 02:00 becomes 03:00.
                last: Some("2025-03-30T00:45:00Z"),
                running: false,
                now: "2025-03-30T00:50:00Z",
                want: wait("2025-03-30T01:00:00Z"),
            },
            Case {
                name: "day of week 0 and 7 are both Sunday",
                expr: "0 4 * * 0",
                tz: "UTC",
                // Sunday 5 January 2025.
                last: Some("2025-01-05T04:00:00Z"),
                running: false,
                now: "2025-01-06T00:00:00Z",
                want: wait("2025-01-12T04:00:00Z"),
            },
            Case {
                name: "weekdays 1-5 are Monday to Friday",
                expr: "0 4 * * 1-5",
                tz: "UTC",
                // Friday 10 January.
                last: Some("2025-01-10T04:00:00Z"),
                running: false,
                now: "2025-01-10T05:00:00Z",
                want: wait("2025-01-13T04:00:00Z"),
            },
        ];
        for c in cases {
            let state = JobState {
                last_run: c.last.map(at),
                running: c.running,
            };
            let got = next_due(&sched(c.expr, c.tz), &state, at(c.now));
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn sunday_seven_matches_sunday_zero() {
        let a = sched("0 4 * * 7", "UTC");
        let b = sched("0 4 * * 0", "UTC");
        let t = at("2025-01-06T00:00:00Z");
        assert_eq!(a.next_after(t), b.next_after(t));
        let weekend = sched("0 4 * * 6-7", "UTC");
        // Saturday 11th, then Sunday 12th.
        assert_eq!(weekend.next_after(t), Some(at("2025-01-11T04:00:00Z")));
        assert_eq!(
            weekend.next_after(at("2025-01-11T04:00:00Z")),
            Some(at("2025-01-12T04:00:00Z"))
        );
    }

    #[test]
    fn jitter_delays_a_punctual_start_but_never_an_overdue_one() {
        let s = sched("*/15 * * * *", "UTC").with_jitter(Duration::from_secs(60));
        let slot = at("2025-01-10T10:15:00Z");
        let j = s.jitter_for(slot);
        assert!(j <= Duration::from_secs(60));
        assert_eq!(j, s.jitter_for(slot), "jitter is stable for a slot");
        let state = JobState {
            last_run: Some(at("2025-01-10T10:00:00Z")),
            running: false,
        };
        let start = slot + j;
        if j > Duration::ZERO {
            assert_eq!(
                next_due(&s, &state, slot),
                Decision::Wait { next: start },
                "a punctual start waits for its jitter"
            );
        }
        assert_eq!(
            next_due(&s, &state, start),
            Decision::Run { slot, missed: 0 }
        );
        assert!(matches!(
            next_due(&s, &state, at("2025-01-10T10:30:00Z")),
            Decision::Run { missed: 1, .. }
        ));
    }

    #[test]
    fn invalid_expressions_and_zones_are_refused_with_the_reason() {
        let e = Schedule::parse("*/15 * * *", "UTC").expect_err("4 fields");
        assert!(e.to_string().contains("expected 5 fields"), "{e}");
        let e = Schedule::parse("61 * * * *", "UTC").expect_err("minute 61");
        assert!(e.to_string().starts_with("invalid cron expression"), "{e}");
        let e = Schedule::parse("0 0 30 2 *", "UTC").expect_err("30 February");
        assert!(e.to_string().contains("never fires"), "{e}");
        let e = Schedule::parse("@daily", "Mars/Olympus").expect_err("zone");
        assert!(e.to_string().contains("unknown time zone"), "{e}");
        assert!(Schedule::parse("@daily", "America/New_York").is_ok());
    }
}
