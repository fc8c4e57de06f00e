//! Reading Adyen's answers. A payment is answered 200 with a `resultCode`; an error with a
//! non-2xx status and `{"status", "errorCode", "message", "errorType", "pspReference"}`:
//!
//! | answer | result |
//! | --- | --- |
//! | `resultCode: Authorised` | `charge{id: pspReference, status: "succeeded"}` |
//! | `Refused`, `Cancelled` | `declined{code: refusalReasonCode (or the result), message: refusalReason, charge-id: pspReference}` |
//! | `Pending`, `Received` | `charge{status: "pending"}` (the outcome follows asynchronously) |
//! | `Error` | `unavailable` (retried with the same idempotency key) |
//! | a shopper action (`RedirectShopper`, `ChallengeShopper`...) | `invalid-request`: use a stored payment method |
//! | 401, 403, `errorType: security` | `unauthorized` |
//! | 429 | `rate-limited(Retry-After in ms)` |
//! | 409 (same key still in flight), 5xx | `unavailable` |
//! | 400, 404, 422, other 4xx | `invalid-request` |
//!
//! A refund or reversal is answered 201 `{"pspReference", "paymentPspReference", "status":
//! "received"}`: Adyen settles it asynchronously, so the refund is `pending`.

use cairn_sdk::http::Response;
use serde::Deserialize;

use crate::bindings::exports::cairn::durable::recovery::RetrySafety;
use cairn_provider::types::{Charge, ChargeRequest, Decline, ProviderError, Refund, RefundRequest};

/// Both operations send the host's key as `Idempotency-Key`: Adyen answers a repeat with the
/// first answer.
pub fn retry_safety(operation: &str) -> RetrySafety {
    match operation {
        "create-charge" | "refund-charge" => RetrySafety::IdempotencyKey,
        _ => RetrySafety::None,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentResponse {
    psp_reference: Option<String>,
    result_code: Option<String>,
    amount: Option<Amount>,
    refusal_reason: Option<String>,
    refusal_reason_code: Option<String>,
}

#[derive(Deserialize)]
struct Amount {
    value: u64,
    currency: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefundResponse {
    psp_reference: String,
    payment_psp_reference: Option<String>,
    amount: Option<Amount>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ServiceError {
    error_code: Option<String>,
    message: Option<String>,
    error_type: Option<String>,
}

/// The answer to `POST /v71/payments`.
pub fn payment(response: &Response, req: &ChargeRequest) -> Result<Charge, ProviderError> {
    if !response.is_success() {
        return Err(error(response));
    }
    let answer: PaymentResponse = response.json().map_err(|err| unreadable(response, &err))?;
    let result = answer.result_code.unwrap_or_default();
    let id = answer.psp_reference;
    let (amount, currency) = answer.amount.map_or_else(
        || (req.amount, req.currency.clone()),
        |a| (a.value, a.currency.to_ascii_lowercase()),
    );
    let charge = |status: &str, id: Option<String>| -> Result<Charge, ProviderError> {
        Ok(Charge {
            id: id.ok_or_else(|| {
                ProviderError::Unavailable(format!("adyen: {result} without a pspReference"))
            })?,
            amount,
            currency: currency.clone(),
            status: status.to_owned(),
        })
    };
    match result.as_str() {
        "Authorised" => charge("succeeded", id),
        "Pending" | "Received" => charge("pending", id),
        "Refused" | "Cancelled" => Err(ProviderError::Declined(Decline {
            code: answer
                .refusal_reason_code
                .unwrap_or_else(|| result.to_ascii_lowercase()),
            message: answer.refusal_reason.unwrap_or_else(|| result.clone()),
            charge_id: id,
        })),
        "Error" => Err(ProviderError::Unavailable(format!(
            "adyen: the payment ended in Error: {}",
            answer
                .refusal_reason
                .as_deref()
                .unwrap_or("no reason given")
        ))),
        "" => Err(ProviderError::Unavailable(
            "adyen: a payment answer without a resultCode".to_owned(),
        )),
        other => Err(ProviderError::InvalidRequest(format!(
            "adyen: the payment needs a shopper action ({other}); charge a stored payment method"
        ))),
    }
}

/// The answer to a refund or a reversal.
pub fn refund(response: &Response, req: &RefundRequest) -> Result<Refund, ProviderError> {
    if !response.is_success() {
        return Err(error(response));
    }
    let answer: RefundResponse = response.json().map_err(|err| unreadable(response, &err))?;
    Ok(Refund {
        id: answer.psp_reference,
        charge_id: answer
            .payment_psp_reference
            .unwrap_or_else(|| req.charge_id.clone()),
        amount: answer.amount.map(|a| a.value).or(req.amount).unwrap_or(0),
        status: "pending".to_owned(),
    })
}

/// A non-2xx answer as a provider error (see the module table).
pub fn error(response: &Response) -> ProviderError {
    let status = response.status();
    let err = response.json::<ServiceError>().unwrap_or_default();
    let message = match (&err.error_code, &err.message) {
        (Some(code), Some(message)) => format!("adyen {code}: {message}"),
        (None, Some(message)) => format!("adyen: {message}"),
        _ => format!("adyen answered HTTP {status}"),
    };
    if status == 401 || status == 403 || err.error_type.as_deref() == Some("security") {
        return ProviderError::Unauthorized(message);
    }
    match status {
        429 => ProviderError::RateLimited(response.retry_after_ms()),
        409 | 500..=599 => ProviderError::Unavailable(format!("HTTP {status}: {message}")),
        400..=499 => ProviderError::InvalidRequest(message),
        _ => ProviderError::Unavailable(format!("HTTP {status}: {message}")),
    }
}

/// A 2xx whose body is not the expected object: the outcome is unknown, so retry (with the
/// same idempotency key Adyen answers the stored response).
fn unreadable(response: &Response, err: &serde_json::Error) -> ProviderError {
    ProviderError::Unavailable(format!(
        "adyen HTTP {}: unreadable response body: {err}",
        response.status()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge_req() -> ChargeRequest {
        ChargeRequest {
            amount: 1099,
            currency: "eur".into(),
            payment_method: None,
            description: "Order A-1001".into(),
            order_id: "A-1001".into(),
            customer_email: None,
        }
    }

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

    fn charge_err(status: u16, body: &str) -> ProviderError {
        payment(&respond(status, &[], body), &charge_req()).unwrap_err()
    }

    #[test]
    fn an_authorised_payment_is_a_charge() {
        let body = r#"{"additionalData":{"cardSummary":"1111"},"pspReference":"QFQTPCQ8HXSKGK82",
            "resultCode":"Authorised","amount":{"currency":"EUR","value":1099},
            "merchantReference":"A-1001"}"#;
        let charge = payment(&respond(200, &[], body), &charge_req()).unwrap();
        assert_eq!(
            charge,
            Charge {
                id: "QFQTPCQ8HXSKGK82".into(),
                amount: 1099,
                currency: "eur".into(),
                status: "succeeded".into(),
            }
        );
        let pending = r#"{"pspReference":"P1","resultCode":"Received"}"#;
        let charge = payment(&respond(200, &[], pending), &charge_req()).unwrap();
        assert_eq!((charge.status.as_str(), charge.amount), ("pending", 1099));
    }

    #[test]
    fn a_refused_payment_is_declined() {
        let body = r#"{"pspReference":"V4HZ4RBFJGXXGN82","resultCode":"Refused",
            "refusalReason":"Not enough balance","refusalReasonCode":"12",
            "merchantReference":"A-1001"}"#;
        assert_eq!(
            charge_err(200, body),
            ProviderError::Declined(Decline {
                code: "12".into(),
                message: "Not enough balance".into(),
                charge_id: Some("V4HZ4RBFJGXXGN82".into()),
            })
        );
        let cancelled = r#"{"pspReference":"C1","resultCode":"Cancelled"}"#;
        assert!(matches!(
            charge_err(200, cancelled),
            ProviderError::Declined(d) if d.code == "cancelled"
        ));
    }

    #[test]
    fn other_result_codes() {
        assert!(matches!(
            charge_err(200, r#"{"pspReference":"E1","resultCode":"Error","refusalReason":"Acquirer Error"}"#),
            ProviderError::Unavailable(m) if m.contains("Acquirer Error")
        ));
        assert!(matches!(
            charge_err(200, r#"{"resultCode":"RedirectShopper","action":{"type":"redirect"}}"#),
            ProviderError::InvalidRequest(m) if m.contains("RedirectShopper")
        ));
        assert!(matches!(
            charge_err(200, "<html>"),
            ProviderError::Unavailable(m) if m.contains("unreadable")
        ));
    }

    #[test]
    fn errors_map_by_status_and_type() {
        let unauthorized = r#"{"status":401,"errorCode":"000","message":"HTTP Status Response - Unauthorized","errorType":"security"}"#;
        assert_eq!(
            charge_err(401, unauthorized),
            ProviderError::Unauthorized("adyen 000: HTTP Status Response - Unauthorized".into())
        );
        let forbidden = r#"{"status":403,"errorCode":"901","message":"Invalid Merchant Account","errorType":"security"}"#;
        assert!(
            matches!(charge_err(403, forbidden), ProviderError::Unauthorized(m) if m.contains("901"))
        );
        let invalid = r#"{"status":422,"errorCode":"130","message":"Required field 'reference' is not provided.","errorType":"validation"}"#;
        assert_eq!(
            charge_err(422, invalid),
            ProviderError::InvalidRequest(
                "adyen 130: Required field 'reference' is not provided.".into()
            )
        );
        let limited = payment(
            &respond(429, &[("Retry-After", "2")], r#"{"status":429,"errorCode":"429","message":"Too many requests","errorType":"throttling"}"#),
            &charge_req(),
        )
        .unwrap_err();
        assert_eq!(limited, ProviderError::RateLimited(Some(2000)));
        assert!(matches!(
            charge_err(409, r#"{"status":409,"errorCode":"704","message":"request already processed or in progress","errorType":"validation"}"#),
            ProviderError::Unavailable(m) if m.contains("704")
        ));
        assert!(
            matches!(charge_err(500, ""), ProviderError::Unavailable(m) if m.contains("HTTP 500"))
        );
    }

    #[test]
    fn refunds_are_pending() {
        let req = RefundRequest {
            charge_id: "QFQTPCQ8HXSKGK82".into(),
            amount: Some(500),
            reason: None,
            order_id: "A-1001".into(),
        };
        let body = r#"{"merchantAccount":"CairnShopECOM","paymentPspReference":"QFQTPCQ8HXSKGK82",
            "pspReference":"ZVWN7D3WSMK2WN82","reference":"A-1001","status":"received",
            "amount":{"currency":"USD","value":500}}"#;
        assert_eq!(
            refund(&respond(201, &[], body), &req).unwrap(),
            Refund {
                id: "ZVWN7D3WSMK2WN82".into(),
                charge_id: "QFQTPCQ8HXSKGK82".into(),
                amount: 500,
                status: "pending".into(),
            }
        );
        let unknown = r#"{"status":422,"errorCode":"167","message":"Original pspReference required for this operation","errorType":"validation"}"#;
        assert!(matches!(
            refund(&respond(422, &[], unknown), &req),
            Err(ProviderError::InvalidRequest(m)) if m.contains("167")
        ));
        assert_eq!(retry_safety("create-charge"), RetrySafety::IdempotencyKey);
        assert_eq!(retry_safety("refund-charge"), RetrySafety::IdempotencyKey);
        assert_eq!(retry_safety("other"), RetrySafety::None);
    }
}
