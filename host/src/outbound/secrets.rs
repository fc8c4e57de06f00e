//! Secrets in outbound requests: a guest writes `{{secret:NAME}}` in a header value; the host
//! puts the value in only when the secret is granted to the component, the request goes to an
//! origin the secret is bound to, and (when the grant names one) in the header it is bound to.
//! A response that echoes a value back has it replaced by its placeholder before anything sees
//! it (the guest, the journal, the logs, the admin API).

use std::collections::BTreeMap;
use std::fmt;

use super::Origin;
use crate::bindings::http::HttpError;

/// A secret value; never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A secret granted to a component, and where it may be sent.
#[derive(Debug, Clone)]
pub struct Grant {
    pub secret: Secret,
    /// The origins it may be sent to (each must also be on the allow-list).
    pub origins: Vec<Origin>,
    /// The one header (lower case) it may be sent in; `None`: any header.
    pub header: Option<String>,
}

impl Grant {
    /// A grant of `secret` to `origins`, in any header.
    pub fn to(secret: Secret, origins: Vec<Origin>) -> Self {
        Grant {
            secret,
            origins,
            header: None,
        }
    }
}

/// The granted secrets of one component, by name.
pub type Grants = BTreeMap<String, Grant>;

/// Replaces every `{{secret:NAME}}` in the value of header `header` of a request to `origin`;
/// each name must be granted, bound to `origin` and to `header`. Returns the value and the names
/// substituted.
pub(super) fn substitute(
    value: &str,
    header: &str,
    origin: &Origin,
    grants: &Grants,
) -> Result<String, HttpError> {
    const OPEN: &str = "{{secret:";
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after
            .find("}}")
            .ok_or_else(|| HttpError::InvalidRequest("unterminated {{secret:...}}".into()))?;
        let name = &after[..end];
        let grant = grants.get(name).ok_or_else(|| {
            HttpError::Denied(format!("secret {name:?} is not granted to this component"))
        })?;
        if !grant.origins.contains(origin) {
            return Err(HttpError::Denied(format!(
                "secret {name:?} may not be sent to {origin} (the operator bound it to {})",
                list(&grant.origins)
            )));
        }
        if let Some(bound) = &grant.header
            && !bound.eq_ignore_ascii_case(header)
        {
            return Err(HttpError::Denied(format!(
                "secret {name:?} may be sent only in the {bound} header, not in {header}"
            )));
        }
        out.push_str(grant.secret.expose());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn list(origins: &[Origin]) -> String {
    if origins.is_empty() {
        return "no origin".into();
    }
    origins
        .iter()
        .map(Origin::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `bytes` with every granted secret value replaced by its placeholder (`None`: none was in it).
pub(super) fn redact(bytes: &[u8], grants: &Grants) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for (name, grant) in grants {
        let value = grant.secret.expose().as_bytes();
        if value.is_empty() {
            continue;
        }
        let current = out.as_deref().unwrap_or(bytes);
        if memchr::memmem::find(current, value).is_none() {
            continue;
        }
        let placeholder = format!("{{{{secret:{name}}}}}");
        let mut replaced = Vec::with_capacity(current.len());
        let mut last = 0;
        for at in memchr::memmem::find_iter(current, value) {
            if at < last {
                continue;
            }
            replaced.extend_from_slice(&current[last..at]);
            replaced.extend_from_slice(placeholder.as_bytes());
            last = at + value.len();
        }
        replaced.extend_from_slice(&current[last..]);
        out = Some(replaced);
    }
    out
}

/// [`redact`] of a text.
pub(super) fn redact_text(text: String, grants: &Grants) -> String {
    match redact(text.as_bytes(), grants) {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::parse("https://api.example.com").unwrap()
    }

    fn grants() -> Grants {
        BTreeMap::from([
            (
                "KEY".to_string(),
                Grant::to(Secret::new("sk_test_123"), vec![origin()]),
            ),
            (
                "HEADER_BOUND".to_string(),
                Grant {
                    header: Some("x-api-key".into()),
                    ..Grant::to(Secret::new("hb_456"), vec![origin()])
                },
            ),
        ])
    }

    #[test]
    fn substitutes_granted_secrets_only_where_they_are_bound() {
        let auth =
            |value: &str, header: &str, to: &Origin| substitute(value, header, to, &grants());
        assert_eq!(
            auth("Bearer {{secret:KEY}}", "authorization", &origin()).unwrap(),
            "Bearer sk_test_123"
        );
        assert_eq!(auth("plain", "authorization", &origin()).unwrap(), "plain");
        let denied = |r: Result<String, HttpError>| match r {
            Err(HttpError::Denied(reason)) => reason,
            other => panic!("expected denied, got {other:?}"),
        };
        assert!(
            denied(auth("{{secret:OTHER}}", "authorization", &origin())).contains("not granted")
        );
        let elsewhere = Origin::parse("https://evil.example").unwrap();
        let reason = denied(auth("{{secret:KEY}}", "authorization", &elsewhere));
        assert!(reason.contains("https://api.example.com:443"), "{reason}");
        assert!(!reason.contains("sk_test_123"), "{reason}");
        assert_eq!(
            auth("{{secret:HEADER_BOUND}}", "X-Api-Key", &origin()).unwrap(),
            "hb_456"
        );
        assert!(
            denied(auth("{{secret:HEADER_BOUND}}", "x-debug", &origin())).contains("x-api-key")
        );
        assert!(matches!(
            auth("{{secret:KEY", "authorization", &origin()),
            Err(HttpError::InvalidRequest(_))
        ));
    }

    #[test]
    fn echoed_values_become_placeholders() {
        let echoed =
            br#"{"auth":"Bearer sk_test_123","again":"sk_test_123sk_test_123","h":"hb_456"}"#;
        let redacted = String::from_utf8(redact(echoed, &grants()).unwrap()).unwrap();
        assert_eq!(
            redacted,
            r#"{"auth":"Bearer {{secret:KEY}}","again":"{{secret:KEY}}{{secret:KEY}}","h":"{{secret:HEADER_BOUND}}"}"#
        );
        assert!(redact(b"nothing here", &grants()).is_none());
        assert_eq!(
            redact_text("x sk_test_123".into(), &grants()),
            "x {{secret:KEY}}"
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new("sk_live_x")),
            "Secret(<redacted>)"
        );
    }
}
