//! A small HTTP client over `cairn:durable/http`: the host sends the request (journaled, limited
//! to the component's allow-list, `{{secret:NAME}}` header values filled in) and returns the
//! response.
//!
//! Building a [`Request`] and reading a [`Response`] are plain data operations, so request
//! builders and response parsers can be unit-tested natively; only [`Request::send`] calls the
//! host.
//!
//! ```ignore
//! let response = Request::post("https://api.example.com/v1/things")
//!     .bearer_auth("{{secret:EXAMPLE_KEY}}")
//!     .json(&serde_json::json!({"name": "x"}))
//!     .send()?;
//! if response.is_success() {
//!     let thing: Thing = response.json()?;
//! }
//! ```

pub mod date;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::cairn::durable::http as raw;

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The request is malformed (bad URL, method, header, or a body that did not encode).
    InvalidRequest(String),
    /// The destination is not on this component's allow-list.
    Denied(String),
    /// No response within the timeout.
    Timeout,
    /// Connection refused, reset, DNS failure...
    Transport(String),
    /// The request or the response is larger than the host allows.
    TooLarge(String),
}

impl HttpError {
    /// Whether sending the same request again may succeed (timeouts and transport failures).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout | Self::Transport(_))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            Self::Denied(m) => write!(f, "destination denied: {m}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Transport(m) => write!(f, "transport error: {m}"),
            Self::TooLarge(m) => write!(f, "too large: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<raw::HttpError> for HttpError {
    fn from(err: raw::HttpError) -> Self {
        match err {
            raw::HttpError::InvalidRequest(m) => Self::InvalidRequest(m),
            raw::HttpError::Denied(m) => Self::Denied(m),
            raw::HttpError::Timeout => Self::Timeout,
            raw::HttpError::Transport(m) => Self::Transport(m),
            raw::HttpError::TooLarge(m) => Self::TooLarge(m),
        }
    }
}

/// An outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout_ms: Option<u32>,
}

impl Request {
    /// Starts a request with any method.
    pub fn builder(method: &str, url: impl Into<String>) -> RequestBuilder {
        RequestBuilder {
            request: Request {
                method: method.to_owned(),
                url: url.into(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: None,
            },
            error: None,
        }
    }

    /// Starts a `GET`.
    pub fn get(url: impl Into<String>) -> RequestBuilder {
        Self::builder("GET", url)
    }

    /// Starts a `POST`.
    pub fn post(url: impl Into<String>) -> RequestBuilder {
        Self::builder("POST", url)
    }

    /// Starts a `PUT`.
    pub fn put(url: impl Into<String>) -> RequestBuilder {
        Self::builder("PUT", url)
    }

    /// Starts a `PATCH`.
    pub fn patch(url: impl Into<String>) -> RequestBuilder {
        Self::builder("PATCH", url)
    }

    /// Starts a `DELETE`.
    pub fn delete(url: impl Into<String>) -> RequestBuilder {
        Self::builder("DELETE", url)
    }

    /// The method, e.g. `POST`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The absolute URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// All headers, in the order they were added.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The per-request timeout, when set.
    pub fn timeout_ms(&self) -> Option<u32> {
        self.timeout_ms
    }

    /// Sends the request through the host.
    pub fn send(self) -> Result<Response, HttpError> {
        let raw_request = raw::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self.timeout_ms,
        };
        raw::send(&raw_request)
            .map(|r| Response::new(r.status, r.headers, r.body))
            .map_err(HttpError::from)
    }
}

/// Builds a [`Request`]; an encoding error is kept and reported by [`RequestBuilder::build`] or
/// [`RequestBuilder::send`].
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    request: Request,
    error: Option<HttpError>,
}

impl RequestBuilder {
    /// Adds a header (repeated names are kept).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a header, replacing every earlier value of that name.
    pub fn set_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.request
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.request.headers.push((name, value.into()));
        self
    }

    /// Sets `Authorization: Bearer <token>`; pass a `{{secret:NAME}}` placeholder, never a key.
    pub fn bearer_auth(self, token: &str) -> Self {
        self.set_header("Authorization", format!("Bearer {token}"))
    }

    /// Sets the raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.request.body = body.into();
        self
    }

    /// Sets a JSON body and `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => self.request.body = body,
            Err(err) => {
                self.error = Some(HttpError::InvalidRequest(format!("JSON body: {err}")));
            }
        }
        self.set_header("Content-Type", "application/json")
    }

    /// Sets an `application/x-www-form-urlencoded` body from `(name, value)` pairs, in order.
    pub fn form<I, K, V>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut encoder = form_urlencoded::Serializer::new(String::new());
        for (name, value) in fields {
            encoder.append_pair(name.as_ref(), value.as_ref());
        }
        self.request.body = encoder.finish().into_bytes();
        self.set_header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// Sets the per-request timeout.
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.request.timeout_ms = Some(ms);
        self
    }

    /// The finished request, or the first encoding error.
    pub fn build(self) -> Result<Request, HttpError> {
        match self.error {
            Some(err) => Err(err),
            None => Ok(self.request),
        }
    }

    /// Builds and sends the request.
    pub fn send(self) -> Result<Response, HttpError> {
        self.build()?.send()
    }
}

/// A response (any status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A response from its parts (used by the client, and by tests of response parsers).
    pub fn new(status: u16, headers: Vec<(String, String)>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers,
            body: body.into(),
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// All headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// `Retry-After` in milliseconds: delta-seconds, or an HTTP date measured from the
    /// response's `Date` header. `None` when absent or unreadable.
    pub fn retry_after_ms(&self) -> Option<u32> {
        let value = self.header("Retry-After")?.trim();
        let seconds = match value.parse::<u64>() {
            Ok(seconds) => seconds,
            Err(_) => {
                let at = date::parse_http_date(value)?;
                let now = date::parse_http_date(self.header("Date")?)?;
                at.saturating_sub(now)
            }
        };
        Some(seconds_to_ms(seconds))
    }
}

/// Seconds as milliseconds, saturating at `u32::MAX`.
pub fn seconds_to_ms(seconds: u64) -> u32 {
    u32::try_from(seconds.saturating_mul(1000)).unwrap_or(u32::MAX)
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_method_url_headers_and_form_body() {
        let request = Request::post("https://api.example.com/v1/charges")
            .bearer_auth("{{secret:KEY}}")
            .header("Idempotency-Key", "k-1")
            .form([("amount", "1099"), ("metadata[order_id]", "A 1")])
            .timeout_ms(5_000)
            .build()
            .unwrap();
        assert_eq!(request.method(), "POST");
        assert_eq!(request.url(), "https://api.example.com/v1/charges");
        assert_eq!(
            request.header("authorization"),
            Some("Bearer {{secret:KEY}}")
        );
        assert_eq!(request.header("idempotency-key"), Some("k-1"));
        assert_eq!(
            request.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(request.body(), b"amount=1099&metadata%5Border_id%5D=A+1");
        assert_eq!(request.timeout_ms(), Some(5_000));
    }

    #[test]
    fn json_body_replaces_content_type() {
        let request = Request::put("http://x/")
            .header("content-type", "text/plain")
            .json(&serde_json::json!({"a": 1}))
            .build()
            .unwrap();
        assert_eq!(request.body(), br#"{"a":1}"#);
        let content_types: Vec<_> = request
            .headers()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .collect();
        assert_eq!(content_types.len(), 1);
        assert_eq!(request.header("Content-Type"), Some("application/json"));
    }

    #[test]
    fn json_encoding_errors_surface_at_build() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1);
        let err = Request::post("http://x/").json(&map).build().unwrap_err();
        assert!(matches!(err, HttpError::InvalidRequest(_)), "{err}");
    }

    #[test]
    fn response_helpers() {
        let response = Response::new(
            429,
            vec![
                ("Retry-After".into(), "2".into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            br#"{"ok":false}"#.to_vec(),
        );
        assert!(!response.is_success());
        assert_eq!(response.header("retry-after"), Some("2"));
        assert_eq!(response.retry_after_ms(), Some(2_000));
        let value: serde_json::Value = response.json().unwrap();
        assert_eq!(value["ok"], false);
        assert_eq!(response.text(), r#"{"ok":false}"#);
    }

    #[test]
    fn retry_after_as_http_date_is_measured_from_date() {
        let response = Response::new(
            503,
            vec![
                ("Date".into(), "Wed, 21 Oct 2015 07:28:00 GMT".into()),
                ("Retry-After".into(), "Wed, 21 Oct 2015 07:28:30 GMT".into()),
            ],
            Vec::new(),
        );
        assert_eq!(response.retry_after_ms(), Some(30_000));
        let no_date = Response::new(
            503,
            vec![("Retry-After".into(), "Wed, 21 Oct 2015 07:28:30 GMT".into())],
            Vec::new(),
        );
        assert_eq!(no_date.retry_after_ms(), None);
    }

    #[test]
    fn seconds_to_ms_saturates() {
        assert_eq!(seconds_to_ms(3), 3_000);
        assert_eq!(seconds_to_ms(u64::MAX), u32::MAX);
    }
}
