//! Wake-ups between hosts by `LISTEN/NOTIFY`: a transaction that ends an invocation, resolves a
//! promise or changes an invocation's status for an operator notifies channel [`CHANNEL`] (sent
//! at its commit), and every host listens on a connection of its own and passes what it hears
//! to its runtime ([`super::super::Notice`]). Polling stays as the backstop: a notice lost while
//! the listener reconnects delays nothing more than one poll.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::storage::Notice;

/// The channel every host listens on.
pub(super) const CHANNEL: &str = notice_channel!();
/// Notices kept for a runtime that is behind (it then misses some, and its polls find them).
const KEPT: usize = 4096;

/// This host's listener; it stops when dropped (with its storage).
pub(super) struct Notices {
    sender: broadcast::Sender<Notice>,
    task: JoinHandle<()>,
}

impl Drop for Notices {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Notices {
    /// Starts listening.
    pub(super) fn start(pool: &PgPool) -> Notices {
        let (sender, _) = broadcast::channel(KEPT);
        let task = tokio::spawn(listen(pool.clone(), sender.clone()));
        Notices { sender, task }
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.sender.subscribe()
    }
}

async fn listen(pool: PgPool, notices: broadcast::Sender<Notice>) {
    loop {
        if pool.is_closed() {
            return;
        }
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "could not listen for other hosts' notices; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "could not listen for other hosts' notices; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // `recv` reconnects by itself after a lost connection (notices sent meanwhile are lost).
        loop {
            match listener.recv().await {
                Ok(notification) => {
                    if let Some(notice) = parse(notification.payload()) {
                        let _ = notices.send(notice);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "listening for other hosts' notices");
                    break;
                }
            }
        }
    }
}

/// A notice's payload: `e:<id>` (ended), `p:<id>` (a promise resolved), `c:<id>` (changed).
fn parse(payload: &str) -> Option<Notice> {
    let (kind, id) = payload.split_once(':')?;
    let id = id.to_string();
    match kind {
        "e" => Some(Notice::Ended(id)),
        "p" => Some(Notice::Resolved(id)),
        "c" => Some(Notice::Changed(id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_what_happened_to_which_id() {
        assert_eq!(parse("e:inv_1"), Some(Notice::Ended("inv_1".into())));
        assert_eq!(parse("p:prm:2"), Some(Notice::Resolved("prm:2".into())));
        assert_eq!(parse("c:inv_3"), Some(Notice::Changed("inv_3".into())));
        assert_eq!(parse("x:inv_4"), None);
        assert_eq!(parse("inv_5"), None);
    }
}
