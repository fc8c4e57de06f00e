//! A keyed object's state as an operator sees it on PostgreSQL: all its entries, an edit with
//! its audit record, and the audit records (see [`crate::storage::state_edit`]).

use sqlx::{PgPool, Row};

use crate::storage::{StateAudit, StateEdit, StateEdited, StorageResult};

/// See [`crate::storage::Storage::state_entries`].
pub(super) async fn entries(
    pool: &PgPool,
    service: &str,
    key: &str,
    limit: u32,
) -> StorageResult<Vec<(String, Vec<u8>)>> {
    Ok(sqlx::query_as(
        "SELECT name, value FROM state WHERE service = $1 AND object_key = $2 ORDER BY name \
         LIMIT $3",
    )
    .bind(service)
    .bind(key)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?)
}

/// See [`crate::storage::Storage::state_audit`].
pub(super) async fn audit(
    pool: &PgPool,
    service: &str,
    key: &str,
    limit: u32,
) -> StorageResult<Vec<StateAudit>> {
    let rows = sqlx::query(
        "SELECT name, before_value, after_value, reason, at FROM state_audit \
         WHERE service = $1 AND object_key = $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(service)
    .bind(key)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StateAudit {
                name: row.try_get("name")?,
                before: row.try_get("before_value")?,
                after: row.try_get("after_value")?,
                reason: row.try_get("reason")?,
                at: row.try_get("at")?,
            })
        })
        .collect()
}

/// See [`crate::storage::Storage::edit_state`]: the key's state rows are locked while the
/// unfinished invocations are looked for.
pub(super) async fn edit(pool: &PgPool, edit: &StateEdit) -> StorageResult<StateEdited> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1 FROM state WHERE service = $1 AND object_key = $2 FOR UPDATE")
        .bind(&edit.service)
        .bind(&edit.key)
        .execute(&mut *tx)
        .await?;
    let busy: Option<String> = sqlx::query_scalar(
        "SELECT id FROM invocations WHERE service = $1 AND object_key = $2 \
         AND status IN ('running', 'paused') LIMIT 1",
    )
    .bind(&edit.service)
    .bind(&edit.key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = busy {
        return Ok(StateEdited::Busy(id));
    }
    let before: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT value FROM state WHERE service = $1 AND object_key = $2 AND name = $3",
    )
    .bind(&edit.service)
    .bind(&edit.key)
    .bind(&edit.name)
    .fetch_optional(&mut *tx)
    .await?;
    let write = match &edit.value {
        Some(_) => {
            "INSERT INTO state (service, object_key, name, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (service, object_key, name) DO UPDATE SET value = excluded.value"
        }
        None => "DELETE FROM state WHERE service = $1 AND object_key = $2 AND name = $3",
    };
    let mut query = sqlx::query(write)
        .bind(&edit.service)
        .bind(&edit.key)
        .bind(&edit.name);
    if let Some(value) = &edit.value {
        query = query.bind(value);
    }
    query.execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO state_audit (service, object_key, name, before_value, after_value, reason, \
         at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&edit.service)
    .bind(&edit.key)
    .bind(&edit.name)
    .bind(before)
    .bind(&edit.value)
    .bind(&edit.reason)
    .bind(edit.at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StateEdited::Applied)
}
