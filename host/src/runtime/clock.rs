//! Deterministic WASI clocks for services: a replayed guest reads exactly the times it read the
//! first time (invariant 6). Wall time starts at the invocation's creation time and both clocks
//! advance one microsecond per reading, so time still moves forward between two readings.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// Readings taken so far, shared by the wall and the monotonic clock of one store.
#[derive(Clone, Default)]
pub struct Ticks(Arc<AtomicU64>);

impl Ticks {
    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

pub struct ReplayWallClock {
    pub start: Duration,
    pub ticks: Ticks,
}

impl HostWallClock for ReplayWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        self.start + Duration::from_micros(self.ticks.next())
    }
}

pub struct ReplayMonotonicClock {
    pub ticks: Ticks,
}

impl HostMonotonicClock for ReplayMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.ticks.next() * 1_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_reproducible_and_increasing() {
        let read = || {
            let ticks = Ticks::default();
            let wall = ReplayWallClock {
                start: Duration::from_millis(1_700_000_000_000),
                ticks: ticks.clone(),
            };
            let mono = ReplayMonotonicClock { ticks };
            vec![
                wall.now().as_nanos() as u64,
                mono.now(),
                wall.now().as_nanos() as u64,
            ]
        };
        let first = read();
        assert_eq!(first, read());
        assert!(first[2] > first[0]);
    }
}
