//! The one retry layer: every request a client built by [`super::connect`] sends goes
//! through it, typed `Api` calls and raw `send`s alike. It retries throttling (429), server
//! trouble (5xx but 501) and transport failures with exponential backoff and full jitter,
//! honours `Retry-After`, and gives up once a request's retries would outlast its budget —
//! never sleeping past it. kube's own retry layer is switched off, so nothing retries
//! underneath this one (it used to: with a budget of 15 s, kube was still retrying at 90 s).
//!
//! The budget is the client's ([`RetryPolicy`] given at connect), or a request's own when it
//! carries a `RetryPolicy` extension (snapshot capture gives discovery of an aggregated API
//! a shorter one). A request that carries a [`RetryCount`] learns how many retries it took.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use tokio::time::Instant;
use tower::BoxError;

/// How long to keep retrying a failing API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Give up once this much time has gone into one request's retries.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_millis(100),
            // A restarting API server is back within seconds; longer gaps only add to the
            // RTO of a restore that is waiting on it.
            max_delay: Duration::from_secs(10),
            // Two minutes rides out an API server restart or a control-plane upgrade.
            budget: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1`: exponential with full jitter, or what the server
    /// asked for in Retry-After (capped at the max delay).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_delay);
        }
        let exp = self
            .first_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        exp.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// Whether to retry after `elapsed` has gone into `attempt` retries, and after how long:
    /// `None` once the next delay would end past the budget.
    pub fn next(
        &self,
        attempt: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        let delay = self.delay(attempt, retry_after, jitter);
        (elapsed + delay <= self.budget).then_some(delay)
    }
}

/// Throttling responses (429: max-in-flight or API Priority and Fairness rejections) every
/// client of this process has received. Process-wide on purpose: it is the API server's
/// load signal, and [`super::concurrency::Adaptive`] backs off on it whichever request saw it
/// (the retry underneath hides the 429 from the caller).
static THROTTLED: AtomicU64 = AtomicU64::new(0);

/// How many throttling responses this process has received so far.
pub fn throttled_responses() -> u64 {
    THROTTLED.load(Ordering::Relaxed)
}

/// Whether a status is worth retrying.
pub fn is_retryable(status: u16) -> bool {
    status == 429 || (500..600).contains(&status) && status != 501
}

/// Counts the retries of the request that carries it (shared with the caller).
#[derive(Debug, Clone, Default)]
pub struct RetryCount(Arc<AtomicU32>);

impl RetryCount {
    /// Attempts made so far: the first one and every retry.
    pub fn attempts(&self) -> u32 {
        self.0.load(Ordering::Relaxed) + 1
    }
}

/// When a request's first attempt started (set on the first clone, carried by the retries).
#[derive(Debug, Clone, Copy)]
struct Started(Instant);

/// The tower retry policy behind [`layer`].
#[derive(Debug, Clone)]
pub struct Budgeted {
    policy: RetryPolicy,
    attempt: u32,
}

/// The retry layer for a client whose requests get `policy` unless they carry their own.
pub fn layer(policy: RetryPolicy) -> tower::retry::RetryLayer<Budgeted> {
    tower::retry::RetryLayer::new(Budgeted { policy, attempt: 0 })
}

impl<Res> tower::retry::Policy<Request<Body>, Response<Res>, BoxError> for Budgeted {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        let retry_after = match result {
            Ok(resp) if !is_retryable(resp.status().as_u16()) => return None,
            Ok(resp) => {
                if resp.status().as_u16() == 429 {
                    THROTTLED.fetch_add(1, Ordering::Relaxed);
                }
                resp.headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
            }
            Err(_) => None,
        };
        let policy = req
            .extensions()
            .get::<RetryPolicy>()
            .copied()
            .unwrap_or(self.policy);
        let elapsed = req
            .extensions()
            .get::<Started>()
            .map_or(Duration::ZERO, |s| s.0.elapsed());
        let delay = policy.next(self.attempt, elapsed, retry_after, rand::random())?;
        self.attempt += 1;
        if let Some(t) = req.extensions().get::<RetryCount>() {
            t.0.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(uri = %req.uri(), attempt = self.attempt, ?delay, "retrying");
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        // Streaming bodies cannot be replayed; those requests are sent once.
        let body = req.body().try_clone()?;
        let mut out = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version())
            .body(body)
            .ok()?;
        *out.headers_mut() = req.headers().clone();
        *out.extensions_mut() = req.extensions().clone();
        if out.extensions().get::<Started>().is_none() {
            out.extensions_mut().insert(Started(Instant::now()));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::retry::Policy as _;

    #[test]
    fn backoff_grows_exponentially_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            budget: Duration::from_secs(60),
        };
        let cases = [
            (
                "first retry, no jitter",
                0,
                None,
                1.0,
                Duration::from_millis(100),
            ),
            ("third retry", 2, None, 1.0, Duration::from_millis(400)),
            (
                "half jitter floor",
                2,
                None,
                0.0,
                Duration::from_millis(200),
            ),
            ("capped", 10, None, 1.0, Duration::from_secs(2)),
            (
                "retry-after wins",
                0,
                Some(Duration::from_secs(1)),
                0.3,
                Duration::from_secs(1),
            ),
            (
                "retry-after capped",
                0,
                Some(Duration::from_secs(60)),
                0.3,
                Duration::from_secs(2),
            ),
        ];
        for (name, attempt, ra, jitter, want) in cases {
            assert_eq!(p.delay(attempt, ra, jitter), want, "{name}");
        }
    }

    #[test]
    fn no_retry_is_scheduled_to_end_past_the_budget() {
        let p = RetryPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            budget: Duration::from_secs(15),
        };
        let s = Duration::from_secs;
        let cases = [
            (
                "fresh request",
                0,
                s(0),
                None,
                Some(Duration::from_millis(100)),
            ),
            (
                "well inside the budget",
                5,
                s(5),
                None,
                Some(s(3) + Duration::from_millis(200)),
            ),
            ("a delay that would cross the budget", 8, s(14), None, None),
            ("retry-after that fits", 1, s(10), Some(s(5)), Some(s(5))),
            (
                "retry-after past the budget gives up now",
                1,
                s(12),
                Some(s(5)),
                None,
            ),
            ("budget already spent", 0, s(15), None, None),
        ];
        for (name, attempt, elapsed, ra, want) in cases {
            assert_eq!(p.next(attempt, elapsed, ra, 1.0), want, "{name}");
        }
    }

    #[tokio::test]
    async fn throttling_server_errors_and_transport_failures_are_retried_client_errors_are_not() {
        for (status, retry) in [
            (429, true),
            (500, true),
            (503, true),
            (504, true),
            (501, false),
            (404, false),
            (403, false),
            (409, false),
            (422, false),
            (410, false),
        ] {
            assert_eq!(is_retryable(status), retry, "{status}");
        }
        let mut policy = Budgeted {
            policy: RetryPolicy::default(),
            attempt: 0,
        };
        let mut req = Request::new(Body::empty());
        let mut failed: Result<Response<()>, BoxError> = Err("connection refused".into());
        assert!(policy.retry(&mut req, &mut failed).is_some());
    }

    #[tokio::test]
    async fn a_request_carrying_its_own_policy_and_tally_is_held_to_that_budget() {
        let mut policy = Budgeted {
            policy: RetryPolicy::default(),
            attempt: 0,
        };
        let tally = RetryCount::default();
        let mut original = Request::new(Body::empty());
        original.extensions_mut().insert(RetryPolicy {
            first_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(40),
            budget: Duration::from_millis(100),
        });
        original.extensions_mut().insert(tally.clone());
        let started = std::time::Instant::now();
        let clone = |p: &mut Budgeted, r: &Request<Body>| {
            tower::retry::Policy::<Request<Body>, Response<()>, BoxError>::clone_request(p, r)
        };
        let mut req = clone(&mut policy, &original).expect("an empty body replays");
        let unavailable = || -> Result<Response<()>, BoxError> {
            Ok(Response::builder().status(503).body(()).expect("response"))
        };
        let mut retries = 0;
        while let Some(wait) = policy.retry(&mut req, &mut unavailable()) {
            wait.await;
            retries += 1;
            req = clone(&mut policy, &req).expect("replays");
        }
        // 20–40 ms delays (jittered) in a 100 ms budget: at least two retries, and the last
        // one never scheduled to end past the budget (a little slack for a loaded machine).
        assert!(retries >= 2, "{retries} retries");
        assert_eq!(tally.attempts(), retries + 1);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(100 + 60), "{took:?}");
    }
}
