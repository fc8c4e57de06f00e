//! Prometheus metrics of one host, scraped at `GET /metrics` on the admin port (OpenMetrics
//! text, [`prometheus_client`]): invocations ended by service and status, attempts and retries,
//! provider call latency by interface and outcome, the journal's flushes (latency and batch
//! size, from the storage), and gauges read at scrape time: attempts running, invocations
//! waiting (asleep, on a promise or callee, in backoff), the storage writer's queue.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::storage::InvocationStatus;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Ended {
    service: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Service {
    service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderCall {
    interface: String,
    function: String,
    outcome: &'static str,
}

/// How a provider call ended, for its latency's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    /// The provider's error (declined, unavailable...), or a refusal.
    Error,
    /// It trapped or ran out of time.
    Trap,
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Error => "error",
            CallOutcome::Trap => "trap",
        }
    }
}

fn latency_buckets() -> Histogram {
    // 0.1 ms to ~13 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

/// Journal flushes as the storage makes them: each commit's latency and how many writes it
/// carried. Made by the storage, registered by [`Metrics::new`].
#[derive(Debug, Clone)]
pub struct FlushStats {
    pub seconds: Histogram,
    pub batch: Histogram,
    /// Writes waiting for the storage's writer.
    pub queued: Gauge,
}

impl Default for FlushStats {
    fn default() -> Self {
        FlushStats {
            seconds: latency_buckets(),
            batch: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            queued: Gauge::default(),
        }
    }
}

impl FlushStats {
    pub fn observe(&self, took: Duration, writes: usize) {
        self.seconds.observe(took.as_secs_f64());
        self.batch.observe(writes as f64);
    }
}

/// The host's metrics.
pub struct Metrics {
    registry: Registry,
    ended: Family<Ended, Counter>,
    attempts: Family<Service, Counter>,
    retries: Family<Service, Counter>,
    provider_calls: Family<ProviderCall, Histogram>,
    running: Gauge,
    waiting: Gauge,
}

impl Metrics {
    /// Registers every metric, the storage's `flush` among them.
    pub fn new(flush: FlushStats) -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("cairn"),
            ended: Family::default(),
            attempts: Family::default(),
            retries: Family::default(),
            provider_calls: Family::new_with_constructor(latency_buckets),
            running: Gauge::default(),
            waiting: Gauge::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "invocations_ended",
            "Invocations that ended, by service and status (succeeded, failed, paused)",
            metrics.ended.clone(),
        );
        registry.register(
            "attempts",
            "Invocation attempts started, by service",
            metrics.attempts.clone(),
        );
        registry.register(
            "retries",
            "Attempts that failed retryably and were retried, by service",
            metrics.retries.clone(),
        );
        registry.register(
            "provider_call_seconds",
            "Latency of calls into provider components, by interface and outcome (ok, error, trap)",
            metrics.provider_calls.clone(),
        );
        registry.register(
            "journal_flush_seconds",
            "Latency of one journal commit",
            flush.seconds,
        );
        registry.register(
            "journal_flush_writes",
            "Writes committed together in one journal commit",
            flush.batch,
        );
        registry.register(
            "storage_writes_queued",
            "Writes waiting for the storage's writer",
            flush.queued,
        );
        registry.register(
            "attempts_running",
            "Invocation attempts running now, each holding a component instance",
            metrics.running.clone(),
        );
        registry.register(
            "invocations_waiting",
            "Invocations of this host waiting without an instance: asleep, on a promise or a \
             callee, for a delayed start or in a retry's backoff",
            metrics.waiting.clone(),
        );
        metrics
    }

    pub fn ended(&self, service: &str, status: InvocationStatus) {
        self.ended
            .get_or_create(&Ended {
                service: service.to_string(),
                status: status.as_str(),
            })
            .inc();
    }

    pub fn attempt(&self, service: &str) {
        self.attempts
            .get_or_create(&Service {
                service: service.to_string(),
            })
            .inc();
    }

    pub fn retry(&self, service: &str) {
        self.retries
            .get_or_create(&Service {
                service: service.to_string(),
            })
            .inc();
    }

    /// A call of `name` (`interface.function`, the journal's name) that took `took`.
    pub fn provider_call(&self, name: &str, outcome: CallOutcome, took: Duration) {
        let (interface, function) = name.rsplit_once('.').unwrap_or((name, ""));
        self.provider_calls
            .get_or_create(&ProviderCall {
                interface: interface.to_string(),
                function: function.to_string(),
                outcome: outcome.as_str(),
            })
            .observe(took.as_secs_f64());
    }

    /// The OpenMetrics text, with the gauges set to `running` and `waiting` now.
    pub fn render(&self, running: usize, waiting: usize) -> String {
        self.running.set(running as i64);
        self.waiting.set(waiting as i64);
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String does not fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_each_metric_with_its_labels() {
        let flush = FlushStats::default();
        let metrics = Metrics::new(flush.clone());
        metrics.ended("Shop", InvocationStatus::Succeeded);
        metrics.ended("Shop", InvocationStatus::Succeeded);
        metrics.attempt("Shop");
        metrics.retry("Shop");
        metrics.provider_call(
            "cairn:commerce/payments.create-charge",
            CallOutcome::Ok,
            Duration::from_millis(3),
        );
        flush.observe(Duration::from_millis(1), 7);
        let text = metrics.render(2, 5);
        for line in [
            r#"cairn_invocations_ended_total{service="Shop",status="succeeded"} 2"#,
            r#"cairn_attempts_total{service="Shop"} 1"#,
            r#"cairn_retries_total{service="Shop"} 1"#,
            r#"cairn_provider_call_seconds_count{interface="cairn:commerce/payments",function="create-charge",outcome="ok"} 1"#,
            "cairn_journal_flush_writes_sum 7.0",
            "cairn_attempts_running 2",
            "cairn_invocations_waiting 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
