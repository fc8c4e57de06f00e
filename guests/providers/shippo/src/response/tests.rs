//! Shippo answers, as documented, and what they become.

use super::*;

fn respond(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
    Response::new(
        status,
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body.as_bytes().to_vec(),
    )
}

fn err(status: u16, body: &str) -> ProviderError {
    label(&respond(status, &[], body)).unwrap_err()
}

#[test]
fn a_purchased_label() {
    let body = r#"{"object_id":"915d94940ea54c3a80cbfa328722f5a1","object_state":"VALID","status":"SUCCESS",
        "test":true,"rate":{"object_id":"adcfdddf8ec64b84ad22772bce3ea37a","amount":"5.5","currency":"USD",
        "provider":"USPS","servicelevel_token":"usps_priority"},
        "tracking_number":"9499907123456123456781","tracking_status":"UNKNOWN",
        "label_url":"https://shippo-delivery.s3.amazonaws.com/70ae.pdf","eta":null,
        "metadata":"order A-1001","messages":[]}"#;
    let l = label(&respond(201, &[], body)).unwrap();
    assert_eq!(l.id, "915d94940ea54c3a80cbfa328722f5a1");
    assert_eq!(l.tracking_number.as_deref(), Some("9499907123456123456781"));
    assert_eq!(
        l.label_url.as_deref(),
        Some("https://shippo-delivery.s3.amazonaws.com/70ae.pdf")
    );
    assert_eq!(l.carrier.as_deref(), Some("USPS"));
    assert_eq!(l.status, "SUCCESS");
}

#[test]
fn a_rate_id_has_no_carrier_and_empty_fields_are_none() {
    let body = r#"{"object_id":"t1","status":"QUEUED","rate":"ec9f0d3a","tracking_number":"","label_url":""}"#;
    let l = label(&respond(201, &[], body)).unwrap();
    assert_eq!(l.carrier, None);
    assert_eq!(l.tracking_number, None);
    assert_eq!(l.label_url, None);
    assert_eq!(l.status, "QUEUED");
}

#[test]
fn transaction_errors() {
    let timeout = r#"{"object_id":"t2","status":"ERROR","messages":[{"source":"UPS","code":"carrier_timeout",
        "text":"UPS API did not respond. Please try again in a few minutes."}]}"#;
    assert_eq!(
        err(201, timeout),
        ProviderError::Unavailable(
            "UPS: UPS API did not respond. Please try again in a few minutes.".into()
        )
    );
    let invalid = r#"{"object_id":"t3","status":"ERROR","messages":[{"source":"USPS","code":"",
        "text":"The address as submitted could not be found."}]}"#;
    assert_eq!(
        err(201, invalid),
        ProviderError::InvalidRequest("USPS: The address as submitted could not be found.".into())
    );
    assert_eq!(
        err(201, r#"{"object_id":"t4","status":"ERROR"}"#),
        ProviderError::InvalidRequest("shippo: label purchase failed".into())
    );
}

#[test]
fn drf_field_errors_are_listed() {
    assert_eq!(
        err(400, r#"{"parcel":["This field is required."]}"#),
        ProviderError::InvalidRequest("parcel: This field is required.".into())
    );
    assert_eq!(
        err(
            400,
            r#"{"__all__":["PURCHASEable Shipments can only be created from PURCHASEable and VALID Addresses."]}"#
        ),
        ProviderError::InvalidRequest(
            "PURCHASEable Shipments can only be created from PURCHASEable and VALID Addresses."
                .into()
        )
    );
    assert_eq!(
        err(
            400,
            r#"{"shipment":{"address_from":[{"__all__":["Invalid address"]}],"parcels":[{"weight":["Ensure this value is greater than 0."]}]}}"#
        ),
        ProviderError::InvalidRequest(
            "shipment.address_from: Invalid address; \
             shipment.parcels.weight: Ensure this value is greater than 0."
                .into()
        )
    );
}

#[test]
fn status_mapping() {
    assert_eq!(
        err(401, r#"{"detail":"Invalid API token"}"#),
        ProviderError::Unauthorized("Invalid API token".into())
    );
    assert_eq!(
        err(
            403,
            r#"{"detail":"You do not have permission to perform this action."}"#
        ),
        ProviderError::Unauthorized("You do not have permission to perform this action.".into())
    );
    assert_eq!(
        err(404, r#"{"detail":"Not found."}"#),
        ProviderError::InvalidRequest("Not found.".into())
    );
    assert_eq!(
        label(&respond(429, &[("Retry-After", "60")], "")).unwrap_err(),
        ProviderError::RateLimited(Some(60_000))
    );
    assert_eq!(err(429, ""), ProviderError::RateLimited(None));
    for status in [500, 502, 503, 504] {
        assert_eq!(
            err(status, "<html>oops</html>"),
            ProviderError::Unavailable(format!(
                "shippo HTTP {status}: shippo answered HTTP {status}"
            ))
        );
    }
    assert!(matches!(
        err(201, "not json"),
        ProviderError::Unavailable(_)
    ));
}

#[test]
fn a_voided_label_and_one_voided_already() {
    let body = r#"{"object_id":"a7e6","status":"SUCCESS","transaction":"915d","test":true}"#;
    let void = label_void(&respond(201, &[], body), "915d").unwrap();
    assert_eq!(
        (void.label_id.as_str(), void.status.as_str()),
        ("915d", "SUCCESS")
    );
    let again = r#"{"detail":"This label has already been refunded."}"#;
    assert_eq!(
        label_void(&respond(400, &[], again), "915d")
            .unwrap()
            .status,
        "SUCCESS"
    );
    let failed = r#"{"object_id":"a7e6","status":"ERROR","transaction":"915d"}"#;
    assert!(matches!(
        label_void(&respond(201, &[], failed), "915d"),
        Err(ProviderError::InvalidRequest(_))
    ));
    assert!(matches!(
        label_void(&respond(503, &[], "{}"), "915d"),
        Err(ProviderError::Unavailable(_))
    ));
}
