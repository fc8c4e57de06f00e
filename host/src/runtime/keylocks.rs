//! One exclusive invocation at a time per (service, key), in arrival order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub struct KeyLocks {
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl KeyLocks {
    /// Waits for the key's turn. Tokio's mutex is fair, so waiters are served in arrival order.
    pub async fn lock(&self, service: &str, key: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            let name = format!("{service}/{key}");
            match locks.get(&name).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    if locks.len() > 1024 {
                        locks.retain(|_, weak| weak.strong_count() > 0);
                    }
                    let lock = Arc::new(AsyncMutex::new(()));
                    locks.insert(name, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_key_is_exclusive_other_keys_are_not() {
        let locks = KeyLocks::default();
        let first = locks.lock("S", "a").await;
        // Another key proceeds at once.
        let _other = locks.lock("S", "b").await;
        // The same key waits.
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("S", "a"));
        assert!(waiting.await.is_err());
        drop(first);
        let _again = locks.lock("S", "a").await;
    }
}
