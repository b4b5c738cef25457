//! Fuzzing the streaming readers (datasets crate): real records from the bundled sample
//! written as a CSV export, a CFPB search-API envelope, a JSON array and JSON Lines, then
//! mutated at the byte level (and field by field), read with the format given and with
//! `auto` detection.
//!
//! Properties: no panic, the iterator ends (at most a few results per input byte); every
//! rejection is a typed `RecordError` of a kind that format can produce (a CSV row is never a
//! `malformed_json`: the reader transcodes rows itself), named in its message, with a
//! location; and the unmutated inputs read back exactly the complaints their records parse
//! to, in every format. `CF_FUZZ_CASES` scales the runs (see `fuzz_support`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_support;

use complaintflow_datasets::reader::{Complaints, Format};
use complaintflow_datasets::{parse_json_record, Complaint, ErrorKind, ValidationOptions};
use fuzz_support::{
    apply_bytes, apply_fields, byte_op, cases, field_op, real_records, runner, Tally, FIELD_NAMES,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value};

fn opts() -> ValidationOptions {
    ValidationOptions {
        max_narrative_bytes: 20_000,
        max_record_bytes: 32_000,
        ..ValidationOptions::default()
    }
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Csv,
    Tsv,
    Envelope,
    Array,
    Lines,
}

const SHAPES: [Shape; 5] = [
    Shape::Csv,
    Shape::Tsv,
    Shape::Envelope,
    Shape::Array,
    Shape::Lines,
];

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), String::from))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

/// `records` written in `shape`.
fn encode(records: &[Map<String, Value>], shape: Shape) -> Vec<u8> {
    match shape {
        Shape::Csv | Shape::Tsv => {
            let mut w = csv::WriterBuilder::new()
                .delimiter(if matches!(shape, Shape::Tsv) {
                    b'\t'
                } else {
                    b','
                })
                .from_writer(Vec::new());
            w.write_record(FIELD_NAMES.iter().map(|f| f.1)).unwrap();
            for r in records {
                w.write_record(FIELD_NAMES.iter().map(|f| cell(r.get(f.0))))
                    .unwrap();
            }
            w.into_inner().unwrap()
        }
        Shape::Envelope => {
            let hits: Vec<Value> = records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    serde_json::json!({"_index": "complaint-public-v2", "_id": i.to_string(),
                        "_score": 0.0, "_source": r})
                })
                .collect();
            serde_json::to_vec(&serde_json::json!({
                "took": 12, "timed_out": false,
                "hits": {"total": {"value": records.len(), "relation": "eq"}, "max_score": 0.0, "hits": hits}
            }))
            .unwrap()
        }
        Shape::Array => serde_json::to_vec(records).unwrap(),
        Shape::Lines => {
            let mut out = Vec::new();
            for r in records {
                out.extend(serde_json::to_vec(r).unwrap());
                out.push(b'\n');
            }
            out
        }
    }
}

fn format_of(shape: Shape) -> Format {
    match shape {
        Shape::Csv | Shape::Tsv => Format::Csv,
        Shape::Envelope => Format::ApiEnvelope,
        Shape::Array => Format::JsonArray,
        Shape::Lines => Format::JsonLines,
    }
}

/// Kinds a reader of `format` may produce for a record.
fn allowed(format: Format, k: ErrorKind) -> bool {
    use ErrorKind as K;
    let record_level = matches!(
        k,
        K::WrongType
            | K::MissingField
            | K::InvalidUtf8
            | K::UnparseableDate
            | K::SentBeforeReceived
            | K::UnknownState
            | K::BadYesNo
            | K::UnknownTag
            | K::NarrativeTooLong
            | K::RecordTooLarge
            | K::DuplicateId
            | K::DuplicateField
            | K::WrongFormat
            | K::TruncatedInput
    );
    match format {
        Format::Csv => record_level || matches!(k, K::CsvMalformed | K::CsvMissingColumn),
        // JSON framings (and `auto`, which may pick any of them, CSV included).
        Format::Auto => k != K::Io,
        _ => record_level || matches!(k, K::MalformedJson | K::NotAnObject),
    }
}

/// Reads `bytes` as `format`, checking every result; returns (accepted, rejections).
fn read_checked(
    bytes: &[u8],
    format: Format,
    tally: &Tally,
) -> Result<(Vec<Complaint>, usize), TestCaseError> {
    let bound = bytes.len() * 2 + 16;
    let mut ok = Vec::new();
    let mut bad = 0;
    for (n, r) in Complaints::new(bytes, format, &opts()).enumerate() {
        prop_assert!(
            n < bound,
            "more than {} results from {} bytes",
            bound,
            bytes.len()
        );
        match r {
            Ok(c) => {
                tally.kind("(accepted record)");
                ok.push(c);
            }
            Err(e) => {
                prop_assert!(
                    allowed(format, e.kind),
                    "{:?} reader gave {:?}: {}",
                    format,
                    e.kind,
                    e
                );
                prop_assert!(e.to_string().contains(e.kind.as_str()), "{}", e);
                prop_assert!(!e.message.trim().is_empty());
                tally.kind(e.kind.as_str());
                bad += 1;
            }
        }
    }
    Ok((ok, bad))
}

#[test]
fn unmutated_inputs_read_back_the_records_in_every_format() {
    let recs = real_records();
    let opts = opts();
    for chunk in recs.chunks(500).take(3) {
        let want: Vec<Complaint> = chunk
            .iter()
            .filter_map(|r| parse_json_record(&serde_json::to_vec(r).unwrap(), &opts).ok())
            .collect();
        assert!(want.len() > 400);
        for shape in SHAPES {
            let bytes = encode(chunk, shape);
            for format in [format_of(shape), Format::Auto] {
                let got: Vec<Complaint> = Complaints::new(&bytes[..], format, &opts)
                    .filter_map(Result::ok)
                    .collect();
                assert_eq!(got.len(), want.len(), "{shape:?} as {format:?}");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g, w, "{shape:?} as {format:?}");
                }
            }
        }
    }
}

fn fuzz_shape(target: &'static str, shapes: &'static [Shape], default: u32) {
    let recs = real_records();
    let tally = Tally::new(target);
    let strategy = (
        0..recs.len(),
        1usize..12,
        0..shapes.len(),
        prop::collection::vec(field_op(), 0..3),
        prop::collection::vec(byte_op(), 1..10),
        any::<bool>(),
    );
    runner(cases(
        target.split_whitespace().next().unwrap_or(target),
        default,
    ))
    .run(&strategy, |(start, n, s, fops, bops, auto)| {
        let shape = shapes[s];
        let mut chunk: Vec<Map<String, Value>> =
            recs.iter().cycle().skip(start).take(n).cloned().collect();
        if let Some(first) = chunk.first_mut() {
            apply_fields(first, &fops);
        }
        let mut bytes = encode(&chunk, shape);
        apply_bytes(&mut bytes, &bops);
        let format = if auto { Format::Auto } else { format_of(shape) };
        let (ok, bad) = read_checked(&bytes, format, &tally)?;
        tally.input(bad == 0);
        // Whatever was accepted is a valid complaint by itself.
        for c in &ok {
            let again = serde_json::to_vec(c).unwrap();
            prop_assert_eq!(&parse_json_record(&again, &opts()).unwrap(), c);
        }
        Ok(())
    })
    .unwrap();
    assert!(tally.report() > 0);
}

#[test]
fn fuzz_csv_reader() {
    fuzz_shape("csv reader", &[Shape::Csv, Shape::Tsv], 8_000);
}

#[test]
fn fuzz_api_envelope_reader() {
    fuzz_shape("envelope reader", &[Shape::Envelope], 8_000);
}

#[test]
fn fuzz_json_array_and_lines_readers() {
    fuzz_shape("json readers", &[Shape::Array, Shape::Lines], 8_000);
}
