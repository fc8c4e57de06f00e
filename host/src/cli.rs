//! The `cairn` command line: `cairn serve`, `cairn mock-providers`, and the admin commands
//! (`cairn deploy`, `cairn deployments`, `cairn invocations`...: see [`crate::cli_admin`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::cli_admin::Control;
use crate::config::{self, ServerConfig};
use crate::http_api::access::{AccessToken, AdminAccess};
use crate::http_api::admin::AdminConfig;
use crate::http_api::ingress::IngressConfig;
use crate::mock::{MockConfig, MockServer};
use crate::runtime::callee::InDoubtPolicy;
use crate::storage::StorageOptions;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "A durable-execution host for WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: ingress, admin API, and the bundled components.
    Serve(Box<ServeArgs>),
    /// Benchmark a host in mock mode with zero provider delay (see docs/benchmarks.md).
    Bench(Box<crate::bench::BenchArgs>),
    /// Deploy a component (a service or a provider) through the admin API.
    Deploy(crate::cli_admin::DeployArgs),
    /// List the deployments of a running host.
    Deployments(crate::cli_admin::AdminArgs),
    /// Delete a deployment that is not active and that no running invocation uses.
    Undeploy(crate::cli_admin::IdArgs),
    /// List invocations (newest first), optionally by status, service or key.
    Invocations(crate::cli_admin::InvocationsArgs),
    /// Show one invocation with its journal.
    Invocation(crate::cli_admin::IdArgs),
    /// Cancel an invocation: its handler is told at its next suspension point or check,
    /// compensates (the order orchestrator refunds a paid order) and ends `cancelled`.
    Cancel(crate::cli_admin::IdArgs),
    /// Stop an invocation at once: failed (`killed`), no compensation, its key released, its
    /// journal kept.
    Kill(crate::cli_admin::IdArgs),
    /// Stop an invocation and keep it (`paused`) until it is resumed.
    Pause(crate::cli_admin::IdArgs),
    /// Run a paused invocation again, optionally on another deployment of its service.
    Resume(crate::cli_admin::ResumeArgs),
    /// Start the next attempt of an invocation waiting out a retry's backoff now.
    Retry(crate::cli_admin::IdArgs),
    /// Delete a finished invocation: its row, journal, output and idempotency keys.
    Purge(crate::cli_admin::IdArgs),
    /// Show the state of one key of a keyed object.
    State(crate::cli_admin::StateArgs),
    /// Run only the fake Stripe/SendGrid/Shippo API.
    MockProviders {
        #[arg(long, env = "MOCK_LISTEN", default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Where the `/_mock/*` control endpoints listen (not on the APIs' port, which the
        /// providers may reach).
        #[arg(long, env = "MOCK_CONTROL_LISTEN", default_value = "127.0.0.1:8091")]
        control_listen: SocketAddr,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, env = "CAIRN_INGRESS_ADDR", default_value = "127.0.0.1:8080")]
    ingress_addr: SocketAddr,
    #[arg(long, env = "CAIRN_ADMIN_ADDR", default_value = "127.0.0.1:9070")]
    admin_addr: SocketAddr,
    /// Where the SQLite database and the compiled-component cache live.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// The database: sqlite://PATH or postgres://USER@HOST:PORT/DATABASE (default: SQLite under
    /// --data-dir).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// With several hosts on one PostgreSQL database: how long a host's leases outlive its last
    /// heartbeat, so how soon another host resumes the invocations of one that died.
    #[arg(long, env = "CAIRN_LEASE_TTL_MS", default_value_t = 5000)]
    lease_ttl_ms: u64,
    /// Directory with the bundled components (order_orchestrator.wasm, stripe_payments.wasm...).
    #[arg(long, env = "CAIRN_COMPONENTS_DIR")]
    components_dir: Option<PathBuf>,
    /// Do not deploy the bundled components at start.
    #[arg(long)]
    no_bundled: bool,
    /// Start a fake Stripe/SendGrid/Shippo API on loopback and point the providers at it.
    #[arg(long, env = "MOCK_MODE")]
    mock_mode: bool,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "CAIRN_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// How long an ingress `Idempotency-Key` is remembered, in hours.
    #[arg(long, env = "CAIRN_IDEMPOTENCY_RETENTION_HOURS", default_value_t = 24)]
    idempotency_retention_hours: u64,
    /// Linear-memory cap of each component instance, in MiB.
    #[arg(long, env = "CAIRN_MEMORY_LIMIT_MB", default_value_t = 64)]
    memory_limit_mb: usize,
    /// Guest execution time per call, in milliseconds (a deployment's limits may set its own).
    #[arg(long, env = "CAIRN_CPU_LIMIT_MS", default_value_t = 10_000)]
    cpu_limit_ms: u64,
    /// Linear memory all running component instances may hold together, in MiB (a guest
    /// growing past it traps, retryably).
    #[arg(long, env = "CAIRN_MEMORY_BUDGET_MB", default_value_t = 4096)]
    memory_budget_mb: usize,
    /// Wall-clock time per call (a provider call, an attempt of an invocation), waits included,
    /// in milliseconds (a deployment's limits may set their own).
    #[arg(long, env = "CAIRN_WALL_LIMIT_MS", default_value_t = 30_000)]
    wall_limit_ms: u64,
    /// Invocations running at once (the others wait, holding no instance); by default 64 per
    /// core. Raise it for providers that answer slowly: orders/s ≤ this / provider latency.
    #[arg(long, env = "CAIRN_MAX_RUNNING", default_value_t = crate::runtime::limits::default_max_running())]
    max_running: usize,
    /// Attempts per invocation (first included) for retryable failures.
    #[arg(long, env = "CAIRN_MAX_ATTEMPTS", default_value_t = 5)]
    max_attempts: u32,
    /// Retry policy for every service, e.g. `initial=100ms,factor=2,max-delay=10s,max-attempts=5`.
    #[arg(long, env = "CAIRN_RETRY", default_value = "")]
    retry: String,
    /// Retry policy of one service, `NAME=SPEC` (repeat the flag; the variable separates with `;`).
    #[arg(
        long = "service-retry",
        env = "CAIRN_SERVICE_RETRY",
        value_delimiter = ';'
    )]
    service_retry: Vec<String>,
    /// Retries of a call into a component that answered a transient error (`unavailable`,
    /// `rate-limited`), `INTERFACE.FUNCTION=SPEC` or `*=SPEC` for every call (a retry spec as
    /// `--retry`'s; default `*=initial=200ms,factor=2,max-delay=2s,max-attempts=3`; repeat the
    /// flag, the variable separates with `;`).
    #[arg(long = "call-retry", env = "CAIRN_CALL_RETRY", value_delimiter = ';')]
    call_retry: Vec<String>,
    /// What to do with a call into a component that a crash left in doubt and that can be neither
    /// deduplicated nor looked up, `INTERFACE.FUNCTION=at-most-once|at-least-once`, e.g.
    /// `cairn:commerce/email.send-email=at-least-once` (default: at-least-once, but at-most-once
    /// for the bundled `cairn:commerce/email.send-email`).
    #[arg(long = "in-doubt", env = "CAIRN_IN_DOUBT", value_delimiter = ',')]
    in_doubt: Vec<String>,
    /// A host variable deployments may be granted as a secret (`"secrets"` of
    /// `POST /deployments`), bound to where it may go: `NAME=ORIGIN`, `NAME[HEADER]=ORIGIN`, or
    /// `NAME` for the deployment's own allow-list (repeat the flag, or a name for more origins;
    /// the variable separates with `,`). No other variable can be granted.
    #[arg(
        long = "grantable-secret",
        env = "CAIRN_GRANTABLE_SECRETS",
        value_delimiter = ','
    )]
    grantable_secrets: Vec<String>,
    /// A JSON file with more webhook endpoints (`POST /webhooks/{name}`; see the README), beside
    /// the bundled `stripe`, `shippo` and `sendgrid`.
    #[arg(long, env = "CAIRN_WEBHOOKS_FILE")]
    webhooks_file: Option<PathBuf>,
    /// How long a webhook event id is remembered (a redelivery within it is not processed
    /// again), in days.
    #[arg(long, env = "CAIRN_WEBHOOK_RETENTION_DAYS", default_value_t = 30)]
    webhook_retention_days: u64,
    /// Webhook events accepted and still being processed, at most (past it: 503 with
    /// Retry-After, and the provider redelivers).
    #[arg(long, env = "CAIRN_WEBHOOK_MAX_PENDING", default_value_t = 1024)]
    webhook_max_pending: usize,
    /// Handlers the ingress refuses (only components and webhooks invoke them),
    /// `Service/Handler` or `Service/*` (default: the bundled orchestrator's internal ones;
    /// every webhook target is internal too).
    #[arg(
        long = "internal-handler",
        env = "CAIRN_INTERNAL_HANDLERS",
        value_delimiter = ','
    )]
    internal_handlers: Option<Vec<String>>,
    /// Configuration of a service, `SERVICE.NAME=VALUE` (repeat the flag; the variable separates
    /// with `;`), read by the service through `context.config`, e.g.
    /// `OrderOrchestrator.payment-timeout=30m` (what `PAYMENT_TIMEOUT` sets).
    #[arg(
        long = "service-config",
        env = "CAIRN_SERVICE_CONFIG",
        value_delimiter = ';'
    )]
    service_config: Vec<String>,
    /// A name (without port) admin requests may address this host by, beside loopback names and
    /// the admin listener's address (repeat the flag; the variable separates with `,`). Requests
    /// naming any other `Host`, or sent by a page of another origin, are refused.
    #[arg(long = "admin-host", env = "CAIRN_ADMIN_HOSTS", value_delimiter = ',')]
    admin_hosts: Vec<String>,
    /// The directory `POST /deployments` with `{"path": …}` or `{"uri": "file://…"}` may read
    /// components from (default: none; the bytes must be sent).
    #[arg(long, env = "CAIRN_DEPLOY_DIR")]
    deploy_dir: Option<PathBuf>,
    /// Invocations queued (or running, or suspended) on one object key, at most: past it the
    /// ingress answers 429 with Retry-After and writes nothing.
    #[arg(long, env = "CAIRN_MAX_QUEUED_PER_KEY", default_value_t = 1000)]
    max_queued_per_key: usize,
    /// `/send` invocations accepted and not finished, at most (429 past it).
    #[arg(long, env = "CAIRN_MAX_PENDING_SENDS", default_value_t = 10_000)]
    max_pending_sends: usize,
    /// How long a finished invocation (with its journal) is kept, in hours; then it is purged,
    /// with expired idempotency keys (an invocation is kept while a key names it).
    #[arg(long, env = "CAIRN_RETENTION_HOURS", default_value_t = 7 * 24)]
    retention_hours: u64,
    /// Serve the ingress on a non-loopback address without `CAIRN_INGRESS_TOKEN`: anyone who
    /// reaches it may invoke every handler that is not internal.
    #[arg(long, env = "CAIRN_ALLOW_OPEN_INGRESS")]
    allow_open_ingress: bool,
    /// Export spans over OTLP/HTTP to this collector (e.g. `http://127.0.0.1:4318`; the path
    /// `/v1/traces` is added): one per ingress request, invocation, attempt, journal entry and
    /// outbound request, with W3C `traceparent` taken from requests and sent on.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

/// Runs the command line (the `cairn` binary's `main`). Logging (and, for `serve` with an OTLP
/// endpoint, span export) is set up before the async runtime starts.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let otlp = match &cli.command {
        Command::Serve(args) => args.otlp_endpoint.clone(),
        _ => None,
    };
    let _telemetry = crate::telemetry::init(otlp.as_deref())?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Bench(args) => crate::bench::run(*args).await,
        Command::Deploy(args) => crate::cli_admin::deploy(args).await,
        Command::Deployments(args) => crate::cli_admin::deployments(args).await,
        Command::Undeploy(args) => crate::cli_admin::undeploy(args).await,
        Command::Invocations(args) => crate::cli_admin::invocations(args).await,
        Command::Invocation(args) => crate::cli_admin::invocation(args).await,
        Command::Cancel(args) => crate::cli_admin::control(args, Control::Cancel).await,
        Command::Kill(args) => crate::cli_admin::control(args, Control::Kill).await,
        Command::Pause(args) => crate::cli_admin::control(args, Control::Pause).await,
        Command::Resume(args) => crate::cli_admin::resume(args).await,
        Command::Retry(args) => crate::cli_admin::control(args, Control::Retry).await,
        Command::Purge(args) => crate::cli_admin::control(args, Control::Purge).await,
        Command::State(args) => crate::cli_admin::state(args).await,
        Command::MockProviders {
            listen,
            control_listen,
        } => {
            let config = MockConfig::from_env().map_err(anyhow::Error::msg)?;
            let mock = MockServer::start_with_control(listen, control_listen, config)
                .await
                .with_context(|| format!("binding {listen} and {control_listen}"))?;
            mock.state()
                .set_webhooks(crate::mock::WebhookConfig::from_env().map_err(anyhow::Error::msg)?);
            tracing::info!(base_url = %mock.base_url(), control_url = %mock.control_url(),
                "fake provider API is listening");
            tokio::signal::ctrl_c().await?;
            mock.shutdown().await;
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let mock = if args.mock_mode {
        let listen: SocketAddr = std::env::var("MOCK_LISTEN")
            .unwrap_or_else(|_| "127.0.0.1:0".into())
            .parse()
            .context("MOCK_LISTEN: expected IP:PORT")?;
        let control: SocketAddr = std::env::var("MOCK_CONTROL_LISTEN")
            .unwrap_or_else(|_| "127.0.0.1:0".into())
            .parse()
            .context("MOCK_CONTROL_LISTEN: expected IP:PORT")?;
        let config = MockConfig::from_env().map_err(anyhow::Error::msg)?;
        let mock = MockServer::start_with_control(listen, control, config)
            .await
            .with_context(|| format!("binding the fake provider API on {listen}"))?;
        tracing::info!(base_url = %mock.base_url(), control_url = %mock.control_url(),
            "mock mode: fake provider API started");
        Some(mock)
    } else {
        None
    };
    let env = |var: &str| std::env::var(var).ok();
    let providers =
        crate::bundled::provider_defaults(&env, mock.as_ref().map(|m| m.base_url()).as_deref())?;
    let webhooks = webhook_endpoints(&args, mock.is_some())?;
    let mut runtime = config::runtime_settings(providers, Some(args.data_dir.join("cache")));
    runtime.memory_limit = args.memory_limit_mb << 20;
    runtime.memory_budget = args.memory_budget_mb.max(1) << 20;
    runtime.max_running = args.max_running.max(1);
    runtime.cpu_limit = std::time::Duration::from_millis(args.cpu_limit_ms.max(1));
    runtime.wall_limit = std::time::Duration::from_millis(args.wall_limit_ms.max(10));
    runtime.retry.max_attempts = args.max_attempts.max(1);
    runtime.retry = runtime
        .retry
        .with(&args.retry)
        .map_err(|e| anyhow::anyhow!("CAIRN_RETRY / --retry: {e}"))?;
    for item in args.service_retry.iter().filter(|i| !i.trim().is_empty()) {
        let (service, spec) = item
            .split_once('=')
            .with_context(|| format!("--service-retry {item:?}: expected NAME=SPEC"))?;
        let policy = runtime
            .retry
            .with(spec)
            .map_err(|e| anyhow::anyhow!("--service-retry {service}: {e}"))?;
        runtime
            .service_retry
            .insert(service.trim().to_string(), policy);
    }
    runtime.service_config = crate::bundled::service_config(&env);
    for item in args.service_config.iter().filter(|i| !i.trim().is_empty()) {
        let ((service, name), value) = item
            .split_once('=')
            .and_then(|(target, value)| Some((target.trim().split_once('.')?, value.trim())))
            .filter(|((service, name), _)| !service.is_empty() && !name.is_empty())
            .with_context(|| format!("--service-config {item:?}: expected SERVICE.NAME=VALUE"))?;
        runtime
            .service_config
            .entry(service.to_string())
            .or_default()
            .insert(name.to_string(), value.to_string());
    }
    let grantable =
        crate::runtime::Grantable::parse_all(args.grantable_secrets.iter().map(String::as_str))
            .map_err(|e| anyhow::anyhow!("CAIRN_GRANTABLE_SECRETS / --grantable-secret {e}"))?;
    runtime.secret_env = crate::runtime::SecretEnv::process(grantable);
    runtime.call_retry = runtime
        .call_retry
        .with(&args.call_retry)
        .map_err(|e| anyhow::anyhow!("CAIRN_CALL_RETRY / --call-retry: {e}"))?;
    runtime.in_doubt = crate::bundled::in_doubt_defaults();
    for item in args.in_doubt.iter().filter(|i| !i.trim().is_empty()) {
        let policy = item
            .split_once('=')
            .and_then(|(op, p)| Some((op.trim().to_string(), InDoubtPolicy::parse(p.trim())?)))
            .with_context(|| {
                format!(
                    "--in-doubt {item:?}: expected INTERFACE.FUNCTION=at-most-once|at-least-once"
                )
            })?;
        runtime.in_doubt.insert(policy.0, policy.1);
    }

    let components = if args.no_bundled {
        Vec::new()
    } else {
        let dir = components_dir(args.components_dir.as_deref())?;
        crate::bundled::bundled_components(&dir)
    };
    let (admin, ingress_token) = access(&args)?;
    let database_url = args
        .database_url
        .unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("cairn.db").display()));
    let storage = StorageOptions {
        host_id: config::host_id(&args.data_dir)
            .with_context(|| format!("reading the host id in {}", args.data_dir.display()))?,
        lease_ttl: std::time::Duration::from_millis(args.lease_ttl_ms.max(100)),
    };
    let server = crate::server::start(ServerConfig {
        ingress_addr: args.ingress_addr,
        admin_addr: args.admin_addr,
        database_url,
        storage,
        components,
        ingress: IngressConfig {
            max_body_bytes: args.max_body_bytes,
            idempotency_retention: std::time::Duration::from_secs(
                args.idempotency_retention_hours * 3600,
            ),
            webhooks,
            webhook_retention: std::time::Duration::from_secs(
                args.webhook_retention_days.max(1) * 24 * 3600,
            ),
            webhook_max_pending: args.webhook_max_pending.max(1),
            internal_handlers: args
                .internal_handlers
                .clone()
                .unwrap_or_else(crate::bundled::internal_handlers),
            token: ingress_token,
            max_queued_per_key: args.max_queued_per_key.max(1),
            max_pending_sends: args.max_pending_sends.max(1),
            ..IngressConfig::default()
        },
        admin,
        runtime,
        retention: config::Retention {
            finished: std::time::Duration::from_secs(args.retention_hours.max(1) * 3600),
            ..config::Retention::default()
        },
    })
    .await?;
    if let Some(mock) = &mock {
        // The fake's webhooks come back to this host's ingress (loopback for a wildcard bind).
        let mut ingress = server.ingress_addr;
        if ingress.ip().is_unspecified() {
            ingress.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let mut hooks = crate::mock::WebhookConfig::from_env().map_err(anyhow::Error::msg)?;
        hooks.target.get_or_insert(format!("http://{ingress}"));
        mock.state().set_webhooks(hooks);
    }
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    server.shutdown().await;
    if let Some(mock) = mock {
        mock.shutdown().await;
    }
    Ok(())
}

/// Who may use the two ports: the admin token (`CAIRN_ADMIN_TOKEN`, else the data dir's token
/// file, made and printed at the first start) and the optional ingress token
/// (`CAIRN_INGRESS_TOKEN`). An ingress on a non-loopback address without a token is refused
/// unless `--allow-open-ingress` says so.
fn access(args: &ServeArgs) -> anyhow::Result<(AdminConfig, Option<AccessToken>)> {
    let (token, source) =
        config::admin_token(&args.data_dir, std::env::var("CAIRN_ADMIN_TOKEN").ok())
            .with_context(|| format!("the admin token in {}", args.data_dir.display()))?;
    let admin_token =
        AccessToken::new(&token).map_err(|e| anyhow::anyhow!("CAIRN_ADMIN_TOKEN: {e}"))?;
    match &source {
        config::TokenSource::File {
            path,
            created: true,
        } => eprintln!(
            "cairn: the admin API's token (kept in {}, shown only now): {}",
            path.display(),
            token.expose()
        ),
        config::TokenSource::File { path, .. } => {
            tracing::info!(file = %path.display(), "admin token from the data dir")
        }
        config::TokenSource::Env => tracing::info!("admin token from CAIRN_ADMIN_TOKEN"),
    }
    let ingress_token = std::env::var("CAIRN_INGRESS_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| AccessToken::new(&crate::outbound::Secret::new(t)))
        .transpose()
        .map_err(|e| anyhow::anyhow!("CAIRN_INGRESS_TOKEN: {e}"))?;
    if ingress_token.is_none() && !args.ingress_addr.ip().is_loopback() && !args.allow_open_ingress
    {
        anyhow::bail!(
            "the ingress would listen on {} without a token: set CAIRN_INGRESS_TOKEN, bind it to \
             loopback, or pass --allow-open-ingress (CAIRN_ALLOW_OPEN_INGRESS=true) to serve it \
             open on purpose",
            args.ingress_addr
        );
    }
    let deploy_dir = args
        .deploy_dir
        .as_ref()
        .map(|dir| {
            std::fs::canonicalize(dir).with_context(|| format!("--deploy-dir {}", dir.display()))
        })
        .transpose()?;
    let admin = AdminConfig {
        access: AdminAccess {
            token: admin_token,
            hosts: args
                .admin_hosts
                .iter()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect(),
        },
        deploy_dir,
    };
    Ok((admin, ingress_token))
}

/// The bundled webhook endpoints and the operator's file (replacing a bundled one of the same
/// name), each with its secret from the
/// environment (in mock mode, the fake's when the variable is unset); one without its secret is
/// off, and said so.
fn webhook_endpoints(
    args: &ServeArgs,
    mock: bool,
) -> anyhow::Result<Vec<crate::webhooks::endpoint::Endpoint>> {
    let mut specs = crate::bundled::webhook_specs();
    if let Some(path) = &args.webhooks_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the webhooks file {}", path.display()))?;
        let own = crate::webhooks::endpoint::read_specs(&text).map_err(anyhow::Error::msg)?;
        // An endpoint of the file named like a bundled one replaces it (e.g. `shippo` verified
        // by an HMAC header once Shippo enabled it for the account).
        specs.retain(|bundled| !own.iter().any(|o| o.name == bundled.name));
        specs.extend(own);
    }
    let env = |var: &str| {
        std::env::var(var)
            .ok()
            .or_else(|| mock.then(|| crate::mock::webhook_secret(var)).flatten())
    };
    crate::webhooks::endpoint::load_all(&specs, &env).map_err(anyhow::Error::msg)
}

/// The bundled components: the flag, else next to the binary, else the guests' build output.
pub(crate) fn components_dir(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join("components"));
    }
    candidates.push(PathBuf::from("guests/target/wasm32-wasip2/release"));
    candidates
        .into_iter()
        .find(|dir| dir.join(crate::bundled::BUNDLED[0]).exists())
        .context(
            "bundled components not found: build them (scripts/run does) or pass \
             --components-dir / CAIRN_COMPONENTS_DIR, or --no-bundled",
        )
}
