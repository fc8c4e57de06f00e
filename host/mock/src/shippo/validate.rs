//! Validation of `POST /transactions` bodies (providers.md 3.2), with errors in Django REST
//! Framework's shape: field → list of messages, nested objects as nested maps, lists as a list of
//! per-item maps (`{}` for a valid item): `{"shipment":{"address_to":{"zip":["This field is
//! required."]}}}`.

use serde_json::{Map, Value, json};

/// What is being bought: Form A (an existing rate) or Form B ("instalabel").
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Purchase {
    Rate(String),
    Instalabel {
        carrier_account: String,
        servicelevel_token: String,
    },
}

/// A valid purchase request.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LabelRequest {
    pub(super) purchase: Purchase,
    pub(super) metadata: String,
}

const REQUIRED: &str = "This field is required.";
const BLANK: &str = "This field may not be blank.";
const NOT_STRING: &str = "Not a valid string.";
const ADDRESS_FIELDS: &[&str] = &["name", "street1", "city", "zip", "state", "country"];
const DISTANCE_UNITS: &[&str] = &["cm", "in", "ft", "m", "mm", "yd"];
const MASS_UNITS: &[&str] = &["g", "kg", "lb", "oz"];
const LABEL_FILE_TYPES: &[&str] = &[
    "PNG",
    "PNG_2.3x7.5",
    "PDF",
    "PDF_2.3x7.5",
    "PDF_4x6",
    "PDF_4x8",
    "PDF_A4",
    "PDF_A5",
    "PDF_A6",
    "ZPLII",
];

fn messages(message: impl Into<String>) -> Value {
    json!([message.into()])
}

/// A required non-blank string field; the error, if any.
fn required_string(value: Option<&Value>) -> Result<String, Value> {
    match value {
        None | Some(Value::Null) => Err(messages(REQUIRED)),
        Some(Value::String(s)) if s.trim().is_empty() => Err(messages(BLANK)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(messages(NOT_STRING)),
    }
}

fn choice(value: Option<&Value>, choices: &[&str]) -> Option<Value> {
    match value {
        None | Some(Value::Null) => Some(messages(REQUIRED)),
        Some(Value::String(s)) if choices.contains(&s.as_str()) => None,
        Some(other) => Some(messages(format!("{other} is not a valid choice."))),
    }
}

/// A parcel dimension: a string of ≤6 integer and ≤4 decimal digits.
fn dimension(value: Option<&Value>) -> Option<Value> {
    let text = match required_string(value) {
        Ok(text) => text,
        Err(error) => return Some(error),
    };
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (text.contains('.') && frac.is_empty()) {
        return Some(messages("A valid number is required."));
    }
    if int.len() > 6 {
        return Some(messages(
            "Ensure that there are no more than 6 digits before the decimal point.",
        ));
    }
    if frac.len() > 4 {
        return Some(messages(
            "Ensure that there are no more than 4 decimal places.",
        ));
    }
    None
}

/// An address object (or an existing address id).
fn address(value: Option<&Value>) -> Option<Value> {
    let fields = match value {
        None | Some(Value::Null) => return Some(messages(REQUIRED)),
        Some(Value::String(id)) if !id.trim().is_empty() => return None,
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            return Some(json!({"non_field_errors": ["Invalid data. Expected a dictionary."]}));
        }
    };
    let mut errors = Map::new();
    for name in ADDRESS_FIELDS {
        if let Err(error) = required_string(fields.get(*name)) {
            errors.insert((*name).to_string(), error);
        }
    }
    (!errors.is_empty()).then_some(Value::Object(errors))
}

fn parcel(value: &Value) -> Map<String, Value> {
    let mut errors = Map::new();
    let fields = match value {
        Value::String(id) if !id.trim().is_empty() => return errors,
        Value::Object(fields) => fields,
        _ => {
            errors.insert(
                "non_field_errors".into(),
                messages("Invalid data. Expected a dictionary."),
            );
            return errors;
        }
    };
    for name in ["length", "width", "height", "weight"] {
        if let Some(error) = dimension(fields.get(name)) {
            errors.insert(name.into(), error);
        }
    }
    if let Some(error) = choice(fields.get("distance_unit"), DISTANCE_UNITS) {
        errors.insert("distance_unit".into(), error);
    }
    if let Some(error) = choice(fields.get("mass_unit"), MASS_UNITS) {
        errors.insert("mass_unit".into(), error);
    }
    errors
}

fn shipment(value: Option<&Value>) -> Option<Value> {
    let fields = match value {
        None | Some(Value::Null) => return Some(messages(REQUIRED)),
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            return Some(json!({"non_field_errors": ["Invalid data. Expected a dictionary."]}));
        }
    };
    let mut errors = Map::new();
    for side in ["address_from", "address_to"] {
        if let Some(error) = address(fields.get(side)) {
            errors.insert(side.into(), error);
        }
    }
    match fields.get("parcels") {
        None | Some(Value::Null) => {
            errors.insert("parcels".into(), messages(REQUIRED));
        }
        Some(Value::Array(list)) if list.is_empty() => {
            errors.insert("parcels".into(), messages("This list may not be empty."));
        }
        Some(Value::Array(list)) => {
            let per_item: Vec<Map<String, Value>> = list.iter().map(parcel).collect();
            if per_item.iter().any(|e| !e.is_empty()) {
                errors.insert("parcels".into(), json!(per_item));
            }
        }
        Some(_) => {
            errors.insert(
                "parcels".into(),
                messages("Expected a list of items but got another type."),
            );
        }
    }
    (!errors.is_empty()).then_some(Value::Object(errors))
}

/// Validates a purchase body; the error is the DRF error object to answer with 400.
pub(super) fn validate(body: &Value) -> Result<LabelRequest, Value> {
    let Some(fields) = body.as_object() else {
        return Err(json!({"non_field_errors": ["Invalid data. Expected a dictionary."]}));
    };
    let mut errors = Map::new();
    let metadata = match fields.get("metadata") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(m)) if m.chars().count() > 100 => {
            errors.insert(
                "metadata".into(),
                messages("Ensure this field has no more than 100 characters."),
            );
            String::new()
        }
        Some(Value::String(m)) => m.clone(),
        Some(_) => {
            errors.insert("metadata".into(), messages(NOT_STRING));
            String::new()
        }
    };
    if let Some(kind) = fields.get("label_file_type").filter(|v| !v.is_null())
        && let Some(error) = choice(Some(kind), LABEL_FILE_TYPES)
    {
        errors.insert("label_file_type".into(), error);
    }
    if fields
        .get("async")
        .is_some_and(|a| !a.is_boolean() && !a.is_null())
    {
        errors.insert("async".into(), messages("Must be a valid boolean."));
    }
    let present = |name: &str| fields.get(name).is_some_and(|v| !v.is_null());
    let purchase = if present("rate") {
        match required_string(fields.get("rate")) {
            Ok(rate) => Some(Purchase::Rate(rate)),
            Err(error) => {
                errors.insert("rate".into(), error);
                None
            }
        }
    } else if present("shipment") || present("carrier_account") || present("servicelevel_token") {
        if let Some(error) = shipment(fields.get("shipment")) {
            errors.insert("shipment".into(), error);
        }
        let carrier_account = required_string(fields.get("carrier_account"))
            .map_err(|e| errors.insert("carrier_account".into(), e))
            .ok();
        let servicelevel_token = required_string(fields.get("servicelevel_token"))
            .map_err(|e| errors.insert("servicelevel_token".into(), e))
            .ok();
        carrier_account
            .zip(servicelevel_token)
            .map(
                |(carrier_account, servicelevel_token)| Purchase::Instalabel {
                    carrier_account,
                    servicelevel_token,
                },
            )
    } else {
        errors.insert("rate".into(), messages(REQUIRED));
        None
    };
    match purchase {
        Some(purchase) if errors.is_empty() => Ok(LabelRequest { purchase, metadata }),
        _ => Err(Value::Object(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instalabel() -> Value {
        json!({"shipment":{"address_from":{"name":"Mr. Hippo","street1":"215 Clayton St.","city":"San Francisco","state":"CA",
                 "zip":"94117","country":"US","phone":"+1 555 341 9393","email":"support@shippo.com"},
                "address_to":{"name":"Mrs. Hippo","street1":"965 Mission St.","city":"San Francisco","state":"CA","zip":"94105","country":"US"},
                "parcels":[{"length":"10","width":"8","height":"4","distance_unit":"in","weight":"2","mass_unit":"lb"}]},
               "carrier_account":"b741b99f95e841639b54272834bc478c","servicelevel_token":"usps_priority",
               "label_file_type":"PDF","metadata":"order A-1001","async":false})
    }

    #[test]
    fn accepts_both_documented_forms() {
        let request = validate(&instalabel()).unwrap();
        assert_eq!(request.metadata, "order A-1001");
        assert!(matches!(request.purchase, Purchase::Instalabel { .. }));
        let rate = json!({"rate":"ec9f0d3adc9441449c85d315f0997fd5","label_file_type":"PDF_4x6","async":false,"metadata":"order A-1001"});
        assert_eq!(
            validate(&rate).unwrap().purchase,
            Purchase::Rate("ec9f0d3adc9441449c85d315f0997fd5".into())
        );
    }

    #[test]
    fn nested_errors_name_the_field() {
        let mut body = instalabel();
        body["shipment"]["address_to"]
            .as_object_mut()
            .unwrap()
            .remove("zip");
        body["shipment"]["address_from"]["street1"] = json!("");
        body["shipment"]["parcels"][0]["weight"] = json!(2);
        body["shipment"]["parcels"][0]["mass_unit"] = json!("stone");
        let errors = validate(&body).unwrap_err();
        assert_eq!(
            errors,
            json!({"shipment": {
                "address_from": {"street1": [BLANK]},
                "address_to": {"zip": [REQUIRED]},
                "parcels": [{"weight": [NOT_STRING], "mass_unit": ["\"stone\" is not a valid choice."]}]
            }})
        );
    }

    #[test]
    fn top_level_rules() {
        assert_eq!(
            validate(&json!({})).unwrap_err(),
            json!({"rate": [REQUIRED]})
        );
        let mut body = instalabel();
        body["metadata"] = json!("x".repeat(101));
        body.as_object_mut().unwrap().remove("servicelevel_token");
        body["shipment"]["parcels"] = json!([]);
        assert_eq!(
            validate(&body).unwrap_err(),
            json!({"metadata": ["Ensure this field has no more than 100 characters."],
                   "shipment": {"parcels": ["This list may not be empty."]},
                   "servicelevel_token": [REQUIRED]})
        );
        assert!(validate(&json!("rate")).is_err());
        assert!(validate(&json!({"rate": "r", "label_file_type": "GIF"})).is_err());
    }

    #[test]
    fn dimensions_are_decimal_strings() {
        for ok in ["10", "0.5", "123456.1234"] {
            assert_eq!(dimension(Some(&json!(ok))), None, "{ok}");
        }
        for bad in ["", "abc", "1.", ".5", "1234567", "1.12345", "-1"] {
            assert!(dimension(Some(&json!(bad))).is_some(), "{bad}");
        }
    }
}
