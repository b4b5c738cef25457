//! `publish`: decisions → [`Published`] decisions, each serialized once and shared by every sink.
//!
//! A decision leaves the graph through several sinks (the predictions file, Kafka, the recent
//! list, a user's sink). Serializing it in each one, or deep-copying the batch at every fan-out
//! (timely's `Tee` clones a container for every consumer but the last), costs more than
//! deciding it. `publish` serializes each decision once, on the worker that made it, and wraps
//! decision and bytes in an [`Arc`]: a fan-out then copies pointers, and every sink writes the
//! same bytes. Across processes the record travels serialized (bincode), bytes included.
//!
//! Cost (2-core machine, release): one JSON serialization ([`write_json`], serde_json's output
//! written directly) into a reused buffer and two allocations per decision (the shared record
//! and its bytes); the fan-out to each further sink is one reference-count increment per
//! record.
//!
//! ```
//! use complaintflow_operators::prelude::*;
//! use complaintflow_operators::record::{Origin, Parsed, Prediction};
//! use complaintflow_datasets::{Complaint, ComplaintId};
//! use timely::dataflow::operators::{Inspect, ToStream};
//! timely::example(|scope| {
//!     let c = Complaint::new(ComplaintId(1), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
//!     let p = Prediction { parsed: Parsed::new(c, Origin::file("x", 0), 5),
//!                          score: 0.01, predicted_success: false, model_version: "v1".into() };
//!     vec![p].to_stream(scope).container::<Vec<_>>()
//!         .decide(&DecisionRules::default())
//!         .publish()
//!         .inspect(|p| {
//!             let back: Decision = serde_json::from_slice(&p.json).unwrap();
//!             assert_eq!(back, p.decision);
//!         });
//! });
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::progress::Timestamp;

use crate::rules::Decision;

/// A decision and its JSON line (without the newline), made once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The decision.
    pub decision: Decision,
    /// `serde_json` of `decision`: what every sink writes (shared, e.g. as a Kafka payload).
    pub json: Arc<[u8]>,
}

/// A published decision as it flows to the sinks: shared, never deep-copied.
pub type SharedDecision = Arc<Published>;

impl Published {
    /// Serializes `decision` (a [`Decision`] always serializes: plain strings and numbers).
    ///
    /// ```
    /// # use complaintflow_operators::publish::Published;
    /// # use complaintflow_operators::rules::{decide, DecisionRules};
    /// # use complaintflow_datasets::{Complaint, ComplaintId};
    /// let c = Complaint::new(ComplaintId(9), chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap());
    /// let p = Published::new(decide(&c, 0.5, true, "v1", &DecisionRules::default()));
    /// assert!(p.json.starts_with(br#"{"complaint_id":"9""#));
    /// ```
    pub fn new(decision: Decision) -> Published {
        let mut buf = Vec::with_capacity(640);
        Published::with_buffer(decision, &mut buf)
    }

    /// [`Published::new`] with a scratch buffer reused from one decision to the next (one
    /// allocation per decision: the shared bytes).
    pub fn with_buffer(decision: Decision, buf: &mut Vec<u8>) -> Published {
        buf.clear();
        write_json(&decision, buf);
        Published {
            json: Arc::from(&buf[..]),
            decision,
        }
    }
}

/// Writes `d` as JSON into `out`: byte for byte what `serde_json::to_vec(d)` writes (a test
/// checks it), in about a third of its time. Strings that need no escaping (nearly all) are
/// copied as they are; any other string, and dates outside years 0–9999, go through
/// `serde_json`.
pub fn write_json(d: &Decision, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"complaint_id\":");
    string(out, &d.complaint_id);
    out.extend_from_slice(b",\"model_version\":");
    string(out, &d.model_version);
    out.extend_from_slice(b",\"score\":");
    if d.score.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(d.score).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"predicted_success\":");
    boolean(out, d.predicted_success);
    out.extend_from_slice(b",\"escalate\":");
    boolean(out, d.escalate);
    out.extend_from_slice(b",\"priority\":");
    string(out, &d.priority);
    out.extend_from_slice(b",\"queue\":");
    string(out, &d.queue);
    out.extend_from_slice(b",\"reasons\":[");
    for (i, r) in d.reasons.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, r);
    }
    out.extend_from_slice(b"],\"product\":");
    optional(out, d.product.as_deref());
    out.extend_from_slice(b",\"issue\":");
    optional(out, d.issue.as_deref());
    out.extend_from_slice(b",\"state\":");
    optional(out, d.state.as_deref());
    out.extend_from_slice(b",\"company\":");
    optional(out, d.company.as_deref());
    out.extend_from_slice(b",\"date_received\":");
    date(out, d.date_received);
    out.extend_from_slice(b",\"epoch\":");
    out.extend_from_slice(itoa::Buffer::new().format(d.epoch).as_bytes());
    out.extend_from_slice(b",\"ingest_ms\":");
    out.extend_from_slice(itoa::Buffer::new().format(d.ingest_ms).as_bytes());
    out.extend_from_slice(b",\"decided_ms\":");
    out.extend_from_slice(itoa::Buffer::new().format(d.decided_ms).as_bytes());
    out.push(b'}');
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn optional(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Whether JSON needs an escape for any byte of `b` (a control byte, `"` or `\`): eight bytes
/// at a time (SWAR), the rest one by one.
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        let v = u64::from_le_bytes(a);
        // A byte below 0x20; a byte equal to `"`; a byte equal to `\`.
        if v.wrapping_sub(ONES * 0x20) & !v & HIGH != 0
            || has_zero(v ^ (ONES * u64::from(b'"')))
            || has_zero(v ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

fn string(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        // A `Vec<u8>` writer cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

fn date(out: &mut Vec<u8>, d: chrono::NaiveDate) {
    use chrono::Datelike;
    let y = d.year();
    if !(0..=9999).contains(&y) {
        let _ = serde_json::to_writer(&mut *out, &d);
        return;
    }
    let (y, m, day) = (y as u32, d.month(), d.day());
    let digit = |n: u32| b'0' + (n % 10) as u8;
    out.extend_from_slice(&[
        b'"',
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
        b'-',
        digit(day / 10),
        digit(day),
        b'"',
    ]);
}

/// `publish`: decisions → shared, serialized decisions.
pub trait Publish<'s, T: Timestamp> {
    /// Serializes every decision once and shares it ([module docs](self)). Data-parallel.
    fn publish(self) -> Stream<'s, T, Vec<SharedDecision>>;
}

impl<'s, T: Timestamp> Publish<'s, T> for Stream<'s, T, Vec<Decision>> {
    fn publish(self) -> Stream<'s, T, Vec<SharedDecision>> {
        self.unary(Pipeline, "Publish", |_cap, _info| {
            let mut buf: Vec<u8> = Vec::with_capacity(1024);
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for batch in data {
                        let mut shared: Vec<SharedDecision> = batch
                            .drain(..)
                            .map(|d| Arc::new(Published::with_buffer(d, &mut buf)))
                            .collect();
                        session.give_container(&mut shared);
                    }
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rules::{decide, DecisionRules};
    use complaintflow_datasets::{Complaint, ComplaintId, Tags, UsState};

    #[test]
    fn needs_escape_finds_every_byte_json_escapes_at_every_position() {
        for len in 0..24 {
            assert!(!needs_escape(&vec![b'a'; len]));
            assert!(!needs_escape(&vec![0xC3; len])); // UTF-8 lead bytes are not escaped
            for at in 0..len {
                for bad in [0u8, 0x1f, b'"', b'\\', b'\n'] {
                    let mut v = vec![b' '; len];
                    v[at] = bad;
                    assert!(needs_escape(&v), "{bad:#x} at {at} of {len}");
                }
                for good in [0x20u8, 0x21, 0x7f, 0x80, 0xff, b'#', b']'] {
                    let mut v = vec![b'z'; len];
                    v[at] = good;
                    assert!(!needs_escape(&v), "{good:#x} at {at} of {len}");
                }
            }
        }
    }

    /// `write_json` writes exactly what serde_json writes, for plain and awkward values.
    #[test]
    fn write_json_is_serde_json_byte_for_byte() {
        let rules = DecisionRules::default();
        let mut cases = Vec::new();
        for (i, score) in [0.0, 0.001, 0.015524255150436218, 0.5, 1.0, 1e-300, f64::NAN]
            .into_iter()
            .enumerate()
        {
            let mut c = Complaint::new(
                ComplaintId(900_000_000_000 + i as u64),
                chrono::NaiveDate::from_ymd_opt(2019 + i as i32, 1 + i as u32, 9 + i as u32)
                    .unwrap(),
            );
            if i % 2 == 0 {
                c.product = Some("Credit reporting, credit repair services".into());
                c.issue = Some("Quote \" backslash \\ tab \t nul \u{0} é 🙂 \u{7f}".into());
                c.company = Some("TRANSUNION INTERMEDIATE HOLDINGS, INC.".into());
                c.state = UsState::parse("NY");
                c.tags = Tags::default();
                c.complaint_what_happened = Some("I will sue them in court".into());
            }
            let mut d = decide(&c, score, score > 0.3, "v0001", &rules);
            d.epoch = 1_796_674_360_802 + i as u64;
            d.ingest_ms = -5 + i as i64;
            d.decided_ms = i64::MAX - i as i64;
            cases.push(d);
        }
        let mut far = cases[0].clone();
        far.date_received = chrono::NaiveDate::from_ymd_opt(-3, 2, 1).unwrap();
        cases.push(far);
        for d in cases {
            let mine = Published::new(d.clone());
            let theirs = serde_json::to_vec(&d).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&mine.json),
                String::from_utf8_lossy(&theirs)
            );
        }
    }
}
