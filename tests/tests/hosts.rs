//! Several hosts on one PostgreSQL database: `cairn serve` twice as child processes, each with a
//! data dir (and host id) of its own, orders sent to both, the same order to both at once. One
//! host is killed with SIGKILL and not restarted: the other takes over its unfinished
//! invocations once their leases expire. Then every accepted order is final, and per order the
//! fake saw at most one charge, label and email, in agreement with the stored order.
//!
//! The same under a PostgreSQL restart (`pg_ctl restart` of a server of the test's own): the
//! hosts reconnect, what was in flight is retried, nothing is lost or done twice.

use std::time::{Duration, Instant};

use cairn::mock::{MockConfig, MockServer};
use cairn::storage::ScratchDatabase;
use cairn_e2e::pg_server::PgServer;
use cairn_e2e::process::{
    Checked, Killed, OrderLoad, check_orders, free_port, json_of, spawn_host, wait_healthy,
    wait_settled,
};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const WORKERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_two_hosts_share_orders_and_one_finishes_what_a_killed_one_left() {
    let database = ScratchDatabase::create().await.unwrap();
    let mock = MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig {
            decline_rate: 0.0,
            delay_ms: (5, 30),
        },
    )
    .await
    .unwrap();
    let http = cairn_e2e::process::client(Some(Duration::from_secs(20)));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ports = [(free_port(), free_port()), (free_port(), free_port())];
    let mut children: Vec<_> = (0..2)
        .map(|i| {
            let (ingress, admin) = ports[i];
            let url = Some(database.url.as_str());
            let child = spawn_host(
                CAIRN,
                dirs[i].path(),
                url,
                &mock.base_url(),
                ingress,
                admin,
                0,
            );
            Killed(child)
        })
        .collect();
    let ingress: Vec<String> = ports
        .iter()
        .map(|(ingress, _)| format!("http://127.0.0.1:{ingress}"))
        .collect();
    let admin: Vec<String> = ports
        .iter()
        .map(|(_, admin)| format!("http://127.0.0.1:{admin}"))
        .collect();
    for admin in &admin {
        wait_healthy(&http, admin).await;
    }

    // Orders go to both hosts in turn; every fourth to both at once (one key, two hosts: its
    // exclusive turns are taken one host at a time).
    let load = OrderLoad::start(&http, WORKERS, "hosts", {
        let ingress = ingress.clone();
        move |n| match n % 4 {
            0 => ingress.clone(),
            _ => vec![ingress[(n % 2) as usize].clone()],
        }
    });

    // Host 0 dies under load; host 1 goes on alone.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    children[0].0.kill().expect("SIGKILL");
    children[0].0.wait().unwrap();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (accepted, unknown) = load.stop().await;

    let host_log = |i: usize| std::fs::read_to_string(dirs[i].path().join("host-0.log"));
    if let Ok(Some(exit)) = children[1].0.try_wait() {
        panic!("host 1 exited ({exit}):\n{:?}", host_log(1));
    }
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
    let log = host_log(1).unwrap();
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
    let mock = MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockConfig {
            decline_rate: 0.0,
            delay_ms: (5, 30),
        },
    )
    .await
    .unwrap();
    let http = cairn_e2e::process::client(Some(Duration::from_secs(20)));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ports = [(free_port(), free_port()), (free_port(), free_port())];
    let mut children: Vec<_> = (0..2)
        .map(|i| {
            let (ingress, admin) = ports[i];
            let child = spawn_host(
                CAIRN,
                dirs[i].path(),
                Some(&postgres.url),
                &mock.base_url(),
                ingress,
                admin,
                0,
            );
            Killed(child)
        })
        .collect();
    let ingress: Vec<String> = ports
        .iter()
        .map(|(ingress, _)| format!("http://127.0.0.1:{ingress}"))
        .collect();
    let admin: Vec<String> = ports
        .iter()
        .map(|(_, admin)| format!("http://127.0.0.1:{admin}"))
        .collect();
    for admin in &admin {
        wait_healthy(&http, admin).await;
    }

    let load = OrderLoad::start(&http, WORKERS, "pg-restart", {
        let ingress = ingress.clone();
        move |n| match n % 4 {
            0 => ingress.clone(),
            _ => vec![ingress[(n % 2) as usize].clone()],
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarted = Instant::now();
    tokio::task::block_in_place(|| postgres.restart());
    let down = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (accepted, unknown) = load.stop().await;

    let host_log = |i: usize| std::fs::read_to_string(dirs[i].path().join("host-0.log"));
    for (i, child) in children.iter_mut().enumerate() {
        if let Ok(Some(exit)) = child.0.try_wait() {
            panic!("host {i} exited ({exit}):\n{:?}", host_log(i));
        }
    }
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
            host_log(i)
                .unwrap()
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
