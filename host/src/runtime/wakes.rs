//! Wake-ups for suspended invocations. Whoever completes an invocation or a promise in this
//! process says so here, and the invocations waiting on it replay at once; on a shared database
//! another host may complete it: its notice comes through the storage ([`follow_notices`]), and
//! a waiter also polls storage (a lost notice costs at most one poll). A waiter holds no
//! instance: only its task, its rows and a [`Notify`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{Either, select, select_all};
use tokio::sync::{Notify, watch};

use super::Runtime;
use crate::journal::Awaited;
use crate::storage::{Notice, StorageResult, now_ms};

/// How often a waiter checks storage itself: often on a shared database (another host may
/// complete what it waits for), rarely as a safety net on an embedded one.
fn poll_interval(shared: bool) -> Duration {
    if shared {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(60)
    }
}

pub struct Wakes {
    waiting: Mutex<HashMap<Awaited, Arc<Notify>>>,
    /// Set when the host stops: every wait ends at once, and the invocation is left to the
    /// next start (its rows say what it waits for).
    stopping: watch::Sender<bool>,
}

impl Default for Wakes {
    fn default() -> Self {
        Wakes {
            waiting: Mutex::default(),
            stopping: watch::channel(false).0,
        }
    }
}

impl Wakes {
    /// Ends every wait of this process, now and later (the host is stopping).
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Wakes the invocations of this process waiting on what `what` names (made only when
    /// someone waits: every completion passes here, and most have no waiter).
    pub fn notify(&self, what: impl FnOnce() -> Awaited) {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.is_empty() {
            return;
        }
        if let Some(notify) = waiting.get(&what()) {
            notify.notify_waiters();
        }
    }

    fn listen(&self, what: &Awaited) -> Arc<Notify> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.entry(what.clone()).or_default().clone()
    }

    /// Drops the entries no one else waits on.
    fn forget(&self, listening: Vec<(Awaited, Arc<Notify>)>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for (what, notify) in listening {
            drop(notify);
            if waiting
                .get(&what)
                .is_some_and(|n| Arc::strong_count(n) == 1)
            {
                waiting.remove(&what);
            }
        }
    }
}

/// On a shared storage: passes what the other hosts notify (an invocation ended, a promise
/// resolved, an operator's change) to what waits for it here, at once; the polls stay as the
/// backstop. Ends with the storage.
pub fn follow_notices(runtime: &Arc<Runtime>) {
    let Some(mut notices) = runtime.storage.notices() else {
        return;
    };
    let runtime = Arc::downgrade(runtime);
    tokio::spawn(async move {
        loop {
            let notice = match notices.recv().await {
                Ok(notice) => notice,
                // Missed some: the polls find them.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let Some(runtime) = runtime.upgrade() else {
                return;
            };
            match notice {
                Notice::Ended(id) => runtime.wakes.notify(|| Awaited::Invocation(id)),
                Notice::Resolved(id) => runtime.wakes.notify(|| Awaited::Promise(id)),
                Notice::Changed(_) => runtime.controls.look_now(),
            }
        }
    });
}

/// Waits until `until_ms` (Unix ms) passes or one of `on` completes, whichever comes first;
/// `false` when the host stops first.
pub async fn wait(runtime: &Runtime, until_ms: Option<i64>, on: &[Awaited]) -> bool {
    let mut stopping = runtime.wakes.stopping.subscribe();
    if *stopping.borrow_and_update() {
        return false;
    }
    if on.is_empty() {
        let wait = until_ms
            .unwrap_or_else(now_ms)
            .saturating_sub(now_ms())
            .max(0);
        let sleep = Box::pin(tokio::time::sleep(Duration::from_millis(wait as u64)));
        let stop = Box::pin(stopping.changed());
        return matches!(select(sleep, stop).await, Either::Left(_));
    }
    let listening: Vec<(Awaited, Arc<Notify>)> = on
        .iter()
        .map(|what| (what.clone(), runtime.wakes.listen(what)))
        .collect();
    let poll = poll_interval(runtime.storage.shared());
    let finished = loop {
        // Listening before looking: a completion between the two is not missed.
        let mut notified: Vec<_> = listening
            .iter()
            .map(|(_, notify)| Box::pin(notify.notified()))
            .collect();
        for n in &mut notified {
            n.as_mut().enable();
        }
        match any_completed(runtime, on).await {
            Ok(true) => break true,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "checking what an invocation waits for"),
        }
        let now = now_ms();
        if until_ms.is_some_and(|until| now >= until) {
            break true;
        }
        let nap = until_ms.map_or(poll, |until| {
            poll.min(Duration::from_millis((until - now).max(0) as u64))
        });
        let timer = Box::pin(tokio::time::sleep(nap));
        let stop = Box::pin(stopping.changed());
        if let Either::Right(_) = select(select(select_all(notified), timer), stop).await {
            break false;
        }
    };
    runtime.wakes.forget(listening);
    finished
}

async fn any_completed(runtime: &Runtime, on: &[Awaited]) -> StorageResult<bool> {
    for what in on {
        let done = match what {
            Awaited::Invocation(id) => runtime
                .storage
                .invocation(id)
                .await?
                .is_none_or(|inv| inv.status.is_finished()),
            Awaited::Promise(id) => !matches!(runtime.storage.promise(id).await?, Some(None)),
        };
        if done {
            return Ok(true);
        }
    }
    Ok(false)
}
