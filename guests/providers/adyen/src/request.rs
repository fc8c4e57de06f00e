//! Adyen Checkout API v71 requests, as JSON: `POST /v71/payments` (a card payment with a stored
//! payment method), `POST /v71/payments/{pspReference}/refunds` (a partial refund) and
//! `POST /v71/payments/{pspReference}/reversals` (the whole payment: refunded, or cancelled if not
//! yet captured). Every request carries `X-API-Key: {{secret:ADYEN_API_KEY}}` and the host's
//! idempotency key as `Idempotency-Key`; the merchant's order id is the `reference`.

use cairn_sdk::http::{Request, RequestBuilder};
use serde_json::{Value, json};

use cairn_provider::types::{ChargeRequest, ProviderError, RefundRequest};

/// Adyen's test Checkout endpoint, when `api-base` is not configured. (Live endpoints carry a
/// merchant prefix: `https://{prefix}-checkout-live.adyenpayments.com/checkout`.)
pub const DEFAULT_API_BASE: &str = "https://checkout-test.adyen.com";
/// The API version in every path.
pub const API_VERSION: &str = "v71";
/// The header value the host replaces with the key; the guest never sees it.
pub const API_KEY: &str = "{{secret:ADYEN_API_KEY}}";

/// Operator configuration (`call-context.config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `api-base`, without a trailing slash.
    pub api_base: String,
    /// `merchant-account` (required: Adyen needs it on every request).
    pub merchant_account: String,
    /// `default-payment-method`: a stored payment method id (or a test token) used when the
    /// order names none.
    pub default_payment_method: Option<String>,
    /// `refund-currency`: the currency of partial refunds (a refund request carries none);
    /// default `USD`.
    pub refund_currency: String,
}

impl Settings {
    /// Reads the settings through `lookup` (the `config` import, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ProviderError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Ok(Self {
            api_base: non_empty("api-base")
                .unwrap_or_else(|| DEFAULT_API_BASE.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            merchant_account: non_empty("merchant-account").ok_or_else(|| {
                ProviderError::InvalidRequest(
                    "adyen: the provider's config has no merchant-account".to_owned(),
                )
            })?,
            default_payment_method: non_empty("default-payment-method"),
            refund_currency: non_empty("refund-currency")
                .map_or_else(|| "USD".to_owned(), |c| c.to_ascii_uppercase()),
        })
    }
}

/// `POST /v71/payments`: `amount` in minor units with an upper-case currency, the order id as
/// `reference`, a `scheme` payment method by stored id (a merchant-initiated, card-on-file
/// payment: `shopperInteraction: ContAuth`), the shopper's e-mail and the order in `metadata`.
pub fn create_payment(
    settings: &Settings,
    idempotency_key: &str,
    req: &ChargeRequest,
) -> Result<RequestBuilder, ProviderError> {
    let method = req
        .payment_method
        .as_deref()
        .filter(|pm| !pm.is_empty())
        .or(settings.default_payment_method.as_deref())
        .ok_or_else(|| {
            ProviderError::InvalidRequest(
                "adyen: no payment method: the order names none and the provider's config has \
                 no default-payment-method"
                    .to_owned(),
            )
        })?;
    let mut body = json!({
        "amount": {"value": req.amount, "currency": req.currency.to_ascii_uppercase()},
        "reference": req.order_id,
        "merchantAccount": settings.merchant_account,
        "paymentMethod": {"type": "scheme", "storedPaymentMethodId": method},
        "shopperInteraction": "ContAuth",
        "recurringProcessingModel": "CardOnFile",
        "shopperReference": req.customer_email.as_deref().unwrap_or(&req.order_id),
        "metadata": {"orderId": req.order_id, "description": truncate(&req.description, 80)},
    });
    if let Some(email) = &req.customer_email {
        body["shopperEmail"] = Value::String(email.clone());
    }
    Ok(post(
        settings,
        &format!("/{API_VERSION}/payments"),
        idempotency_key,
        &body,
    ))
}

/// A refund: of `amount` (`/refunds`), or of the whole payment (`/reversals`).
pub fn create_refund(
    settings: &Settings,
    idempotency_key: &str,
    req: &RefundRequest,
) -> RequestBuilder {
    let psp = encode_segment(&req.charge_id);
    let mut body = json!({
        "merchantAccount": settings.merchant_account,
        "reference": req.order_id,
    });
    let path = match req.amount {
        Some(amount) => {
            body["amount"] = json!({"value": amount, "currency": settings.refund_currency});
            if let Some(reason) = &req.reason {
                body["merchantRefundReason"] = Value::String(refund_reason(reason).to_owned());
            }
            format!("/{API_VERSION}/payments/{psp}/refunds")
        }
        None => format!("/{API_VERSION}/payments/{psp}/reversals"),
    };
    post(settings, &path, idempotency_key, &body)
}

/// Stripe-style refund reasons as Adyen's `merchantRefundReason`.
fn refund_reason(reason: &str) -> &'static str {
    match reason {
        "requested_by_customer" | "customer_request" => "CUSTOMER REQUEST",
        "fraudulent" | "fraud" => "FRAUD",
        "duplicate" => "DUPLICATE",
        "return" => "RETURN",
        _ => "OTHER",
    }
}

fn post(settings: &Settings, path: &str, idempotency_key: &str, body: &Value) -> RequestBuilder {
    Request::post(format!("{}{path}", settings.api_base))
        .header("X-API-Key", API_KEY)
        .header("Idempotency-Key", idempotency_key)
        .header("Accept", "application/json")
        .json(body)
}

/// A PSP reference as one path segment (they are alphanumeric; anything else is escaped).
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ProviderError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    fn shop() -> Settings {
        settings(&[
            ("merchant-account", "CairnShopECOM"),
            ("default-payment-method", "8415718415172204"),
        ])
        .unwrap()
    }

    fn charge() -> ChargeRequest {
        ChargeRequest {
            amount: 5000,
            currency: "usd".into(),
            payment_method: None,
            description: "Order order-001".into(),
            order_id: "order-001".into(),
            customer_email: Some("alice+decline@example.com".into()),
        }
    }

    fn body(request: &Request) -> Value {
        serde_json::from_slice(request.body()).unwrap()
    }

    #[test]
    fn settings_default_to_the_test_endpoint_and_need_a_merchant_account() {
        let s = shop();
        assert_eq!(s.api_base, "https://checkout-test.adyen.com");
        assert_eq!(s.refund_currency, "USD");
        let s = settings(&[
            ("merchant-account", "M"),
            ("api-base", "http://127.0.0.1:4010/"),
            ("refund-currency", "eur"),
        ])
        .unwrap();
        assert_eq!(s.api_base, "http://127.0.0.1:4010");
        assert_eq!(s.refund_currency, "EUR");
        assert_eq!(s.default_payment_method, None);
        assert!(matches!(
            settings(&[]),
            Err(ProviderError::InvalidRequest(m)) if m.contains("merchant-account")
        ));
    }

    #[test]
    fn payment_wire_format() {
        let request = create_payment(&shop(), "inv-1:3", &charge())
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(request.method(), "POST");
        assert_eq!(
            request.url(),
            "https://checkout-test.adyen.com/v71/payments"
        );
        assert_eq!(
            request.headers(),
            [
                (
                    "X-API-Key".to_owned(),
                    "{{secret:ADYEN_API_KEY}}".to_owned()
                ),
                ("Idempotency-Key".to_owned(), "inv-1:3".to_owned()),
                ("Accept".to_owned(), "application/json".to_owned()),
                ("Content-Type".to_owned(), "application/json".to_owned()),
            ]
        );
        assert_eq!(
            body(&request),
            json!({
                "amount": {"value": 5000, "currency": "USD"},
                "reference": "order-001",
                "merchantAccount": "CairnShopECOM",
                "paymentMethod": {"type": "scheme", "storedPaymentMethodId": "8415718415172204"},
                "shopperInteraction": "ContAuth",
                "recurringProcessingModel": "CardOnFile",
                "shopperReference": "alice+decline@example.com",
                "shopperEmail": "alice+decline@example.com",
                "metadata": {"orderId": "order-001", "description": "Order order-001"},
            })
        );
    }

    #[test]
    fn payment_method_prefers_the_order_and_needs_one() {
        let mut req = charge();
        req.payment_method = Some("pm_from_order".into());
        req.customer_email = None;
        let sent = body(&create_payment(&shop(), "k", &req).unwrap().build().unwrap());
        assert_eq!(
            sent["paymentMethod"]["storedPaymentMethodId"],
            "pm_from_order"
        );
        assert_eq!(sent["shopperReference"], "order-001");
        assert!(sent.get("shopperEmail").is_none());
        let bare = settings(&[("merchant-account", "M")]).unwrap();
        assert!(matches!(
            create_payment(&bare, "k", &charge()),
            Err(ProviderError::InvalidRequest(m)) if m.contains("default-payment-method")
        ));
    }

    #[test]
    fn refund_and_reversal_wire_format() {
        let req = RefundRequest {
            charge_id: "QFQTPCQ8HXSKGK82".into(),
            amount: Some(1000),
            reason: Some("requested_by_customer".into()),
            order_id: "order-001".into(),
        };
        let request = create_refund(&shop(), "inv-1:9", &req).build().unwrap();
        assert_eq!(
            request.url(),
            "https://checkout-test.adyen.com/v71/payments/QFQTPCQ8HXSKGK82/refunds"
        );
        assert_eq!(request.header("Idempotency-Key"), Some("inv-1:9"));
        assert_eq!(
            request.header("X-API-Key"),
            Some("{{secret:ADYEN_API_KEY}}")
        );
        assert_eq!(
            body(&request),
            json!({
                "merchantAccount": "CairnShopECOM",
                "reference": "order-001",
                "amount": {"value": 1000, "currency": "USD"},
                "merchantRefundReason": "CUSTOMER REQUEST",
            })
        );
        let whole = RefundRequest {
            amount: None,
            charge_id: "a/b".into(),
            ..req
        };
        let request = create_refund(&shop(), "k", &whole).build().unwrap();
        assert_eq!(
            request.url(),
            "https://checkout-test.adyen.com/v71/payments/a%2Fb/reversals"
        );
        assert_eq!(
            body(&request),
            json!({"merchantAccount": "CairnShopECOM", "reference": "order-001"})
        );
    }
}
