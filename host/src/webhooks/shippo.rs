//! Shippo's webhooks carry no signature by default: the endpoint URL holds a secret token
//! (`…/webhooks/shippo?token=…`, configured as `SHIPPO_WEBHOOK_TOKEN`), compared here in
//! constant time.

use std::fmt;

use subtle::ConstantTimeEq;

use super::Refusal;

/// The query parameter holding the token.
pub const PARAMETER: &str = "token";

/// Verifies the URL token of Shippo webhook requests.
#[derive(Clone)]
pub struct TokenVerifier {
    token: Vec<u8>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenVerifier(<redacted>)")
    }
}

impl TokenVerifier {
    /// `None` for an empty token (which would let anyone in).
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| Self {
            token: token.as_bytes().to_vec(),
        })
    }

    /// Checks the request's query string (without `?`).
    pub fn verify(&self, query: Option<&str>) -> Result<(), Refusal> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|e| Refusal::Malformed {
                what: "query string",
                why: e.to_string(),
            })?;
        let mut tokens = pairs.iter().filter(|(k, _)| k == PARAMETER);
        let given = tokens
            .next()
            .ok_or(Refusal::Missing("the token parameter"))?;
        if tokens.next().is_some() {
            return Err(Refusal::Malformed {
                what: "query string",
                why: "more than one token".into(),
            });
        }
        if bool::from(given.1.as_bytes().ct_eq(&self.token)) {
            Ok(())
        } else {
            Err(Refusal::BadToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_token_passes_and_any_other_is_refused() {
        let v = TokenVerifier::new("shp_tok_9f2c").unwrap();
        assert_eq!(v.verify(Some("token=shp_tok_9f2c")), Ok(()));
        assert_eq!(v.verify(Some("a=1&token=shp_tok_9f2c")), Ok(()));
        assert_eq!(v.verify(Some("token=shp_tok_9f2d")), Err(Refusal::BadToken));
        assert_eq!(v.verify(Some("token=shp_tok_9f2")), Err(Refusal::BadToken));
        assert_eq!(v.verify(Some("token=")), Err(Refusal::BadToken));
    }

    #[test]
    fn a_missing_or_doubled_token_is_a_400() {
        let v = TokenVerifier::new("shp_tok_9f2c").unwrap();
        for query in [None, Some(""), Some("tok=shp_tok_9f2c")] {
            assert_eq!(v.verify(query).unwrap_err().status(), 400, "{query:?}");
        }
        let twice = v.verify(Some("token=shp_tok_9f2c&token=x")).unwrap_err();
        assert_eq!(twice.status(), 400);
    }

    #[test]
    fn an_empty_token_is_no_verifier_and_the_token_is_never_printed() {
        assert!(TokenVerifier::new("  ").is_none());
        let printed = format!("{:?}", TokenVerifier::new("shp_tok_9f2c").unwrap());
        assert!(!printed.contains("shp_tok"), "{printed}");
    }
}
