//! `cairn bench`: starts the fake provider API (`cairn mock-providers`, zero delay, no declines)
//! and `cairn serve` pointed at it, as two child processes on a fresh data dir, and measures the
//! host from outside: sequential latency, throughput at 32 and 128 clients, 200 calls on one key,
//! run-step overhead, call and promise round trips, the email call with a Rust and a JavaScript
//! provider, CPU per order (host and fake, each read from `/proc`), verified webhook events per
//! second into the webhook processor, the host's peak RSS,
//! and recovery after kill -9 with many unfinished invocations; with `--traces` the host exports
//! its spans over OTLP to a sink in this process. Prints a table and writes JSON.
//! See docs/benchmarks.md.

mod calls;
mod growth;
mod otlp;
mod process;
mod providers;
mod report;
mod throughput;
mod webhooks;
mod wrk;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use process::{Fake, Host, tempfile_dir};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Sequential orders for the latency figures.
    #[arg(long, default_value_t = 500)]
    sequential: usize,
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Client counts of the throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "32,128,512")]
    clients: Vec<usize>,
    /// Who sends the throughput runs' orders: the bench's own clients, or `wrk` (Debian's, a
    /// process of its own, with `host/src/bench/order.lua`; connections over two threads).
    #[arg(long, value_enum, default_value_t = LoadKind::Builtin)]
    load: LoadKind,
    /// Point the host at a fake provider API running elsewhere (its base URL, e.g. an
    /// independent fake in another language) instead of starting `cairn mock-providers`; its CPU
    /// is read from `/proc` when it listens on this machine. The recovery part still starts
    /// fakes of its own (it needs one that holds every call).
    #[arg(long)]
    fake_url: Option<String>,
    /// With `--fake-url`: the base URL of its `/_mock/stats` (charges counted at the fake).
    #[arg(long, requires = "fake_url")]
    fake_control_url: Option<String>,
    /// Invocations suspended at once (each sleeping durably) for the growth part: memory and
    /// database size per suspended invocation, time to wake them all (0 skips it).
    #[arg(long, default_value_t = 0)]
    suspended: usize,
    /// Unfinished invocations for the recovery run (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    recovery: usize,
    /// Directory with the components (default: as `cairn serve`).
    #[arg(long, env = "CAIRN_COMPONENTS_DIR")]
    components_dir: Option<PathBuf>,
    /// Also write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The JavaScript email provider to measure beside the Rust one (built by
    /// `node guests/js/build.mjs`; skipped when missing).
    #[arg(long, default_value = "guests/js/dist/sendgrid_js_email.wasm")]
    js_email: PathBuf,
    /// Run the host on PostgreSQL: a fresh database created on this server (and dropped after)
    /// instead of SQLite in the data dir, e.g. postgres://postgres@127.0.0.1:5432/test.
    #[arg(long)]
    postgres: Option<String>,
    /// Have the host export its spans over OTLP/HTTP to a sink in this process (the cost of
    /// tracing; compare with a run without).
    #[arg(long)]
    traces: bool,
    /// With `--traces`: the share of orders traced (the host's `OTEL_TRACES_SAMPLER_ARG`, with
    /// `parentbased_traceidratio`), e.g. 0.1.
    #[arg(long, default_value_t = 1.0, requires = "traces")]
    trace_sample: f64,
    /// With `--postgres`: hosts sharing the database in the throughput runs (the clients spread
    /// over their ingress ports; CPU per order summed over them). The other parts use the first.
    #[arg(long, default_value_t = 1, requires = "postgres")]
    hosts: usize,
}

/// Who sends the throughput runs' orders.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LoadKind {
    Builtin,
    Wrk,
}

fn order(email: &str) -> Value {
    json!({
        "items": [{"productId": "prod-123", "quantity": 2, "price": 2500}],
        "customer": {"email": email, "name": "Bench Customer"},
        "shipping": {"street": "123 Main St", "city": "SF", "state": "CA", "zip": "94105", "country": "US"}
    })
}

/// Latency percentiles in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> Value {
    if samples.is_empty() {
        return json!(null);
    }
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        (samples[i].as_secs_f64() * 1e5).round() / 100.0
    };
    json!({"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "n": samples.len()})
}

static KEYS: AtomicU64 = AtomicU64::new(0);

fn fresh_key(prefix: &str) -> String {
    format!("{prefix}-{}", KEYS.fetch_add(1, Ordering::Relaxed))
}

/// The body of every timed ProcessOrder, encoded once: the clients share the machine with the
/// host, so their own work per request is kept small.
static ORDER: std::sync::LazyLock<bytes::Bytes> =
    std::sync::LazyLock::new(|| order("bench@example.com").to_string().into());

/// The one field of an order the bench reads.
#[derive(serde::Deserialize)]
struct OrderStatus {
    status: String,
}

/// One ProcessOrder; returns its latency and the order's status (None on error).
async fn process_order(
    http: &reqwest::Client,
    ingress: &str,
    key: &str,
) -> (Duration, Option<String>) {
    let started = Instant::now();
    let resp = http
        .post(format!("{ingress}/OrderOrchestrator/{key}/ProcessOrder"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(ORDER.clone())
        .send()
        .await;
    let status = match resp {
        Ok(r) if r.status().is_success() => r
            .bytes()
            .await
            .ok()
            .and_then(|body| serde_json::from_slice::<OrderStatus>(&body).ok())
            .map(|order| order.status),
        _ => None,
    };
    (started.elapsed(), status)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let components = match args.components_dir.clone() {
        Some(dir) => dir,
        None => crate::cli::components_dir(None)?,
    };
    let data = tempfile_dir()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .default_headers(process::admin_headers())
        .build()?;
    let database = match &args.postgres {
        Some(server) => Some(crate::storage::ScratchDatabase::create_on(server).await?),
        None => None,
    };
    let sink = match args.traces {
        true => Some(otlp::Sink::start().await?),
        false => None,
    };
    let run = Run {
        exe: &exe,
        data: &data,
        components: &components,
        http: &http,
        database_url: database.as_ref().map(|d| d.url.as_str()),
        otlp_endpoint: sink.as_ref().map(|(_, endpoint)| endpoint.as_str()),
        trace_sample: args.trace_sample,
        // Room for every invocation the growth and recovery parts leave unfinished at once.
        max_pending_sends: args.suspended.max(args.recovery) + 1_000,
    };
    anyhow::ensure!(
        args.load == LoadKind::Builtin || args.hosts == 1,
        "--load wrk drives one host (--hosts 1)"
    );
    let wrk = match args.load {
        LoadKind::Wrk => Some(wrk::Wrk::prepare(&data)?),
        LoadKind::Builtin => None,
    };
    let fake = match &args.fake_url {
        Some(url) => Fake::elsewhere(url, args.fake_control_url.as_deref())?,
        None => Fake::start(&exe, &data, 0, &http).await?,
    };
    let (host, _) = Host::start(&run, &fake).await?;
    let mut results = json!({
        "machine": machine(),
        "database": if database.is_some() { "postgres" } else { "sqlite" },
        "load": if wrk.is_some() { "wrk" } else { "builtin" },
        "fake": if args.fake_url.is_some() { "elsewhere" } else { "cairn mock-providers" },
    });

    // Warm up (first instantiations, connection pools).
    for _ in 0..20 {
        process_order(&http, &host.ingress, &fresh_key("warm")).await;
    }

    // Sequential latency on fresh keys.
    let mut samples = Vec::with_capacity(args.sequential);
    let mut confirmed = Vec::with_capacity(args.sequential);
    for _ in 0..args.sequential {
        let key = fresh_key("seq");
        let (latency, status) = process_order(&http, &host.ingress, &key).await;
        anyhow::ensure!(
            status.as_deref() == Some("confirmed"),
            "sequential order failed: {status:?}"
        );
        samples.push(latency);
        confirmed.push(key);
    }
    results["sequential"] = percentiles(samples);

    // Throughput at N clients for a fixed time, spread over every host.
    let extra = start_more_hosts(&run, &fake, args.hosts).await?;
    let hosts: Vec<&Host> = std::iter::once(&host).chain(&extra).collect();
    let load = match &wrk {
        Some(wrk) => throughput::Load::Wrk(wrk),
        None => throughput::Load::Builtin(&http),
    };
    results["throughput"] = throughput::throughput(
        &http,
        &load,
        &hosts,
        &fake,
        &args.clients,
        args.seconds,
        database.is_some(),
    )
    .await?;
    drop(extra);
    if database.is_none() {
        let finished = 20 + args.sequential as u64 + total_orders(&results["throughput"]);
        results["storage"] = sqlite_per_order(&data, finished);
    }

    results["one_key"] = one_key(&http, &host, &fake).await?;
    results["webhooks"] =
        webhooks::webhooks(&http, &host, Arc::new(confirmed), args.seconds).await?;
    results["steps"] = steps(&http, &host, &components).await?;
    results["calls"] = calls::calls(&http, &host, &components).await?;
    if args.suspended > 0 && database.is_none() && results["calls"]["skipped"].is_null() {
        results["growth"] = growth::suspended(&http, &host, &data, args.suspended).await?;
    }
    // Last before recovery: it makes the JavaScript provider the active email provider.
    results["languages"] = providers::email_call(&http, &host, &components, &args.js_email).await?;
    results["peak_rss_mib"] = json!(host.proc.peak_rss_mib());
    if let Some((sink, _)) = &sink {
        results["traces"] = sink.report();
        results["traces"]["sample"] = json!(args.trace_sample);
    }

    if args.recovery > 0 {
        results["recovery"] = recovery(&run, host, fake, args.recovery).await?;
    } else {
        drop((host, fake));
    }

    report::print_table(&results);
    let text = serde_json::to_string_pretty(&results)?;
    println!("{text}");
    if let Some(path) = &args.json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// The orders the throughput rows confirmed.
fn total_orders(rows: &Value) -> u64 {
    let rows = rows.as_array().into_iter().flatten();
    rows.filter_map(|row| row["orders"].as_u64()).sum()
}

/// The SQLite database's size on disk (with its write-ahead log) per finished order, before
/// retention purges any (`CAIRN_RETENTION_HOURS`).
fn sqlite_per_order(data: &Path, finished: u64) -> Value {
    let (db, wal) = sqlite_bytes(data);
    json!({
        "orders": finished,
        "database_bytes": db,
        "wal_bytes": wal,
        "bytes_per_order": db / finished.max(1),
    })
}

/// `count - 1` more hosts on the database of `run`, each on a data dir (and host id) of its own.
async fn start_more_hosts(run: &Run<'_>, fake: &Fake, count: usize) -> anyhow::Result<Vec<Host>> {
    let mut hosts = Vec::new();
    for i in 1..count.max(1) {
        let data = run.data.join(format!("host-{i}"));
        std::fs::create_dir_all(&data)?;
        let (host, _) = Host::start(
            &Run {
                data: &data,
                ..*run
            },
            fake,
        )
        .await?;
        hosts.push(host);
    }
    Ok(hosts)
}

/// 200 concurrent ProcessOrder on one new key: one answer, one charge.
async fn one_key(http: &reqwest::Client, host: &Host, fake: &Fake) -> anyhow::Result<Value> {
    let key = fresh_key("one-key");
    let started = Instant::now();
    let calls = (0..200).map(|_| {
        http.post(format!(
            "{}/OrderOrchestrator/{key}/ProcessOrder",
            host.ingress
        ))
        .json(&order("one@example.com"))
        .send()
    });
    let mut bodies = Vec::new();
    for resp in futures::future::join_all(calls).await {
        bodies.push(resp?.text().await?);
    }
    let elapsed = started.elapsed();
    let stats = fake.stats(http).await?;
    Ok(json!({
        "calls": 200,
        "ms": elapsed.as_millis(),
        "identical": bodies.iter().all(|b| *b == bodies[0]),
        "charges": stats.map(|s| s["charges"]["by_order"][&key].clone()),
    }))
}

/// Sequential 1-, 3- and 9-step workflows of `run` steps: the per-step overhead.
async fn steps(http: &reqwest::Client, host: &Host, components: &Path) -> anyhow::Result<Value> {
    if let Some(skipped) = deploy(http, host, &components.join("steps_service.wasm")).await? {
        return Ok(skipped);
    }
    let mut rows = Vec::new();
    let mut p50 = Vec::new();
    for n in [1u32, 3, 9] {
        let mut samples = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            let resp = http
                .post(format!("{}/Steps/Run", host.ingress))
                .json(&json!({"steps": n}))
                .send()
                .await?;
            success(resp, "Steps/Run").await?;
            samples.push(started.elapsed());
        }
        let mut row = percentiles(samples);
        p50.push(row["p50"].as_f64().unwrap_or_default());
        row["steps"] = json!(n);
        rows.push(row);
    }
    Ok(json!({
        "workflows": rows,
        "per_step_ms": ((p50[2] - p50[0]) / 8.0 * 1000.0).round() / 1000.0,
        "journal_1000": journal_1000(http, host).await?,
    }))
}

/// One invocation of 1,000 run steps: the time per entry live, and per entry replayed (a
/// durable sleep after the last step, so the wake-up replays all 1,000, against one before the
/// first, which replays none; each the median of 5).
async fn journal_1000(http: &reqwest::Client, host: &Host) -> anyhow::Result<Value> {
    const STEPS: u32 = 1000;
    let median = async |input: Value| {
        let mut samples = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let resp = http
                .post(format!("{}/Steps/Run", host.ingress))
                .json(&input)
                .send()
                .await?;
            success(resp, "Steps/Run").await?;
            samples.push(started.elapsed());
        }
        samples.sort();
        anyhow::Ok(samples[2].as_secs_f64() * 1e6)
    };
    let live = median(json!({"steps": STEPS})).await?;
    let sleep_first = median(json!({"steps": STEPS, "sleepMs": 1, "sleepAt": 0})).await?;
    let sleep_last = median(json!({"steps": STEPS, "sleepMs": 1, "sleepAt": STEPS})).await?;
    let per_entry = |us: f64| (us / f64::from(STEPS) * 100.0).round() / 100.0;
    Ok(json!({
        "entries": STEPS,
        "live_ms": (live / 10.0).round() / 100.0,
        "live_us_per_entry": per_entry(live),
        "replay_us_per_entry": per_entry((sleep_last - sleep_first).max(0.0)),
    }))
}

/// Deploys the test component at `path`; `Some(reason)` to report when it was not built.
async fn deploy(http: &reqwest::Client, host: &Host, path: &Path) -> anyhow::Result<Option<Value>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(Some(
            json!({"skipped": format!("{} not found", path.display())}),
        ));
    };
    let resp = http
        .post(format!("{}/deployments", host.admin))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await?;
    success(resp, format_args!("deploying {}", path.display())).await?;
    Ok(None)
}

/// `resp` when it succeeded, else an error with `what` and its body.
pub(super) async fn success(
    resp: reqwest::Response,
    what: impl std::fmt::Display,
) -> anyhow::Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    anyhow::bail!("{what}: {} {}", resp.status(), resp.text().await?)
}

/// `GET url` as JSON.
pub(super) async fn get_json(http: &reqwest::Client, url: String) -> anyhow::Result<Value> {
    Ok(http.get(url).send().await?.json().await?)
}

/// What every start of a host in one bench run shares.
pub(super) struct Run<'a> {
    pub(super) exe: &'a Path,
    pub(super) data: &'a Path,
    pub(super) components: &'a Path,
    pub(super) http: &'a reqwest::Client,
    /// PostgreSQL instead of SQLite in the data dir.
    pub(super) database_url: Option<&'a str>,
    /// Where the host exports its spans, if it does, and the share of traces kept.
    pub(super) otlp_endpoint: Option<&'a str>,
    pub(super) trace_sample: f64,
    /// The host's `CAIRN_MAX_PENDING_SENDS`.
    pub(super) max_pending_sends: usize,
}

/// `count` one-way sends to `handler` of `service` (`POST .../send`, 64 at a time), each on a
/// key of its own, with JSON `body`: how many were accepted (202).
pub(super) async fn send_many(
    http: &reqwest::Client,
    ingress: &str,
    (service, handler): (&'static str, &'static str),
    body: bytes::Bytes,
    count: usize,
) -> anyhow::Result<u64> {
    const SENDERS: usize = 64;
    let accepted = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (http, ingress, accepted) = (http.clone(), ingress.to_string(), accepted.clone());
            let body = body.clone();
            tokio::spawn(async move {
                for _ in 0..count.div_ceil(SENDERS) {
                    let key = fresh_key(service);
                    let ok = http
                        .post(format!("{ingress}/{service}/{key}/{handler}/send"))
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 202);
                    if ok {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await?;
    }
    Ok(accepted.load(Ordering::Relaxed))
}

/// The SQLite database in `data` and its write-ahead log: their sizes in bytes.
pub(super) fn sqlite_bytes(data: &Path) -> (u64, u64) {
    let size = |name: &str| std::fs::metadata(data.join(name)).map_or(0, |m| m.len());
    (size("cairn.db"), size("cairn.db-wal"))
}

/// `count` orders accepted but unfinished (the fake holds every provider call), kill -9, restart
/// with a zero-delay fake: time to the first and to the last completion.
async fn recovery(run: &Run<'_>, host: Host, fake: Fake, count: usize) -> anyhow::Result<Value> {
    drop((host, fake));
    let holding = Fake::start(run.exe, run.data, 600_000, run.http).await?;
    let (host, _) = Host::start(run, &holding).await?;
    let http = run.http;
    let order = bytes::Bytes::from(order("recover@example.com").to_string());
    let accepted = send_many(
        http,
        &host.ingress,
        ("OrderOrchestrator", "ProcessOrder"),
        order,
        count,
    )
    .await?;
    drop((host, holding));
    let fake = Fake::start(run.exe, run.data, 0, http).await?;
    let restarted = Instant::now();
    let (host, ready) = Host::start(run, &fake).await?;
    let mut first = None;
    loop {
        if first.is_none() && host.has_invocations(http, "succeeded").await? {
            first = Some(restarted.elapsed());
        }
        if first.is_some() && !host.has_invocations(http, "running").await? {
            break;
        }
        anyhow::ensure!(
            restarted.elapsed() < Duration::from_secs(600),
            "recovery took over 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = restarted.elapsed();
    Ok(json!({
        "unfinished": accepted,
        "healthy_after_ms": ready.as_millis(),
        "first_completion_ms": first.unwrap_or_default().as_millis(),
        "last_completion_ms": last.as_millis(),
        "orders_per_s": (accepted as f64 / last.as_secs_f64()).round(),
        "peak_rss_mib": host.proc.peak_rss_mib(),
    }))
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| (kb / 1024.0 / 1024.0).round());
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
    });
    json!({"cores": cores, "memory_gib": mem_gib, "cpu": cpu, "sha256_ms": calibrate()})
}

/// How long this machine takes, on one core, to hash 64 MiB with SHA-256 (the best of five):
/// a fixed yardstick, so figures from different machines, or from one machine in a slow and a
/// fast phase, can be set side by side.
fn calibrate() -> f64 {
    use sha2::{Digest, Sha256};
    let block = vec![0x5a_u8; 1 << 20];
    let best = (0..5)
        .map(|_| {
            let started = Instant::now();
            let mut hasher = Sha256::new();
            for _ in 0..64 {
                hasher.update(&block);
            }
            std::hint::black_box(hasher.finalize());
            started.elapsed()
        })
        .min()
        .unwrap_or_default();
    (best.as_secs_f64() * 10_000.0).round() / 10.0
}
