//! Test harness: the real host (in-process, on 127.0.0.1:0) with the real guest components and
//! the fake provider API on loopback. Effects are counted at the fake.

pub mod components;
pub mod echo;
pub mod host_group;
pub mod invocations;
pub mod logs;
pub mod pg_server;
pub mod process;
pub mod tcp_proxy;

use std::path::{Path, PathBuf};

use cairn::bundled::{bundled_components, in_doubt_defaults, provider_defaults};
use cairn::config::{ServerConfig, runtime_settings};
use cairn::http_api::ingress::IngressConfig;
use cairn::mock::{MockConfig, MockServer};
use cairn::server::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The admin token of every test host (in-process or `cairn serve`).
pub const ADMIN_TOKEN: &str = "cairn-test-admin-token";

/// `Authorization: Bearer` [`ADMIN_TOKEN`], as default headers of an admin client.
pub fn admin_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    headers
}

/// The bundled payments interface, as services import it and invocations pin it.
pub const PAYMENTS: &str = "cairn:commerce/payments@0.1.0";

pub struct Cairn {
    pub server: Server,
    pub mock: MockServer,
    /// For the ingress (and the fake): no token.
    pub http: reqwest::Client,
    /// For the admin API: sends [`ADMIN_TOKEN`].
    pub admin_http: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    options: Options,
}

async fn start_server(mock: &MockServer, data_dir: &Path, options: &Options) -> Server {
    let providers = provider_defaults(&|_| None, Some(&mock.base_url())).expect("settings");
    let mut runtime = runtime_settings(providers, Some(cache_dir()));
    runtime.in_doubt = in_doubt_defaults();
    runtime.retry.initial_delay = std::time::Duration::from_millis(10);
    runtime.retry.max_delay = std::time::Duration::from_millis(100);
    runtime.retry.max_attempts = options.max_attempts;
    runtime.call_retry = runtime
        .call_retry
        .with(&options.call_retry)
        .expect("call retry specs");
    if let Some(wall) = options.wall_limit {
        runtime.wall_limit = wall;
    }
    // Many test hosts share one process: keep each instance pool small.
    runtime.max_running = 64;
    for (service, name, value) in &options.service_config {
        (runtime.service_config.entry(service.clone()).or_default())
            .insert(name.clone(), value.clone());
    }
    for (service, spec) in &options.service_retry {
        let policy = runtime.retry.with(spec).expect("retry spec");
        runtime.service_retry.insert(service.clone(), policy);
    }
    // Secrets a deployment may name: the test's, standing in for the host's environment.
    let secrets = options.secret_env.clone();
    // Grantable: the test's own, or those it names (with their bindings), never the rest of the
    // process environment, which the lookup falls back to as a host's would.
    let grantable = if options.grantable.is_empty() {
        let names: Vec<&str> = secrets.iter().map(|(k, _)| k.as_str()).collect();
        cairn::runtime::Grantable::parse_all(names)
    } else {
        cairn::runtime::Grantable::parse_all(options.grantable.iter().map(String::as_str))
    }
    .expect("grantable secrets");
    runtime.secret_env = cairn::runtime::SecretEnv::new(
        move |name| {
            secrets
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(name).ok())
        },
        grantable,
    );
    runtime.fail_point = match (options.fail_after_entry, options.fail_before_recording) {
        (Some(entry), _) => Some(cairn::journal::FailPoint::at(entry, false)),
        (None, Some(entry)) => Some(cairn::journal::FailPoint::at(entry, true)),
        (None, None) => None,
    };
    cairn::server::start(ServerConfig {
        ingress_addr: "127.0.0.1:0".parse().unwrap(),
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: options
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("cairn.db").display())),
        storage: cairn::storage::StorageOptions {
            host_id: cairn::config::host_id(data_dir).expect("host id"),
            ..Default::default()
        },
        components: bundled_components(Path::new(test_artifacts::COMPONENTS_DIR)),
        ingress: with_webhooks(options.ingress.clone()),
        admin: cairn::http_api::admin::AdminConfig {
            access: cairn::http_api::access::AdminAccess {
                token: cairn::http_api::access::AccessToken::new(&cairn::outbound::Secret::new(
                    ADMIN_TOKEN,
                ))
                .expect("the test token"),
                hosts: Vec::new(),
            },
            // Where test-artifacts builds every component (the guests and the JS one).
            deploy_dir: Some(
                std::fs::canonicalize(
                    options.deploy_dir.clone().unwrap_or_else(|| {
                        Path::new(test_artifacts::COMPONENTS_DIR).join("../../..")
                    }),
                )
                .expect("the deploy dir"),
            ),
        },
        runtime,
        retention: options.retention,
    })
    .await
    .expect("starting cairn")
}

/// The bundled webhook endpoints with the fake's secrets, and the bundled internal handlers,
/// unless the test set its own.
fn with_webhooks(mut ingress: IngressConfig) -> IngressConfig {
    if ingress.webhooks.is_empty() {
        let specs = cairn::bundled::webhook_specs();
        ingress.webhooks =
            cairn::webhooks::endpoint::load_all(&specs, &cairn::mock::webhook_secret)
                .expect("the bundled webhook endpoints");
    }
    if ingress.internal_handlers.is_empty() {
        ingress.internal_handlers = cairn::bundled::internal_handlers();
    }
    ingress
}

/// A reply from Cairn: status, JSON body and invocation id header.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub invocation_id: Option<String>,
}

/// Where compiled components are cached across test runs (compiling is the slow part).
fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("cairn-test-compile-cache")
}

/// How to start a test host.
#[derive(Clone)]
pub struct Options {
    pub mock: MockConfig,
    /// Stop one attempt right after this journal entry is durable (a crash stand-in).
    pub fail_after_entry: Option<u32>,
    /// Stop one attempt after this entry's effect happened but before it is recorded.
    pub fail_before_recording: Option<u32>,
    pub max_attempts: u32,
    /// Retry policy specs per service (overriding `max_attempts`).
    pub service_retry: Vec<(String, String)>,
    pub ingress: IngressConfig,
    /// The host's environment as deployments' `secrets` see it (`NAME`, value).
    pub secret_env: Vec<(String, String)>,
    /// The directory path deployments may read (default: where test-artifacts builds).
    pub deploy_dir: Option<PathBuf>,
    /// How long finished invocations are kept, and how often the host purges.
    pub retention: cairn::config::Retention,
    /// `CAIRN_GRANTABLE_SECRETS` entries (default: every name of `secret_env`, unbound).
    pub grantable: Vec<String>,
    /// The database (default: SQLite in the data dir).
    pub database_url: Option<String>,
    /// Services' operator configuration, (service, name, value): `--service-config`.
    pub service_config: Vec<(String, String, String)>,
    /// Wall-clock time per call and attempt (default: the host's, 30 s): `--wall-limit-ms`.
    pub wall_limit: Option<std::time::Duration>,
    /// Retries of calls answered with a transient error, `NAME=SPEC` items: `--call-retry`.
    pub call_retry: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mock: MockConfig {
                decline_rate: 0.0,
                delay_ms: (0, 0),
            },
            fail_after_entry: None,
            fail_before_recording: None,
            max_attempts: 5,
            service_retry: Vec::new(),
            ingress: IngressConfig::default(),
            secret_env: Vec::new(),
            grantable: Vec::new(),
            retention: cairn::config::Retention::default(),
            deploy_dir: None,
            database_url: None,
            service_config: Vec::new(),
            wall_limit: None,
            call_retry: Vec::new(),
        }
    }
}

impl Cairn {
    /// A host with a fake API that never declines and never waits.
    pub async fn start() -> Cairn {
        Self::start_opts(Options::default()).await
    }

    pub async fn start_with(mock: MockConfig) -> Cairn {
        Self::start_opts(Options {
            mock,
            ..Options::default()
        })
        .await
    }

    pub async fn start_opts(options: Options) -> Cairn {
        let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), options.mock.clone())
            .await
            .expect("starting the fake provider API");
        let data_dir = tempfile::tempdir().expect("temp dir");
        let server = start_server(&mock, data_dir.path(), &options).await;
        Cairn {
            server,
            mock,
            http: reqwest::Client::new(),
            admin_http: reqwest::Client::builder()
                .default_headers(admin_headers())
                .build()
                .expect("an HTTP client"),
            data_dir,
            options,
        }
    }

    /// Stops the host and starts a new one over the same data dir and fake API.
    pub async fn restart(self) -> Cairn {
        self.restart_after(std::time::Duration::ZERO).await
    }

    /// [`Cairn::restart`], with the host down for `pause`.
    pub async fn restart_after(self, pause: std::time::Duration) -> Cairn {
        let Cairn {
            server,
            mock,
            http,
            admin_http,
            data_dir,
            options,
        } = self;
        server.shutdown().await;
        tokio::time::sleep(pause).await;
        let server = start_server(&mock, data_dir.path(), &options).await;
        Cairn {
            server,
            mock,
            http,
            admin_http,
            data_dir,
            options,
        }
    }

    /// Has the fake send its webhooks to this host (again after a restart: the port changes),
    /// `delay_ms` after each effect; a pending charge succeeds after `pending_ms`.
    pub fn webhooks_to_host(&self, delay_ms: u64, pending_ms: u64) {
        self.mock.state().set_webhooks(cairn::mock::WebhookConfig {
            target: Some(format!("http://{}", self.server.ingress_addr)),
            delay_ms,
            pending_ms,
        });
    }

    pub fn ingress(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.ingress_addr)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.admin_addr)
    }

    /// POSTs raw bytes with a content type to the ingress.
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        let mut req = self.http.post(self.ingress(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        reply(req.send().await.expect("ingress request")).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_raw(
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn process_order(&self, order_id: &str, input: &Value) -> Reply {
        self.post(
            &format!("/OrderOrchestrator/{order_id}/ProcessOrder"),
            input,
        )
        .await
    }

    pub async fn get_order(&self, order_id: &str) -> Reply {
        self.post_raw(
            &format!("/OrderOrchestrator/{order_id}/GetOrder"),
            None,
            Vec::new(),
        )
        .await
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        reply(
            self.admin_http
                .get(self.admin(path))
                .send()
                .await
                .expect("admin request"),
        )
        .await
    }

    /// `GET /invocations/{id}` on the admin API: the invocation with its journal.
    pub async fn invocation(&self, reply: &Reply) -> Value {
        let id = reply.invocation_id.as_deref().expect("an invocation id");
        self.admin_get(&format!("/invocations/{id}")).await.body
    }

    /// `POST` of a JSON body to the admin API.
    pub async fn admin_post(&self, path: &str, body: &Value) -> Reply {
        reply(
            self.admin_http
                .post(self.admin(path))
                .json(body)
                .send()
                .await
                .expect("admin request"),
        )
        .await
    }

    pub async fn admin_delete(&self, path: &str) -> Reply {
        reply(
            self.admin_http
                .delete(self.admin(path))
                .send()
                .await
                .expect("admin request"),
        )
        .await
    }

    /// Deploys a component file through the admin API (`{"path": ..., "limits": ...}`).
    pub async fn deploy_file(&self, path: &str, limits: Option<Value>) -> Reply {
        let mut body = json!({ "path": path });
        if let Some(limits) = limits {
            body["limits"] = limits;
        }
        self.admin_post("/deployments", &body).await
    }

    /// Deploys component bytes (`Content-Type: application/wasm`); `query` carries limits.
    pub async fn deploy_bytes(&self, bytes: Vec<u8>, query: &str) -> Reply {
        self.deploy_bytes_with(bytes, query, None).await
    }

    /// Deploys component bytes with provider settings (the `x-cairn-provider-settings` header).
    pub async fn deploy_bytes_with(
        &self,
        bytes: Vec<u8>,
        query: &str,
        settings: Option<Value>,
    ) -> Reply {
        let mut request = self
            .admin_http
            .post(self.admin(&format!("/deployments{query}")))
            .header("content-type", "application/wasm");
        if let Some(settings) = settings {
            request = request.header(
                cairn::http_api::deployments::SETTINGS_HEADER,
                settings.to_string(),
            );
        }
        reply(request.body(bytes).send().await.expect("admin request")).await
    }

    /// The id of the deployment that is the active implementation of `interface` (e.g.
    /// [`PAYMENTS`]).
    pub async fn active_deployment(&self, interface: &str) -> String {
        let list = self.admin_get("/deployments").await.body;
        let active: Vec<&Value> = list["deployments"]
            .as_array()
            .expect("deployments")
            .iter()
            .filter(|d| {
                d["activeFor"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|i| i == interface))
            })
            .collect();
        assert_eq!(active.len(), 1, "{list}");
        active[0]["id"].as_str().expect("id").to_string()
    }

    /// Starts `ProcessOrder` on `order_id` without waiting (`/send`); returns the invocation id.
    pub async fn send_order(&self, order_id: &str) -> String {
        let reply = self
            .post(
                &format!("/OrderOrchestrator/{order_id}/ProcessOrder/send"),
                &order_input("alice@example.com"),
            )
            .await;
        assert_eq!(reply.status, 202, "{:?}", reply.body);
        reply.invocation_id.expect("invocation id")
    }

    /// The ingress answer of invocation `id` (`GET /invocations/{id}/output`, waits for it).
    pub async fn output(&self, id: &str) -> Reply {
        let resp = self
            .http
            .get(self.ingress(&format!("/invocations/{id}/output")))
            .send()
            .await
            .expect("output request");
        let mut reply = reply(resp).await;
        reply.invocation_id = Some(id.to_string());
        reply
    }

    /// The admin view of invocation `id` once it is no longer running.
    pub async fn finished_invocation(&self, id: &str) -> Value {
        for _ in 0..3000 {
            let inv = self.admin_get(&format!("/invocations/{id}")).await.body;
            if inv["status"] != "running" {
                return inv;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("invocation {id} still running after a minute");
    }

    /// `GET /_mock/stats` of the fake API.
    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/_mock/stats", self.mock.control_url()))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json")
    }

    /// `GET /_mock/requests?provider=...`: what reached the fake, as it arrived.
    pub async fn requests(&self, provider: &str) -> Vec<Value> {
        self.http
            .get(format!(
                "{}/_mock/requests?provider={provider}",
                self.mock.control_url()
            ))
            .send()
            .await
            .expect("requests")
            .json()
            .await
            .expect("requests json")
    }

    /// `POST /_mock/faults`.
    pub async fn fault(&self, faults: Value) {
        let status = self
            .http
            .post(format!("{}/_mock/faults", self.mock.control_url()))
            .json(&faults)
            .send()
            .await
            .expect("faults")
            .status();
        assert!(status.is_success(), "setting faults: {status}");
    }

    /// `POST /_mock/config`, e.g. `{"delay_ms": [0, 0]}`.
    pub async fn mock_config(&self, config: Value) {
        let status = self
            .http
            .post(format!("{}/_mock/config", self.mock.control_url()))
            .json(&config)
            .send()
            .await
            .expect("mock config")
            .status();
        assert!(status.is_success(), "setting the fake's config: {status}");
    }

    /// Every admin answer about deployments, services and invocations (each with its journal),
    /// as text, to grep for what must not be there.
    pub async fn admin_text(&self) -> String {
        let mut text = String::new();
        for path in ["/deployments", "/services", "/invocations?limit=1000"] {
            text.push_str(&self.admin_get(path).await.body.to_string());
        }
        let listed = self.admin_get("/invocations?limit=1000").await.body;
        for inv in listed["invocations"].as_array().unwrap() {
            let id = inv["id"].as_str().unwrap();
            let one = self.admin_get(&format!("/invocations/{id}")).await.body;
            text.push_str(&one.to_string());
        }
        text
    }

    /// The bytes of every file in the data dir (the database and its write-ahead log).
    pub fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(self.data_dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                bytes.extend(std::fs::read(&path).unwrap());
            }
        }
        bytes
    }

    pub async fn count_rows(&self, table: cairn::storage::Table) -> i64 {
        self.server
            .runtime
            .storage
            .count_rows(table)
            .await
            .expect("count rows")
    }
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let invocation_id = resp
        .headers()
        .get("x-cairn-invocation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = resp.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        body,
        invocation_id,
    }
}

/// Runs the `cairn` command line `bin` (a test's `CARGO_BIN_EXE_cairn`) with `args` against
/// the admin API at `admin`, with the test token; (success, stdout, stderr).
pub async fn cli(bin: &str, admin: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(bin)
        .args(args)
        .env("CAIRN_ADMIN_URL", admin)
        .env("CAIRN_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("running cairn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The README's order, with `email` as the customer.
pub fn order_input(email: &str) -> Value {
    json!({
        "items": [{"productId": "prod-123", "quantity": 2, "price": 2500}],
        "customer": {"email": email, "name": "Alice Smith"},
        "shipping": {"street": "123 Main St", "city": "SF", "state": "CA", "zip": "94105", "country": "US"}
    })
}

/// A counter from the fake's stats, 0 when absent.
/// `deployment` (as the admin API shows it) is a provider that exports `interface`.
pub fn assert_exports(deployment: &Value, interface: &str) {
    assert_eq!(deployment["kind"], "provider", "{deployment}");
    let exports = deployment["exports"].as_array().expect("exports");
    assert!(exports.iter().any(|e| e == interface), "{deployment}");
}

pub fn count(stats: &Value, pointer: &str) -> u64 {
    stats.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}
