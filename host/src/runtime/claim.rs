//! Claiming an invocation on a storage several hosts share (PostgreSQL): the invocation's lease,
//! and for an exclusive handler its key's, before it runs here.

use std::time::Duration;

use super::Runtime;
use super::invoker::storage_failure;
use crate::journal::Entry;
use crate::storage::{
    FailureKind, FailureRecord, Invocation, InvocationStatus, Outcome, StorageError,
};

/// What claiming an invocation on a shared storage found.
pub(super) enum Claimed {
    /// Run it, with its journal if still known.
    Run(Option<Vec<Entry>>),
    /// It ended (on another host): nothing to run here.
    Ended(Outcome),
    /// Another host, or another task of this one, runs it: nothing to run or release here.
    Elsewhere(Outcome),
}

/// On a storage several hosts share: claims the invocation's lease (unless this process created
/// it, and holds it since) and, for an exclusive handler, its key's (waiting for the key while
/// another host holds it). When another host may have moved the invocation on meanwhile, reads it
/// again.
pub(super) async fn claim(
    runtime: &Runtime,
    inv: &mut Invocation,
    exclusive: bool,
    known: Option<Vec<Entry>>,
) -> Claimed {
    let storage = &runtime.storage;
    // Resumed (its journal not known): the lease of a host that died, or of this host's earlier
    // process.
    if known.is_none() {
        match storage.claim(&inv.id, &format!("inv:{}", inv.id)).await {
            Ok(true) => {}
            Ok(false) => {
                return Claimed::Elsewhere(Outcome::Failed(FailureRecord::new(
                    FailureKind::Retryable,
                    503,
                    "the invocation runs on another host",
                )));
            }
            Err(e) => return Claimed::Elsewhere(storage_failure(&inv.id, &e)),
        }
    }
    let mut waited = false;
    if let (Some(key), true) = (&inv.key, exclusive) {
        let lease = format!("key:{}/{key}", inv.service);
        let mut delay = Duration::from_millis(10);
        loop {
            match storage.claim(&inv.id, &lease).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(invocation = %inv.id, error = %e, "claiming the key"),
            }
            waited = true;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }
    if known.is_some() && !waited {
        return Claimed::Run(known);
    }
    match storage.invocation(&inv.id).await {
        Ok(Some(current)) => match (current.status, current.output, current.failure) {
            (InvocationStatus::Running, _, _) => {
                inv.attempt = current.attempt;
                Claimed::Run(None)
            }
            (InvocationStatus::Paused, _, failure) => Claimed::Ended(Outcome::Failed(
                failure.unwrap_or_else(|| super::control::Stop::Pause.failure()),
            )),
            (InvocationStatus::Succeeded, output, _) => {
                Claimed::Ended(Outcome::Succeeded(output.unwrap_or_default()))
            }
            (InvocationStatus::Failed, _, failure) => {
                Claimed::Ended(Outcome::Failed(failure.unwrap_or_else(|| {
                    FailureRecord::new(FailureKind::Terminal, 500, "failed")
                })))
            }
        },
        Ok(None) => Claimed::Ended(storage_failure(
            &inv.id,
            &StorageError::Corrupt("the invocation vanished".into()),
        )),
        Err(e) => Claimed::Ended(storage_failure(&inv.id, &e)),
    }
}
