//! `cairn bench` as a user runs it against an outside load and fake (issue 17), small: `wrk` (a
//! process of its own, with the repository's Lua script) as the load, and a `cairn mock-providers`
//! started here, not by the bench, as the fake (`--fake-url`). Every confirmed order is counted
//! as a charge at the fake, and the fake's CPU is found and read although the bench did not
//! start it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cairn_e2e::process::free_port;
use serde_json::Value;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// Kills the fake when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn bench_under_wrk_against_a_fake_elsewhere_counts_every_order_at_the_fake() {
    let (api, control) = (free_port(), free_port());
    let _fake = Killed(
        Command::new(CAIRN)
            .args(["mock-providers", "--listen", &format!("127.0.0.1:{api}")])
            .args(["--control-listen", &format!("127.0.0.1:{control}")])
            .env("MOCK_DECLINE_RATE", "0")
            .env("MOCK_DELAY_MS", "0")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stats = format!("http://127.0.0.1:{control}/_mock/stats");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(&stats).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = tokio::process::Command::new(CAIRN)
        .arg("bench")
        .arg("--components-dir")
        .arg(test_artifacts::COMPONENTS_DIR)
        .args(["--load", "wrk", "--clients", "1,8", "--seconds", "2"])
        .args([
            "--sequential",
            "5",
            "--recovery",
            "0",
            "--js-email",
            "/nonexistent",
        ])
        .args(["--fake-url", &format!("http://127.0.0.1:{api}")])
        .args(["--fake-control-url", &format!("http://127.0.0.1:{control}")])
        .arg("--json")
        .arg(&json)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "cairn bench failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["load"], "wrk");
    assert_eq!(report["fake"], "elsewhere");
    let rows = report["throughput"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let orders = row["orders"].as_u64().unwrap();
        let charges = row["charges_at_fake"].as_u64().unwrap();
        let clients = row["clients"].as_u64().unwrap();
        assert!(orders > 0, "no order confirmed: {row}");
        assert_eq!(row["errors"], 0, "{row}");
        // wrk counts the answers it got; the fake also saw the charges of the orders still in
        // flight when wrk stopped, at most one per connection.
        assert!(
            (orders..=orders + clients).contains(&charges),
            "{orders} orders confirmed but {charges} charges at the fake: {row}"
        );
        assert!(
            row["host_cpu_ms_per_order"].as_f64().unwrap() > 0.0,
            "{row}"
        );
        assert!(row["fake_cpu_ms_per_order"].as_f64().is_some(), "{row}");
        assert!(row["p50"].as_f64().unwrap() > 0.0, "{row}");
    }
    assert_eq!(report["one_key"]["charges"], 1, "{}", report["one_key"]);
}
