//! Fake Shippo (providers.md §3): buy a label with `POST /transactions` (Form A from a `rate`,
//! Form B "instalabel" with `shipment` + `carrier_account` + `servicelevel_token`), find it again
//! with `GET /transactions` (newest first, `{"next","previous","results"}`) or
//! `GET /transactions/{id}`. Auth is `Authorization: ShippoToken …`; errors are DRF-shaped
//! ([`validate`]). Purchases are synchronous: the answer is always `status: SUCCESS`, whatever
//! `async` says. Shippo has no idempotency key: each accepted purchase is one more label. Label
//! files are served at `GET /labels/{object_id}.pdf`.

mod validate;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use crate::state::{MockState, random_digits, random_hex, unix_now};
use validate::{LabelRequest, Purchase};

pub(crate) fn routes() -> Router<MockState> {
    Router::new()
        .route("/transactions", get(list).post(create))
        .route("/transactions/", get(list).post(create))
        .route("/transactions/{id}", get(fetch))
        .route("/labels/{file}", get(label_file))
        .route("/refunds", post(create_refund))
        .route("/refunds/", post(create_refund))
}

/// Labels bought, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Store {
    transactions: Vec<Transaction>,
}

/// A Transaction object as providers.md 3.2 shows it.
#[derive(Debug, Clone, Serialize)]
struct Transaction {
    object_id: String,
    object_state: &'static str,
    status: &'static str,
    test: bool,
    object_created: String,
    object_updated: String,
    object_owner: &'static str,
    /// A rate id (Form A) or a simplified Rate object (Form B).
    rate: Value,
    tracking_number: String,
    tracking_status: &'static str,
    tracking_url_provider: String,
    label_url: String,
    commercial_invoice_url: Option<String>,
    eta: Option<String>,
    parcel: String,
    metadata: String,
    messages: Vec<Value>,
}

fn detail(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "detail": message }))).into_response()
}

/// Shippo's answer to an injected fault.
pub(crate) fn fault_response(status: StatusCode) -> Response {
    let message = match status.as_u16() {
        429 => "Request was throttled. Expected available in 1 second.".to_string(),
        500 => "A server error occurred.".to_string(),
        502 => "Bad gateway.".to_string(),
        503 => "Service temporarily unavailable, try again later.".to_string(),
        504 => "Gateway timeout.".to_string(),
        code => format!("Injected fault (HTTP {code})."),
    };
    detail(status, &message)
}

/// Shippo's 404.
pub(crate) fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not found.")
}

/// The token of `Authorization: ShippoToken <token>`, if well formed.
fn token(headers: &HeaderMap) -> Option<&str> {
    let (scheme, token) = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim()
        .split_once(' ')?;
    let token = token.trim();
    (scheme == "ShippoToken" && !token.is_empty()).then_some(token)
}

fn unauthorized() -> Response {
    detail(StatusCode::UNAUTHORIZED, "Invalid API token")
}

/// `http://<Host header>`, so URLs point back at this server however it was reached.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// The order a transaction's metadata names: `order A-1001` → `A-1001`; other text as is.
fn order_id(metadata: &str) -> Option<&str> {
    let id = metadata.strip_prefix("order ").unwrap_or(metadata).trim();
    (!id.is_empty()).then_some(id)
}

/// `2023-11-07T05:31:56Z` from Unix seconds (UTC).
fn rfc3339(secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `(provider, service level name)` for a service level token such as `usps_priority`.
fn carrier_of(servicelevel_token: &str) -> (String, String) {
    let (carrier, service) = servicelevel_token
        .split_once('_')
        .unwrap_or((servicelevel_token, ""));
    let provider = match carrier {
        "usps" => "USPS".to_string(),
        "ups" => "UPS".to_string(),
        "fedex" => "FedEx".to_string(),
        "dhl" => "DHL Express".to_string(),
        other => other.to_uppercase(),
    };
    let name = match servicelevel_token {
        "usps_priority" => "Priority Mail".to_string(),
        "usps_priority_express" => "Priority Mail Express".to_string(),
        "usps_ground_advantage" => "Ground Advantage".to_string(),
        _ => service
            .split('_')
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut chars = w.chars();
                chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" "),
    };
    (provider, name)
}

fn new_transaction(request: LabelRequest, test: bool, base: &str) -> Transaction {
    let object_id = random_hex(32);
    let now = rfc3339(unix_now());
    let rate = match request.purchase {
        Purchase::Rate(rate) => Value::String(rate),
        Purchase::Instalabel {
            carrier_account,
            servicelevel_token,
        } => {
            let (provider, servicelevel_name) = carrier_of(&servicelevel_token);
            json!({"object_id": random_hex(32), "amount": "5.50", "currency": "USD",
                   "provider": provider, "carrier_account": carrier_account,
                   "servicelevel_name": servicelevel_name, "servicelevel_token": servicelevel_token})
        }
    };
    let tracking_number = format!("9400{}", random_digits(18));
    Transaction {
        label_url: format!("{base}/labels/{object_id}.pdf"),
        tracking_url_provider: format!(
            "https://tools.usps.com/go/TrackConfirmAction_input?origTrackNum={tracking_number}"
        ),
        object_id,
        object_state: "VALID",
        status: "SUCCESS",
        test,
        object_created: now.clone(),
        object_updated: now,
        object_owner: "mock@cairn.local",
        rate,
        tracking_number,
        tracking_status: "UNKNOWN",
        commercial_invoice_url: None,
        eta: None,
        parcel: random_hex(32),
        metadata: request.metadata,
        messages: Vec::new(),
    }
}

async fn create(State(state): State<MockState>, headers: HeaderMap, body: Bytes) -> Response {
    state.latency().await;
    let Some(token) = token(&headers) else {
        return unauthorized();
    };
    let test = !token.starts_with("shippo_live_");
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => {
            return detail(
                StatusCode::BAD_REQUEST,
                &format!("JSON parse error - {err}"),
            );
        }
    };
    let request = match validate::validate(&body) {
        Ok(request) => request,
        Err(errors) => return (StatusCode::BAD_REQUEST, Json(errors)).into_response(),
    };
    let transaction = new_transaction(request, test, &base_url(&headers));
    let body = serde_json::to_value(&transaction).unwrap_or(Value::Null);
    tracking_events(&state, &transaction);
    state.with(|w| {
        w.stats.label(order_id(&transaction.metadata));
        w.shippo.transactions.push(transaction);
    });
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `track_updated` for a label just bought: TRANSIT after the webhook delay, DELIVERED after
/// twice it (carrying the transaction's metadata, as for a label bought through Shippo).
fn tracking_events(state: &MockState, transaction: &Transaction) {
    for (status, delays) in [("TRANSIT", 1), ("DELIVERED", 2)] {
        crate::webhooks::emit(state, crate::webhooks::Endpoint::Shippo, delays, || {
            let status_id = random_hex(32);
            let event = json!({
                "event": "track_updated",
                "test": transaction.test,
                "data": {
                    "carrier": "usps",
                    "tracking_number": transaction.tracking_number,
                    "transaction": transaction.object_id,
                    "metadata": transaction.metadata,
                    "tracking_status": {
                        "object_id": status_id,
                        "status": status,
                        "status_details": format!("mock: {status}"),
                        "status_date": rfc3339(unix_now()),
                    },
                },
            });
            (status_id, event)
        });
    }
}

/// `POST /refunds` `{"transaction": id, "async": false}`: voids an unused label. The refund
/// answers `SUCCESS` (a second one for the same label is refused), the transaction becomes
/// `REFUNDED`, and `transaction_updated` goes out.
async fn create_refund(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.latency().await;
    if token(&headers).is_none() {
        return unauthorized();
    }
    let Some(id) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["transaction"].as_str().map(str::to_string))
    else {
        return detail(
            StatusCode::BAD_REQUEST,
            "transaction: This field is required.",
        );
    };
    let refunded = state.with(|w| {
        let transaction = w
            .shippo
            .transactions
            .iter_mut()
            .find(|t| t.object_id == id)?;
        if transaction.status == "REFUNDED" {
            return Some(Err(()));
        }
        transaction.status = "REFUNDED";
        transaction.object_updated = rfc3339(unix_now());
        let order = order_id(&transaction.metadata).map(str::to_string);
        let value = serde_json::to_value(&*transaction).unwrap_or(Value::Null);
        w.stats.label_refund(order.as_deref());
        Some(Ok(value))
    });
    match refunded {
        None => not_found(),
        Some(Err(())) => detail(
            StatusCode::BAD_REQUEST,
            "This label has already been refunded.",
        ),
        Some(Ok(transaction)) => {
            crate::webhooks::emit(&state, crate::webhooks::Endpoint::Shippo, 1, || {
                let event =
                    json!({"event": "transaction_updated", "test": true, "data": transaction});
                (format!("{id}:REFUNDED"), event)
            });
            let now = rfc3339(unix_now());
            (
                StatusCode::CREATED,
                Json(json!({"object_id": random_hex(32), "object_created": now, "object_updated": now,
                            "object_owner": "mock@cairn.local", "status": "SUCCESS", "test": true,
                            "transaction": id})),
            )
                .into_response()
        }
    }
}

async fn fetch(
    State(state): State<MockState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    state.latency().await;
    if token(&headers).is_none() {
        return unauthorized();
    }
    let id = id.trim_end_matches('/');
    let found = state.with(|w| {
        w.shippo
            .transactions
            .iter()
            .find(|t| t.object_id == id)
            .and_then(|t| serde_json::to_value(t).ok())
    });
    match found {
        Some(transaction) => Json(transaction).into_response(),
        None => not_found(),
    }
}

async fn list(
    State(state): State<MockState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    state.latency().await;
    if token(&headers).is_none() {
        return unauthorized();
    }
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let results = param("results")
        .and_then(|r| r.parse::<usize>().ok())
        .unwrap_or(5)
        .clamp(1, 100);
    let Some(page) = param("page").map_or(Some(1), |p| p.parse::<usize>().ok().filter(|p| *p >= 1))
    else {
        return detail(StatusCode::NOT_FOUND, "Invalid page.");
    };
    let rate = param("rate");
    let status = param("object_status");
    let (count, items) = state.with(|w| {
        let matching: Vec<&Transaction> = w
            .shippo
            .transactions
            .iter()
            .rev()
            .filter(|t| rate.is_none_or(|r| t.rate.as_str() == Some(r) || t.rate["object_id"] == r))
            .filter(|t| status.is_none_or(|s| t.status == s))
            .collect();
        let items: Vec<Value> = matching
            .iter()
            .skip((page - 1) * results)
            .take(results)
            .filter_map(|t| serde_json::to_value(t).ok())
            .collect();
        (matching.len(), items)
    });
    if page > 1 && (page - 1) * results >= count {
        return detail(StatusCode::NOT_FOUND, "Invalid page.");
    }
    let base = base_url(&headers);
    let link = |p: usize| format!("{base}/transactions?page={p}&results={results}");
    let next = (page * results < count).then(|| link(page + 1));
    let previous = (page > 1).then(|| link(page - 1));
    Json(json!({"count": count, "next": next, "previous": previous, "results": items}))
        .into_response()
}

/// A tiny placeholder PDF for a label this fake sold.
async fn label_file(State(state): State<MockState>, Path(file): Path<String>) -> Response {
    let Some(id) = file.strip_suffix(".pdf") else {
        return not_found();
    };
    if !state.with(|w| w.shippo.transactions.iter().any(|t| t.object_id == id)) {
        return not_found();
    }
    let pdf = format!("%PDF-1.4\n% cairn-mock shipping label {id}\n%%EOF\n");
    let mut response = pdf.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        assert_eq!(rfc3339(1_699_334_716), "2023-11-07T05:25:16Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn order_ids_come_from_metadata() {
        assert_eq!(order_id("order A-1001"), Some("A-1001"));
        assert_eq!(order_id("A-1001"), Some("A-1001"));
        assert_eq!(order_id(""), None);
        assert_eq!(order_id("order "), None);
    }

    #[test]
    fn service_levels_name_their_carrier() {
        assert_eq!(
            carrier_of("usps_priority"),
            ("USPS".to_string(), "Priority Mail".to_string())
        );
        assert_eq!(
            carrier_of("ups_next_day_air"),
            ("UPS".to_string(), "Next Day Air".to_string())
        );
    }

    #[test]
    fn only_shippo_tokens_pass() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            token(&headers).map(str::to_string)
        };
        assert_eq!(
            with("ShippoToken shippo_test_1").as_deref(),
            Some("shippo_test_1")
        );
        assert_eq!(with("Bearer shippo_test_1"), None);
        assert_eq!(with("ShippoToken  "), None);
    }

    #[test]
    fn transactions_echo_metadata_and_point_at_their_label() {
        let request = LabelRequest {
            purchase: Purchase::Instalabel {
                carrier_account: "acct".into(),
                servicelevel_token: "usps_priority".into(),
            },
            metadata: "order A-1".into(),
        };
        let t = new_transaction(request, true, "http://127.0.0.1:9");
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["status"], "SUCCESS");
        assert_eq!(json["metadata"], "order A-1");
        assert_eq!(json["rate"]["provider"], "USPS");
        assert_eq!(
            json["label_url"],
            format!("http://127.0.0.1:9/labels/{}.pdf", t.object_id)
        );
        assert_eq!(t.tracking_number.len(), 22);
    }
}
