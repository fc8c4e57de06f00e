//! Durability (issue 3), in-process: replay after a stop at every step, divergence, retries,
//! ingress idempotency keys, `/send` + output, one exclusive invocation per key, bad input
//! that writes nothing, and durable sleeps. The kill -9 tests with child processes are in
//! `crash.rs`.

use std::time::{Duration, Instant};

use cairn::journal::{Entry, EntryKind};
use cairn::storage::{Created, NewInvocation, Table};
use cairn_e2e::{Cairn, Options, count, order_input};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The journal of the uninterrupted order has this many entries (get, set pending, charge,
/// set paid, label, email, set confirmed): the fail point is tried after each one.
const ORDER_ENTRIES: u32 = 7;

#[tokio::test]
async fn an_order_stopped_after_any_step_resumes_with_the_same_effects() {
    let reference = Cairn::start().await;
    let reply = reference
        .process_order("order-ref", &order_input("ref@example.com"))
        .await;
    let journal = reference
        .admin_get(&format!("/invocations/{}", reply.invocation_id.unwrap()))
        .await
        .body["journal"]
        .as_array()
        .unwrap()
        .len() as u32;
    assert_eq!(
        journal, ORDER_ENTRIES,
        "the order's journal changed; update ORDER_ENTRIES"
    );

    for step in 0..ORDER_ENTRIES {
        let cairn = Cairn::start_opts(Options {
            fail_after_entry: Some(step),
            ..Options::default()
        })
        .await;
        let reply = cairn
            .process_order("order-stop", &order_input("stop@example.com"))
            .await;
        assert_eq!(
            reply.status, 200,
            "stopped after entry {step}: {:?}",
            reply.body
        );
        assert_eq!(
            reply.body["status"], "confirmed",
            "stopped after entry {step}"
        );
        let inv = cairn.invocation(&reply).await;
        assert_eq!(inv["attempt"], 2, "stopped after entry {step}: one retry");
        assert_eq!(
            inv["journal"].as_array().unwrap().len() as u32,
            ORDER_ENTRIES
        );
        let stats = cairn.stats().await;
        for counter in ["/charges/total", "/labels/total", "/emails/total"] {
            assert_eq!(
                count(&stats, counter),
                1,
                "stopped after entry {step}: {counter} {stats}"
            );
        }
    }
}

#[tokio::test]
async fn a_changed_component_replaying_an_old_journal_is_reported_as_diverged() {
    let cairn = Cairn::start().await;
    let runtime = cairn.server.runtime.clone();
    let registry = runtime.registry();
    let (deployment, _) = registry.service("OrderOrchestrator").unwrap();
    // An unfinished invocation whose journal says the component first read state "cart".
    let created = runtime
        .storage
        .create_invocation(&NewInvocation {
            id: "inv_diverging".into(),
            service: "OrderOrchestrator".into(),
            handler: "ProcessOrder".into(),
            key: Some("order-div".into()),
            input: order_input("div@example.com").to_string().into_bytes(),
            deployment_id: deployment.id.clone(),
            providers: registry.pins(deployment),
            idempotency: None,
            not_before: None,
            trace_parent: None,
        })
        .await
        .unwrap();
    assert!(matches!(created, Created::New(_)));
    let recorded = Entry {
        index: 0,
        kind: EntryKind::State,
        name: "get".into(),
        args_digest: cairn::journal::digest("cart").unwrap(),
        result: b"null".to_vec(),
        detail: None,
        started_at: 0,
        duration_us: 0,
        soft: false,
    };
    runtime
        .storage
        .append("inv_diverging", &recorded, None)
        .await
        .unwrap();
    drop(registry);

    // Recovery at start replays it.
    let cairn = cairn.restart().await;
    let inv = wait_until_done(&cairn, "inv_diverging").await;
    assert_eq!(inv["status"], "failed", "{inv}");
    assert_eq!(inv["failure"]["kind"], "diverged", "{inv}");
    assert_eq!(inv["failure"]["divergence"]["entry"], 0, "{inv}");
    let message = inv["failure"]["message"].as_str().unwrap();
    assert!(message.contains("entry 0"), "{message}");
    assert_eq!(
        inv["journal"].as_array().unwrap().len(),
        1,
        "nothing appended after divergence"
    );
    let stats = cairn.stats().await;
    assert_eq!(
        count(&stats, "/requests/stripe"),
        0,
        "no side effect: {stats}"
    );
}

/// A provider that answers 503 twice then succeeds: the host calls it again with the same
/// idempotency key (a `RetryPolicy` per call, before the caller sees the error), so the order
/// is confirmed in its first attempt, with one charge.
#[tokio::test]
async fn a_provider_that_fails_twice_then_succeeds_is_called_again_with_the_same_key() {
    let cairn = Cairn::start().await;
    cairn
        .fault(json!({"stripe": {"fail_next": 2, "status": 503}}))
        .await;
    let reply = cairn
        .process_order("order-flaky", &order_input("flaky@example.com"))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "confirmed");
    let inv = cairn.invocation(&reply).await;
    assert_eq!(inv["attempt"], 1, "{inv}");
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/requests/stripe"), 3, "{stats}");
    assert_eq!(count(&stats, "/charges/total"), 1, "{stats}");
    assert_eq!(count(&stats, "/charges/by_order/order-flaky"), 1, "{stats}");
    let keys: Vec<Value> = cairn
        .requests("stripe")
        .await
        .iter()
        .map(|r| r["headers"]["idempotency-key"].clone())
        .collect();
    assert!(
        keys[0].is_string() && keys.iter().all(|k| *k == keys[0]),
        "{keys:?}"
    );
}

/// The email, an optional step, retried like the rest: 503, 503, 202 gives one email sent and
/// `emailSent: true`; the three requests are the same.
#[tokio::test]
async fn an_email_answered_503_twice_is_sent_on_the_third_try() {
    let cairn = Cairn::start().await;
    cairn
        .fault(json!({"sendgrid": {"fail_next": 2, "status": 503}}))
        .await;
    let reply = cairn
        .process_order("order-mail", &order_input("mail@example.com"))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["emailSent"], true, "{:?}", reply.body);
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/emails/total"), 1, "{stats}");
    let requests = cairn.requests("sendgrid").await;
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests.iter().all(|r| r["body"] == requests[0]["body"]));
    // One journal entry, its three exchanges, one idempotency key.
    let inv = cairn.invocation(&reply).await;
    let email = &inv["journal"][EMAIL_ENTRY as usize];
    assert_eq!(email["name"], "cairn:commerce/email.send-email", "{inv}");
    let statuses: Vec<&Value> = email["detail"]["effect"]["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| &x["response"]["status"])
        .collect();
    assert_eq!(statuses, [&json!(503), &json!(503), &json!(202)], "{email}");
}

/// A 429 with `Retry-After: 1`: the email is sent again no sooner than a second later.
#[tokio::test]
async fn a_rate_limited_email_is_sent_again_after_its_retry_after() {
    let cairn = Cairn::start().await;
    cairn
        .fault(json!({"sendgrid": {"fail_next": 1, "status": 429}}))
        .await;
    let reply = cairn
        .process_order("order-limit", &order_input("limit@example.com"))
        .await;
    assert_eq!(reply.body["emailSent"], true, "{:?}", reply.body);
    assert_eq!(count(&cairn.stats().await, "/emails/total"), 1);
    assert_eq!(cairn.requests("sendgrid").await.len(), 2);
    let inv = cairn.invocation(&reply).await;
    let email = &inv["journal"][EMAIL_ENTRY as usize];
    let took_us = email["durationUs"].as_u64().unwrap();
    assert!(
        took_us >= 1_000_000,
        "sent again after {took_us} µs: {email}"
    );
}

#[tokio::test]
async fn retries_run_out_and_the_invocation_fails_with_its_last_error() {
    let cairn = Cairn::start_opts(Options {
        max_attempts: 3,
        // One try per call: the invocation's attempts alone.
        call_retry: vec!["*=max-attempts=1".into()],
        ..Options::default()
    })
    .await;
    cairn
        .fault(json!({"stripe": {"fail_next": 1_000_000, "status": 503}}))
        .await;
    let reply = cairn
        .process_order("order-down", &order_input("down@example.com"))
        .await;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.body["error"], "retries_exhausted");
    let inv = cairn.invocation(&reply).await;
    assert_eq!(inv["status"], "failed");
    assert_eq!(inv["attempt"], 3);
    assert!(
        inv["failure"]["message"].as_str().unwrap().len() > 3,
        "{inv}"
    );
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/requests/stripe"), 3, "{stats}");
    assert_eq!(count(&stats, "/charges/total"), 0, "{stats}");
}

#[tokio::test]
async fn a_service_retry_policy_overrides_the_global_one() {
    let cairn = Cairn::start_opts(Options {
        max_attempts: 5,
        service_retry: vec![(
            "OrderOrchestrator".into(),
            "max-attempts=2,initial=5ms".into(),
        )],
        call_retry: vec!["*=max-attempts=1".into()],
        ..Options::default()
    })
    .await;
    cairn
        .fault(json!({"stripe": {"fail_next": 1_000_000, "status": 503}}))
        .await;
    let reply = cairn
        .process_order("order-policy", &order_input("policy@example.com"))
        .await;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    let inv = cairn.invocation(&reply).await;
    assert_eq!(inv["attempt"], 2, "{inv}");
    assert_eq!(count(&cairn.stats().await, "/requests/stripe"), 2);
}

#[tokio::test]
async fn a_declined_card_is_terminal_and_never_retried() {
    let cairn = Cairn::start().await;
    let reply = cairn
        .process_order("order-nope", &order_input("x+decline@example.com"))
        .await;
    assert_eq!(reply.body["status"], "payment_failed");
    let inv = cairn.invocation(&reply).await;
    assert_eq!(inv["attempt"], 1);
    assert_eq!(count(&cairn.stats().await, "/requests/stripe"), 1);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_result_and_rejects_another_body() {
    let cairn = Cairn::start().await;
    let post = |body: Value| {
        let cairn = &cairn;
        async move {
            let resp = cairn
                .http
                .post(cairn.ingress("/OrderOrchestrator/order-idem/ProcessOrder"))
                .header("idempotency-key", "client-key-1")
                .json(&body)
                .send()
                .await
                .unwrap();
            let id = resp
                .headers()
                .get("x-cairn-invocation-id")
                .map(|v| v.to_str().unwrap().to_string());
            (resp.status(), id, resp.json::<Value>().await.unwrap())
        }
    };
    let (s1, id1, b1) = post(order_input("idem@example.com")).await;
    let (s2, id2, b2) = post(order_input("idem@example.com")).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(id1, id2, "the same invocation");
    assert_eq!(b1, b2);
    let rows = cairn.count_rows(Table::Invocations).await;
    assert_eq!(rows, 1);

    let (s3, _, b3) = post(order_input("someone-else@example.com")).await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY, "{b3}");
    assert!(
        b3["message"].as_str().unwrap().contains("client-key-1"),
        "{b3}"
    );
    assert_eq!(
        cairn.count_rows(Table::Invocations).await,
        rows,
        "nothing written"
    );
    assert_eq!(count(&cairn.stats().await, "/charges/total"), 1);
}

#[tokio::test]
async fn send_returns_at_once_and_the_output_can_be_awaited() {
    let cairn = Cairn::start_with(cairn::mock::MockConfig {
        decline_rate: 0.0,
        delay_ms: (50, 50),
    })
    .await;
    let reply = cairn
        .post(
            "/OrderOrchestrator/order-send/ProcessOrder/send",
            &order_input("send@example.com"),
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let id = reply.body["invocationId"].as_str().unwrap().to_string();
    assert_eq!(reply.invocation_id.as_deref(), Some(id.as_str()));
    let output = cairn
        .http
        .get(cairn.ingress(&format!("/invocations/{id}/output")))
        .send()
        .await
        .unwrap();
    assert_eq!(output.status(), 200);
    let order: Value = output.json().await.unwrap();
    assert_eq!(order["status"], "confirmed");
    let missing = cairn
        .http
        .get(cairn.ingress("/invocations/inv_nope/output"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let listed = cairn
        .admin_get("/invocations?status=succeeded&service=OrderOrchestrator&key=order-send")
        .await;
    let list = listed.body["invocations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{:?}", listed.body);
    assert_eq!(list[0]["id"], id.as_str());
}

#[tokio::test]
async fn two_hundred_concurrent_calls_on_one_key_give_one_answer_and_one_charge() {
    let cairn = Cairn::start().await;
    let input = order_input("crowd@example.com");
    let calls = (0..200).map(|_| cairn.process_order("order-crowd", &input));
    let replies = futures::future::join_all(calls).await;
    let first = &replies[0].body;
    assert_eq!(first["status"], "confirmed", "{first}");
    for reply in &replies {
        assert_eq!(reply.status, 200);
        assert_eq!(&reply.body, first);
    }
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/total"), 1, "{stats}");
    assert_eq!(count(&stats, "/labels/total"), 1, "{stats}");
    assert_eq!(count(&stats, "/emails/total"), 1, "{stats}");
}

#[tokio::test]
async fn bad_requests_at_the_ingress_get_json_errors_and_write_no_row() {
    let cairn = Cairn::start().await;
    let order = order_input("bad@example.com").to_string().into_bytes();
    let big = vec![b' '; (1 << 20) + 10];
    // (name, method, path, content type, body, expected status)
    type Case<'a> = (
        &'a str,
        reqwest::Method,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        u16,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            reqwest::Method::POST,
            "/OrderOrchestrator/k/ProcessOrder",
            Some("application/json"),
            b"{oops".to_vec(),
            400,
        ),
        (
            "wrong content type",
            reqwest::Method::POST,
            "/OrderOrchestrator/k/ProcessOrder",
            Some("text/plain"),
            order.clone(),
            415,
        ),
        (
            "too large",
            reqwest::Method::POST,
            "/OrderOrchestrator/k/ProcessOrder",
            Some("application/json"),
            big,
            413,
        ),
        (
            "unknown service",
            reqwest::Method::POST,
            "/Nope/k/ProcessOrder",
            Some("application/json"),
            order.clone(),
            404,
        ),
        (
            "unknown handler",
            reqwest::Method::POST,
            "/OrderOrchestrator/k/Nope",
            Some("application/json"),
            order.clone(),
            404,
        ),
        (
            "wrong method",
            reqwest::Method::GET,
            "/OrderOrchestrator/k/ProcessOrder",
            None,
            Vec::new(),
            405,
        ),
        (
            "missing key",
            reqwest::Method::POST,
            "/OrderOrchestrator/ProcessOrder",
            Some("application/json"),
            order.clone(),
            400,
        ),
        (
            "no route",
            reqwest::Method::POST,
            "/a/b/c/d/e",
            None,
            Vec::new(),
            404,
        ),
        (
            "empty idempotency key",
            reqwest::Method::POST,
            "/OrderOrchestrator/k/ProcessOrder",
            Some("application/json"),
            order.clone(),
            400,
        ),
    ];
    for (name, method, path, content_type, body, status) in cases {
        let mut req = cairn.http.request(method, cairn.ingress(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if name == "empty idempotency key" {
            req = req.header("idempotency-key", "");
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{name}");
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{name}: {body}"
        );
    }
    assert_eq!(cairn.count_rows(Table::Invocations).await, 0);
    assert_eq!(cairn.count_rows(Table::Journal).await, 0);
    assert_eq!(cairn.count_rows(Table::State).await, 0);
}

#[tokio::test]
async fn a_sleeping_invocation_holds_no_instance_and_wakes_when_its_time_comes() {
    let cairn = Cairn::start().await;
    let deployed = cairn.deploy_file(test_artifacts::STEPS_SERVICE, None).await;
    assert!(deployed.status.is_success(), "{:?}", deployed.body);
    let sent_at = std::time::Instant::now();
    let sent = cairn
        .post("/Steps/Run/send", &json!({"steps": 2, "sleepMs": 1500}))
        .await;
    assert_eq!(sent.status, 202, "{:?}", sent.body);
    let id = sent.invocation_id.expect("invocation id");

    // While it sleeps: its entries are durable and no attempt (no instance) is running.
    let mut suspended = false;
    for _ in 0..100 {
        let inv = cairn.admin_get(&format!("/invocations/{id}")).await.body;
        if journal_kinds(&inv) == ["run", "timer"] && cairn.server.runtime.running_attempts() == 0 {
            suspended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(suspended, "the invocation did not suspend in its sleep");
    let asleep = cairn.admin_get(&format!("/invocations/{id}")).await.body;
    assert_eq!(asleep["status"], "running");
    // The admin API says until when it sleeps: the end its timer entry recorded.
    let timer = &asleep["journal"][1];
    assert_eq!(asleep["sleepingUntil"], timer["result"], "{asleep}");
    assert!(asleep["sleepingUntil"].as_i64().is_some(), "{asleep}");

    let done = wait_until_done(&cairn, &id).await;
    assert!(
        sent_at.elapsed() >= std::time::Duration::from_millis(1500),
        "woke early"
    );
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["sleepingUntil"], Value::Null);
    assert_eq!(journal_kinds(&done), ["run", "timer", "run"]);
    assert_eq!(cairn.output(&id).await.body, json!({"steps": 2, "sum": 1}));
}

/// The kinds of an invocation's journal entries, in order (admin API JSON).
fn journal_kinds(invocation: &Value) -> Vec<&str> {
    invocation["journal"]
        .as_array()
        .expect("journal")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect()
}

async fn wait_until_done(cairn: &Cairn, id: &str) -> Value {
    for _ in 0..200 {
        let inv = cairn.admin_get(&format!("/invocations/{id}")).await.body;
        if inv["status"] != "running" {
            return inv;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("invocation {id} did not finish");
}

/// Journal positions of the provider calls in an order (see ORDER_ENTRIES).
const CHARGE_ENTRY: u32 = 2;
const LABEL_ENTRY: u32 = 4;
const EMAIL_ENTRY: u32 = 5;

#[tokio::test]
async fn a_call_left_in_doubt_by_a_crash_never_takes_effect_twice() {
    for entry in [CHARGE_ENTRY, LABEL_ENTRY, EMAIL_ENTRY] {
        let cairn = Cairn::start_opts(Options {
            fail_before_recording: Some(entry),
            // The label in doubt is looked up once its request cannot be in flight: a second
            // (and a margin) after its marker.
            wall_limit: Some(Duration::from_secs(1)),
            ..Options::default()
        })
        .await;
        let reply = cairn
            .process_order("order-doubt", &order_input("doubt@example.com"))
            .await;
        assert_eq!(reply.status, 200, "entry {entry}: {:?}", reply.body);
        let order = &reply.body;
        assert_eq!(order["status"], "confirmed", "entry {entry}: {order}");
        let stats = cairn.stats().await;
        // The effect happened once, whatever the attempt that follows the crash does.
        for counter in ["/charges/total", "/labels/total", "/emails/total"] {
            assert_eq!(
                count(&stats, counter),
                1,
                "entry {entry}: {counter} {stats}"
            );
        }
        let inv = cairn.invocation(&reply).await;
        let recovery = inv["journal"][entry as usize]["detail"]["effect"]["recovery"].clone();
        match entry {
            // Stripe deduplicates on the idempotency key: the call is simply made again.
            CHARGE_ENTRY => {
                assert_eq!(recovery, Value::Null, "{inv}");
                assert_eq!(count(&stats, "/replays"), 1, "Stripe replayed: {stats}");
                assert!(order["chargeId"].is_string());
            }
            // Shippo has no idempotency key: the label bought before the crash is looked up.
            LABEL_ENTRY => {
                assert_eq!(recovery, "in doubt: found by lookup", "{inv}");
                assert!(order["trackingNumber"].is_string(), "{order}");
            }
            // SendGrid has neither: at most once, recorded as in doubt.
            _ => {
                assert_eq!(recovery, "in doubt: not repeated (at-most-once)", "{inv}");
                assert_eq!(order["emailSent"], false, "{order}");
                assert_eq!(order["failures"][0]["step"], "email", "{order}");
            }
        }
    }
}

/// A label left in doubt by a crash, then 600 more labels bought at the same account before
/// the recovery runs: the lookup reads past them (it is bounded by when the call started, not by
/// a page count) and finds the order's label, so no second one is bought.
#[tokio::test]
async fn a_label_in_doubt_is_found_behind_600_newer_ones() {
    let cairn = Cairn::start_opts(Options {
        fail_before_recording: Some(LABEL_ENTRY),
        // The attempt after the crash waits long enough for the 600 purchases below.
        service_retry: vec![(
            "OrderOrchestrator".into(),
            "initial=8s,factor=1,max-delay=8s".into(),
        )],
        ..Options::default()
    })
    .await;
    let id = cairn.send_order("order-600").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&cairn.stats().await, "/labels/total") < 1 {
        assert!(Instant::now() < deadline, "no label was bought");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("{}/transactions", cairn.mock.base_url());
    let buys = (0..600).map(|n| {
        let (http, url) = (cairn.http.clone(), url.clone());
        async move {
            let body = json!({
                "shipment": {
                    "address_from": {"name": "Shop", "street1": "215 Clayton St.", "city": "San Francisco", "state": "CA", "zip": "94117", "country": "US"},
                    "address_to": {"name": "Bob", "street1": "1 Main St", "city": "SF", "state": "CA", "zip": "94105", "country": "US"},
                    "parcels": [{"length": "10", "width": "8", "height": "4", "distance_unit": "in", "weight": "2", "mass_unit": "lb"}]
                },
                "carrier_account": "cairn_mock_carrier", "servicelevel_token": "usps_priority",
                "label_file_type": "PDF", "metadata": format!("order other-{n}"), "async": false
            });
            let reply = http
                .post(&url)
                .header("authorization", "ShippoToken shippo_test_cairn_mock")
                .json(&body)
                .send()
                .await
                .expect("label purchase");
            assert!(reply.status().is_success(), "{:?}", reply.text().await);
        }
    });
    futures::stream::iter(buys)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/labels/total"), 601, "{stats}");
    let invocation = cairn.admin_get(&format!("/invocations/{id}")).await.body;
    assert_eq!(
        invocation["status"], "running",
        "the recovery ran too early: {invocation}"
    );

    let reply = cairn.output(&id).await;
    assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    let stats = cairn.stats().await;
    assert_eq!(
        count(&stats, "/labels/total"),
        601,
        "a second label: {stats}"
    );
    assert_eq!(count(&stats, "/labels/by_order/order-600"), 1, "{stats}");
    let inv = cairn.admin_get(&format!("/invocations/{id}")).await.body;
    let recovery = &inv["journal"][LABEL_ENTRY as usize]["detail"]["effect"]["recovery"];
    assert_eq!(recovery, "in doubt: found by lookup", "{inv}");
}
