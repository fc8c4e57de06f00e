//! The throughput part of `cairn bench`: N clients, each looping `ProcessOrder` on fresh keys for
//! a fixed time, spread over one host or several sharing a PostgreSQL database; the clients are
//! the bench's own or `wrk` in a process of its own (`--load wrk`). Orders/s, latency, errors,
//! declines, charges counted at the fake, and the CPU per order of the hosts, the fake and (on a
//! local PostgreSQL) the database server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::process::{self, Fake, Host};
use super::wrk::Wrk;
use super::{fresh_key, percentiles, process_order};

/// Who sends the orders.
pub(super) enum Load<'a> {
    /// Tasks of the bench process, on its reqwest client.
    Builtin(&'a reqwest::Client),
    /// `wrk`, a process of its own per run (one host only).
    Wrk(&'a Wrk),
}

/// What one run of the clients gives.
struct Counts {
    /// Latency percentiles of the confirmed orders.
    latency: Value,
    confirmed: u64,
    errors: u64,
    declines: Option<u64>,
    /// How long the load ran, when the load generator says so (wrk, without its start-up).
    seconds: Option<f64>,
}

/// One row per client count in `clients`, each run for `seconds`.
pub(super) async fn throughput(
    http: &reqwest::Client,
    load: &Load<'_>,
    hosts: &[&Host],
    fake: &Fake,
    clients: &[usize],
    seconds: u64,
    on_postgres: bool,
) -> anyhow::Result<Value> {
    let hosts_cpu = || hosts.iter().map(|h| h.proc.cpu()).sum::<Duration>();
    let charges = async || {
        let stats = fake.stats(http).await?;
        anyhow::Ok(stats.and_then(|s| s["charges"]["succeeded"].as_u64()))
    };
    let mut rows = Vec::new();
    for &clients in clients {
        let charges_before = charges().await?;
        let cpu_before = (hosts_cpu(), fake.cpu(), process::postgres_cpu());
        let started = Instant::now();
        let counts = match load {
            Load::Builtin(http) => builtin(http, hosts, clients, seconds).await?,
            Load::Wrk(wrk) => {
                let prefix = fresh_key("wrk");
                let summary = wrk
                    .run(&hosts[0].ingress, clients, seconds, &prefix)
                    .await?;
                let ms = |us: u64| us as f64 / 1000.0;
                Counts {
                    latency: json!({"p50": ms(summary.p50_us), "p90": ms(summary.p90_us),
                        "p99": ms(summary.p99_us), "n": summary.requests}),
                    confirmed: summary.succeeded(),
                    errors: summary.errors(),
                    declines: None,
                    seconds: Some(summary.duration_us as f64 / 1e6),
                }
            }
        };
        let elapsed = counts.seconds.unwrap_or(started.elapsed().as_secs_f64());
        let host_cpu = hosts_cpu() - cpu_before.0;
        let fake_cpu = fake.cpu() - cpu_before.1;
        let postgres_cpu = process::postgres_cpu() - cpu_before.2;
        let orders = counts.confirmed as f64;
        let per_order = |cpu: Duration| {
            let ms = cpu.as_secs_f64() * 1000.0 / orders.max(1.0);
            (ms * 100.0).round() / 100.0
        };
        let mut row = counts.latency;
        row["clients"] = json!(clients);
        row["hosts"] = json!(hosts.len());
        row["orders"] = json!(counts.confirmed);
        row["orders_per_s"] = json!((orders / elapsed).round());
        row["errors"] = json!(counts.errors);
        row["declines"] = json!(counts.declines);
        if let (Some(before), Some(after)) = (charges_before, charges().await?) {
            row["charges_at_fake"] = json!(after - before);
        }
        row["host_cpu_ms_per_order"] = json!(per_order(host_cpu));
        if fake.proc.is_some() {
            row["cpu_ms_per_order"] = json!(per_order(host_cpu + fake_cpu));
            row["fake_cpu_ms_per_order"] = json!(per_order(fake_cpu));
            row["fake_peak_rss_mib"] = json!(fake.proc.as_ref().map(|p| p.peak_rss_mib()));
        }
        if on_postgres {
            row["postgres_cpu_ms_per_order"] = json!(per_order(postgres_cpu));
        }
        row["peak_rss_mib"] = json!(hosts[0].proc.peak_rss_mib());
        rows.push(row);
        // Not counted in this row nor the next: the orders still in flight when the load
        // stopped (wrk does not wait for them), as many as there were clients.
        for host in hosts {
            host.settle(http).await?;
        }
    }
    Ok(json!(rows))
}

/// `clients` tasks of this process, each looping ProcessOrder on fresh keys for `seconds`.
async fn builtin(
    http: &reqwest::Client,
    hosts: &[&Host],
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Counts> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..clients)
        .map(|n| {
            let (http, ingress) = (http.clone(), hosts[n % hosts.len()].ingress.clone());
            tokio::spawn(async move {
                let mut out = (Vec::new(), 0u64, 0u64);
                while Instant::now() < deadline {
                    let (latency, status) = process_order(&http, &ingress, &fresh_key("tp")).await;
                    match status.as_deref() {
                        Some("confirmed") => out.0.push(latency),
                        Some(_) => out.2 += 1,
                        None => out.1 += 1,
                    }
                }
                out
            })
        })
        .collect();
    let (mut samples, mut errors, mut declines) = (Vec::new(), 0, 0);
    for worker in workers {
        let (s, e, d) = worker.await?;
        samples.extend(s);
        errors += e;
        declines += d;
    }
    Ok(Counts {
        confirmed: samples.len() as u64,
        latency: percentiles(samples),
        errors,
        declines: Some(declines),
        seconds: None,
    })
}
