//! Finding charges made before a crash (providers.md 1.8): `GET /v1/charges/search?query=…` with a
//! small subset of Stripe's search language, and `GET /v1/charges` (list, newest first).
//!
//! Search clauses: `metadata['key']:'value'` (or double quotes), `status:'succeeded'`,
//! `currency:'usd'`, `customer:'cus_…'`, `amount:1099`, `refunded:'true'`, joined by `AND` or by `OR`
//! (not both). Unlike real Stripe, the fake's search is immediately consistent.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Answer, Charge, authenticate};
use crate::state::MockState;

/// Decodes a query string into ordered pairs.
pub(super) fn parse_query(raw: Option<&str>) -> Result<Vec<(String, String)>, Answer> {
    serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| Answer::invalid(None, "Invalid query string.", None))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `limit`: 1..=100, default 10.
pub(super) fn parse_limit(params: &[(String, String)]) -> Result<usize, Answer> {
    let Some(raw) = param(params, "limit") else {
        return Ok(10);
    };
    match raw.trim().parse::<usize>() {
        Ok(limit) if (1..=100).contains(&limit) => Ok(limit),
        _ => Err(Answer::invalid(
            None,
            format!("Invalid limit: must be an integer between 1 and 100, got {raw:?}."),
            Some("limit"),
        )),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Clause {
    Metadata(String, String),
    Status(String),
    Currency(String),
    Customer(String),
    Amount(String),
    Refunded(String),
}

impl Clause {
    fn matches(&self, charge: &Charge) -> bool {
        match self {
            Clause::Metadata(k, v) => charge.metadata.get(k) == Some(v),
            Clause::Status(v) => charge.status == v,
            Clause::Currency(v) => charge.currency.eq_ignore_ascii_case(v),
            Clause::Customer(v) => charge.customer.as_ref() == Some(v),
            Clause::Amount(v) => charge.amount.to_string() == *v,
            Clause::Refunded(v) => charge.refunded.to_string() == *v,
        }
    }
}

#[derive(Debug, PartialEq)]
struct SearchQuery {
    clauses: Vec<Clause>,
    any: bool,
}

impl SearchQuery {
    fn matches(&self, charge: &Charge) -> bool {
        if self.any {
            self.clauses.iter().any(|c| c.matches(charge))
        } else {
            self.clauses.iter().all(|c| c.matches(charge))
        }
    }
}

/// Reads a `'…'` or `"…"` string (backslash escapes the quote); returns it and the rest.
fn quoted(input: &str) -> Option<(String, &str)> {
    let quote = input.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let mut out = String::new();
    let mut chars = input[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            c if c == quote => return Some((out, &input[1 + i + 1..])),
            c => out.push(c),
        }
    }
    None
}

fn parse_search(query: &str) -> Result<SearchQuery, String> {
    let mut rest = query.trim();
    let mut clauses = Vec::new();
    let mut joiner: Option<&str> = None;
    loop {
        let (field, key, after) = if let Some(after) = rest.strip_prefix("metadata[") {
            let (key, after) = quoted(after).ok_or("expected a quoted key after `metadata[`")?;
            let after = after
                .strip_prefix(']')
                .ok_or("expected `]` after the metadata key")?;
            ("metadata", Some(key), after)
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(rest.len());
            (&rest[..end], None, &rest[end..])
        };
        let after = after.strip_prefix(':').ok_or_else(|| {
            format!("expected `:` after `{field}` (only exact-match clauses are supported)")
        })?;
        let (value, after) = match quoted(after) {
            Some(found) => found,
            None if after.starts_with(['\'', '"']) => {
                return Err(format!("unterminated string after `{field}:`"));
            }
            None => {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                if end == 0 {
                    return Err(format!("expected a value after `{field}:`"));
                }
                (after[..end].to_string(), &after[end..])
            }
        };
        clauses.push(match (field, key) {
            ("metadata", Some(key)) => Clause::Metadata(key, value),
            ("status", None) => Clause::Status(value),
            ("currency", None) => Clause::Currency(value),
            ("customer", None) => Clause::Customer(value),
            ("amount", None) => Clause::Amount(value),
            ("refunded", None) => Clause::Refunded(value),
            ("", None) => return Err("expected a field name".to_string()),
            (other, _) => {
                return Err(format!(
                    "Field `{other}` is an unsupported search field for resource `charges`."
                ));
            }
        });
        rest = after.trim_start();
        if rest.is_empty() {
            break;
        }
        let (word, after) = rest
            .split_once(char::is_whitespace)
            .ok_or("expected AND or OR")?;
        if word != "AND" && word != "OR" {
            return Err(format!("expected AND or OR, found `{word}`"));
        }
        if joiner.is_some_and(|j| j != word) {
            return Err("AND and OR cannot be combined in one query".to_string());
        }
        joiner = Some(word);
        rest = after.trim_start();
    }
    Ok(SearchQuery {
        clauses,
        any: joiner == Some("OR"),
    })
}

pub(super) async fn search_charges(
    State(state): State<MockState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    state.latency().await;
    if let Err(answer) = authenticate(&headers) {
        return answer.into_response();
    }
    search(&state, raw.as_deref())
        .unwrap_or_else(|answer| answer)
        .into_response()
}

fn search(state: &MockState, raw: Option<&str>) -> Result<Answer, Answer> {
    let params = parse_query(raw)?;
    let limit = parse_limit(&params)?;
    let query = param(&params, "query").ok_or_else(|| Answer::missing("query"))?;
    let query = parse_search(query).map_err(|why| {
        Answer::invalid(None, format!("Invalid search query: {why}"), Some("query"))
    })?;
    let offset = match param(&params, "page") {
        None => 0,
        Some(page) => page
            .strip_prefix("page_")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                Answer::invalid(None, format!("Invalid page: {page:?}"), Some("page"))
            })?,
    };
    let (data, has_more) = state.with(|w| {
        let mut matching = w
            .stripe
            .charges
            .iter()
            .rev()
            .filter(|c| query.matches(c))
            .skip(offset);
        let data: Vec<Value> = matching
            .by_ref()
            .take(limit)
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        (data, matching.next().is_some())
    });
    let next_page = has_more.then(|| format!("page_{}", offset + limit));
    Ok(Answer::ok(json!({
        "object": "search_result",
        "url": "/v1/charges/search",
        "has_more": has_more,
        "next_page": next_page,
        "data": data,
    })))
}

pub(super) async fn list_charges(
    State(state): State<MockState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    state.latency().await;
    if let Err(answer) = authenticate(&headers) {
        return answer.into_response();
    }
    list(&state, raw.as_deref())
        .unwrap_or_else(|answer| answer)
        .into_response()
}

fn list(state: &MockState, raw: Option<&str>) -> Result<Answer, Answer> {
    let params = parse_query(raw)?;
    let limit = parse_limit(&params)?;
    let customer = param(&params, "customer");
    let starting_after = param(&params, "starting_after");
    let (data, has_more) = state.with(|w| {
        let mut matching = w
            .stripe
            .charges
            .iter()
            .rev()
            .skip_while(|c| starting_after.is_some_and(|id| c.id != id))
            .skip(usize::from(starting_after.is_some()))
            .filter(|c| customer.is_none_or(|cus| c.customer.as_deref() == Some(cus)));
        let data: Vec<Value> = matching
            .by_ref()
            .take(limit)
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        (data, matching.next().is_some())
    });
    Ok(Answer::ok(json!({
        "object": "list",
        "url": "/v1/charges",
        "has_more": has_more,
        "data": data,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metadata_in_both_quote_styles() {
        let expected = SearchQuery {
            clauses: vec![Clause::Metadata("order_id".into(), "A-1001".into())],
            any: false,
        };
        assert_eq!(
            parse_search("metadata['order_id']:'A-1001'").unwrap(),
            expected
        );
        assert_eq!(
            parse_search("metadata[\"order_id\"]:\"A-1001\"").unwrap(),
            expected
        );
        assert_eq!(
            parse_search("  metadata['order_id']:'A-1001'  ").unwrap(),
            expected
        );
    }

    #[test]
    fn parses_conjunctions_and_plain_fields() {
        let q =
            parse_search("metadata['order_id']:'it\\'s' AND status:'succeeded' AND amount:1099")
                .unwrap();
        assert!(!q.any);
        assert_eq!(
            q.clauses,
            vec![
                Clause::Metadata("order_id".into(), "it's".into()),
                Clause::Status("succeeded".into()),
                Clause::Amount("1099".into()),
            ]
        );
        assert!(
            parse_search("status:'failed' OR status:'succeeded'")
                .unwrap()
                .any
        );
    }

    #[test]
    fn rejects_what_it_cannot_answer() {
        for bad in [
            "",
            "metadata[order_id]:'x'",
            "metadata['order_id']'x'",
            "metadata['order_id']:'x",
            "email:'a@b.c'",
            "status:'a' AND status:'b' OR status:'c'",
            "status:'a' status:'b'",
            "amount>100",
        ] {
            assert!(parse_search(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
