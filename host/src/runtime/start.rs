//! Starting an invocation of a service handler, the same way for the ingress and for calls and
//! sends between services: check the target against the active deployment of its service,
//! create the row (an idempotency key makes a repeat return the first invocation), run it.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanBuilder;
use tokio::task::JoinHandle;

use super::{Registry, Runtime, invoke};
use crate::bindings::handler::{HandlerKind, ServiceKind};
use crate::storage::{Invocation, NewInvocation, Outcome};
use crate::telemetry::ChildSpan;

/// A handler to invoke.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: String,
    pub key: Option<String>,
    pub handler: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}/{key}/{}", self.service, self.handler),
            None => write!(f, "{}/{}", self.service, self.handler),
        }
    }
}

/// Why a target cannot be invoked. The caller's mistake (a 400 or 404 at the ingress).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("unknown service {0:?}")]
    UnknownService(String),
    #[error("{service} is a keyed object: call POST /{service}/{{key}}/{handler}")]
    KeyNeeded { service: String, handler: String },
    #[error("{service} is a service without keys: call POST /{service}/{{handler}}")]
    NoKeys { service: String },
    #[error("the object key must not be empty")]
    EmptyKey,
    #[error("service {service} has no handler {handler:?}")]
    UnknownHandler { service: String, handler: String },
}

impl TargetError {
    /// Nothing answers at that address (404), as opposed to a malformed request (400).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            TargetError::UnknownService(_)
                | TargetError::NoKeys { .. }
                | TargetError::UnknownHandler { .. }
        )
    }
}

/// Time-ordered, unique invocation ids: `inv_` + UUIDv7.
pub fn new_invocation_id() -> String {
    format!("inv_{}", uuid::Uuid::now_v7().simple())
}

/// The invocation to create for `target`, pinned to what is active in `registry`; also
/// whether its handler is exclusive.
pub fn new_invocation(
    registry: &Registry,
    target: Target,
    input: Vec<u8>,
    idempotency: Option<(String, i64)>,
    not_before: Option<i64>,
) -> Result<(NewInvocation, bool), TargetError> {
    let Target {
        service,
        key,
        handler,
    } = target;
    let Some((deployment, info)) = registry.service(&service) else {
        return Err(TargetError::UnknownService(service));
    };
    match (info.kind, &key) {
        (ServiceKind::KeyedObject, None) => {
            return Err(TargetError::KeyNeeded { service, handler });
        }
        (ServiceKind::Service, Some(_)) => return Err(TargetError::NoKeys { service }),
        (_, Some(key)) if key.is_empty() => return Err(TargetError::EmptyKey),
        _ => {}
    }
    let Some(found) = info.handlers.iter().find(|h| h.name == handler) else {
        return Err(TargetError::UnknownHandler { service, handler });
    };
    let exclusive = key.is_some() && found.kind == HandlerKind::Exclusive;
    let new = NewInvocation {
        id: new_invocation_id(),
        service,
        handler,
        key,
        input,
        deployment_id: deployment.id.clone(),
        providers: registry.pins(deployment),
        idempotency,
        not_before,
        // Created in the span of what asked for it: its attempts continue that trace.
        trace_parent: crate::telemetry::current_traceparent(),
    };
    Ok((new, exclusive))
}

/// Runs a created invocation to its end in its own task, whoever asked for it.
pub fn spawn(runtime: &Arc<Runtime>, invocation: Invocation) -> JoinHandle<Outcome> {
    spawn_holding(runtime, invocation, ())
}

/// [`spawn`], holding `held` (a place in a bounded queue) until the invocation ends.
pub fn spawn_holding<T: Send + 'static>(
    runtime: &Arc<Runtime>,
    invocation: Invocation,
    held: T,
) -> JoinHandle<Outcome> {
    let runtime = runtime.clone();
    // A child of whatever started it (an ingress request, a caller's journal entry).
    let span = ChildSpan::continuing(invocation.trace_parent.as_deref(), || {
        let mut attributes = vec![
            KeyValue::new("invocation.id", invocation.id.clone()),
            KeyValue::new("service", invocation.service.clone()),
            KeyValue::new("handler", invocation.handler.clone()),
        ];
        attributes.extend(invocation.key.clone().map(|key| KeyValue::new("key", key)));
        SpanBuilder::from_name(format!("{}/{}", invocation.service, invocation.handler))
            .with_attributes(attributes)
    });
    tokio::spawn(async move {
        let outcome = invoke(&runtime, invocation, &span).await;
        drop(held);
        outcome
    })
}
