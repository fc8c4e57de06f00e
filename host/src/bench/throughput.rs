//! The throughput part of `cairn bench`: N clients, each looping `ProcessOrder` on fresh keys for
//! a fixed time, spread over one host or several sharing a PostgreSQL database; orders/s,
//! latency, errors, declines, and the CPU per order of the hosts, the fake and (on a local
//! PostgreSQL) the database server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::process::{self, Fake, Host};
use super::{fresh_key, percentiles, process_order};

/// One row per client count in `clients`, each run for `seconds`.
pub(super) async fn throughput(
    http: &reqwest::Client,
    hosts: &[&Host],
    fake: &Fake,
    clients: &[usize],
    seconds: u64,
    on_postgres: bool,
) -> anyhow::Result<Value> {
    let hosts_cpu = || hosts.iter().map(|h| h.proc.cpu()).sum::<Duration>();
    let mut rows = Vec::new();
    for &clients in clients {
        let cpu_before = (hosts_cpu(), fake.proc.cpu(), process::postgres_cpu());
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let workers: Vec<_> = (0..clients)
            .map(|n| {
                let (http, ingress) = (http.clone(), hosts[n % hosts.len()].ingress.clone());
                tokio::spawn(async move {
                    let mut out = (Vec::new(), 0u64, 0u64);
                    while Instant::now() < deadline {
                        let (latency, status) =
                            process_order(&http, &ingress, &fresh_key("tp")).await;
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
        let elapsed = started.elapsed().as_secs_f64();
        let orders = samples.len() as f64;
        let per_order = |cpu: Duration| {
            let ms = cpu.as_secs_f64() * 1000.0 / orders.max(1.0);
            (ms * 100.0).round() / 100.0
        };
        let host_cpu = hosts_cpu() - cpu_before.0;
        let fake_cpu = fake.proc.cpu() - cpu_before.1;
        let mut row = percentiles(samples);
        row["clients"] = json!(clients);
        row["hosts"] = json!(hosts.len());
        row["orders_per_s"] = json!((orders / elapsed).round());
        row["errors"] = json!(errors);
        row["declines"] = json!(declines);
        row["cpu_ms_per_order"] = json!(per_order(host_cpu + fake_cpu));
        row["host_cpu_ms_per_order"] = json!(per_order(host_cpu));
        row["fake_cpu_ms_per_order"] = json!(per_order(fake_cpu));
        if on_postgres {
            row["postgres_cpu_ms_per_order"] =
                json!(per_order(process::postgres_cpu() - cpu_before.2));
        }
        row["peak_rss_mib"] = json!(hosts[0].proc.peak_rss_mib());
        row["fake_peak_rss_mib"] = json!(fake.proc.peak_rss_mib());
        rows.push(row);
    }
    Ok(json!(rows))
}
