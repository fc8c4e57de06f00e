//! The fake provider APIs over real HTTP: a `MockServer` on `127.0.0.1:0`, driven with reqwest as
//! the provider components would drive the real APIs, counting effects through `/_mock/stats`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cairn_mock::{MockConfig, MockServer, Stats};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

const STRIPE_KEY: &str = "Bearer sk_test_4eC39HqLyjWDarjtT1zdp7dc";
const SENDGRID_KEY: &str = "Bearer SG.test-key.secret";
const SHIPPO_KEY: &str = "ShippoToken shippo_test_0123456789";

async fn start(config: MockConfig) -> (MockServer, Client) {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = MockServer::start(addr, config)
        .await
        .expect("bind the fake");
    (server, Client::new())
}

/// No random declines, no delay: every outcome in a test is the one it asks for.
fn exact() -> MockConfig {
    MockConfig {
        decline_rate: 0.0,
        delay_ms: (0, 0),
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

async fn stripe_post(
    http: &Client,
    server: &MockServer,
    path: &str,
    key: Option<&str>,
    body: &[(&str, &str)],
) -> Response {
    let mut request = http
        .post(format!("{}{path}", server.base_url()))
        .header("authorization", STRIPE_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(body));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

async fn stripe_get(http: &Client, server: &MockServer, path_and_query: &str) -> Response {
    http.get(format!("{}{path_and_query}", server.base_url()))
        .header("authorization", STRIPE_KEY)
        .send()
        .await
        .unwrap()
}

fn order_charge(order: &str) -> Vec<(&str, &str)> {
    vec![
        ("amount", "5000"),
        ("currency", "usd"),
        ("source", "tok_visa"),
        ("description", "Order"),
        ("metadata[order_id]", order),
    ]
}

async fn stats(http: &Client, server: &MockServer) -> Stats {
    let over_http: Stats = http
        .get(format!("{}/_mock/stats", server.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, server.stats(), "HTTP and in-process stats agree");
    over_http
}

async fn json_of(response: Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn stripe_charges_can_be_fetched_and_searched() {
    let (server, http) = start(exact()).await;
    let response = stripe_post(&http, &server, "/v1/charges", None, &order_charge("A-1001")).await;
    let (status, headers, charge) = json_of(response).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["request-id"].to_str().unwrap().starts_with("req_"));
    assert!(headers.get("idempotent-replayed").is_none());
    assert_eq!(charge["object"], "charge");
    assert_eq!(charge["status"], "succeeded");
    assert_eq!(charge["amount"], 5000);
    assert_eq!(charge["metadata"], json!({"order_id": "A-1001"}));
    let id = charge["id"].as_str().unwrap();
    assert!(id.starts_with("ch_"));

    let (status, _, fetched) =
        json_of(stripe_get(&http, &server, &format!("/v1/charges/{id}")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, charge);

    for query in [
        "metadata['order_id']:'A-1001'",
        "metadata[\"order_id\"]:\"A-1001\"",
    ] {
        let url = format!("/v1/charges/search?{}", form(&[("query", query)]));
        let (status, _, found) = json_of(stripe_get(&http, &server, &url).await).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(found["object"], "search_result");
        assert_eq!(found["data"].as_array().unwrap().len(), 1);
        assert_eq!(found["data"][0]["id"], id);
    }
    let url = format!(
        "/v1/charges/search?{}",
        form(&[("query", "metadata['order_id']:'nope'")])
    );
    let (_, _, none) = json_of(stripe_get(&http, &server, &url).await).await;
    assert_eq!(none["data"], json!([]));

    let (status, headers, missing) =
        json_of(stripe_get(&http, &server, "/v1/charges/ch_nope").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers.contains_key("request-id"));
    assert_eq!(missing["error"]["code"], "resource_missing");

    let (_, _, list) = json_of(stripe_get(&http, &server, "/v1/charges?limit=5").await).await;
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], id);
    server.shutdown().await;
}

#[tokio::test]
async fn idempotent_replay_returns_the_same_body_and_charges_once() {
    let (server, http) = start(exact()).await;
    let body = order_charge("A-7");
    let first = stripe_post(&http, &server, "/v1/charges", Some("inv-1:3"), &body).await;
    let (status, headers, first) = json_of(first).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("idempotent-replayed").is_none());
    // Same parameters in another order are the same request.
    let mut reordered = body.clone();
    reordered.reverse();
    let again = stripe_post(&http, &server, "/v1/charges", Some("inv-1:3"), &reordered).await;
    let (status, headers, again) = json_of(again).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again, first);

    let stats = stats(&http, &server).await;
    assert_eq!(stats.charges.total, 1);
    assert_eq!(stats.charges.succeeded, 1);
    assert_eq!(stats.charges.by_order["A-7"], 1);
    assert_eq!(stats.charges.by_idempotency_key["inv-1:3"], 1);
    assert_eq!(stats.replays, 1);
    assert_eq!(stats.requests.stripe, 2);
}

#[tokio::test]
async fn same_key_with_other_params_or_endpoint_is_an_idempotency_error() {
    let (server, http) = start(exact()).await;
    let first = stripe_post(
        &http,
        &server,
        "/v1/charges",
        Some("k-1"),
        &order_charge("A-1"),
    )
    .await;
    let (_, _, charge) = json_of(first).await;

    let mut other = order_charge("A-1");
    other[0] = ("amount", "6000");
    let (status, _, error) =
        json_of(stripe_post(&http, &server, "/v1/charges", Some("k-1"), &other).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["type"], "idempotency_error");
    assert_eq!(
        error["error"]["message"],
        "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than 'k-1' if you meant to execute a different request."
    );

    let refund = [("charge", charge["id"].as_str().unwrap())];
    let (status, _, error) =
        json_of(stripe_post(&http, &server, "/v1/refunds", Some("k-1"), &refund).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["type"], "idempotency_error");

    let stats = stats(&http, &server).await;
    assert_eq!(
        (stats.charges.total, stats.refunds.total, stats.replays),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn the_same_key_while_the_first_request_runs_is_409() {
    let (server, http) = start(MockConfig {
        decline_rate: 0.0,
        delay_ms: (400, 400),
    })
    .await;
    let body = order_charge("A-9");
    let first = stripe_post(&http, &server, "/v1/charges", Some("busy"), &body);
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stripe_post(&http, &server, "/v1/charges", Some("busy"), &body).await
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(first.status(), StatusCode::OK);
    let (status, _, error) = json_of(second).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "idempotency_key_in_use");
    // Retrying later with the same key gets the stored answer.
    let third = stripe_post(&http, &server, "/v1/charges", Some("busy"), &body).await;
    assert_eq!(third.headers()["idempotent-replayed"], "true");
    assert_eq!(server.stats().charges.total, 1);
}

#[tokio::test]
async fn declines_are_402_card_errors_saved_for_replay() {
    let (server, http) = start(exact()).await;
    let mut body = order_charge("A-13");
    body.push(("metadata[customer_email]", "carol+decline@example.com"));
    let (status, _, error) =
        json_of(stripe_post(&http, &server, "/v1/charges", Some("d-1"), &body).await).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(error["error"]["type"], "card_error");
    assert_eq!(error["error"]["code"], "card_declined");
    assert_eq!(error["error"]["decline_code"], "generic_decline");
    assert_eq!(error["error"]["message"], "Your card was declined.");
    let failed_id = error["error"]["charge"].as_str().unwrap();
    let (_, _, failed) =
        json_of(stripe_get(&http, &server, &format!("/v1/charges/{failed_id}")).await).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["paid"], false);

    let replay = stripe_post(&http, &server, "/v1/charges", Some("d-1"), &body).await;
    assert_eq!(replay.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), error);

    let token = [
        ("amount", "900"),
        ("currency", "usd"),
        ("source", "tok_chargeDeclinedInsufficientFunds"),
    ];
    let (status, _, error) =
        json_of(stripe_post(&http, &server, "/v1/charges", None, &token).await).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(error["error"]["decline_code"], "insufficient_funds");

    let stats = stats(&http, &server).await;
    assert_eq!(
        (
            stats.charges.total,
            stats.charges.succeeded,
            stats.charges.declined
        ),
        (2, 0, 2)
    );
    assert!(stats.charges.by_order.is_empty());
    assert_eq!(stats.charges.by_idempotency_key["d-1"], 1);
}

#[tokio::test]
async fn random_declines_follow_the_rate() {
    let (server, http) = start(MockConfig {
        decline_rate: 1.0,
        delay_ms: (0, 0),
    })
    .await;
    let response = stripe_post(&http, &server, "/v1/charges", None, &order_charge("R-1")).await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(server.stats().charges.declined, 1);
}

#[tokio::test]
async fn auth_and_validation_failures_are_not_saved() {
    let (server, http) = start(exact()).await;
    let url = format!("{}/v1/charges", server.base_url());
    for auth in [None, Some("Bearer pk_test_123"), Some(SENDGRID_KEY)] {
        let mut request = http.post(&url).body(form(&order_charge("A-1")));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let (status, headers, error) = json_of(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(headers.contains_key("request-id"));
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }

    let bad = [
        ("amount", "10"),
        ("currency", "usd"),
        ("source", "tok_visa"),
    ];
    let (status, _, error) =
        json_of(stripe_post(&http, &server, "/v1/charges", Some("v-1"), &bad).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], "amount");
    // The failed attempt saved nothing: the key now runs a (different) valid request.
    let good = stripe_post(
        &http,
        &server,
        "/v1/charges",
        Some("v-1"),
        &order_charge("A-1"),
    )
    .await;
    assert_eq!(good.status(), StatusCode::OK);
    assert!(good.headers().get("idempotent-replayed").is_none());
    assert_eq!(server.stats().charges.total, 1);
}

#[tokio::test]
async fn refunds_update_the_charge() {
    let (server, http) = start(exact()).await;
    let (_, _, charge) =
        json_of(stripe_post(&http, &server, "/v1/charges", None, &order_charge("A-5")).await).await;
    let id = charge["id"].as_str().unwrap();

    let (status, _, partial) = json_of(
        stripe_post(
            &http,
            &server,
            "/v1/refunds",
            None,
            &[("charge", id), ("amount", "2000")],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{partial}");
    assert_eq!(partial["object"], "refund");
    assert_eq!(partial["amount"], 2000);
    assert!(partial["id"].as_str().unwrap().starts_with("re_"));
    let (_, _, after) =
        json_of(stripe_get(&http, &server, &format!("/v1/charges/{id}")).await).await;
    assert_eq!(
        (after["amount_refunded"].clone(), after["refunded"].clone()),
        (json!(2000), json!(false))
    );

    let (status, _, error) = json_of(
        stripe_post(
            &http,
            &server,
            "/v1/refunds",
            None,
            &[("charge", id), ("amount", "4000")],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["param"], "amount");

    let (status, _, rest) =
        json_of(stripe_post(&http, &server, "/v1/refunds", None, &[("charge", id)]).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rest["amount"], 3000);
    let (_, _, after) =
        json_of(stripe_get(&http, &server, &format!("/v1/charges/{id}")).await).await;
    assert_eq!(after["refunded"], true);

    let (status, _, error) =
        json_of(stripe_post(&http, &server, "/v1/refunds", None, &[("charge", id)]).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["code"], "charge_already_refunded");
    let (status, _, error) =
        json_of(stripe_post(&http, &server, "/v1/refunds", None, &[("amount", "5")]).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["param"], "charge");

    let (_, _, list) =
        json_of(stripe_get(&http, &server, &format!("/v1/refunds?charge={id}")).await).await;
    let amounts: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["amount"])
        .collect();
    assert_eq!(amounts, [&json!(3000), &json!(2000)], "newest first");
    let stats = stats(&http, &server).await;
    assert_eq!(stats.refunds.total, 2);
    assert_eq!(stats.refunds.by_charge[id], 2);
}

fn receipt(order: &str) -> Value {
    json!({"personalizations":[{"to":[{"email":"buyer@example.com","name":"Buyer"}],
             "custom_args":{"order_id": order,"notification":"receipt"}}],
           "from":{"email":"shop@example.com","name":"Shop"},"subject":"Your receipt",
           "content":[{"type":"text/plain","value":"Thanks"}],"categories":["receipt"]})
}

async fn send_mail(http: &Client, server: &MockServer, auth: &str, mail: &Value) -> Response {
    http.post(format!("{}/v3/mail/send", server.base_url()))
        .header("authorization", auth)
        .json(mail)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sendgrid_accepts_valid_mail_with_a_message_id() {
    let (server, http) = start(exact()).await;
    let response = send_mail(&http, &server, SENDGRID_KEY, &receipt("A-1001")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(!response.headers()["x-message-id"].is_empty());
    assert_eq!(response.text().await.unwrap(), "");

    let mut message_level = receipt("ignored");
    message_level["personalizations"][0]
        .as_object_mut()
        .unwrap()
        .remove("custom_args");
    message_level["custom_args"] = json!({"order_id": "A-2002"});
    assert_eq!(
        send_mail(&http, &server, SENDGRID_KEY, &message_level)
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    let (status, _, body) =
        json_of(send_mail(&http, &server, "Bearer sk_test_1", &receipt("A-1")).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"errors":[{"message":"authorization required","field":null,"help":null}]})
    );

    let mut bad = receipt("A-1");
    bad["personalizations"][0]["to"][0]["email"] = json!("nobody");
    bad["custom_args"] = json!("order A-1");
    let (status, _, body) = json_of(send_mail(&http, &server, SENDGRID_KEY, &bad).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["custom_args", "personalizations.0.to.0.email"]);

    let stats = stats(&http, &server).await;
    assert_eq!(stats.emails.total, 2);
    assert_eq!(stats.emails.by_order["A-1001"], 1);
    assert_eq!(stats.emails.by_order["A-2002"], 1);
    assert_eq!(stats.requests.sendgrid, 4);
}

fn instalabel(order: &str) -> Value {
    json!({"shipment":{"address_from":{"name":"Shop","street1":"215 Clayton St.","city":"San Francisco","state":"CA","zip":"94117","country":"US"},
            "address_to":{"name":"Alice Smith","street1":"123 Main St","city":"SF","state":"CA","zip":"94105","country":"US"},
            "parcels":[{"length":"10","width":"8","height":"4","distance_unit":"in","weight":"2","mass_unit":"lb"}]},
           "carrier_account":"b741b99f95e841639b54272834bc478c","servicelevel_token":"usps_priority",
           "label_file_type":"PDF","metadata": format!("order {order}"),"async":false})
}

async fn buy_label(http: &Client, server: &MockServer, path: &str, body: &Value) -> Response {
    http.post(format!("{}{path}", server.base_url()))
        .header("authorization", SHIPPO_KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn shippo_get(http: &Client, server: &MockServer, path: &str) -> (StatusCode, Value) {
    let response = http
        .get(format!("{}{path}", server.base_url()))
        .header("authorization", SHIPPO_KEY)
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(response).await;
    (status, body)
}

#[tokio::test]
async fn shippo_sells_labels_and_finds_them_again() {
    let (server, http) = start(exact()).await;
    let (status, _, label) =
        json_of(buy_label(&http, &server, "/transactions", &instalabel("A-1")).await).await;
    assert_eq!(status, StatusCode::CREATED, "{label}");
    assert_eq!(label["status"], "SUCCESS");
    assert_eq!(label["object_state"], "VALID");
    assert_eq!(label["metadata"], "order A-1");
    assert_eq!(label["rate"]["servicelevel_token"], "usps_priority");
    assert!(!label["tracking_number"].as_str().unwrap().is_empty());
    let label_url = label["label_url"].as_str().unwrap();
    assert!(label_url.starts_with(&server.base_url()) && label_url.ends_with(".pdf"));
    let pdf = http.get(label_url).send().await.unwrap();
    assert_eq!(pdf.headers()["content-type"], "application/pdf");

    let form_a = json!({"rate":"ec9f0d3adc9441449c85d315f0997fd5","label_file_type":"PDF_4x6","async":false,"metadata":"order A-2"});
    let (status, _, second) =
        json_of(buy_label(&http, &server, "/transactions/", &form_a).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["rate"], "ec9f0d3adc9441449c85d315f0997fd5");
    let third = buy_label(&http, &server, "/transactions", &instalabel("A-3")).await;
    assert_eq!(third.status(), StatusCode::CREATED);

    let (status, page) = shippo_get(&http, &server, "/transactions?results=2&page=1").await;
    assert_eq!(status, StatusCode::OK);
    let metadata: Vec<&Value> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["metadata"])
        .collect();
    assert_eq!(
        metadata,
        [&json!("order A-3"), &json!("order A-2")],
        "newest first"
    );
    assert!(page["previous"].is_null());
    let next = page["next"].as_str().unwrap();
    assert!(next.contains("page=2"));
    let (_, page2) = shippo_get(&http, &server, "/transactions?results=2&page=2").await;
    assert_eq!(page2["results"][0]["metadata"], "order A-1");
    assert!(page2["next"].is_null());
    assert_eq!(
        shippo_get(&http, &server, "/transactions?results=2&page=3")
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let id = label["object_id"].as_str().unwrap();
    let (status, fetched) = shippo_get(&http, &server, &format!("/transactions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, label);
    assert_eq!(
        shippo_get(&http, &server, "/transactions/nope").await,
        (StatusCode::NOT_FOUND, json!({"detail": "Not found."}))
    );

    let unauthorized = http
        .post(format!("{}/transactions", server.base_url()))
        .header("authorization", "Bearer shippo_test_1")
        .json(&instalabel("A-4"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(unauthorized).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "Invalid API token"})
        )
    );

    let mut bad = instalabel("A-5");
    bad["shipment"]["address_to"]
        .as_object_mut()
        .unwrap()
        .remove("street1");
    bad["metadata"] = json!("x".repeat(101));
    let (status, _, errors) = json_of(buy_label(&http, &server, "/transactions", &bad).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        errors["shipment"]["address_to"]["street1"],
        json!(["This field is required."])
    );
    assert!(errors["metadata"].is_array());

    let stats = stats(&http, &server).await;
    assert_eq!(stats.labels.total, 3);
    assert_eq!(stats.labels.by_order.get("A-1"), Some(&1));
    assert_eq!(stats.labels.by_order.get("A-5"), None);
}

async fn set_faults(http: &Client, server: &MockServer, faults: Value) -> Value {
    let response = http
        .post(format!("{}/_mock/faults", server.control_url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn faults_fail_the_next_requests_before_or_after_the_effect() {
    let (server, http) = start(exact()).await;
    let pending = set_faults(
        &http,
        &server,
        json!({"shippo": {"fail_next": 2, "status": 503}}),
    )
    .await;
    assert_eq!(
        pending["shippo"],
        json!({"fail_next": 2, "status": 503, "after_effect": false})
    );
    assert!(pending["stripe"].is_null());
    for _ in 0..2 {
        let (status, _, body) =
            json_of(buy_label(&http, &server, "/transactions", &instalabel("F-1")).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["detail"].is_string());
    }
    assert_eq!(
        buy_label(&http, &server, "/transactions", &instalabel("F-1"))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        server.stats().labels.by_order["F-1"],
        1,
        "failed-before-effect requests bought nothing"
    );

    // A lost response: the charge happens, the client sees a 500, the retry gets the original.
    set_faults(
        &http,
        &server,
        json!({"stripe": {"fail_next": 1, "status": 500, "after_effect": true}}),
    )
    .await;
    let body = order_charge("F-2");
    let (status, headers, error) =
        json_of(stripe_post(&http, &server, "/v1/charges", Some("lost-1"), &body).await).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error["error"]["type"], "api_error");
    assert!(headers.contains_key("request-id"));
    assert_eq!(server.stats().charges.by_order["F-2"], 1);
    let retry = stripe_post(&http, &server, "/v1/charges", Some("lost-1"), &body).await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(server.stats().charges.by_idempotency_key["lost-1"], 1);

    // A rate-limited SendGrid says when to retry; after_effect on SendGrid sends the email anyway.
    set_faults(
        &http,
        &server,
        json!({"sendgrid": {"fail_next": 1, "status": 429}}),
    )
    .await;
    let response = send_mail(&http, &server, SENDGRID_KEY, &receipt("F-3")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let (_, _, body) = json_of(response).await;
    assert_eq!(body["errors"][0]["message"], "too many requests");
    set_faults(
        &http,
        &server,
        json!({"sendgrid": {"fail_next": 1000000, "status": 500, "after_effect": true}}),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            send_mail(&http, &server, SENDGRID_KEY, &receipt("F-3"))
                .await
                .status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(server.stats().emails.by_order["F-3"], 3);
    let cleared = set_faults(&http, &server, json!({"sendgrid": null})).await;
    assert_eq!(
        cleared,
        json!({"stripe": null, "sendgrid": null, "shippo": null, "adyen": null})
    );

    let bad = http
        .post(format!("{}/_mock/faults", server.control_url()))
        .json(&json!({"paypal": {"fail_next": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let stats = stats(&http, &server).await;
    assert_eq!(
        (
            stats.requests.stripe,
            stats.requests.sendgrid,
            stats.requests.shippo
        ),
        (2, 4, 3)
    );
}

#[tokio::test]
async fn requests_are_recorded_with_the_auth_scheme_only() {
    let (server, http) = start(exact()).await;
    stripe_post(
        &http,
        &server,
        "/v1/charges",
        Some("r-1"),
        &order_charge("A-1"),
    )
    .await;
    send_mail(&http, &server, SENDGRID_KEY, &receipt("A-1")).await;
    buy_label(&http, &server, "/transactions", &instalabel("A-1")).await;
    http.get(format!("{}/_mock/stats", server.control_url()))
        .send()
        .await
        .unwrap();

    let all: Vec<Value> = http
        .get(format!("{}/_mock/requests", server.control_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let providers: Vec<&Value> = all.iter().map(|r| &r["provider"]).collect();
    assert_eq!(
        providers,
        [&json!("stripe"), &json!("sendgrid"), &json!("shippo")]
    );

    for (provider, scheme) in [
        ("stripe", "Bearer"),
        ("sendgrid", "Bearer"),
        ("shippo", "ShippoToken"),
    ] {
        let only: Vec<Value> = http
            .get(format!(
                "{}/_mock/requests?provider={provider}",
                server.control_url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(
            only[0]["headers"]["authorization"],
            format!("<redacted:{scheme}>")
        );
        assert_eq!(only[0]["method"], "POST");
    }
    let stripe = &all[0];
    assert_eq!(stripe["path"], "/v1/charges");
    assert_eq!(stripe["headers"]["idempotency-key"], "r-1");
    assert!(
        stripe["body"]
            .as_str()
            .unwrap()
            .contains("metadata%5Border_id%5D=A-1")
    );
    assert!(!serde_json::to_string(&all).unwrap().contains("sk_test_"));
}

#[tokio::test]
async fn reset_forgets_everything_and_config_can_change() {
    let (server, http) = start(exact()).await;
    stripe_post(
        &http,
        &server,
        "/v1/charges",
        Some("x-1"),
        &order_charge("A-1"),
    )
    .await;
    set_faults(&http, &server, json!({"shippo": {"fail_next": 5}})).await;
    let reset = http
        .post(format!("{}/_mock/reset", server.control_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(stats(&http, &server).await, Stats::default());
    assert_eq!(server.state().faults(), Default::default());
    assert!(server.state().requests(None).is_empty());
    // The key was forgotten too: the same request charges again.
    let again = stripe_post(
        &http,
        &server,
        "/v1/charges",
        Some("x-1"),
        &order_charge("A-1"),
    )
    .await;
    assert!(again.headers().get("idempotent-replayed").is_none());

    let config: Value = http
        .post(format!("{}/_mock/config", server.control_url()))
        .json(&json!({"delay_ms": [150, 150]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config, json!({"decline_rate": 0.0, "delay_ms": [150, 150]}));
    let started = Instant::now();
    send_mail(&http, &server, SENDGRID_KEY, &receipt("A-1")).await;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "simulated latency applies"
    );
}

#[tokio::test]
async fn unknown_paths_get_the_provider_404() {
    let (server, http) = start(exact()).await;
    let (status, headers, body) = json_of(stripe_get(&http, &server, "/v1/payouts").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers.contains_key("request-id"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Unrecognized request URL")
    );
    let (status, _, body) = json_of(
        http.get(format!("{}/v3/nothing", server.base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["errors"].is_array());
}

#[tokio::test]
async fn a_client_hanging_up_does_not_cancel_the_effect() {
    let (server, http) = start(MockConfig {
        decline_rate: 0.0,
        delay_ms: (300, 300),
    })
    .await;
    let body = form(&order_charge("H-1"));
    let hung_up = http
        .post(format!("{}/v1/charges", server.base_url()))
        .header("authorization", STRIPE_KEY)
        .header("idempotency-key", "hang-1")
        .body(body.clone())
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    assert!(hung_up.is_err(), "the client gave up before the answer");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        server.stats().charges.by_order["H-1"],
        1,
        "the charge still happened"
    );
    let retry = stripe_post(
        &http,
        &server,
        "/v1/charges",
        Some("hang-1"),
        &order_charge("H-1"),
    )
    .await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(server.stats().charges.total, 1);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let (server, http) = start(exact()).await;
    let base = server.base_url();
    assert!(base.starts_with("http://127.0.0.1:"));
    assert_ne!(server.addr().port(), 0);
    // A pooled keep-alive connection does not hold the shutdown up.
    stats(&http, &server).await;
    let started = Instant::now();
    server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let gone = http
        .get(format!("{base}/v1/charges"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(gone.is_err());
}

#[tokio::test]
async fn control_endpoints_are_not_on_the_api_port() {
    let (server, http) = start(exact()).await;
    assert_ne!(server.control_url(), server.base_url());
    for path in ["/_mock/stats", "/_mock/requests", "/_mock/webhooks"] {
        let on_api = http
            .get(format!("{}{path}", server.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(on_api.status(), StatusCode::NOT_FOUND, "{path}");
        let on_control = http
            .get(format!("{}{path}", server.control_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(on_control.status(), StatusCode::OK, "{path}");
    }
    let reset = http
        .post(format!("{}/_mock/reset", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::NOT_FOUND);
}
