//! `acme-email`: a Cairn email provider (world `cairn:commerce/email-provider`) over SendGrid's
//! v3 Mail Send wire format. A template: rename it, point `api-base` at your API, change
//! [`mail_send`] and [`receipt`] to its wire format, and choose its retry safety.
//!
//! What the host does for it: fills `{{secret:SENDGRID_API_KEY}}` in the request on the wire
//! (the component never sees the key), sends only to the deployment's allow-list, journals the
//! call, and makes it again with the same idempotency key when it answers `unavailable` or
//! `rate-limited` (after the wait the latter asks for).

use cairn_provider::types::{EmailMessage, EmailReceipt, ProviderError};
use cairn_sdk::bindings::cairn::durable::call_context;
use cairn_sdk::http::{Request, RequestBuilder, Response, seconds_to_ms};
use serde_json::json;

use crate::bindings::exports::cairn::commerce::email::Guest;
use crate::bindings::exports::cairn::commerce::email_recovery::Guest as RecoveryGuest;
use crate::bindings::exports::cairn::durable::recovery::{Guest as SafetyGuest, RetrySafety};

mod bindings {
    // `wit/` is a copy of the Cairn checkout's (`commerce.wit` and `deps/durable/`); the types
    // of `cairn:commerce/types` are the ones `cairn-provider` generated, shared with the host's
    // other providers.
    cairn_sdk::generate!({
        path: "wit",
        world: "cairn:commerce/email-provider@0.1.0",
        with: { "cairn:commerce/types@0.1.0": cairn_provider::types },
        export: super::AcmeEmail,
    });
}

struct AcmeEmail;

impl Guest for AcmeEmail {
    fn send_email(msg: EmailMessage) -> Result<EmailReceipt, ProviderError> {
        let api_base =
            call_context::config("api-base").unwrap_or_else(|| "https://api.sendgrid.com".into());
        let response = cairn_provider::send("acme-email", mail_send(&api_base, &msg))?;
        receipt(&response)
    }
}

impl RecoveryGuest for AcmeEmail {
    /// This API has no lookup: a send a crash left in doubt is never found.
    fn find_email(_msg: EmailMessage) -> Result<Option<EmailReceipt>, ProviderError> {
        Ok(None)
    }
}

impl SafetyGuest for AcmeEmail {
    /// No idempotency key and no lookup: `none`, so the host applies its in-doubt policy to a
    /// send a crash interrupted (at most once for `cairn:commerce/email.send-email`). An API that
    /// deduplicates on a key header answers `RetrySafety::IdempotencyKey`.
    fn safety(_interface: String, _function: String) -> RetrySafety {
        RetrySafety::None
    }
}

/// `POST {api_base}/v3/mail/send` for `msg`.
pub fn mail_send(api_base: &str, msg: &EmailMessage) -> RequestBuilder {
    let mut to = json!({"email": msg.to});
    if let Some(name) = &msg.to_name {
        to["name"] = json!(name);
    }
    let body = json!({
        "personalizations": [{"to": [to], "custom_args": {"order_id": msg.order_id}}],
        "from": {"email": "orders@acme.example", "name": "Acme"},
        "subject": msg.subject,
        "content": [{"type": "text/plain", "value": msg.text}],
    });
    Request::post(format!("{}/v3/mail/send", api_base.trim_end_matches('/')))
        .header("Authorization", "Bearer {{secret:SENDGRID_API_KEY}}")
        .json(&body)
}

/// The answer: 2xx is sent; 429 is `rate-limited` with its `Retry-After`; another 4xx is the
/// request's fault (not retried); the rest is `unavailable` (retried by the host).
pub fn receipt(response: &Response) -> Result<EmailReceipt, ProviderError> {
    let status = response.status();
    match status {
        200..=299 => Ok(EmailReceipt {
            message_id: response.header("X-Message-Id").map(str::to_owned),
        }),
        429 => Err(ProviderError::RateLimited(
            response
                .header("Retry-After")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(seconds_to_ms),
        )),
        401 | 403 => Err(ProviderError::Unauthorized(format!("HTTP {status}"))),
        400..=499 => Err(ProviderError::InvalidRequest(format!("HTTP {status}"))),
        _ => Err(ProviderError::Unavailable(format!("HTTP {status}"))),
    }
}

/// The request and the answers as the fake API (`cairn mock-providers`) and the real one give
/// them, natively: `cargo test`. `tests/tests/provider_template.rs` in the Cairn repository
/// then runs the built component against the fake, through a host.
#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> EmailMessage {
        EmailMessage {
            to: "alice@example.com".into(),
            to_name: Some("Alice Smith".into()),
            subject: "Your order order-001 is confirmed".into(),
            text: "Total: 50.00 USD".into(),
            html: None,
            order_id: "order-001".into(),
        }
    }

    fn answer(status: u16, headers: &[(&str, &str)]) -> Response {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Response::new(status, headers, Vec::new())
    }

    #[test]
    fn the_request_carries_the_placeholder_and_sendgrids_body() {
        let request = mail_send("http://127.0.0.1:9999/", &message())
            .build()
            .unwrap();
        assert_eq!(request.method(), "POST");
        assert_eq!(request.url(), "http://127.0.0.1:9999/v3/mail/send");
        let auth = request
            .headers()
            .iter()
            .find(|(name, _)| name == "Authorization");
        assert_eq!(
            auth.map(|(_, value)| value.as_str()),
            Some("Bearer {{secret:SENDGRID_API_KEY}}")
        );
        let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(
            body["personalizations"][0]["to"][0],
            json!({"email": "alice@example.com", "name": "Alice Smith"})
        );
        assert_eq!(
            body["personalizations"][0]["custom_args"]["order_id"],
            "order-001"
        );
        assert_eq!(body["subject"], "Your order order-001 is confirmed");
    }

    #[test]
    fn answers_map_onto_provider_errors_the_host_retries_or_not() {
        let sent = receipt(&answer(202, &[("X-Message-Id", "msg-1")])).unwrap();
        assert_eq!(sent.message_id.as_deref(), Some("msg-1"));
        // Retried by the host with the same idempotency key: after the hint, or a backoff.
        assert_eq!(
            receipt(&answer(429, &[("Retry-After", "2")])).unwrap_err(),
            ProviderError::RateLimited(Some(2_000))
        );
        assert_eq!(
            receipt(&answer(429, &[])).unwrap_err(),
            ProviderError::RateLimited(None)
        );
        assert!(matches!(
            receipt(&answer(503, &[])),
            Err(ProviderError::Unavailable(_))
        ));
        // Not retried.
        assert!(matches!(
            receipt(&answer(401, &[])),
            Err(ProviderError::Unauthorized(_))
        ));
        assert!(matches!(
            receipt(&answer(400, &[])),
            Err(ProviderError::InvalidRequest(_))
        ));
    }
}
