//! Webhook signatures, checked by the host on the **raw bytes** of a request before anything
//! parses them (issue 13): Stripe's `Stripe-Signature` (HMAC-SHA256, [`stripe`]), Shippo's URL
//! token ([`shippo`]), SendGrid's Event Webhook signature (ECDSA P-256, [`sendgrid`]). A
//! verifier holds its secret or key; none of them prints it (`Debug` is redacted), and nothing
//! here logs.
//!
//! Endpoints (which verifier, whose secret, which handler the events go to) are in
//! [`endpoint`]; the route that uses them is [`crate::http_api::webhooks`].
//!
//! A refusal is final ([`Refusal`]): the sender must sign correctly, retrying the same bytes
//! cannot help. Its [`Refusal::status`] is 400 for a request that lacks what a signed one
//! carries, 401 for one whose signature, token or time is wrong.

pub mod endpoint;
pub mod hmac_header;
pub mod sendgrid;
pub mod shippo;
pub mod stripe;

use std::time::Duration;

/// How far a signed timestamp may be from the host's clock, either way, by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a webhook request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A header or parameter a signed request carries is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// It is there but cannot be read.
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    /// No signature matches the body with any configured secret or key.
    #[error("the signature does not match the body")]
    BadSignature,
    /// The URL token is not the configured one.
    #[error("wrong token")]
    BadToken,
    /// The signed timestamp is older than the tolerance.
    #[error("the signed timestamp is {0} s old, more than the tolerance")]
    Stale(u64),
    /// The signed timestamp is ahead of the host's clock by more than the tolerance.
    #[error("the signed timestamp is {0} s in the future, more than the tolerance")]
    Future(u64),
    /// The request came from an address the endpoint's allow-list does not hold.
    #[error("the source address is not allowed")]
    Source,
}

impl Refusal {
    /// 400 for a request missing what a signed one carries, 401 for a wrong one.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Missing(_) | Refusal::Malformed { .. } => 400,
            Refusal::Source => 403,
            _ => 401,
        }
    }

    /// The `error` code of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Missing(_) => "signature_missing",
            Refusal::Malformed { .. } => "signature_malformed",
            Refusal::BadSignature => "bad_signature",
            Refusal::BadToken => "bad_token",
            Refusal::Stale(_) => "stale_timestamp",
            Refusal::Future(_) => "future_timestamp",
            Refusal::Source => "source_not_allowed",
        }
    }
}

/// HMAC-SHA256, as Stripe and the generic header verifier sign.
type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The secrets of a comma-separated list (two while one is rotated), blanks dropped.
fn secret_list(list: &str) -> Vec<Vec<u8>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

/// A signed Unix timestamp (seconds), refused when it is more than `tolerance` away from
/// `now` (Unix seconds) in either direction.
fn check_time(signed: i64, now: i64, tolerance: Duration) -> Result<(), Refusal> {
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    let age = now.saturating_sub(signed);
    if age > tolerance {
        return Err(Refusal::Stale(age.unsigned_abs()));
    }
    if -age > tolerance {
        return Err(Refusal::Future(age.unsigned_abs()));
    }
    Ok(())
}

/// A Unix timestamp in seconds as the providers send it (decimal digits).
fn parse_timestamp(what: &'static str, text: &str) -> Result<i64, Refusal> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Malformed {
            what,
            why: "expected Unix seconds".into(),
        });
    }
    text.parse().map_err(|_| Refusal::Malformed {
        what,
        why: "out of range".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_within_the_tolerance_pass_either_way() {
        let tol = Duration::from_secs(300);
        assert_eq!(check_time(1000, 1000, tol), Ok(()));
        assert_eq!(check_time(1000, 1300, tol), Ok(()));
        assert_eq!(check_time(1300, 1000, tol), Ok(()));
        assert_eq!(check_time(1000, 1301, tol), Err(Refusal::Stale(301)));
        assert_eq!(check_time(1301, 1000, tol), Err(Refusal::Future(301)));
    }

    #[test]
    fn timestamps_are_digits() {
        assert_eq!(parse_timestamp("t", "1796160000"), Ok(1_796_160_000));
        for bad in ["", "-5", "1e9", " 12", "99999999999999999999"] {
            assert!(parse_timestamp("t", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_parts_are_400_and_wrong_ones_401() {
        assert_eq!(Refusal::Missing("Stripe-Signature").status(), 400);
        assert_eq!(Refusal::BadSignature.status(), 401);
        assert_eq!(Refusal::BadToken.status(), 401);
        assert_eq!(Refusal::Stale(301).status(), 401);
    }
}
