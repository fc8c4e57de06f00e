//! Fake Stripe (providers.md §1): `POST /v1/charges` and `GET /v1/charges/{id}` here; refunds in
//! [`refunds`], listing and search in [`search`], the shared wire rules in [`wire`].
//!
//! Wire rules kept: form-encoded bodies with bracket metadata (`metadata[order_id]=…`), secret key as
//! `Authorization: Bearer sk_…` or Basic (`sk_…:`), errors as `{"error":{type, code, message, param,
//! …}}`, `Request-Id` on every response (added by the gate), `Idempotency-Key` handled as Stripe does
//! ([`crate::idempotency`]). Declines are 402 `card_error` and leave a failed charge behind.

mod refunds;
mod search;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use crate::state::{MockState, is_email, random_id, unix_now};
use crate::webhooks;
use wire::{Admission, Answer, ApiKey, admit, apply_metadata, authenticate, conclude, parse_int};
pub(crate) use wire::{fault_response, unrecognized_url};

pub(crate) fn routes() -> Router<MockState> {
    Router::new()
        .route("/v1/charges", post(create_charge).get(search::list_charges))
        .route("/v1/charges/search", get(search::search_charges))
        .route("/v1/charges/{id}", get(get_charge))
        .route(
            "/v1/refunds",
            post(refunds::create_refund).get(refunds::list_refunds),
        )
        .route("/v1/refunds/{id}", get(refunds::get_refund))
}

/// Charges and refunds, in creation order.
#[derive(Debug, Default)]
pub(crate) struct Store {
    charges: Vec<Charge>,
    index: HashMap<String, usize>,
    refunds: Vec<refunds::Refund>,
}

impl Store {
    fn insert_charge(&mut self, charge: Charge) {
        self.index.insert(charge.id.clone(), self.charges.len());
        self.charges.push(charge);
    }

    fn charge(&self, id: &str) -> Option<&Charge> {
        self.index.get(id).map(|&i| &self.charges[i])
    }

    fn charge_mut(&mut self, id: &str) -> Option<&mut Charge> {
        self.index.get(id).map(|&i| &mut self.charges[i])
    }
}

/// A Charge object as providers.md 1.2 shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Charge {
    id: String,
    object: &'static str,
    amount: i64,
    amount_captured: i64,
    amount_refunded: i64,
    balance_transaction: Option<String>,
    captured: bool,
    created: i64,
    currency: String,
    customer: Option<String>,
    description: Option<String>,
    disputed: bool,
    failure_code: Option<String>,
    failure_message: Option<String>,
    livemode: bool,
    metadata: BTreeMap<String, String>,
    outcome: Outcome,
    paid: bool,
    payment_intent: Option<String>,
    payment_method: String,
    receipt_email: Option<String>,
    refunded: bool,
    status: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct Outcome {
    network_status: &'static str,
    reason: Option<&'static str>,
    risk_level: &'static str,
    seller_message: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A validated `POST /v1/charges`.
#[derive(Debug, Default)]
struct ChargeRequest {
    amount: i64,
    currency: String,
    source: Option<String>,
    customer: Option<String>,
    description: Option<String>,
    receipt_email: Option<String>,
    metadata: BTreeMap<String, String>,
    capture: bool,
}

/// Parameters Stripe accepts on a charge that the fake ignores.
const IGNORED_CHARGE_PARAMS: &[&str] = &[
    "statement_descriptor",
    "statement_descriptor_suffix",
    "on_behalf_of",
    "transfer_group",
    "application_fee_amount",
];
const IGNORED_CHARGE_PREFIXES: &[&str] =
    &["shipping[", "transfer_data[", "radar_options[", "expand["];

impl ChargeRequest {
    fn parse(params: &[(String, String)]) -> Result<ChargeRequest, Answer> {
        let mut request = ChargeRequest {
            capture: true,
            ..ChargeRequest::default()
        };
        let (mut amount, mut currency) = (None, None);
        let non_empty = |v: &str| (!v.is_empty()).then(|| v.to_string());
        for (name, value) in params {
            match name.as_str() {
                "amount" => amount = Some(parse_int("amount", value)?),
                "currency" => currency = Some(value.clone()),
                "source" => request.source = non_empty(value),
                "customer" => request.customer = non_empty(value),
                "description" => request.description = non_empty(value),
                "receipt_email" => request.receipt_email = non_empty(value),
                "capture" => {
                    request.capture = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(Answer::invalid(
                                None,
                                format!("Invalid boolean: {other}"),
                                Some("capture"),
                            ));
                        }
                    }
                }
                other if IGNORED_CHARGE_PARAMS.contains(&other) => {}
                other if IGNORED_CHARGE_PREFIXES.iter().any(|p| other.starts_with(p)) => {}
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
        request.amount = amount.ok_or_else(|| Answer::missing("amount"))?;
        if request.amount < 50 {
            return Err(Answer::invalid(
                Some("amount_too_small"),
                "Amount must be at least 50 cents.",
                Some("amount"),
            ));
        }
        if request.amount > 99_999_999 {
            return Err(Answer::invalid(
                Some("amount_too_large"),
                "Amount must be no more than 99999999 (8 digits).",
                Some("amount"),
            ));
        }
        let currency = currency.ok_or_else(|| Answer::missing("currency"))?;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(Answer::invalid(
                Some("parameter_invalid_string"),
                format!(
                    "Invalid currency: {currency}. Currencies are three-letter lowercase ISO codes, e.g. usd."
                ),
                Some("currency"),
            ));
        }
        request.currency = currency;
        if let Some(email) = request.receipt_email.as_deref().filter(|e| !is_email(e)) {
            return Err(Answer::invalid(
                Some("email_invalid"),
                format!("Invalid email address: {email}"),
                Some("receipt_email"),
            ));
        }
        match (&request.source, &request.customer) {
            (None, None) => {
                return Err(Answer::invalid(
                    Some("parameter_missing"),
                    "Must provide source or customer.",
                    Some("source"),
                ));
            }
            (Some(source), _) if !KNOWN_SOURCE_PREFIXES.iter().any(|p| source.starts_with(p)) => {
                return Err(Answer::invalid(
                    Some("resource_missing"),
                    format!("No such token: '{source}'"),
                    Some("source"),
                ));
            }
            _ => {}
        }
        Ok(request)
    }

    /// The customer e-mail the charge carries (`metadata[customer_email]`, else `receipt_email`).
    fn emails(&self) -> impl Iterator<Item = &str> {
        self.metadata
            .get("customer_email")
            .map(String::as_str)
            .into_iter()
            .chain(self.receipt_email.as_deref())
    }
}

const KNOWN_SOURCE_PREFIXES: &[&str] = &["tok_", "card_", "src_", "ba_", "pm_"];

/// Why a card was declined: `(code, decline_code, message, param)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Decline {
    code: &'static str,
    decline_code: &'static str,
    message: &'static str,
    param: &'static str,
}

const GENERIC_DECLINE: Decline = Decline {
    code: "card_declined",
    decline_code: "generic_decline",
    message: "Your card was declined.",
    param: "",
};

/// Stripe's decline test tokens (providers.md 1.10), `tok_…` and `pm_card_…` forms.
fn decline_for_source(source: &str) -> Option<Decline> {
    let name = source
        .strip_prefix("tok_")
        .or_else(|| source.strip_prefix("pm_card_"))?;
    let decline = match name {
        "chargeDeclined" => GENERIC_DECLINE,
        "chargeDeclinedInsufficientFunds" => Decline {
            decline_code: "insufficient_funds",
            message: "Your card has insufficient funds.",
            ..GENERIC_DECLINE
        },
        "chargeDeclinedFraudulent" => Decline {
            decline_code: "fraudulent",
            ..GENERIC_DECLINE
        },
        "chargeDeclinedExpiredCard" => Decline {
            code: "expired_card",
            decline_code: "expired_card",
            message: "Your card has expired.",
            param: "exp_month",
        },
        "chargeDeclinedIncorrectCvc" => Decline {
            code: "incorrect_cvc",
            decline_code: "incorrect_cvc",
            message: "Your card's security code is incorrect.",
            param: "cvc",
        },
        "chargeDeclinedProcessingError" => Decline {
            code: "processing_error",
            decline_code: "processing_error",
            message: "An error occurred while processing your card. Try again in a little bit.",
            param: "",
        },
        _ => return None,
    };
    Some(decline)
}

async fn create_charge(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, params, reservation) = match admit(&state, &headers, &body, "/v1/charges") {
        Admission::Execute {
            key,
            params,
            reservation,
        } => (key, params, reservation),
        Admission::Answered(response) => {
            state.latency().await;
            return response;
        }
    };
    // The key stays reserved while the charge "executes": a concurrent same-key request gets 409.
    state.latency().await;
    let answer = match ChargeRequest::parse(&params) {
        Ok(request) => charge(&state, &key, request, reservation.as_ref().map(|r| r.key())),
        Err(answer) => answer,
    };
    conclude(reservation, answer)
}

/// The effect: creates the charge (succeeded or failed), stores and counts it.
fn charge(state: &MockState, key: &ApiKey, request: ChargeRequest, idem: Option<&str>) -> Answer {
    let decline = request
        .source
        .as_deref()
        .and_then(decline_for_source)
        .or_else(|| {
            request
                .emails()
                .any(|e| e.contains("+decline"))
                .then_some(GENERIC_DECLINE)
        })
        .or_else(|| state.random_decline().then_some(GENERIC_DECLINE));
    let id = random_id("ch_", 24);
    let succeeded = decline.is_none();
    // An asynchronous payment method: the charge settles later, and says so by webhook.
    let pending = succeeded && request.source.as_deref().is_some_and(is_pending_source);
    let charge = Charge {
        id: id.clone(),
        object: "charge",
        amount: request.amount,
        amount_captured: if succeeded && request.capture {
            request.amount
        } else {
            0
        },
        amount_refunded: 0,
        balance_transaction: succeeded.then(|| random_id("txn_", 24)),
        captured: succeeded && request.capture,
        created: unix_now(),
        currency: request.currency,
        customer: request.customer,
        description: request.description,
        disputed: false,
        failure_code: decline.map(|d| d.code.to_string()),
        failure_message: decline.map(|d| d.message.to_string()),
        livemode: key.livemode,
        outcome: match decline {
            None => Outcome {
                network_status: "approved_by_network",
                reason: None,
                risk_level: "normal",
                seller_message: "Payment complete.",
                kind: "authorized",
            },
            Some(d) => Outcome {
                network_status: "declined_by_network",
                reason: Some(d.decline_code),
                risk_level: "normal",
                seller_message: "The bank did not return any further details with this decline.",
                kind: "issuer_declined",
            },
        },
        paid: succeeded,
        payment_intent: None,
        payment_method: random_id("card_", 24),
        receipt_email: request.receipt_email,
        refunded: false,
        status: if pending {
            "pending"
        } else if succeeded {
            "succeeded"
        } else {
            "failed"
        },
        metadata: request.metadata,
    };
    let body = serde_json::to_value(&charge).unwrap_or(Value::Null);
    if pending {
        let (state, id, trace) = (state.clone(), id.clone(), webhooks::current_trace());
        tokio::spawn(webhooks::in_trace(trace, async move {
            tokio::time::sleep(Duration::from_millis(state.webhooks().pending_ms)).await;
            settle(&state, &id);
        }));
    } else {
        let kind = if succeeded {
            "charge.succeeded"
        } else {
            "charge.failed"
        };
        webhooks::emit(state, webhooks::Endpoint::Stripe, 1, || {
            webhooks::stripe_event(kind, body.clone())
        });
    }
    let order_id = charge.metadata.get("order_id").cloned();
    state.with(|w| {
        w.stats.charge(succeeded, order_id.as_deref(), idem);
        w.stripe.insert_charge(charge);
    });
    match decline {
        None => Answer::ok(body),
        Some(d) => Answer {
            status: StatusCode::PAYMENT_REQUIRED,
            body: json!({"error": {
                "type": "card_error",
                "code": d.code,
                "decline_code": d.decline_code,
                "message": d.message,
                "param": d.param,
                "charge": id,
                "doc_url": format!("https://stripe.com/docs/error-codes/{}", d.code.replace('_', "-")),
            }}),
        },
    }
}

/// Payment methods whose charges come back `pending` and succeed later.
fn is_pending_source(source: &str) -> bool {
    matches!(source, "pm_card_pending" | "tok_pending")
}

/// A pending charge succeeds: `charge.succeeded` goes out at once.
fn settle(state: &MockState, id: &str) {
    let settled = state.with(|w| {
        let charge = w.stripe.charge_mut(id)?;
        charge.status = "succeeded";
        charge.paid = true;
        charge.captured = true;
        charge.amount_captured = charge.amount;
        charge.balance_transaction = Some(random_id("txn_", 24));
        serde_json::to_value(&*charge).ok()
    });
    if let Some(charge) = settled {
        webhooks::emit(state, webhooks::Endpoint::Stripe, 0, || {
            webhooks::stripe_event("charge.succeeded", charge)
        });
    }
}

/// `charge.refunded` for a refund just made on `charge`.
pub(crate) fn refunded(state: &MockState, charge: Value) {
    webhooks::emit(state, webhooks::Endpoint::Stripe, 1, || {
        webhooks::stripe_event("charge.refunded", charge)
    });
}

async fn get_charge(
    State(state): State<MockState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    state.latency().await;
    if let Err(answer) = authenticate(&headers) {
        return answer.into_response();
    }
    let found = state.with(|w| w.stripe.charge(&id).map(serde_json::to_value));
    match found {
        Some(Ok(charge)) => Answer::ok(charge),
        _ => Answer::not_found("charge", &id),
    }
    .into_response()
}

#[cfg(test)]
mod tests;
