//! `cairn:commerce/shipping-recovery` over Shippo: `POST /transactions` has no idempotency key,
//! so a label purchase left in doubt is repeated only after a lookup finds nothing.
//!
//! The lookup lists transactions, `GET /transactions?results=100&page=N` for N = 1, 2, ... while
//! the answer's `next` is set, at most [`MAX_PAGES`] pages, and takes the first transaction whose
//! `metadata` is exactly the reference `create-label` sends (`order <id>`) and whose `status` is
//! `SUCCESS`. Shippo's list has no metadata filter, hence the client-side match. The page is
//! built from `api-base`, not taken from `next`, so every request stays on the configured host.

use cairn_sdk::http::{Request, RequestBuilder, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::request::{self, AUTHORIZATION, Settings};
use crate::response::{self, TransactionObject};
use cairn_provider::types::{Label, LabelRequest, ProviderError, RetrySafety};

/// Transactions asked for per page (Shippo's maximum).
pub const PAGE_SIZE: u32 = 100;
/// Pages read before giving up (500 transactions, newest first as far as Shippo says).
pub const MAX_PAGES: u32 = 5;

/// How `operation` can be repeated: a label is found by its order reference.
pub fn retry_safety(operation: &str) -> RetrySafety {
    match operation {
        "create-label" => RetrySafety::Lookup,
        _ => RetrySafety::None,
    }
}

/// `GET /transactions?results=100&page=<page>` (pages count from 1).
pub fn list_transactions(settings: &Settings, page: u32) -> RequestBuilder {
    let mut builder = Request::get(format!(
        "{}/transactions?results={PAGE_SIZE}&page={page}",
        settings.api_base
    ))
    .header("Authorization", AUTHORIZATION)
    .header("Accept", "application/json");
    if let Some(version) = &settings.api_version {
        builder = builder.header("SHIPPO-API-VERSION", version.as_str());
    }
    builder
}

/// What one page of the list said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The label bought under the reference, if it is on this page.
    pub label: Option<Label>,
    /// Whether Shippo has a next page (`next` is set).
    pub has_next: bool,
}

#[derive(Deserialize)]
struct TransactionList {
    next: Option<Value>,
    #[serde(default)]
    results: Vec<Value>,
}

/// Reads one page of `GET /transactions`, looking for a successful transaction whose `metadata`
/// is `reference`. Errors map as for `create-label`.
pub fn read_page(response: &Response, reference: &str) -> Result<Page, ProviderError> {
    if !response.is_success() {
        return Err(response::error(response));
    }
    let list: TransactionList = response.json().map_err(|err| {
        ProviderError::Unavailable(format!(
            "shippo HTTP {}: unreadable transaction list: {err}",
            response.status()
        ))
    })?;
    let label = list
        .results
        .into_iter()
        .filter_map(|item| serde_json::from_value::<TransactionObject>(item).ok())
        .find(|tx| {
            tx.metadata.as_deref() == Some(reference) && tx.status.as_deref() == Some("SUCCESS")
        })
        .map(TransactionObject::into_label);
    let has_next = matches!(&list.next, Some(Value::String(url)) if !url.trim().is_empty());
    Ok(Page { label, has_next })
}

/// How a lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// The label bought under the order's reference.
    Found(Label),
    /// The whole list was read (`next` became null): no such label.
    NotFound,
    /// [`MAX_PAGES`] pages were read and Shippo still had more: not found among the newest.
    GaveUp,
}

/// Looks for the label bought for `req`, reading pages through `fetch` (the host's HTTP in the
/// component, canned answers in tests) until one matches, `next` is null, or [`MAX_PAGES`]
/// pages were read.
pub fn find_label(
    settings: &Settings,
    req: &LabelRequest,
    mut fetch: impl FnMut(RequestBuilder) -> Result<Response, ProviderError>,
) -> Result<Search, ProviderError> {
    let reference = request::metadata(&req.order_id);
    for page in 1..=MAX_PAGES {
        let answer = read_page(&fetch(list_transactions(settings, page))?, &reference)?;
        if let Some(label) = answer.label {
            return Ok(Search::Found(label));
        }
        if !answer.has_next {
            return Ok(Search::NotFound);
        }
    }
    Ok(Search::GaveUp)
}

#[cfg(test)]
mod tests {
    //! The transaction list: wire format, metadata matching, pagination.

    use super::*;
    use cairn_provider::types::{Address, Parcel};

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

    fn label_request(order_id: &str) -> LabelRequest {
        LabelRequest {
            to: Address {
                name: "Alice Smith".into(),
                street1: "123 Main St".into(),
                street2: None,
                city: "SF".into(),
                state: "CA".into(),
                zip: "94105".into(),
                country: "US".into(),
                email: None,
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
            order_id: order_id.into(),
        }
    }

    fn respond(status: u16, body: &str) -> Response {
        Response::new(status, Vec::new(), body.as_bytes().to_vec())
    }

    /// A transaction as Shippo lists it.
    fn tx(id: &str, status: &str, metadata: &str) -> String {
        format!(
            r#"{{"object_id":"{id}","object_state":"VALID","status":"{status}","test":true,
                "rate":{{"object_id":"r_{id}","provider":"USPS","servicelevel_token":"usps_priority"}},
                "tracking_number":"TRK-{id}","tracking_status":"UNKNOWN",
                "label_url":"https://labels.example/{id}.pdf","metadata":"{metadata}","messages":[]}}"#
        )
    }

    fn list(next: Option<&str>, txs: &[String]) -> String {
        let next = next.map_or("null".to_owned(), |url| format!("\"{url}\""));
        format!(
            r#"{{"next":{next},"previous":null,"results":[{}]}}"#,
            txs.join(",")
        )
    }

    fn label(id: &str) -> Label {
        Label {
            id: id.into(),
            tracking_number: Some(format!("TRK-{id}")),
            label_url: Some(format!("https://labels.example/{id}.pdf")),
            carrier: Some("USPS".into()),
            status: "SUCCESS".into(),
        }
    }

    #[test]
    fn only_create_label_is_found_by_lookup() {
        assert_eq!(retry_safety("create-label"), RetrySafety::Lookup);
        assert_eq!(retry_safety("refund-label"), RetrySafety::None);
    }

    #[test]
    fn list_wire_format() {
        let request = list_transactions(&settings(&[]), 1).build().unwrap();
        assert_eq!(request.method(), "GET");
        assert_eq!(
            request.url(),
            "https://api.goshippo.com/transactions?results=100&page=1"
        );
        assert_eq!(
            request.headers(),
            [
                (
                    "Authorization".to_owned(),
                    "ShippoToken {{secret:SHIPPO_API_KEY}}".to_owned()
                ),
                ("Accept".to_owned(), "application/json".to_owned()),
            ]
        );
        assert!(request.body().is_empty());

        let s = settings(&[
            ("api-base", "http://127.0.0.1:7/shippo/"),
            ("api-version", "2018-02-08"),
        ]);
        let request = list_transactions(&s, 3).build().unwrap();
        assert_eq!(
            request.url(),
            "http://127.0.0.1:7/shippo/transactions?results=100&page=3"
        );
        assert_eq!(request.header("SHIPPO-API-VERSION"), Some("2018-02-08"));
    }

    #[test]
    fn a_page_matches_metadata_exactly_and_only_successes() {
        let body = list(
            Some("https://api.goshippo.com/transactions?page=2&results=100"),
            &[
                tx("t_other", "SUCCESS", "order A-10011"),
                tx("t_error", "ERROR", "order A-1001"),
                tx("t_prefix", "SUCCESS", "order A-100"),
                tx("t_ok", "SUCCESS", "order A-1001"),
                tx("t_later", "SUCCESS", "order A-1001"),
            ],
        );
        let page = read_page(&respond(200, &body), "order A-1001").unwrap();
        assert_eq!(page.label, Some(label("t_ok")));
        assert!(page.has_next);
    }

    #[test]
    fn a_page_without_a_match_or_next() {
        let body = list(None, &[tx("t1", "SUCCESS", "order B-1")]);
        let page = read_page(&respond(200, &body), "order A-1001").unwrap();
        assert_eq!(
            page,
            Page {
                label: None,
                has_next: false
            }
        );
        // Unusual items are skipped; a missing `next` and an empty one mean the last page.
        let odd = r#"{"results":[{"status":"SUCCESS","metadata":"order A-1001"},"x",
            {"object_id":"t2","status":"SUCCESS","metadata":null}]}"#;
        assert_eq!(
            read_page(&respond(200, odd), "order A-1001").unwrap(),
            Page {
                label: None,
                has_next: false
            }
        );
        let empty_next = r#"{"next":"","results":[]}"#;
        assert!(
            !read_page(&respond(200, empty_next), "order A-1001")
                .unwrap()
                .has_next
        );
    }

    #[test]
    fn list_errors_map_as_for_create_label() {
        assert_eq!(
            read_page(&respond(401, r#"{"detail":"Invalid API token"}"#), "r"),
            Err(ProviderError::Unauthorized("Invalid API token".into()))
        );
        assert_eq!(
            read_page(&respond(429, ""), "r"),
            Err(ProviderError::RateLimited(None))
        );
        assert!(matches!(
            read_page(&respond(503, ""), "r"),
            Err(ProviderError::Unavailable(_))
        ));
        assert!(matches!(
            read_page(&respond(200, "not json"), "r"),
            Err(ProviderError::Unavailable(m)) if m.contains("unreadable transaction list")
        ));
    }

    /// Runs `find_label` over canned pages, recording the URLs asked for.
    fn search(order_id: &str, pages: &[String]) -> (Result<Search, ProviderError>, Vec<String>) {
        let mut urls = Vec::new();
        let result = find_label(&settings(&[]), &label_request(order_id), |builder| {
            let request = builder.build().unwrap();
            urls.push(request.url().to_owned());
            let body = pages
                .get(urls.len() - 1)
                .expect("asked for a page past the last");
            Ok(respond(200, body))
        });
        (result, urls)
    }

    fn page_url(n: u32) -> String {
        format!("https://api.goshippo.com/transactions?results=100&page={n}")
    }

    #[test]
    fn pages_are_followed_until_a_match() {
        let next = Some("https://api.goshippo.com/transactions?page=N");
        let pages = [
            list(next, &[tx("t1", "SUCCESS", "order X")]),
            list(next, &[tx("t2", "SUCCESS", "order Y")]),
            list(next, &[tx("t3", "SUCCESS", "order order-001")]),
        ];
        let (result, urls) = search("order-001", &pages);
        assert_eq!(result, Ok(Search::Found(label("t3"))));
        assert_eq!(urls, [page_url(1), page_url(2), page_url(3)]);
    }

    #[test]
    fn pages_end_when_next_is_null() {
        let pages = [
            list(Some("https://next"), &[tx("t1", "SUCCESS", "order X")]),
            list(None, &[tx("t2", "SUCCESS", "order Y")]),
        ];
        let (result, urls) = search("order-001", &pages);
        assert_eq!(result, Ok(Search::NotFound));
        assert_eq!(urls.len(), 2);
    }

    #[test]
    fn at_most_five_pages_are_read() {
        let pages: Vec<String> = (1..=10)
            .map(|n| {
                list(
                    Some("https://next"),
                    &[tx(&format!("t{n}"), "SUCCESS", "order X")],
                )
            })
            .collect();
        let (result, urls) = search("order-001", &pages);
        assert_eq!(result, Ok(Search::GaveUp));
        assert_eq!(urls, (1..=5).map(page_url).collect::<Vec<_>>());
    }

    #[test]
    fn the_reference_is_what_create_label_sends() {
        // `create-label` cuts `order <id>` to 100 characters; the lookup matches the cut value.
        let long = "é".repeat(150);
        let reference: String = format!("order {long}").chars().take(100).collect();
        let pages = [list(None, &[tx("t_long", "SUCCESS", &reference)])];
        let (result, _) = search(&long, &pages);
        assert_eq!(result, Ok(Search::Found(label("t_long"))));
    }

    #[test]
    fn an_error_on_a_later_page_is_returned() {
        let mut urls = 0;
        let result = find_label(&settings(&[]), &label_request("o"), |_| {
            urls += 1;
            if urls == 1 {
                Ok(respond(200, &list(Some("https://next"), &[])))
            } else {
                Err(ProviderError::Unavailable("shippo: timed out".into()))
            }
        });
        assert_eq!(
            result,
            Err(ProviderError::Unavailable("shippo: timed out".into()))
        );
        assert_eq!(urls, 2);
    }
}
