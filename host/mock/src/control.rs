//! The `/_mock` endpoints tests drive the fake with; they are not part of any provider API, are
//! not recorded, counted, delayed or faulted.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /_mock/stats` | [`Stats`](crate::Stats) |
//! | `POST /_mock/reset` | forget all data, stats, recorded requests and faults → 204 |
//! | `GET /_mock/faults`, `POST /_mock/faults` | pending faults; POST `{"stripe": {"fail_next": N, "status": 503, "after_effect": false}, "shippo": null}` sets (object) or clears (`null`) each named provider and answers the pending faults |
//! | `GET /_mock/requests?provider=stripe\|sendgrid\|shippo` | recorded requests, oldest first |
//! | `GET /_mock/config`, `POST /_mock/config` | `{"decline_rate": 0.05, "delay_ms": [0, 0]}`; POST changes the fields given |
//! | `GET /_mock/webhooks` | the webhooks sent, oldest first, with the host's answers |
//! | `GET /_mock/webhooks/config`, `POST /_mock/webhooks/config` | `{"target": "http://127.0.0.1:8080", "delay_ms": 200, "pending_ms": 2000}` (no target: none sent) |
//! | `POST /_mock/webhooks/{event_id}/redeliver` | sends a sent event again, signed afresh → the host's status |
//! | `POST /_mock/webhooks/forge` | `{"endpoint": "stripe", "body": {...}}` sent with a wrong signature or token → the host's status |

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::{FaultSpec, Faults};
use crate::state::{MockState, Provider};
use crate::webhooks::{self, WebhookConfig};

pub(crate) fn routes() -> Router<MockState> {
    Router::new()
        .route("/_mock/stats", get(stats))
        .route("/_mock/reset", post(reset))
        .route("/_mock/faults", get(faults).post(set_faults))
        .route("/_mock/requests", get(requests))
        .route("/_mock/config", get(config).post(set_config))
        .route("/_mock/webhooks", get(sent_webhooks))
        .route(
            "/_mock/webhooks/config",
            get(webhook_config).post(set_webhook_config),
        )
        .route("/_mock/webhooks/forge", post(forge_webhook))
        .route(
            "/_mock/webhooks/{event_id}/redeliver",
            post(redeliver_webhook),
        )
}

async fn sent_webhooks(State(state): State<MockState>) -> Json<Value> {
    Json(json!(state.sent_webhooks()))
}

async fn webhook_config(State(state): State<MockState>) -> Json<WebhookConfig> {
    Json(state.webhooks())
}

async fn set_webhook_config(State(state): State<MockState>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<WebhookConfig>(&body) {
        Ok(config) => {
            state.set_webhooks(config);
            Json(state.webhooks()).into_response()
        }
        Err(err) => bad_request(format!(
            "expected {{\"target\": \"http://127.0.0.1:8080\", \"delay_ms\": 200, \"pending_ms\": 2000}}: {err}"
        )),
    }
}

async fn redeliver_webhook(
    State(state): State<MockState>,
    axum::extract::Path(event_id): axum::extract::Path<String>,
) -> Response {
    match webhooks::redeliver(&state, &event_id).await {
        Some(status) => Json(json!({"eventId": event_id, "hostStatus": status})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no webhook {event_id:?} was sent")})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Forgery {
    endpoint: webhooks::Endpoint,
    body: Value,
}

async fn forge_webhook(State(state): State<MockState>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Forgery>(&body) {
        Ok(forgery) => {
            let status = webhooks::forge(&state, forgery.endpoint, &forgery.body.to_string()).await;
            Json(json!({"hostStatus": status})).into_response()
        }
        Err(err) => bad_request(format!(
            "expected {{\"endpoint\": \"stripe\"|\"shippo\"|\"sendgrid\", \"body\": {{...}}}}: {err}"
        )),
    }
}

fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": message.into()})),
    )
        .into_response()
}

async fn stats(State(state): State<MockState>) -> Response {
    Json(state.stats()).into_response()
}

async fn reset(State(state): State<MockState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

async fn faults(State(state): State<MockState>) -> Json<Faults> {
    Json(state.faults())
}

async fn set_faults(State(state): State<MockState>, body: axum::body::Bytes) -> Response {
    let request: serde_json::Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(map) => map,
        Err(err) => {
            return bad_request(format!(
                "expected a JSON object keyed by stripe/sendgrid/shippo: {err}"
            ));
        }
    };
    let mut updates = Vec::new();
    for (name, value) in request {
        let Some(provider) = Provider::parse(&name) else {
            return bad_request(format!(
                "unknown provider {name:?}: expected stripe, sendgrid, shippo or adyen"
            ));
        };
        let fault = match value {
            Value::Null => None,
            value => match serde_json::from_value::<FaultSpec>(value) {
                Ok(spec) => {
                    if let Err(why) = spec.validate() {
                        return bad_request(format!("{name}: {why}"));
                    }
                    Some(spec)
                }
                Err(err) => {
                    return bad_request(format!(
                        "{name}: expected {{\"fail_next\": N, \"status\": 500, \"after_effect\": false}} or null: {err}"
                    ));
                }
            },
        };
        updates.push((provider, fault));
    }
    let faults = state.with(|w| {
        for (provider, fault) in updates {
            w.faults.set(provider, fault);
        }
        w.faults.clone()
    });
    Json(faults).into_response()
}

#[derive(Deserialize)]
struct RequestsQuery {
    provider: Option<String>,
}

async fn requests(State(state): State<MockState>, Query(query): Query<RequestsQuery>) -> Response {
    let provider = match query.provider.as_deref() {
        None | Some("") => None,
        Some(name) => match Provider::parse(name) {
            Some(provider) => Some(provider),
            None => {
                return bad_request(format!(
                    "unknown provider {name:?}: expected stripe, sendgrid, shippo or adyen"
                ));
            }
        },
    };
    Json(state.requests(provider)).into_response()
}

fn config_json(state: &MockState) -> Json<Value> {
    let config = state.config();
    Json(json!({
        "decline_rate": config.decline_rate,
        "delay_ms": [config.delay_ms.0, config.delay_ms.1],
    }))
}

async fn config(State(state): State<MockState>) -> Json<Value> {
    config_json(&state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigUpdate {
    decline_rate: Option<f64>,
    delay_ms: Option<(u64, u64)>,
}

async fn set_config(State(state): State<MockState>, body: axum::body::Bytes) -> Response {
    let update: ConfigUpdate = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(err) => {
            return bad_request(format!(
                "expected {{\"decline_rate\": 0.05, \"delay_ms\": [MIN, MAX]}}: {err}"
            ));
        }
    };
    let mut config = state.config();
    if let Some(rate) = update.decline_rate {
        if !(0.0..=1.0).contains(&rate) {
            return bad_request(format!(
                "decline_rate must be between 0.0 and 1.0, got {rate}"
            ));
        }
        config.decline_rate = rate;
    }
    if let Some((lo, hi)) = update.delay_ms {
        if lo > hi {
            return bad_request(format!("delay_ms minimum {lo} is above the maximum {hi}"));
        }
        config.delay_ms = (lo, hi);
    }
    state.set_config(config);
    config_json(&state).into_response()
}
