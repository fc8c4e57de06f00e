//! The storage test suite: every test runs on both implementations, SQLite (a file in a temporary
//! directory) and PostgreSQL (a scratch database on the server named by `CAIRN_TEST_POSTGRES`,
//! by default the local one).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use super::{
    CallMarker, Changed, Created, DeploymentRecord, FailureKind, FailureRecord, InvocationFilter,
    InvocationStatus, NewInvocation, Outcome, PgStorage, PromiseCompletion, PromiseOutcome,
    ScratchDatabase, SqliteStorage, StateOp, StateScope, StatusChange, Storage, StorageError,
    StorageOptions, Table, UnfinishedScan, now_ms,
};
use crate::journal::{Entry, EntryKind};

mod operator;

/// Runs `test` on a fresh SQLite storage, then on a fresh PostgreSQL one.
async fn on_both<F, Fut>(test: F)
where
    F: Fn(Arc<dyn Storage>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    test(Arc::new(SqliteStorage::open(&url).await.unwrap())).await;

    let database = ScratchDatabase::create().await.unwrap();
    let options = StorageOptions::default();
    let storage = Arc::new(PgStorage::open(&database.url, &options).await.unwrap());
    test(storage.clone()).await;
    drop(storage);
}

fn invocation(id: &str) -> NewInvocation {
    NewInvocation {
        id: id.into(),
        service: "S".into(),
        handler: "h".into(),
        key: None,
        input: b"in".to_vec(),
        deployment_id: "svc".into(),
        providers: BTreeMap::new(),
        idempotency: None,
        not_before: None,
        trace_parent: None,
    }
}

fn entry(index: u32) -> Entry {
    Entry {
        index,
        kind: EntryKind::State,
        name: "get".into(),
        args_digest: "d".into(),
        result: b"null".to_vec(),
        detail: None,
        started_at: 0,
        duration_us: 0,
        soft: false,
    }
}

fn call(index: u32, soft: bool) -> Entry {
    Entry {
        kind: EntryKind::Call,
        name: "payments.charge".into(),
        soft,
        ..entry(index)
    }
}

const SCOPE: StateScope<'static> = StateScope {
    service: "S",
    key: "k",
};

fn marker(index: u32) -> CallMarker {
    CallMarker {
        index,
        name: "payments.charge".into(),
        idempotency_key: format!("inv/{index}"),
    }
}

#[tokio::test]
async fn an_invocation_is_created_read_and_completed() {
    on_both(|storage| async move {
        let Created::New(created) = storage.create_invocation(&invocation("a")).await.unwrap()
        else {
            panic!("a new invocation")
        };
        let read = storage.invocation("a").await.unwrap().unwrap();
        assert_eq!(read.input, b"in");
        assert_eq!(read.status, InvocationStatus::Running);
        assert_eq!(read.created_at, created.created_at);
        assert!(storage.invocation("nope").await.unwrap().is_none());

        storage.set_attempt("a", 3).await.unwrap();
        let done = Outcome::Succeeded(b"out".to_vec());
        storage
            .complete("a", &done, SCOPE, vec![(entry(0), None)])
            .await
            .unwrap();
        let read = storage.invocation("a").await.unwrap().unwrap();
        assert_eq!(read.status, InvocationStatus::Succeeded);
        assert_eq!(read.output.as_deref(), Some(&b"out"[..]));
        assert_eq!(read.attempt, 3);
        assert!(read.completed_at.is_some());
        assert_eq!(storage.journal("a").await.unwrap().len(), 1);

        storage.create_invocation(&invocation("b")).await.unwrap();
        let failure = FailureRecord::new(FailureKind::Terminal, 402, "declined");
        let failed = Outcome::Failed(failure.clone());
        storage
            .complete("b", &failed, SCOPE, Vec::new())
            .await
            .unwrap();
        let read = storage.invocation("b").await.unwrap().unwrap();
        assert_eq!(read.status, InvocationStatus::Failed);
        assert_eq!(read.failure, Some(failure));
    })
    .await;
}

#[tokio::test]
async fn one_idempotency_key_creates_one_invocation_even_concurrently() {
    on_both(|storage| async move {
        let with_key = |id: String| NewInvocation {
            idempotency: Some(("order-1".into(), 60_000)),
            ..invocation(&id)
        };
        let tries = (0..16).map(|i| {
            let storage = storage.clone();
            let new = with_key(format!("try{i}"));
            tokio::spawn(async move { storage.create_invocation(&new).await.unwrap() })
        });
        let mut new = Vec::new();
        let mut existing = Vec::new();
        for created in futures::future::join_all(tries).await {
            match created.unwrap() {
                Created::New(inv) => new.push(inv.id),
                Created::Existing(inv) => existing.push(inv.id),
            }
        }
        assert_eq!(new.len(), 1, "one of the tries creates it");
        assert!(
            existing.iter().all(|id| *id == new[0]),
            "the others find it"
        );
        assert_eq!(storage.count_rows(Table::Invocations).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn entries_and_their_state_are_written_together_and_truncated() {
    on_both(|storage| async move {
        storage.create_invocation(&invocation("a")).await.unwrap();
        let set = |name: &str, value: &[u8]| StateOp::Set {
            name: name.into(),
            value: value.to_vec(),
        };
        let batch = vec![
            (entry(0), Some(set("x", b"1"))),
            (entry(1), Some(set("y", b"2"))),
            (entry(2), Some(set("x", b"3"))),
        ];
        storage.append_batch("a", SCOPE, batch).await.unwrap();
        assert_eq!(
            storage.state_get("S", "k", "x").await.unwrap().as_deref(),
            Some(&b"3"[..])
        );
        assert_eq!(storage.state_keys("S", "k").await.unwrap(), ["x", "y"]);
        assert!(
            storage
                .state_get("S", "other", "x")
                .await
                .unwrap()
                .is_none()
        );

        // A batch with an index already written fails whole: neither entry nor state lands.
        let clash = vec![
            (entry(3), Some(StateOp::Clear { name: "y".into() })),
            (entry(1), None),
        ];
        assert!(storage.append_batch("a", SCOPE, clash).await.is_err());
        assert_eq!(storage.state_keys("S", "k").await.unwrap(), ["x", "y"]);
        let indexes = |j: Vec<Entry>| j.iter().map(|e| e.index).collect::<Vec<_>>();
        assert_eq!(indexes(storage.journal("a").await.unwrap()), [0, 1, 2]);

        let clear = vec![
            (entry(3), Some(StateOp::Clear { name: "y".into() })),
            (entry(4), None),
        ];
        storage.append_batch("a", SCOPE, clear).await.unwrap();
        assert_eq!(storage.state_keys("S", "k").await.unwrap(), ["x"]);
        storage
            .append("a", &entry(5), Some((SCOPE, &StateOp::ClearAll)))
            .await
            .unwrap();
        assert_eq!(storage.count_rows(Table::State).await.unwrap(), 0);

        storage.truncate_journal("a", 2).await.unwrap();
        assert_eq!(indexes(storage.journal("a").await.unwrap()), [0, 1]);
        let stored = storage.journal("a").await.unwrap();
        assert_eq!(stored[0], entry(0), "an entry reads back as written");
    })
    .await;
}

#[tokio::test]
async fn a_call_marker_stays_until_the_call_is_recorded() {
    on_both(|storage| async move {
        storage.create_invocation(&invocation("a")).await.unwrap();
        assert_eq!(storage.call_marked_at("a", 0).await.unwrap(), None);
        let before = now_ms();
        assert!(!storage.mark_call_started("a", marker(0)).await.unwrap());
        let marked_at = storage
            .call_marked_at("a", 0)
            .await
            .unwrap()
            .expect("marked");
        assert!((before..=now_ms()).contains(&marked_at), "{marked_at}");
        assert!(
            storage.mark_call_started("a", marker(0)).await.unwrap(),
            "a second start of the same call is in doubt"
        );
        assert_eq!(
            storage.call_marked_at("a", 0).await.unwrap(),
            Some(marked_at),
            "the first start is when the call may have begun"
        );
        // A soft failure may have come after the effect: the marker stays.
        storage.append("a", &call(0, true), None).await.unwrap();
        assert!(storage.mark_call_started("a", marker(0)).await.unwrap());
        storage.truncate_journal("a", 0).await.unwrap();
        storage.append("a", &call(0, false), None).await.unwrap();
        assert!(
            !storage
                .append_and_mark("a", SCOPE, vec![(entry(1), None)], marker(0))
                .await
                .unwrap(),
            "the recorded result removed the marker"
        );
        assert!(!storage.mark_call_started("a", marker(2)).await.unwrap());
        storage
            .complete("a", &Outcome::Succeeded(Vec::new()), SCOPE, Vec::new())
            .await
            .unwrap();
        assert!(
            !storage.mark_call_started("a", marker(2)).await.unwrap(),
            "completion removes every marker"
        );
    })
    .await;
}

#[tokio::test]
async fn invocations_are_listed_newest_first_by_filter() {
    on_both(|storage| async move {
        for (id, key) in [("a", "k1"), ("b", "k2"), ("c", "k1")] {
            let new = NewInvocation {
                key: Some(key.into()),
                ..invocation(id)
            };
            storage.create_invocation(&new).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let done = Outcome::Succeeded(Vec::new());
        storage
            .complete("c", &done, SCOPE, Vec::new())
            .await
            .unwrap();
        let list = |filter: InvocationFilter| {
            let storage = storage.clone();
            async move {
                let found = storage.list_invocations(&filter).await.unwrap();
                found.into_iter().map(|i| i.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(list(InvocationFilter::default()).await, ["c", "b", "a"]);
        let by_key = InvocationFilter {
            key: Some("k1".into()),
            ..Default::default()
        };
        assert_eq!(list(by_key).await, ["c", "a"]);
        let running = InvocationFilter {
            status: Some("running".into()),
            service: Some("S".into()),
            limit: Some(1),
            ..Default::default()
        };
        assert_eq!(list(running).await, ["b"]);
        let created = |id: &str| {
            let storage = storage.clone();
            let id = id.to_string();
            async move { storage.invocation(&id).await.unwrap().unwrap().created_at }
        };
        let window = InvocationFilter {
            since: Some(created("b").await),
            until: Some(created("c").await),
            ..Default::default()
        };
        assert_eq!(
            list(window).await,
            ["b"],
            "since is inclusive, until is not"
        );
    })
    .await;
}

#[tokio::test]
async fn unfinished_invocations_stream_in_creation_order_without_later_ones() {
    let before = |storage: Arc<dyn Storage>| async move {
        for id in ["c", "a", "d", "b", "e"] {
            storage.create_invocation(&invocation(id)).await.unwrap();
        }
        let done = Outcome::Succeeded(Vec::new());
        storage
            .complete("d", &done, SCOPE, Vec::new())
            .await
            .unwrap();
        let entries = |n: u32| (0..n).map(|i| (entry(i), None)).collect();
        storage.append_batch("a", SCOPE, entries(2)).await.unwrap();
        storage.append_batch("e", SCOPE, entries(1)).await.unwrap();
    };
    // The same host's next process finds them.
    let after = |storage: Arc<dyn Storage>| async move {
        let mut scan = UnfinishedScan::default();
        let mut seen = Vec::new();
        loop {
            let page = storage.unfinished_invocations(&mut scan, 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            // Created while the scan runs: not part of it (this process runs it itself).
            storage
                .create_invocation(&invocation(&format!("new{}", seen.len())))
                .await
                .unwrap();
            seen.extend(page.into_iter().map(|i| (i.id, i.known_journal)));
        }
        let ids: Vec<_> = seen.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["c", "a", "b", "e"]);
        // One host: each comes with its journal, read with the page. Shared: it is read once
        // the invocation is claimed.
        let journals: Vec<_> = seen.iter().map(|(_, j)| j.as_ref().map(Vec::len)).collect();
        if storage.shared() {
            assert_eq!(journals, [None; 4]);
        } else {
            assert_eq!(journals, [Some(0), Some(2), Some(0), Some(1)]);
        }
    };

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    before(Arc::new(SqliteStorage::open(&url).await.unwrap())).await;
    after(Arc::new(SqliteStorage::open(&url).await.unwrap())).await;

    let database = ScratchDatabase::create().await.unwrap();
    let options = StorageOptions::default();
    let first = Arc::new(PgStorage::open(&database.url, &options).await.unwrap());
    before(first.clone()).await;
    drop(first);
    after(Arc::new(
        PgStorage::open(&database.url, &options).await.unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn a_promise_is_completed_once_and_the_first_completion_stands() {
    on_both(|storage| async move {
        assert_eq!(storage.promise("prom_1").await.unwrap(), None);
        let resolved = PromiseOutcome::Resolved(b"{\"ok\":1}".to_vec());
        assert_eq!(
            storage.complete_promise("prom_1", &resolved).await.unwrap(),
            PromiseCompletion::NotFound
        );
        storage.create_promise("prom_1", "inv-1").await.unwrap();
        assert_eq!(storage.promise("prom_1").await.unwrap(), Some(None));
        assert_eq!(
            storage.complete_promise("prom_1", &resolved).await.unwrap(),
            PromiseCompletion::Completed
        );
        let rejected = PromiseOutcome::Rejected("late".into());
        assert_eq!(
            storage.complete_promise("prom_1", &rejected).await.unwrap(),
            PromiseCompletion::AlreadyCompleted(resolved.clone())
        );
        assert_eq!(
            storage.promise("prom_1").await.unwrap(),
            Some(Some(resolved))
        );
        storage.create_promise("prom_2", "inv-1").await.unwrap();
        assert_eq!(
            storage.complete_promise("prom_2", &rejected).await.unwrap(),
            PromiseCompletion::Completed
        );
        assert_eq!(
            storage.promise("prom_2").await.unwrap(),
            Some(Some(rejected))
        );
    })
    .await;
}

#[tokio::test]
async fn a_delayed_invocation_keeps_its_start_time_and_trace() {
    on_both(|storage| async move {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let new = NewInvocation {
            not_before: Some(1_700_000_000_000),
            trace_parent: Some(traceparent.into()),
            ..invocation("inv-later")
        };
        let Created::New(created) = storage.create_invocation(&new).await.unwrap() else {
            panic!("created");
        };
        assert_eq!(created.not_before, Some(1_700_000_000_000));
        let read = storage.invocation("inv-later").await.unwrap().unwrap();
        assert_eq!(read.not_before, Some(1_700_000_000_000));
        assert_eq!(read.trace_parent.as_deref(), Some(traceparent));
        let now = storage
            .create_invocation(&invocation("inv-now"))
            .await
            .unwrap();
        assert!(matches!(now, Created::New(inv) if inv.not_before.is_none()));
    })
    .await;
}

fn record(id: &str, at: i64) -> DeploymentRecord {
    DeploymentRecord {
        id: id.into(),
        kind: "payments".into(),
        name: "payments".into(),
        size: 3,
        describe: Some(serde_json::json!({"handlers": []})),
        component: b"abc".to_vec(),
        created_at: at,
        limits: None,
        provider_settings: None,
        activated_at: at,
    }
}

#[tokio::test]
async fn deployments_are_listed_by_activation_pinned_and_deleted() {
    on_both(|storage| async move {
        storage.put_deployment(&record("a", 1)).await.unwrap();
        storage.put_deployment(&record("b", 2)).await.unwrap();
        let limits = serde_json::json!({"cpuMs": 1000});
        storage
            .activate_deployment("a", Some(&limits), None, 3)
            .await
            .unwrap();
        let listed = storage.deployments().await.unwrap();
        let order: Vec<&str> = listed.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(order, ["b", "a"], "the last activated comes last");
        assert_eq!(listed[1].limits, Some(limits));
        assert_eq!(listed[1].activated_at, 3);
        assert_eq!(listed[1].component, b"abc");
        assert_eq!(listed[1].describe, record("a", 1).describe);

        storage
            .create_invocation(&NewInvocation {
                providers: BTreeMap::from([("payments".to_string(), "a".to_string())]),
                ..invocation("inv_1")
            })
            .await
            .unwrap();
        let pinned = |id: &'static str| storage.running_invocations_pinned_to(id, 10);
        assert_eq!(pinned("a").await.unwrap(), ["inv_1"]);
        assert_eq!(pinned("svc").await.unwrap(), ["inv_1"]);
        assert!(pinned("b").await.unwrap().is_empty());

        assert!(storage.delete_deployment("b").await.unwrap());
        assert!(!storage.delete_deployment("b").await.unwrap());
        assert_eq!(storage.deployments().await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn concurrent_writes_commit_and_a_failing_write_fails_alone() {
    on_both(|storage| async move {
        let writes = (0..100u32).map(|i| {
            let storage = storage.clone();
            // Entry 7 is written twice: exactly one of the two must fail.
            let index = if i == 99 { 7 } else { i };
            tokio::spawn(async move { storage.append("inv", &entry(index), None).await })
        });
        let results = futures::future::join_all(writes).await;
        let failed = results
            .iter()
            .filter(|r| r.as_ref().unwrap().is_err())
            .count();
        assert_eq!(failed, 1);
        assert_eq!(storage.count_rows(Table::Journal).await.unwrap(), 99);
        let journal = storage.journal("inv").await.unwrap();
        assert_eq!(journal.len(), 99);
        assert_eq!(journal[98].index, 98);
    })
    .await;
}

/// The ids of the first page (of one) of `storage`'s unfinished invocations.
async fn orphans(storage: &PgStorage) -> Vec<String> {
    let mut scan = UnfinishedScan::default();
    let page = storage.unfinished_invocations(&mut scan, 1).await.unwrap();
    page.into_iter().map(|i| i.id).collect()
}

/// A PostgreSQL host with `host_id` and a short lease lifetime.
async fn pg_host(url: &str, host_id: &str) -> Result<PgStorage, StorageError> {
    let options = StorageOptions {
        host_id: host_id.into(),
        lease_ttl: std::time::Duration::from_millis(400),
    };
    PgStorage::open(url, &options).await
}

#[tokio::test]
async fn on_postgres_a_host_id_is_held_by_one_process_at_a_time() {
    let database = ScratchDatabase::create().await.unwrap();
    let first = pg_host(&database.url, "a").await.unwrap();
    let other = pg_host(&database.url, "b").await.unwrap();
    let error = pg_host(&database.url, "a").await.err().expect("refused");
    assert!(error.to_string().contains("runs as host a"), "{error}");
    drop((first, other));
    // Once its process is gone, the host id can be taken again (a restart).
    pg_host(&database.url, "a").await.unwrap();
}

#[tokio::test]
async fn on_postgres_a_host_that_stops_is_taken_over_and_fenced() {
    let database = ScratchDatabase::create().await.unwrap();
    let a = pg_host(&database.url, "a").await.unwrap();
    let b = pg_host(&database.url, "b").await.unwrap();
    // b's own, running: never b's orphan, nor in the way of finding one.
    b.create_invocation(&invocation("w")).await.unwrap();
    a.create_invocation(&invocation("x")).await.unwrap();
    a.append_batch("x", SCOPE, vec![(entry(0), None)])
        .await
        .unwrap();
    assert!(!b.claim("x", "inv:x").await.unwrap(), "a live host's");
    assert!(orphans(&b).await.is_empty());
    assert!(orphans(&a).await.is_empty(), "a runs it already");

    // Exclusive turns on a key: one host at a time, given back on release.
    assert!(a.claim("x", "key:S/k").await.unwrap());
    b.create_invocation(&invocation("y")).await.unwrap();
    assert!(!b.claim("y", "key:S/k").await.unwrap());

    // a stops extending its leases (as if it died): b takes x over, and a is fenced.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !b.claim("y", "key:S/k").await.unwrap(),
        "heartbeats keep it"
    );
    a.stop_heartbeat();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(orphans(&b).await, ["x"]);
    assert!(b.claim("x", "inv:x").await.unwrap());
    assert!(b.claim("y", "key:S/k").await.unwrap());
    // Written together (in one group commit, most likely), a's fenced write fails alone.
    a.create_invocation(&invocation("v")).await.unwrap();
    let (fenced, fresh) = tokio::join!(
        a.append_batch("x", SCOPE, vec![(entry(1), None)]),
        a.append_batch("v", SCOPE, vec![(entry(0), None)]),
    );
    assert!(matches!(fenced, Err(StorageError::Fenced(_))), "{fenced:?}");
    fresh.unwrap();
    let done = Outcome::Succeeded(Vec::new());
    assert!(a.complete("x", &done, SCOPE, Vec::new()).await.is_err());
    b.append_batch("x", SCOPE, vec![(entry(1), None)])
        .await
        .unwrap();
    b.complete("x", &done, SCOPE, Vec::new()).await.unwrap();
    b.release("x").await.unwrap();
    assert_eq!(b.journal("x").await.unwrap().len(), 2);
    assert_eq!(
        b.count_rows(Table::Invocations).await.unwrap(),
        4,
        "v, w, x and y"
    );
}

#[tokio::test]
async fn on_postgres_a_lease_nothing_runs_under_expires_while_its_host_lives() {
    let database = ScratchDatabase::create().await.unwrap();
    let a = pg_host(&database.url, "a").await.unwrap();
    a.create_invocation(&invocation("q")).await.unwrap();
    assert!(a.claim("q", "key:S/q").await.unwrap());
    // Host a restarts: its new process runs nothing under the old leases, so it does not
    // extend them.
    drop(a);
    let _a = pg_host(&database.url, "a").await.unwrap();
    let b = pg_host(&database.url, "b").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(b.claim("r", "key:S/q").await.unwrap());
    assert_eq!(orphans(&b).await, ["q"]);
}
