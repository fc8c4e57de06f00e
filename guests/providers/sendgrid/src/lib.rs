//! `sendgrid-email`: the `cairn:commerce/email` provider role over SendGrid's v3 Mail Send API
//! (world `cairn:commerce/email-provider`).
//!
//! `POST {api-base}/v3/mail/send` (default `https://api.sendgrid.com`) with
//! `Authorization: Bearer {{secret:SENDGRID_API_KEY}}`, filled in by the host; the order id rides
//! in `personalizations[0].custom_args.order_id` so that every event webhook carries it.
//! SendGrid has no idempotency key: a re-executed call can send twice, which is why the host
//! journals the result. [`request`] builds the wire format, [`response`] reads the answer; both
//! are pure and unit-tested.
//!
//! It also exports `cairn:commerce/email-recovery`: with no idempotency key and no lookup short
//! of the paid Email Activity add-on, a send left in doubt by a crash is `none` safe (the host
//! applies its in-doubt policy) and `find-email` never finds anything.

mod request;
mod response;

use cairn_sdk::http::{RequestBuilder, Response};

use crate::bindings::exports::cairn::commerce::email::Guest;
use crate::bindings::exports::cairn::commerce::email_recovery::Guest as RecoveryGuest;
use crate::bindings::exports::cairn::durable::recovery::RetrySafety;
use crate::request::Settings;
use cairn_provider::types::{EmailMessage, EmailReceipt, ProviderError};
use cairn_sdk::bindings::cairn::durable::call_context;

mod bindings {
    cairn_sdk::generate!({
        path: "../../../wit",
        world: "cairn:commerce/email-provider@0.1.0",
        with: { "cairn:commerce/types@0.1.0": cairn_provider::types },
        derives: [Eq],
        export: super::SendGridEmail,
    });
}

struct SendGridEmail;

impl Guest for SendGridEmail {
    fn send_email(msg: EmailMessage) -> Result<EmailReceipt, ProviderError> {
        let settings = Settings::from_lookup(call_context::config);
        let response = send(request::mail_send(&settings, &msg))?;
        response::receipt(&response)
    }
}

impl RecoveryGuest for SendGridEmail {
    fn find_email(_msg: EmailMessage) -> Result<Option<EmailReceipt>, ProviderError> {
        Ok(None)
    }
}

impl crate::bindings::exports::cairn::durable::recovery::Guest for SendGridEmail {
    fn safety(_interface: String, function: String) -> RetrySafety {
        retry_safety(&function)
    }
}

/// How `operation` can be repeated: Mail Send has neither an idempotency key nor a free lookup.
fn retry_safety(_operation: &str) -> RetrySafety {
    RetrySafety::None
}

/// Sends a request of this provider (see [`cairn_provider::send`]).
fn send(request: RequestBuilder) -> Result<Response, ProviderError> {
    cairn_provider::send("sendgrid", request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_safe_to_repeat_and_nothing_is_found() {
        assert_eq!(retry_safety("send-email"), RetrySafety::None);
        assert_eq!(retry_safety("anything"), RetrySafety::None);
        let msg = EmailMessage {
            to: "alice@example.com".into(),
            to_name: None,
            subject: "s".into(),
            text: "t".into(),
            html: None,
            order_id: "o".into(),
        };
        assert_eq!(<SendGridEmail as RecoveryGuest>::find_email(msg), Ok(None));
    }
}
