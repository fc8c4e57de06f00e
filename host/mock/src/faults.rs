//! The gate every provider request passes, and the faults tests inject through it.
//!
//! For a request to `/v1/…` (Stripe), `/v3/…` (SendGrid), `/transactions…` (Shippo) or `/v71/…`
//! (Adyen) the gate:
//! 1. reads the body, records the request (`GET /_mock/requests`) and counts it;
//! 2. takes one pending fault of that provider, if any (`POST /_mock/faults`);
//! 3. with a fault and no `after_effect`: waits the simulated latency and answers the fault's status
//!    in the provider's error shape — the handler never runs (a failure in front of the API);
//! 4. otherwise runs the handler **detached** (a spawned task), so an effect completes even when the
//!    client hangs up mid-request, as a real server would; with an `after_effect` fault the handler's
//!    answer is then replaced by the fault (the effect happened, the response was lost);
//! 5. adds Stripe's `Request-Id: req_…` to every Stripe response.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::state::{MockState, Provider, RecordedRequest, random_id};
use crate::{MAX_BODY_BYTES, adyen, sendgrid, shippo, stripe};

/// An injected failure: the next `fail_next` requests to a provider answer `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// How many requests still fail (`1000000` ≈ always). Default 1.
    #[serde(default = "default_fail_next")]
    pub fail_next: u64,
    /// HTTP status to answer, 400..=599. Default 500.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Perform and record the effect first, then answer the error (a lost response). Default false.
    #[serde(default)]
    pub after_effect: bool,
}

fn default_fail_next() -> u64 {
    1
}

fn default_status() -> u16 {
    500
}

impl FaultSpec {
    /// Checks the status is an error status the fake can answer.
    pub fn validate(&self) -> Result<(), String> {
        if !(400..=599).contains(&self.status) {
            return Err(format!(
                "status must be an HTTP error status between 400 and 599, got {}",
                self.status
            ));
        }
        Ok(())
    }
}

/// The pending faults of each provider (`GET/POST /_mock/faults`); `null` = none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    pub stripe: Option<FaultSpec>,
    pub sendgrid: Option<FaultSpec>,
    pub shippo: Option<FaultSpec>,
    #[serde(default)]
    pub adyen: Option<FaultSpec>,
}

impl Faults {
    fn slot(&mut self, provider: Provider) -> &mut Option<FaultSpec> {
        match provider {
            Provider::Stripe => &mut self.stripe,
            Provider::Sendgrid => &mut self.sendgrid,
            Provider::Shippo => &mut self.shippo,
            Provider::Adyen => &mut self.adyen,
        }
    }

    /// Sets or clears a provider's fault; a spec with `fail_next: 0` clears it.
    pub(crate) fn set(&mut self, provider: Provider, fault: Option<FaultSpec>) {
        *self.slot(provider) = fault.filter(|f| f.fail_next > 0);
    }

    /// Consumes one failure of `provider`, if any is pending.
    pub(crate) fn take(&mut self, provider: Provider) -> Option<FaultSpec> {
        let slot = self.slot(provider);
        let fault = (*slot)?;
        let remaining = fault.fail_next.saturating_sub(1);
        *slot = (remaining > 0).then_some(FaultSpec {
            fail_next: remaining,
            ..fault
        });
        Some(fault)
    }
}

/// The provider's own error answer for `status` (used for faults).
pub(crate) fn error_response(provider: Provider, status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match provider {
        Provider::Stripe => stripe::fault_response(status),
        Provider::Sendgrid => sendgrid::fault_response(status),
        Provider::Shippo => shippo::fault_response(status),
        Provider::Adyen => adyen::fault_response(status),
    };
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

/// Middleware in front of every route: see the module docs.
pub(crate) async fn gate(State(state): State<MockState>, req: Request, next: Next) -> Response {
    let Some(provider) = Provider::from_path(req.uri().path()) else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return stamp(provider, error_response(provider, 413)),
    };
    let recorded = RecordedRequest::new(
        provider,
        parts.method.as_str(),
        &parts.uri,
        &parts.headers,
        &bytes,
    );
    let fault = state.with(|w| {
        w.record_request(recorded);
        w.faults.take(provider)
    });
    let response = match fault {
        Some(fault) if !fault.after_effect => {
            state.latency().await;
            error_response(provider, fault.status)
        }
        _ => {
            let req = Request::from_parts(parts, Body::from(bytes));
            let answered = match tokio::spawn(next.run(req)).await {
                Ok(response) => response,
                Err(err) => {
                    tracing::error!(%err, ?provider, "mock provider handler failed");
                    error_response(provider, 500)
                }
            };
            match fault {
                Some(fault) => error_response(provider, fault.status),
                None => answered,
            }
        }
    };
    stamp(provider, response)
}

/// Adds Stripe's `Request-Id` header.
fn stamp(provider: Provider, mut response: Response) -> Response {
    if provider == Provider::Stripe
        && let Ok(id) = HeaderValue::from_str(&random_id("req_", 14))
    {
        response.headers_mut().insert("request-id", id);
    }
    response
}

/// Fallback for unknown paths: a 404 in the shape of the provider the path belongs to.
pub(crate) async fn not_found(method: Method, uri: Uri) -> Response {
    match Provider::from_path(uri.path()) {
        Some(Provider::Stripe) => stripe::unrecognized_url(&method, uri.path()),
        Some(Provider::Sendgrid) => sendgrid::not_found(),
        Some(Provider::Shippo) => shippo::not_found(),
        Some(Provider::Adyen) => adyen::not_found(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(
                serde_json::json!({"error": format!("no route for {method} {}", uri.path())}),
            ),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_counts_down_and_clears() {
        let mut faults = Faults::default();
        faults.set(
            Provider::Shippo,
            Some(FaultSpec {
                fail_next: 2,
                status: 503,
                after_effect: false,
            }),
        );
        assert_eq!(faults.take(Provider::Stripe), None);
        assert_eq!(faults.take(Provider::Shippo).map(|f| f.status), Some(503));
        assert_eq!(faults.shippo.map(|f| f.fail_next), Some(1));
        assert!(faults.take(Provider::Shippo).is_some());
        assert_eq!(faults.take(Provider::Shippo), None);
        assert_eq!(faults, Faults::default());
    }

    #[test]
    fn zero_clears_and_defaults_apply() {
        let spec: FaultSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(
            spec,
            FaultSpec {
                fail_next: 1,
                status: 500,
                after_effect: false
            }
        );
        let mut faults = Faults::default();
        faults.set(
            Provider::Stripe,
            Some(FaultSpec {
                fail_next: 0,
                ..spec
            }),
        );
        assert_eq!(faults.stripe, None);
        assert!(
            FaultSpec {
                status: 200,
                ..spec
            }
            .validate()
            .is_err()
        );
        assert!(serde_json::from_str::<FaultSpec>(r#"{"fail":1}"#).is_err());
    }

    #[test]
    fn rate_limit_faults_say_when_to_retry() {
        for provider in [
            Provider::Stripe,
            Provider::Sendgrid,
            Provider::Shippo,
            Provider::Adyen,
        ] {
            let response = error_response(provider, 429);
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(response.headers()["retry-after"], "1");
        }
    }
}
