//! Fake Stripe refunds (providers.md 1.3): `POST /v1/refunds` (idempotent like charges),
//! `GET /v1/refunds?charge=…` (newest first) and `GET /v1/refunds/{id}`. A refund updates its
//! charge's `amount_refunded`, and `refunded` once nothing is left.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::search::{parse_limit, parse_query};
use super::{Admission, Answer, admit, apply_metadata, authenticate, conclude, parse_int};
use crate::state::{MockState, random_id, unix_now};

/// A Refund object.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Refund {
    id: String,
    object: &'static str,
    amount: i64,
    balance_transaction: Option<String>,
    charge: String,
    created: i64,
    currency: String,
    metadata: BTreeMap<String, String>,
    payment_intent: Option<String>,
    reason: Option<String>,
    status: &'static str,
}

#[derive(Debug, Default)]
struct RefundRequest {
    charge: String,
    amount: Option<i64>,
    reason: Option<String>,
    metadata: BTreeMap<String, String>,
}

const IGNORED_REFUND_PARAMS: &[&str] = &[
    "refund_application_fee",
    "reverse_transfer",
    "instructions_email",
    "origin",
];

impl RefundRequest {
    fn parse(params: &[(String, String)]) -> Result<RefundRequest, Answer> {
        let mut request = RefundRequest::default();
        let (mut charge, mut payment_intent) = (None, None);
        for (name, value) in params {
            match name.as_str() {
                "charge" => charge = Some(value.clone()).filter(|v| !v.is_empty()),
                "payment_intent" => payment_intent = Some(value.clone()).filter(|v| !v.is_empty()),
                "amount" => {
                    let amount = parse_int("amount", value)?;
                    if amount < 1 {
                        return Err(Answer::invalid(
                            Some("parameter_invalid_integer"),
                            "This value must be greater than or equal to 1.",
                            Some("amount"),
                        ));
                    }
                    request.amount = Some(amount);
                }
                "reason" => {
                    if !["duplicate", "fraudulent", "requested_by_customer"]
                        .contains(&value.as_str())
                    {
                        return Err(Answer::invalid(
                            None,
                            format!(
                                "Invalid reason {value:?}: must be one of duplicate, fraudulent, or requested_by_customer"
                            ),
                            Some("reason"),
                        ));
                    }
                    request.reason = Some(value.clone());
                }
                other if IGNORED_REFUND_PARAMS.contains(&other) || other.starts_with("expand[") => {
                }
                other => {
                    if !apply_metadata(&mut request.metadata, other, value)? {
                        return Err(Answer::invalid(
                            Some("parameter_unknown"),
                            format!("Received unknown parameter: {other}"),
                            Some(other),
                        ));
                    }
                }
            }
        }
        match (charge, payment_intent) {
            (Some(charge), _) => request.charge = charge,
            (None, Some(pi)) => {
                return Err(Answer::invalid(
                    Some("resource_missing"),
                    format!("No such payment_intent: '{pi}'"),
                    Some("payment_intent"),
                ));
            }
            (None, None) => {
                return Err(Answer::invalid(
                    Some("parameter_missing"),
                    "You must specify a Charge or a PaymentIntent.",
                    Some("charge"),
                ));
            }
        }
        Ok(request)
    }
}

/// `1099` in `usd` → `$10.99`; other currencies → `10.99 EUR`.
fn money(amount: i64, currency: &str) -> String {
    let digits = format!("{}.{:02}", amount / 100, amount % 100);
    if currency == "usd" {
        format!("${digits}")
    } else {
        format!("{digits} {}", currency.to_uppercase())
    }
}

pub(super) async fn create_refund(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (params, reservation) = match admit(&state, &headers, &body, "/v1/refunds") {
        Admission::Execute {
            params,
            reservation,
            ..
        } => (params, reservation),
        Admission::Answered(response) => {
            state.latency().await;
            return response;
        }
    };
    state.latency().await;
    let answer = match RefundRequest::parse(&params) {
        Ok(request) => refund(&state, request),
        Err(answer) => answer,
    };
    conclude(reservation, answer)
}

/// The effect: checks the charge can take the refund, records it and updates the charge.
fn refund(state: &MockState, request: RefundRequest) -> Answer {
    let (answer, refunded) = state.with(|w| {
        let Some(charge) = w.stripe.charge_mut(&request.charge) else {
            return (
                Answer::invalid(
                    Some("resource_missing"),
                    format!("No such charge: '{}'", request.charge),
                    Some("charge"),
                ),
                None,
            );
        };
        if charge.status == "pending" {
            return (
                Answer::invalid(
                    None,
                    format!(
                        "Charge {} is pending and cannot be refunded yet.",
                        charge.id
                    ),
                    Some("charge"),
                ),
                None,
            );
        }
        if charge.status == "failed" {
            return (
                Answer::invalid(
                    None,
                    format!("Charge {} has failed and cannot be refunded.", charge.id),
                    Some("charge"),
                ),
                None,
            );
        }
        let remaining = charge.amount - charge.amount_refunded;
        if remaining <= 0 {
            return (
                Answer::invalid(
                    Some("charge_already_refunded"),
                    format!("Charge {} has already been refunded.", charge.id),
                    Some("charge"),
                ),
                None,
            );
        }
        let amount = request.amount.unwrap_or(remaining);
        if amount > remaining {
            return (
                Answer::invalid(
                    Some("amount_too_large"),
                    format!(
                        "Refund amount ({}) is greater than unrefunded amount on charge ({})",
                        money(amount, &charge.currency),
                        money(remaining, &charge.currency)
                    ),
                    Some("amount"),
                ),
                None,
            );
        }
        charge.amount_refunded += amount;
        charge.refunded = charge.amount_refunded >= charge.amount;
        let refund = Refund {
            id: random_id("re_", 24),
            object: "refund",
            amount,
            balance_transaction: Some(random_id("txn_", 24)),
            charge: charge.id.clone(),
            created: unix_now(),
            currency: charge.currency.clone(),
            metadata: request.metadata,
            payment_intent: None,
            reason: request.reason,
            status: "succeeded",
        };
        let body = serde_json::to_value(&refund).unwrap_or(Value::Null);
        let charge = serde_json::to_value(&*charge).unwrap_or(Value::Null);
        w.stats.refund(&refund.charge);
        w.stripe.refunds.push(refund);
        (Answer::ok(body), Some(charge))
    });
    if let Some(charge) = refunded {
        super::refunded(state, charge);
    }
    answer
}

pub(super) async fn list_refunds(
    State(state): State<MockState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    state.latency().await;
    if let Err(answer) = authenticate(&headers) {
        return answer.into_response();
    }
    let params = match parse_query(query.as_deref()) {
        Ok(params) => params,
        Err(answer) => return answer.into_response(),
    };
    let limit = match parse_limit(&params) {
        Ok(limit) => limit,
        Err(answer) => return answer.into_response(),
    };
    let charge = params
        .iter()
        .find(|(k, _)| k == "charge")
        .map(|(_, v)| v.clone());
    let (data, has_more) = state.with(|w| {
        let mut matching = w
            .stripe
            .refunds
            .iter()
            .rev()
            .filter(|r| charge.as_ref().is_none_or(|c| &r.charge == c));
        let data: Vec<Value> = matching
            .by_ref()
            .take(limit)
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect();
        (data, matching.next().is_some())
    });
    Answer::ok(json!({"object": "list", "url": "/v1/refunds", "has_more": has_more, "data": data}))
        .into_response()
}

pub(super) async fn get_refund(
    State(state): State<MockState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    state.latency().await;
    if let Err(answer) = authenticate(&headers) {
        return answer.into_response();
    }
    let found = state.with(|w| {
        w.stripe
            .refunds
            .iter()
            .find(|r| r.id == id)
            .and_then(|r| serde_json::to_value(r).ok())
    });
    match found {
        Some(refund) => Answer::ok(refund),
        None => Answer::not_found("refund", &id),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_charge_amount_reason_metadata() {
        let request = RefundRequest::parse(&params(&[
            ("charge", "ch_1"),
            ("amount", "500"),
            ("reason", "requested_by_customer"),
            ("metadata[order_id]", "A-1"),
        ]))
        .unwrap();
        assert_eq!(request.charge, "ch_1");
        assert_eq!(request.amount, Some(500));
        assert_eq!(request.metadata["order_id"], "A-1");
    }

    #[test]
    fn rejects_missing_charge_bad_amount_and_reason() {
        for (pairs, param) in [
            (vec![("amount", "5")], "charge"),
            (vec![("charge", "ch_1"), ("amount", "0")], "amount"),
            (vec![("charge", "ch_1"), ("reason", "bored")], "reason"),
            (vec![("charge", "ch_1"), ("colour", "red")], "colour"),
            (vec![("payment_intent", "pi_1")], "payment_intent"),
        ] {
            let err = RefundRequest::parse(&params(&pairs)).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert_eq!(err.body["error"]["param"], param, "{pairs:?}");
        }
    }

    #[test]
    fn money_is_readable() {
        assert_eq!(money(1099, "usd"), "$10.99");
        assert_eq!(money(5, "eur"), "0.05 EUR");
    }
}
