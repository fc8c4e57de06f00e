//! Bounds on what the ingress takes on for callers (invariant 8): invocations queued per
//! (service, key), and `/send` invocations accepted and not finished. Past a bound a request is
//! refused with 429 and `Retry-After` before anything is written; the caller tries again later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

/// Seconds a refused caller is told to wait.
const RETRY_AFTER_SECS: u32 = 1;

/// The ingress's bounds and what they hold now.
pub(super) struct Admission {
    per_key: usize,
    /// Invocations admitted and not finished, per `service/key`.
    keys: Mutex<HashMap<String, usize>>,
    sends: Arc<Semaphore>,
}

/// Held by an admitted invocation until it ends.
pub(super) struct Ticket {
    admission: Arc<Admission>,
    key: Option<String>,
    _send: Option<OwnedSemaphorePermit>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut keys = self
            .admission
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = keys.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                keys.remove(&key);
            }
        }
    }
}

/// A request refused by a bound.
pub(super) struct Full(ApiError);

impl IntoResponse for Full {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        response
    }
}

impl Admission {
    pub(super) fn new(per_key: usize, sends: usize) -> Arc<Self> {
        Arc::new(Admission {
            per_key: per_key.max(1),
            keys: Mutex::default(),
            sends: Arc::new(Semaphore::new(sends.max(1))),
        })
    }

    /// Admits one invocation of `service` (on `key`, if keyed; a `/send` if `send`).
    pub(super) fn admit(
        self: &Arc<Self>,
        service: &str,
        key: Option<&str>,
        send: bool,
    ) -> Result<Ticket, Full> {
        let send = if send {
            Some(self.sends.clone().try_acquire_owned().map_err(|_| {
                Full(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_pending",
                    "too many sent invocations are pending on this host; retry later",
                ))
            })?)
        } else {
            None
        };
        let key = match key {
            Some(key) => {
                let name = format!("{service}/{key}");
                let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
                let count = keys.entry(name.clone()).or_default();
                if *count >= self.per_key {
                    return Err(Full(ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "key_queue_full",
                        format!(
                            "{} invocations are already queued on {service}/{key}; retry later",
                            self.per_key
                        ),
                    )));
                }
                *count += 1;
                Some(name)
            }
            None => None,
        };
        Ok(Ticket {
            admission: self.clone(),
            key,
            _send: send,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_sends_are_bounded_and_freed() {
        let admission = Admission::new(2, 3);
        let a = admission.admit("S", Some("k"), false).ok().unwrap();
        let b = admission.admit("S", Some("k"), true).ok().unwrap();
        let full = admission.admit("S", Some("k"), false).err().unwrap();
        assert_eq!(full.0.code, "key_queue_full");
        let response = full.into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        // Other keys are not held back; sends are bounded across keys.
        let _c = admission.admit("S", Some("other"), true).ok().unwrap();
        let _d = admission.admit("S", None, true).ok().unwrap();
        assert_eq!(
            admission.admit("S", None, true).err().unwrap().0.code,
            "too_many_pending"
        );
        drop(a);
        drop(b);
        let _e = admission.admit("S", Some("k"), true).ok().unwrap();
        assert!(admission.keys.lock().unwrap().get("S/other").is_some());
    }
}
