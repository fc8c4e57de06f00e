//! What an operator does to stored invocations and state, on both databases: kill, pause,
//! resume, cancel and purge only from the statuses that allow them; state edits with their
//! audit, refused while an invocation of the key is unfinished.

use super::*;
use crate::storage::{ChangedElsewhere, Notice, StateEdit, StateEdited};

#[tokio::test]
async fn an_operator_kills_pauses_resumes_and_purges_only_from_the_statuses_that_allow_it() {
    on_both(|storage| async move {
        let paused = FailureRecord::new(FailureKind::Paused, 503, "paused");
        let killed = FailureRecord::new(FailureKind::Killed, 409, "killed");
        assert_eq!(
            storage
                .change_status("nope", &StatusChange::Purge)
                .await
                .unwrap(),
            Changed::NotFound
        );
        storage.create_invocation(&invocation("p")).await.unwrap();
        storage.append("p", &entry(0), None).await.unwrap();
        storage.set_attempt("p", 3).await.unwrap();
        // Running: not purged, not resumed; paused.
        for refused in [
            StatusChange::Purge,
            StatusChange::Resume { deployment: None },
        ] {
            let changed = storage.change_status("p", &refused).await.unwrap();
            assert_eq!(changed, Changed::Refused(InvocationStatus::Running));
        }
        let pause = StatusChange::Pause(paused.clone());
        assert_eq!(
            storage.change_status("p", &pause).await.unwrap(),
            Changed::Applied
        );
        let read = storage.invocation("p").await.unwrap().unwrap();
        assert_eq!(read.status, InvocationStatus::Paused);
        assert_eq!(read.failure, Some(paused.clone()));
        assert!(read.outcome().is_none(), "kept, not failed");
        // Not resumed by a start: only running invocations are unfinished work.
        let unfinished = storage
            .unfinished_invocations(&mut UnfinishedScan::default(), 10)
            .await
            .unwrap();
        assert!(unfinished.is_empty());

        // Resumed on another deployment: a new attempt, the policy counting from it.
        let resume = StatusChange::Resume {
            deployment: Some("fixed".into()),
        };
        assert_eq!(
            storage.change_status("p", &resume).await.unwrap(),
            Changed::Applied
        );
        let read = storage.invocation("p").await.unwrap().unwrap();
        assert_eq!(read.status, InvocationStatus::Running);
        assert_eq!((read.attempt, read.attempt_base), (4, 3));
        assert_eq!(read.deployment_id, "fixed");
        assert_eq!(read.failure, None);

        // Killed: its outcome stands against a late completion; the journal stays.
        let kill = StatusChange::Kill(killed.clone());
        assert_eq!(
            storage.change_status("p", &kill).await.unwrap(),
            Changed::Applied
        );
        let late = Outcome::Succeeded(b"late".to_vec());
        storage
            .complete("p", &late, SCOPE, Vec::new())
            .await
            .unwrap();
        let read = storage.invocation("p").await.unwrap().unwrap();
        assert_eq!(read.status, InvocationStatus::Failed);
        assert_eq!(read.failure, Some(killed));
        assert_eq!(storage.journal("p").await.unwrap().len(), 1);
        assert_eq!(
            storage.change_status("p", &kill).await.unwrap(),
            Changed::Refused(InvocationStatus::Failed)
        );

        // Purged: row and journal gone.
        assert_eq!(
            storage
                .change_status("p", &StatusChange::Purge)
                .await
                .unwrap(),
            Changed::Applied
        );
        assert!(storage.invocation("p").await.unwrap().is_none());
        assert!(storage.journal("p").await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_cancel_is_recorded_once_and_runs_a_paused_invocation_again() {
    on_both(|storage| async move {
        storage.create_invocation(&invocation("c")).await.unwrap();
        storage.set_attempt("c", 2).await.unwrap();
        let pause = StatusChange::Pause(FailureRecord::new(FailureKind::Paused, 503, "paused"));
        storage.change_status("c", &pause).await.unwrap();
        assert_eq!(
            storage
                .change_status("c", &StatusChange::Cancel)
                .await
                .unwrap(),
            Changed::Applied
        );
        let read = storage.invocation("c").await.unwrap().unwrap();
        assert_eq!(
            read.status,
            InvocationStatus::Running,
            "running again to be told"
        );
        assert_eq!((read.attempt, read.attempt_base), (3, 2));
        assert_eq!(read.failure, None);
        let at = read.cancelled_at.expect("cancelled_at");
        // Again while running: the first time stands, no new attempt.
        assert_eq!(
            storage
                .change_status("c", &StatusChange::Cancel)
                .await
                .unwrap(),
            Changed::Applied
        );
        let again = storage.invocation("c").await.unwrap().unwrap();
        assert_eq!((again.cancelled_at, again.attempt), (Some(at), 3));
        let failed = Outcome::Failed(FailureRecord::new(FailureKind::Cancelled, 409, "cancelled"));
        let scope = StateScope {
            service: "S",
            key: "",
        };
        storage.complete("c", &failed, scope, vec![]).await.unwrap();
        assert_eq!(
            storage
                .change_status("c", &StatusChange::Cancel)
                .await
                .unwrap(),
            Changed::Refused(InvocationStatus::Failed)
        );
    })
    .await;
}

fn edit(name: &str, value: Option<&[u8]>, reason: &str) -> StateEdit {
    StateEdit {
        service: "S".into(),
        key: "k".into(),
        name: name.into(),
        value: value.map(<[u8]>::to_vec),
        reason: reason.into(),
        at: 7,
    }
}

#[tokio::test]
async fn a_state_edit_is_audited_and_refused_while_an_invocation_holds_the_key() {
    on_both(|storage| async move {
        let scope = StateScope {
            service: "S",
            key: "k",
        };
        let mut running = invocation("busy");
        running.key = Some("k".into());
        storage.create_invocation(&running).await.unwrap();
        let set = StateOp::Set {
            name: "count".into(),
            value: b"1".to_vec(),
        };
        storage
            .append_batch("busy", scope.clone(), vec![(entry(0), Some(set))])
            .await
            .unwrap();
        // Refused while it runs: nothing written, no audit.
        assert_eq!(
            storage
                .edit_state(&edit("count", Some(b"5"), "fix"))
                .await
                .unwrap(),
            StateEdited::Busy("busy".into())
        );
        assert_eq!(
            storage
                .state_get("S", "k", "count")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"1"[..])
        );
        assert!(storage.state_audit("S", "k", 10).await.unwrap().is_empty());

        let done = Outcome::Succeeded(b"ok".to_vec());
        storage
            .complete("busy", &done, scope, vec![])
            .await
            .unwrap();
        assert_eq!(
            storage
                .edit_state(&edit("count", Some(b"5"), "fix"))
                .await
                .unwrap(),
            StateEdited::Applied
        );
        storage
            .edit_state(&edit("note", Some(b"\"x\""), "add"))
            .await
            .unwrap();
        storage
            .edit_state(&edit("count", None, "drop"))
            .await
            .unwrap();
        let entries = storage.state_entries("S", "k", 10).await.unwrap();
        assert_eq!(entries, vec![("note".to_string(), b"\"x\"".to_vec())]);
        assert_eq!(storage.state_entries("S", "k", 0).await.unwrap(), vec![]);
        let audit = storage.state_audit("S", "k", 10).await.unwrap();
        let seen: Vec<_> = audit
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    a.before.as_deref(),
                    a.after.as_deref(),
                    a.reason.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("count", Some(&b"5"[..]), None, "drop"),
                ("note", None, Some(&b"\"x\""[..]), "add"),
                ("count", Some(&b"1"[..]), Some(&b"5"[..]), "fix"),
            ],
            "newest first, with the value before and after"
        );
        assert_eq!(storage.state_audit("S", "k", 1).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn the_invocations_changed_through_another_host_are_found_in_one_look() {
    on_both(|storage| async move {
        for id in ["runs", "cancelled", "killed"] {
            storage.create_invocation(&invocation(id)).await.unwrap();
        }
        let cancel = StatusChange::Cancel;
        let kill = StatusChange::Kill(FailureRecord::new(FailureKind::Killed, 409, "killed"));
        assert_eq!(
            storage.change_status("cancelled", &cancel).await.unwrap(),
            Changed::Applied
        );
        assert_eq!(
            storage.change_status("killed", &kill).await.unwrap(),
            Changed::Applied
        );
        let ids = ["runs", "cancelled", "killed", "purged"].map(String::from);
        let mut changed = storage.changed_elsewhere(&ids).await.unwrap();
        changed.sort();
        assert_eq!(
            changed,
            [
                ("cancelled".to_string(), ChangedElsewhere::Cancelled),
                ("killed".to_string(), ChangedElsewhere::NotRunning),
                ("purged".to_string(), ChangedElsewhere::NotRunning),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn on_postgres_the_other_hosts_hear_of_endings_resolutions_and_changes() {
    let database = ScratchDatabase::create().await.unwrap();
    let a = pg_host(&database.url, "a").await.unwrap();
    let b = pg_host(&database.url, "b").await.unwrap();
    let mut heard = b.notices().expect("a shared storage has notices");
    // The listener connects in the background: a first notice may come before it listens.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    a.create_invocation(&invocation("x")).await.unwrap();
    a.create_promise("p1", "x").await.unwrap();
    let done = Outcome::Succeeded(Vec::new());
    a.complete_promise("p1", &PromiseOutcome::Resolved(b"1".to_vec()))
        .await
        .unwrap();
    a.change_status("x", &StatusChange::Cancel).await.unwrap();
    a.complete("x", &done, SCOPE, Vec::new()).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), heard.recv());
        got.push(next.await.expect("a notice within 5 s").unwrap());
    }
    assert_eq!(
        got,
        [
            Notice::Resolved("p1".into()),
            Notice::Changed("x".into()),
            Notice::Ended("x".into()),
        ]
    );
}
