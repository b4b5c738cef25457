#![allow(dead_code)]
//! Shared pieces of the fuzz tests (`tests/fuzz_*.rs`): the real records they mutate, byte-
//! and structure-level mutations as proptest strategies, case counts, and a tally printed at
//! the end of each target.
//!
//! Case counts: each target runs its CI-sized default; `CF_FUZZ_CASES=N` runs N cases in every
//! target, `CF_FUZZ_CASES_<TARGET>=N` (e.g. `CF_FUZZ_CASES_CONFIG`) one target only. The long
//! run is the same tests in release mode with large counts and `CF_FUZZ_SEED=random`
//! (docs/SECURITY.md); by default the seed is fixed, so CI sees the same inputs every run.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The bundled real sample's records (4,303 CFPB complaints), as JSON objects.
pub fn real_records() -> &'static [serde_json::Map<String, serde_json::Value>] {
    static RECORDS: std::sync::OnceLock<Vec<serde_json::Map<String, serde_json::Value>>> =
        std::sync::OnceLock::new();
    RECORDS.get_or_init(|| {
        let text = std::fs::read_to_string(complaintflow_datasets::bundled_sample_path())
            .expect("the bundled sample");
        let v: Vec<serde_json::Value> = serde_json::from_str(&text).expect("a JSON array");
        v.into_iter()
            .filter_map(|r| match r {
                serde_json::Value::Object(m) => Some(m),
                _ => None,
            })
            .collect()
    })
}

/// Cases for `target`: `CF_FUZZ_CASES_<TARGET>`, else `CF_FUZZ_CASES`, else `default`.
pub fn cases(target: &str, default: u32) -> u32 {
    let read = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    read(&format!("CF_FUZZ_CASES_{}", target.to_ascii_uppercase()))
        .or_else(|| read("CF_FUZZ_CASES"))
        .unwrap_or(default)
}

/// A proptest runner for `n` cases: no regression files in the tree, no forking, and
/// shrinking kept short (a failure is reported with its minimal mutation list).
pub fn runner(n: u32) -> TestRunner {
    use proptest::test_runner::{RngAlgorithm, TestRng};
    let config = Config {
        cases: n,
        failure_persistence: None,
        max_shrink_iters: 2048,
        max_global_rejects: n.saturating_mul(4),
        ..Config::default()
    };
    // The CI-sized runs are repeatable (a fixed seed: the same inputs on every machine, so a
    // test run never fails on a case it did not see before); `CF_FUZZ_SEED=N` picks another
    // seed and `CF_FUZZ_SEED=random` a fresh one per run (the long runs).
    let seed = match std::env::var("CF_FUZZ_SEED").ok().as_deref().map(str::trim) {
        Some("random") => return TestRunner::new(config),
        Some(v) => v
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("CF_FUZZ_SEED={v}: a number or `random`")),
        None => 0x00C0_FFEE,
    };
    eprintln!("fuzz seed {seed} (CF_FUZZ_SEED)");
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(
            &(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes(),
        );
    }
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// Counts what a target saw: inputs, accepted, and rejections by typed kind.
pub struct Tally {
    target: &'static str,
    start: Instant,
    counts: Mutex<(u64, u64, BTreeMap<String, u64>)>,
}

impl Tally {
    /// Starts the clock.
    pub fn new(target: &'static str) -> Tally {
        Tally {
            target,
            start: Instant::now(),
            counts: Mutex::new((0, 0, BTreeMap::new())),
        }
    }

    /// One input accepted.
    pub fn ok(&self) {
        let mut c = self.counts.lock().expect("tally");
        c.0 += 1;
        c.1 += 1;
    }

    /// One input rejected with `kind`.
    pub fn rejected(&self, kind: &str) {
        let mut c = self.counts.lock().expect("tally");
        c.0 += 1;
        *c.2.entry(kind.to_string()).or_default() += 1;
    }

    /// Several outcomes of one input (a reader's records): counted as one input, accepted
    /// when none of its records was rejected.
    pub fn input(&self, accepted: bool) {
        let mut c = self.counts.lock().expect("tally");
        c.0 += 1;
        c.1 += u64::from(accepted);
    }

    /// A rejection inside an input counted with [`Tally::input`].
    pub fn kind(&self, kind: &str) {
        *self
            .counts
            .lock()
            .expect("tally")
            .2
            .entry(kind.to_string())
            .or_default() += 1;
    }

    /// Prints `fuzz <target>: N inputs in T s (R/s), 0 panics; accepted A; rejected by kind {…}`.
    pub fn report(&self) -> u64 {
        let c = self.counts.lock().expect("tally");
        let secs = self.start.elapsed().as_secs_f64();
        eprintln!(
            "fuzz {}: {} inputs in {:.1} s ({:.0}/s), 0 panics; accepted {}; rejections by kind {:?}",
            self.target,
            c.0,
            secs,
            c.0 as f64 / secs.max(1e-9),
            c.1,
            c.2
        );
        c.0
    }
}

/// Interesting byte strings spliced into inputs.
pub const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\u0000",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\n",
    b"\r\n",
    b"\t",
    b"\0",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"0.0000000000000000000001",
    b"\"None\"",
    b"\"\"",
    b"2019-02-30",
    b"13/45/2019",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98\x80",
    b"\xef\xbb\xbf",
    b"XXXX",
    b"\"_source\":",
    b"\"hits\":",
    b"\"complaint_id\":",
    b"\"date_received\":",
    b"\"state\":\"QQ\"",
    b"\"tags\":[",
    b",,,,",
    b"\"\"\"",
    b"<img src=x onerror=alert(1)>",
];

/// A byte-level mutation; positions are taken modulo the input's length when applied.
#[derive(Clone, Debug)]
pub enum ByteOp {
    /// Flip one bit.
    Flip(usize, u8),
    /// Overwrite one byte.
    Set(usize, u8),
    /// Insert one byte.
    Insert(usize, u8),
    /// Splice in one of [`TOKENS`].
    Token(usize, usize),
    /// Delete up to `len` bytes.
    Delete(usize, u8),
    /// Copy up to `len` bytes from one place to another.
    Duplicate(usize, u8, usize),
    /// Cut the input.
    Truncate(usize),
    /// Repeat a byte many times (long values).
    Repeat(usize, u16),
}

/// A strategy for byte mutations.
pub fn byte_op() -> impl Strategy<Value = ByteOp> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| ByteOp::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| ByteOp::Set(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| ByteOp::Insert(p, b)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(p, t)| ByteOp::Token(p, t)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, n)| ByteOp::Delete(p, n)),
        (any::<usize>(), any::<u8>(), any::<usize>())
            .prop_map(|(p, n, t)| ByteOp::Duplicate(p, n, t)),
        any::<usize>().prop_map(ByteOp::Truncate),
        (any::<usize>(), any::<u16>()).prop_map(|(p, n)| ByteOp::Repeat(p, n)),
    ]
}

/// Applies `ops` to `b` in order.
pub fn apply_bytes(b: &mut Vec<u8>, ops: &[ByteOp]) {
    for op in ops {
        let len = b.len();
        let at = |p: usize| if len == 0 { 0 } else { p % (len + 1) };
        match *op {
            ByteOp::Flip(p, bit) if len > 0 => b[p % len] ^= 1 << bit,
            ByteOp::Set(p, v) if len > 0 => b[p % len] = v,
            ByteOp::Insert(p, v) => b.insert(at(p), v),
            ByteOp::Token(p, t) => {
                let i = at(p);
                b.splice(i..i, TOKENS[t].iter().copied());
            }
            ByteOp::Delete(p, n) => {
                let i = at(p).min(len);
                let j = (i + usize::from(n)).min(len);
                b.drain(i..j);
            }
            ByteOp::Duplicate(p, n, to) if len > 0 => {
                let i = p % len;
                let j = (i + usize::from(n)).min(len);
                let chunk: Vec<u8> = b[i..j].to_vec();
                let t = to % (len + 1);
                b.splice(t..t, chunk);
            }
            ByteOp::Truncate(p) => b.truncate(at(p)),
            ByteOp::Repeat(p, n) if len > 0 => {
                let i = p % len;
                let v = b[i];
                let n = usize::from(n % 4096);
                b.splice(i..i, std::iter::repeat_n(v, n));
            }
            _ => {}
        }
    }
}

/// A JSON value to put in a field.
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        "[0-9/ :TZ-]{0,25}".prop_map(Value::String),
        prop_oneof![
            Just("None"),
            Just("null"),
            Just("NaN"),
            Just(""),
            Just("Yes"),
            Just("N/A"),
            Just("Servicemember"),
            Just("Older American, Servicemember"),
            Just("2019-09-24"),
            Just("9/24/2019"),
            Just("2019-09-24T12:00:00-05:00"),
            Just("CA"),
            Just("ca"),
            Just("AE"),
            Just("Closed with explanation"),
            Just("In progress"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
        prop::collection::vec(".{0,10}".prop_map(Value::String), 0..4).prop_map(Value::Array),
        Just(json!({"nested": {"a": [1, 2]}})),
    ]
}

/// A structure-level mutation of a record.
#[derive(Clone, Debug)]
pub enum FieldOp {
    /// Give field `i` of [`FIELD_NAMES`] a value.
    Set(usize, serde_json::Value),
    /// Remove it.
    Remove(usize),
    /// Rename it to one of its accepted spellings (or a near miss).
    Rename(usize, usize),
    /// Add an unknown field.
    Unknown(String, serde_json::Value),
}

/// Field names as the CFPB JSON export spells them, plus the CSV header spellings.
pub const FIELD_NAMES: &[(&str, &str)] = &[
    ("date_received", "Date received"),
    ("product", "Product"),
    ("sub_product", "Sub-product"),
    ("issue", "Issue"),
    ("sub_issue", "Sub-issue"),
    ("complaint_what_happened", "Consumer complaint narrative"),
    ("company_public_response", "Company public response"),
    ("company", "Company"),
    ("state", "State"),
    ("zip_code", "ZIP code"),
    ("tags", "Tags"),
    ("consumer_consent_provided", "Consumer consent provided?"),
    ("submitted_via", "Submitted via"),
    ("date_sent_to_company", "Date sent to company"),
    ("company_response", "Company response to consumer"),
    ("timely", "Timely response?"),
    ("consumer_disputed", "Consumer disputed?"),
    ("complaint_id", "Complaint ID"),
];

/// A strategy for structure mutations.
pub fn field_op() -> impl Strategy<Value = FieldOp> {
    let n = FIELD_NAMES.len();
    prop_oneof![
        4 => (0..n, json_value()).prop_map(|(i, v)| FieldOp::Set(i, v)),
        1 => (0..n).prop_map(FieldOp::Remove),
        1 => (0..n, 0usize..4).prop_map(|(i, k)| FieldOp::Rename(i, k)),
        1 => ("[a-zA-Z_?]{1,12}", json_value()).prop_map(|(k, v)| FieldOp::Unknown(k, v)),
    ]
}

/// Applies `ops` to a record.
pub fn apply_fields(r: &mut serde_json::Map<String, serde_json::Value>, ops: &[FieldOp]) {
    for op in ops {
        match op {
            FieldOp::Set(i, v) => {
                r.insert(FIELD_NAMES[*i].0.to_string(), v.clone());
            }
            FieldOp::Remove(i) => {
                r.remove(FIELD_NAMES[*i].0);
            }
            FieldOp::Rename(i, k) => {
                if let Some(v) = r.remove(FIELD_NAMES[*i].0) {
                    let (json, csv) = FIELD_NAMES[*i];
                    let name = match k {
                        0 => csv.to_string(),
                        1 => json.to_ascii_uppercase(),
                        2 => json.replace('_', ""),
                        _ => format!("{json}_x"),
                    };
                    r.insert(name, v);
                }
            }
            FieldOp::Unknown(k, v) => {
                r.insert(k.clone(), v.clone());
            }
        }
    }
}
