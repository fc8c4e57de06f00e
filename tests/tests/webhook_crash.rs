//! kill -9 around webhooks and refunds: `cairn serve` as a child process over one data dir,
//! the fake (in this process) sending its signed webhooks to the host's fixed ingress port.
//!
//! - An order waiting for its pending charge's webhook survives SIGKILL: a webhook that comes
//!   while the host is down is refused at the socket and redelivered later (as Stripe does), one
//!   that comes after the restart is taken at once; either way the order is confirmed with one
//!   charge, one label and one email.
//! - A cancellation killed while its refund is at the provider refunds once.

use std::time::{Duration, Instant};

use cairn::mock::{MockConfig, Provider, WebhookConfig};
use cairn_e2e::process::{Host, Rig, json_of};
use cairn_e2e::{count, order_input};
use serde_json::{Value, json};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

fn exact() -> MockConfig {
    MockConfig {
        decline_rate: 0.0,
        delay_ms: (0, 0),
    }
}

async fn order(http: &reqwest::Client, host: &Host, id: &str) -> Value {
    json_of(http.post(format!("{}/OrderOrchestrator/{id}/GetOrder", host.ingress))).await
}

/// The order once it has been `status` (it may have moved on: the fake's tracking webhooks
/// follow a label within milliseconds).
async fn order_when(http: &reqwest::Client, host: &Host, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let order = order(http, host, id).await;
        let reached = order["timeline"]
            .as_array()
            .is_some_and(|t| t.iter().any(|e| e["status"] == status));
        if order["status"] == status || reached {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} never {status}: {order}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sends a `pm_card_pending` order; waits until it is `payment_pending`.
async fn pending_order(rig: &Rig, host: &Host, id: &str) {
    let mut input = order_input(&format!("{id}@example.com"));
    input["paymentMethod"] = json!("pm_card_pending");
    let sent = rig
        .http
        .post(format!(
            "{}/OrderOrchestrator/{id}/ProcessOrder/send",
            host.ingress
        ))
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    order_when(&rig.http, host, id, "payment_pending").await;
}

fn effects(rig: &Rig, id: &str) -> (u64, u64, u64) {
    let stats = serde_json::to_value(rig.mock.stats()).unwrap();
    (
        count(&stats, &format!("/charges/by_order/{id}")),
        count(&stats, &format!("/labels/by_order/{id}")),
        count(&stats, &format!("/emails/by_order/{id}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_waiting_for_its_webhook_survives_kill_minus_nine() {
    let rig = Rig::new(CAIRN, exact()).await.with_webhooks(20, 1500);
    let http = rig.http.clone();

    // The webhook comes while the host is down: refused at the socket, redelivered later.
    let mut host = rig.start(50).await;
    pending_order(&rig, &host, "wk-down").await;
    host.kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let sent = rig.mock.state().sent_webhooks();
    let lost = sent
        .iter()
        .find(|h| h.body.contains("wk-down") && h.body.contains("charge.succeeded"))
        .expect("the fake sent charge.succeeded while the host was down");
    assert_eq!(lost.answers, [0], "{lost:?}");
    let host = rig.start(51).await;
    assert_eq!(
        order(&http, &host, "wk-down").await["status"],
        "payment_pending"
    );
    let status = cairn::mock::webhooks::redeliver(rig.mock.state(), &lost.event_id).await;
    assert_eq!(status, Some(200));
    order_when(&http, &host, "wk-down", "confirmed").await;
    assert_eq!(effects(&rig, "wk-down"), (1, 1, 1));
    drop(host);

    // The webhook comes after the restart: taken at once.
    rig.mock.state().set_webhooks(WebhookConfig {
        pending_ms: 4000,
        ..rig.mock.state().webhooks()
    });
    let mut host = rig.start(52).await;
    pending_order(&rig, &host, "wk-up").await;
    host.kill();
    let host = rig.start(53).await;
    let order = order_when(&http, &host, "wk-up", "confirmed").await;
    let statuses: Vec<&str> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses[..4],
        ["pending", "payment_pending", "paid", "confirmed"]
    );
    assert_eq!(effects(&rig, "wk-up"), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_killed_during_its_refund_refunds_once() {
    let rig = Rig::new(CAIRN, exact()).await;
    let http = rig.http.clone();
    let mut host = rig.start(60).await;
    let confirmed = json_of(
        http.post(format!(
            "{}/OrderOrchestrator/wk-r/ProcessOrder",
            host.ingress
        ))
        .json(&order_input("rob@example.com")),
    )
    .await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    let charge = confirmed["chargeId"].as_str().unwrap().to_string();

    // The refund request reaches the fake and takes a second there; the host dies meanwhile.
    rig.mock.state().set_config(MockConfig {
        delay_ms: (1000, 1000),
        ..exact()
    });
    let cancel = tokio::spawn({
        let (http, url) = (
            http.clone(),
            format!("{}/OrderOrchestrator/wk-r/CancelOrder", host.ingress),
        );
        async move { http.post(url).send().await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rig
        .mock
        .state()
        .requests(Some(Provider::Stripe))
        .iter()
        .any(|r| r.path == "/v1/refunds")
    {
        assert!(
            Instant::now() < deadline,
            "the refund never reached the fake"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    host.kill();
    let _ = cancel.await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rig.mock.state().set_config(exact());

    let host = rig.start(61).await;
    let again = json_of(http.post(format!(
        "{}/OrderOrchestrator/wk-r/CancelOrder",
        host.ingress
    )))
    .await;
    assert_eq!(again["status"], "refunded", "{again}");
    let stats = serde_json::to_value(rig.mock.stats()).unwrap();
    assert_eq!(count(&stats, &format!("/refunds/by_charge/{charge}")), 1);
    let twice = json_of(http.post(format!(
        "{}/OrderOrchestrator/wk-r/CancelOrder",
        host.ingress
    )))
    .await;
    assert_eq!(twice["refundId"], again["refundId"]);
}
