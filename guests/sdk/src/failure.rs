//! The failure a handler returns instead of an output: terminal (never retried) or retryable,
//! with an HTTP-ish status code and a message for the caller.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The message of [`Failure::cancelled`].
const CANCELLED: &str = "cancelled by the operator";

/// Whether the host may retry the invocation after this failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// Never retried: bad input, a business rule, a missing object.
    Terminal,
    /// May succeed on a later attempt: a dependency is down or rate limited.
    Retryable,
}

/// A handler failure, as `cairn:durable/handler.failure`. It serializes, so a step may record
/// one as its terminal error (`StepError<Failure>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Terminal or retryable.
    pub kind: FailureKind,
    /// Status code given to the caller, e.g. 400, 404, 503.
    pub code: u16,
    /// Message given to the caller.
    pub message: String,
}

impl Failure {
    /// A failure that is never retried.
    pub fn terminal(code: u16, message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Terminal,
            code,
            message: message.into(),
        }
    }

    /// A failure after which the host may retry the invocation.
    pub fn retryable(code: u16, message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Retryable,
            code,
            message: message.into(),
        }
    }

    /// A terminal 400: the input is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::terminal(400, message)
    }

    /// A terminal 404: the handler or the object does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::terminal(404, message)
    }

    /// Whether the failure is terminal.
    pub fn is_terminal(&self) -> bool {
        self.kind == FailureKind::Terminal
    }

    /// The terminal 409 that tells a handler the operator cancelled its invocation (see
    /// [`crate::Context::check_cancelled`]); returned from the handler, after compensating, it
    /// ends the invocation `cancelled`.
    pub fn cancelled() -> Self {
        Self::terminal(409, CANCELLED)
    }

    /// Whether this is [`Failure::cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.is_terminal() && self.code == 409 && self.message == CANCELLED
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FailureKind::Terminal => "terminal",
            FailureKind::Retryable => "retryable",
        };
        write!(f, "{kind} failure {}: {}", self.code, self.message)
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_kind_and_code() {
        let t = Failure::terminal(400, "items: must not be empty");
        assert_eq!(t.kind, FailureKind::Terminal);
        assert!(t.is_terminal());
        assert_eq!(t.code, 400);
        let r = Failure::retryable(503, "payments unavailable");
        assert_eq!(r.kind, FailureKind::Retryable);
        assert!(!r.is_terminal());
        assert_eq!(r.to_string(), "retryable failure 503: payments unavailable");
        assert_eq!(Failure::not_found("x").code, 404);
        assert_eq!(Failure::bad_request("x").code, 400);
        assert!(Failure::cancelled().is_cancelled());
        assert!(!Failure::terminal(409, "conflict").is_cancelled());
    }
}
