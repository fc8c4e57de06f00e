//! The table `cairn bench` prints before its JSON.

use serde_json::Value;

pub(super) fn print_table(r: &Value) {
    let seq = &r["sequential"];
    println!(
        "\ncairn bench ({} cores, {} GiB; SHA-256 of 64 MiB on one core: {} ms)",
        r["machine"]["cores"], r["machine"]["memory_gib"], r["machine"]["sha256_ms"]
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "", "p50 ms", "p90 ms", "p99 ms"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        format!("sequential ProcessOrder (n={})", seq["n"]),
        seq["p50"],
        seq["p90"],
        seq["p99"]
    );
    println!(
        "\nthroughput: load {}, fake {}, database {}",
        r["load"], r["fake"], r["database"]
    );
    if let Some(hosts) = r["throughput"][0]["hosts"].as_u64().filter(|&n| n > 1) {
        println!("\nthroughput on {hosts} hosts sharing the database (CPU: all hosts together)");
    }
    println!(
        "\n{:<8} {:>9} {:>8} {:>8} {:>7} {:>9} {:>14} {:>13} {:>13}",
        "clients",
        "orders/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "declines",
        "CPU ms/order",
        "(host, fake)",
        "RSS MiB host"
    );
    for row in r["throughput"].as_array().into_iter().flatten() {
        println!(
            "{:<8} {:>9} {:>8} {:>8} {:>7} {:>9} {:>14} {:>13} {:>13}",
            row["clients"],
            row["orders_per_s"],
            row["p50"],
            row["p99"],
            row["errors"],
            row["declines"],
            row["cpu_ms_per_order"],
            match &row["postgres_cpu_ms_per_order"] {
                Value::Null => format!(
                    "({}, {})",
                    row["host_cpu_ms_per_order"], row["fake_cpu_ms_per_order"]
                ),
                postgres => format!(
                    "({}, {}; PostgreSQL {postgres})",
                    row["host_cpu_ms_per_order"], row["fake_cpu_ms_per_order"]
                ),
            },
            row["peak_rss_mib"]
        );
    }
    if let Some(per_order) = r["storage"]["bytes_per_order"].as_u64() {
        println!(
            "SQLite: {} bytes per finished order ({} orders, {} MiB, WAL {} MiB)",
            per_order,
            r["storage"]["orders"],
            r["storage"]["database_bytes"].as_u64().unwrap_or(0) >> 20,
            r["storage"]["wal_bytes"].as_u64().unwrap_or(0) >> 20
        );
    }
    let hooks = &r["webhooks"];
    println!(
        "\nwebhooks ({} clients): {} verified events/s accepted, {} events/s processed, {} host CPU ms/event",
        hooks["clients"],
        hooks["accepted_per_s"],
        hooks["processed_per_s"],
        hooks["host_cpu_ms_per_event"]
    );
    let one = &r["one_key"];
    println!(
        "\n200 calls on one key: {} ms, identical answers: {}, charges: {}",
        one["ms"], one["identical"], one["charges"]
    );
    if let Some(rows) = r["steps"]["workflows"].as_array() {
        for row in rows {
            println!(
                "{}-step workflow: p50 {} ms, p99 {} ms",
                row["steps"], row["p50"], row["p99"]
            );
        }
        println!("per run step: {} ms", r["steps"]["per_step_ms"]);
        let journal = &r["steps"]["journal_1000"];
        println!(
            "a journal of {} entries: {} ms live, {} µs per entry live, {} µs per entry replayed",
            journal["entries"],
            journal["live_ms"],
            journal["live_us_per_entry"],
            journal["replay_us_per_entry"]
        );
        println!(
            "call round trip p50 {} ms, promise resolve-to-output p50 {} ms",
            r["calls"]["call"]["p50"], r["calls"]["promise"]["p50"]
        );
    }
    let lang = &r["languages"];
    if lang["rust"].is_object() {
        println!(
            "email call p50: Rust {} ms ({} bytes), JavaScript {} ms ({} bytes, deployed in {} ms)",
            lang["rust"]["email_call"]["p50"],
            lang["rust"]["bytes"],
            lang["javascript"]["email_call"]["p50"],
            lang["javascript"]["bytes"],
            lang["javascript"]["deploy_ms"]
        );
    }
    if r["traces"].is_object() {
        println!(
            "spans exported over OTLP: {} batches, {} KiB (sample {})",
            r["traces"]["exports"], r["traces"]["kib"], r["traces"]["sample"]
        );
    }
    let growth = &r["growth"];
    if !growth.is_null() {
        println!(
            "{} suspended at once: RSS {} MiB ({} KiB each), database {} bytes each; woken in {} ms ({}/s)",
            growth["suspended"],
            growth["rss_mib"],
            growth["rss_kib_per_suspended"],
            growth["database_bytes_per_suspended"],
            growth["all_woken_ms"],
            growth["woken_per_s"]
        );
    }
    let rec = &r["recovery"];
    if !rec.is_null() {
        println!(
            "recovery after kill -9 with {} unfinished: healthy after {} ms, first completion {} ms, last {} ms ({} orders/s)",
            rec["unfinished"],
            rec["healthy_after_ms"],
            rec["first_completion_ms"],
            rec["last_completion_ms"],
            rec["orders_per_s"]
        );
    }
    println!("host peak RSS: {} MiB\n", r["peak_rss_mib"]);
}
