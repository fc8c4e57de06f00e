//! `cairn:commerce/shipping-recovery` over Shippo: `POST /transactions` has no idempotency key,
//! so a label purchase left in doubt is repeated only after a lookup finds nothing.
//!
//! The lookup lists transactions, `GET /transactions?results=100&page=N` for N = 1, 2, ... (newest
//! first), and takes the first transaction whose `metadata` is exactly the reference
//! `create-label` sends (`order <id>`) and whose `status` is `SUCCESS`. Shippo's list has no
//! metadata filter, hence the client-side match. It stops when the answer's `next` is null, or
//! once a page reaches transactions made before the call in doubt can have started
//! (`call-context.in-doubt-since`, less [`CLOCK_SKEW_MS`]): an older label cannot be this
//! call's. A search that reaches neither within [`MAX_PAGES`] cannot decide, and says so
//! (`in-doubt`), so the host applies its in-doubt policy instead of buying again. The page is
//! built from `api-base`, not taken from `next`, so every request stays on the configured host.

use cairn_sdk::http::{Request, RequestBuilder, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::bindings::exports::cairn::durable::recovery::{FunctionRef, RetrySafety};
use crate::request::{self, AUTHORIZATION, Settings};
use crate::response::{self, TransactionObject};
use cairn_provider::types::{Label, LabelRequest, ProviderError};

/// Transactions asked for per page (Shippo's maximum).
pub const PAGE_SIZE: u32 = 100;
/// Pages read at most (10,000 transactions) when no time bound ends the search sooner.
pub const MAX_PAGES: u32 = 100;
/// How far Shippo's clock may be behind the host's (ms).
pub const CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

/// How `operation` can be repeated: a label is found by its order reference.
pub fn retry_safety(operation: &str) -> RetrySafety {
    match operation {
        "create-label" => RetrySafety::Lookup(FunctionRef {
            interface: "cairn:commerce/shipping-recovery".into(),
            function: "find-label".into(),
        }),
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
    /// Unix ms of the oldest transaction on the page (`object_created`), if any was readable.
    pub oldest_ms: Option<u64>,
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
    let transactions: Vec<TransactionObject> = list
        .results
        .into_iter()
        .filter_map(|item| serde_json::from_value::<TransactionObject>(item).ok())
        .collect();
    let oldest_ms = transactions
        .iter()
        .filter_map(|tx| tx.object_created.as_deref().and_then(unix_ms))
        .min();
    let label = transactions
        .into_iter()
        .find(|tx| {
            tx.metadata.as_deref() == Some(reference) && tx.status.as_deref() == Some("SUCCESS")
        })
        .map(TransactionObject::into_label);
    let has_next = matches!(&list.next, Some(Value::String(url)) if !url.trim().is_empty());
    Ok(Page {
        label,
        has_next,
        oldest_ms,
    })
}

/// `2014-07-17T00:04:06.163Z` (Shippo's `object_created`) as Unix ms.
fn unix_ms(text: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()?;
    let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// How a lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// The label bought under the order's reference.
    Found(Label),
    /// Every transaction the call can have made was read (the list ended, or reached ones older
    /// than the call): no such label.
    NotFound,
    /// [`MAX_PAGES`] pages were read and neither bound was reached: it cannot be told.
    Undecided,
}

/// Looks for the label bought for `req` by a call that started no earlier than `since_ms`
/// (Unix ms; `None`: unknown), reading pages through `fetch` (the host's HTTP in the component,
/// canned answers in tests) until one matches, `next` is null, a page reaches transactions older
/// than `since_ms` less [`CLOCK_SKEW_MS`], or [`MAX_PAGES`] pages were read.
pub fn find_label(
    settings: &Settings,
    req: &LabelRequest,
    since_ms: Option<u64>,
    mut fetch: impl FnMut(RequestBuilder) -> Result<Response, ProviderError>,
) -> Result<Search, ProviderError> {
    let reference = request::metadata(&req.order_id);
    let bound = since_ms.map(|ms| ms.saturating_sub(CLOCK_SKEW_MS));
    for page in 1..=MAX_PAGES {
        let answer = read_page(&fetch(list_transactions(settings, page))?, &reference)?;
        if let Some(label) = answer.label {
            return Ok(Search::Found(label));
        }
        let past_bound = matches!((bound, answer.oldest_ms), (Some(b), Some(o)) if o < b);
        if !answer.has_next || past_bound {
            return Ok(Search::NotFound);
        }
    }
    Ok(Search::Undecided)
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
        assert!(matches!(
            retry_safety("create-label"),
            RetrySafety::Lookup(FunctionRef { function, .. }) if function == "find-label"
        ));
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
                has_next: false,
                oldest_ms: None,
            }
        );
        // Unusual items are skipped; a missing `next` and an empty one mean the last page.
        let odd = r#"{"results":[{"status":"SUCCESS","metadata":"order A-1001"},"x",
            {"object_id":"t2","status":"SUCCESS","metadata":null}]}"#;
        assert_eq!(
            read_page(&respond(200, odd), "order A-1001").unwrap(),
            Page {
                label: None,
                has_next: false,
                oldest_ms: None,
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
        search_since(order_id, None, pages)
    }

    fn search_since(
        order_id: &str,
        since_ms: Option<u64>,
        pages: &[String],
    ) -> (Result<Search, ProviderError>, Vec<String>) {
        let mut urls = Vec::new();
        let result = find_label(
            &settings(&[]),
            &label_request(order_id),
            since_ms,
            |builder| {
                let request = builder.build().unwrap();
                urls.push(request.url().to_owned());
                let body = pages
                    .get(urls.len() - 1)
                    .expect("asked for a page past the last");
                Ok(respond(200, body))
            },
        );
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

    /// A transaction made at Unix second `secs`.
    fn tx_at(id: &str, metadata: &str, secs: u64) -> String {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        tx(id, "SUCCESS", metadata).replacen(
            r#""status""#,
            &format!(
                r#""object_created":"{}","status""#,
                humantime::format_rfc3339_millis(at)
            ),
            1,
        )
    }

    #[test]
    fn the_search_stops_at_transactions_older_than_the_call() {
        let since = 1_700_000_000_u64;
        let next = Some("https://next");
        // Newest first: two pages of labels bought after the call, then older ones.
        let pages = [
            list(next, &[tx_at("t3", "order X", since + 60)]),
            list(next, &[tx_at("t2", "order Y", since + 30)]),
            list(next, &[tx_at("t1", "order Z", since - 3600)]),
            list(next, &[tx_at("t0", "order order-001", since - 7200)]),
        ];
        let (result, urls) = search_since("order-001", Some(since * 1000), &pages);
        assert_eq!(
            result,
            Ok(Search::NotFound),
            "an older label is not this call's"
        );
        assert_eq!(urls.len(), 3);
        // Within the clock-skew allowance, the search goes on.
        let pages = [
            list(next, &[tx_at("t2", "order Y", since - 60)]),
            list(None, &[tx_at("t1", "order order-001", since - 120)]),
        ];
        let (result, _) = search_since("order-001", Some(since * 1000), &pages);
        assert_eq!(result, Ok(Search::Found(label("t1"))));
        assert_eq!(unix_ms("2014-07-17T00:04:06.163Z"), Some(1_405_555_446_163));
    }

    #[test]
    fn a_search_that_reaches_no_bound_is_undecided() {
        let pages: Vec<String> = (1..=MAX_PAGES + 1)
            .map(|n| {
                list(
                    Some("https://next"),
                    &[tx(&format!("t{n}"), "SUCCESS", "order X")],
                )
            })
            .collect();
        let (result, urls) = search("order-001", &pages);
        assert_eq!(result, Ok(Search::Undecided));
        assert_eq!(urls, (1..=MAX_PAGES).map(page_url).collect::<Vec<_>>());
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
        let result = find_label(&settings(&[]), &label_request("o"), None, |_| {
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
