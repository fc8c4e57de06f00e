//! Unit tests of the Stripe wire rules: auth, form parameters, metadata, declines, effects.

use axum::http::header;
use base64::Engine;

use super::wire::{mask_key, parse_form};
use super::*;
use crate::MockConfig;

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn auth(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value.parse().unwrap());
    headers
}

#[test]
fn bearer_and_basic_secret_keys_authenticate() {
    assert!(!authenticate(&auth("Bearer sk_test_123")).unwrap().livemode);
    assert!(authenticate(&auth("Bearer sk_live_123")).unwrap().livemode);
    let basic = base64::engine::general_purpose::STANDARD.encode("sk_test_123:");
    assert!(authenticate(&auth(&format!("Basic {basic}"))).is_ok());
    for bad in [
        "Bearer pk_test_123",
        "Bearer ",
        "Token sk_test_1",
        "Bearer sk_",
    ] {
        let err = authenticate(&auth(bad)).err().unwrap();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(err.body["error"]["type"], "invalid_request_error");
    }
    assert!(authenticate(&HeaderMap::new()).is_err());
}

#[test]
fn invalid_keys_are_masked_in_messages() {
    assert_eq!(mask_key("sk_test_abcdefgh1234"), "sk_test_********1234");
    assert_eq!(mask_key("pk_1"), "****");
}

#[test]
fn parses_the_documented_charge() {
    let form = "amount=1099&currency=usd&source=tok_visa&description=Order%20A-1001&metadata[order_id]=A-1001";
    let request = ChargeRequest::parse(&parse_form(form.as_bytes()).unwrap()).unwrap();
    assert_eq!(request.amount, 1099);
    assert_eq!(request.currency, "usd");
    assert_eq!(request.source.as_deref(), Some("tok_visa"));
    assert_eq!(request.description.as_deref(), Some("Order A-1001"));
    assert_eq!(request.metadata["order_id"], "A-1001");
    assert!(request.capture);
    let encoded = "amount=1099&currency=usd&customer=cus_1&metadata%5Border_id%5D=A-2";
    let request = ChargeRequest::parse(&parse_form(encoded.as_bytes()).unwrap()).unwrap();
    assert_eq!(request.metadata["order_id"], "A-2");
}

#[test]
fn validation_errors_name_the_param() {
    for (pairs, param, code) in [
        (
            vec![("currency", "usd"), ("source", "tok_visa")],
            "amount",
            "parameter_missing",
        ),
        (
            vec![
                ("amount", "ten"),
                ("currency", "usd"),
                ("source", "tok_visa"),
            ],
            "amount",
            "parameter_invalid_integer",
        ),
        (
            vec![
                ("amount", "49"),
                ("currency", "usd"),
                ("source", "tok_visa"),
            ],
            "amount",
            "amount_too_small",
        ),
        (
            vec![("amount", "100"), ("source", "tok_visa")],
            "currency",
            "parameter_missing",
        ),
        (
            vec![
                ("amount", "100"),
                ("currency", "USD"),
                ("source", "tok_visa"),
            ],
            "currency",
            "parameter_invalid_string",
        ),
        (
            vec![("amount", "100"), ("currency", "usd")],
            "source",
            "parameter_missing",
        ),
        (
            vec![("amount", "100"), ("currency", "usd"), ("source", "visa")],
            "source",
            "resource_missing",
        ),
        (
            vec![
                ("amount", "100"),
                ("currency", "usd"),
                ("source", "tok_visa"),
                ("colour", "red"),
            ],
            "colour",
            "parameter_unknown",
        ),
        (
            vec![
                ("amount", "100"),
                ("currency", "usd"),
                ("source", "tok_visa"),
                ("receipt_email", "nope"),
            ],
            "receipt_email",
            "email_invalid",
        ),
    ] {
        let err = ChargeRequest::parse(&params(&pairs)).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST, "{pairs:?}");
        assert_eq!(err.body["error"]["type"], "invalid_request_error");
        assert_eq!(err.body["error"]["param"], param, "{pairs:?}");
        assert_eq!(err.body["error"]["code"], code, "{pairs:?}");
    }
}

#[test]
fn metadata_follows_stripe_rules() {
    let mut metadata = BTreeMap::new();
    assert!(apply_metadata(&mut metadata, "metadata[a]", "1").unwrap());
    assert!(apply_metadata(&mut metadata, "metadata[b]", "2").unwrap());
    assert!(apply_metadata(&mut metadata, "metadata[a]", "").unwrap());
    assert_eq!(metadata.keys().collect::<Vec<_>>(), ["b"]);
    assert!(apply_metadata(&mut metadata, "metadata", "").unwrap());
    assert!(metadata.is_empty());
    assert!(!apply_metadata(&mut metadata, "amount", "1").unwrap());
    assert!(apply_metadata(&mut metadata, "metadata[a][b]", "1").is_err());
    assert!(apply_metadata(&mut metadata, &format!("metadata[{}]", "k".repeat(41)), "1").is_err());
    assert!(apply_metadata(&mut metadata, "metadata[k]", &"v".repeat(501)).is_err());
}

#[test]
fn decline_tokens_map_to_codes() {
    let codes = |s: &str| decline_for_source(s).map(|d| (d.code, d.decline_code));
    assert_eq!(codes("tok_visa"), None);
    assert_eq!(
        codes("tok_chargeDeclined"),
        Some(("card_declined", "generic_decline"))
    );
    assert_eq!(
        codes("tok_chargeDeclinedInsufficientFunds"),
        Some(("card_declined", "insufficient_funds"))
    );
    assert_eq!(
        codes("tok_chargeDeclinedExpiredCard"),
        Some(("expired_card", "expired_card"))
    );
    assert_eq!(
        codes("tok_chargeDeclinedIncorrectCvc"),
        Some(("incorrect_cvc", "incorrect_cvc"))
    );
    assert_eq!(
        codes("tok_chargeDeclinedProcessingError"),
        Some(("processing_error", "processing_error"))
    );
    assert_eq!(
        codes("pm_card_chargeDeclined"),
        Some(("card_declined", "generic_decline"))
    );
}

fn request(pairs: &[(&str, &str)]) -> ChargeRequest {
    ChargeRequest::parse(&params(pairs)).unwrap()
}

#[test]
fn charges_are_stored_and_counted() {
    let state = MockState::new(MockConfig {
        decline_rate: 0.0,
        delay_ms: (0, 0),
    });
    let key = ApiKey { livemode: false };
    let ok = charge(
        &state,
        &key,
        request(&[
            ("amount", "1099"),
            ("currency", "usd"),
            ("source", "tok_visa"),
            ("metadata[order_id]", "A-1"),
        ]),
        Some("k1"),
    );
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["status"], "succeeded");
    assert_eq!(ok.body["amount_captured"], 1099);
    assert_eq!(ok.body["paid"], true);
    assert!(ok.body["id"].as_str().unwrap().starts_with("ch_"));
    let declined = charge(
        &state,
        &key,
        request(&[
            ("amount", "1099"),
            ("currency", "usd"),
            ("source", "tok_visa"),
            ("metadata[order_id]", "A-2"),
            ("metadata[customer_email]", "bob+decline@example.com"),
        ]),
        None,
    );
    assert_eq!(declined.status, StatusCode::PAYMENT_REQUIRED);
    let error = &declined.body["error"];
    assert_eq!(error["type"], "card_error");
    assert_eq!(error["decline_code"], "generic_decline");
    let failed_id = error["charge"].as_str().unwrap().to_string();
    let failed = state
        .with(|w| w.stripe.charge(&failed_id).cloned())
        .unwrap();
    assert_eq!((failed.status, failed.paid), ("failed", false));
    assert_eq!(failed.failure_code.as_deref(), Some("card_declined"));
    let stats = state.stats();
    assert_eq!(
        (
            stats.charges.total,
            stats.charges.succeeded,
            stats.charges.declined
        ),
        (2, 1, 1)
    );
    assert_eq!(stats.charges.by_order.get("A-1"), Some(&1));
    assert_eq!(stats.charges.by_order.get("A-2"), None);
    assert_eq!(stats.charges.by_idempotency_key.get("k1"), Some(&1));
}

#[test]
fn receipt_email_with_plus_decline_declines_and_rate_one_always_declines() {
    let state = MockState::new(MockConfig {
        decline_rate: 1.0,
        delay_ms: (0, 0),
    });
    let key = ApiKey { livemode: false };
    let answer = charge(
        &state,
        &key,
        request(&[
            ("amount", "500"),
            ("currency", "usd"),
            ("source", "tok_visa"),
        ]),
        None,
    );
    assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED);
    state.set_config(MockConfig {
        decline_rate: 0.0,
        delay_ms: (0, 0),
    });
    let answer = charge(
        &state,
        &key,
        request(&[
            ("amount", "500"),
            ("currency", "usd"),
            ("source", "tok_visa"),
            ("receipt_email", "a+decline@example.com"),
        ]),
        None,
    );
    assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED);
}

#[test]
fn only_success_and_declines_are_saved_for_replay() {
    let answer = |status| Answer::error(status, "x", None, "m", None);
    assert!(Answer::ok(json!({})).saveable());
    assert!(answer(StatusCode::PAYMENT_REQUIRED).saveable());
    assert!(answer(StatusCode::INTERNAL_SERVER_ERROR).saveable());
    assert!(!answer(StatusCode::BAD_REQUEST).saveable());
    assert!(!answer(StatusCode::UNAUTHORIZED).saveable());
}
