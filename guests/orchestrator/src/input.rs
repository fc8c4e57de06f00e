//! `ProcessOrder` input: decoding and validation. Every rule here runs before the handler touches
//! state or a provider, and a broken rule is a terminal 400 whose message starts with the path of
//! the offending field (`items[0].quantity: must be positive`).

use cairn_sdk::Failure;
use serde::Deserialize;

/// How long an order waits for a pending charge's webhook when neither the input
/// (`paymentTimeoutSeconds`) nor the operator (`payment-timeout`, `PAYMENT_TIMEOUT`) says.
pub const PAYMENT_TIMEOUT: core::time::Duration = core::time::Duration::from_secs(3600);
/// The longest payment timeout (7 days).
pub const MAX_PAYMENT_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// Currency charged when the input names none.
pub const DEFAULT_CURRENCY: &str = "usd";
const MAX_TEXT_LEN: usize = 200;
const MAX_TOKEN_LEN: usize = 255;

/// A validated order request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderInput {
    pub items: Vec<Item>,
    pub customer: Customer,
    pub shipping: ShippingAddress,
    pub payment_method: Option<String>,
    /// Lowercase ISO code.
    pub currency: String,
    /// Sum of `quantity * price`, in minor units.
    pub total: u64,
    /// How long a pending charge may take, if the order says (`paymentTimeoutSeconds`).
    pub payment_timeout: Option<core::time::Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub product_id: String,
    pub quantity: u64,
    /// Unit price in minor units.
    pub price: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippingAddress {
    pub street: String,
    pub street2: Option<String>,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub country: String,
}

impl OrderInput {
    /// Units in the order (the parcel weight is one pound per unit).
    pub fn total_quantity(&self) -> u64 {
        self.items
            .iter()
            .fold(0u64, |sum, item| sum.saturating_add(item.quantity))
    }
}

// The wire shape: every field optional, so that a missing field gets our message, not serde's.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInput {
    items: Option<Vec<RawItem>>,
    customer: Option<RawCustomer>,
    shipping: Option<RawShipping>,
    payment_method: Option<String>,
    currency: Option<String>,
    payment_timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawItem {
    product_id: Option<String>,
    quantity: Option<i64>,
    price: Option<i64>,
}

#[derive(Deserialize)]
struct RawCustomer {
    email: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawShipping {
    street: Option<String>,
    street2: Option<String>,
    city: Option<String>,
    state: Option<String>,
    zip: Option<String>,
    country: Option<String>,
}

/// Decodes and validates `ProcessOrder` input.
pub fn parse(input: &[u8]) -> Result<OrderInput, Failure> {
    // serde would also read a struct from an array (`[[...], {...}]`); the input is an object.
    let first = input.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(Failure::bad_request(
            "invalid JSON: the input must be a JSON object",
        ));
    }
    let raw: RawInput = cairn_sdk::json::from_input(input)?;
    validate(raw).map_err(Failure::bad_request)
}

fn validate(raw: RawInput) -> Result<OrderInput, String> {
    let (items, total) = items(raw.items)?;
    let customer = customer(raw.customer)?;
    let shipping = shipping(raw.shipping)?;
    let currency = match raw.currency {
        None => DEFAULT_CURRENCY.to_owned(),
        Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) => {
            code.to_ascii_lowercase()
        }
        Some(_) => return Err("currency: must be a three-letter ISO code, e.g. usd".into()),
    };
    let payment_method = match raw.payment_method {
        None => None,
        Some(pm) if is_token(&pm) => Some(pm),
        Some(_) => {
            return Err(
                "paymentMethod: must be a token or payment method id, e.g. tok_visa".into(),
            );
        }
    };
    let payment_timeout = match raw.payment_timeout_seconds {
        None => None,
        Some(secs) if (1..=MAX_PAYMENT_TIMEOUT_SECS).contains(&secs) => {
            Some(core::time::Duration::from_secs(secs))
        }
        Some(_) => {
            return Err(format!(
                "paymentTimeoutSeconds: must be 1 to {MAX_PAYMENT_TIMEOUT_SECS} (7 days)"
            ));
        }
    };
    Ok(OrderInput {
        payment_timeout,
        items,
        customer,
        shipping,
        payment_method,
        currency,
        total,
    })
}

fn items(raw: Option<Vec<RawItem>>) -> Result<(Vec<Item>, u64), String> {
    let raw = raw.ok_or("items: required")?;
    if raw.is_empty() {
        return Err("items: must not be empty".into());
    }
    let mut total = 0u64;
    let mut items = Vec::with_capacity(raw.len());
    for (i, item) in raw.into_iter().enumerate() {
        let product_id = item
            .product_id
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| format!("items[{i}].productId: required"))?;
        if !is_token(&product_id) {
            return Err(format!(
                "items[{i}].productId: must be at most {MAX_TOKEN_LEN} characters, without spaces"
            ));
        }
        let quantity = item
            .quantity
            .ok_or_else(|| format!("items[{i}].quantity: required"))?;
        let quantity = u64::try_from(quantity)
            .ok()
            .filter(|q| *q > 0)
            .ok_or_else(|| format!("items[{i}].quantity: must be positive"))?;
        let price = item
            .price
            .ok_or_else(|| format!("items[{i}].price: required"))?;
        let price =
            u64::try_from(price).map_err(|_| format!("items[{i}].price: must not be negative"))?;
        total = quantity
            .checked_mul(price)
            .and_then(|line| total.checked_add(line))
            .ok_or("items: the order total is too large")?;
        items.push(Item {
            product_id,
            quantity,
            price,
        });
    }
    Ok((items, total))
}

fn customer(raw: Option<RawCustomer>) -> Result<Customer, String> {
    let raw = raw.ok_or("customer: required")?;
    let email = required_text(raw.email, "customer.email")?;
    if !is_email(&email) {
        return Err("customer.email: must be a valid email address".into());
    }
    let name = required_text(raw.name, "customer.name")?;
    Ok(Customer { email, name })
}

fn shipping(raw: Option<RawShipping>) -> Result<ShippingAddress, String> {
    let raw = raw.ok_or("shipping: required")?;
    let street2 = match raw.street2 {
        Some(s) if s.trim().is_empty() => None,
        Some(s) => Some(checked_text(s, "shipping.street2")?),
        None => None,
    };
    Ok(ShippingAddress {
        street: required_text(raw.street, "shipping.street")?,
        street2,
        city: required_text(raw.city, "shipping.city")?,
        state: required_text(raw.state, "shipping.state")?,
        zip: required_text(raw.zip, "shipping.zip")?,
        country: required_text(raw.country, "shipping.country")?,
    })
}

/// A present, non-blank, reasonably sized text field (surrounding spaces removed).
fn required_text(value: Option<String>, field: &str) -> Result<String, String> {
    match value {
        Some(v) if !v.trim().is_empty() => checked_text(v, field),
        _ => Err(format!("{field}: required")),
    }
}

fn checked_text(value: String, field: &str) -> Result<String, String> {
    let value = value.trim();
    if value.chars().count() > MAX_TEXT_LEN || value.chars().any(char::is_control) {
        return Err(format!(
            "{field}: must be at most {MAX_TEXT_LEN} characters, without control characters"
        ));
    }
    Ok(value.to_owned())
}

/// An id-like value: 1..=255 printable characters without whitespace.
fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_TOKEN_LEN
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A pragmatic address check: `local@domain.tld`, no spaces, sane lengths and domain labels.
fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_graphic() && !"@<>()[],;:\\\"".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = value.len() <= 254
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

#[cfg(test)]
mod tests;
