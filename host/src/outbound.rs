//! Outbound HTTP on behalf of guests: allow-list, address checks, secret substitution, size and
//! time limits.
//!
//! A request goes out only to an origin (scheme, host, port) on the component's allow-list. On top
//! of that, addresses that are not on the public internet (loopback, private, link-local such as
//! the metadata service 169.254.169.254, ...) are refused unless the operator set the origin
//! explicitly ([`Policy::allow_private`]: mock mode, a `*_API_BASE` variable, a deployment's own
//! `allow` list or `api-base`): an IP literal must itself be listed, and the host resolves names
//! itself and refuses one that resolves to such an address ([`guard`]). Redirects are never
//! followed: the guest sees the 3xx, and following it is a new request, checked like the first. System proxy variables are ignored, so the address
//! checked is the address connected to. A refusal is `http-error::denied` to the guest and a log
//! line.
//!
//! Guests never hold a secret. A header value may contain `{{secret:NAME}}`; the host replaces it
//! with the secret's value only when the destination is on the component's allow-list and the
//! secret is granted to it. What is recorded (journal, logs) is the request as the guest wrote it.

pub mod guard;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

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

impl Origin {
    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
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
    /// Origins of `allow` the operator set explicitly: their host may be, or resolve to, a
    /// loopback, private or link-local address. (Judged by host name: a name listed here may
    /// resolve anywhere for every component that has it on its allow-list.)
    pub allow_private: Vec<Origin>,
    pub secrets: BTreeMap<String, Secret>,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub default_timeout: Duration,
}

impl Policy {
    pub fn deny_all() -> Self {
        Policy {
            allow: Vec::new(),
            allow_private: Vec::new(),
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
    /// Names of explicit origins, which may resolve to non-public addresses.
    private_ok: Arc<RwLock<HashSet<String>>>,
}

impl Outbound {
    /// The client for components under `policies` (their explicit origins may resolve to
    /// non-public addresses).
    pub fn new<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> anyhow::Result<Self> {
        let private_ok: Arc<RwLock<HashSet<String>>> = Arc::default();
        let client = reqwest::Client::builder()
            // A redirect could leave the allow-list: guests see the 3xx and decide.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(guard::GuardedResolver {
                private_ok: private_ok.clone(),
            }))
            // Every connection back in the pool stays (until idle for 90 s): a cap below the
            // calls in flight closed and reopened connections under load.
            .build()?;
        let outbound = Outbound { client, private_ok };
        for policy in policies {
            outbound.allow_private(policy);
        }
        Ok(outbound)
    }

    /// Lets the explicit origins of `policy` (a deployment's own allow-list) resolve to
    /// non-public addresses.
    pub fn allow_private(&self, policy: &Policy) {
        let mut names = self.private_ok.write().unwrap_or_else(|p| p.into_inner());
        for origin in policy.allow_private.iter().filter(|o| o.ip().is_none()) {
            names.insert(origin.host.clone());
        }
    }

    /// [`Outbound::send`], also returning the exchange as JSON text, as the guest wrote it
    /// (secrets appear only as placeholders).
    pub async fn send_recorded(
        &self,
        policy: &Policy,
        req: &Request,
    ) -> (Result<Response, HttpError>, String) {
        let result = self.send(policy, req).await;
        let exchange = Exchange {
            request: SentRequest {
                method: &req.method,
                url: &req.url,
                headers: &req.headers,
                body: BodyPreview(&req.body),
            },
            response: match &result {
                Ok(resp) => Received::Response {
                    status: resp.status,
                    body: BodyPreview(&resp.body),
                },
                Err(e) => Received::Error {
                    error: format!("{e:?}"),
                },
            },
        };
        let text = serde_json::to_string(&exchange).unwrap_or_else(|e| {
            serde_json::Value::from(format!("exchange not recorded: {e}")).to_string()
        });
        (result, text)
    }

    /// Sends `req` under `policy`. Returns the guest-visible result.
    pub async fn send(&self, policy: &Policy, req: &Request) -> Result<Response, HttpError> {
        let url = reqwest::Url::parse(&req.url)
            .map_err(|e| HttpError::InvalidRequest(format!("invalid URL {:?}: {e}", req.url)))?;
        let origin = Origin::of(&url).map_err(HttpError::InvalidRequest)?;
        if !policy.allow.contains(&origin) {
            return Err(HttpError::Denied(match origin.ip() {
                Some(ip) => format!(
                    "{origin}: IP literals ({} address) are refused unless the operator lists \
                     the origin explicitly",
                    guard::non_public(ip).unwrap_or("public")
                ),
                None => format!("{origin} is not on this component's allow-list"),
            }));
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
    if let Some(refused) = guard::refused_in(&e) {
        HttpError::Denied(refused.to_string())
    } else if e.is_timeout() {
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

/// One HTTP exchange as recorded under a provider call's journal entry.
#[derive(Serialize)]
struct Exchange<'a> {
    request: SentRequest<'a>,
    response: Received<'a>,
}

#[derive(Serialize)]
struct SentRequest<'a> {
    method: &'a str,
    url: &'a str,
    headers: &'a [(String, String)],
    body: BodyPreview<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Received<'a> {
    Response { status: u16, body: BodyPreview<'a> },
    Error { error: String },
}

/// A body as text (lossy UTF-8), cut after 4 KiB with its full length.
struct BodyPreview<'a>(&'a [u8]);

impl Serialize for BodyPreview<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const MAX: usize = 4096;
        let body = self.0;
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
        if body.len() > MAX {
            serializer.serialize_str(&format!("{text}… ({} bytes)", body.len()))
        } else {
            serializer.serialize_str(&text)
        }
    }
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

    fn get(url: &str) -> Request {
        Request {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: Some(5_000),
        }
    }

    /// A one-shot HTTP server on loopback answering 200 "ok"; returns its port.
    async fn tiny_server() -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn ip_literals_and_names_of_private_addresses_are_refused_unless_explicit() {
        let port = tiny_server().await;
        let by_name = Origin::parse(&format!("http://localhost:{port}")).unwrap();
        let by_ip = Origin::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let listed = Policy {
            allow: vec![by_name.clone(), by_ip.clone()],
            ..Policy::deny_all()
        };
        let explicit = Policy {
            allow_private: vec![by_name.clone()],
            ..listed.clone()
        };

        // Listed but not explicit: the name resolves to loopback, refused at connect time.
        let strict = Outbound::new([&listed]).unwrap();
        let (result, exchange) = strict
            .send_recorded(&listed, &get(&format!("{by_name}/x")))
            .await;
        match result {
            Err(HttpError::Denied(reason)) => {
                assert!(reason.contains("loopback"), "{reason}")
            }
            other => panic!("expected denied, got {other:?}"),
        }
        let exchange: serde_json::Value = serde_json::from_str(&exchange).unwrap();
        assert!(exchange["response"]["error"].is_string());
        // An IP literal on the list was listed explicitly.
        let result = strict.send(&listed, &get(&format!("{by_ip}/x"))).await;
        assert_eq!(result.unwrap().status, 200);
        // Not listed: the metadata service, another loopback port.
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:1/",
        ] {
            match strict.send(&listed, &get(url)).await {
                Err(HttpError::Denied(reason)) => {
                    assert!(reason.contains("IP literal"), "{reason}")
                }
                other => panic!("{url}: expected denied, got {other:?}"),
            }
        }
        match strict.send(&listed, &get("http://[::1]:1/")).await {
            Err(HttpError::Denied(reason)) => assert!(reason.contains("loopback"), "{reason}"),
            other => panic!("expected denied, got {other:?}"),
        }

        // Explicit: the name may resolve to loopback.
        let lenient = Outbound::new([&explicit]).unwrap();
        let result = lenient.send(&explicit, &get(&format!("{by_name}/x"))).await;
        assert_eq!(result.unwrap().body, b"ok");
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new("sk_live_x")),
            "Secret(<redacted>)"
        );
    }
}
