//! A generic HMAC-SHA256 signature of the raw body in one header (`X-Hub-Signature-256:
//! sha256=<hex>` as GitHub sends it, `X-Shopify-Hmac-Sha256: <base64>` as Shopify does), for a
//! third party's provider whose webhooks are signed that way. Several secrets may be configured
//! while one is rotated; the comparison is constant-time (`Mac::verify_slice`).

use std::fmt;

use base64::Engine as _;
use hmac::Mac;
use serde::Deserialize;

use super::{HmacSha256, Refusal, secret_list};

/// How the signature is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    Hex,
    Base64,
}

/// Verifies `{header}: {prefix}{encoding(HMAC-SHA256(secret, raw body))}`.
#[derive(Clone)]
pub struct HmacHeaderVerifier {
    header: String,
    prefix: String,
    encoding: Encoding,
    secrets: Vec<Vec<u8>>,
}

impl fmt::Debug for HmacHeaderVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacHeaderVerifier")
            .field("header", &self.header)
            .field("prefix", &self.prefix)
            .field("encoding", &self.encoding)
            .field(
                "secrets",
                &format_args!("<{} redacted>", self.secrets.len()),
            )
            .finish()
    }
}

impl HmacHeaderVerifier {
    /// `secrets`: one, or several separated by commas. `None` when it holds none.
    pub fn new(header: &str, prefix: &str, encoding: Encoding, secrets: &str) -> Option<Self> {
        let secrets = secret_list(secrets);
        (!secrets.is_empty()).then(|| Self {
            header: header.to_string(),
            prefix: prefix.to_string(),
            encoding,
            secrets,
        })
    }

    /// The header this verifier reads.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// Checks the header's value (if any) against the raw `body`.
    pub fn verify(&self, value: Option<&str>, body: &[u8]) -> Result<(), Refusal> {
        let value = value.ok_or(Refusal::Missing("the signature header"))?;
        let encoded = value
            .trim()
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(|| Refusal::Malformed {
                what: "the signature header",
                why: format!("expected the prefix {:?}", self.prefix),
            })?;
        let signature = match self.encoding {
            Encoding::Hex => hex::decode(encoded).ok(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok(),
        }
        .ok_or_else(|| Refusal::Malformed {
            what: "the signature header",
            why: format!("not {:?}", self.encoding),
        })?;
        let matches = self.secrets.iter().any(|secret| {
            let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
            mac.update(body);
            mac.verify_slice(&signature).is_ok()
        });
        if matches {
            Ok(())
        } else {
            Err(Refusal::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    //! Vectors made with OpenSSL, not with the code under test:
    //!
    //! ```sh
    //! printf '%s' '{"action":"opened"}' | openssl dgst -sha256 -hmac It_s_a_secret -hex
    //! printf '%s' '{"action":"opened"}' | openssl dgst -sha256 -hmac It_s_a_secret -binary | base64
    //! ```
    use super::*;

    const BODY: &[u8] = br#"{"action":"opened"}"#;
    const HEX: &str = "f3d28e1f6e6115a19492d48bf1d7b3c0ee7dc4948d2b0b4a1689d872db94b6e0";
    const BASE64: &str = "89KOH25hFaGUktSL8dezwO59xJSNKwtKFonYctuUtuA=";

    #[test]
    fn hex_with_a_prefix_and_base64_pass() {
        let github = HmacHeaderVerifier::new(
            "X-Hub-Signature-256",
            "sha256=",
            Encoding::Hex,
            "It_s_a_secret",
        )
        .unwrap();
        assert_eq!(github.verify(Some(&format!("sha256={HEX}")), BODY), Ok(()));
        let shopify = HmacHeaderVerifier::new(
            "X-Shopify-Hmac-Sha256",
            "",
            Encoding::Base64,
            "It_s_a_secret",
        )
        .unwrap();
        assert_eq!(shopify.verify(Some(BASE64), BODY), Ok(()));
        // While rotating: the old secret still passes beside the new one.
        let rotating =
            HmacHeaderVerifier::new("X-Sig", "", Encoding::Hex, "new_secret, It_s_a_secret")
                .unwrap();
        assert_eq!(rotating.verify(Some(HEX), BODY), Ok(()));
    }

    #[test]
    fn a_changed_body_a_wrong_secret_or_a_bad_header_is_refused() {
        let v =
            HmacHeaderVerifier::new("X-Sig", "sha256=", Encoding::Hex, "It_s_a_secret").unwrap();
        let header = format!("sha256={HEX}");
        assert_eq!(
            v.verify(Some(&header), br#"{"action":"opene!"}"#),
            Err(Refusal::BadSignature)
        );
        let other = HmacHeaderVerifier::new("X-Sig", "sha256=", Encoding::Hex, "other").unwrap();
        assert_eq!(
            other.verify(Some(&header), BODY),
            Err(Refusal::BadSignature)
        );
        assert_eq!(v.verify(None, BODY).unwrap_err().status(), 400);
        assert_eq!(v.verify(Some(HEX), BODY).unwrap_err().status(), 400);
        assert_eq!(v.verify(Some("sha256=zz"), BODY).unwrap_err().status(), 400);
        assert!(!format!("{v:?}").contains("It_s_a_secret"));
        assert!(HmacHeaderVerifier::new("X-Sig", "", Encoding::Hex, " , ").is_none());
    }
}
