//! Reading SendGrid's answer: `202 Accepted` with an empty body and `X-Message-Id`, or
//! `{"errors":[{"message","field","help"}]}`:
//!
//! | status | provider-error |
//! | --- | --- |
//! | 400, 413, other 4xx | `invalid-request` (the messages, `field: message; ...`) |
//! | 401, 403 | `unauthorized` |
//! | 429 | `rate-limited`, delay from `X-RateLimit-Reset` (unix seconds, measured from `Date`) |
//! | 5xx, anything else | `unavailable` |

use cairn_sdk::http::{Response, date, seconds_to_ms};
use serde::Deserialize;

use cairn_provider::types::{EmailReceipt, ProviderError};

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    message: Option<String>,
    field: Option<String>,
}

/// The answer to `POST /v3/mail/send`.
pub fn receipt(response: &Response) -> Result<EmailReceipt, ProviderError> {
    if response.is_success() {
        return Ok(EmailReceipt {
            message_id: response
                .header("X-Message-Id")
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
        });
    }
    let status = response.status();
    let message = error_message(response);
    Err(match status {
        401 | 403 => ProviderError::Unauthorized(message),
        429 => ProviderError::RateLimited(rate_limit_delay_ms(response)),
        400..=499 => ProviderError::InvalidRequest(message),
        _ => ProviderError::Unavailable(format!("sendgrid HTTP {status}: {message}")),
    })
}

/// `field: message; message; ...`, or a generic text when the body has no errors.
fn error_message(response: &Response) -> String {
    let items = response
        .json::<ErrorBody>()
        .map(|body| body.errors)
        .unwrap_or_default();
    let parts: Vec<String> = items
        .into_iter()
        .filter_map(|item| {
            let message = item.message?;
            Some(match item.field.filter(|f| !f.is_empty()) {
                Some(field) => format!("{field}: {message}"),
                None => message,
            })
        })
        .collect();
    if parts.is_empty() {
        format!("sendgrid answered HTTP {}", response.status())
    } else {
        parts.join("; ")
    }
}

/// Milliseconds until `X-RateLimit-Reset`. SendGrid sends unix seconds; the guest has no clock,
/// so the delay is measured from the response's `Date`. A small value is taken as a delay in
/// seconds; a `Retry-After` is the fallback. `None` when nothing is readable.
fn rate_limit_delay_ms(response: &Response) -> Option<u32> {
    const EPOCH_THRESHOLD: u64 = 1_000_000_000;
    let reset = response
        .header("X-RateLimit-Reset")
        .and_then(|v| v.trim().parse::<u64>().ok());
    match reset {
        Some(seconds) if seconds < EPOCH_THRESHOLD => Some(seconds_to_ms(seconds)),
        Some(at) => {
            let now = response.header("Date").and_then(date::parse_http_date)?;
            Some(seconds_to_ms(at.saturating_sub(now)))
        }
        None => response.retry_after_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn respond(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response::new(
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body.as_bytes().to_vec(),
        )
    }

    #[test]
    fn accepted_carries_the_message_id() {
        let r = receipt(&respond(
            202,
            &[("X-Message-Id", "14c5d75ce93.dfd.64b469")],
            "",
        ))
        .unwrap();
        assert_eq!(r.message_id.as_deref(), Some("14c5d75ce93.dfd.64b469"));
        let r = receipt(&respond(202, &[], "")).unwrap();
        assert_eq!(r.message_id, None);
    }

    #[test]
    fn validation_errors_are_invalid_requests() {
        let body = r#"{"errors":[{"message":"The from email does not contain a valid address.","field":"from.email","help":"http://sendgrid.com/docs"},
            {"message":"You must have at least one personalization.","field":null}]}"#;
        assert_eq!(
            receipt(&respond(400, &[], body)).unwrap_err(),
            ProviderError::InvalidRequest(
                "from.email: The from email does not contain a valid address.; \
                 You must have at least one personalization."
                    .into()
            )
        );
        assert_eq!(
            receipt(&respond(
                413,
                &[],
                r#"{"errors":[{"message":"content too large"}]}"#
            ))
            .unwrap_err(),
            ProviderError::InvalidRequest("content too large".into())
        );
        assert_eq!(
            receipt(&respond(406, &[], "")).unwrap_err(),
            ProviderError::InvalidRequest("sendgrid answered HTTP 406".into())
        );
    }

    #[test]
    fn credentials_refused() {
        let body = r#"{"errors":[{"field":null,"message":"authorization required"}]}"#;
        assert_eq!(
            receipt(&respond(401, &[], body)).unwrap_err(),
            ProviderError::Unauthorized("authorization required".into())
        );
        assert!(matches!(
            receipt(&respond(403, &[], "{}")).unwrap_err(),
            ProviderError::Unauthorized(_)
        ));
    }

    #[test]
    fn rate_limits() {
        let body = r#"{"errors":[{"field":null,"message":"too many requests"}]}"#;
        let limited = |headers: &[(&str, &str)]| receipt(&respond(429, headers, body)).unwrap_err();
        assert_eq!(
            limited(&[
                ("Date", "Thu, 01 Jan 2026 00:00:00 GMT"),
                ("X-RateLimit-Reset", "1767225605"),
            ]),
            ProviderError::RateLimited(Some(5_000))
        );
        assert_eq!(
            limited(&[("X-RateLimit-Reset", "1767225605")]),
            ProviderError::RateLimited(None)
        );
        assert_eq!(
            limited(&[("X-RateLimit-Reset", "3")]),
            ProviderError::RateLimited(Some(3_000))
        );
        assert_eq!(
            limited(&[("X-RateLimit-Reset", "soon")]),
            ProviderError::RateLimited(None)
        );
        assert_eq!(
            limited(&[("Retry-After", "7")]),
            ProviderError::RateLimited(Some(7_000))
        );
        assert_eq!(limited(&[]), ProviderError::RateLimited(None));
    }

    #[test]
    fn server_errors_are_unavailable() {
        for status in [500, 502, 503] {
            assert_eq!(
                receipt(&respond(status, &[], "")).unwrap_err(),
                ProviderError::Unavailable(format!(
                    "sendgrid HTTP {status}: sendgrid answered HTTP {status}"
                ))
            );
        }
    }
}
