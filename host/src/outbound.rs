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
mod secrets;

pub use secrets::{Grant, Grants, Secret};

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanBuilder;
use serde::Serialize;

use crate::bindings::http::{HttpError, Request, Response};
use crate::telemetry::ChildSpan;

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
    /// Secrets it may use as `{{secret:NAME}}`, each bound to its origins.
    pub secrets: Grants,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub default_timeout: Duration,
}

impl Policy {
    pub fn deny_all() -> Self {
        Policy {
            allow: Vec::new(),
            allow_private: Vec::new(),
            secrets: Grants::new(),
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
        let text = record(req, &result);
        (result, text)
    }

    /// The record of `req` sent but never answered: its call was stopped first (a limit).
    pub fn unanswered(req: &Request) -> String {
        record(
            req,
            &Err(HttpError::Transport(
                "no response: the call was stopped while this request was in flight".into(),
            )),
        )
    }

    /// Sends `req` under `policy`. Returns the guest-visible result.
    pub async fn send(&self, policy: &Policy, req: &Request) -> Result<Response, HttpError> {
        check_shape(req)?;
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
        // An IP literal of a non-public address needs the same explicit grant as a name that
        // resolves to one (the resolver checks names).
        if let Some(class) = origin.ip().and_then(guard::non_public)
            && !policy.allow_private.contains(&origin)
        {
            return Err(HttpError::Denied(format!(
                "{origin} is a {class} address: refused unless the operator allows it as private"
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
            if let Some(reason) = forbidden_header(name) {
                return Err(HttpError::InvalidRequest(format!(
                    "header {name:?} is not the component's to set: {reason}"
                )));
            }
            let value = secrets::substitute(value, name, &origin, &policy.secrets)?;
            builder = builder.header(name.as_str(), value);
        }
        let span = ChildSpan::start(|| {
            SpanBuilder::from_name(format!("{} {origin}", req.method)).with_attributes([
                KeyValue::new("http.request.method", req.method.clone()),
                KeyValue::new("url.full", req.url.clone()),
            ])
        });
        let mut request = builder.body(req.body.clone()).build().map_err(classify)?;
        span.propagate(request.headers_mut());
        // A leaf: it times the exchange (ended when dropped, after the body) and attaches nothing.
        let mut resp = self.client.execute(request).await.map_err(classify)?;
        let status = resp.status().as_u16();
        span.set(|| KeyValue::new("http.response.status_code", i64::from(status)));
        let grants = &policy.secrets;
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.to_string(), secrets::redact_text(value, grants))
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
        // A server that echoes the key back (a debug endpoint, an error page) must not hand it
        // to the guest, nor through it to the journal.
        if let Some(redacted) = secrets::redact(&body, grants) {
            body = redacted;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Longest URL, most headers and most header bytes (names and values) a guest's request may
/// have: the host copies, records and sends them.
const MAX_URL_BYTES: usize = 8 << 10;
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 32 << 10;

/// Refuses a request whose URL or headers are past the bounds (a refusal that depends on the
/// request alone, so it needs no journal entry to replay).
pub(crate) fn check_shape(req: &Request) -> Result<(), HttpError> {
    if req.url.len() > MAX_URL_BYTES {
        return Err(HttpError::TooLarge(format!(
            "a URL of {} bytes is longer than {MAX_URL_BYTES}",
            req.url.len()
        )));
    }
    if req.headers.len() > MAX_HEADERS {
        return Err(HttpError::TooLarge(format!(
            "{} headers are more than {MAX_HEADERS}",
            req.headers.len()
        )));
    }
    let bytes: usize = req.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(HttpError::TooLarge(format!(
            "headers of {bytes} bytes are more than {MAX_HEADER_BYTES}"
        )));
    }
    Ok(())
}

/// One exchange as JSON text, as the guest wrote the request (secrets only as placeholders).
fn record(req: &Request, result: &Result<Response, HttpError>) -> String {
    let exchange = Exchange {
        request: SentRequest {
            method: TextPreview(&req.method),
            url: TextPreview(&req.url),
            headers: HeadersPreview(&req.headers),
            body: BodyPreview(&req.body, BODY_PREVIEW),
        },
        response: match result {
            Ok(resp) => Received::Response {
                status: resp.status,
                body: BodyPreview(&resp.body, BODY_PREVIEW),
            },
            Err(e) => Received::Error {
                error: format!("{e:?}"),
            },
        },
    };
    serde_json::to_string(&exchange).unwrap_or_else(|e| {
        serde_json::Value::from(format!("exchange not recorded: {e}")).to_string()
    })
}

fn classify(e: reqwest::Error) -> HttpError {
    if let Some(refused) = guard::refused_in(&e) {
        HttpError::Denied(refused.to_string())
    } else if e.is_timeout() {
        HttpError::Timeout
    } else if e.is_builder() {
        HttpError::InvalidRequest(with_causes(&e))
    } else {
        HttpError::Transport(with_causes(&e))
    }
}

/// `e` and its sources, `: `-separated: reqwest's own text ("error sending request for url")
/// says nothing of why (connection refused, DNS, TLS); its sources do.
fn with_causes(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Why a guest may not set header `name`, or `None` when it may: the connection's own headers
/// (framing, the destination, hop-by-hop, proxies) are the host's, as wasmtime-wasi-http forbids
/// them by default; a guest setting `Host` could reach a virtual host its allow-list does not
/// name, and framing headers could smuggle a second request.
fn forbidden_header(name: &str) -> Option<&'static str> {
    let name = name.trim().to_ascii_lowercase();
    Some(match name.as_str() {
        "host" => "the host sets it from the URL",
        "connection" | "keep-alive" | "upgrade" | "te" | "trailer" | "transfer-encoding"
        | "http2-settings" => "a hop-by-hop header of the connection",
        "content-length" => "the host sets it from the body",
        n if n.starts_with("proxy-") => "a proxy header",
        _ => return None,
    })
}

/// How much of a body an exchange's record keeps.
const BODY_PREVIEW: usize = 4096;

/// One HTTP exchange as recorded under a provider call's journal entry.
#[derive(Serialize)]
struct Exchange<'a> {
    request: SentRequest<'a>,
    response: Received<'a>,
}

#[derive(Serialize)]
struct SentRequest<'a> {
    method: TextPreview<'a>,
    url: TextPreview<'a>,
    headers: HeadersPreview<'a>,
    body: BodyPreview<'a>,
}

/// A text cut after 2 KiB, with its full length.
struct TextPreview<'a>(&'a str);

impl Serialize for TextPreview<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        BodyPreview(self.0.as_bytes(), 2048).serialize(serializer)
    }
}

/// At most [`MAX_HEADERS`] headers, each name and value cut like a [`TextPreview`].
struct HeadersPreview<'a>(&'a [(String, String)]);

impl Serialize for HeadersPreview<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.len().min(MAX_HEADERS)))?;
        for (name, value) in self.0.iter().take(MAX_HEADERS) {
            seq.serialize_element(&(TextPreview(name), TextPreview(value)))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Received<'a> {
    Response { status: u16, body: BodyPreview<'a> },
    Error { error: String },
}

/// A body as text (lossy UTF-8), cut after `.1` bytes with its full length.
struct BodyPreview<'a>(&'a [u8], usize);

impl Serialize for BodyPreview<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (body, max) = (self.0, self.1);
        let text = String::from_utf8_lossy(&body[..body.len().min(max)]);
        if body.len() > max {
            serializer.serialize_str(&format!("{text}… ({} bytes)", body.len()))
        } else {
            serializer.serialize_str(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_are_the_hosts() {
        for name in [
            "Host",
            "connection",
            "Transfer-Encoding",
            "Upgrade",
            "Proxy-Authorization",
            "keep-alive",
            "TE",
            "Trailer",
            "content-length",
        ] {
            assert!(forbidden_header(name).is_some(), "{name}");
        }
        for name in ["authorization", "content-type", "idempotency-key", "x-host"] {
            assert_eq!(forbidden_header(name), None, "{name}");
        }
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
            allow_private: vec![by_name.clone(), by_ip.clone()],
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
        // An IP literal on the allow-list is not private-allowed by being listed either.
        match strict.send(&listed, &get(&format!("{by_ip}/x"))).await {
            Err(HttpError::Denied(reason)) => assert!(reason.contains("loopback"), "{reason}"),
            other => panic!("expected denied, got {other:?}"),
        }
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
        let result = lenient.send(&explicit, &get(&format!("{by_ip}/x"))).await;
        assert_eq!(result.unwrap().status, 200);
    }

    #[tokio::test]
    async fn a_transport_error_says_its_cause() {
        // A port nothing listens on (bound, then closed).
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let origin = Origin::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let policy = Policy {
            allow: vec![origin.clone()],
            allow_private: vec![origin.clone()],
            ..Policy::deny_all()
        };
        let outbound = Outbound::new([&policy]).unwrap();
        match outbound.send(&policy, &get(&format!("{origin}/x"))).await {
            Err(HttpError::Transport(message)) => assert!(
                message.to_ascii_lowercase().contains("connection refused"),
                "{message}"
            ),
            other => panic!("expected a transport error, got {other:?}"),
        }
    }
}
