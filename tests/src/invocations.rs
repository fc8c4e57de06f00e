//! Following one invocation through the admin API: started with a `/send`, watched until its
//! admin view shows what a test waits for.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Cairn, Options};

impl Cairn {
    /// A host with the test services `Steps` (under retry policy `steps_retry`) and `Relay`
    /// deployed; also the id of `Steps`' deployment.
    pub async fn with_steps_and_relay(steps_retry: &str) -> (Cairn, String) {
        let cairn = Cairn::start_opts(Options {
            service_retry: vec![("Steps".into(), steps_retry.into())],
            ..Options::default()
        })
        .await;
        let steps = cairn.deploy_steps_and_relay().await;
        (cairn, steps)
    }

    /// Deploys `Steps` and `Relay`; the id of `Steps`' deployment.
    pub async fn deploy_steps_and_relay(&self) -> String {
        let mut ids = Vec::new();
        for path in [test_artifacts::STEPS_SERVICE, test_artifacts::RELAY_SERVICE] {
            let deployed = self.deploy_file(path, None).await;
            assert_eq!(deployed.status, 201, "{:?}", deployed.body);
            ids.push(deployed.body["id"].as_str().unwrap().to_string());
        }
        ids.swap_remove(0)
    }

    /// `Relay` object `key` (exclusive) calls `Steps`, which sleeps a minute, so Relay holds
    /// its key meanwhile: the ids of Relay's invocation and of its callee, once it is asleep.
    pub async fn relay_calling_a_sleeper(&self, key: &str) -> (String, String) {
        let call = json!({
            "target": {"service": "Steps", "handler": "Run"},
            "input": {"steps": 3, "sleepMs": 60_000},
        });
        let relay = self.send(&format!("/Relay/{key}/Call"), &call).await;
        let inv = self
            .invocation_when(&relay, "calling", |inv| {
                inv["journal"][0]["name"] == "call Steps/Run"
            })
            .await;
        let callee = inv["journal"][0]["result"]["Ok"]
            .as_str()
            .unwrap()
            .to_string();
        self.invocation_when(&callee, "asleep", sleeping).await;
        (relay, callee)
    }

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
