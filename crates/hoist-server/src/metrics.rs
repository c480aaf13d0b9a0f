//! Counters for `/metrics` in Prometheus' text format: uploads created, completed, aborted and
//! expired, bytes completed, part URLs signed and the latency of signing batches. Plain atomics;
//! no registry crate, since the set is small and fixed.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the signing latency histogram's buckets.
const SIGN_BUCKETS: [f64; 7] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Uploads created.
    pub created: AtomicU64,
    /// Uploads completed.
    pub completed: AtomicU64,
    /// Uploads aborted by callers.
    pub aborted: AtomicU64,
    /// Uploads aborted by the janitor.
    pub expired: AtomicU64,
    /// Bytes in completed uploads.
    pub bytes_completed: AtomicU64,
    /// Part URLs signed.
    pub urls_signed: AtomicU64,
    sign_buckets: [AtomicU64; SIGN_BUCKETS.len()],
    sign_count: AtomicU64,
    sign_micros: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// Records how long signing one batch took.
    pub fn observe_sign(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (bound, bucket) in SIGN_BUCKETS.iter().zip(&self.sign_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sign_count.fetch_add(1, Ordering::Relaxed);
        self.sign_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (name, help, c) in [
            ("hoist_uploads_created_total", "Multipart uploads created.", &self.created),
            ("hoist_uploads_completed_total", "Uploads completed and verified.", &self.completed),
            ("hoist_uploads_aborted_total", "Uploads aborted by their caller.", &self.aborted),
            (
                "hoist_uploads_expired_total",
                "Uploads aborted by the janitor after their session expired.",
                &self.expired,
            ),
            ("hoist_bytes_completed_total", "Bytes in completed uploads.", &self.bytes_completed),
            ("hoist_part_urls_signed_total", "Pre-signed part URLs handed out.", &self.urls_signed),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", get(c));
        }
        let name = "hoist_sign_batch_seconds";
        let _ = writeln!(out, "# HELP {name} Time to sign one batch of part URLs.\n# TYPE {name} histogram");
        for (bound, bucket) in SIGN_BUCKETS.iter().zip(&self.sign_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", get(bucket));
        }
        let count = get(&self.sign_count);
        #[allow(clippy::cast_precision_loss)]
        let sum = get(&self.sign_micros) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        Metrics::inc(&m.created, 2);
        m.observe_sign(Duration::from_millis(3));
        m.observe_sign(Duration::from_millis(70));
        let text = m.render();
        assert!(text.contains("hoist_uploads_created_total 2\n"), "{text}");
        assert!(text.contains("hoist_sign_batch_seconds_bucket{le=\"0.001\"} 0\n"), "{text}");
        assert!(text.contains("hoist_sign_batch_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("hoist_sign_batch_seconds_bucket{le=\"0.1\"} 2\n"), "{text}");
        assert!(text.contains("hoist_sign_batch_seconds_count 2\n"), "{text}");
    }
}
