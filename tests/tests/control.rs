//! Operating one invocation (issue 15): kill stops it at once and frees its key, its journal
//! kept; retries that run out under `on-max-attempts=pause` keep it paused, and resume runs it
//! again on a fixed deployment; pause and resume by hand; retry now cuts a backoff short;
//! purge deletes a finished one. Through the admin API and the `cairn` command line, on the
//! test services `Steps` and `Relay`.

use std::time::{Duration, Instant};

use cairn_e2e::invocations::sleeping;
use cairn_e2e::{Cairn, Options, components};
use serde_json::{Value, json};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

#[tokio::test]
async fn a_killed_invocation_stops_at_once_keeps_its_journal_and_frees_its_key() {
    let (cairn, _) = Cairn::with_steps_and_relay("").await;
    let (relay, callee) = cairn.relay_calling_a_sleeper("k1").await;

    let killed = cairn
        .admin_post(&format!("/invocations/{relay}/kill"), &Value::Null)
        .await;
    assert_eq!(killed.status, 200, "{:?}", killed.body);
    assert_eq!(killed.body["status"], "failed");
    assert_eq!(killed.body["failure"]["kind"], "killed");
    let output = cairn.output(&relay).await;
    assert_eq!(output.status, 409, "{:?}", output.body);
    assert_eq!(output.body["error"], "killed");
    let inv = cairn.admin_get(&format!("/invocations/{relay}")).await.body;
    assert!(!inv["journal"].as_array().unwrap().is_empty(), "{inv}");

    // Its key is free at once: the next exclusive call on k1 runs.
    let started = Instant::now();
    let next = cairn.post("/Relay/k1/RunSteps", &json!({"steps": 1})).await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert!(started.elapsed() < Duration::from_secs(5));

    // Killed once: again is a 409 naming its status; an unknown id a 404.
    let again = cairn
        .admin_post(&format!("/invocations/{relay}/kill"), &Value::Null)
        .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert!(
        again.body["message"].as_str().unwrap().contains("failed"),
        "{:?}",
        again.body
    );
    let unknown = cairn
        .admin_post("/invocations/inv_nope/kill", &Value::Null)
        .await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);

    // The sleeping callee, from the command line.
    let (ok, out, err) = cairn_e2e::cli(CAIRN, &cairn.admin(""), &["kill", &callee]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&callee) && out.contains("failed"), "{out}");
    let callee = cairn
        .admin_get(&format!("/invocations/{callee}"))
        .await
        .body;
    assert_eq!(callee["failure"]["kind"], "killed", "{callee}");
    assert_eq!(cairn.admin_get("/health").await.body["runningAttempts"], 0);
}

#[tokio::test]
async fn retries_that_run_out_pause_it_and_resume_runs_it_on_a_fixed_deployment() {
    let (cairn, steps) = Cairn::with_steps_and_relay("max-attempts=1,on-max-attempts=pause").await;
    // Step 0 fails retryably on attempt 1, and the policy allows one attempt: paused.
    let reply = cairn
        .post("/Steps/Run", &json!({"steps": 2, "retryFirst": true}))
        .await;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert_eq!(reply.body["error"], "paused");
    let id = reply.invocation_id.clone().unwrap();
    let inv = cairn.admin_get(&format!("/invocations/{id}")).await.body;
    assert_eq!(inv["status"], "paused", "{inv}");
    assert_eq!(inv["failure"]["kind"], "paused");
    assert!(
        inv["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("the first attempt fails"),
        "{inv}"
    );
    let waiting = cairn.output(&id).await;
    assert_eq!(waiting.status, 202, "{:?}", waiting.body);
    assert_eq!(waiting.body["status"], "paused");
    let listed = cairn.admin_get("/invocations?status=paused").await.body;
    assert_eq!(listed["invocations"][0]["id"], id.as_str(), "{listed}");

    // Not on a deployment of another service; not retried or purged while paused.
    let relay = cairn.admin_get("/services").await.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Relay")
        .unwrap()["deploymentId"]
        .clone();
    let wrong = cairn
        .admin_post(
            &format!("/invocations/{id}/resume"),
            &json!({"deployment": relay}),
        )
        .await;
    assert_eq!(wrong.status, 400, "{:?}", wrong.body);
    assert!(
        wrong.body["message"]
            .as_str()
            .unwrap()
            .contains("not Steps"),
        "{:?}",
        wrong.body
    );
    for refused in ["retry", "pause"] {
        let reply = cairn
            .admin_post(&format!("/invocations/{id}/{refused}"), &Value::Null)
            .await;
        assert_eq!(reply.status, 409, "{refused}: {:?}", reply.body);
    }
    let purge = cairn.admin_delete(&format!("/invocations/{id}")).await;
    assert_eq!(purge.status, 409, "{:?}", purge.body);
    // A paused invocation pins its deployment.
    let pinned = cairn.admin_get(&format!("/deployments/{steps}")).await.body;
    assert_eq!(pinned["runningInvocations"], json!([id]), "{pinned}");

    // The fix: another deployment of Steps (here the same code, other bytes); resumed on it,
    // the attempt after the paused one succeeds.
    let bytes = std::fs::read(test_artifacts::STEPS_SERVICE).unwrap();
    let fixed = cairn
        .deploy_bytes(components::with_custom_section(bytes, b"fixed"), "")
        .await;
    assert_eq!(fixed.status, 201, "{:?}", fixed.body);
    let fixed = fixed.body["id"].as_str().unwrap().to_string();
    let (ok, out, err) = cairn_e2e::cli(
        CAIRN,
        &cairn.admin(""),
        &["resume", &id, "--deployment", &fixed],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains(&id), "{out}");
    let done = cairn.finished_invocation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!({"steps": 2, "sum": 1}));
    assert_eq!(done["deploymentId"], fixed.as_str());
    assert_eq!(done["attempt"], 2);
    let output = cairn.output(&id).await;
    assert_eq!(output.status, 200, "{:?}", output.body);

    // Finished: not resumed again; purged, then gone.
    let again = cairn
        .admin_post(&format!("/invocations/{id}/resume"), &Value::Null)
        .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    let purged = cairn.admin_delete(&format!("/invocations/{id}")).await;
    assert_eq!(purged.status, 200, "{:?}", purged.body);
    assert_eq!(purged.body["purged"], true);
    let gone = cairn.admin_get(&format!("/invocations/{id}")).await;
    assert_eq!(gone.status, 404, "{:?}", gone.body);
}

#[tokio::test]
async fn an_operator_pauses_resumes_and_hurries_a_retry() {
    // A backoff of a minute after the first attempt fails.
    let (cairn, _) = Cairn::with_steps_and_relay("initial=60s,max-delay=60s,max-attempts=3").await;
    let id = cairn
        .send("/Steps/Run", &json!({"steps": 1, "retryFirst": true}))
        .await;
    let waiting = cairn
        .invocation_when(&id, "in backoff", |inv| inv["retryAt"].is_i64())
        .await;
    assert_eq!(waiting["status"], "running", "{waiting}");
    let started = Instant::now();
    let (ok, _, err) = cairn_e2e::cli(CAIRN, &cairn.admin(""), &["retry", &id]).await;
    assert!(ok, "{err}");
    let done = cairn.finished_invocation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited out the backoff"
    );
    // Not waiting any more: nothing to hurry.
    let late = cairn
        .admin_post(&format!("/invocations/{id}/retry"), &Value::Null)
        .await;
    assert_eq!(late.status, 409, "{:?}", late.body);

    // Paused by hand while it sleeps: it holds nothing; resumed, it sleeps on where it was.
    let sleeper = cairn
        .send("/Steps/Run", &json!({"steps": 2, "sleepMs": 60_000}))
        .await;
    let asleep = cairn.invocation_when(&sleeper, "asleep", sleeping).await;
    let paused = cairn
        .admin_post(&format!("/invocations/{sleeper}/pause"), &Value::Null)
        .await;
    assert_eq!(paused.status, 200, "{:?}", paused.body);
    assert_eq!(paused.body["status"], "paused");
    let resumed = cairn
        .admin_post(&format!("/invocations/{sleeper}/resume"), &Value::Null)
        .await;
    assert_eq!(resumed.status, 200, "{:?}", resumed.body);
    let again = cairn
        .invocation_when(&sleeper, "asleep again", sleeping)
        .await;
    assert_eq!(again["sleepingUntil"], asleep["sleepingUntil"], "{again}");
    assert_eq!(
        again["journal"].as_array().unwrap().len(),
        asleep["journal"].as_array().unwrap().len(),
        "replayed, nothing repeated"
    );
    let killed = cairn
        .admin_post(&format!("/invocations/{sleeper}/kill"), &Value::Null)
        .await;
    assert_eq!(
        killed.body["failure"]["kind"], "killed",
        "{:?}",
        killed.body
    );
}

/// On PostgreSQL with two hosts: an invocation run by one host, killed through the other's
/// admin API, stops on its owner within a poll, and its key is free there; a cancel reaches it
/// the same way.
#[tokio::test]
async fn on_postgres_a_kill_or_cancel_through_another_host_reaches_the_owner() {
    let database = cairn::storage::ScratchDatabase::create().await.unwrap();
    let options = || Options {
        database_url: Some(database.url.clone()),
        ..Options::default()
    };
    let owner = Cairn::start_opts(options()).await;
    owner.deploy_steps_and_relay().await;
    let other = Cairn::start_opts(options()).await;
    let (relay, _) = owner.relay_calling_a_sleeper("pg1").await;

    let killed = other
        .admin_post(&format!("/invocations/{relay}/kill"), &Value::Null)
        .await;
    assert_eq!(killed.status, 200, "{:?}", killed.body);
    assert_eq!(killed.body["failure"]["kind"], "killed");
    // The owner lets go of the key: its next exclusive call on it runs.
    let started = Instant::now();
    let next = owner
        .post("/Relay/pg1/RunSteps", &json!({"steps": 1}))
        .await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert!(started.elapsed() < Duration::from_secs(10));
    let inv = owner.admin_get(&format!("/invocations/{relay}")).await.body;
    assert_eq!(inv["failure"]["kind"], "killed", "{inv}");

    // A cancel through the other host reaches the owner's sleeping invocation within a poll.
    let sleeper = owner
        .send("/Steps/Run", &json!({"steps": 3, "sleepMs": 60_000}))
        .await;
    owner.invocation_when(&sleeper, "asleep", sleeping).await;
    let cancelled = other
        .admin_post(&format!("/invocations/{sleeper}/cancel"), &Value::Null)
        .await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    let inv = owner
        .invocation_when(&sleeper, "cancelled", |inv| inv["status"] == "failed")
        .await;
    assert_eq!(inv["failure"]["kind"], "cancelled", "{inv}");
}

#[tokio::test]
async fn the_state_of_a_key_is_read_over_the_admin_api_and_the_cli() {
    let cairn = Cairn::start().await;
    let reply = cairn
        .process_order("order-state", &cairn_e2e::order_input("s@example.com"))
        .await;
    assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    let state = cairn
        .admin_get("/state/OrderOrchestrator/order-state")
        .await;
    assert_eq!(state.status, 200, "{:?}", state.body);
    assert_eq!(
        state.body["state"]["order"]["status"], "confirmed",
        "{:?}",
        state.body
    );
    assert_eq!(state.body["truncated"], false);
    let empty = cairn
        .admin_get("/state/OrderOrchestrator/no-such-order")
        .await;
    assert_eq!(empty.body["state"], json!({}), "{:?}", empty.body);
    let unknown = cairn.admin_get("/state/Nope/k").await;
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);

    let (ok, out, err) = cairn_e2e::cli(
        CAIRN,
        &cairn.admin(""),
        &["state", "OrderOrchestrator", "order-state"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("NAME")
            && out
                .lines()
                .nth(1)
                .is_some_and(|row| row.starts_with("order ") && row.contains("chargeId")),
        "{out}"
    );
}

#[tokio::test]
async fn an_operator_edits_a_key_s_state_with_an_audit_entry_only_while_no_invocation_holds_it() {
    let cairn = Cairn::start().await;
    let input = cairn_e2e::order_input("e@example.com");
    let reply = cairn.process_order("order-edit", &input).await;
    assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    let path = "/state/OrderOrchestrator/order-edit";
    let put = |body: Value| {
        let cairn = &cairn;
        async move {
            let resp = cairn
                .admin_http
                .put(cairn.admin(&format!("{path}/note")))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = put(json!({"value": {"by": "ops"}, "reason": "ticket 42"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["note"], json!({"by": "ops"}), "{body}");
    assert_eq!(body["state"]["order"]["status"], "confirmed");
    assert_eq!(body["audit"][0]["name"], "note");
    assert_eq!(body["audit"][0]["before"], Value::Null);
    assert_eq!(body["audit"][0]["after"], json!({"by": "ops"}));
    assert_eq!(body["audit"][0]["reason"], "ticket 42");

    // Bad edits: a 400 that says what is wrong, and nothing written.
    for bad in [
        json!({"value": 1}),
        json!({"value": 1, "reason": "  "}),
        json!({"value": 1, "reason": "x", "by": "me"}),
    ] {
        let (status, body) = put(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["message"].is_string(), "{body}");
    }
    let view = cairn.admin_get(path).await.body;
    assert_eq!(view["audit"].as_array().unwrap().len(), 1, "{view}");

    let cleared = cairn
        .admin_delete(&format!("{path}/note?reason=cleanup"))
        .await;
    assert_eq!(cleared.status, 200, "{:?}", cleared.body);
    assert!(
        cleared.body["state"].get("note").is_none(),
        "{:?}",
        cleared.body
    );
    assert_eq!(cleared.body["audit"][0]["before"], json!({"by": "ops"}));

    let admin = cairn.admin("");
    let args = [
        "state",
        "OrderOrchestrator",
        "order-edit",
        "--set",
        "note=3",
    ];
    let (ok, _, err) = cairn_e2e::cli(CAIRN, &admin, &args).await;
    assert!(!ok && err.contains("--reason"), "{err}");
    let args = [&args[..], &["--reason", "from the cli"]].concat();
    let (ok, out, err) = cairn_e2e::cli(CAIRN, &admin, &args).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("edits") && out.contains("from the cli"),
        "{out}"
    );
    assert_eq!(cairn.admin_get(path).await.body["state"]["note"], 3);

    // An order waiting for its payment holds its key: the edit is refused, nothing written.
    let mut pending = input.clone();
    pending["paymentMethod"] = json!("pm_card_pending");
    let id = cairn
        .send("/OrderOrchestrator/order-busy/ProcessOrder", &pending)
        .await;
    cairn
        .invocation_when(&id, "waiting for its payment", |inv| {
            inv["journal"]
                .as_array()
                .is_some_and(|j| j.iter().any(|e| e["name"] == "wait"))
        })
        .await;
    let resp = cairn
        .admin_http
        .put(cairn.admin("/state/OrderOrchestrator/order-busy/order"))
        .json(&json!({"value": null, "reason": "force"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    let body: Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains(&id), "{body}");
    let view = cairn
        .admin_get("/state/OrderOrchestrator/order-busy")
        .await
        .body;
    assert_eq!(
        view["state"]["order"]["status"], "payment_pending",
        "{view}"
    );
    assert_eq!(view["audit"], json!([]));
}
