//! The processes under test, each a child of the bench: `cairn serve` (the host) and
//! `cairn mock-providers` (the fake Stripe/SendGrid/Shippo API it is pointed at). Separate
//! processes, so the host's memory and CPU are read on their own from `/proc`, and the fake's
//! beside them.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use super::Run;

/// A process under test: a child of the bench, killed (SIGKILL) when dropped so a failed run
/// leaves none behind, or one running elsewhere on this machine that is only watched.
pub(super) struct Proc {
    pid: u32,
    child: Option<Child>,
}

impl Proc {
    /// Starts `command` with its output appended to `log`.
    fn spawn(command: &mut Command, log: &Path) -> anyhow::Result<Proc> {
        let log = OpenOptions::new().create(true).append(true).open(log)?;
        let child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        Ok(Proc {
            pid: child.id(),
            child: Some(child),
        })
    }

    /// The process of this machine listening on TCP `port` of loopback or any address (a fake
    /// started by someone else), watched but not owned; None when none is found (another
    /// machine, or a process of another user).
    pub(super) fn listening_on(port: u16) -> Option<Proc> {
        let inodes = listening_inodes(port);
        let pid = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
                fds.flatten()
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                    .any(|link| inodes.iter().any(|i| link.to_str() == Some(i)))
                    .then_some(pid)
            })?;
        Some(Proc { pid, child: None })
    }

    /// CPU time (user + system) of the process so far.
    pub(super) fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        stat_ticks(&stat, 11..13)
    }

    /// Peak resident memory of the process, in MiB.
    pub(super) fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// Resident memory of the process now, in MiB.
    pub(super) fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    /// A `/proc/PID/status` field given in kB, in MiB.
    fn status_mib(&self, field: &str) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| (kb / 1024.0).round())
    }

    /// SIGKILL, as a crash would (a process the bench did not start is left alone).
    pub(super) fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The socket inodes, as `/proc/PID/fd` links name them (`socket:[N]`), of the TCP listeners on
/// `port` (IPv4 and IPv6).
fn listening_inodes(port: u16) -> Vec<String> {
    let port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // local address, remote address, state (0A: LISTEN), ..., inode
                    let listening = fields.get(3) == Some(&"0A");
                    if !listening || !fields.get(1)?.ends_with(&port) {
                        return None;
                    }
                    Some(format!("socket:[{}]", fields.get(9)?))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The clock ticks in `fields` (indices after the parenthesised command name: utime and stime
/// are 11 and 12, the waited-for children's cutime and cstime 13 and 14) of a `/proc/PID/stat`.
fn stat_ticks(stat: &str, fields: std::ops::Range<usize>) -> Duration {
    let after_name: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: u64 = after_name
        .get(fields)
        .map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// CPU time of the PostgreSQL server on this machine so far: every `postgres` process's own and
/// that of the backends it has reaped (the postmaster's children's times), for the database's
/// share of an order when the bench's PostgreSQL is local.
pub(super) fn postgres_cpu() -> Duration {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    procs
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| stat.contains("(postgres)"))
        .map(|stat| stat_ticks(&stat, 11..15))
        .sum()
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The fake provider API: a `cairn mock-providers` the bench starts, or one running elsewhere
/// (`--fake-url`, e.g. an independent fake in another language).
pub(super) struct Fake {
    /// Its process, when it runs on this machine (for its CPU time and memory).
    pub(super) proc: Option<Proc>,
    /// `http://HOST:PORT`, the base URL of all three APIs.
    pub(super) base: String,
    /// `http://HOST:PORT` of its `/_mock/*` control endpoints, when it has them (the charges
    /// counted at the fake).
    pub(super) control: Option<String>,
}

impl Fake {
    /// Starts a fake that never declines and answers every call after `delay_ms`.
    pub(super) async fn start(
        exe: &Path,
        data: &Path,
        delay_ms: u64,
        http: &reqwest::Client,
    ) -> anyhow::Result<Fake> {
        let listen = format!("127.0.0.1:{}", free_port()?);
        let control = format!("127.0.0.1:{}", free_port()?);
        let proc = Proc::spawn(
            Command::new(exe)
                .args(["mock-providers", "--listen", &listen])
                .args(["--control-listen", &control])
                .env("MOCK_DECLINE_RATE", "0")
                .env("MOCK_DELAY_MS", delay_ms.to_string())
                // One worker thread (tokio reads this variable): the fake needs a fraction of
                // a core, and on two shared cores a second worker mostly adds wake-ups.
                .env("TOKIO_WORKER_THREADS", "1"),
            &data.join("fake.log"),
        )?;
        let stats = format!("http://{control}/_mock/stats");
        wait_for(http, &stats, "the fake provider API").await?;
        Ok(Fake {
            proc: Some(proc),
            base: format!("http://{listen}"),
            control: Some(format!("http://{control}")),
        })
    }

    /// A fake already running at `base` (its control endpoints at `control`, if it has them),
    /// watched through `/proc` when it listens on this machine.
    pub(super) fn elsewhere(base: &str, control: Option<&str>) -> anyhow::Result<Fake> {
        let url = reqwest::Url::parse(base).with_context(|| format!("--fake-url {base}"))?;
        let port = url
            .port_or_known_default()
            .context("--fake-url has no port")?;
        let host = url.host_str().unwrap_or_default();
        let local = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
        Ok(Fake {
            proc: local.then(|| Proc::listening_on(port)).flatten(),
            base: base.trim_end_matches('/').to_string(),
            control: control.map(|c| c.trim_end_matches('/').to_string()),
        })
    }

    /// The fake's CPU time so far (zero when its process is not watched).
    pub(super) fn cpu(&self) -> Duration {
        self.proc.as_ref().map_or(Duration::ZERO, Proc::cpu)
    }

    /// The fake's counters (`GET /_mock/stats`), when it has control endpoints.
    pub(super) async fn stats(&self, http: &reqwest::Client) -> anyhow::Result<Option<Value>> {
        match &self.control {
            Some(control) => Ok(Some(
                super::get_json(http, format!("{control}/_mock/stats")).await?,
            )),
            None => Ok(None),
        }
    }
}

/// The admin token of the hosts the benchmark starts (on loopback, over a scratch data dir).
const ADMIN_TOKEN: &str = "cairn-bench-admin-token";

/// Headers that carry [`ADMIN_TOKEN`] (the benchmark's client sends them everywhere; the ingress
/// and the fake ignore them).
pub(super) fn admin_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {ADMIN_TOKEN}");
    if let Ok(value) = reqwest::header::HeaderValue::from_str(&value) {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    headers
}

/// The host under test.
pub(super) struct Host {
    pub(super) proc: Proc,
    pub(super) ingress: String,
    pub(super) admin: String,
}

impl Host {
    /// Starts `cairn serve` on `data` with the providers pointed at `fake`; returns once it is
    /// healthy, with the time that took.
    pub(super) async fn start(run: &Run<'_>, fake: &Fake) -> anyhow::Result<(Host, Duration)> {
        let (ingress, admin) = (free_port()?, free_port()?);
        let started = Instant::now();
        let mut command = Command::new(run.exe);
        match run.database_url {
            Some(url) => command.env("DATABASE_URL", url),
            None => command.env_remove("DATABASE_URL"),
        };
        match run.otlp_endpoint {
            Some(url) => command
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", url)
                .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
                .env("OTEL_TRACES_SAMPLER_ARG", run.trace_sample.to_string()),
            None => command.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT"),
        };
        let (data, components) = (run.data, run.components);
        let proc = Proc::spawn(
            command
                .arg("serve")
                .arg("--data-dir")
                .arg(data)
                .arg("--components-dir")
                .arg(components)
                .args(["--ingress-addr", &format!("127.0.0.1:{ingress}")])
                .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
                .env_remove("MOCK_MODE")
                .env("CAIRN_ADMIN_TOKEN", ADMIN_TOKEN)
                .env("CAIRN_MAX_PENDING_SENDS", run.max_pending_sends.to_string())
                .env("STRIPE_API_BASE", &fake.base)
                .env("STRIPE_API_KEY", "sk_test_bench")
                .env("SENDGRID_API_BASE", &fake.base)
                .env("SENDGRID_API_KEY", "SG.bench")
                .env("SHIPPO_API_BASE", &fake.base)
                .env("SHIPPO_API_KEY", "shippo_test_bench")
                // As a real deployment has: without it the provider logs a warning per label.
                .env("SHIPPO_CARRIER_ACCOUNT", "bench_carrier_account")
                .env(
                    "STRIPE_WEBHOOK_SECRET",
                    crate::mock::webhooks::STRIPE_WEBHOOK_SECRET,
                ),
            &data.join("host.log"),
        )?;
        let host = Host {
            proc,
            ingress: format!("http://127.0.0.1:{ingress}"),
            admin: format!("http://127.0.0.1:{admin}"),
        };
        let health = format!("{}/health", host.admin);
        wait_for(run.http, &health, "the host (see host.log in the data dir)").await?;
        Ok((host, started.elapsed()))
    }

    /// Whether the host has an invocation of `status` (`running`: accepted, not finished).
    pub(super) async fn has_invocations(
        &self,
        http: &reqwest::Client,
        status: &str,
    ) -> anyhow::Result<bool> {
        let url = format!("{}/invocations?status={status}&limit=1", self.admin);
        let body: Value = http.get(url).send().await?.json().await?;
        Ok(!body["invocations"].as_array().is_none_or(Vec::is_empty))
    }

    /// Waits until the host has gone quiet (a minute at most): no attempt running (nor any
    /// waiting for a permit to run, which would take a freed one) and no write queued, twice
    /// in a row. A load generator stops with requests in flight, whose orders the host still
    /// completes, and the next figure is to measure its own work, not that tail. Invocations
    /// suspended on a promise or a timer hold nothing and are not waited for.
    pub(super) async fn settle(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut quiet = 0;
        while quiet < 2 {
            let text = http
                .get(format!("{}/metrics", self.admin))
                .send()
                .await?
                .text()
                .await?;
            let busy = ["cairn_attempts_running", "cairn_storage_writes_queued"]
                .iter()
                .any(|gauge| gauge_value(&text, gauge) != Some(0.0));
            quiet = if busy { 0 } else { quiet + 1 };
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the host still runs invocations a minute after the load stopped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// The value of the unlabelled gauge `name` in OpenMetrics `text`.
fn gauge_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Polls `url` until it answers 2xx (two minutes at most).
async fn wait_for(http: &reqwest::Client, url: &str, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(resp) = http.get(url).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("{what} did not become ready")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh data dir under the system's temp dir.
pub(super) fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("cairn-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_gauge_is_read_by_its_whole_name() {
        let text = "# TYPE cairn_attempts_running gauge\ncairn_attempts_running 3\n\
                    cairn_attempts_running_max 9\ncairn_storage_writes_queued 0\n# EOF\n";
        assert_eq!(
            super::gauge_value(text, "cairn_attempts_running"),
            Some(3.0)
        );
        assert_eq!(
            super::gauge_value(text, "cairn_storage_writes_queued"),
            Some(0.0)
        );
        assert_eq!(super::gauge_value(text, "cairn_invocations_waiting"), None);
    }
}
