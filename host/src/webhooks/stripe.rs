//! Stripe's webhook signature: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`, each
//! `v1` the HMAC-SHA256 of `{t}.{raw body}` under an endpoint secret. Any `v1` may match any
//! configured secret (two are configured while a secret is rotated); `v0` (test-mode, SHA-1
//! era) is ignored; a `t` outside the tolerance is refused, as Stripe's libraries do. See
//! <https://docs.stripe.com/webhooks#verify-manually>.

use std::fmt;
use std::time::Duration;

use hmac::Mac;

use super::{HmacSha256, Refusal, check_time, parse_timestamp, secret_list};

/// The header Stripe signs with.
pub const HEADER: &str = "Stripe-Signature";

/// Verifies Stripe webhook requests with one or more endpoint secrets.
#[derive(Clone)]
pub struct StripeVerifier {
    secrets: Vec<Vec<u8>>,
    tolerance: Duration,
}

impl fmt::Debug for StripeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeVerifier")
            .field(
                "secrets",
                &format_args!("<{} redacted>", self.secrets.len()),
            )
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl StripeVerifier {
    /// From `STRIPE_WEBHOOK_SECRET`: one secret, or several separated by commas while one is
    /// rotated. `None` when the list holds no secret.
    pub fn from_list(list: &str, tolerance: Duration) -> Option<Self> {
        let secrets = secret_list(list);
        (!secrets.is_empty()).then_some(Self { secrets, tolerance })
    }

    /// Checks `header` (the `Stripe-Signature` value, if any) against the raw `body` at `now`
    /// (Unix seconds).
    pub fn verify(&self, header: Option<&str>, body: &[u8], now: i64) -> Result<(), Refusal> {
        let header = header.ok_or(Refusal::Missing(HEADER))?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        let mut any_v1 = false;
        for part in header.split(',') {
            let Some((key, value)) = part.trim().split_once('=') else {
                return Err(Refusal::Malformed {
                    what: HEADER,
                    why: format!("`{}` is not key=value", part.trim()),
                });
            };
            match key {
                "t" if timestamp.is_some() => {
                    return Err(Refusal::Malformed {
                        what: HEADER,
                        why: "more than one t".into(),
                    });
                }
                "t" => timestamp = Some(value),
                // A v1 that is not hex cannot match; it does not spoil the others.
                "v1" => {
                    any_v1 = true;
                    signatures.extend(hex::decode(value).ok());
                }
                _ => {}
            }
        }
        let t = timestamp.ok_or(Refusal::Malformed {
            what: HEADER,
            why: "no t".into(),
        })?;
        if !any_v1 {
            return Err(Refusal::Missing("a v1 signature in Stripe-Signature"));
        }
        let signed_at = parse_timestamp(HEADER, t)?;
        let matches = self.secrets.iter().any(|secret| {
            let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
            mac.update(t.as_bytes());
            mac.update(b".");
            mac.update(body);
            // `verify_slice` compares in constant time.
            signatures
                .iter()
                .any(|signature| mac.clone().verify_slice(signature).is_ok())
        });
        if !matches {
            return Err(Refusal::BadSignature);
        }
        check_time(signed_at, now, self.tolerance)
    }
}

#[cfg(test)]
mod tests {
    //! Vectors made with OpenSSL, not with the code under test:
    //!
    //! ```sh
    //! printf '%s' "1796160000.$BODY" | openssl dgst -sha256 -hmac whsec_test_secret_one -hex
    //! printf '%s' "1796160000.$BODY" | openssl dgst -sha256 -hmac whsec_test_secret_two -hex
    //! ```
    use super::*;

    const BODY: &str = r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","type":"charge.succeeded","data":{"object":{"id":"ch_1","metadata":{"order_id":"order-001"}}}}"#;
    const T: i64 = 1_796_160_000;
    const SIG_ONE: &str = "15919907f5ae2da4331da407b645d4089c5d5825602c69d12bee5372c5a70925";
    const SIG_TWO: &str = "b517bc65b17add710cff931948471b8db54c422688e93cb657e8ac9a18c35a60";
    const TOLERANCE: Duration = Duration::from_secs(300);

    fn verifier(list: &str) -> StripeVerifier {
        StripeVerifier::from_list(list, TOLERANCE).unwrap()
    }

    fn check(v: &StripeVerifier, header: &str, body: &str, now: i64) -> Result<(), Refusal> {
        v.verify(Some(header), body.as_bytes(), now)
    }

    #[test]
    fn a_valid_signature_passes() {
        let v = verifier("whsec_test_secret_one");
        assert_eq!(
            check(&v, &format!("t={T},v1={SIG_ONE}"), BODY, T + 10),
            Ok(())
        );
        // Spaces and a v0 beside it change nothing.
        let header = format!("t={T}, v1={SIG_ONE}, v0=6ffbb59b2300aae63f272406069a9788598b792a");
        assert_eq!(check(&v, &header, BODY, T), Ok(()));
    }

    #[test]
    fn during_rotation_any_secret_and_any_v1_may_match() {
        // The endpoint has two secrets; Stripe signs with both (two v1) or with the new one.
        let v = verifier("whsec_test_secret_two, whsec_test_secret_one");
        assert_eq!(check(&v, &format!("t={T},v1={SIG_ONE}"), BODY, T), Ok(()));
        assert_eq!(check(&v, &format!("t={T},v1={SIG_TWO}"), BODY, T), Ok(()));
        let both = format!("t={T},v1={},v1={SIG_TWO}", "00".repeat(32));
        assert_eq!(
            check(&verifier("whsec_test_secret_two"), &both, BODY, T),
            Ok(())
        );
    }

    #[test]
    fn one_changed_byte_or_another_secret_is_a_bad_signature() {
        let v = verifier("whsec_test_secret_one");
        let header = format!("t={T},v1={SIG_ONE}");
        let changed = BODY.replace("order-001", "order-002");
        assert_eq!(check(&v, &header, &changed, T), Err(Refusal::BadSignature));
        // The timestamp is signed too.
        let later = format!("t={},v1={SIG_ONE}", T + 1);
        assert_eq!(check(&v, &later, BODY, T), Err(Refusal::BadSignature));
        let other = verifier("whsec_other");
        assert_eq!(check(&other, &header, BODY, T), Err(Refusal::BadSignature));
        let not_hex = format!("t={T},v1=zz{}", &SIG_ONE[2..]);
        assert_eq!(check(&v, &not_hex, BODY, T), Err(Refusal::BadSignature));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_even_when_signed() {
        let v = verifier("whsec_test_secret_one");
        let header = format!("t={T},v1={SIG_ONE}");
        assert_eq!(check(&v, &header, BODY, T + 301), Err(Refusal::Stale(301)));
        assert_eq!(check(&v, &header, BODY, T - 301), Err(Refusal::Future(301)));
    }

    #[test]
    fn missing_or_unreadable_headers_are_400s() {
        let v = verifier("whsec_test_secret_one");
        let missing = v.verify(None, BODY.as_bytes(), T).unwrap_err();
        assert_eq!(missing, Refusal::Missing(HEADER));
        assert_eq!(missing.status(), 400);
        // Only v0: nothing Stripe's current scheme signs.
        let only_v0 = check(&v, &format!("t={T},v0={SIG_ONE}"), BODY, T).unwrap_err();
        assert_eq!(only_v0.status(), 400, "{only_v0}");
        for header in [
            format!("v1={SIG_ONE}"),
            format!("t=soon,v1={SIG_ONE}"),
            "garbage".into(),
        ] {
            let refusal = check(&v, &header, BODY, T).unwrap_err();
            assert_eq!(refusal.status(), 400, "{header}: {refusal}");
        }
        let twice = format!("t={T},t={T},v1={SIG_ONE}");
        assert_eq!(check(&v, &twice, BODY, T).unwrap_err().status(), 400);
    }

    #[test]
    fn secrets_are_listed_and_never_printed() {
        assert!(StripeVerifier::from_list(" , ", TOLERANCE).is_none());
        let v = verifier("whsec_test_secret_one,whsec_test_secret_two");
        let printed = format!("{v:?}");
        assert!(!printed.contains("whsec"), "{printed}");
        assert!(printed.contains("<2 redacted>"), "{printed}");
    }
}
