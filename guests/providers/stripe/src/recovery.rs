//! `cairn:commerce/payments-recovery` over Stripe: how an in-doubt call can be repeated, and the
//! charge search that finds a charge made before a crash.
//!
//! Both `POST`s carry the host's idempotency key, so Stripe replays the first answer to a
//! repeated call: `create-charge` and `refund-charge` are `idempotency-key` safe. `find-charge`
//! asks the Search API (`GET /v1/charges/search?query=metadata['order_id']:'<order>'`, the
//! reference `create-charge` writes) and answers the first `succeeded` charge. Search is
//! eventually consistent (normally under a minute behind), which is why the host prefers the
//! idempotency key for payments.

use cairn_sdk::http::{Request, RequestBuilder, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::bindings::exports::cairn::durable::recovery::RetrySafety;
use crate::request::{AUTHORIZATION, Settings};
use crate::response;
use cairn_provider::types::{Charge, ChargeRequest, ProviderError};

/// How `operation` can be repeated: both Stripe operations send an `Idempotency-Key`.
pub fn retry_safety(operation: &str) -> RetrySafety {
    match operation {
        "create-charge" | "refund-charge" => RetrySafety::IdempotencyKey,
        _ => RetrySafety::None,
    }
}

/// The search query for `order_id`: `metadata['order_id']:'<order>'`, with `\` and `'` in the
/// value escaped by a backslash as Stripe's query language wants.
pub fn search_query(order_id: &str) -> String {
    let mut escaped = String::with_capacity(order_id.len());
    for c in order_id.chars() {
        if c == '\\' || c == '\'' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("metadata['order_id']:'{escaped}'")
}

/// `GET /v1/charges/search?query=...` for the charges of `req.order_id`.
pub fn find_charge(settings: &Settings, req: &ChargeRequest) -> RequestBuilder {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", &search_query(&req.order_id))
        .finish();
    let mut builder = Request::get(format!("{}/v1/charges/search?{query}", settings.api_base))
        .header("Authorization", AUTHORIZATION)
        .header("Accept", "application/json");
    if let Some(version) = &settings.stripe_version {
        builder = builder.header("Stripe-Version", version.as_str());
    }
    builder
}

#[derive(Deserialize)]
struct SearchResult {
    #[serde(default)]
    data: Vec<Value>,
}

#[derive(Deserialize)]
struct FoundCharge {
    id: String,
    amount: Option<u64>,
    currency: Option<String>,
    status: Option<String>,
    metadata: Option<Map<String, Value>>,
}

/// The answer to the charge search: the first `succeeded` charge of the order, `None` when
/// there is none. A charge whose `metadata.order_id` names another order is skipped; errors map
/// as for `create-charge`.
pub fn found_charge(
    response: &Response,
    req: &ChargeRequest,
) -> Result<Option<Charge>, ProviderError> {
    if !response.is_success() {
        return Err(response::error(response));
    }
    let result: SearchResult = response.json().map_err(|err| {
        ProviderError::Unavailable(format!(
            "stripe HTTP {}: unreadable search result: {err}",
            response.status()
        ))
    })?;
    let found = result
        .data
        .into_iter()
        .filter_map(|item| serde_json::from_value::<FoundCharge>(item).ok())
        .find(|charge| {
            charge.status.as_deref() == Some("succeeded") && same_order(charge, &req.order_id)
        });
    Ok(found.map(|charge| Charge {
        id: charge.id,
        amount: charge.amount.unwrap_or(req.amount),
        currency: charge.currency.unwrap_or_else(|| req.currency.clone()),
        status: "succeeded".to_owned(),
    }))
}

/// Whether the charge is not marked as another order's (no `metadata.order_id` is accepted: the
/// search already matched it).
fn same_order(charge: &FoundCharge, order_id: &str) -> bool {
    match charge.metadata.as_ref().and_then(|m| m.get("order_id")) {
        Some(Value::String(id)) => id == order_id,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    fn charge_req(order_id: &str) -> ChargeRequest {
        ChargeRequest {
            amount: 1099,
            currency: "usd".into(),
            payment_method: None,
            description: format!("Order {order_id}"),
            order_id: order_id.into(),
            customer_email: None,
        }
    }

    fn respond(status: u16, body: &str) -> Response {
        Response::new(status, Vec::new(), body.as_bytes().to_vec())
    }

    fn query_of(request: &Request) -> Vec<(String, String)> {
        let (_, query) = request.url().split_once('?').unwrap();
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn both_operations_are_idempotent_by_key() {
        assert_eq!(retry_safety("create-charge"), RetrySafety::IdempotencyKey);
        assert_eq!(retry_safety("refund-charge"), RetrySafety::IdempotencyKey);
        assert_eq!(retry_safety("capture-charge"), RetrySafety::None);
        assert_eq!(retry_safety(""), RetrySafety::None);
    }

    #[test]
    fn search_wire_format() {
        let request = find_charge(&settings(&[]), &charge_req("A-1001"))
            .build()
            .unwrap();
        assert_eq!(request.method(), "GET");
        assert_eq!(
            request.url(),
            "https://api.stripe.com/v1/charges/search\
             ?query=metadata%5B%27order_id%27%5D%3A%27A-1001%27"
        );
        assert_eq!(
            query_of(&request),
            [(
                "query".to_owned(),
                "metadata['order_id']:'A-1001'".to_owned()
            )]
        );
        assert_eq!(
            request.headers(),
            [
                (
                    "Authorization".to_owned(),
                    "Bearer {{secret:STRIPE_API_KEY}}".to_owned()
                ),
                ("Accept".to_owned(), "application/json".to_owned()),
            ]
        );
        assert!(request.body().is_empty());
    }

    #[test]
    fn search_honours_api_base_and_version() {
        let s = settings(&[
            ("api-base", "http://127.0.0.1:4010/stripe/"),
            ("stripe-version", "2025-02-24.acacia"),
        ]);
        let request = find_charge(&s, &charge_req("o 1")).build().unwrap();
        assert!(
            request
                .url()
                .starts_with("http://127.0.0.1:4010/stripe/v1/charges/search?query="),
            "{}",
            request.url()
        );
        assert_eq!(request.header("Stripe-Version"), Some("2025-02-24.acacia"));
        assert_eq!(
            query_of(&request)[0].1,
            "metadata['order_id']:'o 1'",
            "spaces survive the encoding"
        );
    }

    #[test]
    fn quotes_and_backslashes_in_the_order_are_escaped() {
        assert_eq!(search_query(r"it's\x"), r"metadata['order_id']:'it\'s\\x'");
        let request = find_charge(&settings(&[]), &charge_req("a&b=c'd"))
            .build()
            .unwrap();
        assert_eq!(query_of(&request)[0].1, r"metadata['order_id']:'a&b=c\'d'");
    }

    #[test]
    fn the_first_succeeded_charge_is_found() {
        let body = r#"{"object":"search_result","url":"/v1/charges/search","has_more":false,
            "next_page":null,"data":[
              {"id":"ch_failed","object":"charge","amount":1099,"currency":"usd","status":"failed",
               "metadata":{"order_id":"A-1001"}},
              {"id":"ch_ok","object":"charge","amount":1099,"currency":"usd","status":"succeeded",
               "metadata":{"order_id":"A-1001"}},
              {"id":"ch_later","object":"charge","amount":1099,"currency":"usd","status":"succeeded",
               "metadata":{"order_id":"A-1001"}}]}"#;
        let found = found_charge(&respond(200, body), &charge_req("A-1001")).unwrap();
        assert_eq!(
            found,
            Some(Charge {
                id: "ch_ok".into(),
                amount: 1099,
                currency: "usd".into(),
                status: "succeeded".into(),
            })
        );
    }

    #[test]
    fn missing_fields_come_from_the_request_and_other_orders_are_skipped() {
        let body = r#"{"data":[
              {"id":"ch_other","status":"succeeded","metadata":{"order_id":"A-1002"}},
              {"id":"ch_pending","status":"pending"},
              "not a charge",
              {"id":"ch_bare","status":"succeeded"}]}"#;
        let found = found_charge(&respond(200, body), &charge_req("A-1001"))
            .unwrap()
            .unwrap();
        assert_eq!(found.id, "ch_bare");
        assert_eq!(found.amount, 1099);
        assert_eq!(found.currency, "usd");
    }

    #[test]
    fn nothing_found_is_none() {
        let req = charge_req("A-1001");
        let empty = r#"{"object":"search_result","has_more":false,"next_page":null,"data":[]}"#;
        assert_eq!(found_charge(&respond(200, empty), &req).unwrap(), None);
        let failed_only = r#"{"data":[{"id":"ch_f","status":"failed"}]}"#;
        assert_eq!(
            found_charge(&respond(200, failed_only), &req).unwrap(),
            None
        );
        assert_eq!(found_charge(&respond(200, "{}"), &req).unwrap(), None);
    }

    #[test]
    fn errors_map_as_for_create_charge() {
        let req = charge_req("A-1001");
        assert!(matches!(
            found_charge(&respond(401, r#"{"error":{"message":"Invalid API Key"}}"#), &req),
            Err(ProviderError::Unauthorized(m)) if m == "Invalid API Key"
        ));
        assert!(matches!(
            found_charge(
                &respond(400, r#"{"error":{"type":"invalid_request_error","message":"bad query"}}"#),
                &req
            ),
            Err(ProviderError::InvalidRequest(m)) if m == "bad query"
        ));
        assert_eq!(
            found_charge(&respond(429, ""), &req),
            Err(ProviderError::RateLimited(None))
        );
        assert!(matches!(
            found_charge(&respond(503, ""), &req),
            Err(ProviderError::Unavailable(_))
        ));
        assert!(matches!(
            found_charge(&respond(200, "not json"), &req),
            Err(ProviderError::Unavailable(m)) if m.contains("unreadable search result")
        ));
    }
}
