//! Adaptive concurrency for bulk writes (a restore's creates): additive increase while the
//! API server answers without throttling, multiplicative decrease when it throttles (a 429
//! from max-in-flight or an API Priority and Fairness rejection), like TCP's congestion
//! window. A fixed number is either too timid for a big control plane or enough to have a
//! small one reject requests; this finds the rate the server accepts and stays near it.
//!
//! The decision is the pure [`next_limit`]; [`Adaptive`] is the shell that counts requests
//! in flight and reads the process's throttle signal ([`super::retry::throttled_responses`]).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// After a decrease, throttling seen within this long is the same episode: requests already
/// in flight when the server pushed back report it too, and halving for each of them would
/// collapse the limit to its floor for one overload.
const DECREASE_HOLD: Duration = Duration::from_millis(250);

/// What the server said about the requests that finished since the last decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered without throttling.
    Ok,
    /// Throttled (429), retried or not.
    Throttled,
}

/// The next limit (pure): +1 per window of `limit` unthrottled completions (so +1/limit per
/// completion), halved on throttling unless a decrease happened within [`DECREASE_HOLD`];
/// always within `[min, max]`.
pub fn next_limit(
    limit: f64,
    signal: Signal,
    since_decrease: Duration,
    min: usize,
    max: usize,
) -> f64 {
    let next = match signal {
        Signal::Ok => limit + 1.0 / limit.max(1.0),
        Signal::Throttled if since_decrease >= DECREASE_HOLD => limit / 2.0,
        Signal::Throttled => limit,
    };
    next.clamp(min.max(1) as f64, max.max(min).max(1) as f64)
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    throttled_seen: u64,
    last_decrease: Instant,
    lowest: f64,
    highest: f64,
}

/// A limit on requests in flight that adapts to the server (see the module docs).
#[derive(Debug)]
pub struct Adaptive {
    state: Mutex<State>,
    freed: Notify,
    min: usize,
    max: usize,
}

/// The limits an [`Adaptive`] went through, for a report.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Range {
    pub initial: usize,
    pub lowest: usize,
    pub highest: usize,
    pub last: usize,
}

/// A slot in flight; give it back with [`Adaptive::release`].
#[derive(Debug)]
#[must_use]
pub struct Permit(());

impl Adaptive {
    /// Start at `initial` in flight, never below `min` or above `max`.
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        let limit = initial.clamp(min.max(1), max.max(min).max(1)) as f64;
        Adaptive {
            state: Mutex::new(State {
                limit,
                in_flight: 0,
                throttled_seen: super::retry::throttled_responses(),
                last_decrease: Instant::now() - DECREASE_HOLD,
                lowest: limit,
                highest: limit,
            }),
            freed: Notify::new(),
            min,
            max,
        }
    }

    /// The most requests this can ever let in flight (size the stream buffer to it).
    pub fn max(&self) -> usize {
        self.max.max(self.min).max(1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind; keep using them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for a slot under the current limit.
    pub async fn acquire(&self) -> Permit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut s = self.lock();
                if (s.in_flight as f64) < s.limit.floor() {
                    s.in_flight += 1;
                    return Permit(());
                }
            }
            freed.await;
        }
    }

    /// Give a slot back, saying whether the request was throttled (a 429 the retry layer
    /// gave up on); throttling the retry layer rode out is read from the process's signal.
    pub fn release(&self, permit: Permit, throttled: bool) {
        let Permit(()) = permit;
        {
            let mut s = self.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
            let seen = super::retry::throttled_responses();
            let signal = if throttled || seen > s.throttled_seen {
                Signal::Throttled
            } else {
                Signal::Ok
            };
            s.throttled_seen = seen;
            let next = next_limit(
                s.limit,
                signal,
                s.last_decrease.elapsed(),
                self.min,
                self.max,
            );
            if next < s.limit {
                s.last_decrease = Instant::now();
                tracing::debug!(
                    from = s.limit,
                    to = next,
                    "throttled: fewer requests in flight"
                );
            }
            s.limit = next;
            s.lowest = s.lowest.min(next);
            s.highest = s.highest.max(next);
        }
        self.freed.notify_waiters();
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit as usize
    }

    /// Where the limit has been so far.
    pub fn range(&self, initial: usize) -> Range {
        let s = self.lock();
        Range {
            initial,
            lowest: s.lowest as usize,
            highest: s.highest as usize,
            last: s.limit as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_grows_by_one_per_window_and_halves_when_throttled() {
        let long = DECREASE_HOLD * 2;
        let cases = [
            (
                "ok grows by 1/limit",
                64.0,
                Signal::Ok,
                long,
                64.0 + 1.0 / 64.0,
            ),
            ("throttled halves", 64.0, Signal::Throttled, long, 32.0),
            (
                "throttled again within the hold keeps it",
                32.0,
                Signal::Throttled,
                Duration::ZERO,
                32.0,
            ),
            ("never below the floor", 5.0, Signal::Throttled, long, 4.0),
            ("never above the ceiling", 256.0, Signal::Ok, long, 256.0),
        ];
        for (name, limit, signal, since, want) in cases {
            let got = next_limit(limit, signal, since, 4, 256);
            assert!((got - want).abs() < 1e-9, "{name}: {got} != {want}");
        }
        // A whole window of successes adds one.
        let mut l = 16.0;
        for _ in 0..16 {
            l = next_limit(l, Signal::Ok, long, 1, 100);
        }
        assert!((16.9..17.1).contains(&l), "{l}");
    }

    #[tokio::test]
    async fn no_more_requests_are_let_in_flight_than_the_limit() {
        let a = std::sync::Arc::new(Adaptive::new(2, 1, 2));
        let p1 = a.acquire().await;
        let p2 = a.acquire().await;
        let waiting = tokio::spawn({
            let a = a.clone();
            async move {
                let p = a.acquire().await;
                a.release(p, false);
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "a third request got in over a limit of 2"
        );
        a.release(p1, false);
        waiting.await.expect("the waiter gets the freed slot");
        a.release(p2, false);
    }

    #[tokio::test]
    async fn a_throttled_request_halves_the_limit() {
        let a = Adaptive::new(64, 4, 256);
        let p = a.acquire().await;
        a.release(p, true);
        assert_eq!(a.limit(), 32);
        assert_eq!(a.range(64).lowest, 32);
    }
}
