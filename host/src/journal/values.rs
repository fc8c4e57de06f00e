//! Component-model values as journal JSON: how a call between components records its arguments
//! and result, whatever the interface.
//!
//! The encoding is the one serde gives the Rust types that `bindgen!` generates, so entries
//! written when the host still had typed provider calls replay unchanged: a record is an object
//! with snake_case field names in declaration order, a variant or enum case is its UpperCamel
//! name (`"IdempotencyKey"`, or `{"RateLimited": 1500}` with a payload), `option` is `null` or
//! the value, `result` is `{"Ok": ..}` / `{"Err": ..}`, tuples and lists are arrays, flags an
//! array of names. A function's arguments are its one argument's value, `null` for none, an
//! array for several. Pinned by the golden tests below.

use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value as Json;
use wasmtime::component::{Type, Val};

/// Serializes a [`Val`] in the journal encoding.
pub struct ValJson<'a>(pub &'a Val);

/// Serializes a function's arguments: the one argument, `null`, or an array.
pub struct ArgsJson<'a>(pub &'a [Val]);

impl Serialize for ArgsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [] => s.serialize_unit(),
            [one] => ValJson(one).serialize(s),
            many => {
                let mut seq = s.serialize_seq(Some(many.len()))?;
                for v in many {
                    seq.serialize_element(&ValJson(v))?;
                }
                seq.end()
            }
        }
    }
}

impl Serialize for ValJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Val::Bool(v) => s.serialize_bool(*v),
            Val::S8(v) => s.serialize_i8(*v),
            Val::U8(v) => s.serialize_u8(*v),
            Val::S16(v) => s.serialize_i16(*v),
            Val::U16(v) => s.serialize_u16(*v),
            Val::S32(v) => s.serialize_i32(*v),
            Val::U32(v) => s.serialize_u32(*v),
            Val::S64(v) => s.serialize_i64(*v),
            Val::U64(v) => s.serialize_u64(*v),
            Val::Float32(v) => s.serialize_f32(*v),
            Val::Float64(v) => s.serialize_f64(*v),
            Val::Char(v) => s.serialize_char(*v),
            Val::String(v) => s.serialize_str(v),
            Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&ValJson(v))?;
                }
                seq.end()
            }
            Val::Map(pairs) => {
                let mut seq = s.serialize_seq(Some(pairs.len()))?;
                for (k, v) in pairs {
                    seq.serialize_element(&(ValJson(k), ValJson(v)))?;
                }
                seq.end()
            }
            Val::Record(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (name, v) in fields {
                    map.serialize_entry(&field_key(name), &ValJson(v))?;
                }
                map.end()
            }
            Val::Variant(case, None) | Val::Enum(case) => s.serialize_str(&case_name(case)),
            Val::Variant(case, Some(payload)) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(&case_name(case), &ValJson(payload))?;
                map.end()
            }
            Val::Option(None) => s.serialize_none(),
            Val::Option(Some(v)) => ValJson(v).serialize(s),
            Val::Result(result) => {
                let (case, payload) = match result {
                    Ok(v) => ("Ok", v),
                    Err(v) => ("Err", v),
                };
                let mut map = s.serialize_map(Some(1))?;
                match payload {
                    Some(v) => map.serialize_entry(case, &ValJson(v))?,
                    None => map.serialize_entry(case, &())?,
                }
                map.end()
            }
            Val::Flags(names) => names.serialize(s),
            Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => Err(
                S::Error::custom("resources, futures and streams cannot be journaled"),
            ),
        }
    }
}

/// `charge-id` → `charge_id`, as `bindgen!` names record fields.
fn field_key(name: &str) -> String {
    name.replace('-', "_")
}

/// `rate-limited` → `RateLimited`, as `bindgen!` names variant and enum cases.
fn case_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// The case of `cases` (WIT names) that the journal encoding names `encoded`.
fn find_case<'a>(mut cases: impl Iterator<Item = &'a str>, encoded: &str) -> Option<&'a str> {
    cases.find(|c| case_name(c) == encoded)
}

/// Decodes `json` (journal encoding) as a value of type `ty`.
pub fn decode(ty: &Type, json: &Json) -> Result<Val, String> {
    let mismatch = || format!("expected {}, found {json}", type_name(ty));
    let int = |json: &Json| json.as_i64().ok_or_else(mismatch);
    let uint = |json: &Json| json.as_u64().ok_or_else(mismatch);
    let ranged = |r: Result<Val, std::num::TryFromIntError>| r.map_err(|_| mismatch());
    Ok(match ty {
        Type::Bool => Val::Bool(json.as_bool().ok_or_else(mismatch)?),
        Type::S8 => ranged(i8::try_from(int(json)?).map(Val::S8))?,
        Type::U8 => ranged(u8::try_from(uint(json)?).map(Val::U8))?,
        Type::S16 => ranged(i16::try_from(int(json)?).map(Val::S16))?,
        Type::U16 => ranged(u16::try_from(uint(json)?).map(Val::U16))?,
        Type::S32 => ranged(i32::try_from(int(json)?).map(Val::S32))?,
        Type::U32 => ranged(u32::try_from(uint(json)?).map(Val::U32))?,
        Type::S64 => Val::S64(int(json)?),
        Type::U64 => Val::U64(uint(json)?),
        // serde_json writes a non-finite float as `null`.
        Type::Float32 => Val::Float32(json.as_f64().unwrap_or(f64::NAN) as f32),
        Type::Float64 => Val::Float64(json.as_f64().unwrap_or(f64::NAN)),
        Type::Char => {
            let text = json.as_str().ok_or_else(mismatch)?;
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(mismatch()),
            }
        }
        Type::String => Val::String(json.as_str().ok_or_else(mismatch)?.to_string()),
        Type::List(list) => Val::List(elements(&list.ty(), array(json, mismatch)?)?),
        Type::FixedLengthList(list) => {
            Val::FixedLengthList(elements(&list.ty(), array(json, mismatch)?)?)
        }
        Type::Map(map) => {
            let (kt, vt) = (map.key(), map.value());
            let mut pairs = Vec::new();
            for pair in array(json, mismatch)? {
                match pair.as_array().map(Vec::as_slice) {
                    Some([k, v]) => pairs.push((decode(&kt, k)?, decode(&vt, v)?)),
                    _ => return Err(mismatch()),
                }
            }
            Val::Map(pairs)
        }
        Type::Tuple(tuple) => {
            let items = array(json, mismatch)?;
            if items.len() != tuple.types().len() {
                return Err(mismatch());
            }
            Val::Tuple(
                tuple
                    .types()
                    .zip(items)
                    .map(|(t, v)| decode(&t, v))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Record(record) => {
            let object = json.as_object().ok_or_else(mismatch)?;
            let mut fields = Vec::new();
            for field in record.fields() {
                let value = object.get(&field_key(field.name)).unwrap_or(&Json::Null);
                let value = decode(&field.ty, value).map_err(|e| format!("{}: {e}", field.name))?;
                fields.push((field.name.to_string(), value));
            }
            Val::Record(fields)
        }
        Type::Variant(variant) => {
            let (encoded, payload) = single_case(json).ok_or_else(mismatch)?;
            let case = variant
                .cases()
                .find(|c| case_name(c.name) == encoded)
                .ok_or_else(mismatch)?;
            let payload = match (&case.ty, payload) {
                (Some(t), Some(p)) => Some(Box::new(decode(t, p)?)),
                (None, None) => None,
                _ => return Err(mismatch()),
            };
            Val::Variant(case.name.to_string(), payload)
        }
        Type::Enum(e) => {
            let encoded = json.as_str().ok_or_else(mismatch)?;
            Val::Enum(
                find_case(e.names(), encoded)
                    .ok_or_else(mismatch)?
                    .to_string(),
            )
        }
        Type::Option(option) => match json {
            Json::Null => Val::Option(None),
            some => Val::Option(Some(Box::new(decode(&option.ty(), some)?))),
        },
        Type::Result(result) => {
            let (case, payload) = single_case(json).ok_or_else(mismatch)?;
            let (ty, ok) = match case {
                "Ok" => (result.ok(), true),
                "Err" => (result.err(), false),
                _ => return Err(mismatch()),
            };
            let payload = match ty {
                Some(t) => Some(Box::new(decode(&t, payload.unwrap_or(&Json::Null))?)),
                None => None,
            };
            Val::Result(if ok { Ok(payload) } else { Err(payload) })
        }
        Type::Flags(flags) => {
            let names = array(json, mismatch)?;
            let mut set = Vec::new();
            for name in names {
                let name = name.as_str().ok_or_else(mismatch)?;
                let known = flags.names().find(|n| *n == name).ok_or_else(mismatch)?;
                set.push(known.to_string());
            }
            Val::Flags(set)
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err(format!("{} cannot be journaled", type_name(ty)));
        }
    })
}

fn elements(ty: &Type, items: &[Json]) -> Result<Vec<Val>, String> {
    items.iter().map(|v| decode(ty, v)).collect()
}

fn array(json: &Json, mismatch: impl Fn() -> String) -> Result<&Vec<Json>, String> {
    json.as_array().ok_or_else(mismatch)
}

/// `"Case"` → (`Case`, none); `{"Case": payload}` → (`Case`, payload).
fn single_case(json: &Json) -> Option<(&str, Option<&Json>)> {
    match json {
        Json::String(case) => Some((case, None)),
        Json::Object(map) if map.len() == 1 => {
            map.iter().next().map(|(k, v)| (k.as_str(), Some(v)))
        }
        _ => None,
    }
}

/// Checks that values of `ty` can cross between components through the journal: plain data,
/// no resources, futures or streams. `Err` names what cannot.
pub fn check_passable(ty: &Type) -> Result<(), String> {
    match ty {
        Type::List(t) => check_passable(&t.ty()),
        Type::FixedLengthList(t) => check_passable(&t.ty()),
        Type::Map(m) => check_passable(&m.key()).and(check_passable(&m.value())),
        Type::Option(t) => check_passable(&t.ty()),
        Type::Tuple(t) => t.types().try_for_each(|t| check_passable(&t)),
        Type::Record(r) => r.fields().try_for_each(|f| check_passable(&f.ty)),
        Type::Variant(v) => v
            .cases()
            .filter_map(|c| c.ty)
            .try_for_each(|t| check_passable(&t)),
        Type::Result(r) => r
            .ok()
            .into_iter()
            .chain(r.err())
            .try_for_each(|t| check_passable(&t)),
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            Err(format!(
                "a {} cannot be passed between components (values only)",
                type_name(ty)
            ))
        }
        _ => Ok(()),
    }
}

fn type_name(ty: &Type) -> &'static str {
    match ty {
        Type::Bool => "bool",
        Type::S8 | Type::S16 | Type::S32 | Type::S64 => "a signed integer",
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => "an unsigned integer",
        Type::Float32 | Type::Float64 => "a float",
        Type::Char => "a char",
        Type::String => "a string",
        Type::List(_) | Type::FixedLengthList(_) => "a list",
        Type::Map(_) => "a map",
        Type::Record(_) => "a record",
        Type::Tuple(_) => "a tuple",
        Type::Variant(_) => "a variant",
        Type::Enum(_) => "an enum",
        Type::Option(_) => "an option",
        Type::Result(_) => "a result",
        Type::Flags(_) => "flags",
        Type::Own(_) | Type::Borrow(_) => "resource",
        Type::Future(_) => "future",
        Type::Stream(_) => "stream",
        Type::ErrorContext => "error-context",
    }
}

/// The error case of a `result` value whose error is a variant: its WIT case name.
pub fn error_case(value: &Val) -> Option<&str> {
    match value {
        Val::Result(Err(Some(err))) => match &**err {
            Val::Variant(case, _) => Some(case),
            _ => None,
        },
        _ => None,
    }
}

/// A transient error by the convention of `cairn:durable/recovery`: the call is made again on
/// the next attempt.
pub fn is_transient(value: &Val) -> bool {
    matches!(error_case(value), Some("unavailable" | "rate-limited"))
}

/// The host's own answer for a call it did not repeat, when the function's result type has a
/// variant error with an `in-doubt(string)` case.
pub fn in_doubt(result_ty: Option<&Type>, message: String) -> Option<Val> {
    let Some(Type::Result(result)) = result_ty else {
        return None;
    };
    let Some(Type::Variant(variant)) = result.err() else {
        return None;
    };
    variant
        .cases()
        .any(|c| c.name == "in-doubt" && c.ty == Some(Type::String))
        .then(|| {
            Val::Result(Err(Some(Box::new(Val::Variant(
                "in-doubt".into(),
                Some(Box::new(Val::String(message))),
            )))))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &Val) -> String {
        serde_json::to_string(&ValJson(v)).unwrap()
    }

    fn s(v: &str) -> Box<Val> {
        Box::new(Val::String(v.into()))
    }

    /// Golden: these encodings are persisted in journals; an old journal must replay.
    #[test]
    fn values_have_a_pinned_journal_encoding() {
        let charge = Val::Record(vec![
            ("id".into(), Val::String("ch_1".into())),
            ("amount".into(), Val::U64(5000)),
            ("currency".into(), Val::String("usd".into())),
            ("status".into(), Val::String("succeeded".into())),
        ]);
        let ok = Val::Result(Ok(Some(Box::new(charge))));
        assert_eq!(
            text(&ok),
            r#"{"Ok":{"id":"ch_1","amount":5000,"currency":"usd","status":"succeeded"}}"#
        );
        let declined = Val::Result(Err(Some(Box::new(Val::Variant(
            "declined".into(),
            Some(Box::new(Val::Record(vec![
                ("code".into(), Val::String("card_declined".into())),
                (
                    "message".into(),
                    Val::String("Your card was declined.".into()),
                ),
                ("charge-id".into(), Val::Option(Some(s("ch_2")))),
            ]))),
        )))));
        assert_eq!(
            text(&declined),
            r#"{"Err":{"Declined":{"code":"card_declined","message":"Your card was declined.","charge_id":"ch_2"}}}"#
        );
        let limited = Val::Result(Err(Some(Box::new(Val::Variant(
            "rate-limited".into(),
            Some(Box::new(Val::Option(Some(Box::new(Val::U32(1500)))))),
        )))));
        assert_eq!(text(&limited), r#"{"Err":{"RateLimited":1500}}"#);
        assert!(is_transient(&limited));
        assert!(!is_transient(&declined));
        assert_eq!(
            text(&Val::Enum("idempotency-key".into())),
            r#""IdempotencyKey""#
        );
        assert_eq!(text(&Val::Variant("none".into(), None)), r#""None""#);
        assert_eq!(text(&Val::Result(Ok(None))), r#"{"Ok":null}"#);
        assert_eq!(
            text(&Val::Tuple(vec![
                Val::Char('x'),
                Val::Option(None),
                Val::S8(-1)
            ])),
            r#"["x",null,-1]"#
        );
        assert_eq!(text(&Val::Flags(vec!["a-b".into()])), r#"["a-b"]"#);
    }

    #[test]
    fn arguments_are_the_one_value_null_or_an_array() {
        let args = |vals: &[Val]| serde_json::to_string(&ArgsJson(vals)).unwrap();
        assert_eq!(args(&[]), "null");
        assert_eq!(args(&[Val::U32(7)]), "7");
        assert_eq!(args(&[Val::U32(7), Val::String("a".into())]), r#"[7,"a"]"#);
    }

    #[test]
    fn cases_and_fields_are_named_as_bindgen_names_them() {
        assert_eq!(case_name("rate-limited"), "RateLimited");
        assert_eq!(case_name("in-doubt"), "InDoubt");
        assert_eq!(field_key("charge-id"), "charge_id");
        assert_eq!(
            find_case(["none", "idempotency-key"].into_iter(), "IdempotencyKey"),
            Some("idempotency-key")
        );
    }
}
