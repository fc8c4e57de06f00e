//! The deployments table on PostgreSQL: what every host loads at start, and what the others
//! look for as it changes (a deployment made or activated again at one host runs at all).

use sqlx::PgPool;

use super::rows;
use crate::storage::{DeploymentRecord, StorageResult};

pub(super) async fn put(pool: &PgPool, d: &DeploymentRecord) -> StorageResult<()> {
    let [describe, limits, provider_settings] = d.json_columns();
    sqlx::query(
        "INSERT INTO deployments (id, kind, name, size, describe, component, created_at, \
         limits, provider_settings, activated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&d.id)
    .bind(&d.kind)
    .bind(&d.name)
    .bind(d.size)
    .bind(describe)
    .bind(&d.component)
    .bind(d.created_at)
    .bind(limits)
    .bind(provider_settings)
    .bind(d.activated_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every deployment, or those activated after `since` (Unix ms), least recently activated
/// first.
pub(super) async fn all(pool: &PgPool, since: Option<i64>) -> StorageResult<Vec<DeploymentRecord>> {
    let found = sqlx::query(
        "SELECT id, kind, name, size, describe, component, created_at, limits, \
         provider_settings, COALESCE(activated_at, created_at) AS activated_at \
         FROM deployments WHERE $1::int8 IS NULL OR COALESCE(activated_at, created_at) > $1 \
         ORDER BY COALESCE(activated_at, created_at), created_at, id",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    found.iter().map(rows::deployment).collect()
}

pub(super) async fn activate(
    pool: &PgPool,
    id: &str,
    limits: Option<&serde_json::Value>,
    provider_settings: Option<&serde_json::Value>,
    at: i64,
) -> StorageResult<()> {
    sqlx::query(
        "UPDATE deployments SET activated_at = $1, limits = COALESCE($2, limits), \
         provider_settings = COALESCE($3, provider_settings) WHERE id = $4",
    )
    .bind(at)
    .bind(limits.map(serde_json::Value::to_string))
    .bind(provider_settings.map(serde_json::Value::to_string))
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn delete(pool: &PgPool, id: &str) -> StorageResult<bool> {
    let deleted = sqlx::query("DELETE FROM deployments WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(deleted > 0)
}
