//! Fake Adyen Checkout API v71: `POST /v71/payments`, `POST /v71/payments/{pspReference}/refunds`
//! and `POST /v71/payments/{pspReference}/reversals`.
//!
//! Wire rules kept: JSON bodies; the API key in `X-API-Key` (401 `errorType: security` without
//! one); errors as `{"status", "errorCode", "message", "errorType", "pspReference"}`; a payment
//! answered 200 with `resultCode` `Authorised` or `Refused` (`refusalReason`,
//! `refusalReasonCode`), refunds and reversals 201 with `status: received`. `Idempotency-Key` is
//! honoured as Adyen does: the first answer under a key is stored and returned again for the same
//! request, a different request under the key is refused, and so is one while the first is still
//! being processed. A `shopperEmail` containing `+decline` is refused, as is a random share of
//! payments (`decline_rate`). Effects are counted in the shared stats (`charges.by_order` by
//! `reference`, `charges.by_idempotency_key`, `refunds.by_charge`).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::idempotency::{Begin, Reservation};
use crate::state::{MockState, random_id};

pub(crate) fn routes() -> Router<MockState> {
    Router::new()
        .route("/v71/payments", post(create_payment))
        .route("/v71/payments/{psp}/refunds", post(refund))
        .route("/v71/payments/{psp}/reversals", post(reversal))
}

/// Authorised payments by `pspReference`.
#[derive(Debug, Default)]
pub(crate) struct Store {
    payments: HashMap<String, Payment>,
}

#[derive(Debug, Clone)]
struct Payment {
    merchant_account: String,
    value: u64,
    currency: String,
    refunded: u64,
}

/// A JSON answer, kept as a value so it can be stored for idempotent replays.
#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn error(status: StatusCode, code: &str, message: impl Into<String>, kind: &str) -> Answer {
        Answer {
            status,
            body: json!({
                "status": status.as_u16(),
                "errorCode": code,
                "message": message.into(),
                "errorType": kind,
                "pspReference": psp_reference(),
            }),
        }
    }

    fn validation(code: &str, message: impl Into<String>) -> Answer {
        Answer::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            message,
            "validation",
        )
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// Adyen's 16-character, upper-case alphanumeric reference.
fn psp_reference() -> String {
    random_id("", 16).to_ascii_uppercase()
}

/// The provider's error answer for an injected fault.
pub(crate) fn fault_response(status: StatusCode) -> Response {
    let (code, kind) = match status.as_u16() {
        401 | 403 => ("000", "security"),
        429 => ("429", "throttling"),
        400..=499 => ("702", "validation"),
        _ => ("905", "internal"),
    };
    let message = status.canonical_reason().unwrap_or("Error").to_string();
    Answer::error(status, code, message, kind).into_response()
}

/// A 404 for an unknown `/v71/...` path.
pub(crate) fn not_found() -> Response {
    Answer::error(StatusCode::NOT_FOUND, "000", "Not Found", "validation").into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AmountIn {
    value: Option<i64>,
    currency: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentRequest {
    amount: Option<AmountIn>,
    reference: Option<String>,
    merchant_account: Option<String>,
    payment_method: Option<Value>,
    shopper_email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModificationRequest {
    merchant_account: Option<String>,
    amount: Option<AmountIn>,
    reference: Option<String>,
}

/// Checks the API key, parses the JSON body and presents the `Idempotency-Key`: `Err` is the
/// answer already due (401, 400, a replay, an idempotency conflict).
fn admit<T: serde::de::DeserializeOwned>(
    state: &MockState,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: &str,
) -> Result<(T, Option<Reservation>), Answer> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key.is_none_or(|k| k.trim().is_empty()) {
        return Err(Answer::error(
            StatusCode::UNAUTHORIZED,
            "000",
            "HTTP Status Response - Unauthorized",
            "security",
        ));
    }
    let unreadable = |e: serde_json::Error| {
        Answer::error(
            StatusCode::BAD_REQUEST,
            "702",
            format!("Structure of the request is invalid: {e}"),
            "validation",
        )
    };
    let parsed: Value = serde_json::from_slice(body).map_err(unreadable)?;
    let request: T = serde_json::from_value(parsed.clone()).map_err(unreadable)?;
    let Some(idem) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return Ok((request, None));
    };
    // One key space for the whole fake: Adyen's keys apart from Stripe's.
    let stored_key = format!("adyen:{idem}");
    let begun = state.with(|w| {
        let begun = w
            .idempotency
            .begin(&stored_key, endpoint, &parsed.to_string());
        if matches!(begun, Begin::Replay(_)) {
            w.stats.replays += 1;
        }
        begun
    });
    match begun {
        Begin::Fresh(token) => Ok((
            request,
            Some(Reservation::new(state.clone(), stored_key, token)),
        )),
        Begin::Replay(saved) => Err(Answer {
            status: saved.status,
            body: serde_json::from_str(&saved.body).unwrap_or(Value::Null),
        }),
        Begin::InUse => Err(Answer::error(
            StatusCode::CONFLICT,
            "704",
            "request already processed or in progress",
            "validation",
        )),
        Begin::Mismatch(_) => Err(Answer::validation(
            "704",
            "the Idempotency-Key was used for a different request",
        )),
    }
}

/// Stores a 2xx or 422 answer under the key (a 5xx or 401 is not stored), then answers it.
fn conclude(reservation: Option<Reservation>, answer: Answer) -> Response {
    if let Some(reservation) = reservation
        && (answer.status.is_success() || answer.status == StatusCode::UNPROCESSABLE_ENTITY)
    {
        reservation.save(answer.status, answer.body.to_string());
    }
    answer.into_response()
}

/// The idempotency key as presented (without the fake's namespace), for the stats.
fn presented(reservation: Option<&Reservation>) -> Option<&str> {
    reservation.map(|r| r.key().trim_start_matches("adyen:"))
}

/// `amount` as Adyen requires it: a non-negative value and a three-letter upper-case currency.
fn amount(amount: Option<&AmountIn>) -> Result<(u64, String), Answer> {
    let amount = amount
        .ok_or_else(|| Answer::validation("100", "Required field 'amount' is not provided."))?;
    let value = amount.value.ok_or_else(|| {
        Answer::validation("100", "Required field 'amount.value' is not provided.")
    })?;
    let value =
        u64::try_from(value).map_err(|_| Answer::validation("137", "Invalid amount specified"))?;
    let currency = amount.currency.clone().unwrap_or_default();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Answer::validation(
            "138",
            format!("Invalid currency: {currency:?} (an upper-case ISO 4217 code)"),
        ));
    }
    Ok((value, currency))
}

fn merchant_account(given: Option<&String>) -> Result<String, Answer> {
    given
        .filter(|m| !m.trim().is_empty())
        .cloned()
        .ok_or_else(|| {
            Answer::error(
                StatusCode::FORBIDDEN,
                "901",
                "Invalid Merchant Account",
                "security",
            )
        })
}

async fn create_payment(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (request, reservation) =
        match admit::<PaymentRequest>(&state, &headers, &body, "/v71/payments") {
            Ok(admitted) => admitted,
            Err(answer) => {
                state.latency().await;
                return answer.into_response();
            }
        };
    state.latency().await;
    let answer =
        payment(&state, request, presented(reservation.as_ref())).unwrap_or_else(|answer| answer);
    conclude(reservation, answer)
}

/// The effect: authorises or refuses the payment, stores and counts it.
fn payment(
    state: &MockState,
    request: PaymentRequest,
    idem: Option<&str>,
) -> Result<Answer, Answer> {
    let (value, currency) = amount(request.amount.as_ref())?;
    let merchant = merchant_account(request.merchant_account.as_ref())?;
    let reference = request
        .reference
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| Answer::validation("130", "Required field 'reference' is not provided."))?;
    let method_type = request
        .payment_method
        .as_ref()
        .and_then(|m| m.get("type"))
        .and_then(Value::as_str);
    if method_type.is_none() {
        return Err(Answer::validation(
            "08",
            "Required field 'paymentMethod.type' is not provided.",
        ));
    }
    let refused = request
        .shopper_email
        .as_deref()
        .is_some_and(|e| e.contains("+decline"))
        || state.random_decline();
    let psp = psp_reference();
    state.with(|w| {
        w.stats.charge(!refused, Some(&reference), idem);
        if !refused {
            w.adyen.payments.insert(
                psp.clone(),
                Payment {
                    merchant_account: merchant.clone(),
                    value,
                    currency: currency.clone(),
                    refunded: 0,
                },
            );
        }
    });
    let mut body = json!({
        "pspReference": psp,
        "resultCode": if refused { "Refused" } else { "Authorised" },
        "amount": {"currency": currency, "value": value},
        "merchantReference": reference,
    });
    if refused {
        body["refusalReason"] = json!("Refused");
        body["refusalReasonCode"] = json!("2");
    } else {
        body["additionalData"] = json!({"authCode": random_id("", 6).to_ascii_uppercase()});
    }
    Ok(Answer {
        status: StatusCode::OK,
        body,
    })
}

async fn refund(
    State(state): State<MockState>,
    Path(psp): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    modification(state, psp, headers, body, "refunds").await
}

async fn reversal(
    State(state): State<MockState>,
    Path(psp): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    modification(state, psp, headers, body, "reversals").await
}

/// A refund of `amount`, or a reversal of what is left of the payment.
async fn modification(
    state: MockState,
    psp: String,
    headers: HeaderMap,
    body: Bytes,
    kind: &'static str,
) -> Response {
    let endpoint = format!("/v71/payments/{psp}/{kind}");
    let (request, reservation) =
        match admit::<ModificationRequest>(&state, &headers, &body, &endpoint) {
            Ok(admitted) => admitted,
            Err(answer) => {
                state.latency().await;
                return answer.into_response();
            }
        };
    state.latency().await;
    let answer = modify(&state, &psp, request, kind).unwrap_or_else(|answer| answer);
    conclude(reservation, answer)
}

fn modify(
    state: &MockState,
    psp: &str,
    request: ModificationRequest,
    kind: &str,
) -> Result<Answer, Answer> {
    let merchant = merchant_account(request.merchant_account.as_ref())?;
    let wanted = match kind {
        "refunds" => Some(amount(request.amount.as_ref())?),
        _ => None,
    };
    let own = psp_reference();
    let refunded = state.with(|w| {
        let payment = w
            .adyen
            .payments
            .get_mut(psp)
            .filter(|p| p.merchant_account == merchant)
            .ok_or_else(|| {
                Answer::validation("167", "Original pspReference required for this operation")
            })?;
        let left = payment.value - payment.refunded;
        let (value, currency) = wanted
            .clone()
            .unwrap_or_else(|| (left, payment.currency.clone()));
        if currency != payment.currency || value > left || value == 0 {
            return Err(Answer::validation("137", "Invalid amount specified"));
        }
        payment.refunded += value;
        w.stats.refund(psp);
        Ok((value, currency))
    })?;
    let mut body = json!({
        "merchantAccount": merchant,
        "paymentPspReference": psp,
        "pspReference": own,
        "status": "received",
    });
    if let Some(reference) = request.reference {
        body["reference"] = json!(reference);
    }
    if kind == "refunds" {
        body["amount"] = json!({"currency": refunded.1, "value": refunded.0});
    }
    Ok(Answer {
        status: StatusCode::CREATED,
        body,
    })
}

#[cfg(test)]
mod tests;
