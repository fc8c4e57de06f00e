//! Sandbox limits of a deployment: what an operator may set per deployment (`limits` on
//! `POST /deployments`), the host defaults that fill the gaps, the error a guest that hits one
//! traps with, and how a trap is described to an operator ("cpu time limit (10s) exceeded").

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The wasm stack limit of every store (an engine-wide setting, not per deployment).
pub const MAX_WASM_STACK: usize = 1 << 20;

/// Host defaults (`cairn serve` can change the memory default with `--memory-limit-mb`).
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;
pub const DEFAULT_CPU_LIMIT: Duration = Duration::from_secs(10);
pub const DEFAULT_WALL_LIMIT: Duration = Duration::from_secs(30);

/// Invocations running at once per core of the machine, by default (`CAIRN_MAX_RUNNING`). Each
/// holds its instances (linear memory, a fiber stack) while it runs, waits for a provider
/// included; past what the cores can keep busy, more running at once only adds page faults and
/// cache misses to every order (`docs/benchmarks.md`, round of issue 17), while the others wait
/// holding nothing. A host whose providers answer slowly needs more: an order waiting `L`
/// seconds on its providers caps the host at `max_running / L` orders per second.
pub const MAX_RUNNING_PER_CORE: usize = 64;

/// The default of `CAIRN_MAX_RUNNING`: [`MAX_RUNNING_PER_CORE`] per core.
pub fn default_max_running() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    MAX_RUNNING_PER_CORE * cores
}

/// Bounds an operator may choose within.
const MEMORY_MIB: RangeInclusive<u64> = 1..=1024;
/// The largest linear memory any deployment may be given, in bytes.
pub const MAX_MEMORY_BYTES: usize = 1024 << 20;
const CPU_MS: RangeInclusive<u64> = 10..=600_000;
const WALL_MS: RangeInclusive<u64> = 10..=3_600_000;

/// Limits as given for one deployment; an absent field takes the host default. Stored with the
/// deployment as JSON (`{"memoryMib": 16, "cpuMs": 1000}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Linear memory of one store (all its memories together), in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Guest execution time of one call (a provider call, or one attempt of an invocation), in
    /// milliseconds. Time the guest spends waiting on a host call does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    /// Wall-clock time of one call (a provider call, or one attempt of an invocation), in
    /// milliseconds, waits included: a guest blocked in a WASI sleep or poll, or on a slow
    /// request, is stopped at it. (Durable sleeps, promises and calls to services suspend the
    /// invocation and do not count.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
}

impl Limits {
    /// Checks each given limit is within what the host allows.
    pub fn validate(&self) -> Result<(), String> {
        within("memoryMib", self.memory_mib, &MEMORY_MIB)?;
        within("cpuMs", self.cpu_ms, &CPU_MS)?;
        within("wallMs", self.wall_ms, &WALL_MS)
    }

    /// These limits with the host defaults filling what is not given.
    pub fn resolve(&self, defaults: Effective) -> Effective {
        Effective {
            memory_bytes: self
                .memory_mib
                .map_or(defaults.memory_bytes, |mib| (mib as usize) << 20),
            cpu: self.cpu_ms.map_or(defaults.cpu, Duration::from_millis),
            wall: self.wall_ms.map_or(defaults.wall, Duration::from_millis),
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Limits::default()
    }
}

/// `Err` naming the limit when it is given and outside `range`.
fn within(name: &str, value: Option<u64>, range: &RangeInclusive<u64>) -> Result<(), String> {
    match value {
        Some(v) if !range.contains(&v) => Err(format!(
            "limits.{name} must be between {} and {}, got {v}",
            range.start(),
            range.end()
        )),
        _ => Ok(()),
    }
}

/// The limits a store runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Effective {
    pub memory_bytes: usize,
    #[serde(serialize_with = "as_millis")]
    pub cpu: Duration,
    #[serde(serialize_with = "as_millis")]
    pub wall: Duration,
}

impl Effective {
    /// The host's defaults when nothing else is set.
    pub const DEFAULT: Effective = Effective {
        memory_bytes: DEFAULT_MEMORY_LIMIT,
        cpu: DEFAULT_CPU_LIMIT,
        wall: DEFAULT_WALL_LIMIT,
    };
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// A limit a guest hit: the trap that ends its call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitError {
    #[error("cpu time limit ({}) exceeded", Seconds(*limit))]
    Cpu { limit: Duration },
    #[error("memory limit ({} MiB) exceeded: the guest asked for {} MiB", limit >> 20, wanted.div_ceil(1 << 20))]
    Memory { limit: usize, wanted: usize },
    #[error("wall-clock limit ({}) exceeded: the call was stopped", Seconds(*limit))]
    Wall { limit: Duration },
    #[error("host-wide instance memory ({} MiB) exhausted: too many instances hold memory at once", limit >> 20)]
    HostMemory { limit: usize },
    #[error("{what} limit ({limit}) exceeded")]
    Resource { what: &'static str, limit: usize },
}

/// A duration as an operator writes it: `10s`, `1.5s`, `250ms`.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms < 1000 {
            write!(f, "{ms}ms")
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{}s", self.0.as_secs_f64())
        }
    }
}

/// What ended a guest call, for an operator: the limit it hit when it hit one, else the trap and
/// the function it happened in, else the error with its causes.
pub fn describe_trap(e: &wasmtime::Error) -> String {
    if let Some(limit) = e.downcast_ref::<LimitError>() {
        return limit.to_string();
    }
    let frames = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map_or(&[][..], |b| b.frames());
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => format!(
            "stack overflow: wasm stack limit ({} KiB) exceeded",
            MAX_WASM_STACK >> 10
        ),
        // A guest compiled from C or Rust keeps a stack of its own at the bottom of its linear
        // memory; recursing past it faults below address 0.
        Some(wasmtime::Trap::MemoryOutOfBounds) if runaway_recursion(frames) => {
            "stack overflow: the guest's own stack (in its linear memory) ran out in a runaway \
             recursion (wasm trap: out of bounds memory access)"
                .to_string()
        }
        Some(wasmtime::Trap::Interrupt) => "cpu time limit exceeded (interrupted)".to_string(),
        Some(trap) => match frames.first() {
            Some(frame) => format!(
                "{trap} in {}",
                frame.func_name().map_or_else(
                    || format!("wasm function {}", frame.func_index()),
                    str::to_string
                )
            ),
            None => trap.to_string(),
        },
        None => format!("{e:#}"),
    }
}

/// The innermost frames of a full backtrace are one or two functions calling each other.
fn runaway_recursion(frames: &[wasmtime::FrameInfo]) -> bool {
    let mut functions: Vec<u32> = frames.iter().map(|f| f.func_index()).collect();
    functions.sort_unstable();
    functions.dedup();
    frames.len() >= 16 && functions.len() <= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_validate_and_resolve() {
        let limits: Limits = serde_json::from_str(r#"{"memoryMib": 16, "cpuMs": 1000}"#).unwrap();
        assert_eq!(limits.validate(), Ok(()));
        let effective = limits.resolve(Effective::DEFAULT);
        assert_eq!(effective.memory_bytes, 16 << 20);
        assert_eq!(effective.cpu, Duration::from_secs(1));
        let defaults = Limits::default().resolve(Effective::DEFAULT);
        assert_eq!(defaults.memory_bytes, 64 << 20);
        assert_eq!(defaults.cpu, Duration::from_secs(10));
        assert_eq!(defaults.wall, Duration::from_secs(30));
        let wall: Limits = serde_json::from_str(r#"{"wallMs": 100}"#).unwrap();
        assert_eq!(
            wall.resolve(Effective::DEFAULT).wall,
            Duration::from_millis(100)
        );
        assert!(
            Limits {
                wall_ms: Some(0),
                ..Limits::default()
            }
            .validate()
            .unwrap_err()
            .contains("wallMs")
        );
        assert!(
            serde_json::from_str::<Limits>(r#"{"fuel": 1}"#)
                .unwrap_err()
                .to_string()
                .contains("fuel")
        );
        let zero = Limits {
            memory_mib: Some(0),
            ..Limits::default()
        };
        assert!(zero.validate().unwrap_err().contains("memoryMib"));
        let huge = Limits {
            cpu_ms: Some(u64::MAX),
            ..Limits::default()
        };
        assert!(huge.validate().unwrap_err().contains("cpuMs"));
        assert_eq!(
            serde_json::to_string(&Limits {
                cpu_ms: Some(5),
                ..Limits::default()
            })
            .unwrap(),
            r#"{"cpuMs":5}"#
        );
    }

    #[test]
    fn limit_errors_name_the_limit() {
        let cpu = LimitError::Cpu {
            limit: Duration::from_secs(10),
        };
        assert_eq!(cpu.to_string(), "cpu time limit (10s) exceeded");
        let cpu = LimitError::Cpu {
            limit: Duration::from_millis(1500),
        };
        assert_eq!(cpu.to_string(), "cpu time limit (1.5s) exceeded");
        let memory = LimitError::Memory {
            limit: 64 << 20,
            wanted: (64 << 20) + 1,
        };
        assert!(
            memory
                .to_string()
                .starts_with("memory limit (64 MiB) exceeded"),
            "{memory}"
        );
        let trap = wasmtime::Error::new(cpu).context("error while executing");
        assert_eq!(describe_trap(&trap), "cpu time limit (1.5s) exceeded");
        let overflow = wasmtime::Error::new(wasmtime::Trap::StackOverflow);
        assert!(describe_trap(&overflow).starts_with("stack overflow"));
    }
}
