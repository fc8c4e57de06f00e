//! Starting Cairn: storage, runtime, deployments, recovery of unfinished invocations, and the
//! two HTTP listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ServerConfig;
use crate::http_api::{admin, ingress};
use crate::runtime::{Runtime, deploy_bundled, invoke, restore};

/// A running server.
pub struct Server {
    pub ingress_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub runtime: Arc<Runtime>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Stops accepting requests and waits for the listeners to close.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
    let storage = crate::storage::open(&config.database_url)
        .await
        .with_context(|| format!("opening {}", config.database_url))?;
    let runtime = Runtime::new(storage, config.runtime.clone())?;

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

    let unfinished = runtime.storage.unfinished_invocations().await?;
    if !unfinished.is_empty() {
        tracing::info!(count = unfinished.len(), "resuming unfinished invocations");
    }
    for invocation in unfinished {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            invoke(&runtime, invocation).await;
        });
    }

    let (stop, stopped) = watch::channel(false);
    let ingress_listener = TcpListener::bind(config.ingress_addr)
        .await
        .with_context(|| format!("binding ingress on {}", config.ingress_addr))?;
    let admin_listener = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("binding admin on {}", config.admin_addr))?;
    let ingress_addr = ingress_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let tasks = vec![
        serve(
            ingress_listener,
            ingress::router(runtime.clone(), config.ingress.clone()),
            stopped.clone(),
        ),
        serve(admin_listener, admin::router(runtime.clone()), stopped),
    ];
    tracing::info!(%ingress_addr, %admin_addr, "cairn is listening");
    Ok(Server {
        ingress_addr,
        admin_addr,
        runtime,
        stop,
        tasks,
    })
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
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "listener failed");
        }
    })
}
