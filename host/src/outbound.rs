//! Outbound HTTP on behalf of guests: allow-list, secret substitution, size and time limits.
//!
//! Guests never hold a secret. A header value may contain `{{secret:NAME}}`; the host replaces it
//! with the secret's value only when the destination is on the component's allow-list and the
//! secret is granted to it. What is recorded (journal, logs) is the request as the guest wrote it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_json::json;

use crate::bindings::http::{HttpError, Request, Response};

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

/// `scheme://host:port` a component may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn parse(url: &str) -> Result<Origin, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        Self::of(&url)
    }

    fn of(url: &reqwest::Url) -> Result<Origin, String> {
        let scheme = url.scheme().to_string();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "scheme {scheme:?} is not allowed (http or https only)"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("URL {url} has no host"))?
            .to_ascii_lowercase();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("URL {url} has no port"))?;
        Ok(Origin { scheme, host, port })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// What one component may do over HTTP.
#[derive(Debug, Clone)]
pub struct Policy {
    pub allow: Vec<Origin>,
    pub secrets: BTreeMap<String, Secret>,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub default_timeout: Duration,
}

impl Policy {
    pub fn deny_all() -> Self {
        Policy {
            allow: Vec::new(),
            secrets: BTreeMap::new(),
            max_request_bytes: 1 << 20,
            max_response_bytes: 4 << 20,
            default_timeout: Duration::from_secs(30),
        }
    }
}

/// The shared, pooled HTTP client.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
}

impl Outbound {
    pub fn new() -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            // A redirect could leave the allow-list: guests see the 3xx and decide.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Outbound { client })
    }

    /// Sends `req` under `policy`. Returns the guest-visible result and a JSON record of the
    /// exchange (as the guest wrote it: secrets appear only as placeholders).
    pub async fn send(
        &self,
        policy: &Policy,
        req: &Request,
    ) -> (Result<Response, HttpError>, serde_json::Value) {
        let result = self.send_inner(policy, req).await;
        let exchange = json!({
            "request": {
                "method": req.method,
                "url": req.url,
                "headers": req.headers,
                "body": body_preview(&req.body),
            },
            "response": match &result {
                Ok(resp) => json!({"status": resp.status, "body": body_preview(&resp.body)}),
                Err(e) => json!({"error": format!("{e:?}")}),
            },
        });
        (result, exchange)
    }

    async fn send_inner(&self, policy: &Policy, req: &Request) -> Result<Response, HttpError> {
        let url = reqwest::Url::parse(&req.url)
            .map_err(|e| HttpError::InvalidRequest(format!("invalid URL {:?}: {e}", req.url)))?;
        let origin = Origin::of(&url).map_err(HttpError::InvalidRequest)?;
        if !policy.allow.contains(&origin) {
            tracing::warn!(%origin, "outbound request refused: not on the allow-list");
            return Err(HttpError::Denied(format!(
                "{origin} is not on this component's allow-list"
            )));
        }
        if req.body.len() > policy.max_request_bytes {
            return Err(HttpError::TooLarge(format!(
                "request body of {} bytes exceeds {} bytes",
                req.body.len(),
                policy.max_request_bytes
            )));
        }
        let method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| HttpError::InvalidRequest(format!("invalid method {:?}", req.method)))?;
        let mut builder = self.client.request(method, url).timeout(
            req.timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms)))
                .unwrap_or(policy.default_timeout),
        );
        for (name, value) in &req.headers {
            let value = substitute_secrets(value, &policy.secrets)?;
            builder = builder.header(name.as_str(), value);
        }
        let mut resp = builder
            .body(req.body.clone())
            .send()
            .await
            .map_err(classify)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > policy.max_response_bytes {
                return Err(HttpError::TooLarge(format!(
                    "response body exceeds {} bytes",
                    policy.max_response_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn classify(e: reqwest::Error) -> HttpError {
    if e.is_timeout() {
        HttpError::Timeout
    } else if e.is_builder() {
        HttpError::InvalidRequest(e.to_string())
    } else {
        HttpError::Transport(e.to_string())
    }
}

/// Replaces every `{{secret:NAME}}` in `value` with the granted secret.
fn substitute_secrets(
    value: &str,
    secrets: &BTreeMap<String, Secret>,
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
        let secret = secrets.get(name).ok_or_else(|| {
            HttpError::Denied(format!("secret {name:?} is not granted to this component"))
        })?;
        out.push_str(secret.expose());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn body_preview(body: &[u8]) -> serde_json::Value {
    const MAX: usize = 4096;
    let shown = &body[..body.len().min(MAX)];
    let mut text = String::from_utf8_lossy(shown).into_owned();
    if body.len() > MAX {
        text.push_str(&format!("… ({} bytes)", body.len()));
    }
    serde_json::Value::String(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, Secret> {
        BTreeMap::from([("KEY".to_string(), Secret::new("sk_test_123"))])
    }

    #[test]
    fn substitutes_granted_secrets_only() {
        assert_eq!(
            substitute_secrets("Bearer {{secret:KEY}}", &secrets()).unwrap(),
            "Bearer sk_test_123"
        );
        assert!(matches!(
            substitute_secrets("Bearer {{secret:OTHER}}", &secrets()),
            Err(HttpError::Denied(_))
        ));
        assert_eq!(substitute_secrets("plain", &secrets()).unwrap(), "plain");
    }

    #[test]
    fn origins_include_default_ports() {
        let o = Origin::parse("https://api.stripe.com/v1/charges").unwrap();
        assert_eq!(o.to_string(), "https://api.stripe.com:443");
        assert!(Origin::parse("ftp://x").is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new("sk_live_x")),
            "Secret(<redacted>)"
        );
    }
}
