//! `cairn bench --traces`: an OTLP/HTTP sink in the benchmark's process that takes the host's
//! span batches and counts them (requests and bytes, not decoded), so the benchmark measures what
//! exporting costs the host with a collector on the same machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use serde_json::{Value, json};

/// What the sink received.
#[derive(Default)]
pub(super) struct Sink {
    exports: AtomicU64,
    bytes: AtomicU64,
}

impl Sink {
    /// Serves `POST /v1/traces` on an ephemeral loopback port; the endpoint to give the host.
    pub(super) async fn start() -> anyhow::Result<(Arc<Sink>, String)> {
        let sink = Arc::new(Sink::default());
        let counted = sink.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                counted.exports.fetch_add(1, Ordering::Relaxed);
                counted
                    .bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                async { axum::http::StatusCode::OK }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((sink, endpoint))
    }

    /// `{"exports": n, "kib": k}`.
    pub(super) fn report(&self) -> Value {
        json!({
            "exports": self.exports.load(Ordering::Relaxed),
            "kib": self.bytes.load(Ordering::Relaxed) / 1024,
        })
    }
}
