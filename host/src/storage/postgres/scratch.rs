//! A database of its own on a PostgreSQL server, for tests and the bench: created fresh, dropped
//! when done.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// The server tests use unless `CAIRN_TEST_POSTGRES` names another (any database on it: the
/// scratch databases are created beside it).
const DEFAULT_TEST_SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh, empty database; dropped, with any connection still open to it, on drop.
pub struct ScratchDatabase {
    /// The `postgres://` URL of the new database.
    pub url: String,
    server: PgConnectOptions,
    name: String,
}

impl ScratchDatabase {
    /// On the server named by `CAIRN_TEST_POSTGRES`, else the local one (`DEFAULT_TEST_SERVER`).
    pub async fn create() -> anyhow::Result<ScratchDatabase> {
        let server_url =
            std::env::var("CAIRN_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_TEST_SERVER.into());
        Self::create_on(&server_url).await
    }

    /// On the server `server_url` points at (any database of it).
    pub async fn create_on(server_url: &str) -> anyhow::Result<ScratchDatabase> {
        let server = PgConnectOptions::from_str(server_url)?;
        let name = format!("cairn_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = server.connect().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach PostgreSQL at {server_url} ({e}): is it running? (tests: set \
                 CAIRN_TEST_POSTGRES to another server)"
            )
        })?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let url = server.clone().database(&name).to_url_lossy().to_string();
        Ok(ScratchDatabase { url, server, name })
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run inside a runtime, which cannot block on another: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = server.connect().await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop scratch database {}", self.name);
        }
    }
}
