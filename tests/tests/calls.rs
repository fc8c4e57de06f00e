//! Calls and sends between services, delayed sends and durable promises (issue 11), through the
//! test object `Relay` (`guests/testing/relay`) and the order orchestrator as a callee whose
//! effects are counted at the fake: a call returns the callee's output and starts it once, a
//! cycle on one exclusive key is refused, a delayed send fires once after its delay (also when
//! the delay ends while the host is down), and promises are resolved and rejected over HTTP or
//! by a component, time out, and wake their waiter after a restart.

use std::time::{Duration, Instant};

use cairn::storage::ScratchDatabase;
use cairn_e2e::{Cairn, Options, count, order_input};
use futures::StreamExt;
use serde_json::{Value, json};

async fn with_relay() -> Cairn {
    relay_on(Cairn::start().await).await
}

async fn relay_on(cairn: Cairn) -> Cairn {
    let deployed = cairn
        .admin_post(
            "/deployments",
            &json!({"path": test_artifacts::RELAY_SERVICE}),
        )
        .await;
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    cairn
}

fn order(key: &str) -> Value {
    json!({"service": "OrderOrchestrator", "key": key, "handler": "ProcessOrder"})
}

/// The id of the promise that invocation `id` (a `Relay` `Await`) created: its first entry.
async fn promise_of(cairn: &Cairn, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let inv = cairn.admin_get(&format!("/invocations/{id}")).await.body;
        let first = &inv["journal"][0];
        if first["kind"] == "promise" && first["name"] == "create" {
            return first["result"].as_str().expect("promise id").to_string();
        }
        assert!(Instant::now() < deadline, "no promise created: {inv}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn send_await(cairn: &Cairn, key: &str, input: Value) -> String {
    let reply = cairn
        .post(&format!("/Relay/{key}/Await/send"), &input)
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    reply.invocation_id.expect("invocation id")
}

/// A typed client (the SDK's `{Trait}Client` of a declared service) calls and sends like the
/// untyped calls: one journaled call with the callee's typed output; a send is its own
/// invocation.
#[tokio::test]
async fn a_typed_client_calls_and_sends_to_a_declared_service() {
    let cairn = with_relay().await;
    let steps = cairn
        .admin_post(
            "/deployments",
            &json!({"path": test_artifacts::STEPS_SERVICE}),
        )
        .await;
    assert_eq!(steps.status, 201, "{:?}", steps.body);

    let reply = cairn.post("/Relay/t1/RunSteps", &json!({"steps": 4})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body, json!({"steps": 4, "sum": 6}));
    let caller = cairn.invocation(&reply).await;
    assert_eq!(caller["journal"][0]["name"], "call Steps/Run", "{caller}");

    let sent = cairn
        .post("/Relay/t2/RunSteps", &json!({"steps": 2, "send": true}))
        .await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    let id = sent.body["invocationId"].as_str().expect("invocation id");
    let output = cairn.output(id).await;
    assert_eq!(
        output.body,
        json!({"steps": 2, "sum": 1}),
        "{:?}",
        output.body
    );

    // The callee's input checks still hold: its terminal 400 is the caller's.
    let refused = cairn
        .post("/Relay/t3/RunSteps", &json!({"steps": 1001}))
        .await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("steps: 1001 is more than 1000"),
        "{:?}",
        refused.body
    );
}

#[tokio::test]
async fn a_service_calls_another_and_gets_its_output_from_one_callee() {
    let cairn = with_relay().await;
    let input = json!({"target": order("order-call-1"), "input": order_input("c@example.com")});
    let reply = cairn.post("/Relay/r1/Call", &input).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        reply.body["output"]["status"], "confirmed",
        "{:?}",
        reply.body
    );
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/total"), 1, "{stats}");

    let caller = cairn.invocation(&reply).await;
    let journal = caller["journal"].as_array().unwrap();
    let names: Vec<&str> = journal
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["call OrderOrchestrator/order-call-1/ProcessOrder", "result"],
        "{caller}"
    );
    assert_eq!(journal[0]["kind"], "invoke");
    let callee = journal[0]["result"]["Ok"].as_str().expect("callee id");
    let callee = cairn
        .admin_get(&format!("/invocations/{callee}"))
        .await
        .body;
    assert_eq!(callee["status"], "succeeded", "{callee}");
    assert_eq!(callee["key"], "order-call-1");
    assert_eq!(
        callee["idempotencyKey"],
        format!("{}-0", caller["id"].as_str().unwrap())
    );
    let recorded = journal[1]["result"]["Ok"]
        .as_str()
        .expect("the callee's output");
    assert!(recorded.contains(r#""status":"confirmed""#), "{caller}");

    // A callee's terminal failure is the caller's, with its code.
    let bad = json!({"target": order("order-call-2"), "input": {"items": []}});
    let failed = cairn.post("/Relay/r1/Call", &bad).await;
    assert_eq!(failed.status.as_u16(), 400, "{:?}", failed.body);
}

#[tokio::test]
async fn a_call_cycle_on_one_exclusive_key_and_unknown_targets_are_refused() {
    let cairn = with_relay().await;
    let started = Instant::now();
    let cycle = json!({"target": {"service": "Relay", "key": "k", "handler": "Call"}, "input": {}});
    let reply = cairn.post("/Relay/k/Call", &cycle).await;
    assert_eq!(reply.status.as_u16(), 400, "{:?}", reply.body);
    let message = reply.body["message"].as_str().unwrap();
    assert!(message.contains("call cycle"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10), "no deadlock");

    let unknown = json!({"target": {"service": "Nope", "handler": "X"}, "input": {}});
    let reply = cairn.post("/Relay/k/Call", &unknown).await;
    assert_eq!(reply.status.as_u16(), 400, "{:?}", reply.body);
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .contains("unknown service \"Nope\""),
        "{:?}",
        reply.body
    );
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/total"), 0, "{stats}");
}

#[tokio::test]
async fn a_delayed_send_starts_after_its_delay_and_bad_delays_write_nothing() {
    let cairn = with_relay().await;
    let sent_at = Instant::now();
    let input = json!({"target": order("order-later-1"), "input": order_input("l@example.com"), "delayMs": 1500});
    let reply = cairn.post("/Relay/s/Send", &input).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let id = reply.body["invocationId"].as_str().unwrap().to_string();
    let waiting = cairn.admin_get(&format!("/invocations/{id}")).await.body;
    assert_eq!(waiting["status"], "running", "{waiting}");
    assert!(waiting["notBefore"].is_i64(), "{waiting}");
    assert_eq!(count(&cairn.stats().await, "/charges/total"), 0);
    let done = cairn.finished_invocation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(sent_at.elapsed() >= Duration::from_millis(1500));

    // From the ingress, as with Restate: humantime or ISO 8601.
    for (key, delay) in [("order-later-2", "1s"), ("order-later-3", "PT1S")] {
        let sent_at = Instant::now();
        let reply = cairn
            .post(
                &format!("/OrderOrchestrator/{key}/ProcessOrder/send?delay={delay}"),
                &order_input("l@example.com"),
            )
            .await;
        assert_eq!(reply.status, 202, "{:?}", reply.body);
        let done = cairn
            .finished_invocation(reply.invocation_id.as_deref().unwrap())
            .await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert!(sent_at.elapsed() >= Duration::from_secs(1), "{delay}");
    }
    let before = cairn.count_rows(cairn::storage::Table::Invocations).await;
    for query in ["delay=soon", "delay=PT", "delay=400d", "colour=red"] {
        let reply = cairn
            .post(
                &format!("/OrderOrchestrator/o-bad/ProcessOrder/send?{query}"),
                &order_input("l@example.com"),
            )
            .await;
        assert_eq!(reply.status.as_u16(), 400, "{query}: {:?}", reply.body);
        assert_eq!(reply.body["error"], "bad_request", "{query}");
    }
    assert_eq!(
        cairn.count_rows(cairn::storage::Table::Invocations).await,
        before
    );
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/total"), 3, "{stats}");
}

#[tokio::test]
async fn a_delayed_send_due_during_an_outage_fires_once_after_restart() {
    let cairn = with_relay().await;
    let reply = cairn
        .post(
            "/OrderOrchestrator/order-outage/ProcessOrder/send?delay=500ms",
            &order_input("o@example.com"),
        )
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let id = reply.invocation_id.unwrap();
    // Down while the delay ends.
    let cairn = cairn.restart_after(Duration::from_millis(1000)).await;
    let done = cairn.finished_invocation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let stats = cairn.stats().await;
    assert_eq!(
        count(&stats, "/charges/by_order/order-outage"),
        1,
        "{stats}"
    );
    assert_eq!(count(&stats, "/charges/total"), 1, "{stats}");
}

#[tokio::test]
async fn a_thousand_delayed_sends_fire_once_each() {
    let cairn = with_relay().await;
    let sends = (0..1000).map(|n| {
        let cairn = &cairn;
        async move {
            let reply = cairn
                .post(
                    &format!("/OrderOrchestrator/order-many-{n}/ProcessOrder/send?delay=300ms"),
                    &order_input("m@example.com"),
                )
                .await;
            assert_eq!(reply.status, 202, "{:?}", reply.body);
        }
    });
    futures::stream::iter(sends)
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let stats = loop {
        let stats = cairn.stats().await;
        if count(&stats, "/charges/total") >= 1000 {
            break stats;
        }
        assert!(Instant::now() < deadline, "not all fired: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Settle, then each order exactly once.
    drop(stats);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/total"), 1000, "{stats}");
    let by_order = stats["charges"]["by_order"].as_object().unwrap();
    assert_eq!(by_order.len(), 1000);
    assert!(by_order.values().all(|n| n == 1), "{stats}");
}

#[tokio::test]
async fn promises_are_resolved_rejected_and_time_out_once() {
    let cairn = with_relay().await;
    let id = send_await(&cairn, "p1", json!({})).await;
    let promise = promise_of(&cairn, &id).await;
    let waiting = cairn.ingress(&format!("/promises/{promise}"));
    let shown: Value = cairn
        .http
        .get(&waiting)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "pending", "{shown}");
    let resolve = format!("/promises/{promise}/resolve");
    let first = cairn.post(&resolve, &json!({"approved": true})).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["status"], "resolved");
    let second = cairn.post(&resolve, &json!({"approved": false})).await;
    assert_eq!(second.status.as_u16(), 409, "{:?}", second.body);
    let output = cairn.output(&id).await;
    assert_eq!(
        output.body,
        json!({"promise": promise, "resolved": {"approved": true}}),
        "the first value stands"
    );

    let unknown = cairn.post("/promises/prom_nope/resolve", &json!(1)).await;
    assert_eq!(unknown.status.as_u16(), 404, "{:?}", unknown.body);
    let empty = cairn
        .post_raw(&resolve, Some("application/json"), Vec::new())
        .await;
    assert_eq!(empty.status.as_u16(), 400, "{:?}", empty.body);

    // Rejected over HTTP.
    let id = send_await(&cairn, "p2", json!({})).await;
    let promise = promise_of(&cairn, &id).await;
    let bad = cairn
        .post(&format!("/promises/{promise}/reject"), &json!({"why": "x"}))
        .await;
    assert_eq!(bad.status.as_u16(), 400, "{:?}", bad.body);
    let rejected = cairn
        .post(
            &format!("/promises/{promise}/reject"),
            &json!({"reason": "no"}),
        )
        .await;
    assert_eq!(rejected.status, 200, "{:?}", rejected.body);
    assert_eq!(
        cairn.output(&id).await.body,
        json!({"promise": promise, "rejected": "no"})
    );

    // A timeout, waited for as a durable timer.
    let started = Instant::now();
    let timed = cairn
        .post("/Relay/p3/Await", &json!({"timeoutMs": 300}))
        .await;
    assert_eq!(timed.status, 200, "{:?}", timed.body);
    assert_eq!(timed.body["timedOut"], true, "{:?}", timed.body);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Resolved before anyone waits (during the sleep before the wait), by another component.
    let id = send_await(&cairn, "p4", json!({"sleepMs": 1000})).await;
    let promise = promise_of(&cairn, &id).await;
    let by_component = cairn
        .post(
            "/Relay/x/Resolve",
            &json!({"promise": promise, "value": 42}),
        )
        .await;
    assert_eq!(
        by_component.body,
        json!({"resolved": true}),
        "{:?}",
        by_component.body
    );
    let again = cairn
        .post(
            "/Relay/x/Resolve",
            &json!({"promise": promise, "value": 43}),
        )
        .await;
    assert_eq!(again.body, json!({"resolved": false}));
    assert_eq!(
        cairn.output(&id).await.body,
        json!({"promise": promise, "resolved": 42})
    );
}

#[tokio::test]
async fn a_promise_resolved_after_a_restart_wakes_its_awaiter() {
    let cairn = with_relay().await;
    let id = send_await(&cairn, "restart", json!({})).await;
    let promise = promise_of(&cairn, &id).await;
    let cairn = cairn.restart().await;
    let resolved = cairn
        .post(&format!("/promises/{promise}/resolve"), &json!("after"))
        .await;
    assert_eq!(resolved.status, 200, "{:?}", resolved.body);
    assert_eq!(
        cairn.output(&id).await.body,
        json!({"promise": promise, "resolved": "after"})
    );
}

/// The same on PostgreSQL: a call, a delayed send and a promise resolved after a restart.
#[tokio::test]
async fn on_postgres_calls_delayed_sends_and_promises_work() {
    let database = ScratchDatabase::create().await.unwrap();
    let cairn = relay_on(
        Cairn::start_opts(Options {
            database_url: Some(database.url.clone()),
            ..Options::default()
        })
        .await,
    )
    .await;
    let input = json!({"target": order("order-pg-call"), "input": order_input("p@example.com")});
    let reply = cairn.post("/Relay/pg/Call", &input).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        reply.body["output"]["status"], "confirmed",
        "{:?}",
        reply.body
    );

    let sent = cairn
        .post(
            "/OrderOrchestrator/order-pg-later/ProcessOrder/send?delay=300ms",
            &order_input("p@example.com"),
        )
        .await;
    assert_eq!(sent.status, 202, "{:?}", sent.body);
    let id = send_await(&cairn, "pg", json!({})).await;
    let promise = promise_of(&cairn, &id).await;

    let cairn = cairn.restart().await;
    let resolved = cairn
        .post(&format!("/promises/{promise}/resolve"), &json!("pg"))
        .await;
    assert_eq!(resolved.status, 200, "{:?}", resolved.body);
    assert_eq!(
        cairn.output(&id).await.body,
        json!({"promise": promise, "resolved": "pg"})
    );
    let later = cairn
        .finished_invocation(sent.invocation_id.as_deref().unwrap())
        .await;
    assert_eq!(later["status"], "succeeded", "{later}");
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/total"), 2, "{stats}");
}
