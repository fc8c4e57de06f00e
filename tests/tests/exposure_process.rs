//! A host you can expose (issue 14), as `cairn serve` processes: the admin token made and shown
//! once at the first start; an open ingress on a non-loopback address refused unless the operator
//! says so; and what a hostile component or a flood of sends can make the host keep, measured in
//! the host's own memory and log.

use std::time::{Duration, Instant};

use cairn::mock::MockConfig;
use cairn_e2e::order_input;
use cairn_e2e::process::{Host, Rig, free_port, json_of, wait_healthy};
use serde_json::Value;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

fn exact() -> MockConfig {
    MockConfig {
        decline_rate: 0.0,
        delay_ms: (0, 0),
    }
}

/// `cairn serve --no-bundled` over `data` with `args`, without an admin token in its
/// environment; its stderr.
fn serve(data: &std::path::Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(CAIRN)
        .arg("serve")
        .arg("--no-bundled")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("CAIRN_ADMIN_TOKEN")
        .env_remove("CAIRN_INGRESS_TOKEN")
        .env_remove("CAIRN_ALLOW_OPEN_INGRESS")
        .env("MOCK_MODE", "true")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr_of(mut child: std::process::Child) -> String {
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn the_admin_token_is_made_at_the_first_start_and_shown_once() {
    let data = tempfile::tempdir().unwrap();
    let admin_port = free_port();
    let addr = format!("127.0.0.1:{admin_port}");
    let args = ["--ingress-addr", "127.0.0.1:0", "--admin-addr", &addr];
    let admin = format!("http://{addr}");
    let http = reqwest::Client::new();

    let first = serve(data.path(), &args);
    wait_healthy(&http, &admin).await;
    let token = std::fs::read_to_string(data.path().join("admin-token")).unwrap();
    let token = token.trim().to_string();
    let unauthorized = http
        .get(format!("{admin}/deployments"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let listed = http
        .get(format!("{admin}/deployments"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let shown = stderr_of(first);
    assert!(shown.contains(&token), "{shown}");

    let second = serve(data.path(), &args);
    wait_healthy(&http, &admin).await;
    let again = http
        .get(format!("{admin}/deployments"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "the same token after a restart");
    let shown = stderr_of(second);
    assert!(!shown.contains(&token), "shown twice: {shown}");
}

#[tokio::test]
async fn an_open_ingress_on_a_public_address_needs_the_operators_word() {
    let data = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let mut refused = serve(
        data.path(),
        &["--ingress-addr", "0.0.0.0:0", "--admin-addr", &admin],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "cairn serve did not refuse");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let said = stderr_of(refused);
    assert!(
        said.contains("CAIRN_INGRESS_TOKEN") && said.contains("--allow-open-ingress"),
        "{said}"
    );

    let open = serve(
        data.path(),
        &[
            "--ingress-addr",
            "0.0.0.0:0",
            "--admin-addr",
            &admin,
            "--allow-open-ingress",
        ],
    );
    wait_healthy(&reqwest::Client::new(), &format!("http://{admin}")).await;
    stderr_of(open);
}

/// The host's resident memory, in bytes.
fn rss(host: &Host) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", host.child.id())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib << 10
}

/// Deploys the abusive provider as the payments provider (bytes, so no settings: it reaches
/// nothing, and needs nothing here).
async fn deploy_abuse(rig: &Rig, host: &Host) {
    let deployed = rig
        .http
        .post(format!(
            "{}/deployments?memoryMib=256&cpuMs=60000",
            host.admin
        ))
        .header("content-type", "application/wasm")
        .body(std::fs::read(test_artifacts::HOSTILE_ABUSE).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(deployed.status(), 201);
}

async fn process_order(rig: &Rig, host: &Host, id: &str) -> Value {
    let url = format!("{}/OrderOrchestrator/{id}/ProcessOrder", host.ingress);
    json_of(rig.http.post(url).json(&order_input("x@example.com"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_a_log_flood_and_a_send_flood_leave_the_host_bounded() {
    let mut rig = Rig::new(CAIRN, exact()).await;
    rig.env.push(("CAIRN_MAX_QUEUED_PER_KEY", "100".into()));
    let host = rig.start(0).await;
    let warm = process_order(&rig, &host, "warm-1").await;
    assert_eq!(warm["status"], "confirmed", "{warm}");
    deploy_abuse(&rig, &host).await;
    let log_path = rig.data_dir.path().join("host-0.log");
    let before = rss(&host);

    // Eight requests with a 32 MiB header each: refused before anything is kept.
    let header = process_order(&rig, &host, "header-1").await;
    let text = header.to_string();
    assert!(
        text.contains("headers of 33554438 bytes are more than"),
        "{text}"
    );
    let after_headers = rss(&host);
    assert!(
        after_headers < before + (64 << 20),
        "RSS grew from {} MiB to {} MiB",
        before >> 20,
        after_headers >> 20
    );

    // 100 MiB through log.write: at most the 1 MiB budget reaches the log, one line each.
    let log_before = std::fs::metadata(&log_path).unwrap().len();
    let logged = process_order(&rig, &host, "log-1").await;
    assert_ne!(logged["status"], Value::Null, "{logged}");
    let log = std::fs::read(&log_path).unwrap();
    let grown = log.len() as u64 - log_before;
    assert!(
        grown <= (1 << 20) + (256 << 10),
        "the log grew by {grown} bytes"
    );
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("over 1048576 bytes"), "the drop is said");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00.000000Z")),
        "a guest forged a log line"
    );

    // 50,000 sends on one key: past 100 queued, 429 with Retry-After and nothing written.
    let url = format!(
        "{}/OrderOrchestrator/hot-key/ProcessOrder/send",
        host.ingress
    );
    let body = order_input("hot@example.com").to_string();
    let (accepted, refused) = flood(&rig.http, &url, &body, 50_000, 32).await;
    assert_eq!(accepted + refused, 50_000);
    // The key's queue drains meanwhile (each repeat reads the order and hands the key on), so
    // how many get in depends on the host's speed; at the flood's rate most must not.
    assert!(
        refused > 50_000 / 3,
        "{accepted} accepted, {refused} refused"
    );
    let after_sends = rss(&host);
    assert!(
        after_sends < before + (64 << 20),
        "RSS grew from {} MiB to {} MiB",
        before >> 20,
        after_sends >> 20
    );
    // One invocation written per accepted send, none for a refused one (counted in the
    // database: more may be accepted than the admin API lists in one page).
    let db = rusqlite::Connection::open_with_flags(
        rig.data_dir.path().join("cairn.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let written: usize = db
        .query_row(
            "SELECT count(*) FROM invocations WHERE object_key = 'hot-key'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(written, accepted);
}

/// `total` POSTs of `body` to `url`, `concurrency` at a time: (202s, 429s with Retry-After).
async fn flood(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    total: usize,
    concurrency: usize,
) -> (usize, usize) {
    use futures::StreamExt as _;
    let answers: Vec<(u16, bool)> = futures::stream::iter(0..total)
        .map(|_| async {
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.headers().contains_key("retry-after"),
            )
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    let refused = answers.iter().filter(|(s, r)| *s == 429 && *r).count();
    (accepted, refused)
}
