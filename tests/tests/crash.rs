//! kill -9 (issue 3): `cairn serve` runs as a child process over one data dir, against a fake
//! provider API in this process. Orders are driven at concurrency 16 while the host is killed
//! with SIGKILL at random moments and restarted. Then: every accepted order reaches a final
//! state within 30 s of the last restart, and per order the fake saw at most one successful
//! charge, one label and one email, in agreement with the stored order.
//!
//! A durable sleep is killed the same way: it ends at the time its journal entry recorded,
//! not a full sleep after the restart. So are a call between services while its callee runs,
//! a promise wait and a delayed send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn::mock::{MockConfig, MockServer};
use cairn_e2e::count;
use cairn_e2e::process::{
    self, Checked, Host, OrderLoad, check_orders, free_port, json_of, wait_healthy, wait_settled,
};
use serde_json::Value;

const KILLS: usize = 4;
/// The host binary.
const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// A rig over this test binary's `cairn`.
async fn rig(config: MockConfig) -> process::Rig {
    process::Rig::new(CAIRN, config).await
}
const WORKERS: usize = 16;

/// A small xorshift generator: random kill moments without another dependency.
fn random_between(state: &AtomicU64, low: u64, high: u64) -> u64 {
    let mut x = state.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.store(x, Ordering::Relaxed);
    low + x % (high - low + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_kill_minus_nine_with_at_most_one_effect_each() {
    orders_survive_kill_minus_nine(None).await;
}

/// The same on PostgreSQL: a killed host's connections (and its advisory lock) are released by
/// the server, and the restarted host resumes from the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_orders_survive_kill_minus_nine_with_at_most_one_effect_each() {
    let database = cairn::storage::ScratchDatabase::create().await.unwrap();
    orders_survive_kill_minus_nine(Some(&database.url)).await;
}

async fn orders_survive_kill_minus_nine(database_url: Option<&str>) {
    let mock = MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig {
            decline_rate: 0.0,
            delay_ms: (2, 15),
        },
    )
    .await
    .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let (ingress_port, admin_port) = (free_port(), free_port());
    let http = cairn_e2e::process::client(Some(Duration::from_secs(20)));
    let host = Arc::new(Mutex::new(Host {
        child: process::spawn_host(
            CAIRN,
            data_dir.path(),
            database_url,
            &mock.base_url(),
            ingress_port,
            admin_port,
            0,
        ),
        ingress: format!("http://127.0.0.1:{ingress_port}"),
        admin: format!("http://127.0.0.1:{admin_port}"),
    }));
    let (ingress, admin) = {
        let h = host.lock().unwrap();
        (h.ingress.clone(), h.admin.clone())
    };
    wait_healthy(&http, &admin).await;

    // Drive orders at concurrency 16: an order is accepted when /send answered 202.
    let load = OrderLoad::start(&http, WORKERS, "crash", {
        let ingress = ingress.clone();
        move |_| vec![ingress.clone()]
    });

    let seed = AtomicU64::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    let mut last_restart = Instant::now();
    for kill in 1..=KILLS {
        tokio::time::sleep(Duration::from_millis(random_between(&seed, 300, 1200))).await;
        {
            let mut h = host.lock().unwrap();
            h.child.kill().expect("SIGKILL"); // std's kill() is SIGKILL on Unix
            h.child.wait().unwrap();
            h.child = process::spawn_host(
                CAIRN,
                data_dir.path(),
                database_url,
                &mock.base_url(),
                ingress_port,
                admin_port,
                kill,
            );
        }
        last_restart = Instant::now();
        wait_healthy(&http, &admin).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (accepted, unknown) = load.stop().await;

    // Every accepted order reaches a final state within 30 s of the last restart.
    wait_settled(&http, &admin, last_restart + Duration::from_secs(30)).await;
    let settled = last_restart.elapsed();
    let Checked {
        checked,
        statuses,
        stats,
    } = check_orders(&http, &ingress, &mock.control_url(), &accepted, &unknown).await;
    assert!(
        accepted.len() >= 20,
        "the test drove too few orders: {}",
        accepted.len()
    );

    eprintln!(
        "crash test: {KILLS} kills; {} orders accepted, {} unanswered (host down), {checked} stored; \
         statuses {statuses:?}; all settled {:.1} s after the last restart; at the fake: {} charges, \
         {} labels, {} emails, {} idempotent replays",
        accepted.len(),
        unknown.len(),
        settled.as_secs_f64(),
        count(&stats, "/charges/succeeded"),
        count(&stats, "/labels/total"),
        count(&stats, "/emails/total"),
        count(&stats, "/replays"),
    );
    host.lock().unwrap().child.kill().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_survives_kill_minus_nine_and_ends_when_recorded() {
    let rig = rig(MockConfig::default()).await;
    let http = &rig.http;
    let mut host = rig.start(10).await;
    host.deploy(http, test_artifacts::STEPS_SERVICE).await;

    let sent = json_of(
        http.post(format!("{}/Steps/Run/send", host.ingress))
            .json(&serde_json::json!({"steps": 3, "sleepMs": 3000})),
    )
    .await;
    let id = sent["invocationId"].as_str().unwrap().to_string();

    // Once the sleep's entry is durable, kill the host and keep it down for a while.
    let timer_entry = |invocation: &Value| {
        invocation["journal"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["kind"] == "timer")
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let recorded = loop {
        let invocation = json_of(http.get(format!("{}/invocations/{id}", host.admin))).await;
        if let Some(entry) = timer_entry(&invocation) {
            break entry;
        }
        assert!(Instant::now() < deadline, "no timer entry: {invocation}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let until_ms = recorded["result"]
        .as_i64()
        .expect("the end of the sleep, in ms");
    host.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let mut host = rig.start(11).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let finished = loop {
        let invocation = json_of(http.get(format!("{}/invocations/{id}", host.admin))).await;
        if invocation["status"] != "running" {
            break invocation;
        }
        assert!(
            Instant::now() < deadline,
            "the sleep never ended: {invocation}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let timers: Vec<&Value> = finished["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "timer")
        .collect();
    assert_eq!(timers.len(), 1, "one sleep, recorded once: {finished}");
    assert_eq!(
        timers[0]["result"], recorded["result"],
        "the recorded end holds"
    );
    let completed = finished["completedAt"].as_i64().unwrap();
    assert!(
        completed >= until_ms,
        "ended at {completed}, before {until_ms}"
    );
    let output = json_of(http.get(format!("{}/invocations/{id}/output", host.ingress))).await;
    assert_eq!(output, serde_json::json!({"steps": 3, "sum": 3}));
    host.kill();
}

/// A call between services killed while the callee runs (and the caller waits for it): after
/// the restart the callee finishes once in effect (one charge, one label, one email at the
/// fake) and the caller finishes with its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_killed_while_the_callee_runs_finishes_with_one_effect_each() {
    let rig = rig(MockConfig {
        decline_rate: 0.0,
        delay_ms: (150, 250),
    })
    .await;
    let http = &rig.http;
    let mut host = rig.start(20).await;
    host.deploy(http, test_artifacts::RELAY_SERVICE).await;
    let input = serde_json::json!({
        "target": {"service": "OrderOrchestrator", "key": "order-kill-call", "handler": "ProcessOrder"},
        "input": cairn_e2e::order_input("k@example.com"),
    });
    let sent = json_of(
        http.post(format!("{}/Relay/k/Call/send", host.ingress))
            .json(&input),
    )
    .await;
    let id = sent["invocationId"].as_str().unwrap().to_string();

    // Once the callee has charged (its third entry is durable), kill the host mid-call.
    let deadline = Instant::now() + Duration::from_secs(20);
    let callee = loop {
        let caller = json_of(http.get(format!("{}/invocations/{id}", host.admin))).await;
        if let Some(callee) = caller["journal"][0]["result"]["Ok"].as_str() {
            let inv = json_of(http.get(format!("{}/invocations/{callee}", host.admin))).await;
            if inv["journal"].as_array().is_some_and(|j| j.len() >= 3) {
                assert_eq!(inv["status"], "running", "killed too late: {inv}");
                break callee.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the callee never charged: {caller}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // The label request the dead host sent may still be at the fake (150-250 ms): the restart
    // looks it up only once it cannot be in flight (see the test below).
    host.kill();

    let host = rig.start(21).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let finished = loop {
        let caller = json_of(http.get(format!("{}/invocations/{id}", host.admin))).await;
        if caller["status"] != "running" {
            break caller;
        }
        assert!(
            Instant::now() < deadline,
            "the caller never finished: {caller}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(
        finished["output"]["output"]["status"], "confirmed",
        "{finished}"
    );
    let names: Vec<&str> = finished["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "call OrderOrchestrator/order-kill-call/ProcessOrder",
            "result"
        ]
    );
    assert_eq!(
        finished["journal"][0]["result"]["Ok"],
        callee.as_str(),
        "one callee"
    );
    let stats = json_of(http.get(format!("{}/_mock/stats", rig.mock.control_url()))).await;
    for counter in [
        "/charges/by_order/order-kill-call",
        "/labels/by_order/order-kill-call",
        "/emails/by_order/order-kill-call",
    ] {
        assert_eq!(count(&stats, counter), 1, "{counter}: {stats}");
    }
}

/// A promise wait and a delayed send survive kill -9: the send, due while the host is down,
/// fires once after the restart, and the promise, resolved after it, wakes its waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promise_wait_and_a_delayed_send_survive_kill_minus_nine() {
    // No random declines: the delayed order must be confirmed.
    let rig = rig(MockConfig {
        decline_rate: 0.0,
        delay_ms: (0, 0),
    })
    .await;
    let http = &rig.http;
    let mut host = rig.start(30).await;
    host.deploy(http, test_artifacts::RELAY_SERVICE).await;
    let sent = json_of(
        http.post(format!("{}/Relay/w/Await/send", host.ingress))
            .json(&serde_json::json!({})),
    )
    .await;
    let waiter = sent["invocationId"].as_str().unwrap().to_string();
    let delayed = json_of(
        http.post(format!(
            "{}/OrderOrchestrator/order-kill-later/ProcessOrder/send?delay=1s",
            host.ingress
        ))
        .json(&cairn_e2e::order_input("d@example.com")),
    )
    .await;
    let delayed = delayed["invocationId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let promise = loop {
        let inv = json_of(http.get(format!("{}/invocations/{waiter}", host.admin))).await;
        if inv["journal"][1]["name"] == "wait" {
            break inv["journal"][0]["result"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no wait recorded: {inv}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    host.kill();
    // Down while the delay ends.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let host = rig.start(31).await;
    let resolved = http
        .post(format!("{}/promises/{promise}/resolve", host.ingress))
        .json(&serde_json::json!("after the kill"))
        .send()
        .await
        .unwrap();
    assert_eq!(resolved.status().as_u16(), 200);
    let output = json_of(http.get(format!("{}/invocations/{waiter}/output", host.ingress))).await;
    assert_eq!(
        output,
        serde_json::json!({"promise": promise, "resolved": "after the kill"})
    );
    let later = json_of(http.get(format!("{}/invocations/{delayed}/output", host.ingress))).await;
    assert_eq!(later["status"], "confirmed", "{later}");
    let stats = json_of(http.get(format!("{}/_mock/stats", rig.mock.control_url()))).await;
    assert_eq!(
        count(&stats, "/charges/by_order/order-kill-later"),
        1,
        "{stats}"
    );
}

/// A label purchase still at the fake when its host is SIGKILLed (Shippo has no idempotency
/// key): the restarted host, finding the call in doubt, looks it up only once the request can no
/// longer be in flight (Shippo's wall-clock limit since the call's marker), so it finds the
/// label the dead host's request bought as that request ends, and buys no second one. Looked up
/// at once, it would find nothing yet and buy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_in_flight_at_a_kill_is_looked_up_only_once_its_request_has_ended() {
    let mut rig = rig(MockConfig {
        decline_rate: 0.0,
        delay_ms: (1_500, 1_500),
    })
    .await;
    rig.env.push(("CAIRN_WALL_LIMIT_MS", "4000".into()));
    let http = &rig.http;
    let mut host = rig.start(30).await;
    let sent = http
        .post(format!(
            "{}/OrderOrchestrator/order-flight/ProcessOrder/send",
            host.ingress
        ))
        .json(&cairn_e2e::order_input("f@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let id = sent.json::<Value>().await.unwrap()["invocationId"]
        .as_str()
        .unwrap()
        .to_string();

    // Kill the host as its label request reaches the fake; the request goes on there for 1.5 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rig
        .mock
        .state()
        .requests(Some(cairn::mock::Provider::Shippo))
        .iter()
        .any(|r| r.method == "POST")
    {
        assert!(
            Instant::now() < deadline,
            "no label request reached the fake"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    host.kill();
    let killed = Instant::now();
    let stats = |rig: &process::Rig| serde_json::to_value(rig.mock.stats()).unwrap();
    assert_eq!(count(&stats(&rig), "/labels/total"), 0, "killed too late");
    // The lookup answers at once: only the purchase in flight is slow.
    rig.mock.state().set_config(MockConfig {
        decline_rate: 0.0,
        delay_ms: (0, 0),
    });

    let host = rig.start(31).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let finished = loop {
        let inv = json_of(http.get(format!("{}/invocations/{id}", host.admin))).await;
        if inv["status"] != "running" {
            break inv;
        }
        assert!(Instant::now() < deadline, "the order never finished: {inv}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(finished["status"], "succeeded", "{finished}");
    // Counted once the purchase in flight at the kill has surely ended at the fake.
    tokio::time::sleep_until((killed + Duration::from_secs(2)).into()).await;
    let stats = stats(&rig);
    assert_eq!(count(&stats, "/labels/total"), 1, "one label: {stats}");
    let label = finished["journal"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "cairn:commerce/shipping.create-label")
        .unwrap_or_else(|| panic!("the label entry: {finished}"));
    assert_eq!(
        label["detail"]["effect"]["recovery"], "in doubt: found by lookup",
        "{label}"
    );
    assert!(
        killed.elapsed() >= Duration::from_secs(4),
        "looked up before the request's wall-clock limit had passed: {:?}",
        killed.elapsed()
    );
}
