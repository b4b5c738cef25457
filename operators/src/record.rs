//! The records that flow between sources, operators and sinks.
//!
//! This module is the contract every source (file, replay, Kafka) and every sink shares:
//! a source emits [`RawInput`] (the bytes of one record plus where they came from);
//! `parse_complaints` turns them into [`Parsed`] complaints or [`DeadLetter`]s; `score` turns
//! complaints into [`Prediction`]s.
//!
//! ```
//! use complaintflow_operators::record::{DeadLetter, Origin, RawInput};
//! let raw = RawInput::new(b"{oops".to_vec(), Origin::file("in.jsonl", 41));
//! let dead = DeadLetter::from_raw(&raw, "malformed_json", "not JSON".into(), None);
//! assert_eq!(dead.origin.offset, 41);
//! assert_eq!(dead.raw, "{oops");
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The most bytes of an input record kept in its dead letter.
pub const DEAD_LETTER_RAW_BYTES: usize = 4096;

/// Where a raw record came from: enough to find it again and to checkpoint past it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// Source name: a file path, `replay`, or a Kafka topic. Shared: every record of a source
    /// points at the same string.
    pub source: Arc<str>,
    /// Kafka partition (0 for files and replays).
    pub partition: i32,
    /// Kafka offset; for files the byte offset of the record's line (JSON Lines, split by
    /// byte range) or the 0-based record number (other formats); for a resampled replay the
    /// number of the generated record.
    pub offset: i64,
}

impl Origin {
    /// Record `offset` of file `path` (partition 0).
    ///
    /// ```
    /// let o = complaintflow_operators::record::Origin::file("a.json", 3);
    /// assert_eq!((&*o.source, o.partition, o.offset), ("a.json", 0, 3));
    /// ```
    pub fn file(path: impl Into<Arc<str>>, offset: i64) -> Origin {
        Origin {
            source: path.into(),
            partition: 0,
            offset,
        }
    }
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
    /// A framing error found by the source before the record could be cut out of its input
    /// (e.g. a record over the size limit, a truncated JSON array): `(kind, message)`, kind
    /// as in `ErrorKind::as_str`. `parse_complaints` turns it into a dead letter of that
    /// kind. `None` for ordinary records.
    #[serde(default)]
    pub framing_error: Option<(String, String)>,
}

impl RawInput {
    /// A record read now from `origin`.
    ///
    /// ```
    /// use complaintflow_operators::record::{Origin, RawInput};
    /// let r = RawInput::new(b"{}".to_vec(), Origin::file("x", 0));
    /// assert!(r.framing_error.is_none() && r.ingest_ms > 0);
    /// ```
    pub fn new(bytes: Vec<u8>, origin: Origin) -> RawInput {
        RawInput {
            bytes,
            origin,
            ingest_ms: now_ms(),
            framing_error: None,
        }
    }

    /// A record the source could not frame: it becomes a dead letter of `kind` in
    /// `parse_complaints`. `bytes` should hold whatever part of the record is known.
    ///
    /// ```
    /// use complaintflow_operators::record::{Origin, RawInput};
    /// let r = RawInput::framing_error(Vec::new(), Origin::file("x", 9), "record_too_large", "2 MB".into());
    /// assert_eq!(r.framing_error.unwrap().0, "record_too_large");
    /// ```
    pub fn framing_error(bytes: Vec<u8>, origin: Origin, kind: &str, message: String) -> RawInput {
        RawInput {
            bytes,
            origin,
            ingest_ms: now_ms(),
            framing_error: Some((kind.to_string(), message)),
        }
    }
}

/// A complaint that parsed and validated, with where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parsed {
    /// The complaint.
    pub complaint: complaintflow_datasets::Complaint,
    /// Where it came from.
    pub origin: Origin,
    /// When it entered the system (ms since the Unix epoch).
    pub ingest_ms: i64,
    /// The record's original bytes, moved (not copied) from its [`RawInput`] by
    /// `parse_complaints` and kept until `dedup_by_id`, so that a duplicate's dead letter holds
    /// what was read. Not sent between processes (`serde(skip)`): a duplicate found in another
    /// process gets the complaint re-serialized instead. Empty after `dedup_by_id`.
    #[serde(skip)]
    pub raw: Vec<u8>,
}

impl Parsed {
    /// A parsed complaint without its original bytes.
    ///
    /// ```
    /// # use complaintflow_operators::record::{Origin, Parsed};
    /// # use complaintflow_datasets::{Complaint, ComplaintId};
    /// let c = Complaint::new(ComplaintId(5), chrono::NaiveDate::from_ymd_opt(2021, 3, 1).unwrap());
    /// let p = Parsed::new(c, Origin::file("x", 0), 7);
    /// assert!(p.raw.is_empty() && p.ingest_ms == 7);
    /// ```
    pub fn new(
        complaint: complaintflow_datasets::Complaint,
        origin: Origin,
        ingest_ms: i64,
    ) -> Parsed {
        Parsed {
            complaint,
            origin,
            ingest_ms,
            raw: Vec::new(),
        }
    }
}

/// A scored complaint: the model's probability of a successful resolution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The complaint.
    pub parsed: Parsed,
    /// P(SuccessfulResolution) from the model, in [0, 1].
    pub score: f64,
    /// `score` ≥ the model's decision threshold: the model predicts a successful resolution.
    pub predicted_success: bool,
    /// The registry version of the model that scored it (shared by all its predictions).
    pub model_version: Arc<str>,
}

impl Prediction {
    /// The complaint id.
    ///
    /// ```
    /// # use complaintflow_operators::record::*;
    /// # use complaintflow_datasets::{Complaint, ComplaintId};
    /// let c = Complaint::new(ComplaintId(5), chrono::NaiveDate::from_ymd_opt(2021, 3, 1).unwrap());
    /// let p = Prediction { parsed: Parsed::new(c, Origin::file("x", 0), 0),
    ///                      score: 0.3, predicted_success: false, model_version: "v1".into() };
    /// assert_eq!(p.complaint_id(), 5);
    /// ```
    pub fn complaint_id(&self) -> u64 {
        self.parsed.complaint.complaint_id.0
    }
}

/// Milliseconds since the Unix epoch, now.
///
/// ```
/// assert!(complaintflow_operators::record::now_ms() > 1_600_000_000_000);
/// ```
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A record that could not be processed, with the reason. Never silently dropped: every
/// dead letter is written to the dead-letter sink and counted in metrics by `kind`.
///
/// JSON (one line per dead letter):
/// `{"kind":"malformed_json","message":"…","complaint_id":null,"origin":{"source":"in.jsonl","partition":0,"offset":1234},"raw":"{oops"}`
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Stable error kind (`complaintflow_datasets::ErrorKind::as_str`, e.g. `malformed_json`,
    /// `duplicate_id`).
    pub kind: String,
    /// Human-readable reason, naming the field and value.
    pub message: String,
    /// The complaint id, when it could be read.
    pub complaint_id: Option<String>,
    /// Where the record came from.
    pub origin: Origin,
    /// The original bytes, lossily decoded as UTF-8 (truncated to [`DEAD_LETTER_RAW_BYTES`]).
    pub raw: String,
}

impl DeadLetter {
    /// A dead letter for `raw` with an error kind and message.
    ///
    /// ```
    /// use complaintflow_operators::record::{DeadLetter, Origin, RawInput};
    /// let raw = RawInput::new(vec![b'x'; 10_000], Origin::file("x", 0));
    /// let d = DeadLetter::from_raw(&raw, "record_too_large", "too big".into(), None);
    /// assert_eq!(d.raw.len(), complaintflow_operators::record::DEAD_LETTER_RAW_BYTES);
    /// ```
    pub fn from_raw(
        raw: &RawInput,
        kind: &str,
        message: String,
        complaint_id: Option<String>,
    ) -> DeadLetter {
        DeadLetter::from_bytes(&raw.bytes, raw.origin.clone(), kind, message, complaint_id)
    }

    /// A dead letter for the record `bytes` read at `origin`.
    pub fn from_bytes(
        bytes: &[u8],
        origin: Origin,
        kind: &str,
        message: String,
        complaint_id: Option<String>,
    ) -> DeadLetter {
        let end = bytes.len().min(DEAD_LETTER_RAW_BYTES);
        let mut raw = String::from_utf8_lossy(bytes.get(..end).unwrap_or_default()).into_owned();
        // Each invalid byte became a 3-byte U+FFFD: cut back to the bound, at a char boundary.
        if raw.len() > DEAD_LETTER_RAW_BYTES {
            let mut cut = DEAD_LETTER_RAW_BYTES;
            while !raw.is_char_boundary(cut) {
                cut -= 1;
            }
            raw.truncate(cut);
        }
        DeadLetter {
            kind: kind.to_string(),
            message,
            complaint_id,
            origin,
            raw,
        }
    }
}
