//! Retry policies: exponential backoff with jitter, how many attempts, and what an invocation
//! whose attempts ran out becomes (`CAIRN_RETRY`, `--service-retry`).

use std::time::Duration;

/// Exponential backoff with jitter for retryable failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub initial_delay: Duration,
    pub factor: f64,
    pub max_delay: Duration,
    /// Attempts in all, the first included (since the invocation was last resumed).
    pub max_attempts: u32,
    /// What an invocation whose attempts ran out on a retryable failure becomes.
    pub on_max_attempts: OnMaxAttempts,
}

/// What an invocation whose attempts ran out becomes: failed, or paused for an operator to
/// resume (perhaps on a fixed deployment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMaxAttempts {
    Fail,
    Pause,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(100),
            factor: 2.0,
            max_delay: Duration::from_secs(10),
            max_attempts: 5,
            on_max_attempts: OnMaxAttempts::Fail,
        }
    }
}

impl RetryPolicy {
    /// This policy with the settings in `spec` changed, e.g.
    /// `initial=100ms,factor=2,max-delay=10s,max-attempts=5,on-max-attempts=pause` (durations
    /// in ms, s or m).
    pub fn with(&self, spec: &str) -> Result<RetryPolicy, String> {
        let mut policy = self.clone();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected name=value"))?;
            let value = value.trim();
            match name.trim() {
                "initial" => policy.initial_delay = parse_duration(value)?,
                "max-delay" => policy.max_delay = parse_duration(value)?,
                "factor" => {
                    policy.factor = value
                        .parse::<f64>()
                        .ok()
                        .filter(|f| *f >= 1.0)
                        .ok_or_else(|| format!("factor {value:?}: expected a number >= 1"))?;
                }
                "max-attempts" => {
                    policy.max_attempts = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| {
                            format!("max-attempts {value:?}: expected a whole number >= 1")
                        })?;
                }
                "on-max-attempts" => {
                    policy.on_max_attempts = match value {
                        "fail" => OnMaxAttempts::Fail,
                        "pause" => OnMaxAttempts::Pause,
                        _ => return Err(format!("on-max-attempts {value:?}: pause or fail")),
                    };
                }
                other => {
                    return Err(format!(
                        "unknown retry setting {other:?} (initial, factor, max-delay, \
                         max-attempts, on-max-attempts)"
                    ));
                }
            }
        }
        Ok(policy)
    }

    /// Delay before attempt `attempt + 1`, with ±25 % jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base =
            self.initial_delay.as_secs_f64() * self.factor.powi(attempt.saturating_sub(1) as i32);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jitter: f64 = rand::random_range(0.75..=1.25);
        Duration::from_secs_f64(capped * jitter)
    }
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{value:?}: add a unit (ms, s or m)"))?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{value:?}: expected a number with a unit (ms, s or m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("{value:?}: unknown unit {unit:?} (ms, s or m)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_specs_override_what_they_name() {
        let base = RetryPolicy::default();
        let p = base
            .with("initial=50ms, max-attempts=3, max-delay=2s, factor=1.5")
            .unwrap();
        assert_eq!(p.initial_delay, Duration::from_millis(50));
        assert_eq!(p.max_attempts, 3);
        assert_eq!(p.max_delay, Duration::from_secs(2));
        assert_eq!(p.factor, 1.5);
        assert_eq!(base.with("").unwrap().max_attempts, base.max_attempts);
        assert!(base.with("max-attempts=0").is_err());
        assert!(base.with("initial=5").unwrap_err().contains("unit"));
        assert!(base.with("colour=red").unwrap_err().contains("unknown"));
        assert_eq!(base.on_max_attempts, OnMaxAttempts::Fail);
        let pausing = base.with("on-max-attempts=pause").unwrap();
        assert_eq!(pausing.on_max_attempts, OnMaxAttempts::Pause);
        assert!(base.with("on-max-attempts=later").is_err());
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy::default()
            .with("initial=100ms,factor=2,max-delay=300ms")
            .unwrap();
        assert!(p.delay(1) <= Duration::from_millis(125));
        assert!(p.delay(2) >= Duration::from_millis(150));
        assert!(p.delay(10) <= Duration::from_millis(375));
    }
}
