//! The instalabel request: `POST /transactions` with
//! `{shipment: {address_from, address_to, parcels}, carrier_account, servicelevel_token,
//! label_file_type, metadata, async: false}`. Parcel dimensions and weights are strings, as
//! Shippo's API wants them; optional address fields are left out when absent.

use cairn_sdk::http::{Request, RequestBuilder};
use serde::Serialize;

use cairn_provider::types::{Address, LabelRequest, Parcel};

/// The real API, when `api-base` is not configured.
pub const DEFAULT_API_BASE: &str = "https://api.goshippo.com";
pub const DEFAULT_SERVICELEVEL: &str = "usps_priority";
pub const DEFAULT_LABEL_FILE_TYPE: &str = "PDF_4x6";
/// The header value the host replaces with the token; the guest never sees it.
pub const AUTHORIZATION: &str = "ShippoToken {{secret:SHIPPO_API_KEY}}";
/// Shippo's limit on `metadata`.
const METADATA_MAX_CHARS: usize = 100;

/// Operator configuration (`call-context.config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `api-base`, without a trailing slash.
    pub api_base: String,
    /// `carrier-account`: the carrier account object id labels are bought with.
    pub carrier_account: Option<String>,
    /// `servicelevel-token`.
    pub servicelevel_token: String,
    /// `label-file-type`.
    pub label_file_type: String,
    /// `api-version`: sent as `SHIPPO-API-VERSION` when set.
    pub api_version: Option<String>,
    /// The shop's address: `from-name`, `from-street1`, `from-city`, `from-state`, `from-zip`,
    /// `from-country`, `from-email`, `from-phone`.
    pub from: Address,
}

impl Settings {
    /// Reads the settings through `lookup` (the `config` import, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let or = |name: &str, default: &str| get(name).unwrap_or_else(|| default.to_owned());
        Self {
            api_base: or("api-base", DEFAULT_API_BASE)
                .trim_end_matches('/')
                .to_owned(),
            carrier_account: get("carrier-account"),
            servicelevel_token: or("servicelevel-token", DEFAULT_SERVICELEVEL),
            label_file_type: or("label-file-type", DEFAULT_LABEL_FILE_TYPE),
            api_version: get("api-version"),
            from: Address {
                name: or("from-name", "Cairn Shop"),
                street1: or("from-street1", "215 Clayton St."),
                street2: get("from-street2"),
                city: or("from-city", "San Francisco"),
                state: or("from-state", "CA"),
                zip: or("from-zip", "94117"),
                country: or("from-country", "US"),
                email: Some(or("from-email", "orders@cairn.example")),
                phone: Some(or("from-phone", "+1 555 341 9393")),
            },
        }
    }
}

#[derive(Serialize)]
struct Transaction<'a> {
    shipment: Shipment<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    carrier_account: Option<&'a str>,
    servicelevel_token: &'a str,
    label_file_type: &'a str,
    metadata: String,
    #[serde(rename = "async")]
    is_async: bool,
}

#[derive(Serialize)]
struct Shipment<'a> {
    address_from: WireAddress<'a>,
    address_to: WireAddress<'a>,
    parcels: Vec<WireParcel<'a>>,
}

#[derive(Serialize)]
struct WireAddress<'a> {
    name: &'a str,
    street1: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    street2: Option<&'a str>,
    city: &'a str,
    state: &'a str,
    zip: &'a str,
    country: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

impl<'a> From<&'a Address> for WireAddress<'a> {
    fn from(a: &'a Address) -> Self {
        Self {
            name: &a.name,
            street1: &a.street1,
            street2: a.street2.as_deref(),
            city: &a.city,
            state: &a.state,
            zip: &a.zip,
            country: &a.country,
            phone: a.phone.as_deref(),
            email: a.email.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct WireParcel<'a> {
    length: &'a str,
    width: &'a str,
    height: &'a str,
    distance_unit: &'a str,
    weight: &'a str,
    mass_unit: &'a str,
}

impl<'a> From<&'a Parcel> for WireParcel<'a> {
    fn from(p: &'a Parcel) -> Self {
        Self {
            length: &p.length,
            width: &p.width,
            height: &p.height,
            distance_unit: &p.distance_unit,
            weight: &p.weight,
            mass_unit: &p.mass_unit,
        }
    }
}

/// `POST /transactions` (instalabel).
pub fn create_transaction(settings: &Settings, req: &LabelRequest) -> RequestBuilder {
    let body = Transaction {
        shipment: Shipment {
            address_from: (&settings.from).into(),
            address_to: (&req.to).into(),
            parcels: req.parcels.iter().map(WireParcel::from).collect(),
        },
        carrier_account: settings.carrier_account.as_deref(),
        servicelevel_token: &settings.servicelevel_token,
        label_file_type: &settings.label_file_type,
        metadata: metadata(&req.order_id),
        is_async: false,
    };
    let mut builder = Request::post(format!("{}/transactions", settings.api_base))
        .header("Authorization", AUTHORIZATION)
        .header("Accept", "application/json");
    if let Some(version) = &settings.api_version {
        builder = builder.header("SHIPPO-API-VERSION", version.as_str());
    }
    builder.json(&body)
}

/// `POST /refunds` for label `label_id`: Shippo voids an unused label by refunding it.
pub fn refund_transaction(settings: &Settings, label_id: &str) -> RequestBuilder {
    let mut builder = Request::post(format!("{}/refunds", settings.api_base))
        .header("Authorization", AUTHORIZATION)
        .header("Accept", "application/json");
    if let Some(version) = &settings.api_version {
        builder = builder.header("SHIPPO-API-VERSION", version.as_str());
    }
    builder.json(&serde_json::json!({"transaction": label_id, "async": false}))
}

/// `order <id>`, cut to Shippo's 100 characters: the reference `find-label` matches on.
pub fn metadata(order_id: &str) -> String {
    format!("order {order_id}")
        .chars()
        .take(METADATA_MAX_CHARS)
        .collect()
}

#[cfg(test)]
mod tests;
