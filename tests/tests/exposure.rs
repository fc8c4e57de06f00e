//! A host you can expose (issue 14), attacked as an outsider and as a hostile component would:
//! the admin API without its token, from a foreign page or by a rebound name; deployment by
//! path outside the deploy dir; secrets the operator never made grantable, sent where they are
//! not bound, or echoed back; connection headers; a listed name resolving to loopback; a
//! provider blocked outside wasm; bounded per-key queues; retention. Each is stopped, with an
//! error that says why, writing nothing.

use std::time::{Duration, Instant};

use cairn::http_api::access::AccessToken;
use cairn::mock::MockConfig;
use cairn::outbound::Secret;
use cairn::storage::Table;
use cairn_e2e::echo::Echo;
use cairn_e2e::{ADMIN_TOKEN, Cairn, Options, PAYMENTS, logs, order_input};
use serde_json::{Value, json};

/// The key granted to the abusive provider (standing in for the host's environment).
const ABUSE_KEY: &str = "abuse_key_9f3c2e77d1";

async fn host(options: Options) -> Cairn {
    Cairn::start_opts(Options {
        mock: MockConfig {
            decline_rate: 0.0,
            delay_ms: (0, 0),
        },
        max_attempts: 2,
        ..options
    })
    .await
}

async fn deployment_count(cairn: &Cairn) -> usize {
    let list = cairn.admin_get("/deployments").await;
    list.body["deployments"].as_array().unwrap().len()
}

#[tokio::test]
async fn the_admin_api_answers_only_its_token() {
    let cairn = host(Options::default()).await;
    let before = deployment_count(&cairn).await;
    let outsider = reqwest::Client::new();
    let wasm = std::fs::read(test_artifacts::HOSTILE_LOOP).unwrap();
    for token in [
        None,
        Some("wrong-token-wrong-token"),
        Some(&ADMIN_TOKEN[1..]),
    ] {
        let with = |req: reqwest::RequestBuilder| match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        for req in [
            with(outsider.get(cairn.admin("/deployments"))),
            with(outsider.get(cairn.admin("/invocations"))),
            with(outsider.get(cairn.admin("/no/such/route"))),
            with(
                outsider
                    .post(cairn.admin("/deployments"))
                    .header("content-type", "application/wasm")
                    .body(wasm.clone()),
            ),
        ] {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{token:?}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized", "{body}");
            assert!(body["message"].as_str().unwrap().contains("Bearer"));
        }
    }
    // Liveness stays open; nothing was deployed.
    let health = outsider.get(cairn.admin("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(deployment_count(&cairn).await, before);
}

#[tokio::test]
async fn admin_requests_from_a_foreign_host_or_page_are_refused_and_no_cors_is_answered() {
    let cairn = host(Options::default()).await;
    let before = deployment_count(&cairn).await;
    let wasm = std::fs::read(test_artifacts::HOSTILE_LOOP).unwrap();
    // DNS rebinding: a page's name pointed at 127.0.0.1; the browser sends its own Host.
    for host_header in ["evil.example", "evil.example:9070", "127.0.0.1.nip.io:9070"] {
        let resp = cairn
            .admin_http
            .post(cairn.admin("/deployments"))
            .header("host", host_header)
            .header("content-type", "application/wasm")
            .body(wasm.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{host_header}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "foreign_host", "{body}");
    }
    // A cross-site form post (the browser names the page in Origin).
    let resp = cairn
        .admin_http
        .post(cairn.admin("/deployments"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/wasm")
        .body(wasm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "foreign_origin"
    );
    // No type: never taken as wasm (a "simple" cross-site request may send none).
    let untyped = cairn
        .admin_http
        .post(cairn.admin("/deployments"))
        .body(wasm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(untyped.status(), 415);
    let body: Value = untyped.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("missing"),
        "{body}"
    );
    // A preflight gets no CORS grant.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, cairn.admin("/deployments"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(!preflight.status().is_success(), "{}", preflight.status());
    assert!(
        preflight
            .headers()
            .keys()
            .all(|h| !h.as_str().starts_with("access-control-")),
        "{:?}",
        preflight.headers()
    );
    assert_eq!(deployment_count(&cairn).await, before);
}

#[tokio::test]
async fn an_ingress_token_guards_every_handler_but_not_the_webhooks() {
    const INGRESS_TOKEN: &str = "ingress-token-5b1e0c9a";
    let mut options = Options::default();
    options.ingress.token = Some(AccessToken::new(&Secret::new(INGRESS_TOKEN)).unwrap());
    let cairn = host(options).await;
    let refused = cairn
        .process_order("order-no-token", &order_input("a@example.com"))
        .await;
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    assert_eq!(refused.body["error"], "unauthorized");
    assert_eq!(cairn.count_rows(Table::Invocations).await, 0);
    let admitted = cairn
        .http
        .post(cairn.ingress("/OrderOrchestrator/order-token/ProcessOrder"))
        .bearer_auth(INGRESS_TOKEN)
        .json(&order_input("a@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(admitted.status(), 200);
    // A webhook is judged by its signature, not by the ingress token.
    let webhook = cairn
        .post("/webhooks/stripe", &json!({"id": "evt_1"}))
        .await;
    assert_ne!(webhook.body["error"], "unauthorized", "{:?}", webhook.body);
    assert!(webhook.status.is_client_error(), "{:?}", webhook.body);
}

#[tokio::test]
async fn deployment_by_path_reads_only_the_deploy_dir_and_never_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let inside = dir.path().join("ok.wasm");
    std::fs::copy(test_artifacts::HOSTILE_LOOP, &inside).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("out.wasm")).unwrap();
    // Bigger than the limit by its length alone: read it to the end and the test would say.
    let huge = std::fs::File::create(dir.path().join("huge.wasm")).unwrap();
    huge.set_len(8 << 30).unwrap();
    let cairn = host(Options {
        deploy_dir: Some(dir.path().to_path_buf()),
        ..Options::default()
    })
    .await;
    let before = deployment_count(&cairn).await;
    // The same words whether the file exists or not (a `file://` URI names the path with its
    // `..` resolved).
    let suffix = format!(
        " under the deploy dir {}",
        std::fs::canonicalize(dir.path()).unwrap().display()
    );
    let uniform = |_path: &str, message: &str| {
        message.starts_with("no readable component file /") && message.ends_with(&suffix)
    };
    let outside = [
        "/etc/passwd".to_string(),
        "/no/such/file.wasm".to_string(),
        "/proc/self/environ".to_string(),
        format!("{}/../../etc/passwd", dir.path().display()),
        format!("{}/out.wasm", dir.path().display()),
        format!("{}/missing.wasm", dir.path().display()),
        dir.path().display().to_string(),
    ];
    for path in &outside {
        for body in [
            json!({"path": path}),
            json!({"uri": format!("file://{path}")}),
        ] {
            let reply = cairn.admin_post("/deployments", &body).await;
            assert_eq!(reply.status, 400, "{path}: {:?}", reply.body);
            let message = reply.body["message"].as_str().unwrap();
            assert!(uniform(path, message), "{path}: {message}");
        }
    }
    let started = Instant::now();
    let huge = cairn
        .admin_post(
            "/deployments",
            &json!({"path": dir.path().join("huge.wasm")}),
        )
        .await;
    assert_eq!(huge.status, 413, "{:?}", huge.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(deployment_count(&cairn).await, before);
    let ok = cairn
        .admin_post("/deployments", &json!({"path": inside}))
        .await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
}

#[tokio::test]
async fn a_deployment_gets_only_secrets_the_operator_made_grantable() {
    let cairn = host(Options {
        secret_env: vec![("ABUSE_KEY".into(), ABUSE_KEY.into())],
        ..Options::default()
    })
    .await;
    let before = deployment_count(&cairn).await;
    // Set in the host's environment (PATH always is), but never grantable.
    for name in ["DATABASE_URL", "PATH", "AWS_SECRET_ACCESS_KEY"] {
        let reply = cairn
            .admin_post(
                "/deployments",
                &json!({"path": test_artifacts::HOSTILE_ABUSE, "secrets": [name]}),
            )
            .await;
        assert_eq!(reply.status, 400, "{name}: {:?}", reply.body);
        let message = reply.body["message"].as_str().unwrap();
        assert!(
            message.contains(name) && message.contains("CAIRN_GRANTABLE_SECRETS"),
            "{message}"
        );
    }
    assert_eq!(deployment_count(&cairn).await, before);
}

/// A host whose active payments provider is the abusive one, its `api-base` at `echo`, `other`
/// allowed too (both on loopback, allowed as private), `ABUSE_KEY` made grantable as `grantable`
/// says given `echo` (empty: unbound); `before` is the payments deployment active until then.
struct Abused {
    cairn: Cairn,
    echo: Echo,
    other: Echo,
    before: String,
}

async fn abused_host(grantable: impl FnOnce(&Echo) -> Vec<String>, limits: Value) -> Abused {
    let (echo, other) = (Echo::start().await, Echo::start().await);
    let cairn = host(Options {
        secret_env: vec![("ABUSE_KEY".into(), ABUSE_KEY.into())],
        grantable: grantable(&echo),
        ..Options::default()
    })
    .await;
    let before = cairn.active_deployment(PAYMENTS).await;
    let deployed = cairn
        .admin_post(
            "/deployments",
            &json!({
                "path": test_artifacts::HOSTILE_ABUSE,
                "config": {"api-base": echo.base, "other-base": other.base},
                "allowPrivate": [echo.base, other.base],
                "secrets": ["ABUSE_KEY"],
                "limits": limits,
            }),
        )
        .await;
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    let id = deployed.body["id"].as_str().unwrap();
    assert_eq!(cairn.active_deployment(PAYMENTS).await, id);
    Abused {
        cairn,
        echo,
        other,
        before,
    }
}

#[tokio::test]
async fn an_echoed_secret_is_redacted_and_a_secret_goes_only_where_it_is_bound() {
    let logs = logs::capture();
    let Abused {
        cairn, echo, other, ..
    } = abused_host(
        |echo| vec![format!("ABUSE_KEY[authorization]={}", echo.base)],
        json!({"cpuMs": 5000}),
    )
    .await;

    // The server echoes the key back; what the guest, the journal and the order see is the
    // placeholder.
    let reply = cairn
        .process_order("echo-1", &order_input("e@example.com"))
        .await;
    assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    let heads = echo.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].contains(&format!("Bearer {ABUSE_KEY}")),
        "{heads:?}"
    );
    let charge = reply.body["chargeId"].as_str().unwrap();
    assert!(charge.contains("Bearer {{secret:ABUSE_KEY}}"), "{charge}");

    // Bound to `echo`: not sent to `other`, though `other` is on the allow-list.
    let leak = cairn
        .process_order("leak-1", &order_input("l@example.com"))
        .await;
    assert_ne!(leak.body["status"], "confirmed", "{:?}", leak.body);
    assert!(other.heads().is_empty(), "{:?}", other.heads());
    let leak_text = cairn.invocation(&leak).await.to_string();
    assert!(leak_text.contains("may not be sent to"), "{leak_text}");

    let admin = cairn.admin_text().await;
    assert!(
        admin.contains("{{secret:ABUSE_KEY}}"),
        "the placeholder is recorded"
    );
    for (place, text) in [
        ("admin API", admin),
        ("logs", logs.text()),
        ("order", reply.body.to_string()),
        (
            "database",
            String::from_utf8_lossy(&cairn.database_bytes()).into_owned(),
        ),
    ] {
        assert!(!text.contains(ABUSE_KEY), "the key is in the {place}");
    }
}

#[tokio::test]
async fn the_guest_cannot_set_the_connections_own_headers() {
    let Abused { cairn, echo, .. } = abused_host(|_| Vec::new(), json!({"cpuMs": 5000})).await;
    let reply = cairn
        .process_order("hosthdr-1", &order_input("h@example.com"))
        .await;
    assert_ne!(reply.body["status"], "confirmed", "{:?}", reply.body);
    assert!(echo.heads().is_empty(), "on the wire: {:?}", echo.heads());
    let text = cairn.invocation(&reply).await.to_string();
    assert!(text.contains("is not the component's to set"), "{text}");
}

#[tokio::test]
async fn a_listed_name_resolving_to_loopback_is_refused_unless_allowed_as_private() {
    let echo = Echo::start().await;
    let cairn = host(Options {
        secret_env: vec![("ABUSE_KEY".into(), ABUSE_KEY.into())],
        ..Options::default()
    })
    .await;
    // `localhost` on the allow-list: listed by name, resolving to 127.0.0.1.
    let by_name = echo.base.replace("127.0.0.1", "localhost");
    let deploy = |private: Value| {
        let cairn = &cairn;
        let by_name = by_name.clone();
        async move {
            let deployed = cairn
                .admin_post(
                    "/deployments",
                    &json!({
                        "path": test_artifacts::HOSTILE_ABUSE,
                        "config": {"api-base": by_name, "other-base": by_name},
                        "allow": [by_name],
                        "allowPrivate": private,
                        "secrets": ["ABUSE_KEY"],
                        "limits": {"cpuMs": 5000},
                    }),
                )
                .await;
            assert!(deployed.status.is_success(), "{:?}", deployed.body);
        }
    };

    deploy(json!([])).await;
    let refused = cairn
        .process_order("echo-by-name-1", &order_input("n@example.com"))
        .await;
    assert_ne!(refused.body["status"], "confirmed", "{:?}", refused.body);
    let text = cairn.invocation(&refused).await.to_string();
    assert!(text.contains("resolves to"), "{text}");
    assert!(echo.heads().is_empty(), "reached: {:?}", echo.heads());

    // The operator flags the origin as private: the same name now connects.
    deploy(json!([by_name])).await;
    let allowed = cairn
        .process_order("echo-by-name-2", &order_input("n@example.com"))
        .await;
    assert_eq!(allowed.body["status"], "confirmed", "{:?}", allowed.body);
    assert_eq!(echo.heads().len(), 1, "{:?}", echo.heads());
}

#[tokio::test]
async fn a_provider_blocked_outside_wasm_is_stopped_at_its_wall_clock_limit() {
    let Abused {
        cairn,
        before: stripe,
        ..
    } = abused_host(|_| Vec::new(), json!({"cpuMs": 5000, "wallMs": 1000})).await;
    // A WASI sleep of an hour and a request whose timeout is 49 days, both pinned to it.
    let sleeping = cairn.send_order("sleep-1").await;
    let hanging = cairn.send_order("hang-1").await;
    // Stripe again: other orders run beside them and succeed.
    let again = cairn
        .deploy_file(test_artifacts::STRIPE_PAYMENTS, None)
        .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(cairn.active_deployment(PAYMENTS).await, stripe);
    for i in 0..5 {
        let reply = cairn
            .process_order(&format!("order-beside-{i}"), &order_input("b@example.com"))
            .await;
        assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    }
    let started = Instant::now();
    for id in [&sleeping, &hanging] {
        let inv = cairn.finished_invocation(id).await;
        let text = inv.to_string();
        assert!(
            text.contains("wall-clock limit (1s) exceeded"),
            "{id}: {text}"
        );
        // The trapped calls are recorded, with the request that was in flight.
        let trapped: Vec<&Value> = inv["journal"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["detail"]["effect"]["trapped"].is_string())
            .collect();
        assert!(!trapped.is_empty(), "{text}");
        if id == &hanging {
            let exchange = &trapped[0]["detail"]["effect"]["exchanges"][0];
            assert!(
                exchange["request"]["url"]
                    .as_str()
                    .unwrap()
                    .ends_with("/hang"),
                "{exchange}"
            );
        }
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    // Their instances, permits and keys are free.
    assert_eq!(cairn.admin_get("/health").await.body["runningAttempts"], 0);
}

#[tokio::test]
async fn past_its_bound_a_key_queue_refuses_with_429_and_writes_nothing() {
    let mut options = Options {
        mock: MockConfig {
            decline_rate: 0.0,
            delay_ms: (300, 300),
        },
        ..Options::default()
    };
    options.ingress.max_queued_per_key = 20;
    let cairn = Cairn::start_opts(options).await;
    let send = |i: usize| {
        let http = cairn.http.clone();
        let url = cairn.ingress("/OrderOrchestrator/hot-key/ProcessOrder/send");
        async move {
            let resp = http
                .post(url)
                .json(&order_input(&format!("q{i}@example.com")))
                .send()
                .await
                .unwrap();
            let retry_after = resp.headers().get("retry-after").cloned();
            (resp.status().as_u16(), retry_after)
        }
    };
    let results = futures::future::join_all((0..200).map(send)).await;
    let accepted = results.iter().filter(|(s, _)| *s == 202).count();
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(accepted + refused.len(), 200, "{results:?}");
    // Places free up only as queued invocations end (each waits its turn behind 300 ms calls).
    assert!(accepted < 100, "{accepted} accepted");
    assert!(refused.len() >= 100, "{} refused", refused.len());
    assert!(
        refused
            .iter()
            .all(|(_, r)| r.as_ref().is_some_and(|v| v == "1"))
    );
    // Nothing was written for a refused send; another key is not held back.
    assert_eq!(
        cairn.count_rows(Table::Invocations).await as usize,
        accepted
    );
    let other = cairn
        .process_order("cold-key", &order_input("c@example.com"))
        .await;
    assert_eq!(other.body["status"], "confirmed", "{:?}", other.body);
}

#[tokio::test]
async fn finished_invocations_are_purged_once_no_key_names_them() {
    let cairn = host(Options {
        retention: cairn::config::Retention {
            finished: Duration::ZERO,
            every: Duration::from_millis(100),
        },
        ..Options::default()
    })
    .await;
    for i in 0..3 {
        let reply = cairn
            .process_order(&format!("order-purged-{i}"), &order_input("p@example.com"))
            .await;
        assert_eq!(reply.body["status"], "confirmed");
    }
    let keyed = cairn
        .http
        .post(cairn.ingress("/OrderOrchestrator/order-kept/ProcessOrder"))
        .header("idempotency-key", "kept-1")
        .json(&order_input("k@example.com"))
        .send()
        .await
        .unwrap();
    let keyed_id = keyed.headers()["x-cairn-invocation-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(keyed.status(), 200);
    // Every finished invocation goes, but the one its key still names.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cairn.count_rows(Table::Invocations).await > 1 {
        assert!(Instant::now() < deadline, "not purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = cairn.admin_get(&format!("/invocations/{keyed_id}")).await;
    assert_eq!(kept.status, 200, "{:?}", kept.body);
    let entries = kept.body["journal"].as_array().unwrap().len() as i64;
    assert_eq!(cairn.count_rows(Table::Journal).await, entries);
    // State is not an invocation's: the orders are still known.
    let order = cairn.get_order("order-purged-0").await;
    assert_eq!(order.body["status"], "confirmed", "{:?}", order.body);
    // A day later the key has expired: it goes, then its invocation.
    let storage = &cairn.server.runtime.storage;
    let later = cairn::storage::now_ms() + 25 * 3600 * 1000;
    let purged = storage.purge(later, later, 1000).await.unwrap();
    assert_eq!(purged.keys, 1);
    assert!(purged.invocations >= 1, "{purged:?}");
    assert_eq!(cairn.count_rows(Table::IdempotencyKeys).await, 0);
    let gone = cairn.admin_get(&format!("/invocations/{keyed_id}")).await;
    assert_eq!(gone.status, 404);
}

#[tokio::test]
async fn the_cli_reads_the_token_from_the_environment_or_the_data_dir() {
    let cairn = host(Options::default()).await;
    let run = |env: Vec<(&'static str, String)>| {
        let admin = cairn.admin("");
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
                .arg("deployments")
                .env("CAIRN_ADMIN_URL", admin)
                .env_remove("CAIRN_ADMIN_TOKEN")
                .env("CAIRN_DATA_DIR", "/nonexistent")
                .env("RUST_LOG", "warn")
                .envs(env)
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (ok, err) = run(Vec::new()).await;
    assert!(!ok);
    assert!(err.contains("CAIRN_ADMIN_TOKEN"), "{err}");
    let (ok, err) = run(vec![("CAIRN_ADMIN_TOKEN", ADMIN_TOKEN.into())]).await;
    assert!(ok, "{err}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    let (ok, err) = run(vec![("CAIRN_DATA_DIR", dir.path().display().to_string())]).await;
    assert!(ok, "{err}");
}
