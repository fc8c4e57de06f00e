//! Stripe's wire basics shared by every fake Stripe endpoint: the JSON answer and error shape
//! (`{"error":{type, code, message, param, doc_url}}`), secret-key auth (Bearer or Basic), form
//! bodies with bracket metadata, and the HTTP side of `Idempotency-Key` (admission before the
//! endpoint runs — replay, conflict or in-use — and saving its answer afterwards).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::idempotency::{Begin, Reservation, fingerprint};
use crate::state::MockState;

/// A JSON answer: status and body (kept as a value so it can be saved for idempotent replays).
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Value,
}

impl Answer {
    pub(super) fn ok(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            body,
        }
    }

    /// `{"error":{"type":…,"code":…,"message":…,"param":…}}` (absent fields omitted).
    pub(super) fn error(
        status: StatusCode,
        kind: &str,
        code: Option<&str>,
        message: impl Into<String>,
        param: Option<&str>,
    ) -> Answer {
        let mut error = serde_json::Map::new();
        error.insert("type".into(), json!(kind));
        if let Some(code) = code {
            error.insert("code".into(), json!(code));
            error.insert(
                "doc_url".into(),
                json!(format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )),
            );
        }
        error.insert("message".into(), json!(message.into()));
        if let Some(param) = param {
            error.insert("param".into(), json!(param));
        }
        Answer {
            status,
            body: json!({ "error": error }),
        }
    }

    /// 400 `invalid_request_error`.
    pub(super) fn invalid(
        code: Option<&str>,
        message: impl Into<String>,
        param: Option<&str>,
    ) -> Answer {
        Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
            param,
        )
    }

    pub(super) fn missing(param: &str) -> Answer {
        Answer::invalid(
            Some("parameter_missing"),
            format!("Missing required param: {param}."),
            Some(param),
        )
    }

    pub(super) fn not_found(kind: &str, id: &str) -> Answer {
        Answer::error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            format!("No such {kind}: '{id}'"),
            Some("id"),
        )
    }

    /// Saved under an idempotency key? Validation, auth, conflicts and rate limits are not.
    pub(super) fn saveable(&self) -> bool {
        !matches!(self.status.as_u16(), 400 | 401 | 409 | 429)
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        json_response(self.status, self.body.to_string())
    }
}

pub(super) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Stripe's answer to an injected fault.
pub(crate) fn fault_response(status: StatusCode) -> Response {
    let answer = match status.as_u16() {
        429 => Answer::error(
            status,
            "invalid_request_error",
            Some("rate_limit"),
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
            None,
        ),
        500..=599 => Answer::error(
            status,
            "api_error",
            None,
            "An unknown error occurred (mock fault).",
            None,
        ),
        _ => Answer::error(
            status,
            "invalid_request_error",
            None,
            format!("Injected fault (HTTP {}).", status.as_u16()),
            None,
        ),
    };
    answer.into_response()
}

/// Stripe's 404 for an unknown URL.
pub(crate) fn unrecognized_url(method: &Method, path: &str) -> Response {
    Answer::error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        format!(
            "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
        ),
        None,
    )
    .into_response()
}

/// The authenticated secret key.
pub(crate) struct ApiKey {
    pub(super) livemode: bool,
}

/// Accepts `Bearer sk_…` and Basic with `sk_…` as user name; anything else → 401.
pub(crate) fn authenticate(headers: &HeaderMap) -> Result<ApiKey, Answer> {
    let unauthorized = |message: String| {
        Answer::error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            message,
            None,
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    let key = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim().to_string(),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => {
            base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .map(|user| user.split(':').next().unwrap_or("").to_string())
                .unwrap_or_default()
        }
        _ => String::new(),
    };
    if key.is_empty() {
        return Err(unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.".to_string(),
        ));
    }
    if !key.starts_with("sk_") || key.len() <= 3 {
        return Err(unauthorized(format!(
            "Invalid API Key provided: {}",
            mask_key(&key)
        )));
    }
    Ok(ApiKey {
        livemode: key.starts_with("sk_live_"),
    })
}

/// `sk_test_abcdef…1234` → `sk_test_****1234`.
pub(super) fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
}

/// Decodes a form body (`a=1&metadata[k]=v`) into ordered pairs.
pub(crate) fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, Answer> {
    serde_urlencoded::from_bytes(body).map_err(|_| {
        Answer::invalid(
            None,
            "Invalid request body: expected application/x-www-form-urlencoded parameters.",
            None,
        )
    })
}

/// Handles `metadata` / `metadata[key]` parameters; `Ok(false)` when `name` is not metadata.
pub(super) fn apply_metadata(
    metadata: &mut BTreeMap<String, String>,
    name: &str,
    value: &str,
) -> Result<bool, Answer> {
    if name == "metadata" {
        if !value.is_empty() {
            return Err(Answer::invalid(
                None,
                "Invalid metadata: metadata must be a set of key-value pairs, or an empty string to unset all keys.",
                Some("metadata"),
            ));
        }
        metadata.clear();
        return Ok(true);
    }
    let Some(inner) = name
        .strip_prefix("metadata[")
        .and_then(|rest| rest.strip_suffix(']'))
    else {
        return Ok(false);
    };
    if inner.is_empty() || inner.contains('[') || inner.contains(']') {
        return Err(Answer::invalid(
            None,
            format!("Invalid metadata key {name:?}: keys may not be empty or contain `[` or `]`."),
            Some(name),
        ));
    }
    if inner.chars().count() > 40 {
        return Err(Answer::invalid(
            None,
            format!("Metadata key {inner:?} is too long: keys must be at most 40 characters."),
            Some(name),
        ));
    }
    if value.chars().count() > 500 {
        return Err(Answer::invalid(
            None,
            format!(
                "Metadata value for key {inner:?} is too long: values must be at most 500 characters."
            ),
            Some(name),
        ));
    }
    if value.is_empty() {
        metadata.remove(inner);
    } else {
        metadata.insert(inner.to_string(), value.to_string());
    }
    if metadata.len() > 50 {
        return Err(Answer::invalid(
            None,
            "Invalid metadata: metadata can have at most 50 keys.",
            Some("metadata"),
        ));
    }
    Ok(true)
}

pub(super) fn parse_int(name: &str, value: &str) -> Result<i64, Answer> {
    value.trim().parse::<i64>().map_err(|_| {
        Answer::invalid(
            Some("parameter_invalid_integer"),
            format!("Invalid integer: {value}"),
            Some(name),
        )
    })
}

/// What happens to a Stripe POST before its endpoint runs.
pub(super) enum Admission {
    /// Run the endpoint, holding the key's reservation when an `Idempotency-Key` was given.
    Execute {
        key: ApiKey,
        params: Vec<(String, String)>,
        reservation: Option<Reservation>,
    },
    /// Answered already: 401, unreadable body, replay, or an idempotency error.
    Answered(Response),
}

/// Authenticates a POST, decodes its form body and presents its `Idempotency-Key`.
pub(super) fn admit(
    state: &MockState,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: &str,
) -> Admission {
    let key = match authenticate(headers) {
        Ok(key) => key,
        Err(answer) => return Admission::Answered(answer.into_response()),
    };
    let params = match parse_form(body) {
        Ok(params) => params,
        Err(answer) => return Admission::Answered(answer.into_response()),
    };
    match reserve(state, headers, endpoint, &params) {
        Reserved::Execute(reservation) => Admission::Execute {
            key,
            params,
            reservation,
        },
        Reserved::Answered(response) => Admission::Answered(response),
    }
}

enum Reserved {
    Execute(Option<Reservation>),
    Answered(Response),
}

fn reserve(
    state: &MockState,
    headers: &HeaderMap,
    endpoint: &str,
    params: &[(String, String)],
) -> Reserved {
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
    else {
        return Reserved::Execute(None);
    };
    if key.chars().count() > 255 {
        let answer = Answer::invalid(
            None,
            "Idempotency-Key must be at most 255 characters long.",
            None,
        );
        return Reserved::Answered(answer.into_response());
    }
    let params = fingerprint(params);
    let begun = state.with(|w| {
        let begun = w.idempotency.begin(key, endpoint, &params);
        if matches!(begun, Begin::Replay(_)) {
            w.stats.replays += 1;
        }
        begun
    });
    let answer = match begun {
        Begin::Fresh(token) => {
            return Reserved::Execute(Some(Reservation::new(
                state.clone(),
                key.to_string(),
                token,
            )));
        }
        Begin::Replay(saved) => {
            let mut response = json_response(saved.status, saved.body);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            echo_key(&mut response, key);
            return Reserved::Answered(response);
        }
        Begin::Mismatch(None) => Answer::error(
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            None,
            format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
            ),
            None,
        ),
        Begin::Mismatch(Some(first)) => Answer::error(
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            None,
            format!(
                "Keys for idempotent requests can only be used for the same endpoint they were first used for ('{first}' vs '{endpoint}'). Try using a key other than '{key}' if you meant to execute a different request."
            ),
            None,
        ),
        Begin::InUse => Answer::error(
            StatusCode::CONFLICT,
            "idempotency_error",
            Some("idempotency_key_in_use"),
            format!(
                "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): {key}. Please try again later."
            ),
            None,
        ),
    };
    Reserved::Answered(answer.into_response())
}

fn echo_key(response: &mut Response, key: &str) {
    if let Ok(value) = HeaderValue::from_str(key) {
        response.headers_mut().insert("idempotency-key", value);
    }
}

/// Answers, saving the answer under the reserved key when Stripe would.
pub(super) fn conclude(reservation: Option<Reservation>, answer: Answer) -> Response {
    let Some(reservation) = reservation else {
        return answer.into_response();
    };
    let key = reservation.key().to_string();
    let body = answer.body.to_string();
    if answer.saveable() {
        reservation.save(answer.status, body.clone());
    } else {
        drop(reservation);
    }
    let mut response = json_response(answer.status, body);
    echo_key(&mut response, &key);
    response
}
