//! The fake Adyen over real HTTP: payments, refusals, idempotent replays, refunds and reversals,
//! errors in Adyen's shape, effects counted in the shared stats and requests recorded with the
//! API key redacted.

use serde_json::{Value, json};

use crate::{MockConfig, MockServer, Provider};

async fn start() -> (MockServer, reqwest::Client) {
    let config = MockConfig {
        decline_rate: 0.0,
        delay_ms: (0, 0),
    };
    let server = MockServer::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    (server, reqwest::Client::new())
}

fn payment(order: &str, email: &str) -> Value {
    json!({
        "amount": {"value": 5000, "currency": "USD"},
        "reference": order,
        "merchantAccount": "CairnShopECOM",
        "paymentMethod": {"type": "scheme", "storedPaymentMethodId": "8415718415172204"},
        "shopperEmail": email,
        "metadata": {"orderId": order},
    })
}

async fn post(
    http: &reqwest::Client,
    server: &MockServer,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut request = http
        .post(format!("{}{path}", server.base_url()))
        .header("x-api-key", "AQEyhmfxKo_test_key")
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn payments_are_authorised_once_per_idempotency_key() {
    let (server, http) = start().await;
    let body = payment("order-1", "alice@example.com");
    let (status, first) = post(&http, &server, "/v71/payments", Some("k1"), &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["resultCode"], "Authorised");
    assert_eq!(first["amount"], json!({"currency": "USD", "value": 5000}));
    assert_eq!(first["merchantReference"], "order-1");
    let psp = first["pspReference"].as_str().unwrap();
    assert_eq!(psp.len(), 16);
    assert!(
        psp.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    );

    let (status, again) = post(&http, &server, "/v71/payments", Some("k1"), &body).await;
    assert_eq!(
        (status, &again),
        (200, &first),
        "the same key replays the answer"
    );
    let other = payment("order-2", "alice@example.com");
    let (status, err) = post(&http, &server, "/v71/payments", Some("k1"), &other).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["errorCode"], "704");

    let stats = server.stats();
    assert_eq!(stats.charges.by_order["order-1"], 1);
    assert_eq!(stats.charges.by_idempotency_key["k1"], 1);
    assert_eq!(stats.charges.succeeded, 1);
    assert_eq!(stats.replays, 1);
    assert_eq!(stats.requests.adyen, 3);

    let recorded = server.state().requests(Some(Provider::Adyen));
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[0].path, "/v71/payments");
    assert_eq!(recorded[0].headers["x-api-key"], "<redacted>");
    assert_eq!(recorded[0].headers["idempotency-key"], "k1");
    let sent: Value = serde_json::from_str(&recorded[0].body).unwrap();
    assert_eq!(sent, body);
}

#[tokio::test]
async fn a_decline_email_is_refused() {
    let (server, http) = start().await;
    let body = payment("order-d", "bob+decline@example.com");
    let (status, answer) = post(&http, &server, "/v71/payments", Some("kd"), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["resultCode"], "Refused");
    assert_eq!(answer["refusalReason"], "Refused");
    assert_eq!(answer["refusalReasonCode"], "2");
    let stats = server.stats();
    assert_eq!((stats.charges.declined, stats.charges.succeeded), (1, 0));
    assert!(!stats.charges.by_order.contains_key("order-d"));
    assert_eq!(stats.charges.by_idempotency_key["kd"], 1);
}

#[tokio::test]
async fn errors_use_adyens_shape() {
    let (server, http) = start().await;
    let response = http
        .post(format!("{}/v71/payments", server.base_url()))
        .json(&payment("o", "a@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorType"], "security");
    assert_eq!(body["status"], 401);

    let mut lower = payment("o", "a@example.com");
    lower["amount"]["currency"] = json!("usd");
    let (status, body) = post(&http, &server, "/v71/payments", None, &lower).await;
    assert_eq!((status, body["errorCode"].as_str()), (422, Some("138")));
    let mut nameless = payment("", "a@example.com");
    nameless["reference"] = json!("");
    let (status, body) = post(&http, &server, "/v71/payments", None, &nameless).await;
    assert_eq!((status, body["errorCode"].as_str()), (422, Some("130")));
    let mut no_merchant = payment("o", "a@example.com");
    no_merchant["merchantAccount"] = json!("");
    let (status, body) = post(&http, &server, "/v71/payments", None, &no_merchant).await;
    assert_eq!((status, body["errorCode"].as_str()), (403, Some("901")));
    let (status, body) = post(&http, &server, "/v71/nothing", None, &json!({})).await;
    assert_eq!((status, body["status"].as_u64()), (404, Some(404)));
    assert_eq!(server.stats().charges.total, 0);
}

#[tokio::test]
async fn refunds_and_reversals_need_a_known_payment_and_an_amount_left() {
    let (server, http) = start().await;
    let (_, paid) = post(
        &http,
        &server,
        "/v71/payments",
        Some("kp"),
        &payment("order-r", "a@example.com"),
    )
    .await;
    let psp = paid["pspReference"].as_str().unwrap();
    let refund = json!({
        "merchantAccount": "CairnShopECOM",
        "amount": {"value": 1000, "currency": "USD"},
        "reference": "order-r",
    });
    let path = format!("/v71/payments/{psp}/refunds");
    let (status, first) = post(&http, &server, &path, Some("kr"), &refund).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "received");
    assert_eq!(first["paymentPspReference"], psp);
    assert_eq!(first["amount"]["value"], 1000);
    let (_, again) = post(&http, &server, &path, Some("kr"), &refund).await;
    assert_eq!(again, first);

    let reversal = json!({"merchantAccount": "CairnShopECOM", "reference": "order-r"});
    let path = format!("/v71/payments/{psp}/reversals");
    let (status, reversed) = post(&http, &server, &path, Some("kv"), &reversal).await;
    assert_eq!(status, 201, "{reversed}");
    let (status, nothing_left) = post(&http, &server, &path, None, &reversal).await;
    assert_eq!(
        (status, nothing_left["errorCode"].as_str()),
        (422, Some("137"))
    );
    let (status, unknown) = post(
        &http,
        &server,
        "/v71/payments/NOSUCHPAYMENT000/refunds",
        None,
        &refund,
    )
    .await;
    assert_eq!((status, unknown["errorCode"].as_str()), (422, Some("167")));
    let stats = server.stats();
    assert_eq!(stats.refunds.by_charge[psp], 2);
}
