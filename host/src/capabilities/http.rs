//! `cairn:durable/http`: outbound HTTP. From a service it is one journal entry per request; from a
//! provider it is recorded as an exchange under the provider call's entry.

use crate::bindings::http::{Host, HttpError, Request, Response};
use crate::journal::{Effect, EntryKind};
use crate::runtime::{HostState, Role, misuse, trap};

/// HTTP exchanges one provider call records; more are counted, not kept.
const MAX_EXCHANGES: usize = 64;

impl Host for HostState {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let component = self.component.clone();
        // An oversized URL or header is refused before anything is copied or recorded.
        if let Err(refused) = crate::outbound::check_shape(&req) {
            return Ok(Err(refused));
        }
        match &mut self.role {
            Role::Service(svc) => {
                let (outbound, policy) = (svc.runtime.outbound.clone(), svc.policy.clone());
                let name = req.method.to_ascii_uppercase();
                let request = req.clone();
                svc.journal
                    .record(EntryKind::Http, &name, &req, |_| async move {
                        let result = outbound.send(&policy, &request).await;
                        log_refusal(&component, &request, &result);
                        Ok(Effect::value(result))
                    })
                    .await
                    .map_err(trap)
            }
            Role::Provider(ctx) => {
                // Kept in the context while it is sent: recorded unanswered if the call is
                // stopped meanwhile.
                let req = &*ctx.in_flight.insert(req);
                let (result, exchange) = ctx.runtime.outbound.send_recorded(&ctx.policy, req).await;
                let req = ctx.in_flight.take().expect("the request in flight");
                log_refusal(&component, &req, &result);
                tracing::debug!(%component, method = %req.method, url = %req.url, ok = result.is_ok(), "provider http");
                if ctx.exchanges.len() < MAX_EXCHANGES {
                    ctx.exchanges.push(exchange);
                } else if ctx.exchanges.len() == MAX_EXCHANGES {
                    let omitted =
                        format!("more than {MAX_EXCHANGES} exchanges: the rest are not recorded");
                    ctx.exchanges
                        .push(serde_json::Value::from(omitted).to_string());
                }
                Ok(result)
            }
            Role::Describe => Err(misuse("http.send is not available during describe".into())),
        }
    }
}

/// A refused request is a typed error to the guest and a warning in the host's log.
fn log_refusal(component: &str, req: &Request, result: &Result<Response, HttpError>) {
    if let Err(HttpError::Denied(reason)) = result {
        tracing::warn!(%component, method = %req.method, url = %req.url, %reason, "outbound request refused");
    }
}
