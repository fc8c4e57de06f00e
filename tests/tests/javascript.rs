//! A provider written in JavaScript (issue 12): `guests/js/email`, built with componentize-js
//! against the repository's WIT, is deployed through the admin API as the
//! `cairn:commerce/email` provider and confirms the next order through SendGrid's wire format at
//! the fake; its API key is a placeholder the host fills in. A 400 from SendGrid is an
//! `invalid-request` the orchestrator records on the order; no email is counted for it.

use cairn::mock::MockConfig;
use cairn_e2e::{Cairn, Options, assert_exports, count, order_input};
use serde_json::{Value, json};

const EMAIL: &str = "cairn:commerce/email@0.1.0";
const SENDGRID_KEY: &str = "SG.js-provider-test-key";

async fn with_js_email() -> (Cairn, String) {
    with_js_email_at(None).await
}

/// The JS provider deployed with `api-base` (default: the fake), allowed to reach the fake only.
async fn with_js_email_at(api_base: Option<&str>) -> (Cairn, String) {
    let cairn = Cairn::start_opts(Options {
        mock: MockConfig {
            decline_rate: 0.0,
            delay_ms: (0, 0),
        },
        secret_env: vec![("SENDGRID_API_KEY".into(), SENDGRID_KEY.into())],
        ..Options::default()
    })
    .await;
    let base = cairn.mock.base_url();
    let deployed = cairn
        .admin_post(
            "/deployments",
            &json!({
                "path": test_artifacts::SENDGRID_JS_EMAIL,
                "config": {"api-base": api_base.unwrap_or(&base), "from-name": "Cairn JS"},
                "allowPrivate": [base],
                "secrets": ["SENDGRID_API_KEY"],
            }),
        )
        .await;
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    assert_eq!(deployed.body["kind"], "provider");
    assert_exports(&deployed.body, EMAIL);
    let active = deployed.body["activeFor"].as_array().unwrap();
    assert!(active.contains(&json!(EMAIL)), "{:?}", deployed.body);
    let id = deployed.body["id"].as_str().unwrap().to_string();
    (cairn, id)
}

#[tokio::test]
async fn an_order_is_confirmed_through_the_javascript_email_provider() {
    let (cairn, js) = with_js_email().await;
    let reply = cairn
        .process_order("order-js-1", &order_input("ada@example.com"))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    assert_eq!(reply.body["emailSent"], true, "{:?}", reply.body);
    let inv = cairn.invocation(&reply).await;
    assert_eq!(inv["providers"][EMAIL], js.as_str(), "{inv}");

    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/emails/by_order/order-js-1"), 1, "{stats}");
    let requests = cairn.requests("sendgrid").await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request["path"], "/v3/mail/send");
    assert_eq!(request["headers"]["authorization"], "<redacted:Bearer>");
    let body: Value = serde_json::from_str(request["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["from"]["name"], "Cairn JS", "{body}");
    assert_eq!(
        body["personalizations"][0]["custom_args"]["order_id"],
        "order-js-1"
    );
    assert_eq!(
        body["personalizations"][0]["to"][0]["email"],
        "ada@example.com"
    );
    // The key reached the fake (it accepts only `Bearer SG.…`), not the journal.
    assert!(!inv.to_string().contains(SENDGRID_KEY), "{inv}");
}

#[tokio::test]
async fn a_sendgrid_refusal_is_recorded_on_the_order_and_sends_nothing() {
    let (cairn, _) = with_js_email().await;
    cairn
        .fault(json!({"sendgrid": {"fail_next": 1, "status": 400}}))
        .await;
    let reply = cairn
        .process_order("order-js-2", &order_input("bo@example.com"))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    assert_eq!(reply.body["emailSent"], false, "{:?}", reply.body);
    let failures = reply.body["failures"].to_string();
    assert!(failures.contains("invalid request"), "{failures}");
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/emails/by_order/order-js-2"), 0, "{stats}");
}

#[tokio::test]
async fn a_request_the_host_refuses_comes_back_as_the_providers_error() {
    // An API base off the allow-list: the host answers `denied`, which the JS code receives as
    // a thrown error and maps to `invalid-request`.
    let (cairn, _) = with_js_email_at(Some("http://127.0.0.1:9")).await;
    let reply = cairn
        .process_order("order-js-3", &order_input("cy@example.com"))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["emailSent"], false, "{:?}", reply.body);
    let failures = reply.body["failures"].to_string();
    assert!(
        failures.contains("invalid request: sendgrid: denied"),
        "{failures}"
    );
    assert!(cairn.requests("sendgrid").await.is_empty());
}
