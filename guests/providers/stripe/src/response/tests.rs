//! Stripe answers, as documented, and the provider errors they become.

use super::*;

fn charge_req() -> ChargeRequest {
    ChargeRequest {
        amount: 1099,
        currency: "usd".into(),
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

fn charge_err(status: u16, headers: &[(&str, &str)], body: &str) -> ProviderError {
    charge(&respond(status, headers, body), &charge_req()).unwrap_err()
}

#[test]
fn a_successful_charge() {
    let body = r#"{"id":"ch_3MmlLrLkdIwHu7ix0snN0B15","object":"charge","amount":1099,
        "amount_captured":1099,"currency":"usd","description":"Order A-1001","paid":true,
        "metadata":{"order_id":"A-1001"},"status":"succeeded","failure_code":null}"#;
    let ch = charge(
        &respond(200, &[("Request-Id", "req_1")], body),
        &charge_req(),
    )
    .unwrap();
    assert_eq!(ch.id, "ch_3MmlLrLkdIwHu7ix0snN0B15");
    assert_eq!(ch.amount, 1099);
    assert_eq!(ch.currency, "usd");
    assert_eq!(ch.status, "succeeded");
}

#[test]
fn a_decline_with_decline_code() {
    let body = r#"{"error":{"type":"card_error","code":"card_declined","decline_code":"generic_decline",
        "message":"Your card was declined.","param":"","charge":"ch_3Mx",
        "doc_url":"https://stripe.com/docs/error-codes/card-declined"}}"#;
    match charge_err(402, &[], body) {
        ProviderError::Declined(d) => {
            assert_eq!(d.code, "generic_decline");
            assert_eq!(d.message, "Your card was declined.");
            assert_eq!(d.charge_id.as_deref(), Some("ch_3Mx"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_decline_without_decline_code_uses_code() {
    let body = r#"{"error":{"type":"card_error","code":"expired_card","message":"Your card has expired."}}"#;
    match charge_err(402, &[], body) {
        ProviderError::Declined(d) => {
            assert_eq!(d.code, "expired_card");
            assert_eq!(d.charge_id, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_charge_object_is_a_decline() {
    let body = r#"{"id":"ch_f","amount":1099,"currency":"usd","status":"failed",
        "failure_code":"card_declined","failure_message":"Your card was declined."}"#;
    match charge_err(200, &[], body) {
        ProviderError::Declined(d) => {
            assert_eq!(d.code, "card_declined");
            assert_eq!(d.charge_id.as_deref(), Some("ch_f"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn status_mapping() {
    let invalid = r#"{"error":{"type":"invalid_request_error","code":"parameter_missing",
        "message":"Missing required param: amount.","param":"amount"}}"#;
    assert!(matches!(
        charge_err(400, &[], invalid),
        ProviderError::InvalidRequest(m) if m == "Missing required param: amount."
    ));
    assert!(matches!(
        charge_err(404, &[], r#"{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such token: 'tok_x'"}}"#),
        ProviderError::InvalidRequest(m) if m == "No such token: 'tok_x'"
    ));
    assert!(matches!(
        charge_err(401, &[], r#"{"error":{"type":"invalid_request_error","message":"Invalid API Key provided: sk_test_****"}}"#),
        ProviderError::Unauthorized(m) if m.starts_with("Invalid API Key")
    ));
    assert!(matches!(
        charge_err(403, &[], "{}"),
        ProviderError::Unauthorized(_)
    ));
    assert_eq!(
        charge_err(
            429,
            &[("Retry-After", "2")],
            r#"{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Too many requests"}}"#
        ),
        ProviderError::RateLimited(Some(2000))
    );
    assert_eq!(charge_err(429, &[], ""), ProviderError::RateLimited(None));
    for status in [409, 424, 500, 502, 503, 504] {
        assert!(
            matches!(charge_err(status, &[], r#"{"error":{"type":"api_error","message":"boom"}}"#),
                ProviderError::Unavailable(m) if m == format!("stripe HTTP {status}: boom")),
            "{status}"
        );
    }
    assert!(matches!(
        charge_err(502, &[], "<html>bad gateway</html>"),
        ProviderError::Unavailable(m) if m == "stripe HTTP 502: stripe answered HTTP 502"
    ));
}

#[test]
fn stripe_should_retry_overrides_the_status() {
    assert!(matches!(
        charge_err(500, &[("Stripe-Should-Retry", "false")], r#"{"error":{"type":"api_error","message":"stored"}}"#),
        ProviderError::InvalidRequest(m) if m == "stored"
    ));
    assert!(matches!(
        charge_err(
            400,
            &[("stripe-should-retry", "true")],
            r#"{"error":{"type":"invalid_request_error","message":"lock"}}"#
        ),
        ProviderError::Unavailable(_)
    ));
    assert_eq!(
        charge_err(
            429,
            &[("Stripe-Should-Retry", "true"), ("Retry-After", "1")],
            ""
        ),
        ProviderError::RateLimited(Some(1000))
    );
    // A decline stays a decline whatever the header says.
    assert!(matches!(
        charge_err(
            402,
            &[("Stripe-Should-Retry", "true")],
            r#"{"error":{"type":"card_error","code":"card_declined","message":"no"}}"#
        ),
        ProviderError::Declined(_)
    ));
}

#[test]
fn an_unreadable_success_is_unavailable() {
    assert!(matches!(
        charge_err(200, &[], "not json"),
        ProviderError::Unavailable(_)
    ));
}

#[test]
fn refunds() {
    let req = RefundRequest {
        charge_id: "ch_1NirD82eZvKYlo2CIvbtLWuY".into(),
        amount: None,
        reason: None,
        order_id: "A-1001".into(),
    };
    let body = r#"{"id":"re_1Nispe2eZvKYlo2Cd31jOCgZ","object":"refund","amount":1000,
        "charge":"ch_1NirD82eZvKYlo2CIvbtLWuY","currency":"usd","metadata":{},
        "payment_intent":"pi_1","reason":null,"status":"succeeded","created":1692942318}"#;
    let r = refund(&respond(200, &[], body), &req).unwrap();
    assert_eq!(r.id, "re_1Nispe2eZvKYlo2Cd31jOCgZ");
    assert_eq!(r.charge_id, "ch_1NirD82eZvKYlo2CIvbtLWuY");
    assert_eq!(r.amount, 1000);
    assert_eq!(r.status, "succeeded");

    let already = r#"{"error":{"type":"invalid_request_error","code":"charge_already_refunded",
        "message":"Charge ch_1 has already been refunded."}}"#;
    assert!(matches!(
        refund(&respond(400, &[], already), &req).unwrap_err(),
        ProviderError::InvalidRequest(m) if m.contains("already been refunded")
    ));
}
