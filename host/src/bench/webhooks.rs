//! The webhook part of `cairn bench`: signed Stripe `charge.succeeded` events for orders the
//! run confirmed, posted to `POST /webhooks/stripe` by 32 clients for the run's duration. Each
//! 200 is a verified event committed as a `WebhookProcessor` invocation; the processing (the
//! processor calls the order's `OnEvent`, which applies it with `ApplyEvent`) goes on behind
//! the answers, at most `CAIRN_WEBHOOK_MAX_PENDING` events at a time (past it the host answers
//! 503 and the client backs off 20 ms, as a provider retries). Reports accepted events per
//! second, the rate until the last one was processed, and host CPU per event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::get_json;
use super::process::Host;
use crate::mock::webhooks::{STRIPE_WEBHOOK_SECRET, stripe_signature};

const CLIENTS: usize = 32;

/// One signed event about `order`; `n` makes its id unique.
fn event(n: u64, order: &str) -> (String, String) {
    let body = json!({
        "id": format!("evt_bench_{n:08}"),
        "object": "event",
        "type": "charge.succeeded",
        "created": crate::storage::now_ms() / 1000,
        "data": {"object": {"id": format!("ch_bench_{n}"), "object": "charge",
                            "status": "succeeded", "metadata": {"order_id": order}}},
    })
    .to_string();
    let t = (crate::storage::now_ms() / 1000).to_string();
    (stripe_signature(STRIPE_WEBHOOK_SECRET, &t, &body), body)
}

pub(super) async fn webhooks(
    http: &reqwest::Client,
    host: &Host,
    orders: Arc<Vec<String>>,
    seconds: u64,
) -> anyhow::Result<Value> {
    anyhow::ensure!(!orders.is_empty(), "no orders to send events about");
    let url = format!("{}/webhooks/stripe", host.ingress);
    let next = Arc::new(AtomicU64::new(0));
    let cpu_before = host.proc.cpu();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, url, next, orders) =
                (http.clone(), url.clone(), next.clone(), orders.clone());
            tokio::spawn(async move {
                let (mut accepted, mut refused) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let (signature, body) = event(n, &orders[n as usize % orders.len()]);
                    let sent = http
                        .post(&url)
                        .header("Stripe-Signature", signature)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(resp) if resp.status().is_success() => accepted += 1,
                        // Busy (503, Retry-After): back off a little, as a provider does.
                        _ => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (accepted, refused)
            })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for worker in workers {
        let (a, r) = worker.await?;
        accepted += a;
        refused += r;
    }
    let ingest = started.elapsed().as_secs_f64();
    // Until the processor has run every accepted event.
    let drain_deadline = Instant::now() + Duration::from_secs(120);
    let running = format!(
        "{}/invocations?service=WebhookProcessor&status=running&limit=1",
        host.admin
    );
    while get_json(http, running.clone()).await?["invocations"]
        .as_array()
        .is_some_and(|list| !list.is_empty())
    {
        anyhow::ensure!(
            Instant::now() < drain_deadline,
            "webhook events still running after 2 min"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let processed_in = started.elapsed().as_secs_f64();
    let cpu = host.proc.cpu() - cpu_before;
    let events = accepted as f64;
    Ok(json!({
        "clients": CLIENTS,
        "accepted": accepted,
        "refused": refused,
        "accepted_per_s": (events / ingest).round(),
        "processed_per_s": (events / processed_in).round(),
        "host_cpu_ms_per_event": (cpu.as_secs_f64() * 1000.0 / events.max(1.0) * 100.0).round() / 100.0,
    }))
}
