//! Retries of one call into a component whose answer was transient (`unavailable`,
//! `rate-limited`, by the convention of `cairn:durable/recovery`): made again on the same
//! instance, with the same idempotency key, after the policy's backoff or the callee's
//! `rate-limited` hint, before the caller sees the error. Optional steps are retried like the
//! rest: a transient SendGrid error does not cost a customer the confirmation. The policy is per
//! `interface.function` (`CAIRN_CALL_RETRY`, `--call-retry`), with a default for every call.

use std::collections::BTreeMap;
use std::time::Duration;

use wasmtime::component::Val;

use super::retry::RetryPolicy;
use crate::journal::values::{error_case, is_transient};

/// The retry policies of calls: the default and those of single functions.
#[derive(Debug, Clone)]
pub struct CallRetry {
    default: RetryPolicy,
    by_function: BTreeMap<String, RetryPolicy>,
}

impl Default for CallRetry {
    /// Three tries in all, 200 ms then 400 ms apart (with jitter); hints up to 2 s honoured.
    fn default() -> Self {
        CallRetry {
            default: RetryPolicy {
                initial_delay: Duration::from_millis(200),
                factor: 2.0,
                max_delay: Duration::from_secs(2),
                max_attempts: 3,
                ..RetryPolicy::default()
            },
            by_function: BTreeMap::new(),
        }
    }
}

impl CallRetry {
    /// The default changed by each `NAME=SPEC` of `items` (a `RetryPolicy` spec:
    /// `initial=200ms,factor=2,max-delay=2s,max-attempts=3`), `NAME` an `interface.function`
    /// (`cairn:commerce/email.send-email`) or `*` for every call. `max-attempts=1` turns retries
    /// off.
    pub fn with(&self, items: &[String]) -> Result<CallRetry, String> {
        let mut parsed = self.clone();
        let items: Vec<&str> = items
            .iter()
            .map(|i| i.trim())
            .filter(|i| !i.is_empty())
            .collect();
        // `*` first, so that a function's own policy starts from the new default.
        let (all, functions): (Vec<&str>, Vec<&str>) =
            items.into_iter().partition(|i| i.starts_with("*="));
        for item in all.into_iter().chain(functions) {
            let (name, spec) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: expected INTERFACE.FUNCTION=SPEC or *=SPEC"))?;
            let name = name.trim();
            let policy = parsed
                .default
                .with(spec)
                .map_err(|e| format!("{name}: {e}"))?;
            if name == "*" {
                parsed.default = policy;
            } else if name.contains('.') {
                parsed.by_function.insert(name.to_string(), policy);
            } else {
                return Err(format!(
                    "{name:?}: expected INTERFACE.FUNCTION (cairn:commerce/email.send-email) or *"
                ));
            }
        }
        Ok(parsed)
    }

    /// The policy of calls to `name` (`interface.function`, without the version).
    pub fn policy(&self, name: &str) -> &RetryPolicy {
        self.by_function.get(name).unwrap_or(&self.default)
    }
}

/// How long to wait before making a call again whose try number `tries` answered `output`, or
/// `None` when it is not made again: the answer is not transient, the tries ran out, or the
/// callee asked for a longer wait (`rate-limited` with more than the policy's `max-delay`) than
/// the call may take here: the caller then sees the error, and its own retries take over.
pub fn again(policy: &RetryPolicy, tries: u32, output: &Val) -> Option<Duration> {
    if !is_transient(output) || tries >= policy.max_attempts {
        return None;
    }
    let backoff = policy.delay(tries);
    match retry_after(output) {
        Some(hint) if hint > policy.max_delay => None,
        Some(hint) => Some(hint.max(backoff)),
        None => Some(backoff),
    }
}

/// The wait a `rate-limited(option<u32>)` answer asks for, in milliseconds, if it says.
fn retry_after(output: &Val) -> Option<Duration> {
    if error_case(output) != Some("rate-limited") {
        return None;
    }
    let Val::Result(Err(Some(err))) = output else {
        return None;
    };
    let Val::Variant(_, Some(payload)) = &**err else {
        return None;
    };
    match &**payload {
        Val::Option(Some(ms)) => match &**ms {
            Val::U32(ms) => Some(Duration::from_millis(u64::from(*ms))),
            Val::U64(ms) => Some(Duration::from_millis(*ms)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(case: &str, payload: Option<Val>) -> Val {
        Val::Result(Err(Some(Box::new(Val::Variant(
            case.into(),
            payload.map(Box::new),
        )))))
    }

    fn rate_limited(ms: Option<u32>) -> Val {
        error(
            "rate-limited",
            Some(Val::Option(ms.map(|ms| Box::new(Val::U32(ms))))),
        )
    }

    #[test]
    fn transient_answers_are_made_again_until_the_tries_run_out() {
        let policy = CallRetry::default().policy("x.y").clone();
        let unavailable = error("unavailable", Some(Val::String("503".into())));
        let first = again(&policy, 1, &unavailable).expect("a second try");
        assert!((150..=250).contains(&first.as_millis()), "{first:?}");
        let second = again(&policy, 2, &unavailable).expect("a third try");
        assert!((300..=500).contains(&second.as_millis()), "{second:?}");
        assert_eq!(again(&policy, 3, &unavailable), None, "three tries in all");
        let declined = error("declined", None);
        assert_eq!(again(&policy, 1, &declined), None, "terminal: not again");
        let ok = Val::Result(Ok(None));
        assert_eq!(again(&policy, 1, &ok), None);
    }

    #[test]
    fn a_rate_limit_hint_is_waited_for_up_to_the_policys_longest_delay() {
        let policy = CallRetry::default().policy("x.y").clone();
        assert_eq!(
            again(&policy, 1, &rate_limited(Some(1_000))),
            Some(Duration::from_secs(1))
        );
        // Shorter than the backoff: the backoff.
        let short = again(&policy, 1, &rate_limited(Some(10))).unwrap();
        assert!(short >= Duration::from_millis(150), "{short:?}");
        assert!(again(&policy, 1, &rate_limited(None)).is_some());
        assert_eq!(again(&policy, 1, &rate_limited(Some(60_000))), None);
    }

    #[test]
    fn policies_are_set_for_every_call_and_per_function() {
        let retry = CallRetry::default()
            .with(&[
                "cairn:commerce/email.send-email=max-attempts=5".into(),
                "*=initial=50ms".into(),
            ])
            .unwrap();
        let email = retry.policy("cairn:commerce/email.send-email");
        assert_eq!(
            (email.max_attempts, email.initial_delay),
            (5, Duration::from_millis(50)),
            "from the new default"
        );
        let other = retry.policy("cairn:commerce/payments.create-charge");
        assert_eq!(
            (other.max_attempts, other.initial_delay),
            (3, Duration::from_millis(50))
        );
        for bad in ["email=max-attempts=2", "*", "*=wait=3"] {
            assert!(CallRetry::default().with(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
