//! librdkafka client contexts: logs go to `tracing`, statistics feed the source's lag.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError as RdError;
use rdkafka::statistics::Statistics;

/// High watermarks per (topic, partition), from librdkafka's statistics.
pub(crate) type HighWatermarks = Arc<Mutex<BTreeMap<(String, i32), i64>>>;

/// A context that forwards librdkafka's logs and errors to `tracing` and keeps the high
/// watermarks reported by its statistics.
#[derive(Clone, Default)]
pub(crate) struct TracingContext {
    pub(crate) high: HighWatermarks,
}

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{fac} {log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac} {log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "{fac} {log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac} {log_message}"),
        }
    }

    fn error(&self, error: RdError, reason: &str) {
        // Transport errors while a broker restarts are expected and retried by librdkafka.
        tracing::warn!(target: "librdkafka", "{error}: {reason}");
    }

    fn stats(&self, statistics: Statistics) {
        let Ok(mut high) = self.high.lock() else {
            return;
        };
        for (name, topic) in statistics.topics {
            for (p, part) in topic.partitions {
                if p >= 0 && part.hi_offset >= 0 {
                    high.insert((name.clone(), p), part.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for TracingContext {}

/// Locks a mutex, recovering the data if a thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl rdkafka::producer::ProducerContext for TracingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}
