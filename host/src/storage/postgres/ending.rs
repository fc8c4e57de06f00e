//! How invocations leave on PostgreSQL: an operator's status change, the retention purge (an
//! outcome is a write of [`super::group`]).

use sqlx::postgres::PgPool;

use super::super::{
    Changed, InvocationStatus, LEGACY_KEY_RETENTION_MS, Outcome, Purged, StatusChange,
    StorageError, StorageResult, now_ms,
};
use super::group::finish_all;

/// See [`super::super::Storage::change_status`]: under a row lock, not fenced.
pub(super) async fn change_status(
    pool: &PgPool,
    id: &str,
    change: &StatusChange,
) -> StorageResult<Changed> {
    let mut tx = pool.begin().await?;
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM invocations WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(status) = status else {
        return Ok(Changed::NotFound);
    };
    let status = InvocationStatus::parse(&status)
        .ok_or_else(|| StorageError::Corrupt(format!("unknown status {status:?}")))?;
    if !change.applies_to(status) {
        return Ok(Changed::Refused(status));
    }
    let now = now_ms();
    let failure_json =
        |f| serde_json::to_string(f).map_err(|e| StorageError::Corrupt(e.to_string()));
    match change {
        StatusChange::Kill(failure) => {
            let killed = Outcome::Failed(failure.clone());
            finish_all(&mut tx, &[(id, &killed)]).await?;
        }
        StatusChange::Pause(failure) => {
            sqlx::query(
                "UPDATE invocations SET status = 'paused', failure = $1, updated_at = $2 \
                 WHERE id = $3",
            )
            .bind(failure_json(failure)?)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        StatusChange::Resume { deployment } => {
            sqlx::query(
                "UPDATE invocations SET status = 'running', failure = NULL, \
                 attempt = attempt + 1, attempt_base = attempt, \
                 deployment_id = COALESCE($1, deployment_id), updated_at = $2 WHERE id = $3",
            )
            .bind(deployment)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        StatusChange::Cancel => {
            // A paused one runs again (a new attempt, as on resume) to be told.
            sqlx::query(
                "UPDATE invocations SET cancelled_at = COALESCE(cancelled_at, $1), \
                 status = 'running', failure = NULL, \
                 attempt = CASE WHEN status = 'paused' THEN attempt + 1 ELSE attempt END, \
                 attempt_base = CASE WHEN status = 'paused' THEN attempt ELSE attempt_base END, \
                 updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        StatusChange::Purge => {
            for sql in [
                "DELETE FROM journal WHERE invocation_id = $1",
                "DELETE FROM call_markers WHERE invocation_id = $1",
                "DELETE FROM promises WHERE invocation_id = $1",
                "DELETE FROM idempotency_keys WHERE invocation_id = $1",
                "DELETE FROM invocations WHERE id = $1",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
        }
    }
    // The host that runs it is told at the commit (see [`super::notices`]).
    sqlx::query(concat!(
        "SELECT pg_notify('",
        notice_channel!(),
        "', 'c:' || $1)"
    ))
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Changed::Applied)
}

/// See [`super::super::Storage::purge`].
pub(super) async fn purge(
    pool: &PgPool,
    now: i64,
    finished_before: i64,
    limit: u32,
) -> StorageResult<Purged> {
    let mut tx = pool.begin().await?;
    let keys = sqlx::query(
        "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys \
         WHERE expires_at < $1 OR (expires_at IS NULL AND created_at < $2) LIMIT $3)",
    )
    .bind(now)
    .bind(now - LEGACY_KEY_RETENTION_MS)
    .bind(i64::from(limit))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM invocations WHERE completed_at IS NOT NULL AND completed_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.invocation_id = \
         invocations.id) LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(finished_before)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    for table in ["journal", "call_markers", "promises"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE invocation_id = ANY($1)"
        ))
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM invocations WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Purged {
        keys,
        invocations: ids.len() as u64,
    })
}
