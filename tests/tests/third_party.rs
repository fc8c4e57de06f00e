//! A third-party provider, for real (issue 4): the Adyen payments component is deployed through
//! the admin API with settings of its own (its base URL and merchant account, its allow-list, its
//! API key by name), and the next order is charged through Adyen's Checkout API — at the fake,
//! in Adyen's wire format — with no change to the orchestrator. An order in flight on Stripe
//! stays on Stripe. The key's value, read from the host's environment, appears nowhere in the
//! admin API, the logs or the database files; the settings survive a restart.

use cairn::mock::MockConfig;
use cairn_e2e::{Cairn, Options, PAYMENTS, assert_exports, count, logs, order_input};
use serde_json::{Value, json};

/// The Adyen API key in the host's environment (never sent to or stored by the admin API).
const ADYEN_KEY: &str = "AQE_adyen_test_key_f00dfeed";
const MERCHANT: &str = "CairnShopECOM";

async fn host() -> Cairn {
    Cairn::start_opts(Options {
        mock: MockConfig {
            decline_rate: 0.0,
            delay_ms: (0, 0),
        },
        secret_env: vec![("ADYEN_API_KEY".into(), ADYEN_KEY.into())],
        ..Options::default()
    })
    .await
}

/// The admin deploy request of the Adyen component, with its settings.
fn adyen_deployment(cairn: &Cairn, secrets: &[&str]) -> Value {
    let base = cairn.mock.base_url();
    json!({
        "path": test_artifacts::ADYEN_PAYMENTS,
        "config": {
            "api-base": base,
            "merchant-account": MERCHANT,
            "default-payment-method": "8415718415172204",
        },
        "allowPrivate": [base],
        "secrets": secrets,
    })
}

#[tokio::test]
async fn an_adyen_provider_deployed_with_its_own_settings_charges_the_next_order() {
    let logs = logs::capture();
    let cairn = host().await;
    let stripe = cairn.active_deployment(PAYMENTS).await;

    // An order starts on Stripe and is held at the fake's charge while Adyen is deployed.
    cairn.mock_config(json!({"delay_ms": [3000, 3000]})).await;
    let in_flight = cairn.send_order("order-on-stripe").await;

    // A secret the host's environment lacks is a 400 naming it; nothing is deployed.
    let refused = cairn
        .admin_post(
            "/deployments",
            &adyen_deployment(&cairn, &["ADYEN_LIVE_KEY"]),
        )
        .await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert_eq!(refused.body["error"], "bad_request");
    let message = refused.body["message"].as_str().unwrap();
    assert!(message.contains("ADYEN_LIVE_KEY"), "{message}");
    assert_eq!(cairn.active_deployment(PAYMENTS).await, stripe);
    // Settings are for providers only.
    let service = cairn
        .admin_post(
            "/deployments",
            &json!({"path": test_artifacts::ORDER_ORCHESTRATOR, "allow": ["https://x.example"]}),
        )
        .await;
    assert_eq!(service.status, 400, "{:?}", service.body);

    let deployed = cairn
        .admin_post(
            "/deployments",
            &adyen_deployment(&cairn, &["ADYEN_API_KEY"]),
        )
        .await;
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    assert_exports(&deployed.body, PAYMENTS);
    assert_eq!(deployed.body["active"], true);
    let settings = &deployed.body["providerSettings"];
    assert_eq!(settings["secrets"], json!(["ADYEN_API_KEY"]), "{settings}");
    assert_eq!(settings["config"]["merchant-account"], MERCHANT);
    let adyen = deployed.body["id"].as_str().unwrap().to_string();
    assert_eq!(cairn.active_deployment(PAYMENTS).await, adyen);
    let pinned = cairn.admin_get(&format!("/invocations/{in_flight}")).await;
    assert_eq!(
        pinned.body["status"], "running",
        "still in flight at Stripe"
    );
    cairn.mock_config(json!({"delay_ms": [0, 0]})).await;

    // The next order: charged through Adyen, the orchestrator untouched.
    let reply = cairn
        .process_order("order-on-adyen", &order_input("erin@example.com"))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    let charge_id = reply.body["chargeId"].as_str().unwrap();
    assert_eq!(charge_id.len(), 16, "an Adyen pspReference: {charge_id}");
    let inv = cairn.invocation(&reply).await;
    assert_eq!(inv["providers"][PAYMENTS], adyen.as_str());

    let requests = cairn.requests("adyen").await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["path"], "/v71/payments");
    assert_eq!(request["headers"]["x-api-key"], "<redacted>");
    assert_eq!(request["headers"]["content-type"], "application/json");
    assert!(request["headers"]["idempotency-key"].is_string());
    let body: Value = serde_json::from_str(request["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["amount"], json!({"value": 5000, "currency": "USD"}));
    assert_eq!(body["reference"], "order-on-adyen");
    assert_eq!(body["merchantAccount"], MERCHANT);
    assert_eq!(body["paymentMethod"]["type"], "scheme");
    assert_eq!(body["shopperEmail"], "erin@example.com");
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/by_order/order-on-adyen"), 1);
    assert_eq!(count(&stats, "/requests/adyen"), 1);

    // The order that started on Stripe finished on Stripe.
    let finished = cairn.finished_invocation(&in_flight).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["providers"][PAYMENTS], stripe.as_str());
    assert!(
        finished["output"]["chargeId"]
            .as_str()
            .unwrap()
            .starts_with("ch_")
    );
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/by_order/order-on-stripe"), 1);
    assert!(
        cairn
            .requests("stripe")
            .await
            .iter()
            .all(|r| r["body"].as_str().unwrap().contains("order-on-stripe")),
        "Stripe saw only the order pinned to it"
    );

    // A declined card at Adyen is a declined order.
    let declined = cairn
        .process_order(
            "order-adyen-decline",
            &order_input("erin+decline@example.com"),
        )
        .await;
    assert_eq!(
        declined.body["status"], "payment_failed",
        "{:?}",
        declined.body
    );

    // The key's value is nowhere the operator can read, nor in the database files.
    let admin = cairn.admin_text().await;
    assert!(admin.contains("ADYEN_API_KEY"), "the name is shown");
    assert!(
        admin.contains("{{secret:ADYEN_API_KEY}}"),
        "placeholders are shown"
    );
    assert!(
        !admin.contains(ADYEN_KEY),
        "the key in the admin API's answers"
    );
    let database = cairn.database_bytes();
    assert!(database.len() > 10_000, "the database files were read");
    assert!(
        !database
            .windows(ADYEN_KEY.len())
            .any(|w| w == ADYEN_KEY.as_bytes()),
        "the key in the database files"
    );
    assert!(
        !logs.text().contains(ADYEN_KEY),
        "the key in the host's log"
    );

    // After a restart Adyen is still the payments provider, its key read from the environment.
    let cairn = cairn.restart().await;
    assert_eq!(cairn.active_deployment(PAYMENTS).await, adyen);
    let again = cairn
        .process_order("order-after-restart", &order_input("erin@example.com"))
        .await;
    assert_eq!(again.body["status"], "confirmed", "{:?}", again.body);
    let listed = cairn.admin_get(&format!("/deployments/{adyen}")).await.body;
    assert_eq!(
        listed["providerSettings"]["secrets"],
        json!(["ADYEN_API_KEY"])
    );
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/by_order/order-after-restart"), 1);
    assert_eq!(count(&stats, "/requests/adyen"), 3);
}

#[tokio::test]
async fn provider_settings_travel_in_a_header_with_raw_bytes() {
    let cairn = host().await;
    let bytes = std::fs::read(test_artifacts::ADYEN_PAYMENTS).unwrap();
    let send = |settings: Value| {
        cairn
            .admin_http
            .post(cairn.admin("/deployments?cpuMs=2000"))
            .header("content-type", "application/wasm")
            .header("x-cairn-provider-settings", settings.to_string())
            .body(bytes.clone())
            .send()
    };
    let bad = send(json!({"secrets": ["adyen key"]})).await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("adyen key"),
        "{body}"
    );
    // The fake by a name that resolves to loopback: on the allow-list (the api-base origin,
    // without `allow`), but not private-allowed, so refused at connect time.
    let base = cairn.mock.base_url().replace("127.0.0.1", "localhost");
    let settings = |private: Value| {
        json!({
            "config": {"api-base": base, "merchant-account": MERCHANT, "default-payment-method": "pm_1"},
            "allowPrivate": private,
            "secrets": ["ADYEN_API_KEY"],
        })
    };
    let listed = send(settings(json!([]))).await.unwrap();
    assert_eq!(listed.status(), 201);
    let body: Value = listed.json().await.unwrap();
    assert_eq!(body["limits"], json!({"cpuMs": 2000}));
    assert_eq!(body["providerSettings"]["allow"], json!([]), "{body}");
    let refused = cairn
        .process_order("order-raw-0", &order_input("fay@example.com"))
        .await;
    let text = format!("{:?}", cairn.invocation(&refused).await);
    assert!(
        text.contains("localhost resolves to") && text.contains("a loopback address"),
        "{text}"
    );
    assert_eq!(count(&cairn.stats().await, "/requests/adyen"), 0);
    // Flagged private by the operator: reached.
    let ok = send(settings(json!([base]))).await.unwrap();
    assert_eq!(ok.status(), 200, "the same bytes, new settings");
    let reply = cairn
        .process_order("order-raw", &order_input("fay@example.com"))
        .await;
    assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    assert_eq!(count(&cairn.stats().await, "/requests/adyen"), 1);
}
