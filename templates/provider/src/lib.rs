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
