//! Reading Stripe's answers: a charge or refund object on 2xx, else Stripe's error envelope
//! `{"error":{"type","code","decline_code","message","charge",...}}` mapped onto
//! `provider-error`:
//!
//! | answer | provider-error |
//! | --- | --- |
//! | 402, or `type: card_error` | `declined{code: decline_code or code, message, charge-id: error.charge}` |
//! | 401, 403 | `unauthorized` |
//! | `Stripe-Should-Retry: true` | `rate-limited` on 429, else `unavailable` |
//! | `Stripe-Should-Retry: false` | `invalid-request` |
//! | 429 | `rate-limited(Retry-After in ms)` |
//! | 400, 404, other 4xx | `invalid-request` |
//! | 409, 424, 5xx, anything else | `unavailable` |
//!
//! A 2xx charge whose `status` is `failed` is a decline as well.

use cairn_sdk::http::Response;
use serde::Deserialize;

use cairn_provider::types::{Charge, ChargeRequest, Decline, ProviderError, Refund, RefundRequest};

#[derive(Deserialize)]
struct ChargeObject {
    id: String,
    amount: Option<u64>,
    currency: Option<String>,
    status: Option<String>,
    failure_code: Option<String>,
    failure_message: Option<String>,
}

#[derive(Deserialize)]
struct RefundObject {
    id: String,
    amount: Option<u64>,
    charge: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: StripeError,
}

#[derive(Deserialize, Default)]
struct StripeError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
    charge: Option<String>,
}

/// The answer to `POST /v1/charges`.
pub fn charge(response: &Response, req: &ChargeRequest) -> Result<Charge, ProviderError> {
    if !response.is_success() {
        return Err(error(response));
    }
    let object: ChargeObject = response.json().map_err(|err| unreadable(response, &err))?;
    let status = object.status.unwrap_or_else(|| "succeeded".to_owned());
    if status == "failed" {
        return Err(ProviderError::Declined(Decline {
            code: object
                .failure_code
                .unwrap_or_else(|| "card_declined".to_owned()),
            message: object
                .failure_message
                .unwrap_or_else(|| "The charge failed.".to_owned()),
            charge_id: Some(object.id),
        }));
    }
    Ok(Charge {
        id: object.id,
        amount: object.amount.unwrap_or(req.amount),
        currency: object.currency.unwrap_or_else(|| req.currency.clone()),
        status,
    })
}

/// The answer to `POST /v1/refunds`.
pub fn refund(response: &Response, req: &RefundRequest) -> Result<Refund, ProviderError> {
    if !response.is_success() {
        return Err(error(response));
    }
    let object: RefundObject = response.json().map_err(|err| unreadable(response, &err))?;
    Ok(Refund {
        id: object.id,
        charge_id: object.charge.unwrap_or_else(|| req.charge_id.clone()),
        amount: object.amount.or(req.amount).unwrap_or(0),
        status: object.status.unwrap_or_else(|| "succeeded".to_owned()),
    })
}

/// A non-2xx answer as a provider error (see the module table).
pub fn error(response: &Response) -> ProviderError {
    let status = response.status();
    let err = response
        .json::<ErrorEnvelope>()
        .map(|envelope| envelope.error)
        .unwrap_or_default();
    let message = err
        .message
        .clone()
        .unwrap_or_else(|| format!("stripe answered HTTP {status}"));

    if status == 402 || err.kind.as_deref() == Some("card_error") {
        return ProviderError::Declined(Decline {
            code: err
                .decline_code
                .or(err.code)
                .unwrap_or_else(|| "card_declined".to_owned()),
            message,
            charge_id: err.charge,
        });
    }
    if status == 401 || status == 403 {
        return ProviderError::Unauthorized(message);
    }
    match response.header("Stripe-Should-Retry").map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("true") => {
            return if status == 429 {
                ProviderError::RateLimited(response.retry_after_ms())
            } else {
                ProviderError::Unavailable(format!("stripe HTTP {status}: {message}"))
            };
        }
        Some(v) if v.eq_ignore_ascii_case("false") => {
            return ProviderError::InvalidRequest(message);
        }
        _ => {}
    }
    match status {
        429 => ProviderError::RateLimited(response.retry_after_ms()),
        409 | 424 | 500..=599 => {
            ProviderError::Unavailable(format!("stripe HTTP {status}: {message}"))
        }
        400..=499 => ProviderError::InvalidRequest(message),
        _ => ProviderError::Unavailable(format!("stripe HTTP {status}: {message}")),
    }
}

/// A 2xx whose body is not the expected object: the outcome is unknown, so retry (with the
/// same idempotency key Stripe answers the stored response).
fn unreadable(response: &Response, err: &serde_json::Error) -> ProviderError {
    ProviderError::Unavailable(format!(
        "stripe HTTP {}: unreadable response body: {err}",
        response.status()
    ))
}

#[cfg(test)]
mod tests;
