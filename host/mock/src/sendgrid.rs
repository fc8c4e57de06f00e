//! Fake SendGrid v3 Mail Send (providers.md §2): `POST /v3/mail/send` with a JSON body and
//! `Authorization: Bearer SG.…`; 202 with an empty body and `X-Message-Id` on success; errors as
//! `{"errors":[{"message","field","help"}]}`, every validation problem listed, as SendGrid does.
//! SendGrid has no idempotency key: each accepted request is one more email in the stats.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::{MockState, is_email, random_id};

pub(crate) fn routes() -> Router<MockState> {
    Router::new().route("/v3/mail/send", post(send))
}

/// One entry of SendGrid's `errors` array.
#[derive(Debug, Clone, PartialEq)]
struct FieldError {
    field: Option<String>,
    message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

fn errors_response(status: StatusCode, errors: &[FieldError]) -> Response {
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| {
            let help = e.field.as_ref().map(|f| {
                format!(
                    "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.{f}"
                )
            });
            json!({"message": e.message, "field": e.field, "help": help})
        })
        .collect();
    (status, Json(json!({ "errors": errors }))).into_response()
}

fn plain_error(status: StatusCode, message: &str) -> Response {
    errors_response(
        status,
        &[FieldError {
            field: None,
            message: message.to_string(),
        }],
    )
}

/// SendGrid's answer to an injected fault.
pub(crate) fn fault_response(status: StatusCode) -> Response {
    let message = match status.as_u16() {
        429 => "too many requests".to_string(),
        500 => "internal server error".to_string(),
        503 => "service unavailable".to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    plain_error(status, &message)
}

/// SendGrid's 404.
pub(crate) fn not_found() -> Response {
    plain_error(StatusCode::NOT_FOUND, "resource not found")
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, key)| {
            scheme.eq_ignore_ascii_case("bearer") && key.trim().starts_with("SG.") && key.len() > 3
        })
}

async fn send(State(state): State<MockState>, headers: HeaderMap, body: Bytes) -> Response {
    state.latency().await;
    if !authorized(&headers) {
        return plain_error(StatusCode::UNAUTHORIZED, "authorization required");
    }
    let mail: Value = match serde_json::from_slice(&body) {
        Ok(mail) => mail,
        Err(_) => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                "The request body could not be parsed as JSON.",
            );
        }
    };
    let order_ids = match validate(&mail) {
        Ok(order_ids) => order_ids,
        Err(errors) => return errors_response(StatusCode::BAD_REQUEST, &errors),
    };
    let message_id = random_id("", 22);
    state.with(|w| w.stats.email(order_ids.iter().map(String::as_str)));
    delivery_events(&state, &mail, &message_id);
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(value) = HeaderValue::from_str(&message_id) {
        response.headers_mut().insert("x-message-id", value);
    }
    response
}

/// One Event Webhook batch for an accepted message: per recipient of each personalization,
/// `delivered` (`bounce` for an address with `+bounce`, `dropped` with `+drop`), its
/// `custom_args` as top-level keys as SendGrid sends them.
fn delivery_events(state: &MockState, mail: &Value, message_id: &str) {
    crate::webhooks::emit(state, crate::webhooks::Endpoint::Sendgrid, 1, || {
        let events = delivery_batch(mail, message_id);
        let id = events[0]["sg_event_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (id, Value::Array(events))
    });
}

/// The events of [`delivery_events`]; a validated message has at least one recipient.
fn delivery_batch(mail: &Value, message_id: &str) -> Vec<Value> {
    let now = crate::state::unix_now();
    let mut events = Vec::new();
    let personalizations = mail["personalizations"].as_array().into_iter().flatten();
    for (i, personalization) in personalizations.enumerate() {
        for to in personalization["to"].as_array().into_iter().flatten() {
            let email = to["email"].as_str().unwrap_or_default();
            let kind = if email.contains("+bounce") {
                "bounce"
            } else if email.contains("+drop") {
                "dropped"
            } else {
                "delivered"
            };
            let mut event = serde_json::json!({
                "email": email,
                "timestamp": now,
                "smtp-id": format!("<{message_id}@ismtpd-mock>"),
                "event": kind,
                "sg_event_id": random_id("", 22),
                "sg_message_id": format!("{message_id}.filter0001.{i}"),
                "response": "250 OK",
            });
            if let (Some(fields), Some(args)) = (
                event.as_object_mut(),
                personalization["custom_args"].as_object(),
            ) {
                for (name, value) in args {
                    fields.entry(name.clone()).or_insert(value.clone());
                }
            }
            events.push(event);
        }
    }
    events
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn non_empty_str(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Checks a list of `{email, name?}` recipients at `field`.
fn check_recipients(list: &[Value], field: &str, errors: &mut Vec<FieldError>) {
    for (j, recipient) in list.iter().enumerate() {
        let email = recipient.get("email").and_then(Value::as_str);
        if !email.is_some_and(is_email) {
            errors.push(FieldError::new(
                format!("{field}.{j}.email"),
                "Does not contain a valid address.",
            ));
        }
        if let Some(name) = recipient.get("name").and_then(Value::as_str)
            && (name.contains(';') || name.contains(','))
        {
            errors.push(FieldError::new(
                format!("{field}.{j}.name"),
                "Names may not contain ';' or ','.",
            ));
        }
    }
}

/// `custom_args` must be an object of strings; returns its `order_id`, if any.
fn check_custom_args<'a>(
    value: Option<&'a Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<&'a str> {
    let args = match value? {
        Value::Object(args) => args,
        other => {
            errors.push(FieldError::new(
                field,
                format!(
                    "Invalid type. Expected: object, given: {}.",
                    type_name(other)
                ),
            ));
            return None;
        }
    };
    for (key, arg) in args {
        if !arg.is_string() {
            errors.push(FieldError::new(
                format!("{field}.{key}"),
                format!("Invalid type. Expected: string, given: {}.", type_name(arg)),
            ));
        }
    }
    non_empty_str(args.get("order_id"))
}

/// Validates a Mail Send body; on success returns the distinct order ids its personalizations
/// carry (`custom_args.order_id`, personalization-level overriding message-level).
fn validate(mail: &Value) -> Result<BTreeSet<String>, Vec<FieldError>> {
    let Some(root) = mail.as_object() else {
        return Err(vec![FieldError::new(
            "",
            format!(
                "Invalid type. Expected: object, given: {}.",
                type_name(mail)
            ),
        )]);
    };
    let mut errors = Vec::new();
    let message_order = check_custom_args(root.get("custom_args"), "custom_args", &mut errors);
    let has_template = non_empty_str(root.get("template_id")).is_some();
    let personalizations = root
        .get("personalizations")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty());
    let mut order_ids = BTreeSet::new();
    let mut every_has_subject = personalizations.is_some();
    match personalizations {
        None => errors.push(FieldError::new(
            "personalizations",
            "The personalizations field is required and must have at least one personalization.",
        )),
        Some(list) if list.len() > 1000 => errors.push(FieldError::new(
            "personalizations",
            "You may not have more than 1000 personalizations per API request.",
        )),
        Some(list) => {
            for (i, p) in list.iter().enumerate() {
                let field = format!("personalizations.{i}");
                match p.get("to").and_then(Value::as_array).filter(|to| !to.is_empty()) {
                    Some(to) => check_recipients(to, &format!("{field}.to"), &mut errors),
                    None => errors.push(FieldError::new(
                        format!("{field}.to"),
                        "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
                    )),
                }
                for list in ["cc", "bcc"] {
                    if let Some(recipients) = p.get(list).and_then(Value::as_array) {
                        check_recipients(recipients, &format!("{field}.{list}"), &mut errors);
                    }
                }
                every_has_subject &= non_empty_str(p.get("subject")).is_some();
                let own = check_custom_args(
                    p.get("custom_args"),
                    &format!("{field}.custom_args"),
                    &mut errors,
                );
                if let Some(order) = own.or(message_order) {
                    order_ids.insert(order.to_string());
                }
            }
        }
    }
    match root.get("from") {
        Some(Value::Object(from)) => {
            if !from.get("email").and_then(Value::as_str).is_some_and(is_email) {
                errors.push(FieldError::new(
                    "from.email",
                    "The from email does not contain a valid address.",
                ));
            }
        }
        _ => errors.push(FieldError::new(
            "from",
            "The from object must be provided for every email send. It is an object that requires an email parameter, but may also contain a name parameter.",
        )),
    }
    if let Some(reply_to) = root.get("reply_to")
        && !reply_to
            .get("email")
            .and_then(Value::as_str)
            .is_some_and(is_email)
    {
        errors.push(FieldError::new(
            "reply_to.email",
            "The reply_to email does not contain a valid address.",
        ));
    }
    if !has_template && !every_has_subject && non_empty_str(root.get("subject")).is_none() {
        errors.push(FieldError::new(
            "subject",
            "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
        ));
    }
    match root.get("content").and_then(Value::as_array) {
        Some(blocks) if !blocks.is_empty() => {
            for (i, block) in blocks.iter().enumerate() {
                if non_empty_str(block.get("type")).is_none() {
                    errors.push(FieldError::new(
                        format!("content.{i}.type"),
                        "The content type is required and must be a string at least one character in length.",
                    ));
                }
                if non_empty_str(block.get("value")).is_none() {
                    errors.push(FieldError::new(
                        format!("content.{i}.value"),
                        "The content value must be a string at least one character in length.",
                    ));
                }
            }
        }
        _ if has_template => {}
        _ => errors.push(FieldError::new(
            "content",
            "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block. We typically suggest both text/plain and text/html blocks are included, but only one block is required.",
        )),
    }
    if let Some(categories) = root.get("categories") {
        let valid = categories.as_array().is_some_and(|list| {
            let names: BTreeSet<&str> = list.iter().filter_map(Value::as_str).collect();
            list.len() <= 10
                && names.len() == list.len()
                && names.iter().all(|n| !n.is_empty() && n.len() <= 255)
        });
        if !valid {
            errors.push(FieldError::new(
                "categories",
                "Categories must be an array of at most 10 unique strings, each at most 255 characters long.",
            ));
        }
    }
    if errors.is_empty() {
        Ok(order_ids)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Value {
        json!({"personalizations":[{"to":[{"email":"buyer@example.com","name":"Buyer"}],
                 "custom_args":{"order_id":"A-1001","notification":"receipt"}}],
               "from":{"email":"shop@example.com","name":"Shop"},"subject":"Your receipt",
               "content":[{"type":"text/plain","value":"Thanks for order A-1001"}],"categories":["receipt"]})
    }

    fn fields(mail: &Value) -> Vec<String> {
        validate(mail)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field.unwrap_or_default())
            .collect()
    }

    #[test]
    fn accepts_the_documented_example() {
        let orders = validate(&receipt()).unwrap();
        assert_eq!(orders.into_iter().collect::<Vec<_>>(), ["A-1001"]);
    }

    #[test]
    fn message_level_order_id_applies_unless_overridden() {
        let mut mail = receipt();
        mail["custom_args"] = json!({"order_id": "M-1"});
        mail["personalizations"]
            .as_array_mut()
            .unwrap()
            .push(json!({"to":[{"email":"b@example.com"}]}));
        let orders: Vec<String> = validate(&mail).unwrap().into_iter().collect();
        assert_eq!(orders, ["A-1001", "M-1"]);
    }

    #[test]
    fn names_each_bad_field() {
        assert_eq!(
            fields(&json!({})),
            ["personalizations", "from", "subject", "content"]
        );
        let mut mail = receipt();
        mail["personalizations"][0]["to"] = json!([{"email": "not-an-address"}]);
        mail["from"] = json!({"email": "shop"});
        mail["content"] = json!([{"type": "text/plain"}]);
        assert_eq!(
            fields(&mail),
            [
                "personalizations.0.to.0.email",
                "from.email",
                "content.0.value"
            ]
        );
        let mut mail = receipt();
        mail["personalizations"][0]["to"] = json!([]);
        assert_eq!(fields(&mail), ["personalizations.0.to"]);
    }

    #[test]
    fn custom_args_must_be_an_object_of_strings() {
        let mut mail = receipt();
        mail["custom_args"] = json!("order A-1001");
        let errors = validate(&mail).unwrap_err();
        assert_eq!(errors[0].field.as_deref(), Some("custom_args"));
        assert_eq!(
            errors[0].message,
            "Invalid type. Expected: object, given: string."
        );
        let mut mail = receipt();
        mail["personalizations"][0]["custom_args"] = json!({"order_id": 7});
        assert_eq!(fields(&mail), ["personalizations.0.custom_args.order_id"]);
    }

    #[test]
    fn a_template_stands_in_for_subject_and_content() {
        let mut mail = receipt();
        let root = mail.as_object_mut().unwrap();
        root.remove("subject");
        root.remove("content");
        root.insert("template_id".into(), json!("d-123"));
        assert!(validate(&mail).is_ok());
    }

    #[test]
    fn only_bearer_sg_keys_are_authorized() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            authorized(&headers)
        };
        assert!(with("Bearer SG.abc.def"));
        assert!(!with("Bearer sk_test_1"));
        assert!(!with("Basic SG.abc"));
        assert!(!authorized(&HeaderMap::new()));
    }
}
