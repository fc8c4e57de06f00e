//! Webhook endpoints: `POST /webhooks/{name}` on the ingress, each with a verifier, the
//! environment variable its secret (or key, or token) comes from, the service handler its events
//! go to, and where an event's id is. The bundled three (`stripe`, `shippo`, `sendgrid`) are
//! specs like any other ([`crate::bundled::webhook_specs`]); an operator adds more in a JSON
//! file (`--webhooks-file`), so a third party's provider needs no host change.
//!
//! ```json
//! [{"name": "github", "verifier": {"kind": "hmac-sha256", "header": "X-Hub-Signature-256",
//!   "prefix": "sha256=", "encoding": "hex"}, "secretEnv": "GITHUB_WEBHOOK_SECRET",
//!   "target": "RepoEvents/Handle", "eventId": ["/delivery"]}]
//! ```

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::hmac_header::{Encoding, HmacHeaderVerifier};
use super::sendgrid::{self, SendgridVerifier};
use super::shippo::TokenVerifier;
use super::stripe::{self, StripeVerifier};
use super::{DEFAULT_TOLERANCE, Refusal};

/// The most events one request may carry (a SendGrid batch holds up to about a thousand).
pub const MAX_EVENTS: usize = 1000;
/// The longest event id kept as a dedup key.
pub const MAX_EVENT_ID: usize = 200;

/// How one endpoint is configured (the bundled ones and the operator's file alike).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSpec {
    /// The path segment: `/webhooks/{name}`.
    pub name: String,
    pub verifier: VerifierSpec,
    /// The environment variable holding the secret (a list for rotation), token or public key.
    pub secret_env: String,
    /// `Service/Handler` that each event is sent to (its input: the event's JSON).
    pub target: String,
    /// The body is a JSON array of events (SendGrid); else it is one event.
    #[serde(default)]
    pub batch: bool,
    /// Where the event id is: JSON pointers tried in order, the first present one wins; a
    /// pointer may be several joined by `+` (`/data/object_id+/data/status`), whose values are
    /// joined by `:`.
    pub event_id: Vec<String>,
    /// Accepted clock difference of signed timestamps, in seconds (default 300).
    #[serde(default)]
    pub tolerance_secs: Option<u64>,
    /// The variable holding the addresses requests may come from (comma-separated IPs, e.g.
    /// Shippo's published ones); unset or empty: any address.
    #[serde(default)]
    pub allow_from_env: Option<String>,
}

/// The verifier kinds.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VerifierSpec {
    /// Stripe's `Stripe-Signature` scheme.
    StripeSignature,
    /// A secret token in the URL query (`?token=`), as Shippo's webhooks carry.
    UrlToken,
    /// SendGrid's signed Event Webhook (ECDSA P-256, a base64 DER public key).
    SendgridEcdsa,
    /// HMAC-SHA256 of the body in one header.
    HmacSha256 {
        header: String,
        #[serde(default)]
        prefix: String,
        encoding: Encoding,
    },
}

#[derive(Clone)]
enum Verifier {
    Stripe(StripeVerifier),
    Token(TokenVerifier),
    Sendgrid(SendgridVerifier),
    Hmac(HmacHeaderVerifier),
}

/// A configured endpoint, its secret loaded.
#[derive(Clone)]
pub struct Endpoint {
    pub name: String,
    pub service: String,
    pub handler: String,
    verifier: Verifier,
    batch: bool,
    event_id: Vec<Vec<String>>,
    /// Empty: any source address.
    allow_from: Vec<IpAddr>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("target", &format_args!("{}/{}", self.service, self.handler))
            .finish_non_exhaustive()
    }
}

/// The events of one verified request: each one's id and exact JSON bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub body: Vec<u8>,
}

/// Why a verified body holds no usable events (a 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct BadEvents(pub String);

impl EndpointSpec {
    /// The endpoint, with its secret read through `env`; `Ok(None)` when the variable is unset
    /// or empty (the endpoint is off), an error naming the variable when its value is unusable.
    pub fn load(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Endpoint>, String> {
        let fail = |why: String| format!("webhook endpoint {:?}: {why}", self.name);
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(fail("the name must be letters, digits, - or _".into()));
        }
        let (service, handler) = self
            .target
            .split_once('/')
            .filter(|(s, h)| !s.is_empty() && !h.is_empty() && !h.contains('/'))
            .ok_or_else(|| {
                fail(format!(
                    "target {:?}: expected Service/Handler",
                    self.target
                ))
            })?;
        if self.event_id.is_empty() || self.event_id.iter().any(|p| !p.starts_with('/')) {
            return Err(fail("eventId: JSON pointers starting with /".into()));
        }
        let Some(secret) = env(&self.secret_env).filter(|s| !s.trim().is_empty()) else {
            return Ok(None);
        };
        let tolerance = self
            .tolerance_secs
            .map_or(DEFAULT_TOLERANCE, Duration::from_secs);
        let empty = || fail(format!("{} holds no secret", self.secret_env));
        let verifier = match &self.verifier {
            VerifierSpec::StripeSignature => {
                Verifier::Stripe(StripeVerifier::from_list(&secret, tolerance).ok_or_else(empty)?)
            }
            VerifierSpec::UrlToken => {
                Verifier::Token(TokenVerifier::new(&secret).ok_or_else(empty)?)
            }
            VerifierSpec::SendgridEcdsa => Verifier::Sendgrid(
                SendgridVerifier::from_base64_der(&secret, tolerance)
                    .map_err(|e| fail(format!("{}: {e}", self.secret_env)))?,
            ),
            VerifierSpec::HmacSha256 {
                header,
                prefix,
                encoding,
            } => Verifier::Hmac(
                HmacHeaderVerifier::new(header, prefix, *encoding, &secret).ok_or_else(empty)?,
            ),
        };
        let mut allow_from = Vec::new();
        if let Some(var) = &self.allow_from_env {
            for item in env(var).unwrap_or_default().split(',').map(str::trim) {
                if !item.is_empty() {
                    allow_from.push(
                        item.parse::<IpAddr>()
                            .map_err(|_| fail(format!("{var}: {item:?} is not an IP address")))?,
                    );
                }
            }
        }
        Ok(Some(Endpoint {
            allow_from,
            name: self.name.clone(),
            service: service.to_string(),
            handler: handler.to_string(),
            verifier,
            batch: self.batch,
            event_id: self
                .event_id
                .iter()
                .map(|p| p.split('+').map(str::to_string).collect())
                .collect(),
        }))
    }
}

impl Endpoint {
    /// Checks the request's source address (when the endpoint has an allow-list), then its
    /// signature (or token) on the raw `body` at `now` (Unix seconds).
    pub fn verify(
        &self,
        source: Option<IpAddr>,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), Refusal> {
        if !self.allow_from.is_empty()
            && !source.is_some_and(|ip| self.allow_from.contains(&ip.to_canonical()))
        {
            return Err(Refusal::Source);
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match &self.verifier {
            Verifier::Stripe(v) => v.verify(header(stripe::HEADER), body, now),
            Verifier::Token(v) => v.verify(query),
            Verifier::Sendgrid(v) => v.verify(
                header(sendgrid::SIGNATURE_HEADER),
                header(sendgrid::TIMESTAMP_HEADER),
                body,
                now,
            ),
            Verifier::Hmac(v) => v.verify(header(v.header()), body),
        }
    }

    /// The events of a verified body, each with its id, in order.
    pub fn events(&self, body: &[u8]) -> Result<Vec<Event>, BadEvents> {
        let bad = |why: String| BadEvents(why);
        let raw: Vec<&RawValue> = if self.batch {
            let list: Vec<&RawValue> = serde_json::from_slice(body)
                .map_err(|e| bad(format!("expected a JSON array of events: {e}")))?;
            if list.is_empty() {
                return Err(bad("the array holds no event".into()));
            }
            list
        } else {
            vec![
                serde_json::from_slice(body)
                    .map_err(|e| bad(format!("expected a JSON event: {e}")))?,
            ]
        };
        if raw.len() > MAX_EVENTS {
            return Err(bad(format!("more than {MAX_EVENTS} events in one request")));
        }
        raw.into_iter()
            .enumerate()
            .map(|(i, event)| {
                let value: serde_json::Value = serde_json::from_str(event.get())
                    .map_err(|e| bad(format!("event {i}: {e}")))?;
                let id = self.event_id(&value).ok_or_else(|| {
                    bad(format!(
                        "event {i}: no event id at {}",
                        self.describe_pointers()
                    ))
                })?;
                if id.len() > MAX_EVENT_ID {
                    return Err(bad(format!(
                        "event {i}: the event id is longer than {MAX_EVENT_ID} bytes"
                    )));
                }
                let body = if self.batch {
                    event.get().as_bytes().to_vec()
                } else {
                    body.to_vec()
                };
                Ok(Event { id, body })
            })
            .collect()
    }

    fn event_id(&self, event: &serde_json::Value) -> Option<String> {
        self.event_id.iter().find_map(|parts| {
            let values: Option<Vec<String>> = parts
                .iter()
                .map(|pointer| match event.pointer(pointer)? {
                    serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            values.map(|v| v.join(":"))
        })
    }

    fn describe_pointers(&self) -> String {
        self.event_id
            .iter()
            .map(|parts| parts.join("+"))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// Loads every spec (names must differ) with secrets from `env`; one whose secret is unset is
/// left out, and logged so.
pub fn load_all(
    specs: &[EndpointSpec],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Endpoint>, String> {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if specs[..i].iter().any(|other| other.name == spec.name) {
            return Err(format!("two webhook endpoints are named {:?}", spec.name));
        }
        match spec.load(env)? {
            Some(endpoint) => endpoints.push(endpoint),
            None => tracing::info!(
                endpoint = %spec.name,
                variable = %spec.secret_env,
                "webhook endpoint off: its secret is not set"
            ),
        }
    }
    Ok(endpoints)
}

/// Reads the operator's endpoint file (a JSON array of [`EndpointSpec`]).
pub fn read_specs(text: &str) -> Result<Vec<EndpointSpec>, String> {
    serde_json::from_str(text).map_err(|e| format!("the webhooks file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> EndpointSpec {
        serde_json::from_value(json).unwrap()
    }

    fn token_endpoint(batch: bool, event_id: &[&str]) -> Endpoint {
        spec(serde_json::json!({
            "name": "shippo", "verifier": {"kind": "url-token"}, "secretEnv": "TOKEN",
            "target": "WebhookProcessor/Shippo", "batch": batch, "eventId": event_id,
        }))
        .load(&|_| Some("tok".into()))
        .unwrap()
        .unwrap()
    }

    #[test]
    fn an_unset_secret_turns_the_endpoint_off_and_bad_specs_are_named() {
        let s = spec(serde_json::json!({
            "name": "stripe", "verifier": {"kind": "stripe-signature"},
            "secretEnv": "STRIPE_WEBHOOK_SECRET", "target": "WebhookProcessor/Stripe",
            "eventId": ["/id"],
        }));
        assert!(s.load(&|_| None).unwrap().is_none());
        assert!(s.load(&|_| Some(" ".into())).unwrap().is_none());
        let endpoint = s.load(&|_| Some("whsec_1".into())).unwrap().unwrap();
        assert_eq!(
            (endpoint.service.as_str(), endpoint.handler.as_str()),
            ("WebhookProcessor", "Stripe")
        );
        assert!(!format!("{endpoint:?}").contains("whsec"));

        let mut bad = s.clone();
        bad.target = "NoHandler".into();
        assert!(
            bad.load(&|_| Some("x".into()))
                .unwrap_err()
                .contains("Service/Handler")
        );
        let mut bad = s.clone();
        bad.name = "a/b".into();
        assert!(bad.load(&|_| Some("x".into())).is_err());
        let mut bad = s;
        bad.verifier = VerifierSpec::SendgridEcdsa;
        assert!(
            bad.load(&|_| Some("bm90IGEga2V5".into()))
                .unwrap_err()
                .contains("STRIPE_WEBHOOK_SECRET")
        );
        assert!(read_specs(r#"[{"name": "x", "unknown": 1}]"#).is_err());
    }

    #[test]
    fn an_allow_list_refuses_other_sources() {
        let s = spec(serde_json::json!({
            "name": "shippo", "verifier": {"kind": "url-token"}, "secretEnv": "TOKEN",
            "target": "WebhookProcessor/Shippo", "eventId": ["/id"], "allowFromEnv": "ALLOW",
        }));
        let env = |var: &str| match var {
            "TOKEN" => Some("tok".to_string()),
            "ALLOW" => Some("52.4.41.98, 127.0.0.1".to_string()),
            _ => None,
        };
        let endpoint = s.load(&env).unwrap().unwrap();
        let headers = HeaderMap::new();
        let check = |ip: Option<&str>| {
            endpoint.verify(
                ip.map(|i| i.parse().unwrap()),
                &headers,
                Some("token=tok"),
                b"{}",
                0,
            )
        };
        assert_eq!(check(Some("52.4.41.98")), Ok(()));
        assert_eq!(check(Some("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(check(Some("10.0.0.1")), Err(Refusal::Source));
        assert_eq!(check(None), Err(Refusal::Source));
        let bad = |var: &str| {
            (var == "ALLOW")
                .then(|| "not-an-ip".to_string())
                .or(Some("tok".into()))
        };
        assert!(s.load(&bad).unwrap_err().contains("ALLOW"));
        // Without the variable, any source.
        let open = s
            .load(&|var: &str| (var == "TOKEN").then(|| "tok".to_string()))
            .unwrap()
            .unwrap();
        assert_eq!(
            open.verify(None, &headers, Some("token=tok"), b"{}", 0),
            Ok(())
        );
    }

    #[test]
    fn one_event_keeps_its_exact_bytes_and_a_batch_splits() {
        let one = token_endpoint(
            false,
            &[
                "/data/tracking_status/object_id",
                "/data/object_id+/data/status",
            ],
        );
        let body =
            br#"{ "event": "track_updated", "data": {"tracking_status": {"object_id": "ts_1"}}}"#;
        assert_eq!(
            one.events(body).unwrap(),
            vec![Event {
                id: "ts_1".into(),
                body: body.to_vec()
            }]
        );
        let transaction = br#"{"data": {"object_id": "tx_1", "status": "SUCCESS"}}"#;
        assert_eq!(one.events(transaction).unwrap()[0].id, "tx_1:SUCCESS");
        assert!(
            one.events(br#"{"data": {}}"#)
                .unwrap_err()
                .0
                .contains("no event id")
        );
        assert!(one.events(b"not json").is_err());

        let batch = token_endpoint(true, &["/sg_event_id"]);
        let body = br#"[{"sg_event_id": "a", "event": "delivered"}, {"sg_event_id":"b"}]"#;
        let events = batch.events(body).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0].body,
            br#"{"sg_event_id": "a", "event": "delivered"}"#
        );
        assert_eq!(events[1].id, "b");
        assert!(batch.events(b"[]").is_err());
        assert!(batch.events(br#"{"sg_event_id": "a"}"#).is_err());
        let long = format!(r#"[{{"sg_event_id": "{}"}}]"#, "x".repeat(MAX_EVENT_ID + 1));
        assert!(batch.events(long.as_bytes()).is_err());
        let many = format!(
            "[{}]",
            vec![r#"{"sg_event_id":"x"}"#; MAX_EVENTS + 1].join(",")
        );
        assert!(batch.events(many.as_bytes()).is_err());
    }
}
