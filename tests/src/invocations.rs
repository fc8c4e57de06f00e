//! Following one invocation through the admin API: started with a `/send`, watched until its
//! admin view shows what a test waits for.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Cairn;

impl Cairn {
    /// Sends `input` to `path` (a `/send`): the invocation id.
    pub async fn send(&self, path: &str, input: &Value) -> String {
        let reply = self.post(&format!("{path}/send"), input).await;
        assert_eq!(reply.status, 202, "{:?}", reply.body);
        reply.invocation_id.expect("invocation id")
    }

    /// The admin view of invocation `id` once `check` holds for it (within 20 s; `what` names
    /// the wait in the failure).
    pub async fn invocation_when(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let inv = self.admin_get(&format!("/invocations/{id}")).await.body;
            if check(&inv) {
                return inv;
            }
            assert!(Instant::now() < deadline, "never {what}: {inv}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An invocation asleep in a durable timer.
pub fn sleeping(inv: &Value) -> bool {
    inv["sleepingUntil"].is_i64()
}
