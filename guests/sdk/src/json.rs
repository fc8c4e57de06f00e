//! JSON in and out of handlers: input errors become a terminal 400 whose message names the
//! offending field (`items[0].quantity: invalid type: ...`), outputs are serialized compactly.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::failure::Failure;

/// Decodes a handler's input, or a terminal 400: `invalid JSON: ...` for malformed JSON or a
/// top-level value of the wrong shape, `<field path>: <problem>` when a field is wrong.
pub fn from_input<T: DeserializeOwned>(input: &[u8]) -> Result<T, Failure> {
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|err| Failure::bad_request(describe(&err)))?;
    deserializer
        .end()
        .map_err(|err| Failure::bad_request(format!("invalid JSON: {err}")))?;
    Ok(value)
}

fn describe(err: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = err.inner();
    let at_root = err.path().iter().next().is_none();
    if inner.is_syntax() || inner.is_eof() || inner.is_io() || at_root {
        format!("invalid JSON: {inner}")
    } else {
        format!("{}: {inner}", err.path())
    }
}

/// Encodes a handler's output; a value that does not serialize is a terminal 500.
pub fn to_output<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(value)
        .map_err(|err| Failure::terminal(500, format!("cannot encode output: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code, reason = "fields are only decoded")]
    struct Input {
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code, reason = "fields are only decoded")]
    struct Item {
        product_id: String,
        quantity: i64,
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        let failure = from_input::<Input>(b"{\"items\":").unwrap_err();
        assert_eq!(failure.code, 400);
        assert!(failure.is_terminal());
        assert!(
            failure.message.starts_with("invalid JSON: "),
            "{}",
            failure.message
        );
        let failure = from_input::<Input>(b"").unwrap_err();
        assert!(
            failure.message.starts_with("invalid JSON: "),
            "{}",
            failure.message
        );
        let failure = from_input::<Input>(b"{\"items\":[]} x").unwrap_err();
        assert!(
            failure.message.starts_with("invalid JSON: "),
            "{}",
            failure.message
        );
        let failure = from_input::<Input>(b"\"text\"").unwrap_err();
        assert!(
            failure.message.starts_with("invalid JSON: "),
            "{}",
            failure.message
        );
    }

    #[test]
    fn type_errors_name_the_field() {
        let failure =
            from_input::<Input>(br#"{"items":[{"productId":"p","quantity":"2"}]}"#).unwrap_err();
        assert!(
            failure
                .message
                .starts_with("items[0].quantity: invalid type: string"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn output_is_compact_json() {
        assert_eq!(
            to_output(&serde_json::json!({"a": [1]})).unwrap(),
            br#"{"a":[1]}"#
        );
    }
}
