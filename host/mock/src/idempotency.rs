//! Stripe's idempotency layer (providers.md 1.6), as the fake implements it.
//!
//! - `Idempotency-Key` on a POST reserves the key before the endpoint executes; the status and body
//!   of that first execution (success, 402 decline, or any saved error) are stored and replayed to
//!   later requests with the same key, with `Idempotent-Replayed: true`.
//! - The same key with other parameters or on another endpoint → 400 `idempotency_error`.
//! - The same key while the first request still executes → 409 `idempotency_key_in_use`.
//! - Validation failures (400) and auth failures (401, checked before the key is looked at) are not
//!   saved: the reservation is released and a retry with the same key executes afresh. Injected
//!   faults without `after_effect` sit in front of this layer and are not saved either.
//!
//! Keys are global to the fake (one Stripe account) and never expire.

use std::collections::HashMap;

use axum::http::StatusCode;

use crate::state::MockState;

/// What the first execution under a key answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Saved {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
}

#[derive(Debug)]
enum Entry {
    InFlight {
        endpoint: String,
        params: String,
        token: u64,
    },
    Done {
        endpoint: String,
        params: String,
        saved: Saved,
    },
}

/// All keys seen so far.
#[derive(Debug, Default)]
pub(crate) struct Store {
    entries: HashMap<String, Entry>,
    next_token: u64,
}

/// The outcome of presenting a key.
#[derive(Debug, PartialEq)]
pub(crate) enum Begin {
    /// New key: it is now reserved under the returned token.
    Fresh(u64),
    /// Same request as before: answer with what was saved.
    Replay(Saved),
    /// Same key, other parameters (`None`) or another endpoint (`Some(first endpoint)`).
    Mismatch(Option<String>),
    /// The first request with this key is still executing.
    InUse,
}

impl Store {
    pub(crate) fn begin(&mut self, key: &str, endpoint: &str, params: &str) -> Begin {
        match self.entries.get(key) {
            None => {
                self.next_token += 1;
                let token = self.next_token;
                self.entries.insert(
                    key.to_string(),
                    Entry::InFlight {
                        endpoint: endpoint.to_string(),
                        params: params.to_string(),
                        token,
                    },
                );
                Begin::Fresh(token)
            }
            Some(Entry::InFlight { endpoint: e, .. } | Entry::Done { endpoint: e, .. })
                if e != endpoint =>
            {
                Begin::Mismatch(Some(e.clone()))
            }
            Some(Entry::InFlight { params: p, .. } | Entry::Done { params: p, .. })
                if p != params =>
            {
                Begin::Mismatch(None)
            }
            Some(Entry::InFlight { .. }) => Begin::InUse,
            Some(Entry::Done { saved, .. }) => Begin::Replay(saved.clone()),
        }
    }

    /// Ends the reservation `token` of `key`: stores `saved`, or forgets the key when `None`.
    pub(crate) fn finish(&mut self, key: &str, token: u64, saved: Option<Saved>) {
        let Some(Entry::InFlight {
            token: held,
            endpoint,
            params,
        }) = self.entries.get(key)
        else {
            return;
        };
        if *held != token {
            return;
        }
        match saved {
            Some(saved) => {
                let entry = Entry::Done {
                    endpoint: endpoint.clone(),
                    params: params.clone(),
                    saved,
                };
                self.entries.insert(key.to_string(), entry);
            }
            None => {
                self.entries.remove(key);
            }
        }
    }
}

/// The canonical form of a form body for comparison: pairs sorted, so parameter order is ignored.
pub(crate) fn fingerprint(params: &[(String, String)]) -> String {
    let mut pairs: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}:{k}={v}", k.len()))
        .collect();
    pairs.sort();
    pairs.join("&")
}

/// A reserved key; released (nothing saved) when dropped without [`Reservation::save`], so an
/// abandoned request never leaves its key stuck "in use".
pub(crate) struct Reservation {
    state: MockState,
    key: String,
    token: u64,
    finished: bool,
}

impl Reservation {
    pub(crate) fn new(state: MockState, key: String, token: u64) -> Self {
        Reservation {
            state,
            key,
            token,
            finished: false,
        }
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Saves the answer of the first execution for replays.
    pub(crate) fn save(mut self, status: StatusCode, body: String) {
        self.finished = true;
        let (key, token) = (std::mem::take(&mut self.key), self.token);
        self.state.with(|w| {
            w.idempotency
                .finish(&key, token, Some(Saved { status, body }))
        });
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.finished {
            let (key, token) = (std::mem::take(&mut self.key), self.token);
            self.state.with(|w| w.idempotency.finish(&key, token, None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(body: &str) -> Saved {
        Saved {
            status: StatusCode::OK,
            body: body.to_string(),
        }
    }

    #[test]
    fn first_use_reserves_then_replays() {
        let mut store = Store::default();
        let Begin::Fresh(token) = store.begin("k", "/v1/charges", "a") else {
            panic!("expected a fresh key");
        };
        assert_eq!(store.begin("k", "/v1/charges", "a"), Begin::InUse);
        store.finish("k", token, Some(saved("{}")));
        assert_eq!(
            store.begin("k", "/v1/charges", "a"),
            Begin::Replay(saved("{}"))
        );
    }

    #[test]
    fn other_params_or_endpoint_conflict() {
        let mut store = Store::default();
        let Begin::Fresh(token) = store.begin("k", "/v1/charges", "a") else {
            panic!("expected a fresh key");
        };
        assert_eq!(store.begin("k", "/v1/charges", "b"), Begin::Mismatch(None));
        store.finish("k", token, Some(saved("{}")));
        assert_eq!(store.begin("k", "/v1/charges", "b"), Begin::Mismatch(None));
        assert_eq!(
            store.begin("k", "/v1/refunds", "a"),
            Begin::Mismatch(Some("/v1/charges".to_string()))
        );
    }

    #[test]
    fn released_keys_execute_again() {
        let mut store = Store::default();
        let Begin::Fresh(token) = store.begin("k", "/v1/charges", "a") else {
            panic!("expected a fresh key");
        };
        store.finish("k", token, None);
        assert!(matches!(
            store.begin("k", "/v1/charges", "b"),
            Begin::Fresh(_)
        ));
    }

    #[test]
    fn a_stale_token_changes_nothing() {
        let mut store = Store::default();
        let Begin::Fresh(first) = store.begin("k", "/v1/charges", "a") else {
            panic!("expected a fresh key");
        };
        store.finish("k", first + 1, None);
        assert_eq!(store.begin("k", "/v1/charges", "a"), Begin::InUse);
    }

    #[test]
    fn fingerprint_ignores_order_but_not_content() {
        let p = |pairs: &[(&str, &str)]| {
            let owned: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            fingerprint(&owned)
        };
        assert_eq!(
            p(&[("amount", "100"), ("currency", "usd")]),
            p(&[("currency", "usd"), ("amount", "100")])
        );
        assert_ne!(p(&[("amount", "100")]), p(&[("amount", "101")]));
        assert_ne!(p(&[("ab", "c")]), p(&[("a", "bc")]));
    }

    #[test]
    fn dropping_a_reservation_releases_the_key() {
        let state = MockState::new(crate::MockConfig::default());
        let token = match state.with(|w| w.idempotency.begin("k", "/v1/charges", "a")) {
            Begin::Fresh(token) => token,
            other => panic!("expected a fresh key, got {other:?}"),
        };
        drop(Reservation::new(state.clone(), "k".to_string(), token));
        let again = state.with(|w| w.idempotency.begin("k", "/v1/charges", "a"));
        assert!(matches!(again, Begin::Fresh(_)));
    }
}
