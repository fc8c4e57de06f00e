//! The data of every wasmtime store the host creates: WASI context, limits, and what this
//! instance is (a service invocation or a provider call).

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::Runtime;
use super::clock::{ReplayMonotonicClock, ReplayWallClock, Ticks};
use super::guest_output::GuestOutput;
use super::limits::Limits;
use super::sandbox::Sandbox;
use crate::bindings::context;
use crate::journal::{Journal, JournalError};
use crate::outbound::Policy;

/// Data of one store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory cap and CPU budget of this store (set by [`Runtime::new_store`]).
    pub(crate) limits: Sandbox,
    /// Deployment id of the component in this store (used to tag its logs).
    pub(crate) component: Arc<str>,
    pub(crate) role: Role,
    /// Bytes this store logged through `cairn:durable/log` (bounded, see
    /// [`crate::capabilities::log`]).
    pub(crate) logged: usize,
}

/// What the instance in a store is doing.
pub enum Role {
    /// Serving an invocation: imports are journaled.
    Service(Box<ServiceCtx>),
    /// Serving one provider call on behalf of an invocation.
    Provider(Box<ProviderCtx>),
    /// Answering `describe` at deployment time: no capability is available.
    Describe,
}

pub struct ServiceCtx {
    pub info: context::Invocation,
    pub journal: Journal,
    /// Whether this handler may write state (exclusive handlers of keyed objects).
    pub may_write_state: bool,
    /// Interface (with version) → the deployment implementing it, pinned on the invocation.
    pub providers: BTreeMap<String, String>,
    pub policy: Arc<Policy>,
    pub runtime: Arc<Runtime>,
}

pub struct ProviderCtx {
    pub idempotency_key: String,
    pub config: Arc<BTreeMap<String, String>>,
    pub policy: Arc<Policy>,
    pub runtime: Arc<Runtime>,
    /// The provider's HTTP exchanges during this call, shown under the journal entry.
    /// Each as JSON text (see [`crate::outbound::Outbound::send`]).
    pub exchanges: Vec<String>,
    /// The request being sent now, recorded unanswered if the call is stopped meanwhile.
    pub in_flight: Option<crate::bindings::http::Request>,
    /// While an in-doubt call is looked up: the earliest time (Unix ms) it may have started.
    pub in_doubt_since: Option<i64>,
}

impl HostState {
    /// `clock_start_ms`: for services, the invocation's creation time, which makes WASI clocks
    /// replay deterministically; `None` (providers, whose calls are journaled as a whole) gives
    /// the real clocks. `memory_limit` is a placeholder: [`Runtime::new_store`] applies the
    /// deployment's limits.
    pub fn new(
        component: Arc<str>,
        role: Role,
        memory_limit: usize,
        seed: [u8; 32],
        clock_start_ms: Option<i64>,
    ) -> Self {
        use rand::SeedableRng;
        // Deterministic randomness: seeded per invocation, so a replayed guest sees the same
        // bytes (invariant 6). No env, args, preopens or sockets: the guest gets nothing else.
        // stdout and stderr go to the host's logs, tagged with the component.
        let mut builder = WasiCtx::builder();
        builder
            .stdout(GuestOutput::new(component.clone(), "stdout"))
            .stderr(GuestOutput::new(component.clone(), "stderr"))
            .secure_random(rand::rngs::StdRng::from_seed(seed))
            .insecure_random(rand::rngs::StdRng::from_seed(seed.map(|b| !b)))
            .insecure_random_seed(u128::from_le_bytes(
                seed[..16].try_into().unwrap_or_default(),
            ))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(start_ms) = clock_start_ms {
            let ticks = Ticks::default();
            builder
                .wall_clock(ReplayWallClock {
                    start: std::time::Duration::from_millis(start_ms.max(0) as u64),
                    ticks: ticks.clone(),
                })
                .monotonic_clock(ReplayMonotonicClock { ticks });
        }
        let wasi = builder.build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits: Sandbox::new(Limits::default().resolve(super::limits::Effective {
                memory_bytes: memory_limit,
                ..super::limits::Effective::DEFAULT
            })),
            component,
            role,
            logged: 0,
        }
    }

    /// The service context, or a trap naming the capability a non-service tried to use.
    pub(crate) fn service(&mut self, capability: &str) -> wasmtime::Result<&mut ServiceCtx> {
        match &mut self.role {
            Role::Service(ctx) => Ok(ctx),
            _ => Err(misuse(format!(
                "{capability} is only available to services serving an invocation"
            ))),
        }
    }

    pub(crate) fn provider(&mut self, capability: &str) -> wasmtime::Result<&mut ProviderCtx> {
        match &mut self.role {
            Role::Provider(ctx) => Ok(ctx),
            _ => Err(misuse(format!(
                "{capability} is only available to provider components during a call"
            ))),
        }
    }
}

/// A host-side failure as a trap the invoker can classify (downcast to [`JournalError`]).
pub(crate) fn trap(e: JournalError) -> wasmtime::Error {
    wasmtime::Error::new(e)
}

pub(crate) fn misuse(message: String) -> wasmtime::Error {
    trap(JournalError::Misuse(message))
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
