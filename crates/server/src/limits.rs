//! Limits per token: requests per second, body bytes per second, query run time per second
//! and live queries at once. Each token has its own (set at `eddy token create`); what it
//! does not set is the server's default, `[limits]` in the configuration; unset there too, it
//! is unlimited. Past a limit a request gets `429` with `Retry-After`, counted in
//! `eddy_limited_total{token, limit}`.
//!
//! Rates are buckets that fill at the rate and hold one second of it. Requests take one
//! unit each and wait for a whole one. Bytes and query time are known only as a body streams
//! or once a query has run, so they are charged afterwards and may run the bucket into debt:
//! a request is admitted while the bucket is not in debt, and the debt says how long the
//! next must wait.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_base::sync::lock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};

/// A token's limits (`[limits]` in the configuration: the default of every token).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenLimits {
    /// Requests per second (a websocket counts once, when it opens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Request body bytes per second (before decompression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<f64>,
    /// Seconds of query run time per second (1.0: one query running all the time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_seconds_per_second: Option<f64>,
    /// Live queries (websockets of `/live`) open at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_queries: Option<usize>,
}

impl TokenLimits {
    /// These limits, each unset one taken from `defaults`.
    pub fn or(&self, defaults: &TokenLimits) -> TokenLimits {
        TokenLimits {
            requests_per_second: self.requests_per_second.or(defaults.requests_per_second),
            bytes_per_second: self.bytes_per_second.or(defaults.bytes_per_second),
            query_seconds_per_second: self
                .query_seconds_per_second
                .or(defaults.query_seconds_per_second),
            live_queries: self.live_queries.or(defaults.live_queries),
        }
    }

    /// Problems of these limits, each prefixed with `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, rate) in [
            ("requests_per_second", self.requests_per_second),
            ("bytes_per_second", self.bytes_per_second),
            ("query_seconds_per_second", self.query_seconds_per_second),
        ] {
            if rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
                problems.push(format!("{at}.{key} must be a number above 0"));
            }
        }
        if self.live_queries == Some(0) {
            problems.push(format!("{at}.live_queries must be at least 1"));
        }
        problems
    }
}

/// Which limit refused a request (the `limit` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Requests per second.
    Requests,
    /// Body bytes per second.
    Bytes,
    /// Query run time per second.
    Query,
    /// Live queries at once.
    Live,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Requests => "requests",
            Limit::Bytes => "bytes",
            Limit::Query => "query",
            Limit::Live => "live",
        }
    }
}

/// A rate bucket holding at most one second of its rate; it may run into debt.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    fn refill(&self, state: &mut (f64, Instant)) {
        let now = Instant::now();
        let earned = now.duration_since(state.1).as_secs_f64() * self.rate;
        state.0 = (state.0 + earned).min(self.rate);
        state.1 = now;
    }

    /// Takes `units` if the bucket holds them; else how long until it does.
    fn take(&self, units: f64) -> Result<(), Duration> {
        let mut s = lock(&self.state);
        self.refill(&mut s);
        // A bucket smaller than one unit (a rate below 1/s) lends the rest.
        let needed = units.min(self.rate);
        if s.0 >= needed {
            s.0 -= units;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((needed - s.0) / self.rate))
        }
    }

    /// Admits while not in debt; else how long until the debt is paid.
    fn admit(&self) -> Result<(), Duration> {
        let mut s = lock(&self.state);
        self.refill(&mut s);
        if s.0 > 0.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((-s.0 + f64::EPSILON) / self.rate))
        }
    }

    fn charge(&self, units: f64) {
        let mut s = lock(&self.state);
        self.refill(&mut s);
        s.0 -= units;
    }
}

/// One token's limits and what it uses of them now.
#[derive(Debug)]
pub struct Limiter {
    requests: Option<Bucket>,
    bytes: Option<Bucket>,
    query: Option<Bucket>,
    live_max: Option<usize>,
    live: Arc<AtomicUsize>,
}

/// A limit reached: which, and when to retry.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    /// Which limit.
    pub limit: Limit,
    /// When a retry may pass.
    pub retry_after: Duration,
}

/// Holds one of a token's live queries; dropping it gives the place back.
#[derive(Debug)]
pub struct LiveSlot(Arc<AtomicUsize>);

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    /// The limiter of token `_id` with `limits`.
    pub fn new(_id: &str, limits: &TokenLimits) -> Limiter {
        Limiter {
            requests: limits.requests_per_second.map(Bucket::new),
            bytes: limits.bytes_per_second.map(Bucket::new),
            query: limits.query_seconds_per_second.map(Bucket::new),
            live_max: limits.live_queries,
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Admits a request: one request, and bytes and query time not in debt (`query`: it runs
    /// a historic query).
    pub fn admit(&self, query: bool) -> Result<(), Limited> {
        let limited = |limit| move |retry_after| Limited { limit, retry_after };
        if let Some(b) = &self.bytes {
            b.admit().map_err(limited(Limit::Bytes))?;
        }
        if query {
            if let Some(b) = &self.query {
                b.admit().map_err(limited(Limit::Query))?;
            }
        }
        if let Some(b) = &self.requests {
            b.take(1.0).map_err(limited(Limit::Requests))?;
        }
        Ok(())
    }

    /// Whether body bytes are limited (then the body is counted as it streams).
    pub fn limits_bytes(&self) -> bool {
        self.bytes.is_some()
    }

    /// Charges body bytes received.
    pub fn charge_bytes(&self, bytes: usize) {
        if let Some(b) = &self.bytes {
            b.charge(bytes as f64);
        }
    }

    /// Charges the run time of a query.
    pub fn charge_query(&self, ran: Duration) {
        if let Some(b) = &self.query {
            b.charge(ran.as_secs_f64());
        }
    }

    /// A place for one more live query, if the token has one left.
    pub fn live_slot(&self) -> Result<LiveSlot, Limited> {
        let now = self.live.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = LiveSlot(self.live.clone());
        match self.live_max {
            Some(max) if now > max => Err(Limited {
                limit: Limit::Live,
                retry_after: Duration::from_secs(1),
            }),
            _ => Ok(slot),
        }
    }
}

/// Labels of `eddy_limited_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LimitedLabels {
    /// The token's id.
    pub token: String,
    /// `requests`, `bytes`, `query` or `live`.
    pub limit: String,
}

/// The counter of requests refused by a limit.
#[derive(Debug, Default, Clone)]
pub struct LimitMetrics {
    limited: Family<LimitedLabels, Counter>,
}

impl LimitMetrics {
    /// Registers `eddy_limited_total`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> LimitMetrics {
        let m = LimitMetrics::default();
        registry.register(
            "eddy_limited",
            "Requests refused with 429 because their token passed one of its limits",
            m.limited.clone(),
        );
        m
    }

    /// Counts a refusal of token `token` by `limit`.
    pub fn limited(&self, token: &str, limit: Limit) {
        self.limited
            .get_or_create(&LimitedLabels {
                token: token.to_string(),
                limit: limit.name().to_string(),
            })
            .inc();
    }
}

/// The `429` of a limit reached, counted.
pub fn refusal(metrics: &LimitMetrics, token: &str, limited: Limited) -> crate::http::Reject {
    metrics.limited(token, limited.limit);
    let what = match limited.limit {
        Limit::Requests => "requests per second",
        Limit::Bytes => "bytes per second",
        Limit::Query => "query time per second",
        Limit::Live => "live queries at once",
    };
    let mut r = crate::http::error(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        format!("token {token} is past its limit of {what}; retry after the Retry-After delay"),
    );
    r.retry_after = Some(limited.retry_after.max(Duration::from_millis(1)));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_rate_admits_its_burst_then_says_when_to_retry() {
        let l = Limiter::new(
            "t",
            &TokenLimits {
                requests_per_second: Some(3.0),
                ..TokenLimits::default()
            },
        );
        let passed = (0..10).filter(|_| l.admit(false).is_ok()).count();
        // Three in the bucket; the time the loop takes may earn at most a few more.
        assert!((3..10).contains(&passed), "{passed}");
        let refused = l.admit(false).unwrap_err();
        assert_eq!(refused.limit, Limit::Requests);
        assert!(refused.retry_after <= Duration::from_secs(1));
    }

    #[test]
    fn bytes_and_query_time_run_into_debt_then_refuse() {
        let l = Limiter::new(
            "t",
            &TokenLimits {
                bytes_per_second: Some(1000.0),
                query_seconds_per_second: Some(0.5),
                ..TokenLimits::default()
            },
        );
        assert!(l.admit(true).is_ok());
        l.charge_bytes(1_000_000);
        let r = l.admit(false).unwrap_err();
        assert_eq!(r.limit, Limit::Bytes);
        assert!(
            r.retry_after > Duration::from_secs(900),
            "{:?}",
            r.retry_after
        );
        let q = Limiter::new(
            "t",
            &TokenLimits {
                query_seconds_per_second: Some(0.5),
                ..TokenLimits::default()
            },
        );
        q.charge_query(Duration::from_secs(100));
        assert!(q.admit(false).is_ok(), "not a query");
        assert_eq!(q.admit(true).unwrap_err().limit, Limit::Query);
    }

    #[test]
    fn live_slots_are_counted_and_given_back() {
        let l = Limiter::new(
            "t",
            &TokenLimits {
                live_queries: Some(1),
                ..TokenLimits::default()
            },
        );
        let first = l.live_slot().unwrap();
        assert_eq!(l.live_slot().unwrap_err().limit, Limit::Live);
        drop(first);
        assert!(l.live_slot().is_ok());
    }
}
