//! Cancelling an invocation (issue 15): the handler is told at its next suspension point or
//! check, a sleeping or waiting one is woken for it, it compensates, and it ends `failed` with
//! kind `cancelled`. The order orchestrator refunds a paid order and buys no label nor email,
//! counted at the fake.

use std::time::{Duration, Instant};

use cairn_e2e::invocations::sleeping;
use cairn_e2e::{Cairn, count, order_input};
use serde_json::{Value, json};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

fn cancelled(inv: &Value) -> bool {
    inv["status"] == "failed"
}

/// The kinds and names of an invocation's journal entries.
fn entries(inv: &Value) -> Vec<String> {
    inv["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap(),
                e["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_sleeping_invocation_is_woken_by_its_cancel_and_ends_cancelled() {
    let (cairn, _) = Cairn::with_steps_and_relay("").await;
    let id = cairn
        .send("/Steps/Run", &json!({"steps": 3, "sleepMs": 60_000}))
        .await;
    cairn.invocation_when(&id, "asleep", sleeping).await;

    let started = Instant::now();
    let (ok, out, err) = cairn_e2e::cli(CAIRN, &cairn.admin(""), &["cancel", &id]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&id), "{out}");
    let inv = cairn.invocation_when(&id, "cancelled", cancelled).await;
    assert!(started.elapsed() < Duration::from_secs(5), "woken at once");
    assert_eq!(inv["failure"]["kind"], "cancelled", "{inv}");
    assert_eq!(inv["failure"]["code"], 409, "{inv}");
    assert!(inv["cancelledAt"].is_i64(), "{inv}");
    // Told right after its sleep; the steps after it never ran.
    assert_eq!(
        entries(&inv),
        ["run step-0", "timer sleep", "cancel cancel"],
        "{inv}"
    );
    let output = cairn.output(&id).await;
    assert_eq!(output.status, 409, "{:?}", output.body);
    assert_eq!(output.body["error"], "cancelled");

    // Finished: cancelling again is a 409 naming its status; an unknown id a 404.
    let again = cairn
        .admin_post(&format!("/invocations/{id}/cancel"), &Value::Null)
        .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert!(again.body["message"].as_str().unwrap().contains("failed"));
    let unknown = cairn
        .admin_post("/invocations/inv_nope/cancel", &Value::Null)
        .await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
    let body = cairn
        .admin_post(&format!("/invocations/{id}/cancel"), &json!({"now": true}))
        .await;
    assert_eq!(body.status, 400, "{:?}", body.body);
    assert_eq!(cairn.admin_get("/health").await.body["runningAttempts"], 0);
}

#[tokio::test]
async fn a_cancelled_caller_cancels_its_callee_and_a_paused_one_runs_to_be_told() {
    let (cairn, _) = Cairn::with_steps_and_relay("max-attempts=1,on-max-attempts=pause").await;
    let (relay, callee) = cairn.relay_calling_a_sleeper("k1").await;
    let reply = cairn
        .admin_post(&format!("/invocations/{relay}/cancel"), &Value::Null)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let inv = cairn.invocation_when(&relay, "cancelled", cancelled).await;
    assert_eq!(inv["failure"]["kind"], "cancelled", "{inv}");
    let callee = cairn
        .invocation_when(&callee, "cancelled too", cancelled)
        .await;
    assert_eq!(callee["failure"]["kind"], "cancelled", "{callee}");

    // Paused after its one attempt (step 0 fails retryably on attempt 1): a cancel runs it
    // again, here, and the sleep after step 0 tells it.
    let reply = cairn
        .post(
            "/Steps/Run",
            &json!({"steps": 3, "retryFirst": true, "sleepMs": 60_000}),
        )
        .await;
    assert_eq!(reply.body["error"], "paused", "{:?}", reply.body);
    let id = reply.invocation_id.unwrap();
    let reply = cairn
        .admin_post(&format!("/invocations/{id}/cancel"), &Value::Null)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let inv = cairn.invocation_when(&id, "cancelled", cancelled).await;
    assert_eq!(inv["failure"]["kind"], "cancelled", "{inv}");
    assert_eq!(inv["attempt"], 2, "{inv}");
    assert_eq!(
        entries(&inv),
        ["run step-0", "timer sleep", "cancel cancel"],
        "{inv}"
    );
}

#[tokio::test]
async fn a_cancelled_order_is_refunded_once_and_gets_no_label_nor_email() {
    let cairn = Cairn::start().await;
    // Each provider call takes a second: the cancel comes while the charge is made.
    cairn.mock_config(json!({"delay_ms": [1000, 1000]})).await;
    let id = cairn.send_order("cancel-paid").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while cairn.requests("stripe").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the charge never reached the fake"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reply = cairn
        .admin_post(&format!("/invocations/{id}/cancel"), &Value::Null)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let output = cairn.output(&id).await;
    assert_eq!(output.status, 409, "{:?}", output.body);
    assert_eq!(output.body["error"], "cancelled");
    let inv = cairn.finished_invocation(&id).await;
    assert_eq!(inv["failure"]["kind"], "cancelled", "{inv}");

    let order = cairn.get_order("cancel-paid").await.body;
    assert_eq!(order["status"], "refunded", "{order}\n{inv}");
    assert!(order["refundId"].is_string(), "{order}");
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/total"), 1, "{stats}");
    assert_eq!(count(&stats, "/refunds/total"), 1, "{stats}");
    assert_eq!(count(&stats, "/labels/total"), 0, "{stats}");
    assert_eq!(count(&stats, "/emails/total"), 0, "{stats}");
}

#[tokio::test]
async fn an_order_waiting_for_a_pending_charge_is_cancelled_without_a_refund() {
    let cairn = Cairn::start().await;
    let mut input = order_input("pat@example.com");
    input["paymentMethod"] = json!("pm_card_pending");
    let id = cairn
        .send("/OrderOrchestrator/cancel-pending/ProcessOrder", &input)
        .await;
    cairn
        .invocation_when(&id, "waiting for its payment", |inv| {
            entries(inv).iter().any(|e| e == "promise wait")
        })
        .await;
    let reply = cairn
        .admin_post(&format!("/invocations/{id}/cancel"), &Value::Null)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let inv = cairn.finished_invocation(&id).await;
    assert_eq!(inv["failure"]["kind"], "cancelled", "{inv}");
    let order = cairn.get_order("cancel-pending").await.body;
    assert_eq!(order["status"], "cancelled", "{order}");
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/refunds/total"), 0, "{stats}");
    assert_eq!(count(&stats, "/labels/total"), 0, "{stats}");
    assert_eq!(count(&stats, "/emails/total"), 0, "{stats}");
}
