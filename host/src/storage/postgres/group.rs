//! Group commit on PostgreSQL, as the SQLite writer does it: the journal appends, call markers,
//! attempts and completions of every invocation of this host go to one task, which writes
//! whatever has queued up in one transaction and answers each caller after the commit. A batch is
//! one statement per table over arrays (`UNNEST`), whatever its size, with the lease check of
//! every write in it folded into one (sqlx keeps the statements prepared per connection). A write
//! whose leases were taken over fails alone (fenced) and the rest commit; a batch that fails
//! otherwise is written again one write at a time, so one bad write (say, a duplicate entry)
//! fails alone.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Postgres};
use tokio::sync::{mpsc, oneshot};

use super::Tx;
use super::leases::Leases;
use crate::journal::{Entry, EntryKind};
use crate::metrics::FlushStats;
use crate::storage::{
    CallMarker, Outcome, StateOp, StateScope, StorageError, StorageResult, now_ms,
};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Writes waiting for the task; a caller past it waits for room (every invocation has at most one
/// write outstanding, so this bounds nothing a host does not already bound).
const QUEUE: usize = 4096;

/// Entries of one invocation, each with the state mutation it records, and what comes with them.
pub(super) struct Write {
    pub id: String,
    /// The object (service, key) the state mutations apply to.
    pub scope: Option<(String, String)>,
    pub entries: Vec<(Entry, Option<StateOp>)>,
    pub then: Then,
}

impl Write {
    pub(super) fn new(
        id: &str,
        scope: Option<StateScope<'_>>,
        entries: Vec<(Entry, Option<StateOp>)>,
        then: Then,
    ) -> Write {
        Write {
            id: id.to_string(),
            scope: scope.map(|s| (s.service.to_string(), s.key.to_string())),
            entries,
            then,
        }
    }
}

/// What a write does besides appending its entries.
pub(super) enum Then {
    Nothing,
    /// A provider call about to start (answers whether its marker was there already).
    Mark(CallMarker),
    SetAttempt(u32),
    /// Ends the invocation (unless it ended already: a kill stands against a late completion).
    Finish(Outcome),
}

type Reply = oneshot::Sender<StorageResult<bool>>;

/// The sending side of the group-commit task; the task ends when this is dropped.
pub(super) struct Group {
    queue: mpsc::Sender<(Write, Reply)>,
}

impl Group {
    pub(super) fn start(pool: PgPool, leases: Arc<Leases>, stats: FlushStats) -> Group {
        let (queue, writes) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, leases, stats, writes));
        Group { queue }
    }

    /// Writes `write` in the next batch; `true` when its marker was there already.
    pub(super) async fn write(&self, write: Write) -> StorageResult<bool> {
        let (reply, answer) = oneshot::channel();
        let closed = || StorageError::Database("the PostgreSQL writer has stopped".into());
        self.queue
            .send((write, reply))
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn run(
    pool: PgPool,
    leases: Arc<Leases>,
    stats: FlushStats,
    mut writes: mpsc::Receiver<(Write, Reply)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Its own connection, kept between batches: the pool tests a connection with a round trip
    // each time it is given back. Dropped after an error, and taken again for the next batch.
    let mut conn: Option<PoolConnection<Postgres>> = None;
    while writes.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = std::time::Instant::now();
        let (batch_writes, replies): (Vec<Write>, Vec<Reply>) = batch.drain(..).unzip();
        let answers = match commit(&pool, &mut conn, &leases, &batch_writes).await {
            Ok(answers) => answers,
            Err(_) if batch_writes.len() > 1 => {
                let mut answers = Vec::with_capacity(batch_writes.len());
                for write in &batch_writes {
                    let one = std::slice::from_ref(write);
                    let alone = commit(&pool, &mut conn, &leases, one).await;
                    answers.push(alone.and_then(|mut one| one.remove(0)));
                }
                answers
            }
            Err(e) => vec![Err(e)],
        };
        stats.observe(started.elapsed(), batch_writes.len());
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// Writes `writes` in one transaction on `conn` (taken from `pool` if there is none; dropped
/// after an error): per write, fenced or whether its marker was there.
async fn commit(
    pool: &PgPool,
    conn: &mut Option<PoolConnection<Postgres>>,
    leases: &Leases,
    writes: &[Write],
) -> StorageResult<Vec<StorageResult<bool>>> {
    let mut taken = match conn.take() {
        Some(taken) => taken,
        None => pool.acquire().await?,
    };
    let answers = commit_on(&mut taken, leases, writes).await?;
    *conn = Some(taken);
    Ok(answers)
}

async fn commit_on(
    conn: &mut PgConnection,
    leases: &Leases,
    writes: &[Write],
) -> StorageResult<Vec<StorageResult<bool>>> {
    let mut tx = conn.begin().await?;
    let ids: Vec<&str> = writes.iter().map(|w| w.id.as_str()).collect();
    let held = leases.fence_all(&mut tx, &ids).await?;
    let live: Vec<&Write> = writes
        .iter()
        .zip(&held)
        .filter_map(|(w, held)| held.then_some(w))
        .collect();
    insert_entries(&mut tx, &live).await?;
    apply_state(&mut tx, &live).await?;
    let marked = mark(&mut tx, &live).await?;
    set_attempts(&mut tx, &live).await?;
    let ended: Vec<(&str, &Outcome)> = live
        .iter()
        .filter_map(|w| match &w.then {
            Then::Finish(outcome) => Some((w.id.as_str(), outcome)),
            _ => None,
        })
        .collect();
    finish_all(&mut tx, &ended).await?;
    tx.commit().await?;
    Ok(writes
        .iter()
        .zip(held)
        .map(|(w, held)| {
            if !held {
                return Err(StorageError::Fenced(format!(
                    "invocation {}: a lease was taken over by another host",
                    w.id
                )));
            }
            Ok(matches!(w.then, Then::Mark(_)) && !marked.contains(w.id.as_str()))
        })
        .collect())
}

/// Appends every entry in one statement, and drops the markers of the calls they complete (as
/// in SQLite: a soft failure may have come after the effect, so its marker stays).
async fn insert_entries(tx: &mut Tx<'_>, writes: &[&Write]) -> StorageResult<()> {
    let entries: Vec<(&str, &Entry)> = writes
        .iter()
        .flat_map(|w| w.entries.iter().map(|(e, _)| (w.id.as_str(), e)))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&Entry) -> &str| entries.iter().map(|(_, e)| f(e)).collect::<Vec<_>>();
    let ids: Vec<&str> = entries.iter().map(|(id, _)| *id).collect();
    let indexes: Vec<i32> = entries.iter().map(|(_, e)| e.index as i32).collect();
    sqlx::query(concat!(
        "INSERT INTO journal (invocation_id, ",
        entry_columns!(),
        ") SELECT * FROM UNNEST($1::text[], $2::int4[], $3::text[], $4::text[], $5::text[], \
         $6::bytea[], $7::text[], $8::int8[], $9::int8[], $10::bool[])"
    ))
    .bind(&ids)
    .bind(&indexes)
    .bind(column(|e| e.kind.as_str()))
    .bind(column(|e| &e.name))
    .bind(column(|e| &e.args_digest))
    .bind(
        entries
            .iter()
            .map(|(_, e)| e.result.as_slice())
            .collect::<Vec<_>>(),
    )
    .bind(
        entries
            .iter()
            .map(|(_, e)| e.detail.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        entries
            .iter()
            .map(|(_, e)| e.started_at)
            .collect::<Vec<_>>(),
    )
    .bind(
        entries
            .iter()
            .map(|(_, e)| e.duration_us)
            .collect::<Vec<_>>(),
    )
    .bind(entries.iter().map(|(_, e)| e.soft).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    let (done_ids, done_indexes): (Vec<&str>, Vec<i32>) = entries
        .iter()
        .filter(|(_, e)| e.kind == EntryKind::Call && !e.soft)
        .map(|(id, e)| (*id, e.index as i32))
        .unzip();
    if !done_ids.is_empty() {
        sqlx::query(
            "DELETE FROM call_markers m USING UNNEST($1::text[], $2::int4[]) AS d(id, idx) \
             WHERE m.invocation_id = d.id AND m.idx = d.idx",
        )
        .bind(&done_ids)
        .bind(&done_indexes)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// What the state mutations of a batch leave of one object: applied in order, the last write
/// of a name wins and a clear-all drops what came before it.
#[derive(Default)]
struct Net<'a> {
    cleared: bool,
    names: BTreeMap<&'a str, Option<&'a [u8]>>,
}

/// Applies the state mutations of every write: one statement for the objects cleared, one for
/// the names removed, one for the names set.
async fn apply_state(tx: &mut Tx<'_>, writes: &[&Write]) -> StorageResult<()> {
    let mut objects: BTreeMap<(&str, &str), Net> = BTreeMap::new();
    for w in writes {
        let Some((service, key)) = &w.scope else {
            continue;
        };
        for op in w.entries.iter().filter_map(|(_, op)| op.as_ref()) {
            let net = objects.entry((service.as_str(), key.as_str())).or_default();
            match op {
                StateOp::Set { name, value } => {
                    net.names.insert(name, Some(value));
                }
                StateOp::Clear { name } => {
                    net.names.insert(name, None);
                }
                StateOp::ClearAll => {
                    *net = Net {
                        cleared: true,
                        ..Net::default()
                    }
                }
            }
        }
    }
    if objects.is_empty() {
        return Ok(());
    }
    let (cleared_services, cleared_keys): (Vec<&str>, Vec<&str>) = objects
        .iter()
        .filter(|(_, net)| net.cleared)
        .map(|((service, key), _)| (*service, *key))
        .unzip();
    if !cleared_services.is_empty() {
        sqlx::query(
            "DELETE FROM state s USING UNNEST($1::text[], $2::text[]) AS c(service, object_key) \
             WHERE s.service = c.service AND s.object_key = c.object_key",
        )
        .bind(&cleared_services)
        .bind(&cleared_keys)
        .execute(&mut **tx)
        .await?;
    }
    let names = objects.iter().flat_map(|((service, key), net)| {
        net.names
            .iter()
            .map(move |(name, value)| (*service, *key, *name, *value))
    });
    let (removed, set): (Vec<_>, Vec<_>) = names.partition(|(.., value)| value.is_none());
    if !removed.is_empty() {
        sqlx::query(
            "DELETE FROM state s USING UNNEST($1::text[], $2::text[], $3::text[]) \
             AS r(service, object_key, name) \
             WHERE s.service = r.service AND s.object_key = r.object_key AND s.name = r.name",
        )
        .bind(removed.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(removed.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(removed.iter().map(|r| r.2).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !set.is_empty() {
        sqlx::query(
            "INSERT INTO state (service, object_key, name, value) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[]) \
             ON CONFLICT (service, object_key, name) DO UPDATE SET value = excluded.value",
        )
        .bind(set.iter().map(|s| s.0).collect::<Vec<_>>())
        .bind(set.iter().map(|s| s.1).collect::<Vec<_>>())
        .bind(set.iter().map(|s| s.2).collect::<Vec<_>>())
        .bind(
            set.iter()
                .map(|s| s.3.unwrap_or_default())
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Inserts the markers of the provider calls about to start; the ids whose marker is new.
async fn mark(tx: &mut Tx<'_>, writes: &[&Write]) -> StorageResult<HashSet<String>> {
    let markers: Vec<(&str, &CallMarker)> = writes
        .iter()
        .filter_map(|w| match &w.then {
            Then::Mark(marker) => Some((w.id.as_str(), marker)),
            _ => None,
        })
        .collect();
    if markers.is_empty() {
        return Ok(HashSet::new());
    }
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO call_markers (invocation_id, idx, name, idempotency_key, started_at) \
         SELECT m.id, m.idx, m.name, m.idempotency_key, $5 \
         FROM UNNEST($1::text[], $2::int4[], $3::text[], $4::text[]) \
         AS m(id, idx, name, idempotency_key) \
         ON CONFLICT (invocation_id, idx) DO NOTHING RETURNING invocation_id",
    )
    .bind(markers.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(
        markers
            .iter()
            .map(|(_, m)| m.index as i32)
            .collect::<Vec<_>>(),
    )
    .bind(
        markers
            .iter()
            .map(|(_, m)| m.name.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        markers
            .iter()
            .map(|(_, m)| m.idempotency_key.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(now_ms())
    .fetch_all(&mut **tx)
    .await?;
    Ok(inserted.into_iter().collect())
}

async fn set_attempts(tx: &mut Tx<'_>, writes: &[&Write]) -> StorageResult<()> {
    let (ids, attempts): (Vec<&str>, Vec<i32>) = writes
        .iter()
        .filter_map(|w| match w.then {
            Then::SetAttempt(attempt) => Some((w.id.as_str(), attempt as i32)),
            _ => None,
        })
        .unzip();
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE invocations i SET attempt = a.attempt, updated_at = $3 \
         FROM UNNEST($1::text[], $2::int4[]) AS a(id, attempt) WHERE i.id = a.id",
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends each invocation with its outcome (unless it ended already: a kill stands against a late
/// completion) and drops its call markers.
pub(super) async fn finish_all(tx: &mut Tx<'_>, ended: &[(&str, &Outcome)]) -> StorageResult<()> {
    if ended.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(ended.len());
    let mut statuses = Vec::with_capacity(ended.len());
    let mut outputs = Vec::with_capacity(ended.len());
    let mut failures = Vec::with_capacity(ended.len());
    for (id, outcome) in ended {
        let (status, output, failure) = outcome.columns()?;
        ids.push(*id);
        statuses.push(status);
        outputs.push(output);
        failures.push(failure);
    }
    sqlx::query(
        "UPDATE invocations i SET status = e.status, output = e.output, failure = e.failure, \
         updated_at = $5, completed_at = $5 \
         FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::text[]) \
         AS e(id, status, output, failure) \
         WHERE i.id = e.id AND i.status IN ('running', 'paused')",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&outputs)
    .bind(&failures)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM call_markers WHERE invocation_id = ANY($1)")
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
    // Callers and waiters on other hosts are told at the commit (see [`super::notices`]).
    sqlx::query(concat!(
        "SELECT pg_notify('",
        notice_channel!(),
        "', 'e:' || id) FROM UNNEST($1::text[]) AS id"
    ))
    .bind(&ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
