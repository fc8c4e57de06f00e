//! What `#[cairn_sdk::object]` / `#[cairn_sdk::service]` write, run natively: the handler table,
//! the dispatch by name, input decoding (a terminal 400 naming the field) and output encoding.
//! The handlers here make no host call, so no host is needed.

use cairn_sdk::__private::{HandlerInfo, HandlerKind, Service, ServiceKind};
use cairn_sdk::{Context, Failure, ObjectContext, SharedContext};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    sku: String,
    quantity: u32,
}

#[derive(Serialize)]
struct Added {
    sku: String,
    quantity: u32,
}

struct Cart;

#[cairn_sdk::object(rename_all = "PascalCase")]
impl Cart {
    fn add_line(_ctx: &ObjectContext, line: Line) -> Result<Added, Failure> {
        if line.quantity == 0 {
            return Err(Failure::bad_request("quantity: must be positive"));
        }
        Ok(Added {
            sku: line.sku,
            quantity: line.quantity,
        })
    }

    #[shared]
    #[handler(name = "peek")]
    fn look(_ctx: &SharedContext, filter: Option<String>) -> Result<String, Failure> {
        Ok(filter.unwrap_or_else(|| "everything".into()))
    }

    fn echo_raw(_ctx: &mut ObjectContext, input: &[u8]) -> Result<usize, Failure> {
        Ok(input.len())
    }
}

struct Clock;

#[cairn_sdk::service(name = "WallClock")]
impl Clock {
    fn ping(_ctx: &Context) -> Result<&'static str, Failure> {
        Ok("pong")
    }
}

#[test]
fn the_table_has_every_handler_with_its_name_and_kind() {
    assert_eq!(<Cart as Service>::NAME, "Cart");
    assert_eq!(<Cart as Service>::KIND, ServiceKind::KeyedObject);
    assert_eq!(
        <Cart as Service>::HANDLERS,
        &[
            HandlerInfo {
                name: "AddLine",
                kind: HandlerKind::Exclusive
            },
            HandlerInfo {
                name: "peek",
                kind: HandlerKind::Shared
            },
            HandlerInfo {
                name: "EchoRaw",
                kind: HandlerKind::Exclusive
            },
        ]
    );
    assert_eq!(<Clock as Service>::NAME, "WallClock");
    assert_eq!(<Clock as Service>::KIND, ServiceKind::Service);
    assert_eq!(<Clock as Service>::HANDLERS[0].name, "ping");
}

#[test]
fn inputs_are_decoded_and_outputs_encoded() {
    let out = Cart::handle("AddLine", br#"{"sku":"p-1","quantity":2}"#).unwrap();
    assert_eq!(out, br#"{"sku":"p-1","quantity":2}"#);
    assert_eq!(Cart::handle("peek", b"").unwrap(), br#""everything""#);
    assert_eq!(Cart::handle("peek", br#""red""#).unwrap(), br#""red""#);
    assert_eq!(Cart::handle("EchoRaw", b"[1, 2]").unwrap(), b"6");
    assert_eq!(Clock::handle("ping", b"").unwrap(), br#""pong""#);
}

#[test]
fn a_bad_input_is_a_terminal_400_that_names_the_field() {
    let failure = Cart::handle("AddLine", br#"{"sku":"p-1","quantity":"2"}"#).unwrap_err();
    assert!(failure.is_terminal());
    assert_eq!(failure.code, 400);
    assert!(
        failure
            .message
            .starts_with("quantity: invalid type: string"),
        "{failure}"
    );
    let failure = Cart::handle("AddLine", br#"{"sku":"p-1"}"#).unwrap_err();
    assert_eq!(failure.code, 400);
    assert!(
        failure.message.contains("missing field `quantity`"),
        "{failure}"
    );
    let failure = Cart::handle("AddLine", b"").unwrap_err();
    assert!(failure.message.starts_with("invalid JSON"), "{failure}");
}

#[test]
fn the_handler_error_and_unknown_handlers_come_back_as_failures() {
    let failure = Cart::handle("AddLine", br#"{"sku":"p-1","quantity":0}"#).unwrap_err();
    assert_eq!(failure, Failure::bad_request("quantity: must be positive"));
    let failure = Cart::handle("look", b"").unwrap_err();
    assert_eq!(
        failure,
        Failure::not_found("service Cart has no handler look")
    );
}

#[test]
fn compile_errors_say_what_is_wrong() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
