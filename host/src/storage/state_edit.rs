//! An operator's edit of a keyed object's state (`PUT`/`DELETE /state/{service}/{key}/{name}`),
//! made only while no invocation holds the key, with an audit record of the value before and
//! after in the same transaction.

use serde::Serialize;

/// Sets (`value: Some`) or clears (`None`) one state entry of an object key.
#[derive(Debug, Clone)]
pub struct StateEdit {
    pub service: String,
    pub key: String,
    pub name: String,
    pub value: Option<Vec<u8>>,
    /// Why, as the operator said it.
    pub reason: String,
    pub at: i64,
}

/// What [`super::Storage::edit_state`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateEdited {
    Applied,
    /// An unfinished invocation of the key (its id) may be using the state: nothing written.
    Busy(String),
}

/// One audit record of an operator's edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateAudit {
    pub name: String,
    #[serde(skip)]
    pub before: Option<Vec<u8>>,
    #[serde(skip)]
    pub after: Option<Vec<u8>>,
    pub reason: String,
    pub at: i64,
}
