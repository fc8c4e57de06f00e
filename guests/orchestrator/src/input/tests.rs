//! Validation rules of `ProcessOrder` input, one message per rule.

use super::*;
use serde_json::{Value, json};

fn valid() -> Value {
    json!({
        "items": [{"productId": "prod-123", "quantity": 2, "price": 2500}],
        "customer": {"email": "alice@example.com", "name": "Alice Smith"},
        "shipping": {"street": "123 Main St", "city": "SF", "state": "CA", "zip": "94105", "country": "US"}
    })
}

fn message(value: &Value) -> String {
    let failure = parse(value.to_string().as_bytes()).unwrap_err();
    assert_eq!(failure.code, 400, "{failure}");
    assert!(failure.is_terminal());
    failure.message
}

fn with(pointer: &str, replacement: Value) -> Value {
    let mut value = valid();
    *value.pointer_mut(pointer).unwrap() = replacement;
    value
}

fn without(parent: &str, field: &str) -> Value {
    let mut value = valid();
    let object = if parent.is_empty() {
        &mut value
    } else {
        value.pointer_mut(parent).unwrap()
    };
    object.as_object_mut().unwrap().remove(field);
    value
}

#[test]
fn the_readme_example_is_valid() {
    let input = parse(valid().to_string().as_bytes()).unwrap();
    assert_eq!(input.total, 5000);
    assert_eq!(input.total_quantity(), 2);
    assert_eq!(input.currency, "usd");
    assert_eq!(input.payment_method, None);
    assert_eq!(input.customer.name, "Alice Smith");
    assert_eq!(input.shipping.zip, "94105");
    assert_eq!(input.shipping.street2, None);
}

#[test]
fn optional_fields_are_read() {
    let mut value = valid();
    value["paymentMethod"] = json!("tok_chargeDeclined");
    value["currency"] = json!("EUR");
    value["items"] = json!([
        {"productId": "a", "quantity": 3, "price": 100},
        {"productId": "b", "quantity": 1, "price": 0}
    ]);
    value["customer"]["email"] = json!("alice+decline@example.com");
    value["shipping"]["street2"] = json!("Apt 4");
    let input = parse(value.to_string().as_bytes()).unwrap();
    assert_eq!(input.payment_method.as_deref(), Some("tok_chargeDeclined"));
    assert_eq!(input.currency, "eur");
    assert_eq!(input.total, 300);
    assert_eq!(input.total_quantity(), 4);
    assert_eq!(input.customer.email, "alice+decline@example.com");
    assert_eq!(input.shipping.street2.as_deref(), Some("Apt 4"));
}

#[test]
fn malformed_json() {
    for body in [
        "",
        "{",
        "not json",
        "[]",
        "[[], {}]",
        "42",
        "{\"items\": [}",
    ] {
        let failure = parse(body.as_bytes()).unwrap_err();
        assert_eq!(failure.code, 400);
        assert!(
            failure.message.starts_with("invalid JSON: "),
            "{body}: {failure}"
        );
    }
}

#[test]
fn items_rules() {
    assert_eq!(
        message(&with("/items", json!([]))),
        "items: must not be empty"
    );
    assert_eq!(message(&without("", "items")), "items: required");
    assert_eq!(
        message(&with("/items/0/quantity", json!(0))),
        "items[0].quantity: must be positive"
    );
    assert_eq!(
        message(&with("/items/0/quantity", json!(-1))),
        "items[0].quantity: must be positive"
    );
    assert_eq!(
        message(&without("/items/0", "quantity")),
        "items[0].quantity: required"
    );
    assert_eq!(
        message(&with("/items/0/price", json!(-5))),
        "items[0].price: must not be negative"
    );
    assert_eq!(
        message(&without("/items/0", "price")),
        "items[0].price: required"
    );
    assert_eq!(
        message(&without("/items/0", "productId")),
        "items[0].productId: required"
    );
    assert_eq!(
        message(&with("/items/0/productId", json!("  "))),
        "items[0].productId: required"
    );
    assert!(message(&with("/items/0/productId", json!("a b"))).starts_with("items[0].productId: "));
    let mut two = valid();
    two["items"] = json!([
        {"productId": "a", "quantity": 1, "price": 1},
        {"productId": "b", "quantity": 1, "price": -1}
    ]);
    assert_eq!(message(&two), "items[1].price: must not be negative");
    let mut huge = valid();
    huge["items"] = json!([
        {"productId": "a", "quantity": i64::MAX, "price": i64::MAX}
    ]);
    assert_eq!(message(&huge), "items: the order total is too large");
}

#[test]
fn wrong_types_name_the_field() {
    let text = message(&with("/items/0/quantity", json!("2")));
    assert!(
        text.starts_with("items[0].quantity: invalid type: string"),
        "{text}"
    );
    let text = message(&with("/items/0/quantity", json!(1.5)));
    assert!(
        text.starts_with("items[0].quantity: invalid type: floating point"),
        "{text}"
    );
    let text = message(&with("/items/0/productId", json!(123)));
    assert!(
        text.starts_with("items[0].productId: invalid type: integer"),
        "{text}"
    );
    let text = message(&with("/items", json!({})));
    assert!(text.starts_with("items: invalid type: map"), "{text}");
    let text = message(&with("/customer/email", json!(["a@b.c"])));
    assert!(
        text.starts_with("customer.email: invalid type: sequence"),
        "{text}"
    );
}

#[test]
fn customer_rules() {
    assert_eq!(message(&without("", "customer")), "customer: required");
    assert_eq!(
        message(&without("/customer", "email")),
        "customer.email: required"
    );
    for bad in [
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "alice@@example.com",
        "al ice@example.com",
        "alice@exa_mple.com",
        "alice@.example.com",
        "alice.@example.com",
    ] {
        assert_eq!(
            message(&with("/customer/email", json!(bad))),
            "customer.email: must be a valid email address",
            "{bad}"
        );
    }
    assert_eq!(
        message(&without("/customer", "name")),
        "customer.name: required"
    );
    assert_eq!(
        message(&with("/customer/name", json!(""))),
        "customer.name: required"
    );
    assert_eq!(
        message(&with("/customer/name", json!(null))),
        "customer.name: required"
    );
}

#[test]
fn shipping_rules() {
    assert_eq!(message(&without("", "shipping")), "shipping: required");
    for field in ["street", "city", "state", "zip", "country"] {
        assert_eq!(
            message(&without("/shipping", field)),
            format!("shipping.{field}: required")
        );
        assert_eq!(
            message(&with(&format!("/shipping/{field}"), json!(" "))),
            format!("shipping.{field}: required")
        );
    }
    assert!(
        message(&with("/shipping/city", json!("S\u{0}F"))).starts_with("shipping.city: must be")
    );
}

#[test]
fn currency_and_payment_method_rules() {
    let mut value = valid();
    value["currency"] = json!("dollars");
    assert!(message(&value).starts_with("currency: "));
    let mut value = valid();
    value["paymentMethod"] = json!("");
    assert!(message(&value).starts_with("paymentMethod: "));
}
