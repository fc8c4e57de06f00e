//! Several hosts on one PostgreSQL database: `cairn serve` twice as child processes, each with a
//! data dir (and host id) of its own, orders sent to both, the same order to both at once. One
//! host is killed with SIGKILL and not restarted: the other takes over its unfinished
//! invocations once their leases expire. Then every accepted order is final, and per order the
//! fake saw at most one charge, label and email, in agreement with the stored order.
//!
//! The same under a PostgreSQL restart (`pg_ctl restart` of a server of the test's own): the
//! hosts reconnect, what was in flight is retried, nothing is lost or done twice. And with three
//! hosts, one killed, one paused past its lease (SIGSTOP, SIGCONT) and one cut off from the
//! database (a proxy that drops its connections) and healed, under load: the paused host's
//! writes for what was taken from it are refused (fenced), the dead host's invocations are taken
//! over within two leases, and each order still has at most one charge, label and email.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime};

use cairn::mock::{MockConfig, MockServer};
use cairn::storage::ScratchDatabase;
use cairn_e2e::host_group::HostGroup;
use cairn_e2e::pg_server::PgServer;
use cairn_e2e::process::{Checked, OrderLoad, check_orders, json_of, wait_settled};
use cairn_e2e::tcp_proxy::TcpProxy;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const WORKERS: usize = 8;

/// The fake (no declines, `delay_ms` of latency) and a client that gives up after 20 s.
async fn fake_and_client(delay_ms: (u64, u64)) -> (MockServer, reqwest::Client) {
    let config = MockConfig {
        decline_rate: 0.0,
        delay_ms,
    };
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    (
        mock,
        cairn_e2e::process::client(Some(Duration::from_secs(20))),
    )
}

/// Orders to two hosts in turn; every fourth to both at once (one key, two hosts: its exclusive
/// turns are taken one host at a time).
fn in_turn_and_both(ingress: &[String]) -> impl Fn(u64) -> Vec<String> + Send + Sync + 'static {
    let ingress = ingress.to_vec();
    move |n| match n % 4 {
        0 => ingress.clone(),
        _ => vec![ingress[(n % 2) as usize].clone()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_two_hosts_share_orders_and_one_finishes_what_a_killed_one_left() {
    let database = ScratchDatabase::create().await.unwrap();
    let (mock, http) = fake_and_client((5, 30)).await;
    let url = database.url.as_str();
    let mut hosts = HostGroup::start(&http, CAIRN, &[url, url], &mock.base_url()).await;
    let (ingress, admin) = (hosts.ingress.clone(), hosts.admin.clone());

    let load = OrderLoad::start(&http, WORKERS, "hosts", in_turn_and_both(&ingress));

    // Host 0 dies under load; host 1 goes on alone.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    hosts.signal(0, "-KILL");
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (accepted, unknown) = load.stop().await;

    hosts.assert_running(1);
    // The leases last a second: host 1 finishes everything host 0 left, well within 30 s.
    wait_settled(&http, &admin[1], killed + Duration::from_secs(30)).await;
    let settled = killed.elapsed();
    let Checked {
        checked,
        statuses,
        stats,
    } = check_orders(&http, &ingress[1], &mock.control_url(), &accepted, &unknown).await;
    assert!(
        accepted.len() >= 20,
        "the test drove too few orders: {}",
        accepted.len()
    );
    assert!(
        statuses
            .keys()
            .all(|s| s == "confirmed" || s == "payment_in_doubt"),
        "{statuses:?}"
    );
    let log = hosts.log(1);
    assert!(
        log.contains("taking over the invocations of a host that stopped"),
        "host 1 never took anything over:\n{log}"
    );
    assert!(!log.contains("deadlock"), "lease locks deadlocked:\n{log}");
    eprintln!(
        "two hosts: {} orders accepted, {} unanswered, {checked} stored; statuses {statuses:?}; \
         all settled {:.1} s after the kill; at the fake: {} charges; {} slow statements",
        accepted.len(),
        unknown.len(),
        settled.as_secs_f64(),
        cairn_e2e::count(&stats, "/charges/succeeded"),
        log.matches("slow statement").count(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_restart_under_load_loses_nothing_and_does_nothing_twice() {
    let postgres = PgServer::start();
    let (mock, http) = fake_and_client((5, 30)).await;
    let url = postgres.url.as_str();
    let mut hosts = HostGroup::start(&http, CAIRN, &[url, url], &mock.base_url()).await;
    let (ingress, admin) = (hosts.ingress.clone(), hosts.admin.clone());

    let load = OrderLoad::start(&http, WORKERS, "pg-restart", in_turn_and_both(&ingress));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarted = Instant::now();
    tokio::task::block_in_place(|| postgres.restart());
    let down = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (accepted, unknown) = load.stop().await;

    hosts.assert_running(0);
    hosts.assert_running(1);
    for admin in &admin {
        wait_settled(&http, admin, restarted + Duration::from_secs(30)).await;
    }
    // Both hosts work on the restarted server: an order through each, confirmed.
    for (i, ingress) in ingress.iter().enumerate() {
        let order = json_of(
            http.post(format!(
                "{ingress}/OrderOrchestrator/after-restart-{i}/ProcessOrder"
            ))
            .json(&cairn_e2e::order_input("after@example.com")),
        )
        .await;
        assert_eq!(
            order["status"], "confirmed",
            "host {i} after the restart: {order}"
        );
    }
    let Checked {
        checked,
        statuses,
        stats,
    } = check_orders(&http, &ingress[1], &mock.control_url(), &accepted, &unknown).await;
    assert!(
        accepted.len() >= 20,
        "the test drove too few orders: {}",
        accepted.len()
    );
    assert!(
        statuses
            .keys()
            .all(|s| s == "confirmed" || s == "payment_in_doubt"),
        "{statuses:?}"
    );
    // The restart cut what was in flight: those attempts failed and ran again.
    let retried: usize = (0..2)
        .map(|i| {
            hosts
                .log(i)
                .lines()
                .filter(|l| {
                    l.contains("attempt failed; retrying") && l.contains("database unavailable")
                })
                .count()
        })
        .sum();
    assert!(retried > 0, "no attempt was cut by the restart");
    eprintln!(
        "PostgreSQL restart: down {:.1} s, {retried} attempts retried; {} orders accepted, {} \
         unanswered, {checked} stored; statuses {statuses:?}; at the fake: {} charges",
        down.as_secs_f64(),
        accepted.len(),
        unknown.len(),
        cairn_e2e::count(&stats, "/charges/succeeded"),
    );
}

/// What one host writes, another reads: a deployment made through host 0's admin API runs on
/// host 1; an ingress idempotency key used at host 0 answers the same invocation at host 1,
/// and a request at host 1 for an invocation host 0 runs gets its output when it ends; and
/// a promise wait and a delayed send made on host 0, which then dies, are finished by host 1
/// (the promise resolved through host 1's ingress, the delayed order run at its time, once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_deployments_keys_promises_and_delayed_sends_are_shared_by_hosts() {
    let database = ScratchDatabase::create().await.unwrap();
    let (mock, http) = fake_and_client((0, 0)).await;
    let url = database.url.as_str();
    let mut hosts = HostGroup::start(&http, CAIRN, &[url, url], &mock.base_url()).await;
    let (ingress, admin) = (hosts.ingress.clone(), hosts.admin.clone());

    let deployed = http
        .post(format!("{}/deployments", admin[0]))
        .header("content-type", "application/wasm")
        .body(std::fs::read(test_artifacts::RELAY_SERVICE).unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        deployed.status().is_success(),
        "{}",
        deployed.text().await.unwrap()
    );
    // Host 1 runs the service deployed at host 0 (told by NOTIFY, or its next look).
    let deadline = Instant::now() + Duration::from_secs(10);
    let waiter = loop {
        let sent = http
            .post(format!("{}/Relay/w/Await/send", ingress[1]))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        if sent.status().as_u16() == 202 {
            break sent.json::<serde_json::Value>().await.unwrap()["invocationId"]
                .as_str()
                .unwrap()
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "host 1 never ran the deployment: {sent:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // One idempotency key, two hosts: one invocation.
    let send = |i: usize, key: &'static str| {
        http.post(format!(
            "{}/OrderOrchestrator/order-shared-key/ProcessOrder/send",
            ingress[i]
        ))
        .header("idempotency-key", key)
        .json(&cairn_e2e::order_input("k@example.com"))
    };
    let first = json_of(send(0, "shared-1")).await;
    let again = json_of(send(1, "shared-1")).await;
    assert!(first["invocationId"].is_string(), "{first}");
    assert_eq!(
        first["invocationId"], again["invocationId"],
        "{first} {again}"
    );

    // A request at host 1 for an invocation host 0 runs (one idempotency key): host 1 waits
    // for host 0 to finish it and answers with its output.
    let at_host_0 = json_of(
        http.post(format!("{}/Relay/u/Await/send", ingress[0]))
            .header("idempotency-key", "shared-2")
            .json(&serde_json::json!({})),
    )
    .await;
    let elsewhere = at_host_0["invocationId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let its_promise = loop {
        let inv = json_of(http.get(format!("{}/invocations/{elsewhere}", admin[0]))).await;
        if inv["journal"][1]["name"] == "wait" {
            break inv["journal"][0]["result"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no wait recorded: {inv}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let asked_at_host_1 = tokio::spawn(
        http.post(format!("{}/Relay/u/Await", ingress[1]))
            .header("idempotency-key", "shared-2")
            .json(&serde_json::json!({}))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resolved = http
        .post(format!("{}/promises/{its_promise}/resolve", ingress[0]))
        .json(&serde_json::json!("run at host 0"))
        .send()
        .await
        .unwrap();
    assert_eq!(resolved.status().as_u16(), 200);
    let answer = asked_at_host_1.await.unwrap().unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(
        answer.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"promise": its_promise, "resolved": "run at host 0"})
    );

    // A promise wait (Relay/v, run by host 0) and a delayed order sent at host 0; host 0 dies.
    let sent = json_of(
        http.post(format!("{}/Relay/v/Await/send", ingress[0]))
            .json(&serde_json::json!({})),
    )
    .await;
    let waiting = sent["invocationId"].as_str().unwrap().to_string();
    let delayed = json_of(
        http.post(format!(
            "{}/OrderOrchestrator/order-shared-later/ProcessOrder/send?delay=2s",
            ingress[0]
        ))
        .json(&cairn_e2e::order_input("d@example.com")),
    )
    .await;
    let delayed = delayed["invocationId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let promise = loop {
        let inv = json_of(http.get(format!("{}/invocations/{waiting}", admin[1]))).await;
        if inv["journal"][1]["name"] == "wait" {
            break inv["journal"][0]["result"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no wait recorded: {inv}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    hosts.signal(0, "-KILL");

    let resolved = http
        .post(format!("{}/promises/{promise}/resolve", ingress[1]))
        .json(&serde_json::json!("at the other host"))
        .send()
        .await
        .unwrap();
    assert_eq!(resolved.status().as_u16(), 200);
    let output = json_of(http.get(format!("{}/invocations/{waiting}/output", ingress[1]))).await;
    assert_eq!(
        output,
        serde_json::json!({"promise": promise, "resolved": "at the other host"})
    );
    let later = json_of(http.get(format!("{}/invocations/{delayed}/output", ingress[1]))).await;
    assert_eq!(later["status"], "confirmed", "{later}");
    let stats = json_of(http.get(format!("{}/_mock/stats", mock.control_url()))).await;
    assert_eq!(
        cairn_e2e::count(&stats, "/charges/by_order/order-shared-later"),
        1,
        "{stats}"
    );
    assert_eq!(
        cairn_e2e::count(&stats, "/charges/by_order/order-shared-key"),
        1,
        "{stats}"
    );
    hosts.assert_running(1);
    // The first waiter, sent at host 1, still waits for its promise.
    let first_waiter = json_of(http.get(format!("{}/invocations/{waiter}", admin[1]))).await;
    assert_eq!(first_waiter["status"], "running", "{first_waiter}");
}

/// The lease `spawn_host` gives hosts on PostgreSQL (`CAIRN_LEASE_TTL_MS`).
const LEASE: Duration = Duration::from_millis(1000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_three_hosts_under_kill_pause_and_partition_run_each_order_once() {
    let database = ScratchDatabase::create().await.unwrap();
    let mut through_proxy = url::Url::parse(&database.url).unwrap();
    let upstream: SocketAddr = (
        through_proxy.host_str().unwrap(),
        through_proxy.port().unwrap_or(5432),
    )
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let proxy = TcpProxy::start(upstream).await;
    through_proxy.set_host(Some("127.0.0.1")).unwrap();
    through_proxy.set_port(Some(proxy.addr.port())).unwrap();
    let (mock, http) = fake_and_client((5, 30)).await;
    let url = database.url.as_str();
    let urls = [url, url, through_proxy.as_str()];
    let mut hosts = HostGroup::start(&http, CAIRN, &urls, &mock.base_url()).await;

    // Orders over the three ingress ports in turn; every fourth to two of them at once.
    let load = OrderLoad::start(&http, WORKERS, "three", {
        let ingress = hosts.ingress.clone();
        move |n| {
            let at = |i: u64| ingress[(i % 3) as usize].clone();
            match n % 4 {
                0 => vec![at(n / 4), at(n / 4 + 1)],
                _ => vec![at(n)],
            }
        }
    });
    // Host 0 dies; the others take its invocations over.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    hosts.signal(0, "-KILL");
    let killed = SystemTime::now();
    // Host 1 stops for three leases, its invocations are taken from it, and it goes on.
    tokio::time::sleep(LEASE * 5 / 2).await;
    hosts.signal(1, "-STOP");
    tokio::time::sleep(LEASE * 3).await;
    hosts.signal(1, "-CONT");
    // Host 2 is cut off from the database for three leases, then healed.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.cut();
    tokio::time::sleep(LEASE * 3).await;
    proxy.heal();
    // On for a while after the heal, and until 1,000 orders were accepted in all.
    let healed = Instant::now();
    while healed.elapsed() < Duration::from_millis(1500) || load.accepted() < 1000 {
        assert!(
            healed.elapsed() < Duration::from_secs(60),
            "only {} orders accepted in a minute after the heal",
            load.accepted()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (accepted, unknown) = load.stop().await;

    hosts.assert_running(1);
    hosts.assert_running(2);
    let settled = Instant::now() + Duration::from_secs(30);
    for admin in &hosts.admin[1..] {
        wait_settled(&http, admin, settled).await;
    }
    let Checked {
        checked,
        statuses,
        stats,
    } = check_orders(
        &http,
        &hosts.ingress[1],
        &mock.control_url(),
        &accepted,
        &unknown,
    )
    .await;
    assert!(
        accepted.len() >= 1000,
        "the test drove too few orders: {}",
        accepted.len()
    );
    assert!(
        statuses
            .keys()
            .all(|s| s == "confirmed" || s == "payment_in_doubt"),
        "{statuses:?}"
    );

    // The dead host's invocations were taken over within two leases of the kill.
    let takeover = [1, 2]
        .iter()
        .flat_map(|&i| {
            hosts
                .log(i)
                .lines()
                .filter(|l| l.contains("taking over the invocations of a host that stopped"))
                .filter_map(|l| seconds_after(killed, l))
                .collect::<Vec<f64>>()
        })
        .fold(f64::INFINITY, f64::min);
    assert!(
        takeover <= 2.0 * LEASE.as_secs_f64(),
        "the dead host's invocations were taken over {takeover:.2} s after the kill"
    );
    // The paused host went on writing for invocations taken from it: refused.
    let fenced = |i: usize| hosts.log(i).matches("fenced:").count();
    assert!(
        fenced(1) > 0,
        "no write of the paused host was refused:\n{}",
        hosts.log(1)
    );
    eprintln!(
        "three hosts: {} orders accepted, {} unanswered, {checked} stored; statuses \
         {statuses:?}; taken over {takeover:.2} s after the kill; writes refused: {} of the \
         paused host, {} of the cut-off one ({} connections refused while cut); at the fake: {} \
         charges",
        accepted.len(),
        unknown.len(),
        fenced(1),
        fenced(2),
        proxy.refused(),
        cairn_e2e::count(&stats, "/charges/succeeded"),
    );
}

/// Seconds from `since` to the time a host's log `line` starts with (UTC,
/// `2026-12-03T13:05:58.938791Z ...`), if it is later (within the same twelve hours).
fn seconds_after(since: SystemTime, line: &str) -> Option<f64> {
    let time = line.split_whitespace().next()?.split_once('T')?.1;
    let mut parts = time.trim_end_matches('Z').split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    let of_day =
        h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?;
    let since = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs_f64()
        % 86_400.0;
    let after = (of_day - since).rem_euclid(86_400.0);
    (after < 43_200.0).then_some(after)
}
