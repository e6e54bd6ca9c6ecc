//! Knobs with sensible defaults: how often to retry, and how to upload.

use std::time::{Duration, SystemTime};

/// How transient faults are retried: at most `max_attempts` tries of one operation (a
/// request, or a blob transfer without progress), waiting `initial_backoff`, then twice
/// as long each time up to `max_backoff` (a `Retry-After` from the registry is honoured
/// up to `max_backoff`), with up to a quarter of random jitter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries of one operation before giving up (1: no retry). Default 5.
    pub max_attempts: u32,
    /// The pause after the first failure. Default 200 ms.
    pub initial_backoff: Duration,
    /// The longest pause. Default 10 s.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The pause before the next try, after `failures` failed ones (1 or more).
    pub(crate) fn backoff(&self, failures: u32, hint: Option<Duration>) -> Duration {
        let exp = failures.saturating_sub(1).min(16);
        let base = self
            .initial_backoff
            .saturating_mul(1 << exp)
            .max(hint.unwrap_or_default())
            .min(self.max_backoff);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }
}

/// How blobs are uploaded: blobs up to `monolithic_max` bytes go in one `PUT`; larger
/// ones in `PATCH` chunks of `chunk_size` bytes (or the registry's
/// `OCI-Chunk-Min-Length`, if larger), so that a dropped connection costs at most one
/// chunk when the registry can resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadPolicy {
    /// The largest blob sent in one `PUT`. Default 32 MiB.
    pub monolithic_max: u64,
    /// The size of each `PATCH` chunk of a larger blob. Default 32 MiB.
    pub chunk_size: u64,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy {
            monolithic_max: 32 << 20,
            chunk_size: 32 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_honours_hints_and_caps() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        let within = |d: Duration, lo: u64| {
            d >= Duration::from_millis(lo) && d <= Duration::from_millis(lo + lo / 4)
        };
        assert!(within(p.backoff(1, None), 100));
        assert!(within(p.backoff(3, None), 400));
        assert!(within(p.backoff(30, None), 1000));
        assert!(within(p.backoff(1, Some(Duration::from_millis(700))), 700));
        assert!(within(p.backoff(1, Some(Duration::from_secs(60))), 1000));
    }
}
