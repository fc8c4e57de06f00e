//! Who may use a listener (invariant 9 of `docs/architecture.md`): a bearer token on every admin
//! route but `/health` (and on the ingress when the operator sets one; webhook endpoints verify
//! their own signatures instead), and, on the admin port, only requests addressed to this host by
//! a name the operator knows, so a web page cannot reach it through the operator's browser (DNS
//! rebinding: a foreign `Host`; a cross-site form post: a foreign `Origin`). Nothing here answers
//! CORS: a browser page of another origin never gets to read an answer.
//!
//! Tokens are compared in constant time, as SHA-256 digests (so the length of the token does not
//! show either).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::outbound::Secret;

/// A bearer token a listener requires. Its `Debug` never shows it.
#[derive(Clone)]
pub struct AccessToken {
    digest: [u8; 32],
}

impl AccessToken {
    /// The token `secret` (refused when too short to resist guessing).
    pub fn new(secret: &Secret) -> Result<Self, String> {
        let value = secret.expose().trim();
        if value.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "a token must be at least {MIN_TOKEN_LEN} characters (this one has {})",
                value.len()
            ));
        }
        Ok(AccessToken {
            digest: Sha256::digest(value.as_bytes()).into(),
        })
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// The shortest token accepted: 16 characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// The token of an `Authorization: Bearer …` value (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// A new random token (what the host writes to its token file at first start).
pub fn generate_token() -> Secret {
    let bytes: [u8; 32] = rand::random();
    Secret::new(format!("cairn_{}", hex::encode(bytes)))
}

/// Who may use the admin API.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    pub token: AccessToken,
    /// Host names (without port) requests may be addressed to, beside loopback names and the
    /// listener's own address.
    pub hosts: Vec<String>,
}

/// Who may use a listener, as its middleware sees it.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    token: Option<AccessToken>,
    /// `None`: any `Host` (the ingress, whose clients name it as they like).
    hosts: Option<Arc<Vec<String>>>,
    /// A path that needs no token (`/health`, the console's static files), or a prefix
    /// (`/webhooks/`, `/ui/`).
    open: &'static [&'static str],
}

impl Guard {
    /// The admin port's guard; `bound` is the listener's address.
    pub(super) fn admin(access: &AdminAccess, bound: std::net::SocketAddr) -> Self {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]", "::1"]
            .into_iter()
            .map(String::from)
            .collect();
        if !bound.ip().is_unspecified() {
            hosts.push(match bound.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            });
        }
        hosts.extend(access.hosts.iter().map(|h| h.to_ascii_lowercase()));
        Guard {
            token: Some(access.token.clone()),
            hosts: Some(Arc::new(hosts)),
            open: &["/health", "/ui", "/ui/"],
        }
    }

    /// The ingress's guard: a token when the operator set one; webhooks verify themselves.
    pub(super) fn ingress(token: Option<AccessToken>) -> Self {
        Guard {
            token,
            hosts: None,
            open: &["/webhooks/"],
        }
    }

    fn is_open(&self, path: &str) -> bool {
        self.open
            .iter()
            .any(|p| path == *p || (p.ends_with('/') && path.starts_with(p)))
    }

    fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Some(hosts) = &self.hosts {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !known_host(hosts, host) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "foreign_host",
                    format!(
                        "requests to the admin API must name this host (Host {host:?} is not one \
                         of its names; the operator adds names with --admin-host)"
                    ),
                ));
            }
            if let Some(origin) = headers.get(header::ORIGIN) {
                let origin = origin.to_str().unwrap_or_default();
                let host = origin.split_once("://").map_or("", |(_, rest)| rest);
                if !known_host(hosts, host) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "foreign_origin",
                        format!("the admin API does not take requests from pages of {origin:?}"),
                    ));
                }
            }
        }
        match &self.token {
            Some(token) if !self.is_open(path) && !token.admits(headers) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the token as `Authorization: Bearer <token>` (CAIRN_ADMIN_TOKEN, or the \
                 admin-token file in the host's data dir; CAIRN_INGRESS_TOKEN on the ingress)",
            )),
            _ => Ok(()),
        }
    }
}

/// Whether `authority` (`name` or `name:port`) names one of `hosts`.
fn known_host(hosts: &[String], authority: &str) -> bool {
    let authority = authority.trim().to_ascii_lowercase();
    let name = match authority.rfind(':') {
        // `[::1]:9070`, `host:9070`; a bare IPv6 literal has no port outside brackets.
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            let name = &authority[..i];
            if name.contains(':') && !name.starts_with('[') {
                authority.as_str()
            } else {
                name
            }
        }
        _ => authority.as_str(),
    };
    !name.is_empty() && hosts.iter().any(|h| h == name)
}

/// The middleware: refuses what [`Guard`] does not let through, before any handler runs.
pub(super) async fn guard(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    match guard.check(request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => {
            let unauthorized = error.status == StatusCode::UNAUTHORIZED;
            let mut response = error.into_response();
            if unauthorized {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AccessToken {
        AccessToken::new(&Secret::new("0123456789abcdef-token")).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let t = token();
        assert!(t.admits(&headers(&[(
            "authorization",
            "Bearer 0123456789abcdef-token"
        )])));
        assert!(t.admits(&headers(&[(
            "authorization",
            "bearer  0123456789abcdef-token "
        )])));
        for wrong in [
            "Bearer 0123456789abcdef-toke",
            "Bearer 0123456789abcdef-token2",
            "Basic 0123456789abcdef-token",
            "0123456789abcdef-token",
            "Bearer ",
        ] {
            assert!(!t.admits(&headers(&[("authorization", wrong)])), "{wrong}");
        }
        assert!(!t.admits(&HeaderMap::new()));
        assert!(AccessToken::new(&Secret::new("short")).is_err());
        assert_eq!(format!("{t:?}"), "AccessToken(<redacted>)");
        assert!(generate_token().expose().len() > MIN_TOKEN_LEN);
    }

    #[test]
    fn admin_requests_must_name_a_known_host_and_come_from_no_foreign_page() {
        let access = AdminAccess {
            token: token(),
            hosts: vec!["Cairn.Internal".into()],
        };
        let guard = Guard::admin(&access, "127.0.0.1:9070".parse().unwrap());
        let auth = ("authorization", "Bearer 0123456789abcdef-token");
        for host in [
            "127.0.0.1:9070",
            "localhost:9070",
            "localhost",
            "[::1]:9070",
            "cairn.internal:9070",
        ] {
            assert!(
                guard
                    .check("/deployments", &headers(&[("host", host), auth]))
                    .is_ok(),
                "{host}"
            );
        }
        for host in [
            "evil.example:9070",
            "127.0.0.1.evil.example",
            "",
            "localhost.:1",
        ] {
            let err = guard
                .check("/deployments", &headers(&[("host", host), auth]))
                .unwrap_err();
            assert_eq!(err.code, "foreign_host", "{host}");
        }
        let err = guard
            .check(
                "/deployments",
                &headers(&[
                    ("host", "localhost:9070"),
                    ("origin", "https://evil.example"),
                    auth,
                ]),
            )
            .unwrap_err();
        assert_eq!(err.code, "foreign_origin");
        assert!(
            guard
                .check(
                    "/deployments",
                    &headers(&[
                        ("host", "localhost:9070"),
                        ("origin", "http://localhost:9070"),
                        auth
                    ]),
                )
                .is_ok()
        );
        // No token: 401 everywhere but /health.
        let err = guard
            .check("/deployments", &headers(&[("host", "localhost")]))
            .unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert!(
            guard
                .check("/health", &headers(&[("host", "localhost")]))
                .is_ok()
        );
        assert!(
            guard
                .check("/healthz", &headers(&[("host", "localhost")]))
                .is_err()
        );
    }

    #[test]
    fn the_ingress_token_spares_webhooks() {
        let guard = Guard::ingress(Some(token()));
        assert!(guard.check("/webhooks/stripe", &HeaderMap::new()).is_ok());
        assert!(guard.check("/Svc/handler", &HeaderMap::new()).is_err());
        assert!(guard.check("/webhooksx", &HeaderMap::new()).is_err());
        assert!(
            Guard::ingress(None)
                .check("/Svc/h", &HeaderMap::new())
                .is_ok()
        );
    }
}
