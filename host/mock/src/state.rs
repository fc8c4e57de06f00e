//! Shared state of the fake: everything it remembers sits behind one `std` mutex, reached only
//! through [`MockState::with`], whose closure cannot `.await` — so no lock is ever held across a
//! suspension point. Also the small helpers every provider uses: ids, clocks, simulated latency.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use crate::MockConfig;
use crate::adyen;
use crate::faults::{FaultSpec, Faults};
use crate::idempotency;
use crate::shippo;
use crate::stats::Stats;
use crate::stripe;
use crate::webhooks::{self, SentWebhook, WebhookConfig};

/// How many recorded requests are kept (oldest dropped first).
pub(crate) const MAX_RECORDED_REQUESTS: usize = 10_000;

/// One of the faked APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Stripe,
    Sendgrid,
    Shippo,
    Adyen,
}

impl Provider {
    /// Which provider a request path belongs to; `None` for `/_mock` and the label files.
    pub fn from_path(path: &str) -> Option<Provider> {
        if path.starts_with("/v1/") || path == "/v1" {
            Some(Provider::Stripe)
        } else if path.starts_with("/v3/") || path == "/v3" {
            Some(Provider::Sendgrid)
        } else if path == "/transactions"
            || path.starts_with("/transactions/")
            || path == "/refunds"
            || path.starts_with("/refunds/")
        {
            Some(Provider::Shippo)
        } else if path.starts_with("/v71/") || path == "/v71" {
            Some(Provider::Adyen)
        } else {
            None
        }
    }

    /// Parses `stripe`, `sendgrid`, `shippo` or `adyen`.
    pub fn parse(name: &str) -> Option<Provider> {
        match name {
            "stripe" => Some(Provider::Stripe),
            "sendgrid" => Some(Provider::Sendgrid),
            "shippo" => Some(Provider::Shippo),
            "adyen" => Some(Provider::Adyen),
            _ => None,
        }
    }
}

/// A provider request as the fake received it (`GET /_mock/requests`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub provider: Provider,
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Lower-case header names; repeated headers joined with `, `; the `authorization` value is
    /// replaced by `<redacted:SCHEME>` (e.g. `<redacted:Bearer>`), an `x-api-key` (Adyen) by
    /// `<redacted>`.
    pub headers: BTreeMap<String, String>,
    /// The body, as UTF-8 (lossy).
    pub body: String,
}

impl RecordedRequest {
    pub(crate) fn new(
        provider: Provider,
        method: &str,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Self {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in headers {
            let value = if name == axum::http::header::AUTHORIZATION {
                redact_authorization(value.to_str().unwrap_or(""))
            } else if name == "x-api-key" {
                "<redacted>".to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            map.entry(name.as_str().to_string())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        RecordedRequest {
            provider,
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers: map,
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }
}

/// `Bearer sk_test_…` → `<redacted:Bearer>`; a value without a scheme → `<redacted:none>`.
fn redact_authorization(value: &str) -> String {
    match value.trim().split_once(' ') {
        Some((scheme, _)) if !scheme.is_empty() => format!("<redacted:{scheme}>"),
        _ => "<redacted:none>".to_string(),
    }
}

/// Everything the fake remembers; reset as a whole by `POST /_mock/reset`.
#[derive(Default)]
pub(crate) struct World {
    pub(crate) stats: Stats,
    pub(crate) faults: Faults,
    pub(crate) requests: VecDeque<RecordedRequest>,
    pub(crate) stripe: stripe::Store,
    pub(crate) idempotency: idempotency::Store,
    pub(crate) shippo: shippo::Store,
    pub(crate) adyen: adyen::Store,
    pub(crate) webhooks: webhooks::Store,
}

impl World {
    pub(crate) fn record_request(&mut self, request: RecordedRequest) {
        self.stats.requests.bump(request.provider);
        if self.requests.len() >= MAX_RECORDED_REQUESTS {
            self.requests.pop_front();
        }
        self.requests.push_back(request);
    }
}

/// The fake's shared state: cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct MockState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Mutex<MockConfig>,
    webhooks: Mutex<WebhookConfig>,
    /// Sends the webhooks.
    client: reqwest::Client,
    world: Mutex<World>,
}

impl MockState {
    pub fn new(config: MockConfig) -> MockState {
        MockState {
            inner: Arc::new(Inner {
                config: Mutex::new(config),
                webhooks: Mutex::new(WebhookConfig::default()),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default(),
                world: Mutex::new(World::default()),
            }),
        }
    }

    /// Runs `f` with the world locked. The closure is synchronous, so the lock is never held
    /// across an `.await`.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let mut world = self
            .inner
            .world
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut world)
    }

    /// The current configuration.
    pub fn config(&self) -> MockConfig {
        self.inner
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the configuration (decline rate, latency) for later requests.
    pub fn set_config(&self, config: MockConfig) {
        *self
            .inner
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// Where and when webhooks go.
    pub fn webhooks(&self) -> WebhookConfig {
        self.inner
            .webhooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets where and when webhooks go (none go while the target is unset).
    pub fn set_webhooks(&self, config: WebhookConfig) {
        *self
            .inner
            .webhooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// The webhooks sent so far (at most the last 10,000), oldest first.
    pub fn sent_webhooks(&self) -> Vec<SentWebhook> {
        self.with(|w| w.webhooks.list())
    }

    pub(crate) fn client(&self) -> reqwest::Client {
        self.inner.client.clone()
    }

    /// A snapshot of the effect counters (`GET /_mock/stats`).
    pub fn stats(&self) -> Stats {
        self.with(|w| w.stats.clone())
    }

    /// Recorded requests, oldest first, optionally of one provider only.
    pub fn requests(&self, provider: Option<Provider>) -> Vec<RecordedRequest> {
        self.with(|w| {
            w.requests
                .iter()
                .filter(|r| provider.is_none_or(|p| r.provider == p))
                .cloned()
                .collect()
        })
    }

    /// Sets (or with `None` clears) the injected fault of one provider.
    pub fn set_fault(&self, provider: Provider, fault: Option<FaultSpec>) {
        self.with(|w| w.faults.set(provider, fault));
    }

    /// The injected faults still pending.
    pub fn faults(&self) -> Faults {
        self.with(|w| w.faults.clone())
    }

    /// Forgets all charges, refunds, labels, idempotency keys, stats, requests and faults.
    pub fn reset(&self) {
        self.with(|w| *w = World::default());
    }

    /// Sleeps a uniformly random time within the configured `delay_ms` range.
    pub(crate) async fn latency(&self) {
        let (lo, hi) = self.config().delay_ms;
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        if hi == 0 {
            return;
        }
        let ms = rand::rng().random_range(lo..=hi);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// True with probability `decline_rate`.
    pub(crate) fn random_decline(&self) -> bool {
        let rate = self.config().effective_decline_rate();
        rate > 0.0 && rand::rng().random_bool(rate)
    }
}

/// `prefix` followed by `len` random alphanumeric characters (`ch_3Mml…`).
pub(crate) fn random_id(prefix: &str, len: usize) -> String {
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    id.extend(
        rand::rng()
            .sample_iter(&Alphanumeric)
            .take(len)
            .map(char::from),
    );
    id
}

/// `len` random lower-case hex digits (Shippo object ids).
pub(crate) fn random_hex(len: usize) -> String {
    const HEX: &[u8] = b"0123456789abcdef";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(HEX[rng.random_range(0..HEX.len())]))
        .collect()
}

/// `len` random decimal digits (tracking numbers).
pub(crate) fn random_digits(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A plausible e-mail address: `local@domain.tld`, no spaces.
pub(crate) fn is_email(value: &str) -> bool {
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_providers() {
        assert_eq!(Provider::from_path("/v1/charges"), Some(Provider::Stripe));
        assert_eq!(
            Provider::from_path("/v3/mail/send"),
            Some(Provider::Sendgrid)
        );
        assert_eq!(Provider::from_path("/transactions"), Some(Provider::Shippo));
        assert_eq!(
            Provider::from_path("/transactions/"),
            Some(Provider::Shippo)
        );
        assert_eq!(Provider::from_path("/transactionsx"), None);
        assert_eq!(
            Provider::from_path("/v71/payments/X/refunds"),
            Some(Provider::Adyen)
        );
        assert_eq!(Provider::from_path("/_mock/stats"), None);
        assert_eq!(Provider::from_path("/labels/x.pdf"), None);
    }

    #[test]
    fn authorization_is_redacted_to_its_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer sk_test_123".parse().unwrap());
        headers.append("x-a", "1".parse().unwrap());
        headers.append("x-a", "2".parse().unwrap());
        let uri: axum::http::Uri = "/v1/charges?x=1".parse().unwrap();
        let r = RecordedRequest::new(Provider::Stripe, "POST", &uri, &headers, b"amount=1");
        assert_eq!(r.headers["authorization"], "<redacted:Bearer>");
        assert_eq!(r.headers["x-a"], "1, 2");
        assert_eq!(
            (r.path.as_str(), r.query.as_deref()),
            ("/v1/charges", Some("x=1"))
        );
        assert_eq!(
            redact_authorization("ShippoToken shippo_test_x"),
            "<redacted:ShippoToken>"
        );
        assert_eq!(redact_authorization("justakey"), "<redacted:none>");
    }

    #[test]
    fn request_log_is_capped() {
        let mut world = World::default();
        let uri: axum::http::Uri = "/v3/mail/send".parse().unwrap();
        let r = RecordedRequest::new(Provider::Sendgrid, "POST", &uri, &HeaderMap::new(), b"");
        for _ in 0..MAX_RECORDED_REQUESTS + 5 {
            world.record_request(r.clone());
        }
        assert_eq!(world.requests.len(), MAX_RECORDED_REQUESTS);
        assert_eq!(
            world.stats.requests.sendgrid,
            (MAX_RECORDED_REQUESTS + 5) as u64
        );
    }

    #[test]
    fn ids_have_the_right_shape() {
        let id = random_id("ch_", 24);
        assert!(id.starts_with("ch_") && id.len() == 27);
        assert!(random_hex(32).chars().all(|c| c.is_ascii_hexdigit()));
        assert!(random_digits(22).chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn emails_need_a_domain_with_a_dot() {
        assert!(is_email("alice@example.com"));
        assert!(is_email("bob+decline@example.com"));
        for bad in [
            "alice",
            "alice@",
            "@example.com",
            "a@b",
            "a b@example.com",
            "a@@b.com",
            "a@.com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}
