//! PostgreSQL rows mapped to storage types, once for every query that returns them.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::super::{
    DeploymentRecord, FailureRecord, Invocation, InvocationStatus, StorageError, StorageResult,
    json_column,
};
use crate::journal::{Entry, EntryKind};

pub(super) fn invocation(row: &PgRow) -> StorageResult<Invocation> {
    let status: String = row.try_get("status")?;
    let failure: Option<String> = row.try_get("failure")?;
    let providers: String = row.try_get("providers")?;
    Ok(Invocation {
        id: row.try_get("id")?,
        service: row.try_get("service")?,
        handler: row.try_get("handler")?,
        key: row.try_get("object_key")?,
        status: InvocationStatus::parse(&status)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown status {status:?}")))?,
        input: row.try_get("input")?,
        output: row.try_get("output")?,
        failure: failure
            .map(|f| json_column::<FailureRecord>("failure", &f))
            .transpose()?,
        deployment_id: row.try_get("deployment_id")?,
        providers: json_column("providers", &providers)?,
        attempt: row.try_get::<i32, _>("attempt")? as u32,
        attempt_base: row.try_get::<i32, _>("attempt_base")? as u32,
        cancelled_at: row.try_get("cancelled_at")?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        completed_at: row.try_get("completed_at")?,
        not_before: row.try_get("not_before")?,
        trace_parent: row.try_get("trace_parent")?,
        known_journal: None,
    })
}

pub(super) fn entry(row: &PgRow) -> StorageResult<Entry> {
    let kind: String = row.try_get("kind")?;
    Ok(Entry {
        index: row.try_get::<i32, _>("idx")? as u32,
        kind: EntryKind::parse(&kind)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown journal kind {kind:?}")))?,
        name: row.try_get("name")?,
        args_digest: row.try_get("args_digest")?,
        result: row.try_get("result")?,
        detail: row.try_get("detail")?,
        started_at: row.try_get("started_at")?,
        duration_us: row.try_get("duration_us")?,
        soft: row.try_get("soft")?,
    })
}

pub(super) fn deployment(row: &PgRow) -> StorageResult<DeploymentRecord> {
    let json = |name: &str| -> StorageResult<Option<serde_json::Value>> {
        let text: Option<String> = row.try_get(name)?;
        text.map(|t| json_column(name, &t)).transpose()
    };
    Ok(DeploymentRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        size: row.try_get("size")?,
        describe: json("describe")?,
        component: row.try_get("component")?,
        created_at: row.try_get("created_at")?,
        limits: json("limits")?,
        provider_settings: json("provider_settings")?,
        activated_at: row.try_get("activated_at")?,
    })
}
