//! Operator control of invocations: cancel, kill, pause, resume, retry now, purge. A cancel is
//! recorded in storage and told to the task that runs the invocation, which wakes if it waits;
//! the handler learns of it at its next check and may compensate. A stop reaches the
//! task that runs the invocation in this process, which drops what it was doing (an attempt, a
//! wait, a backoff: its instance, permit and key with it) and writes the change itself; an
//! invocation no task of this process runs (paused, or on another host) is changed in storage
//! directly, and its owner finds the change at once when notified, else at its watcher's next
//! look at the rows of all it runs ([`changed_elsewhere`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::Runtime;
use crate::journal::Awaited;
use crate::storage::{
    Changed, ChangedElsewhere, FailureKind, FailureRecord, Invocation, InvocationStatus, Outcome,
    StatusChange, StorageError,
};

/// How an operator stops a running invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Failed at once (`killed`), no compensation; its journal stays.
    Kill,
    /// Kept (`paused`), to be resumed.
    Pause,
}

impl Stop {
    /// The failure recorded for it.
    pub fn failure(self) -> FailureRecord {
        match self {
            Stop::Kill => FailureRecord::new(FailureKind::Killed, 409, "killed by the operator"),
            Stop::Pause => FailureRecord::new(
                FailureKind::Paused,
                503,
                "paused by the operator; it runs again when resumed",
            ),
        }
    }

    fn change(self) -> StatusChange {
        match self {
            Stop::Kill => StatusChange::Kill(self.failure()),
            Stop::Pause => StatusChange::Pause(self.failure()),
        }
    }
}

/// A stop sent to a running task, and where it answers what storage said.
type StopRequest = (Stop, oneshot::Sender<Result<Changed, StorageError>>);

/// The handle of one invocation's task.
struct Handle {
    stop: Mutex<Option<StopRequest>>,
    stopped: Notify,
    /// Set while the task waits out a retry's backoff; `retry_now` ends the wait.
    backoff_until: Mutex<Option<i64>>,
    retry_now: Notify,
    /// Set when the operator cancels it (shared with each attempt's journal).
    cancel: Arc<AtomicBool>,
    cancelled: Notify,
    /// Told by the host's watcher when the row is not running any more (another host).
    elsewhere: Notify,
}

impl Handle {
    fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
        self.cancelled.notify_waiters();
    }
}

/// The tasks of this process that run invocations, by invocation id.
#[derive(Default)]
pub struct Controls {
    running: Mutex<HashMap<String, Arc<Handle>>>,
    /// Tasks waiting without an instance (suspended, delayed, in backoff).
    waiting: AtomicUsize,
    /// Whether the watcher of changes made through other hosts runs ([`changed_elsewhere`]).
    watching: std::sync::OnceLock<()>,
    /// Tells the watcher to look now (another host notified a change).
    look: Notify,
}

/// Counts one task in [`Controls::waiting`] while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Controls {
    /// Registers the task that runs invocation `id` until the returned guard drops.
    pub(crate) fn register(self: &Arc<Self>, id: &str) -> Registration {
        let handle = Arc::new(Handle {
            stop: Mutex::new(None),
            stopped: Notify::new(),
            backoff_until: Mutex::new(None),
            retry_now: Notify::new(),
            cancel: Arc::default(),
            cancelled: Notify::new(),
            elsewhere: Notify::new(),
        });
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.insert(id.to_string(), handle.clone());
        Registration {
            controls: self.clone(),
            id: id.to_string(),
            handle,
        }
    }

    /// Has the watcher of changes made through other hosts look at once.
    pub(crate) fn look_now(&self) {
        self.look.notify_one();
    }

    fn running_ids(&self) -> Vec<String> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.keys().cloned().collect()
    }

    fn get(&self, id: &str) -> Option<Arc<Handle>> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.get(id).cloned()
    }

    /// Invocations of this process waiting without an instance now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// When invocation `id` waits out a retry's backoff in this process: until when (Unix ms).
    pub fn backoff_until(&self, id: &str) -> Option<i64> {
        let handle = self.get(id)?;
        *handle
            .backoff_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// A registered task; unregisters on drop.
pub(crate) struct Registration {
    controls: Arc<Controls>,
    id: String,
    handle: Arc<Handle>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut running = self
            .controls
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if running
            .get(&self.id)
            .is_some_and(|h| Arc::ptr_eq(h, &self.handle))
        {
            running.remove(&self.id);
        }
        drop(running);
        // A stop that came too late: its sender dropped, the operator's side goes to storage.
        self.handle
            .stop
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

impl Registration {
    /// The operator's cancellation, as each attempt's journal shares it.
    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.handle.cancel.clone()
    }

    /// Whether the operator cancelled the invocation.
    pub(crate) fn cancel_asked(&self) -> bool {
        self.handle.cancel.load(Ordering::Acquire)
    }

    /// Records a cancellation found in storage (made through another host, or before a restart).
    pub(crate) fn cancelled_in(&self, inv: &Invocation) {
        if inv.cancelled_at.is_some() && !self.cancel_asked() {
            self.handle.cancel();
        }
    }

    /// Completes once the operator cancelled the invocation.
    async fn cancel_requested(&self) {
        loop {
            let notified = self.handle.cancelled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.cancel_asked() {
                return;
            }
            notified.await;
        }
    }

    /// Waits as [`super::wakes::wait`] does, or until the operator cancels the invocation
    /// (`true`: go on, replay and tell the handler).
    pub(crate) async fn wait(
        &self,
        runtime: &Runtime,
        until_ms: Option<i64>,
        on: &[Awaited],
    ) -> bool {
        let _waiting = Waiting::new(&self.controls.waiting);
        tokio::select! {
            woke = super::wakes::wait(runtime, until_ms, on) => woke,
            () = self.cancel_requested() => true,
        }
    }

    /// Completes when an operator stops the invocation: what to do, and where to answer.
    pub(crate) async fn stopped(&self) -> StopRequest {
        loop {
            let notified = self.handle.stopped.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(request) = self
                .handle
                .stop
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                return request;
            }
            notified.await;
        }
    }

    /// Sleeps `delay` (a retry's backoff), or less when an operator says retry now.
    pub(crate) async fn backoff(&self, delay: Duration) {
        let until = crate::storage::now_ms() + delay.as_millis() as i64;
        *self
            .handle
            .backoff_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(until);
        let now = self.handle.retry_now.notified();
        let _waiting = Waiting::new(&self.controls.waiting);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = now => tracing::info!(invocation = %self.id, "retried now by the operator"),
            // The next attempt tells the handler.
            () = self.cancel_requested() => {}
        }
        *self
            .handle
            .backoff_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Why a control was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no invocation {0:?}")]
    NotFound(String),
    #[error("invocation {id} is {status}: {action} applies to {applies}")]
    Refused {
        id: String,
        status: &'static str,
        action: &'static str,
        applies: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn refused(id: &str, status: InvocationStatus, action: &'static str) -> ControlError {
    let applies = match action {
        "kill" | "cancel" => "running or paused invocations",
        "pause" | "retry" => "running invocations",
        "resume" => "paused invocations",
        _ => "finished invocations",
    };
    ControlError::Refused {
        id: id.to_string(),
        status: status.as_str(),
        action,
        applies,
    }
}

fn changed(id: &str, changed: Changed, action: &'static str) -> Result<(), ControlError> {
    match changed {
        Changed::Applied => Ok(()),
        Changed::NotFound => Err(ControlError::NotFound(id.to_string())),
        Changed::Refused(status) => Err(refused(id, status, action)),
    }
}

/// Kills or pauses invocation `id`: through its task when this process runs it, else in storage.
pub async fn stop(runtime: &Arc<Runtime>, id: &str, stop: Stop) -> Result<(), ControlError> {
    let action = match stop {
        Stop::Kill => "kill",
        Stop::Pause => "pause",
    };
    if let Some(handle) = runtime.controls.get(id) {
        let (reply, answer) = oneshot::channel();
        *handle.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, reply));
        handle.stopped.notify_one();
        // Unregistered meanwhile (before it could take the request): take it back.
        if !runtime
            .controls
            .get(id)
            .is_some_and(|h| Arc::ptr_eq(&h, &handle))
        {
            handle.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        // The task drops what it does and writes the change, unless it ended first.
        if let Ok(answer) = answer.await {
            return changed(id, answer?, action);
        }
    }
    let result = runtime.storage.change_status(id, &stop.change()).await?;
    if result == Changed::Applied && stop == Stop::Kill {
        runtime.wakes.notify(|| Awaited::Invocation(id.to_string()));
    }
    changed(id, result, action)
}

/// What the task of a stopped invocation does: the change in storage, answered to the
/// operator, and the outcome its waiters in this process get.
pub(crate) async fn apply_stop(runtime: &Runtime, id: &str, request: StopRequest) -> Outcome {
    let (stop, reply) = request;
    let mut result = runtime.storage.change_status(id, &stop.change()).await;
    let mut tries = 0;
    while matches!(&result, Err(e) if e.is_retryable()) && tries < 5 {
        tries += 1;
        tokio::time::sleep(Duration::from_millis(20 << tries)).await;
        result = runtime.storage.change_status(id, &stop.change()).await;
    }
    let outcome = match result {
        Ok(Changed::Applied) => {
            tracing::info!(invocation = %id, ?stop, "stopped by the operator");
            if stop == Stop::Kill {
                runtime.wakes.notify(|| Awaited::Invocation(id.to_string()));
            }
            Outcome::Failed(stop.failure())
        }
        // It ended just before: its waiters get how.
        _ => match runtime.storage.invocation(id).await {
            Ok(Some(inv)) => inv.outcome().unwrap_or(Outcome::Failed(stop.failure())),
            _ => Outcome::Failed(stop.failure()),
        },
    };
    let _ = reply.send(result);
    outcome
}

/// How often a host looks at the rows of the invocations it runs, all in one query, for changes
/// made through another host (a shared storage only).
const ELSEWHERE_POLL: Duration = Duration::from_secs(1);

/// Completes when invocation `id`, run by this task, is not running in storage any more
/// (stopped through another host, or taken over): how it stands there. Only on a shared
/// storage; an embedded one is changed through the task itself. The host's watcher (started by
/// the first call) looks for all its invocations at once and passes on a cancel.
pub(crate) async fn changed_elsewhere(runtime: &Arc<Runtime>, id: &str) -> Outcome {
    runtime
        .controls
        .watching
        .get_or_init(|| drop(tokio::spawn(watch_elsewhere(Arc::downgrade(runtime)))));
    let Some(handle) = runtime.controls.get(id) else {
        return std::future::pending().await;
    };
    loop {
        handle.elsewhere.notified().await;
        match runtime.storage.invocation(id).await {
            Ok(Some(inv)) if inv.status == InvocationStatus::Running => {}
            Ok(Some(inv)) => {
                return inv
                    .outcome()
                    .unwrap_or_else(|| Outcome::Failed(paused_failure(&inv)));
            }
            Ok(None) => return Outcome::Failed(Stop::Kill.failure()),
            Err(e) => {
                tracing::debug!(invocation = %id, error = %e, "reading the row");
                handle.elsewhere.notify_one();
                tokio::time::sleep(ELSEWHERE_POLL).await;
            }
        }
    }
}

/// The host's watcher: every [`ELSEWHERE_POLL`], or at once when another host notifies a
/// change ([`Controls::look_now`]), the rows of every invocation it runs in one look; a cancel
/// is passed to the task, a row not running any more wakes it. Ends with the runtime.
async fn watch_elsewhere(weak: std::sync::Weak<Runtime>) {
    loop {
        let Some(runtime) = weak.upgrade() else {
            return;
        };
        // Not holding the runtime while it waits (a notice that came meanwhile is kept).
        let controls = runtime.controls.clone();
        drop(runtime);
        let _ = tokio::time::timeout(ELSEWHERE_POLL, controls.look.notified()).await;
        let Some(runtime) = weak.upgrade() else {
            return;
        };
        let ids = runtime.controls.running_ids();
        if ids.is_empty() {
            continue;
        }
        let changed = match runtime.storage.changed_elsewhere(&ids).await {
            Ok(changed) => changed,
            Err(e) => {
                tracing::debug!(error = %e, "looking for changes made through other hosts");
                continue;
            }
        };
        for (id, change) in changed {
            let Some(handle) = runtime.controls.get(&id) else {
                continue;
            };
            match change {
                ChangedElsewhere::Cancelled if !handle.cancel.load(Ordering::Acquire) => {
                    handle.cancel();
                }
                ChangedElsewhere::Cancelled => {}
                ChangedElsewhere::NotRunning => handle.elsewhere.notify_one(),
            }
        }
    }
}

/// Why a paused invocation is paused (its row's failure).
pub(crate) fn paused_failure(inv: &Invocation) -> FailureRecord {
    inv.failure.clone().unwrap_or_else(|| Stop::Pause.failure())
}

/// Cancels invocation `id`: recorded in storage first (so it survives a restart and reaches
/// another host), then told to its task in this process; a paused one runs again, here, to be
/// told. Its handler learns of it at its next check and ends `cancelled` after compensating.
pub async fn cancel(runtime: &Arc<Runtime>, id: &str) -> Result<(), ControlError> {
    let Some(inv) = runtime.storage.invocation(id).await? else {
        return Err(ControlError::NotFound(id.to_string()));
    };
    if !StatusChange::Cancel.applies_to(inv.status) {
        return Err(refused(id, inv.status, "cancel"));
    }
    changed(
        id,
        runtime
            .storage
            .change_status(id, &StatusChange::Cancel)
            .await?,
        "cancel",
    )?;
    tracing::info!(invocation = %id, "cancelled by the operator");
    if let Some(handle) = runtime.controls.get(id) {
        handle.cancel();
    } else if inv.status == InvocationStatus::Paused
        && let Some(resumed) = runtime.storage.invocation(id).await?
    {
        super::start::spawn(runtime, resumed);
    }
    Ok(())
}

/// Ends the backoff of invocation `id` so its next attempt starts now.
pub async fn retry_now(runtime: &Runtime, id: &str) -> Result<(), ControlError> {
    if let Some(handle) = runtime.controls.get(id)
        && handle
            .backoff_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    {
        handle.retry_now.notify_one();
        return Ok(());
    }
    match runtime.storage.invocation(id).await? {
        None => Err(ControlError::NotFound(id.to_string())),
        Some(inv) if inv.status == InvocationStatus::Running => Err(ControlError::Invalid(
            format!("invocation {id} is not waiting to retry on this host"),
        )),
        Some(inv) => Err(refused(id, inv.status, "retry")),
    }
}

/// Resumes paused invocation `id`, on `deployment` when given (another deployment of its
/// service, with its handler), and runs it in this process.
pub async fn resume(
    runtime: &Arc<Runtime>,
    id: &str,
    deployment: Option<String>,
) -> Result<Invocation, ControlError> {
    let Some(inv) = runtime.storage.invocation(id).await? else {
        return Err(ControlError::NotFound(id.to_string()));
    };
    if inv.status != InvocationStatus::Paused {
        return Err(refused(id, inv.status, "resume"));
    }
    if let Some(to) = &deployment {
        check_service_deployment(runtime, &inv, to)?;
    }
    let change = StatusChange::Resume { deployment };
    changed(
        id,
        runtime.storage.change_status(id, &change).await?,
        "resume",
    )?;
    let Some(resumed) = runtime.storage.invocation(id).await? else {
        return Err(ControlError::NotFound(id.to_string()));
    };
    tracing::info!(invocation = %id, deployment = %resumed.deployment_id, "resumed by the operator");
    super::start::spawn(runtime, resumed.clone());
    Ok(resumed)
}

/// `to` is a deployment of `inv`'s service with its handler.
fn check_service_deployment(
    runtime: &Runtime,
    inv: &Invocation,
    to: &str,
) -> Result<(), ControlError> {
    let registry = runtime.registry();
    let Some(deployment) = registry.deployments.get(to) else {
        return Err(ControlError::Invalid(format!("no deployment {to:?}")));
    };
    let super::DeploymentKind::Service(info) = &deployment.kind else {
        return Err(ControlError::Invalid(format!(
            "deployment {to} is a provider, not a deployment of {}",
            inv.service
        )));
    };
    if info.name != inv.service {
        return Err(ControlError::Invalid(format!(
            "deployment {to} is of service {}, not {}",
            info.name, inv.service
        )));
    }
    if !info.handlers.iter().any(|h| h.name == inv.handler) {
        return Err(ControlError::Invalid(format!(
            "deployment {to} of {} has no handler {:?}",
            inv.service, inv.handler
        )));
    }
    Ok(())
}

/// Deletes finished invocation `id` (its journal, output, promises and idempotency keys).
pub async fn purge(runtime: &Runtime, id: &str) -> Result<(), ControlError> {
    let result = runtime
        .storage
        .change_status(id, &StatusChange::Purge)
        .await?;
    changed(id, result, "purge")
}
