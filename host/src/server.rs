//! Starting Cairn: storage, runtime, deployments, recovery of unfinished invocations, and the
//! two HTTP listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::ServerConfig;
use crate::http_api::{admin, ingress};
use crate::runtime::start::spawn_holding;
use crate::runtime::{Runtime, deploy_bundled, restore};
use crate::storage::{Invocation, UnfinishedScan};

/// A running server.
pub struct Server {
    pub ingress_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub runtime: Arc<Runtime>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Stops accepting requests, ends the waits of suspended invocations (they resume at the
    /// next start) and waits for the listeners to close.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.runtime.wakes.stop();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
    let storage = crate::storage::open(&config.database_url, &config.storage)
        .await
        .with_context(|| format!("opening {}", config.database_url))?;
    let runtime = Runtime::new(storage, config.runtime.clone()).await?;

    let restored = restore(&runtime).await?;
    for path in &config.components {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading component {}", path.display()))?;
        deploy_bundled(&runtime, bytes)
            .await
            .with_context(|| format!("deploying {}", path.display()))?;
    }
    tracing::info!(
        restored,
        bundled = config.components.len(),
        "deployments ready"
    );

    // The first page is read before the listeners open (a database that cannot be read stops the
    // start); the rest streams in the background as resumed invocations end.
    let mut scan = UnfinishedScan::default();
    let first = runtime
        .storage
        .unfinished_invocations(&mut scan, RESUME_PAGE)
        .await?;
    let (stop, stopped) = watch::channel(false);
    let ingress_listener = TcpListener::bind(config.ingress_addr)
        .await
        .with_context(|| format!("binding ingress on {}", config.ingress_addr))?;
    let admin_listener = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("binding admin on {}", config.admin_addr))?;
    let ingress_addr = ingress_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let mut tasks = Vec::new();
    if runtime.storage.shared() {
        crate::runtime::wakes::follow_notices(&runtime);
        crate::runtime::follow_elsewhere(&runtime);
        let period = config.storage.lease_ttl / 2;
        let taking_over = take_over_unfinished(runtime.clone(), scan, first, period);
        let mut stopping = stopped.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                () = taking_over => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
        }));
    } else if !first.is_empty() {
        tokio::spawn(resume_unfinished(runtime.clone(), scan, first));
    }

    tasks.push(tokio::spawn(purge_finished(
        runtime.clone(),
        config.retention,
        stopped.clone(),
    )));
    tasks.extend([
        serve(
            ingress_listener,
            ingress::router(runtime.clone(), config.ingress.clone()),
            stopped.clone(),
        ),
        serve(
            admin_listener,
            admin::router(runtime.clone(), config.admin.clone(), admin_addr),
            stopped,
        ),
    ]);
    tracing::info!(%ingress_addr, %admin_addr, "cairn is listening");
    Ok(Server {
        ingress_addr,
        admin_addr,
        runtime,
        stop,
        tasks,
    })
}

/// Unfinished invocations read at a time after a restart.
const RESUME_PAGE: u32 = 128;
/// Resumed invocations in flight at once: a restart over many starts the first at once and holds
/// only this many (with their inputs) in memory; the running-instance bound applies inside.
const RESUME_AHEAD: usize = 128;

/// Resumes every invocation an earlier process left running, in creation order, starting with
/// `page` (the scan's first).
async fn resume_unfinished(
    runtime: Arc<Runtime>,
    mut scan: UnfinishedScan,
    mut page: Vec<Invocation>,
) {
    let ahead = Arc::new(Semaphore::new(RESUME_AHEAD));
    let mut resumed = 0usize;
    tracing::info!("resuming unfinished invocations");
    while !page.is_empty() {
        for invocation in page {
            let Ok(slot) = ahead.clone().acquire_owned().await else {
                return;
            };
            // In the trace of the request that created it, as before the restart.
            spawn_holding(&runtime, invocation, slot);
            resumed += 1;
        }
        page = loop {
            match runtime
                .storage
                .unfinished_invocations(&mut scan, RESUME_PAGE)
                .await
            {
                Ok(page) => break page,
                Err(e) => {
                    tracing::error!(error = %e, "reading unfinished invocations; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
    }
    tracing::info!(resumed, "every unfinished invocation is resumed");
}

/// On a storage several hosts share: resumes what this host's earlier process left, then keeps
/// looking, every `period`, for the unfinished invocations of hosts that died (their leases
/// expired) and resumes them here.
async fn take_over_unfinished(
    runtime: Arc<Runtime>,
    scan: UnfinishedScan,
    first: Vec<Invocation>,
    period: std::time::Duration,
) {
    if !first.is_empty() {
        resume_unfinished(runtime.clone(), scan, first).await;
    }
    loop {
        tokio::time::sleep(period).await;
        let mut scan = UnfinishedScan::default();
        match runtime
            .storage
            .unfinished_invocations(&mut scan, RESUME_PAGE)
            .await
        {
            Ok(page) if !page.is_empty() => {
                tracing::warn!(
                    found = page.len(),
                    "taking over the invocations of a host that stopped"
                );
                resume_unfinished(runtime.clone(), scan, page).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "looking for unfinished invocations"),
        }
    }
}

/// Rows purged per transaction: a purge never holds the writer long.
const PURGE_BATCH: u32 = 1000;

/// Every `retention.every`, purges expired idempotency keys and the invocations that finished
/// more than `retention.finished` ago (see [`crate::storage::Storage::purge`]), so the database
/// does not grow without end.
async fn purge_finished(
    runtime: Arc<Runtime>,
    retention: crate::config::Retention,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(retention.every) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let mut total = crate::storage::Purged::default();
        loop {
            let now = crate::storage::now_ms();
            let before = now.saturating_sub(retention.finished.as_millis() as i64);
            match runtime.storage.purge(now, before, PURGE_BATCH).await {
                Ok(purged) => {
                    total.keys += purged.keys;
                    total.invocations += purged.invocations;
                    if purged.keys < u64::from(PURGE_BATCH)
                        && purged.invocations < u64::from(PURGE_BATCH)
                    {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purging finished invocations; retrying later");
                    break;
                }
            }
            if *stopped.borrow() {
                return;
            }
        }
        if total != crate::storage::Purged::default() {
            tracing::info!(
                invocations = total.invocations,
                idempotency_keys = total.keys,
                "purged what outlived its retention"
            );
        }
    }
}

fn serve(
    listener: TcpListener,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        // The peer address reaches the handlers (webhook source allow-lists).
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "listener failed");
        }
    })
}
