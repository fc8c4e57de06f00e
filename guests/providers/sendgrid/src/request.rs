//! The v3 Mail Send request: one personalization to the customer carrying
//! `custom_args.order_id`, the configured sender, the subject, and `text/plain` content
//! (followed by `text/html` when the message has HTML, the order SendGrid requires).

use cairn_sdk::http::{Request, RequestBuilder};
use serde::Serialize;

use cairn_provider::types::EmailMessage;

/// The real API, when `api-base` is not configured.
pub const DEFAULT_API_BASE: &str = "https://api.sendgrid.com";
pub const DEFAULT_FROM_EMAIL: &str = "orders@cairn.example";
pub const DEFAULT_FROM_NAME: &str = "Cairn Shop";
/// The header value the host replaces with the key; the guest never sees it.
pub const AUTHORIZATION: &str = "Bearer {{secret:SENDGRID_API_KEY}}";

/// Operator configuration (`call-context.config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `api-base`, without a trailing slash.
    pub api_base: String,
    /// `from-email`: must be a verified sender identity at SendGrid.
    pub from_email: String,
    /// `from-name`.
    pub from_name: String,
}

impl Settings {
    /// Reads the settings through `lookup` (the `config` import, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Self {
            api_base: non_empty("api-base")
                .unwrap_or_else(|| DEFAULT_API_BASE.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            from_email: non_empty("from-email").unwrap_or_else(|| DEFAULT_FROM_EMAIL.to_owned()),
            from_name: non_empty("from-name").unwrap_or_else(|| DEFAULT_FROM_NAME.to_owned()),
        }
    }
}

#[derive(Serialize)]
struct MailSend<'a> {
    personalizations: [Personalization<'a>; 1],
    from: Mailbox<'a>,
    subject: &'a str,
    content: Vec<Content<'a>>,
}

#[derive(Serialize)]
struct Personalization<'a> {
    to: [Mailbox<'a>; 1],
    custom_args: CustomArgs<'a>,
}

#[derive(Serialize)]
struct CustomArgs<'a> {
    order_id: &'a str,
}

#[derive(Serialize)]
struct Mailbox<'a> {
    email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Serialize)]
struct Content<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'a str,
}

/// `POST /v3/mail/send`.
pub fn mail_send(settings: &Settings, msg: &EmailMessage) -> RequestBuilder {
    let mut content = vec![Content {
        kind: "text/plain",
        value: &msg.text,
    }];
    if let Some(html) = &msg.html {
        content.push(Content {
            kind: "text/html",
            value: html,
        });
    }
    let body = MailSend {
        personalizations: [Personalization {
            to: [Mailbox {
                email: &msg.to,
                name: msg.to_name.as_deref().and_then(display_name),
            }],
            custom_args: CustomArgs {
                order_id: &msg.order_id,
            },
        }],
        from: Mailbox {
            email: &settings.from_email,
            name: display_name(&settings.from_name),
        },
        subject: &msg.subject,
        content,
    };
    Request::post(format!("{}/v3/mail/send", settings.api_base))
        .header("Authorization", AUTHORIZATION)
        .header("Accept", "application/json")
        .json(&body)
}

/// A display name SendGrid accepts: no `;` or `,` (they split recipient lists), trimmed.
fn display_name(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .map(|c| if c == ';' || c == ',' { ' ' } else { c })
        .collect();
    let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    (!cleaned.is_empty()).then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn message() -> EmailMessage {
        EmailMessage {
            to: "alice@example.com".into(),
            to_name: Some("Alice Smith".into()),
            subject: "Your order order-001 is confirmed".into(),
            text: "Total: 50.00 USD".into(),
            html: None,
            order_id: "order-001".into(),
        }
    }

    fn defaults() -> Settings {
        Settings::from_lookup(|_| None)
    }

    fn body(request: &Request) -> Value {
        serde_json::from_slice(request.body()).unwrap()
    }

    #[test]
    fn mail_send_wire_format() {
        let request = mail_send(&defaults(), &message()).build().unwrap();
        assert_eq!(request.method(), "POST");
        assert_eq!(request.url(), "https://api.sendgrid.com/v3/mail/send");
        assert_eq!(
            request.headers(),
            [
                (
                    "Authorization".to_owned(),
                    "Bearer {{secret:SENDGRID_API_KEY}}".to_owned()
                ),
                ("Accept".to_owned(), "application/json".to_owned()),
                ("Content-Type".to_owned(), "application/json".to_owned()),
            ]
        );
        assert_eq!(
            body(&request),
            json!({
                "personalizations": [{
                    "to": [{"email": "alice@example.com", "name": "Alice Smith"}],
                    "custom_args": {"order_id": "order-001"}
                }],
                "from": {"email": "orders@cairn.example", "name": "Cairn Shop"},
                "subject": "Your order order-001 is confirmed",
                "content": [{"type": "text/plain", "value": "Total: 50.00 USD"}]
            })
        );
    }

    #[test]
    fn html_follows_text_and_names_are_cleaned() {
        let msg = EmailMessage {
            to_name: Some("Smith, Alice; Jr".into()),
            html: Some("<p>Total</p>".into()),
            ..message()
        };
        let settings = Settings::from_lookup(|name| match name {
            "api-base" => Some("http://127.0.0.1:9/sendgrid/".into()),
            "from-email" => Some("shop@example.com".into()),
            "from-name" => Some("Shop".into()),
            _ => None,
        });
        let request = mail_send(&settings, &msg).build().unwrap();
        assert_eq!(request.url(), "http://127.0.0.1:9/sendgrid/v3/mail/send");
        let body = body(&request);
        assert_eq!(
            body["content"],
            json!([
                {"type": "text/plain", "value": "Total: 50.00 USD"},
                {"type": "text/html", "value": "<p>Total</p>"}
            ])
        );
        assert_eq!(
            body["personalizations"][0]["to"][0]["name"],
            "Smith Alice Jr"
        );
        assert_eq!(
            body["from"],
            json!({"email": "shop@example.com", "name": "Shop"})
        );
    }

    #[test]
    fn a_missing_name_is_omitted() {
        let msg = EmailMessage {
            to_name: None,
            ..message()
        };
        let body = body(&mail_send(&defaults(), &msg).build().unwrap());
        assert_eq!(
            body["personalizations"][0]["to"],
            json!([{"email": "alice@example.com"}])
        );
    }
}
