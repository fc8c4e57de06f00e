//! `GET /metrics` on the admin port (issue 15), scraped while orders run: invocations by
//! service and status, attempts, provider call latency by interface and outcome, journal
//! flushes, and the gauges of running and waiting invocations. Behind the admin token.

use std::collections::HashMap;

use cairn_e2e::{Cairn, order_input};
use serde_json::json;

/// Scrapes `/metrics`: each sample line as `name{labels}` → value, checking every line parses.
async fn scrape(cairn: &Cairn) -> HashMap<String, f64> {
    let resp = cairn
        .admin_http
        .get(cairn.admin("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            (name.to_string(), value)
        })
        .collect()
}

fn get(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples.get(name).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_invocations_attempts_provider_calls_and_waiting_ones_under_load() {
    let cairn = Cairn::start().await;
    let anonymous = reqwest::get(cairn.admin("/metrics")).await.unwrap();
    assert_eq!(anonymous.status(), 401, "behind the admin token");

    // Three orders wait for a pending charge's webhook (none comes): waiting, no instance.
    let mut pending = order_input("w@example.com");
    pending["paymentMethod"] = json!("pm_card_pending");
    for i in 0..3 {
        cairn
            .send(
                &format!("/OrderOrchestrator/m-wait-{i}/ProcessOrder"),
                &pending,
            )
            .await;
    }
    // Forty orders at once, scraped while they run.
    let orders: Vec<_> = (0..40)
        .map(|i| {
            let cairn = &cairn;
            async move {
                cairn
                    .process_order(&format!("m-{i}"), &order_input("m@example.com"))
                    .await
            }
        })
        .collect();
    let (replies, during) = tokio::join!(futures::future::join_all(orders), async {
        let mut scrapes = Vec::new();
        for _ in 0..5 {
            scrapes.push(scrape(&cairn).await);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        scrapes
    });
    for reply in &replies {
        assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    }
    assert_eq!(during.len(), 5);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let samples = loop {
        let samples = scrape(&cairn).await;
        if get(&samples, "cairn_invocations_waiting") >= 3.0 || std::time::Instant::now() > deadline
        {
            break samples;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        get(
            &samples,
            r#"cairn_invocations_ended_total{service="OrderOrchestrator",status="succeeded"}"#
        ),
        40.0,
        "{samples:?}"
    );
    assert!(
        get(
            &samples,
            r#"cairn_attempts_total{service="OrderOrchestrator"}"#
        ) >= 43.0,
        "{samples:?}"
    );
    let charges = r#"cairn_provider_call_seconds_count{interface="cairn:commerce/payments",function="create-charge",outcome="ok"}"#;
    assert_eq!(get(&samples, charges), 43.0, "{samples:?}");
    let emails = r#"cairn_provider_call_seconds_count{interface="cairn:commerce/email",function="send-email",outcome="ok"}"#;
    assert_eq!(get(&samples, emails), 40.0, "{samples:?}");
    assert!(get(&samples, "cairn_journal_flush_seconds_count") > 0.0);
    assert!(get(&samples, "cairn_journal_flush_writes_sum") >= 40.0);
    assert_eq!(get(&samples, "cairn_attempts_running"), 0.0);
    assert_eq!(
        get(&samples, "cairn_invocations_waiting"),
        3.0,
        "{samples:?}"
    );
    // Every charge took less than the histogram's largest bucket (~13 s).
    let all = r#"cairn_provider_call_seconds_bucket{le="+Inf",interface="cairn:commerce/payments",function="create-charge",outcome="ok"}"#;
    assert_eq!(get(&samples, all), 43.0, "{samples:?}");
}
