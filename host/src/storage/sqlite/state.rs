//! A keyed object's state as an operator sees it: all its entries, an edit with its audit
//! record, and the audit records (see [`crate::storage::state_edit`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::reader::rows;
use super::writer::Written;
use crate::storage::{StateAudit, StateEdit, StateEdited, StorageResult};

/// The first `limit` entries of `service`/`key`, by name.
pub(super) fn entries(
    conn: &Connection,
    service: &str,
    key: &str,
    limit: u32,
) -> StorageResult<Vec<(String, Vec<u8>)>> {
    rows(
        conn,
        "SELECT name, value FROM state WHERE service = ? AND object_key = ? ORDER BY name LIMIT ?",
        params![service, key, limit],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// The newest `limit` audit records of `service`/`key`, newest first.
pub(super) fn audit(
    conn: &Connection,
    service: &str,
    key: &str,
    limit: u32,
) -> StorageResult<Vec<StateAudit>> {
    rows(
        conn,
        "SELECT name, before_value, after_value, reason, at FROM state_audit \
         WHERE service = ? AND object_key = ? ORDER BY id DESC LIMIT ?",
        params![service, key, limit],
        |row| {
            Ok(StateAudit {
                name: row.get(0)?,
                before: row.get(1)?,
                after: row.get(2)?,
                reason: row.get(3)?,
                at: row.get(4)?,
            })
        },
    )
}

/// Applies `edit` unless an unfinished invocation of the key exists (in the writer's
/// transaction, so none can start between the check and the write).
pub(super) fn edit(conn: &Connection, edit: &StateEdit) -> StorageResult<Written> {
    let busy: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM invocations WHERE service = ? AND object_key = ? \
             AND status IN ('running', 'paused') LIMIT 1",
        )?
        .query_row(params![edit.service, edit.key], |row| row.get(0))
        .optional()?;
    if let Some(id) = busy {
        return Ok(Written::StateEdited(StateEdited::Busy(id)));
    }
    let before: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT value FROM state WHERE service = ? AND object_key = ? AND name = ?",
        )?
        .query_row(params![edit.service, edit.key, edit.name], |row| row.get(0))
        .optional()?;
    match &edit.value {
        Some(value) => conn
            .prepare_cached(
                "INSERT INTO state (service, object_key, name, value) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (service, object_key, name) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![edit.service, edit.key, edit.name, value])?,
        None => conn
            .prepare_cached("DELETE FROM state WHERE service = ? AND object_key = ? AND name = ?")?
            .execute(params![edit.service, edit.key, edit.name])?,
    };
    conn.prepare_cached(
        "INSERT INTO state_audit (service, object_key, name, before_value, after_value, reason, at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        edit.service,
        edit.key,
        edit.name,
        before,
        edit.value,
        edit.reason,
        edit.at
    ])?;
    Ok(Written::StateEdited(StateEdited::Applied))
}
