//! Hosts as child processes (`cairn serve`), for the tests that kill them: start, wait until
//! healthy, wait until every invocation settled, and check each order against the effects the
//! fake provider API counted.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;

use crate::{count, order_input};

/// A loopback port free now, below the kernel's ephemeral range: a host killed and started
/// again on the same port must find it free, and a port of the ephemeral range can be taken in
/// between as the local port of any outgoing connection (hosts to the fake, tests to hosts) or by
/// any `bind(0)`. Ports are handed out in turn from a start that depends on the process id, so
/// parallel tests of one binary never get the same one.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const LOWEST: u64 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(LOWEST).max(1_000);
    let start = (u64::from(std::process::id()) * 7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOWEST + (start + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {ephemeral}");
}

/// `cairn serve` (the binary at `exe`) over `data_dir` and, with `database_url`, that database
/// instead of SQLite (with one-second leases, so a killed host is taken over quickly). Its log
/// goes to `data_dir/host-GENERATION.log`.
pub fn spawn_host(
    exe: &str,
    data_dir: &Path,
    database_url: Option<&str>,
    mock: &str,
    ingress: u16,
    admin: u16,
    generation: usize,
) -> Child {
    spawn_host_with(
        exe,
        data_dir,
        database_url,
        mock,
        (ingress, admin),
        generation,
        &[],
    )
}

/// [`spawn_host`] with more environment variables for the host.
pub fn spawn_host_with(
    exe: &str,
    data_dir: &Path,
    database_url: Option<&str>,
    mock: &str,
    (ingress, admin): (u16, u16),
    generation: usize,
    env: &[(&str, &str)],
) -> Child {
    let log = std::fs::File::create(data_dir.join(format!("host-{generation}.log"))).unwrap();
    let mut command = Command::new(exe);
    if let Some(url) = database_url {
        command
            .env("DATABASE_URL", url)
            .env("CAIRN_LEASE_TTL_MS", "1000");
    } else {
        command.env_remove("DATABASE_URL");
    }
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--components-dir", test_artifacts::COMPONENTS_DIR])
        .args(["--ingress-addr", &format!("127.0.0.1:{ingress}")])
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .env_remove("MOCK_MODE")
        .env("RUST_LOG", "warn")
        .env("STRIPE_API_BASE", mock)
        .env("SENDGRID_API_BASE", mock)
        .env("SHIPPO_API_BASE", mock)
        .env("STRIPE_API_KEY", "sk_test_crash")
        .env("SENDGRID_API_KEY", "SG.crash")
        .env("SHIPPO_API_KEY", "shippo_test_crash")
        .env("SHIPPO_CARRIER_ACCOUNT", "crash_carrier")
        .env("CAIRN_ADMIN_TOKEN", crate::ADMIN_TOKEN)
        // A call left in doubt by a kill is looked up once its wall-clock limit (and a second)
        // has passed since its marker: 5 s, not 30, keeps recoveries within the tests' bounds.
        .env("CAIRN_WALL_LIMIT_MS", "5000")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting cairn serve")
}

/// An HTTP client for hosts started here: it sends their admin token (the ingress ignores it),
/// and gives up on a request after `timeout`.
pub fn client(timeout: Option<Duration>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().default_headers(crate::admin_headers());
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder.build().expect("an HTTP client")
}

pub async fn wait_healthy(http: &reqwest::Client, admin: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(resp) = http.get(format!("{admin}/health")).send().await
            && resp.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cairn did not become healthy");
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves no host
/// running.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `request` and decodes the JSON answer.
pub async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Orders sent without waiting for them (`/send`) by a few workers until stopped. An order is
/// accepted when a host it went to answered 202, unknown when none did (hosts down).
pub struct OrderLoad {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    accepted: Arc<Mutex<Vec<String>>>,
    unknown: Arc<Mutex<Vec<String>>>,
}

impl OrderLoad {
    /// `workers` loops sending orders `{prefix}-00000`, `{prefix}-00001`...; order `n` goes to
    /// every ingress URL `route(n)` names, at once.
    pub fn start(
        http: &reqwest::Client,
        workers: usize,
        prefix: &'static str,
        route: impl Fn(u64) -> Vec<String> + Send + Sync + 'static,
    ) -> OrderLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let unknown = Arc::new(Mutex::new(Vec::new()));
        let route = Arc::new(route);
        let workers = (0..workers)
            .map(|_| {
                let (http, stop, next, route) =
                    (http.clone(), stop.clone(), next.clone(), route.clone());
                let (accepted, unknown) = (accepted.clone(), unknown.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let id = format!("{prefix}-{n:05}");
                        let sends = route(n).into_iter().map(|ingress| {
                            http.post(format!(
                                "{ingress}/OrderOrchestrator/{id}/ProcessOrder/send"
                            ))
                            .json(&order_input(&format!("{id}@example.com")))
                            .send()
                        });
                        let answered = futures::future::join_all(sends).await;
                        if answered
                            .iter()
                            .any(|r| matches!(r, Ok(resp) if resp.status().as_u16() == 202))
                        {
                            accepted.lock().unwrap().push(id);
                        } else {
                            unknown.lock().unwrap().push(id);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();
        OrderLoad {
            stop,
            workers,
            accepted,
            unknown,
        }
    }

    /// Orders accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// Stops the workers; returns the accepted and the unknown orders.
    pub async fn stop(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        let accepted = self.accepted.lock().unwrap().clone();
        let unknown = self.unknown.lock().unwrap().clone();
        (accepted, unknown)
    }
}

/// Waits until `admin`'s host has no running invocation; fails at `deadline`.
pub async fn wait_settled(http: &reqwest::Client, admin: &str, deadline: Instant) {
    loop {
        let running =
            json_of(http.get(format!("{admin}/invocations?status=running&limit=10000"))).await;
        let running = running["invocations"].as_array().unwrap().len();
        if running == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{running} invocations still running at the deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What [`check_orders`] found.
pub struct Checked {
    /// Orders stored.
    pub checked: usize,
    /// Stored orders by status.
    pub statuses: BTreeMap<String, usize>,
    /// The fake's counters.
    pub stats: Value,
}

/// Reads every order (`accepted`: answered 202; `unknown`: unanswered) through `ingress` and
/// checks it against the fake's counts (read from its control URL, `mock`): no accepted order lost, at most one charge, label and
/// email per order, in agreement with the stored order, one charge per idempotency key.
pub async fn check_orders(
    http: &reqwest::Client,
    ingress: &str,
    mock: &str,
    accepted: &[String],
    unknown: &[String],
) -> Checked {
    let stats = json_of(http.get(format!("{mock}/_mock/stats"))).await;
    let mut statuses = BTreeMap::<String, usize>::new();
    let mut checked = 0;
    for id in accepted.iter().chain(unknown) {
        let resp = http
            .post(format!("{ingress}/OrderOrchestrator/{id}/GetOrder"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let order: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 404 {
            assert!(!accepted.contains(id), "accepted order {id} was lost");
            continue;
        }
        assert_eq!(status, 200, "{id}: {order}");
        checked += 1;
        let state = order["status"].as_str().unwrap().to_string();
        *statuses.entry(state.clone()).or_default() += 1;
        let charges = count(&stats, &format!("/charges/by_order/{id}"));
        let labels = count(&stats, &format!("/labels/by_order/{id}"));
        let emails = count(&stats, &format!("/emails/by_order/{id}"));
        assert!(
            charges <= 1 && labels <= 1 && emails <= 1,
            "{id}: {charges} charges, {labels} labels, {emails} emails"
        );
        if accepted.contains(id) {
            assert!(
                ["confirmed", "payment_failed", "payment_in_doubt"].contains(&state.as_str()),
                "accepted order {id} is {state}"
            );
        }
        // The stored order agrees with what the fake recorded.
        if state == "confirmed" {
            assert_eq!(charges, 1, "{id}: confirmed with {charges} charges");
            assert_eq!(
                order["trackingNumber"].is_string(),
                labels == 1,
                "{id}: {order} vs {labels} labels"
            );
            let email_in_doubt = order["failures"].as_array().unwrap().iter().any(|f| {
                f["step"] == "email" && f["error"].as_str().unwrap_or_default().contains("in doubt")
            });
            if order["emailSent"] == true {
                assert_eq!(emails, 1, "{id}: emailSent with {emails} emails");
            } else {
                assert!(
                    emails == 0 || email_in_doubt,
                    "{id}: {order} but {emails} emails"
                );
            }
        }
    }
    let by_key = stats["charges"]["by_idempotency_key"].as_object().unwrap();
    assert!(
        by_key.values().all(|n| n.as_u64() == Some(1)),
        "one charge per idempotency key"
    );
    Checked {
        checked,
        statuses,
        stats,
    }
}

/// A `cairn serve` child process and its two base URLs.
pub struct Host {
    pub child: Child,
    pub ingress: String,
    pub admin: String,
}

impl Host {
    /// `cairn serve` (the binary at `exe`) over `data_dir` on the given (ingress, admin) ports,
    /// with the providers pointed at the fake at `mock` and `env` added.
    pub fn start(
        exe: &str,
        data_dir: &Path,
        mock: &str,
        (ingress, admin): (u16, u16),
        generation: usize,
        env: &[(&str, &str)],
    ) -> Host {
        let child = spawn_host_with(exe, data_dir, None, mock, (ingress, admin), generation, env);
        Host {
            child,
            ingress: format!("http://127.0.0.1:{ingress}"),
            admin: format!("http://127.0.0.1:{admin}"),
        }
    }

    /// Deploys the component at `path` through the admin API.
    pub async fn deploy(&self, http: &reqwest::Client, path: &str) {
        let deployed = http
            .post(format!("{}/deployments", self.admin))
            .header("content-type", "application/wasm")
            .body(std::fs::read(path).unwrap())
            .send()
            .await
            .unwrap();
        let status = deployed.status();
        assert!(status.is_success(), "{}", deployed.text().await.unwrap());
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A failing test leaves no host running.
impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a host killed and started again keeps: a fake in this process, a data dir and the same
/// ports (a port picked later could be one another test's killed host is about to bind again).
pub struct Rig {
    pub mock: cairn::mock::MockServer,
    pub data_dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub ports: (u16, u16),
    /// The host binary.
    exe: &'static str,
    /// More environment for every host started.
    pub env: Vec<(&'static str, String)>,
}

impl Rig {
    pub async fn new(exe: &'static str, config: cairn::mock::MockConfig) -> Rig {
        Rig {
            mock: cairn::mock::MockServer::start("127.0.0.1:0".parse().unwrap(), config)
                .await
                .unwrap(),
            data_dir: tempfile::tempdir().unwrap(),
            http: client(None),
            ports: (free_port(), free_port()),
            exe,
            env: Vec::new(),
        }
    }

    /// `cairn serve` over the rig, once it answers.
    pub async fn start(&self, generation: usize) -> Host {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let host = Host::start(
            self.exe,
            self.data_dir.path(),
            &self.mock.base_url(),
            self.ports,
            generation,
            &env,
        );
        wait_healthy(&self.http, &host.admin).await;
        host
    }

    /// Has the fake's webhooks signed with the secrets the rig's hosts are given, sent to their
    /// ingress port.
    pub fn with_webhooks(mut self, delay_ms: u64, pending_ms: u64) -> Rig {
        for var in [
            "STRIPE_WEBHOOK_SECRET",
            "SHIPPO_WEBHOOK_TOKEN",
            "SENDGRID_WEBHOOK_PUBLIC_KEY",
        ] {
            let secret = cairn::mock::webhook_secret(var).expect("the fake has every secret");
            self.env.push((var, secret));
        }
        self.mock.state().set_webhooks(cairn::mock::WebhookConfig {
            target: Some(format!("http://127.0.0.1:{}", self.ports.0)),
            delay_ms,
            pending_ms,
        });
        self
    }
}
