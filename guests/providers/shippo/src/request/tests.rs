//! The instalabel wire format.

use super::*;
use serde_json::{Value, json};

fn label_request() -> LabelRequest {
    LabelRequest {
        to: Address {
            name: "Alice Smith".into(),
            street1: "123 Main St".into(),
            street2: None,
            city: "SF".into(),
            state: "CA".into(),
            zip: "94105".into(),
            country: "US".into(),
            email: Some("alice@example.com".into()),
            phone: None,
        },
        parcels: vec![Parcel {
            length: "10".into(),
            width: "8".into(),
            height: "4".into(),
            distance_unit: "in".into(),
            weight: "2".into(),
            mass_unit: "lb".into(),
        }],
        order_id: "order-001".into(),
    }
}

fn settings(pairs: &[(&str, &str)]) -> Settings {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(|name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(request.body()).unwrap()
}

#[test]
fn instalabel_wire_format() {
    let request = create_transaction(
        &settings(&[("carrier-account", "b741b99f95e841639b54272834bc478c")]),
        &label_request(),
    )
    .build()
    .unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(request.url(), "https://api.goshippo.com/transactions");
    assert_eq!(
        request.headers(),
        [
            (
                "Authorization".to_owned(),
                "ShippoToken {{secret:SHIPPO_API_KEY}}".to_owned()
            ),
            ("Accept".to_owned(), "application/json".to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ]
    );
    assert_eq!(
        body(&request),
        json!({
            "shipment": {
                "address_from": {
                    "name": "Cairn Shop", "street1": "215 Clayton St.", "city": "San Francisco",
                    "state": "CA", "zip": "94117", "country": "US",
                    "phone": "+1 555 341 9393", "email": "orders@cairn.example"
                },
                "address_to": {
                    "name": "Alice Smith", "street1": "123 Main St", "city": "SF",
                    "state": "CA", "zip": "94105", "country": "US", "email": "alice@example.com"
                },
                "parcels": [{
                    "length": "10", "width": "8", "height": "4", "distance_unit": "in",
                    "weight": "2", "mass_unit": "lb"
                }]
            },
            "carrier_account": "b741b99f95e841639b54272834bc478c",
            "servicelevel_token": "usps_priority",
            "label_file_type": "PDF_4x6",
            "metadata": "order order-001",
            "async": false
        })
    );
}

#[test]
fn configuration_overrides_defaults() {
    let s = settings(&[
        ("api-base", "http://127.0.0.1:7/shippo/"),
        ("servicelevel-token", "ups_ground"),
        ("label-file-type", "PDF"),
        ("api-version", "2018-02-08"),
        ("from-name", "Mr. Hippo"),
        ("from-street1", "1 Warehouse Way"),
        ("from-city", "Oakland"),
        ("from-state", "CA"),
        ("from-zip", "94607"),
        ("from-country", "US"),
        ("from-email", "support@shop.example"),
        ("from-phone", "+1 555 000 0000"),
    ]);
    let mut req = label_request();
    req.to.street2 = Some("Apt 4".into());
    req.to.phone = Some("+1 555 111 2222".into());
    let request = create_transaction(&s, &req).build().unwrap();
    assert_eq!(request.url(), "http://127.0.0.1:7/shippo/transactions");
    assert_eq!(request.header("SHIPPO-API-VERSION"), Some("2018-02-08"));
    let body = body(&request);
    assert_eq!(body["servicelevel_token"], "ups_ground");
    assert_eq!(body["label_file_type"], "PDF");
    assert!(body.get("carrier_account").is_none());
    assert_eq!(body["shipment"]["address_from"]["name"], "Mr. Hippo");
    assert_eq!(
        body["shipment"]["address_from"]["street1"],
        "1 Warehouse Way"
    );
    assert_eq!(body["shipment"]["address_from"]["zip"], "94607");
    assert_eq!(body["shipment"]["address_from"]["phone"], "+1 555 000 0000");
    assert_eq!(body["shipment"]["address_to"]["street2"], "Apt 4");
    assert_eq!(body["shipment"]["address_to"]["phone"], "+1 555 111 2222");
}

#[test]
fn metadata_is_cut_to_100_characters() {
    let mut req = label_request();
    req.order_id = "é".repeat(150);
    let body = body(&create_transaction(&settings(&[]), &req).build().unwrap());
    let metadata = body["metadata"].as_str().unwrap();
    assert_eq!(metadata.chars().count(), 100);
    assert!(metadata.starts_with("order é"));
}
