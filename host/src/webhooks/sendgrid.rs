//! SendGrid's signed Event Webhook: `X-Twilio-Email-Event-Webhook-Signature` is a base64 DER
//! ECDSA P-256 / SHA-256 signature of `{X-Twilio-Email-Event-Webhook-Timestamp}{raw body}`,
//! verified with the public key SendGrid shows for the endpoint (base64 DER,
//! `SENDGRID_WEBHOOK_PUBLIC_KEY`). The timestamp is held to the same tolerance as Stripe's. See
//! <https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features>.

use std::time::Duration;

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

use super::{Refusal, check_time, parse_timestamp};

/// The header holding the signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
/// The header holding the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// Verifies SendGrid Event Webhook requests with the endpoint's public key.
#[derive(Debug, Clone)]
pub struct SendgridVerifier {
    key: VerifyingKey,
    tolerance: Duration,
}

impl SendgridVerifier {
    /// From the public key as SendGrid shows it (base64 of the DER SubjectPublicKeyInfo).
    pub fn from_base64_der(key: &str, tolerance: Duration) -> Result<Self, String> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|e| format!("the SendGrid webhook public key is not base64: {e}"))?;
        let key = VerifyingKey::from_public_key_der(&der)
            .map_err(|e| format!("the SendGrid webhook public key is not a P-256 key: {e}"))?;
        Ok(Self { key, tolerance })
    }

    /// Checks the two headers (if present) against the raw `body` at `now` (Unix seconds).
    pub fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), Refusal> {
        let signature = signature.ok_or(Refusal::Missing(SIGNATURE_HEADER))?;
        let timestamp = timestamp.ok_or(Refusal::Missing(TIMESTAMP_HEADER))?;
        let signed_at = parse_timestamp(TIMESTAMP_HEADER, timestamp)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|e| Refusal::Malformed {
                what: SIGNATURE_HEADER,
                why: format!("not base64: {e}"),
            })?;
        let signature = Signature::from_der(&der).map_err(|_| Refusal::Malformed {
            what: SIGNATURE_HEADER,
            why: "not a DER ECDSA signature".into(),
        })?;
        let mut message = Vec::with_capacity(timestamp.len() + body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(body);
        self.key
            .verify(&message, &signature)
            .map_err(|_| Refusal::BadSignature)?;
        check_time(signed_at, now, self.tolerance)
    }
}

#[cfg(test)]
mod tests {
    //! Vectors made with OpenSSL, not with the code under test:
    //!
    //! ```sh
    //! openssl ecparam -name prime256v1 -genkey -noout -out sg.pem
    //! openssl ec -in sg.pem -pubout -outform DER | base64 -w0          # KEY
    //! printf '%s%s' 1796160000 "$BODY" | openssl dgst -sha256 -sign sg.pem | base64 -w0   # SIGNATURE
    //! ```
    //!
    //! and `OTHER_KEY` the same way from a second key.
    use super::*;

    const KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEm3RDH19Qo/CTUXjc/JzR3d7gQUcFaR4FfgCMaFa0pvUAoMClal85y8Y3tM8rZ+E6C3FTZlKZmXt40GRu4uwvNA==";
    const OTHER_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzulTC88yG/MZcvTi107bjZSdobQkFKebGGd+6MIdRVNh6sp36e7GRBbYkSEigQ29iOcZAGZ88XmmPg/j11gQdg==";
    /// Its S is in the upper half of the group order; `LOW_S_SIGNATURE`'s in the lower: a
    /// signer may send either, and both verify.
    const SIGNATURE: &str = "MEYCIQD5oBnfj7eNcShQAVyFlql0NY3LO4Gmg5Z4qlfAzKy4/QIhANBrsYTUJuYbyGRUFNNlffGPghkZ4VzYuTFtqw8JaGC1";
    const LOW_S_SIGNATURE: &str = "MEQCIDk0qJ/HFAQtYtiKykZPd+mmcQ/yDHa/v5mwBHr9c9ioAiAposSdJoArhv71M8f57t+s7NO1MRmv45/1XS3fy40V5w==";
    const TS: &str = "1796160000";
    const NOW: i64 = 1_796_160_030;
    const BODY: &str = r#"[{"email":"ada@example.com","timestamp":1796160000,"event":"delivered","sg_event_id":"ZGVsaXZlcmVkLTAtMjQ","sg_message_id":"14c5d75ce93.dfd.64b469","order_id":"order-001"}]"#;

    fn verifier(key: &str) -> SendgridVerifier {
        SendgridVerifier::from_base64_der(key, Duration::from_secs(300)).unwrap()
    }

    #[test]
    fn a_signature_made_by_openssl_verifies() {
        let v = verifier(KEY);
        assert_eq!(
            v.verify(Some(SIGNATURE), Some(TS), BODY.as_bytes(), NOW),
            Ok(())
        );
        let low = v.verify(Some(LOW_S_SIGNATURE), Some(TS), BODY.as_bytes(), NOW);
        assert_eq!(low, Ok(()));
    }

    #[test]
    fn another_body_timestamp_or_key_is_a_bad_signature() {
        let v = verifier(KEY);
        let changed = BODY.replace("delivered", "delivereD");
        let refused = v.verify(Some(SIGNATURE), Some(TS), changed.as_bytes(), NOW);
        assert_eq!(refused, Err(Refusal::BadSignature));
        let refused = v.verify(Some(SIGNATURE), Some("1796160001"), BODY.as_bytes(), NOW);
        assert_eq!(refused, Err(Refusal::BadSignature));
        let refused = verifier(OTHER_KEY).verify(Some(SIGNATURE), Some(TS), BODY.as_bytes(), NOW);
        assert_eq!(refused, Err(Refusal::BadSignature));
    }

    #[test]
    fn a_signed_but_stale_or_future_timestamp_is_refused() {
        let v = verifier(KEY);
        let stale = v.verify(Some(SIGNATURE), Some(TS), BODY.as_bytes(), 1_796_160_301);
        assert_eq!(stale, Err(Refusal::Stale(301)));
        let future = v.verify(Some(SIGNATURE), Some(TS), BODY.as_bytes(), 1_796_159_699);
        assert_eq!(future, Err(Refusal::Future(301)));
    }

    #[test]
    fn missing_or_unreadable_headers_are_400s() {
        let v = verifier(KEY);
        for (signature, timestamp) in [
            (None, Some(TS)),
            (Some(SIGNATURE), None),
            (Some("%%%"), Some(TS)),
            (Some("bm90IGRlcg=="), Some(TS)),
            (Some(SIGNATURE), Some("yesterday")),
        ] {
            let refusal = v
                .verify(signature, timestamp, BODY.as_bytes(), NOW)
                .unwrap_err();
            assert_eq!(
                refusal.status(),
                400,
                "{signature:?} {timestamp:?}: {refusal}"
            );
        }
    }

    #[test]
    fn a_key_that_is_not_p256_der_is_refused_at_configuration() {
        let tol = Duration::from_secs(300);
        assert!(SendgridVerifier::from_base64_der("not base64!", tol).is_err());
        assert!(SendgridVerifier::from_base64_der("bm90IGEga2V5", tol).is_err());
    }
}
