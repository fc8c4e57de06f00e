//! Stripe requests, form-encoded as Stripe expects: `POST /v1/charges` and `POST /v1/refunds`,
//! `Authorization: Bearer {{secret:STRIPE_API_KEY}}`, `Idempotency-Key`, merchant references in
//! `metadata[order_id]`.

use cairn_sdk::http::{Request, RequestBuilder};

use cairn_provider::types::{ChargeRequest, RefundRequest};

/// The real API, when `api-base` is not configured.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// Stripe's test card token, when neither the request nor `default-payment-method` names one.
pub const DEFAULT_PAYMENT_METHOD: &str = "tok_visa";
/// The header value the host replaces with the key; the guest never sees it.
pub const AUTHORIZATION: &str = "Bearer {{secret:STRIPE_API_KEY}}";

/// Operator configuration (`call-context.config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `api-base`, without a trailing slash.
    pub api_base: String,
    /// `default-payment-method`.
    pub default_payment_method: String,
    /// `stripe-version`: sent as `Stripe-Version` when set.
    pub stripe_version: Option<String>,
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
            default_payment_method: non_empty("default-payment-method")
                .unwrap_or_else(|| DEFAULT_PAYMENT_METHOD.to_owned()),
            stripe_version: non_empty("stripe-version"),
        }
    }
}

/// `POST /v1/charges`.
pub fn create_charge(
    settings: &Settings,
    idempotency_key: &str,
    req: &ChargeRequest,
) -> RequestBuilder {
    let source = req
        .payment_method
        .as_deref()
        .filter(|pm| !pm.is_empty())
        .unwrap_or(&settings.default_payment_method);
    let mut fields = vec![
        ("amount", req.amount.to_string()),
        ("currency", req.currency.to_ascii_lowercase()),
        ("source", source.to_owned()),
        ("description", req.description.clone()),
        ("metadata[order_id]", req.order_id.clone()),
    ];
    if let Some(email) = &req.customer_email {
        fields.push(("metadata[customer_email]", email.clone()));
    }
    post(settings, "/v1/charges", idempotency_key, &fields)
}

/// `POST /v1/refunds`.
pub fn create_refund(
    settings: &Settings,
    idempotency_key: &str,
    req: &RefundRequest,
) -> RequestBuilder {
    let mut fields = vec![("charge", req.charge_id.clone())];
    if let Some(amount) = req.amount {
        fields.push(("amount", amount.to_string()));
    }
    if let Some(reason) = &req.reason {
        fields.push(("reason", reason.clone()));
    }
    fields.push(("metadata[order_id]", req.order_id.clone()));
    post(settings, "/v1/refunds", idempotency_key, &fields)
}

fn post(
    settings: &Settings,
    path: &str,
    idempotency_key: &str,
    fields: &[(&str, String)],
) -> RequestBuilder {
    let mut builder = Request::post(format!("{}{path}", settings.api_base))
        .header("Authorization", AUTHORIZATION)
        .header("Idempotency-Key", idempotency_key)
        .header("Accept", "application/json");
    if let Some(version) = &settings.stripe_version {
        builder = builder.header("Stripe-Version", version.as_str());
    }
    builder.form(fields.iter().map(|(k, v)| (*k, v.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
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

    fn body(request: &Request) -> &str {
        std::str::from_utf8(request.body()).unwrap()
    }

    #[test]
    fn settings_default_to_the_real_api() {
        let s = settings(&[]);
        assert_eq!(s.api_base, "https://api.stripe.com");
        assert_eq!(s.default_payment_method, "tok_visa");
        assert_eq!(s.stripe_version, None);
        let s = settings(&[
            ("api-base", "http://127.0.0.1:4010/stripe/"),
            ("default-payment-method", "tok_mastercard"),
            ("stripe-version", "2025-02-24.acacia"),
        ]);
        assert_eq!(s.api_base, "http://127.0.0.1:4010/stripe");
        assert_eq!(s.default_payment_method, "tok_mastercard");
        assert_eq!(s.stripe_version.as_deref(), Some("2025-02-24.acacia"));
    }

    #[test]
    fn charge_wire_format() {
        let request = create_charge(&settings(&[]), "inv-1:3", &charge())
            .build()
            .unwrap();
        assert_eq!(request.method(), "POST");
        assert_eq!(request.url(), "https://api.stripe.com/v1/charges");
        assert_eq!(
            request.headers(),
            [
                (
                    "Authorization".to_owned(),
                    "Bearer {{secret:STRIPE_API_KEY}}".to_owned()
                ),
                ("Idempotency-Key".to_owned(), "inv-1:3".to_owned()),
                ("Accept".to_owned(), "application/json".to_owned()),
                (
                    "Content-Type".to_owned(),
                    "application/x-www-form-urlencoded".to_owned()
                ),
            ]
        );
        assert_eq!(
            body(&request),
            "amount=5000&currency=usd&source=tok_visa&description=Order+order-001\
             &metadata%5Border_id%5D=order-001\
             &metadata%5Bcustomer_email%5D=alice%2Bdecline%40example.com"
        );
        let decoded: Vec<(String, String)> = form_decode(request.body());
        assert_eq!(
            decoded,
            [
                ("amount", "5000"),
                ("currency", "usd"),
                ("source", "tok_visa"),
                ("description", "Order order-001"),
                ("metadata[order_id]", "order-001"),
                ("metadata[customer_email]", "alice+decline@example.com"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn charge_source_prefers_the_request_then_the_configured_default() {
        let mut req = charge();
        req.payment_method = Some("tok_chargeDeclined".into());
        req.customer_email = None;
        let request = create_charge(&settings(&[]), "k", &req).build().unwrap();
        let fields = form_decode(request.body());
        assert!(fields.contains(&("source".into(), "tok_chargeDeclined".into())));
        assert!(!fields.iter().any(|(k, _)| k == "metadata[customer_email]"));

        let request = create_charge(
            &settings(&[("default-payment-method", "pm_card_visa")]),
            "k",
            &charge(),
        )
        .build()
        .unwrap();
        assert!(form_decode(request.body()).contains(&("source".into(), "pm_card_visa".into())));
    }

    #[test]
    fn stripe_version_header_when_configured() {
        let request = create_charge(
            &settings(&[
                ("stripe-version", "2025-02-24.acacia"),
                ("api-base", "http://fake"),
            ]),
            "k",
            &charge(),
        )
        .build()
        .unwrap();
        assert_eq!(request.url(), "http://fake/v1/charges");
        assert_eq!(request.header("Stripe-Version"), Some("2025-02-24.acacia"));
    }

    #[test]
    fn refund_wire_format() {
        let req = RefundRequest {
            charge_id: "ch_1".into(),
            amount: Some(1000),
            reason: Some("requested_by_customer".into()),
            order_id: "order-001".into(),
        };
        let request = create_refund(&settings(&[]), "inv-1:9", &req)
            .build()
            .unwrap();
        assert_eq!(request.url(), "https://api.stripe.com/v1/refunds");
        assert_eq!(request.header("Idempotency-Key"), Some("inv-1:9"));
        assert_eq!(
            request.header("Authorization"),
            Some("Bearer {{secret:STRIPE_API_KEY}}")
        );
        assert_eq!(
            body(&request),
            "charge=ch_1&amount=1000&reason=requested_by_customer&metadata%5Border_id%5D=order-001"
        );
        let whole = RefundRequest {
            amount: None,
            reason: None,
            ..req
        };
        assert_eq!(
            body(&create_refund(&settings(&[]), "k", &whole).build().unwrap()),
            "charge=ch_1&metadata%5Border_id%5D=order-001"
        );
    }

    fn form_decode(body: &[u8]) -> Vec<(String, String)> {
        form_urlencoded::parse(body).into_owned().collect()
    }
}
