//! The outside load of `cairn bench --load wrk`: Debian's `wrk` (HTTP/1.1 keep-alive, its own
//! process) running `order.lua`, a ProcessOrder on a new order key per request. The script is
//! carried in the binary and written to the run's data dir, so the mode works from any
//! directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use serde::Deserialize;

/// The script, as in the repository (`host/src/bench/order.lua`).
const SCRIPT: &str = include_str!("order.lua");

/// What the script's `done` prints after the `cairn-wrk ` marker.
#[derive(Debug, Deserialize)]
pub(super) struct Summary {
    pub(super) requests: u64,
    pub(super) duration_us: u64,
    pub(super) connect_errors: u64,
    pub(super) read_errors: u64,
    pub(super) write_errors: u64,
    pub(super) timeouts: u64,
    pub(super) non_2xx: u64,
    pub(super) p50_us: u64,
    pub(super) p90_us: u64,
    pub(super) p99_us: u64,
}

impl Summary {
    /// Requests answered 2xx (the orders confirmed: the bench's fake declines none).
    pub(super) fn succeeded(&self) -> u64 {
        self.requests
            .saturating_sub(self.non_2xx + self.read_errors + self.timeouts)
    }

    /// Requests that failed in any way.
    pub(super) fn errors(&self) -> u64 {
        self.connect_errors + self.read_errors + self.write_errors + self.timeouts + self.non_2xx
    }
}

/// `wrk` with the order script, ready to run against one ingress.
pub(super) struct Wrk {
    script: PathBuf,
}

impl Wrk {
    /// Writes the script into `data`; fails with what to install when `wrk` is missing.
    pub(super) fn prepare(data: &Path) -> anyhow::Result<Wrk> {
        let found = Command::new("wrk").arg("--version").output();
        anyhow::ensure!(
            found.is_ok(),
            "--load wrk needs wrk on the PATH (scripts/setup --wrk installs Debian's)"
        );
        let script = data.join("order.lua");
        std::fs::write(&script, SCRIPT)?;
        Ok(Wrk { script })
    }

    /// `clients` connections (over at most two threads, as on the machine) for
    /// `seconds` against `ingress`, order keys prefixed with `prefix`.
    pub(super) async fn run(
        &self,
        ingress: &str,
        clients: usize,
        seconds: u64,
        prefix: &str,
    ) -> anyhow::Result<Summary> {
        let mut command = tokio::process::Command::new("wrk");
        command
            .arg(format!("-t{}", clients.clamp(1, 2)))
            .arg(format!("-c{clients}"))
            .arg(format!("-d{seconds}s"))
            .args(["--timeout", "30s", "-s"])
            .arg(&self.script)
            .args([ingress, "--", prefix])
            .kill_on_drop(true);
        let out = command.output().await.context("running wrk")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success(),
            "wrk failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        parse(&stdout)
    }
}

/// The summary line in wrk's output.
fn parse(stdout: &str) -> anyhow::Result<Summary> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cairn-wrk "))
        .with_context(|| format!("no summary in wrk's output: {stdout}"))?;
    serde_json::from_str(line).with_context(|| format!("wrk's summary: {line}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_among_wrks_own_lines() {
        let out = "Running 1s test @ http://127.0.0.1:1\n  2 threads and 4 connections\n\
            cairn-wrk {\"requests\":10,\"duration_us\":1000000,\"connect_errors\":0,\
            \"read_errors\":1,\"write_errors\":0,\"timeouts\":1,\"non_2xx\":2,\
            \"p50_us\":900,\"p90_us\":1500,\"p99_us\":2100}\nRequests/sec: 10.0\n";
        let summary = parse(out).unwrap();
        assert_eq!(summary.succeeded(), 6);
        assert_eq!(summary.errors(), 4);
        assert_eq!(summary.p90_us, 1500);
        assert!(parse("Running 1s test\n").is_err());
    }
}
