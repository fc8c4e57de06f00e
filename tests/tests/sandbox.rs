//! The sandbox and the admin API end to end (issue 4): hostile payments providers are stopped or
//! refused with an error naming the limit or the rule, while invocations pinned to the real
//! Stripe provider keep succeeding and the host keeps answering; deployment validation; pinning
//! of in-flight invocations across a swap; secrets absent from the database, logs and admin
//! output; the admin CLI.

use std::time::{Duration, Instant};

use cairn::mock::MockConfig;
use cairn_e2e::{
    Cairn, Options, PAYMENTS, Reply, assert_exports, components, count, logs, order_input,
};
use serde_json::{Value, json};

/// The fake's keys (mock mode), which must never leave the host's outbound requests.
const SECRETS: [&str; 3] = [
    "sk_test_cairn_mock",
    "SG.cairn_mock",
    "shippo_test_cairn_mock",
];

/// Small limits for hostile components.
fn hostile_limits() -> Value {
    json!({"cpuMs": 1000, "memoryMib": 16})
}

/// A host whose provider calls each take `delay_ms` at the fake and whose invocations get two
/// attempts.
async fn host(delay_ms: u64) -> Cairn {
    Cairn::start_opts(Options {
        mock: MockConfig {
            decline_rate: 0.0,
            delay_ms: (delay_ms, delay_ms),
        },
        max_attempts: 2,
        ..Options::default()
    })
    .await
}

/// What happened when a hostile payments provider served one order.
struct Hostile {
    cairn: Cairn,
    /// The hostile deployment.
    deployment: String,
    /// The hostile order's invocation (admin view) and ingress answer.
    invocation: Value,
    reply: Reply,
    elapsed: Duration,
    /// GetOrder calls answered (the order `pending`) while the hostile invocation was running.
    answered_while_running: usize,
}

/// Three orders start on Stripe (pinned, in flight at the fake), the hostile component at
/// `path` is deployed as the payments provider, one order runs on it while GetOrder is asked
/// about that order over and over; then the in-flight orders must have succeeded on Stripe,
/// Stripe is deployed again, and a new order succeeds.
async fn hostile_order(path: &str, order_id: &str) -> Hostile {
    let cairn = host(1000).await;
    let stripe = cairn.active_deployment(PAYMENTS).await;
    let mut normal = Vec::new();
    for i in 0..3 {
        normal.push(cairn.send_order(&format!("{order_id}-normal-{i}")).await);
    }

    let deployed = cairn.deploy_file(path, Some(hostile_limits())).await;
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    assert_exports(&deployed.body, PAYMENTS);
    assert_eq!(deployed.body["active"], true);
    assert_eq!(deployed.body["limits"], hostile_limits());
    let deployment = deployed.body["id"].as_str().unwrap().to_string();
    assert_eq!(cairn.active_deployment(PAYMENTS).await, deployment);

    let started = Instant::now();
    let id = cairn.send_order(order_id).await;
    let mut answered_while_running = 0;
    loop {
        let asked = Instant::now();
        let got = cairn.get_order(order_id).await;
        let latency = asked.elapsed();
        assert!(
            latency < Duration::from_secs(3),
            "GetOrder took {latency:?} while the hostile provider ran"
        );
        let inv = cairn.admin_get(&format!("/invocations/{id}")).await.body;
        if inv["status"] != "running" {
            break;
        }
        if got.status == 200 {
            assert_eq!(got.body["status"], "pending", "{:?}", got.body);
            answered_while_running += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = cairn.output(&id).await;
    let elapsed = started.elapsed();
    let invocation = cairn.finished_invocation(&id).await;
    assert_eq!(invocation["providers"][PAYMENTS], deployment.as_str());
    cairn.mock_config(json!({"delay_ms": [0, 0]})).await;

    // The orders pinned to Stripe before the swap finished on Stripe.
    for id in &normal {
        let inv = cairn.finished_invocation(id).await;
        assert_eq!(inv["status"], "succeeded", "{inv}");
        assert_eq!(inv["output"]["status"], "confirmed", "{inv}");
        assert_eq!(inv["providers"][PAYMENTS], stripe.as_str());
    }
    // Stripe again (the same bytes: the existing deployment, made active), and a new order.
    let again = cairn
        .deploy_file(test_artifacts::STRIPE_PAYMENTS, None)
        .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["id"], stripe.as_str());
    assert_eq!(cairn.active_deployment(PAYMENTS).await, stripe);
    let after = cairn
        .process_order(
            &format!("{order_id}-after"),
            &order_input("bob@example.com"),
        )
        .await;
    assert_eq!(after.status, 200, "{:?}", after.body);
    assert_eq!(after.body["status"], "confirmed", "{:?}", after.body);
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/succeeded"), 4, "{stats}");
    Hostile {
        cairn,
        deployment,
        invocation,
        reply,
        elapsed,
        answered_while_running,
    }
}

/// The hostile order failed after its attempts with `needle` in its message.
fn assert_failed_with(h: &Hostile, needle: &str) {
    let failure = &h.invocation["failure"];
    assert_eq!(h.invocation["status"], "failed", "{}", h.invocation);
    assert_eq!(failure["kind"], "retryable", "{failure}");
    assert_eq!(h.invocation["attempt"], 2, "{}", h.invocation);
    let message = failure["message"].as_str().unwrap();
    assert!(message.contains(needle), "{message}");
    assert!(
        message.contains(&h.deployment),
        "names the component: {message}"
    );
    assert_eq!(h.reply.status, 503, "{:?}", h.reply.body);
    let answer = h.reply.body["message"].as_str().unwrap_or_default();
    assert!(answer.contains(needle), "{:?}", h.reply.body);
}

#[tokio::test]
async fn an_endless_loop_is_stopped_by_its_cpu_limit_while_the_host_keeps_answering() {
    let h = hostile_order(test_artifacts::HOSTILE_LOOP, "order-loop").await;
    assert_failed_with(&h, "cpu time limit (1s) exceeded");
    // Two attempts, each stopped after about a second of guest execution.
    assert!(h.elapsed >= Duration::from_millis(1800), "{:?}", h.elapsed);
    assert!(
        h.answered_while_running >= 3,
        "GetOrder answered {} times while the loop ran",
        h.answered_while_running
    );
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_by_its_memory_limit() {
    let h = hostile_order(test_artifacts::HOSTILE_MEMORY, "order-memory").await;
    assert_failed_with(&h, "memory limit (16 MiB) exceeded");
}

#[tokio::test]
async fn endless_recursion_is_stopped_by_the_stack_limit() {
    let h = hostile_order(test_artifacts::HOSTILE_RECURSION, "order-recursion").await;
    assert_failed_with(&h, "stack overflow");
}

#[tokio::test]
async fn requests_to_unlisted_loopback_and_metadata_addresses_are_refused() {
    let h = hostile_order(test_artifacts::HOSTILE_NETWORK, "order-network").await;
    let message = h.invocation["failure"]["message"].as_str().unwrap();
    assert_eq!(h.invocation["status"], "failed", "{}", h.invocation);
    assert_eq!(h.reply.status, 503, "{:?}", h.reply.body);
    for expected in [
        "evil https://evil.example.com/steal: destination denied: https://evil.example.com:443 is not on this component's allow-list",
        "admin http://127.0.0.1:9070/deployments: destination denied: http://127.0.0.1:9070: IP literals (loopback address) are refused",
        "metadata http://169.254.169.254/latest/meta-data/: destination denied: http://169.254.169.254:80: IP literals (link-local address) are refused",
    ] {
        assert!(message.contains(expected), "{expected}\nnot in: {message}");
    }
    assert!(!message.contains("ch_leaked"), "{message}");
    // Nothing reached the fake on the hostile order's behalf: 4 Stripe orders, 4 charges.
    let stats = h.cairn.stats().await;
    assert_eq!(count(&stats, "/requests/stripe"), 4, "{stats}");
}

#[tokio::test]
async fn a_snooping_provider_finds_no_environment_no_files_and_no_secret() {
    let logs = logs::capture();
    let h = hostile_order(test_artifacts::HOSTILE_SNOOP, "order-snoop").await;
    assert_eq!(h.invocation["status"], "succeeded", "{}", h.invocation);
    let order = &h.reply.body;
    assert_eq!(order["status"], "payment_failed", "{order}");
    let reason = order["failureReason"].as_str().unwrap();
    assert!(reason.starts_with("env=0 vars: (none); fs: "), "{reason}");
    assert!(reason.contains("read_dir(/): error"), "{reason}");
    assert!(reason.contains("read(/etc/passwd): error"), "{reason}");
    // Its stdout and stderr are in the host's log, tagged with the component, unexpanded.
    let text = logs.text();
    for stream in ["stdout", "stderr"] {
        assert!(
            text.lines().any(|l| l.contains(&h.deployment)
                && l.contains(&format!("stream=\"{stream}\""))
                && l.contains("{{secret:STRIPE_API_KEY}}")),
            "no {stream} line of {} in the log",
            h.deployment
        );
    }
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in the host's log");
    }
}

/// The provider call's deployment, from the journal of invocation `inv`.
fn charged_by(inv: &Value) -> String {
    let journal = inv["journal"].as_array().unwrap();
    let charge = journal
        .iter()
        .find(|e| e["name"] == "cairn:commerce/payments.create-charge")
        .unwrap_or_else(|| panic!("no charge in {inv}"));
    charge["detail"]["effect"]["provider"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_invocation_finishes_on_the_provider_it_started_with_and_the_next_uses_the_new_one() {
    let cairn = host(3000).await;
    let a = cairn.active_deployment(PAYMENTS).await;
    let first = cairn.send_order("order-pin-a").await;
    // The first order is at the fake (3 s a call) when B is deployed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stripe = std::fs::read(test_artifacts::STRIPE_PAYMENTS).unwrap();
    // A replacement Stripe without settings of its own gets the role's key only when the
    // operator says so.
    let deployed = cairn
        .deploy_bytes_with(
            components::with_custom_section(stripe, b"B"),
            "?cpuMs=5000",
            Some(json!({"inheritSecrets": true})),
        )
        .await;
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    let b = deployed.body["id"].as_str().unwrap().to_string();
    assert_ne!(a, b);
    assert_eq!(deployed.body["limits"], json!({"cpuMs": 5000}));
    assert_eq!(cairn.active_deployment(PAYMENTS).await, b);

    // A is still used by the running order: it cannot be deleted; B is active: neither.
    let running = cairn.admin_get(&format!("/invocations/{first}")).await.body;
    assert_eq!(running["status"], "running", "{running}");
    let refused = cairn.admin_delete(&format!("/deployments/{a}")).await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert_eq!(refused.body["error"], "conflict");
    assert!(
        refused.body["message"].as_str().unwrap().contains(&first),
        "{:?}",
        refused.body
    );
    let pinned = cairn.admin_get(&format!("/deployments/{a}")).await.body;
    assert_eq!(pinned["active"], false, "{pinned}");
    assert_eq!(pinned["runningInvocations"], json!([first]), "{pinned}");
    let active = cairn.admin_delete(&format!("/deployments/{b}")).await;
    assert_eq!(active.status, 409, "{:?}", active.body);
    let message = active.body["message"].as_str().unwrap();
    assert!(
        message.contains("active implementation of") && message.contains(PAYMENTS),
        "{:?}",
        active.body
    );

    cairn.mock_config(json!({"delay_ms": [0, 0]})).await;
    let first = cairn.finished_invocation(&first).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["providers"][PAYMENTS], a.as_str());
    assert_eq!(charged_by(&first), a, "finished on A");
    let second = cairn
        .process_order("order-pin-b", &order_input("bob@example.com"))
        .await;
    assert_eq!(second.body["status"], "confirmed", "{:?}", second.body);
    let second = cairn
        .admin_get(&format!("/invocations/{}", second.invocation_id.unwrap()))
        .await
        .body;
    assert_eq!(second["providers"][PAYMENTS], b.as_str());
    assert_eq!(charged_by(&second), b, "the next one uses B");

    // The choice survives a restart (the bundled Stripe, A, is not made active again).
    let cairn = cairn.restart().await;
    assert_eq!(cairn.active_deployment(PAYMENTS).await, b);
    let deleted = cairn.admin_delete(&format!("/deployments/{a}")).await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    assert_eq!(deleted.body["deleted"], true);
    let gone = cairn.admin_get(&format!("/deployments/{a}")).await;
    assert_eq!(gone.status, 404, "{:?}", gone.body);
    assert_eq!(gone.body["error"], "not_found");
    let third = cairn
        .process_order("order-pin-c", &order_input("carol@example.com"))
        .await;
    assert_eq!(third.body["status"], "confirmed", "{:?}", third.body);
}

#[tokio::test]
async fn deployments_that_are_not_valid_components_are_400s_naming_the_problem() {
    let cairn = Cairn::start().await;
    let before = cairn.admin_get("/deployments").await.body;
    let raw: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "junk",
            b"hello, world".to_vec(),
            "",
            "not a WebAssembly component",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "",
            "core WebAssembly module",
        ),
        (
            "unknown world",
            components::component_exporting("acme:other/api@1.0.0"),
            "",
            "exports nothing another component could call: it must export cairn:durable/handler@0.1.2",
        ),
        (
            "an interface without functions",
            components::component_exporting("cairn:commerce/payments@0.1.0"),
            "",
            "exports nothing another component could call",
        ),
        (
            "only an import",
            components::component_importing("acme:secret/vault@1.0.0"),
            "",
            "exports nothing another component could call",
        ),
        (
            "an import its world forbids",
            std::fs::read(test_artifacts::TAX_STATEFUL).unwrap(),
            "",
            "imports cairn:durable/state@0.1.2, which the cairn:durable/provider world does not allow",
        ),
        (
            "bad limits",
            std::fs::read(test_artifacts::HOSTILE_LOOP).unwrap(),
            "?cpuMs=0",
            "limits.cpuMs must be between",
        ),
        (
            "unknown limit",
            std::fs::read(test_artifacts::HOSTILE_LOOP).unwrap(),
            "?fuel=1",
            "unknown field `fuel`",
        ),
    ];
    for (case, bytes, query, expected) in raw {
        let reply = cairn.deploy_bytes(bytes, query).await;
        assert_eq!(reply.status, 400, "{case}: {:?}", reply.body);
        assert_eq!(reply.body["error"], "bad_request", "{case}");
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.contains(expected), "{case}: {message}");
    }
    let unknown_world = cairn
        .deploy_bytes(components::component_exporting("acme:other/api@1.0.0"), "")
        .await;
    assert!(
        unknown_world.body["message"]
            .as_str()
            .unwrap()
            .ends_with("it exports [acme:other/api@1.0.0]"),
        "{:?}",
        unknown_world.body
    );

    let files: Vec<(&str, Value, &str)> = vec![
        (
            "relative path",
            json!({"path": "stripe.wasm"}),
            "not an absolute path",
        ),
        (
            "missing file",
            json!({"path": "/nonexistent/x.wasm"}),
            "no readable component file /nonexistent/x.wasm under the deploy dir",
        ),
        (
            "not a file URI",
            json!({"uri": "https://example.com/x.wasm"}),
            "only file:// URIs",
        ),
        ("neither", json!({}), "exactly one of"),
        (
            "bad limits",
            json!({"path": test_artifacts::HOSTILE_LOOP, "limits": {"memoryMib": 100000}}),
            "limits",
        ),
    ];
    for (case, body, expected) in files {
        let reply = cairn.admin_post("/deployments", &body).await;
        assert_eq!(reply.status, 400, "{case}: {:?}", reply.body);
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.contains(expected), "{case}: {message}");
    }
    let file_uri = cairn
        .admin_post(
            "/deployments",
            &json!({"uri": format!("file://{}", test_artifacts::HOSTILE_LOOP)}),
        )
        .await;
    assert_eq!(file_uri.status, 201, "{:?}", file_uri.body);

    let text = cairn
        .admin_http
        .post(cairn.admin("/deployments"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    let too_big = cairn.deploy_bytes(vec![0u8; (20 << 20) + 1], "").await;
    assert_eq!(too_big.status, 413, "{:?}", too_big.body);
    assert_eq!(too_big.body["error"], "payload_too_large");

    // Nothing was deployed but the one valid component.
    let after = cairn.admin_get("/deployments").await.body;
    assert_eq!(
        after["deployments"].as_array().unwrap().len(),
        before["deployments"].as_array().unwrap().len() + 1
    );
    let services = cairn.admin_get("/services").await.body;
    assert_eq!(services["services"][0]["name"], "OrderOrchestrator");
}

#[tokio::test]
async fn secrets_never_reach_the_database_the_logs_or_the_admin_api() {
    let logs = logs::capture();
    let cairn = host(0).await;
    for i in 0..3 {
        let reply = cairn
            .process_order(
                &format!("order-secret-{i}"),
                &order_input("dan@example.com"),
            )
            .await;
        assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    }
    // A provider that asks for the payments secret towards an unlisted host.
    let deployed = cairn
        .deploy_file(test_artifacts::HOSTILE_NETWORK, None)
        .await;
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    let refused = cairn
        .process_order("order-secret-net", &order_input("dan@example.com"))
        .await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);

    let mut admin = String::new();
    for path in ["/deployments", "/services", "/invocations?limit=1000"] {
        admin.push_str(&cairn.admin_get(path).await.body.to_string());
    }
    let listed = cairn.admin_get("/invocations?limit=1000").await.body;
    for inv in listed["invocations"].as_array().unwrap() {
        let id = inv["id"].as_str().unwrap();
        admin.push_str(
            &cairn
                .admin_get(&format!("/invocations/{id}"))
                .await
                .body
                .to_string(),
        );
    }
    assert!(
        admin.contains("{{secret:STRIPE_API_KEY}}"),
        "placeholders are shown"
    );

    let mut database = Vec::new();
    for entry in std::fs::read_dir(cairn.data_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            database.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(database.len() > 10_000, "the database files were read");
    let text = logs.text();
    assert!(
        text.contains("outbound request refused"),
        "the refusal is logged"
    );
    for secret in SECRETS {
        assert!(
            !database
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "{secret} in the database files"
        );
        assert!(
            !admin.contains(secret),
            "{secret} in the admin API's answers"
        );
        assert!(!text.contains(secret), "{secret} in the host's log");
    }
}

/// Runs the `cairn` binary with `args` against `admin`; (success, stdout, stderr).
async fn cli(admin: &str, args: &[&str]) -> (bool, String, String) {
    cairn_e2e::cli(env!("CARGO_BIN_EXE_cairn"), admin, args).await
}

#[tokio::test]
async fn the_cli_deploys_and_lists_through_the_admin_api() {
    let cairn = Cairn::start().await;
    let admin = cairn.admin("");
    let reply = cairn
        .process_order("order-cli", &order_input("erin@example.com"))
        .await;
    assert_eq!(reply.body["status"], "confirmed");
    let id = reply.invocation_id.unwrap();

    let (ok, out, err) = cli(&admin, &["deployments"]).await;
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap();
    assert!(header.starts_with("ID "), "{out}");
    for column in ["KIND", "NAME", "ACTIVE", "LIMITS"] {
        assert!(header.contains(column), "{out}");
    }
    assert!(
        out.contains("payments") && out.contains("64 MiB, 10000 ms"),
        "{out}"
    );

    let (ok, deployed, err) = cli(
        &admin,
        &[
            "deploy",
            test_artifacts::HOSTILE_SNOOP,
            "--cpu-ms",
            "2000",
            "--memory-mib",
            "32",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        deployed.starts_with("deployed provider cairn:commerce/payments@0.1.0, "),
        "{deployed}"
    );
    assert!(deployed.contains("32 MiB, 2000 ms"), "{deployed}");

    let (ok, listed, err) = cli(
        &admin,
        &["invocations", "--status", "succeeded", "--key", "order-cli"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(listed.lines().nth(1).unwrap().starts_with(&id), "{listed}");

    let (ok, shown, err) = cli(&admin, &["invocation", &id, "--admin", &admin]).await;
    assert!(ok, "{err}");
    assert!(shown.contains("status      succeeded"), "{shown}");
    assert!(shown.contains("journal ("), "{shown}");
    assert!(
        shown.contains("cairn:commerce/payments.create-charge"),
        "{shown}"
    );

    let (ok, _, err) = cli(&admin, &["invocation", "inv_nope"]).await;
    assert!(!ok);
    assert!(
        err.contains("404") && err.contains("no invocation"),
        "{err}"
    );

    for secret in SECRETS {
        for output in [&out, &deployed, &listed, &shown] {
            assert!(!output.contains(secret), "{secret} in the CLI's output");
        }
    }
}
