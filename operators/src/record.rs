//! The records that flow between sources, operators and sinks.
//!
//! This module is the contract every source (file, replay, Kafka) and every sink shares:
//! a source emits [`RawInput`] (the bytes of one record plus where they came from);
//! `parse_complaints` turns them into complaints or [`DeadLetter`]s.

use serde::{Deserialize, Serialize};

/// Where a raw record came from: enough to find it again and to checkpoint past it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// Source name: a file path, `replay`, or a Kafka topic.
    pub source: String,
    /// Kafka partition (0 for files and replays).
    pub partition: i32,
    /// Kafka offset, or the 0-based record number in a file.
    pub offset: i64,
}

/// The bytes of one input record, as read by a source, before parsing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RawInput {
    /// The record's bytes (one JSON object, one CSV row rendered as JSON, or a Kafka payload).
    pub bytes: Vec<u8>,
    /// Where it came from.
    pub origin: Origin,
    /// When the record entered the system (ms since the Unix epoch): the Kafka message
    /// timestamp, or the time the source read it. Used for end-to-end latency.
    pub ingest_ms: i64,
}

/// A record that could not be processed, with the reason. Never silently dropped: every
/// dead letter is written to the dead-letter sink and counted in metrics by `kind`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Stable error kind (`complaintflow_datasets::ErrorKind::as_str`, e.g. `malformed_json`).
    pub kind: String,
    /// Human-readable reason, naming the field and value.
    pub message: String,
    /// The complaint id, when it could be read.
    pub complaint_id: Option<String>,
    /// Where the record came from.
    pub origin: Origin,
    /// The original bytes, lossily decoded as UTF-8 (truncated to a few KB).
    pub raw: String,
}
