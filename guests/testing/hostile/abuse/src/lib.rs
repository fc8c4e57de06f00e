//! `hostile-abuse` (test only): a payments provider whose `create-charge` abuses what the host
//! gives it, as the order id's prefix says (`api-base` and `other-base` are its configuration):
//!
//! - `sleep-…`: sleeps an hour in WASI (`std::thread::sleep`), blocked outside wasm code where no
//!   CPU limit can see it;
//! - `hang-…`: `GET {api-base}/hang` with the longest `timeout-ms` there is, to a server that
//!   never answers;
//! - `header-…`: eight requests, each with a 32 MiB header value;
//! - `log-…`: 100 MiB through `cairn:durable/log`, and a message that forges a host log line;
//! - `echo-…`: `GET {api-base}/echo` with `Authorization: Bearer {{secret:ABUSE_KEY}}`, and
//!   answers a charge whose id carries the response body (an echo of the secret);
//! - `leak-…`: the same request to `{other-base}/echo`, an allowed origin the secret is not
//!   bound to;
//! - `hosthdr-…`: `GET {api-base}/echo` with `Host: evil.example`, `Transfer-Encoding` and
//!   `Proxy-Authorization` headers.
//!
//! Whatever got through is answered as the charge id (`ch_<what>`), and whatever was refused as
//! `invalid-request` naming it, so the tests read the outcome off the order.

use cairn_sdk::bindings::cairn::durable::call_context;
use cairn_sdk::http::Request;
use hostile_common::{Charge, ChargeRequest, ProviderError};

hostile_common::payments_provider!(name = "hostile-abuse", create_charge = create_charge);

fn create_charge(req: ChargeRequest) -> Result<Charge, ProviderError> {
    let base = call_context::config("api-base").unwrap_or_default();
    let (mode, _) = req.order_id.split_once('-').unwrap_or((&req.order_id, ""));
    let answer = match mode {
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Ok("slept".to_string())
        }
        "hang" => Request::get(format!("{base}/hang"))
            .timeout_ms(u32::MAX)
            .send()
            .map(|r| format!("hang_{}", r.status()))
            .map_err(|e| e.to_string()),
        "header" => {
            let mut refused = Vec::new();
            for _ in 0..8 {
                let huge = "x".repeat(32 << 20);
                let sent = Request::get(format!("{base}/echo"))
                    .header("x-huge", huge)
                    .send();
                refused
                    .push(sent.map_or_else(|e| e.to_string(), |r| format!("HTTP {}", r.status())));
            }
            Err(refused.join("; "))
        }
        "log" => {
            let chunk = "y".repeat(64 << 10);
            for _ in 0..1600 {
                cairn_sdk::log::error(&chunk);
            }
            cairn_sdk::log::error("ok\n2026-01-01T00:00:00.000000Z ERROR cairn: forged by a guest");
            Ok("logged".to_string())
        }
        "echo" => echo(&base),
        "leak" => echo(&call_context::config("other-base").unwrap_or_default()),
        "hosthdr" => Request::get(format!("{base}/echo"))
            .header("Host", "evil.example")
            .header("Transfer-Encoding", "chunked")
            .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
            .send()
            .map(|r| format!("hosthdr_{}", r.status()))
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown mode {other:?}")),
    };
    match answer {
        Ok(what) => Ok(Charge {
            id: format!("ch_{what}"),
            amount: req.amount,
            currency: req.currency,
            status: "succeeded".into(),
        }),
        Err(why) => Err(ProviderError::InvalidRequest(why)),
    }
}

/// Sends the granted secret to `{base}/echo`; the echoed body as the answer.
fn echo(base: &str) -> Result<String, String> {
    Request::get(format!("{base}/echo"))
        .bearer_auth("{{secret:ABUSE_KEY}}")
        .send()
        .map(|r| format!("echo_{}", String::from_utf8_lossy(r.body())))
        .map_err(|e| e.to_string())
}
