//! Webhooks end to end: the fake signs and sends them for the effects it makes, the host
//! verifies them on the raw bytes, deduplicates them by event id, and the `WebhookProcessor`
//! drives the order (pending charges, cancellations, refunds, delivery). Refusals are checked
//! with signatures made by OpenSSL, and count rows: a refused request writes nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use cairn::mock::webhooks::{STRIPE_WEBHOOK_SECRET, stripe_signature};
use cairn::storage::Table;
use cairn_e2e::process::json_of;
use cairn_e2e::{Cairn, Reply, count, order_input};
use futures::StreamExt as _;
use serde_json::{Value, json};

/// HMAC-SHA256 in hex, computed by OpenSSL, not by the code under test.
fn openssl_hmac(secret: &str, message: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-hex"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl (Debian package openssl) is needed by this test");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), message.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.rsplit(' ').next().unwrap().trim().to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn post_webhook(cairn: &Cairn, path: &str, headers: &[(&str, String)], body: &str) -> Reply {
    let mut request = cairn
        .http
        .post(cairn.ingress(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        body,
        invocation_id: None,
    }
}

async fn rows(cairn: &Cairn) -> (i64, i64, i64, i64) {
    (
        cairn.count_rows(Table::Invocations).await,
        cairn.count_rows(Table::Journal).await,
        cairn.count_rows(Table::State).await,
        cairn.count_rows(Table::IdempotencyKeys).await,
    )
}

/// Polls `GetOrder` until `done` holds (at most 20 s).
async fn order_when(cairn: &Cairn, order_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let order = cairn.get_order(order_id).await.body;
        if done(&order) {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {order_id} never got there: {order}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The webhook processor's invocations for one endpoint's event.
async fn processed(cairn: &Cairn, endpoint: &str, event_id: &str) -> Vec<Value> {
    let list = cairn
        .admin_get("/invocations?service=WebhookProcessor&limit=10000")
        .await
        .body;
    let key = format!("webhook:{endpoint}:{event_id}");
    list["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["idempotencyKey"] == key.as_str())
        .cloned()
        .collect()
}

fn pending_order() -> Value {
    let mut input = order_input("pat@example.com");
    input["paymentMethod"] = json!("pm_card_pending");
    input
}

fn statuses(order: &Value) -> Vec<String> {
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn bad_signatures_tokens_and_bodies_are_refused_and_write_nothing() {
    let cairn = Cairn::start().await;
    // For the forged SendGrid batch below (the fake makes no effect here, so sends nothing else).
    cairn.webhooks_to_host(0, 0);
    let body = r#"{"id":"evt_refused","type":"charge.succeeded","data":{"object":{"id":"ch_1","metadata":{"order_id":"o-1"}}}}"#;
    let t = now();
    let good = openssl_hmac(STRIPE_WEBHOOK_SECRET, &format!("{t}.{body}"));
    let wrong_key = openssl_hmac("whsec_someone_else", &format!("{t}.{body}"));
    // A minute past the 300 s tolerance: the cases before it take time to send.
    let stale = now() - 360;
    let stale_sig = openssl_hmac(STRIPE_WEBHOOK_SECRET, &format!("{stale}.{body}"));
    let future = now() + 360;
    let future_sig = openssl_hmac(STRIPE_WEBHOOK_SECRET, &format!("{future}.{body}"));
    let changed = body.replace("o-1", "o-2");
    let before = rows(&cairn).await;
    let stripe = |header: Option<String>| {
        header
            .map(|h| vec![("Stripe-Signature", h)])
            .unwrap_or_default()
    };
    // (what, headers, body, status, error code)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing header",
            stripe(None),
            body,
            400,
            "signature_missing",
        ),
        (
            "only v0",
            stripe(Some(format!("t={t},v0={good}"))),
            body,
            400,
            "signature_missing",
        ),
        (
            "wrong secret",
            stripe(Some(format!("t={t},v1={wrong_key}"))),
            body,
            401,
            "bad_signature",
        ),
        (
            "a changed byte",
            stripe(Some(format!("t={t},v1={good}"))),
            &changed,
            401,
            "bad_signature",
        ),
        (
            "stale",
            stripe(Some(format!("t={stale},v1={stale_sig}"))),
            body,
            401,
            "stale_timestamp",
        ),
        (
            "future",
            stripe(Some(format!("t={future},v1={future_sig}"))),
            body,
            401,
            "future_timestamp",
        ),
    ];
    for (what, headers, body, status, code) in cases {
        let reply = post_webhook(&cairn, "/webhooks/stripe", &headers, body).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_eq!(reply.body["error"], code, "{what}: {}", reply.body);
        assert!(
            !reply.body["message"]
                .as_str()
                .unwrap()
                .contains(STRIPE_WEBHOOK_SECRET)
        );
    }

    // Shippo: the URL token; SendGrid: a signature by another key.
    let track = r#"{"event":"track_updated","data":{"metadata":"order o-1","tracking_status":{"object_id":"ts_1","status":"TRANSIT"}}}"#;
    for (path, status) in [
        ("/webhooks/shippo?token=wrong", 401),
        ("/webhooks/shippo", 400),
    ] {
        let reply = post_webhook(&cairn, path, &[], track).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
    }
    let forged = json_of(
        cairn
            .http
            .post(format!("{}/_mock/webhooks/forge", cairn.mock.control_url()))
            .json(&json!({"endpoint": "sendgrid", "body": [{"sg_event_id": "sg_x", "event": "delivered"}]})),
    )
    .await;
    assert_eq!(forged["hostStatus"], 401, "{forged}");
    let reply = post_webhook(&cairn, "/webhooks/sendgrid", &[], "[]").await;
    assert_eq!(reply.status, 400, "{}", reply.body);

    // Over the body limit (1 MiB by default), and an endpoint that does not exist.
    let big = format!(r#"{{"id":"evt_big","pad":"{}"}}"#, "x".repeat(1 << 20));
    let sig = stripe_signature(STRIPE_WEBHOOK_SECRET, &t.to_string(), &big);
    let reply = post_webhook(
        &cairn,
        "/webhooks/stripe",
        &[("Stripe-Signature", sig)],
        &big,
    )
    .await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let reply = post_webhook(&cairn, "/webhooks/paypal", &[], body).await;
    assert_eq!(reply.status, 404, "{}", reply.body);

    // A verified request without an event id is refused too.
    let no_id = r#"{"type":"charge.succeeded"}"#;
    let sig = stripe_signature(STRIPE_WEBHOOK_SECRET, &t.to_string(), no_id);
    let reply = post_webhook(
        &cairn,
        "/webhooks/stripe",
        &[("Stripe-Signature", sig)],
        no_id,
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);

    assert_eq!(rows(&cairn).await, before, "a refused webhook wrote rows");

    // The handlers a webhook drives are not reachable from the ingress.
    for path in [
        "/WebhookProcessor/Stripe",
        "/OrderOrchestrator/o-1/OnEvent",
        "/OrderOrchestrator/o-1/ApplyEvent",
    ] {
        let reply = cairn.post(path, &json!({"eventId": "evt_forged"})).await;
        assert_eq!(reply.status, 403, "{path}: {}", reply.body);
    }
    assert_eq!(rows(&cairn).await, before);

    // The same request correctly signed (OpenSSL's signature) is taken, and a second secret
    // beside it (a rotation) changes nothing.
    let header = format!("t={t},v1={wrong_key},v1={good}");
    let reply = post_webhook(
        &cairn,
        "/webhooks/stripe",
        &[("Stripe-Signature", header)],
        body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["accepted"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_rotated_secret_list_takes_either_secret() {
    let specs = cairn::bundled::webhook_specs();
    let env = |var: &str| {
        (var == "STRIPE_WEBHOOK_SECRET").then(|| "whsec_old_one, whsec_new_one".to_string())
    };
    let mut options = cairn_e2e::Options::default();
    options.ingress.webhooks = cairn::webhooks::endpoint::load_all(&specs, &env).unwrap();
    let cairn = Cairn::start_opts(options).await;
    let t = now();
    for (i, secret) in ["whsec_old_one", "whsec_new_one"].iter().enumerate() {
        let body =
            format!(r#"{{"id":"evt_rot_{i}","type":"charge.captured","data":{{"object":{{}}}}}}"#);
        let sig = openssl_hmac(secret, &format!("{t}.{body}"));
        let header = format!("t={t},v1={sig}");
        let reply = post_webhook(
            &cairn,
            "/webhooks/stripe",
            &[("Stripe-Signature", header)],
            &body,
        )
        .await;
        assert_eq!(reply.status, 200, "{secret}: {}", reply.body);
    }
    let other = r#"{"id":"evt_rot_x","type":"charge.captured","data":{"object":{}}}"#;
    let sig = openssl_hmac(STRIPE_WEBHOOK_SECRET, &format!("{t}.{other}"));
    let header = format!("t={t},v1={sig}");
    let reply = post_webhook(
        &cairn,
        "/webhooks/stripe",
        &[("Stripe-Signature", header)],
        other,
    )
    .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn the_fake_s_webhooks_take_an_order_to_delivered_and_a_redelivery_runs_once() {
    let cairn = Cairn::start().await;
    cairn.webhooks_to_host(30, 300);
    let reply = cairn
        .process_order("wh-1", &order_input("dana@example.com"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "confirmed");
    let order = order_when(&cairn, "wh-1", |o| {
        o["status"] == "delivered" && o["emailDelivery"] == "delivered"
    })
    .await;
    assert_eq!(
        statuses(&order),
        ["pending", "paid", "confirmed", "shipped", "delivered"]
    );
    assert_eq!(order["shipment"], "DELIVERED");

    // Stripe's charge.succeeded for this order, sent again by the fake: 200, run once.
    let sent = json_of(
        cairn
            .http
            .get(format!("{}/_mock/webhooks", cairn.mock.control_url())),
    )
    .await;
    let charge_event = sent
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["endpoint"] == "stripe")
        .expect("the fake sent charge.succeeded");
    let event_id = charge_event["event_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while processed(&cairn, "stripe", event_id).await.is_empty() {
        assert!(Instant::now() < deadline, "charge.succeeded never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = json_of(cairn.http.post(format!(
        "{}/_mock/webhooks/{event_id}/redeliver",
        cairn.mock.control_url()
    )))
    .await;
    assert_eq!(again["hostStatus"], 200, "{again}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let runs = processed(&cairn, "stripe", event_id).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "succeeded", "{runs:?}");
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/total"), 1);
}

#[tokio::test]
async fn a_pending_charge_is_completed_by_its_webhook() {
    let cairn = Cairn::start().await;
    cairn.webhooks_to_host(20, 400);
    let reply = cairn
        .post(
            "/OrderOrchestrator/wh-p/ProcessOrder/send",
            &pending_order(),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let waiting = order_when(&cairn, "wh-p", |o| o["status"] != "pending").await;
    assert_eq!(waiting["status"], "payment_pending", "{waiting}");
    let id = reply.invocation_id.unwrap();
    let done = cairn.output(&id).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "confirmed", "{}", done.body);
    let order = cairn.get_order("wh-p").await.body;
    let timeline = order["timeline"].as_array().unwrap();
    assert_eq!(
        statuses(&order)[..4],
        ["pending", "payment_pending", "paid", "confirmed"]
    );
    assert!(timeline[2]["cause"].as_str().unwrap().starts_with("evt_"));
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/total"), 1);
    assert_eq!(count(&stats, "/labels/total"), 1);
    assert_eq!(count(&stats, "/emails/total"), 1);
}

#[tokio::test]
async fn a_timed_out_payment_fails_and_its_late_success_is_refunded_once() {
    // The operator's PAYMENT_TIMEOUT (`--service-config OrderOrchestrator.payment-timeout=1s`).
    let cairn = Cairn::start_opts(cairn_e2e::Options {
        service_config: vec![(
            "OrderOrchestrator".into(),
            "payment-timeout".into(),
            "1s".into(),
        )],
        ..cairn_e2e::Options::default()
    })
    .await;
    cairn.webhooks_to_host(20, 2500);
    let started = Instant::now();
    let reply = cairn.process_order("wh-t", &pending_order()).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "payment_failed", "{}", reply.body);
    assert!(
        reply.body["failureReason"]
            .as_str()
            .unwrap()
            .starts_with("payment_timeout")
    );
    let invocation = cairn.invocation(&reply).await;
    let reads: Vec<&Value> = invocation["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "config")
        .collect();
    assert_eq!(reads.len(), 1, "{invocation}");
    let order = order_when(&cairn, "wh-t", |o| !o["refundId"].is_null()).await;
    assert_eq!(order["status"], "payment_failed");
    let order = order_when(&cairn, "wh-t", |o| o["refundConfirmed"] == true).await;
    let charge = order["chargeId"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, &format!("/refunds/by_charge/{charge}")), 1);
    assert_eq!(count(&stats, "/labels/total"), 0);
}

#[tokio::test]
async fn cancel_refunds_a_confirmed_order_once_and_a_pending_one_is_cancelled() {
    let cairn = Cairn::start().await;
    // Slow enough tracking that the cancel comes before the parcel ships.
    cairn.webhooks_to_host(500, 1500);
    let reply = cairn
        .process_order("wh-c", &order_input("erin@example.com"))
        .await;
    assert_eq!(reply.body["status"], "confirmed");
    let first = cairn
        .post("/OrderOrchestrator/wh-c/CancelOrder", &Value::Null)
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["status"], "refunded", "{}", first.body);
    let second = cairn
        .post("/OrderOrchestrator/wh-c/CancelOrder", &Value::Null)
        .await;
    assert_eq!(second.body["refundId"], first.body["refundId"]);
    assert_eq!(second.body["status"], "refunded");
    let confirmed = order_when(&cairn, "wh-c", |o| o["refundConfirmed"] == true).await;
    assert_eq!(confirmed["status"], "refunded");
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/refunds/total"), 1);
    // Its label had not shipped: voided at Shippo, once, and Shippo's transaction_updated says so.
    assert_eq!(first.body["labelVoided"], true, "{}", first.body);
    assert_eq!(count(&stats, "/label_refunds/by_order/wh-c"), 1);

    // A pending one: cancelled while it waits, its later success refunded.
    let reply = cairn
        .post(
            "/OrderOrchestrator/wh-cp/ProcessOrder/send",
            &pending_order(),
        )
        .await;
    let id = reply.invocation_id.unwrap();
    order_when(&cairn, "wh-cp", |o| o["status"] == "payment_pending").await;
    let cancelled = cairn
        .post("/OrderOrchestrator/wh-cp/CancelOrder", &Value::Null)
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    assert_eq!(cairn.output(&id).await.body["status"], "cancelled");
    let order = order_when(&cairn, "wh-cp", |o| !o["refundId"].is_null()).await;
    assert_eq!(order["status"], "cancelled");
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/refunds/total"), 2);
    assert_eq!(count(&stats, "/labels/by_order/wh-cp"), 0);
}

#[tokio::test]
async fn an_event_for_an_unknown_order_is_kept_and_visible() {
    let cairn = Cairn::start().await;
    let body = r#"{"id":"evt_orphan","type":"charge.succeeded","data":{"object":{"id":"ch_9","metadata":{"order_id":"no-such-order"}}}}"#;
    let sig = stripe_signature(STRIPE_WEBHOOK_SECRET, &now().to_string(), body);
    let reply = post_webhook(
        &cairn,
        "/webhooks/stripe",
        &[("Stripe-Signature", sig)],
        body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let id = reply.body["accepted"][0]["invocationId"].as_str().unwrap();
    let invocation = cairn.finished_invocation(id).await;
    assert_eq!(invocation["status"], "failed", "{invocation}");
    let message = invocation["failure"]["message"].as_str().unwrap();
    assert!(
        message.contains("no-such-order") && message.contains("evt_orphan"),
        "{message}"
    );
}

#[tokio::test]
async fn a_thousand_events_with_ten_percent_redelivered_are_each_processed_once() {
    let cairn = Cairn::start().await;
    let url = cairn.ingress("/webhooks/stripe");
    let t = now().to_string();
    let bodies: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"id":"evt_bulk_{i:04}","type":"charge.captured","data":{{"object":{{"id":"ch_{i}"}}}}}}"#))
        .collect();
    // Every tenth event is sent twice, the copies concurrently with the rest.
    let sends = bodies
        .iter()
        .enumerate()
        .flat_map(|(i, body)| std::iter::repeat_n(body, if i % 10 == 0 { 2 } else { 1 }))
        .map(|body| {
            let request = cairn
                .http
                .post(&url)
                .header(
                    "Stripe-Signature",
                    stripe_signature(STRIPE_WEBHOOK_SECRET, &t, body),
                )
                .header("content-type", "application/json")
                .body(body.clone());
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.unwrap()
            }
        });
    let answers: Vec<Value> = futures::stream::iter(sends)
        .buffer_unordered(32)
        .collect()
        .await;
    let accepted: usize = answers
        .iter()
        .map(|a| a["accepted"].as_array().unwrap().len())
        .sum();
    let duplicates: usize = answers
        .iter()
        .map(|a| a["duplicates"].as_array().unwrap().len())
        .sum();
    assert_eq!((accepted, duplicates), (1000, 100));
    let list = cairn
        .admin_get("/invocations?service=WebhookProcessor&limit=10000")
        .await
        .body;
    let keys: std::collections::BTreeSet<&str> = list["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["idempotencyKey"].as_str().unwrap())
        .collect();
    assert_eq!(list["invocations"].as_array().unwrap().len(), 1000);
    assert_eq!(keys.len(), 1000);
}

#[tokio::test]
async fn a_source_allow_list_refuses_other_addresses() {
    for (allowed, status) in [("10.9.9.9", 403), ("10.9.9.9, 127.0.0.1", 200)] {
        let specs = cairn::bundled::webhook_specs();
        let env = |var: &str| match var {
            "SHIPPO_WEBHOOK_TOKEN" => Some("tok_allow".to_string()),
            "SHIPPO_WEBHOOK_ALLOW_FROM" => Some(allowed.to_string()),
            _ => None,
        };
        let mut options = cairn_e2e::Options::default();
        options.ingress.webhooks = cairn::webhooks::endpoint::load_all(&specs, &env).unwrap();
        let cairn = Cairn::start_opts(options).await;
        let before = rows(&cairn).await;
        let body = r#"{"event":"batch_created","data":{"object_id":"b_1","status":"VALID"}}"#;
        let reply = post_webhook(&cairn, "/webhooks/shippo?token=tok_allow", &[], body).await;
        assert_eq!(reply.status, status, "{allowed}: {}", reply.body);
        if status == 403 {
            assert_eq!(reply.body["error"], "source_not_allowed");
            assert_eq!(rows(&cairn).await, before);
        }
    }
}

#[tokio::test]
async fn an_endpoint_whose_target_is_not_deployed_answers_503_and_writes_nothing() {
    let specs = cairn::webhooks::endpoint::read_specs(
        r#"[{"name": "acme", "verifier": {"kind": "hmac-sha256", "header": "X-Acme-Signature",
             "encoding": "hex"}, "secretEnv": "ACME_SECRET", "target": "AcmeEvents/Handle",
             "eventId": ["/id"]}]"#,
    )
    .unwrap();
    let env = |var: &str| (var == "ACME_SECRET").then(|| "acme_secret".to_string());
    let mut options = cairn_e2e::Options::default();
    options.ingress.webhooks = cairn::webhooks::endpoint::load_all(&specs, &env).unwrap();
    let cairn = Cairn::start_opts(options).await;
    let body = r#"{"id":"acme_1"}"#;
    let signature = openssl_hmac("acme_secret", body);
    let before = rows(&cairn).await;
    let reply = post_webhook(
        &cairn,
        "/webhooks/acme",
        &[("X-Acme-Signature", signature)],
        body,
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body["error"], "target_unavailable");
    assert_eq!(rows(&cairn).await, before);
    let reply = post_webhook(
        &cairn,
        "/webhooks/acme",
        &[("X-Acme-Signature", "00".into())],
        body,
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.body);
}

#[tokio::test]
async fn events_still_pending_are_bounded_and_past_the_bound_get_503() {
    let mut options = cairn_e2e::Options::default();
    options.ingress.webhook_max_pending = 2;
    let cairn = Cairn::start_opts(options).await;
    // An order waiting for its payment holds its key: events for it stay pending.
    let reply = cairn
        .post(
            "/OrderOrchestrator/wh-b/ProcessOrder/send",
            &pending_order(),
        )
        .await;
    assert_eq!(reply.status, 202);
    order_when(&cairn, "wh-b", |o| o["status"] == "payment_pending").await;
    let token = cairn::mock::webhooks::SHIPPO_WEBHOOK_TOKEN;
    let path = format!("/webhooks/shippo?token={token}");
    let track = |n: u32| {
        format!(
            r#"{{"event":"track_updated","data":{{"metadata":"order wh-b","tracking_status":{{"object_id":"ts_b{n}","status":"TRANSIT"}}}}}}"#
        )
    };
    for n in 0..2 {
        let reply = post_webhook(&cairn, &path, &[], &track(n)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // The two go as far as they can (each waits behind ProcessOrder in ApplyEvent).
    let mut before = rows(&cairn).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = rows(&cairn).await;
        if now == before {
            break;
        }
        before = now;
    }
    let response = cairn
        .http
        .post(cairn.ingress(&path))
        .header("content-type", "application/json")
        .body(track(2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(rows(&cairn).await, before);
}
