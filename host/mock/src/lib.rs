//! `cairn-mock`: fake Stripe, SendGrid, Shippo and Adyen APIs on one loopback HTTP server.
//!
//! Cairn's mock mode (`MOCK_MODE=true cairn serve`, `cairn mock-providers`) and the end-to-end tests
//! point all three providers at one [`MockServer`]; the real provider components then run their real
//! code path (component → host HTTP → wire format) against it. The fake speaks the wire formats of
//! the provider reference `providers.md` (Stripe form bodies and idempotency, SendGrid v3 Mail Send,
//! Shippo transactions), counts every effect it performs ([`Stats`], `GET /_mock/stats`) and can be
//! told to fail (`POST /_mock/faults`), so tests count effects at the provider instead of trusting
//! return values.
//!
//! Layout: this file holds the configuration, the server and the router; `state` the shared
//! state; `faults` the gate every provider request passes (recording, injected faults); `control`
//! the `/_mock` endpoints; `stats` the effect counters; one module per provider (`stripe`,
//! `sendgrid`, `shippo`, and `adyen`, the Checkout API of a second payments provider);
//! `idempotency` the key store of Stripe and Adyen; `webhooks` the signed events it sends to
//! the host.

mod adyen;
mod control;
mod faults;
mod idempotency;
mod sendgrid;
mod shippo;
mod state;
mod stats;
mod stripe;
pub mod webhooks;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::task::JoinHandle;

pub use faults::{FaultSpec, Faults};
pub use state::{MockState, Provider, RecordedRequest};
pub use stats::{ChargeStats, EffectStats, RefundStats, RequestStats, Stats};
pub use webhooks::{SentWebhook, WebhookConfig, webhook_secret};

/// Largest request body the fake reads (SendGrid allows messages up to 30 MB).
pub(crate) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How the fake behaves: how often it declines charges and how slow it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    /// Probability (0.0..=1.0) that a charge not otherwise declined is declined at random.
    pub decline_rate: f64,
    /// Inclusive range, in milliseconds, of the simulated latency of every provider request.
    pub delay_ms: (u64, u64),
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            decline_rate: 0.05,
            delay_ms: (0, 0),
        }
    }
}

impl MockConfig {
    /// Reads `MOCK_DECLINE_RATE` (e.g. `0.05`) and `MOCK_DELAY_MS` (`20-80` or `30`); an unset or
    /// empty variable keeps the default. The error names the variable and the value it got.
    pub fn from_env() -> Result<MockConfig, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<MockConfig, String> {
        let mut config = MockConfig::default();
        if let Some(raw) = lookup("MOCK_DECLINE_RATE").filter(|v| !v.trim().is_empty()) {
            config.decline_rate = parse_decline_rate(&raw)
                .map_err(|why| format!("MOCK_DECLINE_RATE={raw:?} is invalid: {why}"))?;
        }
        if let Some(raw) = lookup("MOCK_DELAY_MS").filter(|v| !v.trim().is_empty()) {
            config.delay_ms = parse_delay(&raw)
                .map_err(|why| format!("MOCK_DELAY_MS={raw:?} is invalid: {why}"))?;
        }
        Ok(config)
    }

    /// The decline rate clamped into 0.0..=1.0 (the fields are public, so anything may be there).
    pub(crate) fn effective_decline_rate(&self) -> f64 {
        if self.decline_rate.is_nan() {
            0.0
        } else {
            self.decline_rate.clamp(0.0, 1.0)
        }
    }
}

fn parse_decline_rate(raw: &str) -> Result<f64, String> {
    let rate: f64 = raw
        .trim()
        .parse()
        .map_err(|_| "expected a number between 0.0 and 1.0, e.g. 0.05".to_string())?;
    if !(0.0..=1.0).contains(&rate) {
        return Err("expected a number between 0.0 and 1.0, e.g. 0.05".to_string());
    }
    Ok(rate)
}

fn parse_delay(raw: &str) -> Result<(u64, u64), String> {
    const HINT: &str = "expected milliseconds as `MIN-MAX` (e.g. 20-80) or `N` (e.g. 30)";
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| HINT.to_string());
    match raw.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (number(lo)?, number(hi)?);
            if lo > hi {
                return Err(format!("the minimum {lo} is above the maximum {hi}"));
            }
            Ok((lo, hi))
        }
        None => {
            let n = number(raw)?;
            Ok((n, n))
        }
    }
}

/// The router of the fake's provider APIs. The `/_mock` control endpoints are on a listener of
/// their own ([`control_router`]): a component allowed to reach the APIs (mock mode allows their
/// origin) cannot read or reset the fake's counters, its faults or its webhooks.
pub fn router(state: MockState) -> Router {
    Router::new()
        .merge(stripe::routes())
        .merge(sendgrid::routes())
        .merge(shippo::routes())
        .merge(adyen::routes())
        .fallback(faults::not_found)
        // Inside the gate, which runs the handler in a task of its own (the task-local goes
        // with it).
        .layer(axum::middleware::from_fn(webhooks::traced))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            faults::gate,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The router of the fake's `/_mock` control endpoints (stats, faults, recorded requests,
/// configuration, webhooks).
pub fn control_router(state: MockState) -> Router {
    Router::new()
        .merge(control::routes())
        .fallback(faults::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A running fake provider server, serving from spawned tokio tasks until shut down or dropped:
/// the APIs on one address, the control endpoints on another.
pub struct MockServer {
    addr: SocketAddr,
    control_addr: SocketAddr,
    state: MockState,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

impl MockServer {
    /// Binds `addr` (use `127.0.0.1:0` for an ephemeral port) for the APIs and an ephemeral
    /// port of the same IP for the control endpoints.
    pub async fn start(addr: SocketAddr, config: MockConfig) -> std::io::Result<MockServer> {
        Self::start_with_control(addr, SocketAddr::new(addr.ip(), 0), config).await
    }

    /// [`MockServer::start`] with the control endpoints on `control_addr`.
    pub async fn start_with_control(
        addr: SocketAddr,
        control_addr: SocketAddr,
        config: MockConfig,
    ) -> std::io::Result<MockServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let control = tokio::net::TcpListener::bind(control_addr).await?;
        let (addr, control_addr) = (listener.local_addr()?, control.local_addr()?);
        let state = MockState::new(config);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let serve = |listener: tokio::net::TcpListener, app: Router| {
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(err) = served {
                    tracing::error!(%err, "mock provider server stopped with an error");
                }
            })
        };
        let tasks = vec![
            serve(listener, router(state.clone())),
            serve(control, control_router(state.clone())),
        ];
        tracing::info!(%addr, %control_addr, "mock provider APIs (Stripe, SendGrid, Shippo, Adyen) listening");
        Ok(MockServer {
            addr,
            control_addr,
            state,
            stop: Some(stop),
            tasks,
        })
    }

    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, usable as `STRIPE_API_BASE`, `SENDGRID_API_BASE` and `SHIPPO_API_BASE`.
    /// An unspecified bind address (`0.0.0.0`, `::`) is reported as loopback.
    pub fn base_url(&self) -> String {
        url_of(self.addr)
    }

    /// `http://IP:PORT` of the `/_mock` control endpoints.
    pub fn control_url(&self) -> String {
        url_of(self.control_addr)
    }

    /// The same data as `GET /_mock/stats`.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// The shared state, for in-process tests (faults, reset, recorded requests).
    pub fn state(&self) -> &MockState {
        &self.state
    }

    /// Stops accepting connections, lets open requests finish (at most 5 s), then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        for mut task in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// `http://IP:PORT` of a bound address, loopback for an unspecified one.
fn url_of(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_when_unset_or_empty() {
        assert_eq!(
            MockConfig::from_lookup(lookup(&[])).unwrap(),
            MockConfig::default()
        );
        let empty = [("MOCK_DECLINE_RATE", ""), ("MOCK_DELAY_MS", " ")];
        assert_eq!(
            MockConfig::from_lookup(lookup(&empty)).unwrap(),
            MockConfig::default()
        );
        assert_eq!(MockConfig::default().decline_rate, 0.05);
        assert_eq!(MockConfig::default().delay_ms, (0, 0));
    }

    #[test]
    fn parses_rate_and_delay_forms() {
        let vars = [("MOCK_DECLINE_RATE", "0.25"), ("MOCK_DELAY_MS", "20-80")];
        let config = MockConfig::from_lookup(lookup(&vars)).unwrap();
        assert_eq!(config.decline_rate, 0.25);
        assert_eq!(config.delay_ms, (20, 80));
        let vars = [("MOCK_DECLINE_RATE", "1"), ("MOCK_DELAY_MS", "30")];
        let config = MockConfig::from_lookup(lookup(&vars)).unwrap();
        assert_eq!((config.decline_rate, config.delay_ms), (1.0, (30, 30)));
    }

    #[test]
    fn errors_name_the_variable() {
        for (vars, name) in [
            ([("MOCK_DECLINE_RATE", "lots")], "MOCK_DECLINE_RATE"),
            ([("MOCK_DECLINE_RATE", "1.5")], "MOCK_DECLINE_RATE"),
            ([("MOCK_DELAY_MS", "fast")], "MOCK_DELAY_MS"),
            ([("MOCK_DELAY_MS", "80-20")], "MOCK_DELAY_MS"),
            ([("MOCK_DELAY_MS", "-5")], "MOCK_DELAY_MS"),
        ] {
            let err = MockConfig::from_lookup(lookup(&vars)).unwrap_err();
            assert!(err.starts_with(name), "{err}");
        }
    }

    #[test]
    fn clamps_out_of_range_rates() {
        let config = MockConfig {
            decline_rate: 3.0,
            delay_ms: (0, 0),
        };
        assert_eq!(config.effective_decline_rate(), 1.0);
        let config = MockConfig {
            decline_rate: f64::NAN,
            ..MockConfig::default()
        };
        assert_eq!(config.effective_decline_rate(), 0.0);
    }
}
