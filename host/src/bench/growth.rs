//! How cost grows with the work kept (`--suspended N`): N invocations suspended at once, each a
//! `Relay/*/Await` (the test object of `relay_service.wasm`) sleeping durably, then timing out a
//! promise; the host's resident memory and the SQLite database's size per suspended invocation,
//! and how long waking them all takes. The relay is deployed by the calls part, run before.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::process::Host;
use super::{send_many, sqlite_bytes};

pub(super) async fn suspended(
    http: &reqwest::Client,
    host: &Host,
    data: &Path,
    count: usize,
) -> anyhow::Result<Value> {
    let db_bytes = || {
        let (db, wal) = sqlite_bytes(data);
        db + wal
    };
    let (rss_before, db_before) = (host.proc.rss_mib(), db_bytes());
    // Long enough for every send to be accepted before the first sleeper wakes.
    let sleep = Duration::from_secs(20) + Duration::from_millis(count as u64);
    let started = Instant::now();
    let body = json!({"sleepMs": sleep.as_millis() as u64, "timeoutMs": 1}).to_string();
    let accepted = send_many(http, &host.ingress, ("Relay", "Await"), body.into(), count).await?;
    let sent_in = started.elapsed();
    // Let the last ones reach their sleep, then read what they hold.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_mib = host.proc.rss_mib();
    let db_growth = db_bytes().saturating_sub(db_before);
    let first_due = started + sleep;
    let list = async |status: &str| {
        let url = format!("{}/invocations?status={status}&limit=1", host.admin);
        let body: Value = http.get(url).send().await?.json().await?;
        anyhow::Ok(!body["invocations"].as_array().is_none_or(Vec::is_empty))
    };
    tokio::time::sleep_until(first_due.into()).await;
    while list("running").await? {
        anyhow::ensure!(
            first_due.elapsed() < Duration::from_secs(600),
            "waking the sleepers took over 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let woken_in = first_due.elapsed();
    let per = |total: f64| (total / accepted.max(1) as f64 * 10.0).round() / 10.0;
    Ok(json!({
        "suspended": accepted,
        "sent_in_ms": sent_in.as_millis(),
        "sleep_ms": sleep.as_millis(),
        "rss_mib": rss_mib,
        "rss_kib_per_suspended": per((rss_mib - rss_before).max(0.0) * 1024.0),
        "database_bytes_per_suspended": per(db_growth as f64),
        // From the first sleeper's due time (the last one's is `sent_in_ms` later) to the end
        // of the last one.
        "all_woken_ms": woken_in.as_millis(),
        "woken_per_s": (accepted as f64 / woken_in.as_secs_f64()).round(),
    }))
}
