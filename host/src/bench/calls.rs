//! Round trips between services, with the `Relay` test object (`relay_service.wasm`): a call to
//! a zero-step `Steps/Run` through `Relay/*/Call` (the caller suspends and is replayed with the
//! result), and a promise: from `POST /promises/{id}/resolve` to the waiter's output.

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use super::process::Host;
use super::{deploy, fresh_key, get_json, percentiles, success};

const ROUNDS: usize = 200;

/// Deploys the relay (after the steps service, its callee) and measures both round trips.
pub(super) async fn calls(
    http: &reqwest::Client,
    host: &Host,
    components: &Path,
) -> anyhow::Result<Value> {
    if let Some(skipped) = deploy(http, host, &components.join("relay_service.wasm")).await? {
        return Ok(skipped);
    }
    let target = json!({"service": "Steps", "handler": "Run"});
    let mut call = Vec::new();
    for _ in 0..ROUNDS {
        let key = fresh_key("call");
        let started = Instant::now();
        let resp = http
            .post(format!("{}/Relay/{key}/Call", host.ingress))
            .json(&json!({"target": target, "input": {"steps": 0}}))
            .send()
            .await?;
        success(resp, "Relay/Call").await?;
        call.push(started.elapsed());
    }
    let mut promise = Vec::new();
    for _ in 0..ROUNDS {
        let key = fresh_key("promise");
        let sent: Value = http
            .post(format!("{}/Relay/{key}/Await/send", host.ingress))
            .json(&json!({}))
            .send()
            .await?
            .json()
            .await?;
        let id = sent["invocationId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let promise_id = loop {
            let inv = get_json(http, format!("{}/invocations/{id}", host.admin)).await?;
            if inv["journal"][1]["name"] == "wait" {
                break inv["journal"][0]["result"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        };
        let started = Instant::now();
        let resp = http
            .post(format!("{}/promises/{promise_id}/resolve", host.ingress))
            .json(&json!(1))
            .send()
            .await?;
        success(resp, "resolve").await?;
        let output = http
            .get(format!("{}/invocations/{id}/output", host.ingress))
            .send()
            .await?;
        success(output, "output").await?;
        promise.push(started.elapsed());
    }
    Ok(json!({"call": percentiles(call), "promise": percentiles(promise)}))
}
