//! Many invocations waiting on promises (issue 11): 10,000 `Relay` `Await` invocations suspended
//! on a promise each hold no component instance (`runningAttempts` is 0), so `cairn serve` (a
//! child process, at most 32 attempts at once) grows by their tasks and rows only: its RSS stays
//! within 1.5× its idle RSS plus the size of their rows (idle: after the same load ran to its end, so both figures hold what
//! any load leaves resident; about 4 KiB per waiting invocation here). Then every promise is
//! resolved over HTTP and every invocation completes with its value.

use std::time::{Duration, Instant};

use cairn::mock::{MockConfig, MockServer};
use cairn_e2e::process::{Killed, free_port, json_of, spawn_host_with, wait_healthy};
use futures::StreamExt;
use serde_json::json;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");
const WAITING: usize = 10_000;
const CONCURRENCY: usize = 32;
/// Attempts running at once. A burst of sends runs up to this many instances side by side, and
/// their memory (pool slots, stacks) stays resident after they are gone: a cost bounded by this
/// setting, not by how many wait, so it is kept small here to measure what waiting costs.
const MAX_RUNNING: &str = "32";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_invocations_awaiting_promises_hold_no_instances() {
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), MockConfig::default())
        .await
        .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let (ingress_port, admin_port) = (free_port(), free_port());
    let host = Killed(spawn_host_with(
        CAIRN,
        data_dir.path(),
        None,
        &mock.base_url(),
        (ingress_port, admin_port),
        0,
        &[("CAIRN_MAX_RUNNING", MAX_RUNNING)],
    ));
    let (ingress, admin) = (
        format!("http://127.0.0.1:{ingress_port}"),
        format!("http://127.0.0.1:{admin_port}"),
    );
    let http = cairn_e2e::process::client(None);
    wait_healthy(&http, &admin).await;
    let deployed = http
        .post(format!("{admin}/deployments"))
        .header("content-type", "application/wasm")
        .body(std::fs::read(test_artifacts::RELAY_SERVICE).unwrap())
        .send()
        .await
        .unwrap();
    assert!(deployed.status().is_success());
    // Idle: after the same load ran to its end (the same sends, with waits that time out at
    // once), so that what any load leaves resident (compiled code, the instance pool's slots at
    // that concurrency, connection buffers, the page cache, the allocator's free lists) is in
    // both figures, and the difference is what the waiting invocations hold.
    let warm = (0..WAITING).map(|n| {
        let (http, ingress) = (http.clone(), ingress.clone());
        async move {
            let url = format!("{ingress}/Relay/k{}/Await/send", n % 100);
            let sent = json_of(http.post(url).json(&json!({"timeoutMs": 0}))).await;
            sent["invocationId"].as_str().expect("accepted").to_string()
        }
    });
    let warmed: Vec<String> = futures::stream::iter(warm)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for id in &warmed {
        let done = json_of(http.get(format!("{ingress}/invocations/{id}/output"))).await;
        assert_eq!(done["timedOut"], true, "{done}");
    }
    let idle = rss_kib(host.0.id());

    let started = Instant::now();
    let sends = (0..WAITING).map(|n| {
        let (http, ingress) = (http.clone(), ingress.clone());
        async move {
            let sent = json_of(
                http.post(format!("{ingress}/Relay/k{}/Await/send", n % 100))
                    .json(&json!({})),
            )
            .await;
            sent["invocationId"].as_str().expect("accepted").to_string()
        }
    });
    let ids: Vec<String> = futures::stream::iter(sends)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    // Each waits once its promise exists; read the promise ids from their journals.
    let lookups = ids.iter().map(|id| {
        let (http, admin) = (http.clone(), admin.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let inv = json_of(http.get(format!("{admin}/invocations/{id}"))).await;
                if inv["journal"][1]["name"] == "wait" {
                    return (
                        id.clone(),
                        inv["journal"][0]["result"].as_str().unwrap().to_string(),
                    );
                }
                assert!(Instant::now() < deadline, "{inv}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let promises: Vec<(String, String)> = futures::stream::iter(lookups)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let waiting = rss_kib(host.0.id());
    // Their rows: the database and its write-ahead log, as far as the host may cache them.
    let rows_kib: u64 = ["cairn.db", "cairn.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data_dir.path().join(f)).ok())
        .map(|m| m.len() / 1024)
        .sum();
    let health = json_of(http.get(format!("{admin}/health"))).await;
    println!(
        "{WAITING} waiting after {:?}: RSS {idle} KiB idle, {waiting} KiB waiting ({} bytes \
         each), rows {rows_kib} KiB; {health}",
        started.elapsed(),
        waiting.saturating_sub(idle) * 1024 / WAITING as u64
    );
    assert_eq!(health["runningAttempts"], 0, "no instance held: {health}");
    assert!(
        waiting * 2 <= idle * 3 + rows_kib * 2,
        "RSS {waiting} KiB with {WAITING} waiting, idle {idle} KiB, rows {rows_kib} KiB"
    );

    let resolves = promises.iter().map(|(_, promise)| {
        let (http, ingress) = (http.clone(), ingress.clone());
        async move {
            let reply = http
                .post(format!("{ingress}/promises/{promise}/resolve"))
                .json(&json!({"p": promise}))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status().as_u16(), 200);
        }
    });
    futures::stream::iter(resolves)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    let outputs = promises.iter().map(|(id, promise)| {
        let (http, ingress) = (http.clone(), ingress.clone());
        async move {
            let output = json_of(http.get(format!("{ingress}/invocations/{id}/output"))).await;
            assert_eq!(output["resolved"]["p"], promise.as_str(), "{output}");
        }
    });
    futures::stream::iter(outputs)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    println!(
        "all {WAITING} resolved and done after {:?}; RSS {} KiB",
        started.elapsed(),
        rss_kib(host.0.id())
    );
}
