//! Reading Shippo's answer to `POST /transactions`:
//!
//! | answer | result |
//! | --- | --- |
//! | 2xx, `status: SUCCESS` (or a pending `QUEUED`/`WAITING`) | the label |
//! | 2xx, `status: ERROR` | `unavailable` when a carrier timed out or asks to try again, else `invalid-request`; `messages[].text` as the message |
//! | 400 (DRF field errors, possibly nested) | `invalid-request` listing `field: message` |
//! | 401, 403 | `unauthorized` (`detail`) |
//! | 429 | `rate-limited` (`Retry-After`, if any) |
//! | 404, other 4xx | `invalid-request` |
//! | 5xx, anything else | `unavailable` |

use cairn_sdk::http::Response;
use serde::Deserialize;
use serde_json::Value;

use cairn_provider::types::{Label, LabelVoid, ProviderError};

/// A Shippo Transaction, as far as a label needs it.
#[derive(Deserialize)]
pub struct TransactionObject {
    object_id: String,
    pub status: Option<String>,
    tracking_number: Option<String>,
    label_url: Option<String>,
    /// A rate object (instalabel) or a rate id (purchase from a rate).
    rate: Option<Value>,
    /// The merchant reference, `order <id>`.
    pub metadata: Option<String>,
    /// When Shippo made it (RFC 3339).
    pub object_created: Option<String>,
    #[serde(default)]
    messages: Vec<Message>,
}

impl TransactionObject {
    /// The label this transaction bought (empty strings as `None`, the carrier from an inline
    /// rate object).
    pub fn into_label(self) -> Label {
        Label {
            id: self.object_id,
            tracking_number: self.tracking_number.filter(|t| !t.is_empty()),
            label_url: self.label_url.filter(|u| !u.is_empty()),
            carrier: self
                .rate
                .as_ref()
                .and_then(|rate| rate.get("provider"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            status: self.status.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct Message {
    source: Option<String>,
    code: Option<String>,
    text: Option<String>,
}

/// The answer to `POST /transactions`.
pub fn label(response: &Response) -> Result<Label, ProviderError> {
    let status = response.status();
    if !response.is_success() {
        return Err(error(response));
    }
    let tx: TransactionObject = response.json().map_err(|err| {
        ProviderError::Unavailable(format!(
            "shippo HTTP {status}: unreadable transaction: {err}"
        ))
    })?;
    if tx.status.as_deref() == Some("ERROR") {
        return Err(transaction_error(&tx.messages));
    }
    Ok(tx.into_label())
}

/// The answer to `POST /refunds`: the void's status; a label refunded already is voided.
pub fn label_void(response: &Response, label_id: &str) -> Result<LabelVoid, ProviderError> {
    #[derive(Deserialize)]
    struct RefundObject {
        status: Option<String>,
    }
    if !response.is_success() {
        return match error(response) {
            ProviderError::InvalidRequest(message) if message.contains("already been refunded") => {
                Ok(LabelVoid {
                    label_id: label_id.to_owned(),
                    status: "SUCCESS".to_owned(),
                })
            }
            other => Err(other),
        };
    }
    let refund: RefundObject = response
        .json()
        .map_err(|err| ProviderError::Unavailable(format!("shippo: unreadable refund: {err}")))?;
    match refund.status.as_deref() {
        Some("ERROR") => Err(ProviderError::InvalidRequest(format!(
            "shippo: the label {label_id} cannot be voided"
        ))),
        status => Ok(LabelVoid {
            label_id: label_id.to_owned(),
            status: status.unwrap_or("QUEUED").to_owned(),
        }),
    }
}

/// A transaction that failed at the carrier.
fn transaction_error(messages: &[Message]) -> ProviderError {
    let texts: Vec<String> = messages
        .iter()
        .filter_map(|m| {
            let text = m.text.as_deref()?;
            Some(match &m.source {
                Some(source) => format!("{source}: {text}"),
                None => text.to_owned(),
            })
        })
        .collect();
    let text = if texts.is_empty() {
        "shippo: label purchase failed".to_owned()
    } else {
        texts.join("; ")
    };
    let transient = messages.iter().any(|m| {
        let code = m.code.as_deref().unwrap_or_default().to_ascii_lowercase();
        let text = m.text.as_deref().unwrap_or_default().to_ascii_lowercase();
        code.contains("timeout")
            || code.contains("unavailable")
            || text.contains("try again")
            || text.contains("did not respond")
    });
    if transient {
        ProviderError::Unavailable(text)
    } else {
        ProviderError::InvalidRequest(text)
    }
}

/// A non-2xx answer as a provider error (see the module table).
pub fn error(response: &Response) -> ProviderError {
    let status = response.status();
    let body: Option<Value> = response.json().ok();
    let mut messages = Vec::new();
    if let Some(body) = &body {
        flatten(body, "", &mut messages);
    }
    let message = if messages.is_empty() {
        format!("shippo answered HTTP {status}")
    } else {
        messages.join("; ")
    };
    match status {
        401 | 403 => ProviderError::Unauthorized(message),
        429 => ProviderError::RateLimited(response.retry_after_ms()),
        400..=499 => ProviderError::InvalidRequest(message),
        _ => ProviderError::Unavailable(format!("shippo HTTP {status}: {message}")),
    }
}

/// Django REST framework errors (`{"field": ["msg"]}`, nested objects and lists, `__all__`,
/// `non_field_errors`, `detail`) as `path: message` lines.
fn flatten(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = match key.as_str() {
                    "__all__" | "non_field_errors" | "detail" => path.to_owned(),
                    _ if path.is_empty() => key.clone(),
                    _ => format!("{path}.{key}"),
                };
                flatten(inner, &path, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| flatten(item, path, out)),
        Value::String(text) if path.is_empty() => out.push(text.clone()),
        Value::String(text) => out.push(format!("{path}: {text}")),
        Value::Null => {}
        other if path.is_empty() => out.push(other.to_string()),
        other => out.push(format!("{path}: {other}")),
    }
}

#[cfg(test)]
mod tests;
