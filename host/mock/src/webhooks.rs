//! Webhooks the fake sends for the effects it makes, signed as each provider signs them
//! (providers.md §1.9, §2.7, §3.7): Stripe `charge.succeeded` / `charge.failed` /
//! `charge.refunded` (`Stripe-Signature`, HMAC-SHA256 with [`STRIPE_WEBHOOK_SECRET`]), SendGrid
//! `delivered` (a batch signed with ECDSA P-256, the key whose public half is
//! [`SENDGRID_WEBHOOK_PUBLIC_KEY`]), Shippo `track_updated` TRANSIT then DELIVERED (the URL
//! token [`SHIPPO_WEBHOOK_TOKEN`]). They go to `{target}/webhooks/{stripe|sendgrid|shippo}`
//! once a target is set ([`MockState::set_webhooks`], `POST /_mock/webhooks/config`), after the
//! configured delay, each in its own task; every one sent is kept (bounded) so a test can have
//! it redelivered (new timestamp and signature, the same event) or send a forged copy.
//!
//! A webhook carries the W3C `traceparent` of the API request that caused it (read by
//! [`traced`]), so a host that exports traces shows the webhook and what it starts in the trace
//! of the order that made the charge. Real providers send none; the fake does it so the host's
//! trace continuation can be tested end to end.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::state::{MockState, unix_now};

/// The fake's Stripe endpoint secret.
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_cairn_mock_2f7d1c";
/// The token in the fake's Shippo webhook URL.
pub const SHIPPO_WEBHOOK_TOKEN: &str = "shippo_hook_cairn_mock_8a41";
/// The public key of the fake's SendGrid signing key (base64 DER, as SendGrid shows it). The
/// pair was made with `openssl ecparam -name prime256v1 -genkey` and is a test key only.
pub const SENDGRID_WEBHOOK_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2Fs/qbkVU4PcbcgIya9qkLrnt17VUTKUVQO4K37SkXYHAy4ap/5/Pu7Uny7G+Hc5oqIDvAfcYtZ1mt5O54iqYw==";
const SENDGRID_SIGNING_KEY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgi4K2zacuyt5Mg20m4KDPSz6z37yJN0H1eaweePzFodmhRANCAATYWz+puRVTg9xtyAjJr2qQuue3XtVRMpRVA7grftKRdgcDLhqn/n8+7tSfLsb4dzmiogO8B9xi1nWa3k7niKpj";

/// The fake's webhook secrets by the host's variable names, for a host in mock mode.
pub fn webhook_secret(var: &str) -> Option<String> {
    match var {
        "STRIPE_WEBHOOK_SECRET" => Some(STRIPE_WEBHOOK_SECRET.into()),
        "SHIPPO_WEBHOOK_TOKEN" => Some(SHIPPO_WEBHOOK_TOKEN.into()),
        "SENDGRID_WEBHOOK_PUBLIC_KEY" => Some(SENDGRID_WEBHOOK_PUBLIC_KEY.into()),
        _ => None,
    }
}

tokio::task_local! {
    /// The `traceparent` of the API request being served, for the webhooks it causes.
    static TRACEPARENT: Option<String>;
}

/// Serves an API request with its `traceparent` at hand for [`emit`].
pub(crate) async fn traced(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    TRACEPARENT.scope(traceparent, next.run(request)).await
}

/// The `traceparent` of the request being served, to carry into a task that emits later.
pub(crate) fn current_trace() -> Option<String> {
    TRACEPARENT.try_with(Clone::clone).ok().flatten()
}

/// Runs `task` with `trace` as the request's `traceparent` (a later webhook of that request).
pub(crate) async fn in_trace<F: Future>(trace: Option<String>, task: F) -> F::Output {
    TRACEPARENT.scope(trace, task).await
}

/// How many sent webhooks are kept for redelivery.
const KEPT: usize = 10_000;

/// Where and when webhooks go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The host's ingress, e.g. `http://127.0.0.1:8080`; none sent while unset.
    pub target: Option<String>,
    /// Delay before an event is sent (a tracking update: TRANSIT after it, DELIVERED after
    /// twice it).
    pub delay_ms: u64,
    /// How long a pending charge (`pm_card_pending`) stays pending before it succeeds.
    pub pending_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            target: None,
            delay_ms: 200,
            pending_ms: 2000,
        }
    }
}

impl WebhookConfig {
    /// Reads `MOCK_WEBHOOK_TARGET`, `MOCK_WEBHOOK_DELAY_MS`, `MOCK_PENDING_MS`.
    pub fn from_env() -> Result<Self, String> {
        let mut config = WebhookConfig {
            target: std::env::var("MOCK_WEBHOOK_TARGET")
                .ok()
                .filter(|t| !t.is_empty()),
            ..WebhookConfig::default()
        };
        for (var, field) in [
            ("MOCK_WEBHOOK_DELAY_MS", &mut config.delay_ms),
            ("MOCK_PENDING_MS", &mut config.pending_ms),
        ] {
            if let Ok(raw) = std::env::var(var) {
                *field = raw
                    .trim()
                    .parse()
                    .map_err(|_| format!("{var}={raw:?}: expected milliseconds"))?;
            }
        }
        Ok(config)
    }
}

/// The provider endpoint a webhook goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Stripe,
    Sendgrid,
    Shippo,
}

/// A webhook the fake sent (`GET /_mock/webhooks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentWebhook {
    pub endpoint: Endpoint,
    pub event_id: String,
    /// The exact body sent.
    pub body: String,
    /// The host's answer to each delivery, in order (`0`: no answer).
    pub answers: Vec<u16>,
    /// The `traceparent` of the API request that caused it, sent with every delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Sent webhooks, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Store {
    sent: VecDeque<SentWebhook>,
}

impl Store {
    fn keep(&mut self, hook: SentWebhook) {
        if self.sent.len() >= KEPT {
            self.sent.pop_front();
        }
        self.sent.push_back(hook);
    }

    fn answer(&mut self, event_id: &str, status: u16) {
        if let Some(hook) = self.sent.iter_mut().rev().find(|h| h.event_id == event_id) {
            hook.answers.push(status);
        }
    }

    pub(crate) fn list(&self) -> Vec<SentWebhook> {
        self.sent.iter().cloned().collect()
    }

    fn find(&self, event_id: &str) -> Option<SentWebhook> {
        self.sent.iter().find(|h| h.event_id == event_id).cloned()
    }
}

/// Sends the event `make` builds (its id and body) to the host `delays` times the configured
/// delay after now, in its own task. While no target is set nothing is built or sent.
pub(crate) fn emit(
    state: &MockState,
    endpoint: Endpoint,
    delays: u32,
    make: impl FnOnce() -> (String, Value),
) {
    let config = state.webhooks();
    if config.target.is_none() {
        return;
    }
    let delay = Duration::from_millis(config.delay_ms) * delays;
    let (event_id, body) = make();
    let body = body.to_string();
    let hook = SentWebhook {
        endpoint,
        event_id,
        body,
        answers: Vec::new(),
        traceparent: current_trace(),
    };
    state.with(|w| w.webhooks.keep(hook.clone()));
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        deliver(&state, &hook, false).await;
    });
}

/// Sends a kept event again, signed afresh (a provider's redelivery); `None` if unknown.
pub async fn redeliver(state: &MockState, event_id: &str) -> Option<u16> {
    let hook = state.with(|w| w.webhooks.find(event_id))?;
    Some(deliver(state, &hook, false).await)
}

/// Sends `body` to `endpoint` with a wrong signature (or token); the host's answer.
pub async fn forge(state: &MockState, endpoint: Endpoint, body: &str) -> u16 {
    let hook = SentWebhook {
        endpoint,
        event_id: "forged".into(),
        body: body.into(),
        answers: Vec::new(),
        traceparent: None,
    };
    deliver(state, &hook, true).await
}

/// One signed POST; the status the host answered (0 when it did not).
async fn deliver(state: &MockState, hook: &SentWebhook, forged: bool) -> u16 {
    let (endpoint, body) = (hook.endpoint, hook.body.as_str());
    let Some(target) = state.webhooks().target else {
        return 0;
    };
    let base = target.trim_end_matches('/');
    let now = unix_now().to_string();
    let client = state.client();
    let request = match endpoint {
        Endpoint::Stripe => {
            let secret = if forged {
                "whsec_forged"
            } else {
                STRIPE_WEBHOOK_SECRET
            };
            client
                .post(format!("{base}/webhooks/stripe"))
                .header("Stripe-Signature", stripe_signature(secret, &now, body))
        }
        Endpoint::Shippo => {
            let token = if forged {
                "forged"
            } else {
                SHIPPO_WEBHOOK_TOKEN
            };
            client.post(format!("{base}/webhooks/shippo?token={token}"))
        }
        Endpoint::Sendgrid => {
            let signature = sendgrid_signature(&now, body, forged);
            client
                .post(format!("{base}/webhooks/sendgrid"))
                .header("X-Twilio-Email-Event-Webhook-Signature", signature)
                .header("X-Twilio-Email-Event-Webhook-Timestamp", now)
        }
    };
    let request = match &hook.traceparent {
        Some(traceparent) => request.header("traceparent", traceparent),
        None => request,
    };
    let status = match request
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        Err(err) => {
            tracing::warn!(%err, ?endpoint, "webhook delivery failed");
            0
        }
    };
    if !forged {
        state.with(|w| {
            w.webhooks.answer(&hook.event_id, status);
            w.stats.webhooks_sent += 1;
        });
    }
    status
}

/// The `Stripe-Signature` value for `body` signed at `t` (Unix seconds) with `secret`.
pub fn stripe_signature(secret: &str, t: &str, body: &str) -> String {
    format!("t={t},v1={}", hex_hmac(secret, &format!("{t}.{body}")))
}

fn hex_hmac(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message.as_bytes());
    hex_encode(&mac.finalize().into_bytes())
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// base64 DER ECDSA P-256 / SHA-256 of `timestamp ‖ body`; with `forged`, of another body.
fn sendgrid_signature(timestamp: &str, body: &str, forged: bool) -> String {
    let der = base64::engine::general_purpose::STANDARD
        .decode(SENDGRID_SIGNING_KEY)
        .expect("the pinned key is base64");
    let key = SigningKey::from_pkcs8_der(&der).expect("the pinned key is a P-256 PKCS#8 key");
    let message = if forged {
        format!("{timestamp}{body} ")
    } else {
        format!("{timestamp}{body}")
    };
    let signature: Signature = key.sign(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

/// A Stripe event object wrapping `object`.
pub(crate) fn stripe_event(kind: &str, object: Value) -> (String, Value) {
    let id = crate::state::random_id("evt_", 24);
    let event = serde_json::json!({
        "id": id,
        "object": "event",
        "api_version": "2025-02-24.acacia",
        "created": unix_now(),
        "data": {"object": object},
        "livemode": false,
        "pending_webhooks": 1,
        "type": kind,
    });
    (id, event)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature checks with the public key through OpenSSL, not through this code:
    /// `openssl dgst -sha256 -verify pub.pem -signature sig.der msg`.
    #[test]
    fn the_sendgrid_signature_verifies_with_openssl() {
        let Ok(openssl) = std::process::Command::new("openssl")
            .arg("version")
            .output()
        else {
            eprintln!("openssl is not installed; skipped");
            return;
        };
        assert!(openssl.status.success());
        let dir = std::env::temp_dir().join(format!("cairn-mock-sig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        std::fs::write(
            dir.join("pub.der"),
            b64.decode(SENDGRID_WEBHOOK_PUBLIC_KEY).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("msg"), b"1796160000[{\"event\":\"delivered\"}]").unwrap();
        for (forged, ok) in [(false, true), (true, false)] {
            let sig = sendgrid_signature("1796160000", "[{\"event\":\"delivered\"}]", forged);
            std::fs::write(dir.join("sig.der"), b64.decode(sig).unwrap()).unwrap();
            let out = std::process::Command::new("openssl")
                .args(["dgst", "-sha256", "-keyform", "DER", "-verify"])
                .arg(dir.join("pub.der"))
                .arg("-signature")
                .arg(dir.join("sig.der"))
                .arg(dir.join("msg"))
                .output()
                .unwrap();
            assert_eq!(
                out.status.success(),
                ok,
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `printf '%s' '1796160000.{}' | openssl dgst -sha256 -hmac whsec_cairn_mock_2f7d1c`
    #[test]
    fn the_stripe_signature_is_openssl_s_hmac() {
        assert_eq!(
            hex_hmac(STRIPE_WEBHOOK_SECRET, "1796160000.{}"),
            "cbebf9cd9cc5eb7eaeb7d1328685b54779e0111b7dd67c1eb4d4f3fad32eed7d"
        );
    }
}
