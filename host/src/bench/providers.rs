//! The same provider call in two languages: the `cairn:commerce/email` call of sequential orders
//! with the bundled Rust SendGrid provider, then with the JavaScript one (`guests/js`, built by
//! componentize-js), deployed as the email provider. Each figure is the journal's duration of
//! the email call (`durationUs`): a fresh instance of the provider (its instantiation), its code
//! and the request to the fake. Also the two components' sizes and the JavaScript one's
//! deployment time.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::process::Host;
use super::{fresh_key, get_json, percentiles, process_order, success};

const ROUNDS: usize = 100;
const EMAIL: &str = "cairn:commerce/email@0.1.0";

/// Measures the email call with the active (Rust) provider, deploys the JavaScript one at
/// `js` and measures it again.
pub(super) async fn email_call(
    http: &reqwest::Client,
    host: &Host,
    components: &Path,
    js: &Path,
) -> anyhow::Result<Value> {
    let Ok(js_bytes) = std::fs::read(js) else {
        return Ok(
            json!({"skipped": format!("{} not found (node guests/js/build.mjs)", js.display())}),
        );
    };
    let rust_size = std::fs::metadata(components.join("sendgrid_email.wasm"))
        .map(|m| m.len())
        .unwrap_or(0);
    let rust = rounds(http, host).await?;
    let started = std::time::Instant::now();
    // The role's settings (the fake's base URL) and, as the operator says here, its key.
    let resp = http
        .post(format!("{}/deployments", host.admin))
        .header("content-type", "application/wasm")
        .header(
            crate::http_api::deployments::SETTINGS_HEADER,
            json!({"inheritSecrets": true}).to_string(),
        )
        .body(js_bytes.clone())
        .send()
        .await?;
    success(resp, format_args!("deploying {}", js.display())).await?;
    // Validation and compilation (or a load from the compilation cache).
    let deploy_ms = started.elapsed().as_millis();
    let javascript = rounds(http, host).await?;
    Ok(json!({
        "rust": {"email_call": rust, "bytes": rust_size},
        "javascript": {"email_call": javascript, "bytes": js_bytes.len(), "deploy_ms": deploy_ms},
    }))
}

/// The email call's duration in `ROUNDS` sequential orders (after a few to warm up).
async fn rounds(http: &reqwest::Client, host: &Host) -> anyhow::Result<Value> {
    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS + 5 {
        let key = fresh_key("lang");
        let (_, status) = process_order(http, &host.ingress, &key).await;
        anyhow::ensure!(
            status.as_deref() == Some("confirmed"),
            "order {key}: {status:?}"
        );
        let listed = get_json(
            http,
            format!(
                "{}/invocations?service=OrderOrchestrator&key={key}",
                host.admin
            ),
        )
        .await?;
        let id = listed["invocations"][0]["id"].as_str().unwrap_or_default();
        let inv = get_json(http, format!("{}/invocations/{id}", host.admin)).await?;
        anyhow::ensure!(
            inv["providers"][EMAIL].is_string(),
            "order {key} made no email call: {inv}"
        );
        let micros = inv["journal"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("send-email"))
            })
            .and_then(|e| e["durationUs"].as_u64())
            .ok_or_else(|| anyhow::anyhow!("order {key}: no email entry: {inv}"))?;
        if round >= 5 {
            samples.push(Duration::from_micros(micros));
        }
    }
    Ok(percentiles(samples))
}
