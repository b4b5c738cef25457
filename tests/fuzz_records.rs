//! Fuzzing the record parser: real CFPB records from the bundled sample, mutated at the byte
//! level and field by field, through `parse_json_record` (datasets) and the streaming
//! operator's `parse_raw` (operators).
//!
//! Properties: no panic; a rejection is a typed [`RecordError`] whose kind is one of
//! [`ErrorKind::ALL`], named in its message, and the operator's dead letter carries the same
//! kind and at most `DEAD_LETTER_RAW_BYTES` of the record; an accepted record re-serialized
//! parses back to the same complaint; and a single targeted mutation of a valid record
//! yields exactly the kind it should (a missing id is `missing_field`, a bad state
//! `unknown_state`, …). `CF_FUZZ_CASES` scales the runs (see `fuzz_support`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz_support;

use complaintflow_datasets::{parse_json_record, ErrorKind, RecordError, ValidationOptions};
use complaintflow_operators::parse::parse_raw;
use complaintflow_operators::record::{Origin, RawInput, DEAD_LETTER_RAW_BYTES};
use fuzz_support::{
    apply_bytes, apply_fields, byte_op, cases, field_op, real_records, runner, Tally,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

fn opts() -> ValidationOptions {
    // Small limits so mutations reach them.
    ValidationOptions {
        max_narrative_bytes: 6_000,
        max_record_bytes: 16_000,
        ..ValidationOptions::default()
    }
}

/// Checks one input through both parsers; returns the outcome's kind (`None` = accepted).
fn check(bytes: &[u8], opts: &ValidationOptions) -> Result<Option<ErrorKind>, TestCaseError> {
    let direct = parse_json_record(bytes, opts);
    let op = parse_raw(RawInput::new(bytes.to_vec(), Origin::file("fuzz", 0)), opts);
    match (&direct, &op) {
        (Ok(c), Ok(p)) => {
            prop_assert_eq!(c, &p.complaint);
            // Accepted records are stable: written back and read again, the same complaint.
            let again = serde_json::to_vec(c).unwrap();
            let back = parse_json_record(&again, opts);
            prop_assert!(back.is_ok(), "re-serialized complaint rejected: {:?}", back);
            prop_assert_eq!(&back.unwrap(), c);
            Ok(None)
        }
        (Err(e), Err(d)) => {
            typed(e)?;
            prop_assert_eq!(d.kind.as_str(), e.kind.as_str());
            prop_assert!(d.raw.len() <= DEAD_LETTER_RAW_BYTES);
            prop_assert!(!d.message.is_empty());
            Ok(Some(e.kind))
        }
        _ => Err(TestCaseError::fail(format!(
            "the parsers disagree: datasets {direct:?}, operators {:?}",
            op.as_ref().map(|_| ()).map_err(|d| d.kind.clone())
        ))),
    }
}

/// A rejection is one of the typed kinds and says which.
fn typed(e: &RecordError) -> Result<(), TestCaseError> {
    prop_assert!(ErrorKind::ALL.contains(&e.kind));
    prop_assert!(
        !matches!(e.kind, ErrorKind::Io | ErrorKind::DuplicateId),
        "a single record cannot be {:?}",
        e.kind
    );
    prop_assert!(
        !e.message.trim().is_empty(),
        "{:?} without a message",
        e.kind
    );
    prop_assert!(
        e.to_string().contains(e.kind.as_str()),
        "{} does not name {}",
        e,
        e.kind
    );
    Ok(())
}

#[test]
fn fuzz_record_parser_bytes() {
    let recs = real_records();
    let opts = opts();
    let tally = Tally::new("record parser (byte mutations)");
    let strategy = (0..recs.len(), prop::collection::vec(byte_op(), 1..8));
    runner(cases("records", 30_000))
        .run(&strategy, |(i, ops)| {
            let mut bytes = serde_json::to_vec(&recs[i]).unwrap();
            apply_bytes(&mut bytes, &ops);
            match check(&bytes, &opts)? {
                None => tally.ok(),
                Some(k) => tally.rejected(k.as_str()),
            }
            Ok(())
        })
        .unwrap();
    assert!(tally.report() > 0);
}

#[test]
fn fuzz_record_parser_fields() {
    let recs = real_records();
    let opts = opts();
    let tally = Tally::new("record parser (field mutations)");
    let strategy = (
        0..recs.len(),
        prop::collection::vec(field_op(), 1..5),
        prop::collection::vec(byte_op(), 0..2),
    );
    runner(cases("fields", 30_000))
        .run(&strategy, |(i, fops, bops)| {
            let mut r = recs[i].clone();
            apply_fields(&mut r, &fops);
            let mut bytes = serde_json::to_vec(&r).unwrap();
            apply_bytes(&mut bytes, &bops);
            match check(&bytes, &opts)? {
                None => tally.ok(),
                Some(k) => tally.rejected(k.as_str()),
            }
            Ok(())
        })
        .unwrap();
    assert!(tally.report() > 0);
}

/// One targeted change of a valid record and the kind it must give.
#[derive(Clone, Debug)]
enum Targeted {
    RemoveId,
    EmptyId(usize),
    RemoveDate,
    ImpossibleDay(u32),
    LetterDate(String),
    UnknownState(String),
    ObjectProduct,
    ArrayCompany,
    BadYesNo(String),
    UnknownTag(String),
    LongNarrative(usize),
    TooLarge,
    DuplicateField(usize),
    InvalidUtf8(u8),
    NotAnObject(usize),
    SentBeforeReceived(u32),
    Truncated(usize),
}

fn targeted() -> impl Strategy<Value = Targeted> {
    prop_oneof![
        Just(Targeted::RemoveId),
        (0usize..4).prop_map(Targeted::EmptyId),
        Just(Targeted::RemoveDate),
        (0u32..6).prop_map(Targeted::ImpossibleDay),
        "[g-z]{3,12}".prop_map(Targeted::LetterDate),
        "[0-9][A-Z0-9]{1,3}".prop_map(Targeted::UnknownState),
        Just(Targeted::ObjectProduct),
        Just(Targeted::ArrayCompany),
        "(Maybe|Perhaps|Yess|Nope|[q-z]{4,8})".prop_map(Targeted::BadYesNo),
        "Veteran|Student|[q-z]{5,9}".prop_map(Targeted::UnknownTag),
        (6_001usize..12_000).prop_map(Targeted::LongNarrative),
        Just(Targeted::TooLarge),
        (0usize..5).prop_map(Targeted::DuplicateField),
        (0x80u8..=0xff).prop_map(Targeted::InvalidUtf8),
        (0usize..4).prop_map(Targeted::NotAnObject),
        (2u32..400).prop_map(Targeted::SentBeforeReceived),
        any::<usize>().prop_map(Targeted::Truncated),
    ]
}

/// The record's bytes after the change, and the kinds allowed.
fn apply_targeted(r: &serde_json::Map<String, Value>, t: &Targeted) -> (Vec<u8>, Vec<ErrorKind>) {
    use ErrorKind as K;
    let mut r = r.clone();
    let enc = |r: &serde_json::Map<String, Value>| serde_json::to_vec(r).unwrap();
    match t {
        Targeted::RemoveId => {
            r.remove("complaint_id");
            (enc(&r), vec![K::MissingField])
        }
        Targeted::EmptyId(k) => {
            r["complaint_id"] = [json!(null), json!(""), json!("None"), json!("null")][*k].clone();
            (enc(&r), vec![K::MissingField])
        }
        Targeted::RemoveDate => {
            r.remove("date_received");
            (enc(&r), vec![K::MissingField])
        }
        Targeted::ImpossibleDay(k) => {
            let d = [
                "2019-02-30",
                "2019-13-01",
                "2019-00-10",
                "2019-04-31",
                "02/30/2019",
                "2021-02-29",
            ][*k as usize];
            r["date_received"] = json!(d);
            (enc(&r), vec![K::UnparseableDate])
        }
        Targeted::LetterDate(s) => {
            r["date_received"] = json!(s);
            (enc(&r), vec![K::UnparseableDate])
        }
        Targeted::UnknownState(s) => {
            r["state"] = json!(s);
            (enc(&r), vec![K::UnknownState])
        }
        Targeted::ObjectProduct => {
            r["product"] = json!({"name": "Mortgage"});
            (enc(&r), vec![K::WrongType])
        }
        Targeted::ArrayCompany => {
            r["company"] = json!(["A", "B"]);
            (enc(&r), vec![K::WrongType])
        }
        Targeted::BadYesNo(s) => {
            r["timely"] = json!(s);
            (enc(&r), vec![K::BadYesNo])
        }
        Targeted::UnknownTag(s) => {
            r["tags"] = json!(s);
            (enc(&r), vec![K::UnknownTag])
        }
        Targeted::LongNarrative(n) => {
            r["complaint_what_happened"] = json!("x".repeat(*n));
            (enc(&r), vec![K::NarrativeTooLong])
        }
        Targeted::TooLarge => {
            r["company"] = json!("y".repeat(20_000));
            (enc(&r), vec![K::RecordTooLarge])
        }
        Targeted::DuplicateField(k) => {
            // The same field twice, under the same or another accepted spelling.
            let extra = [
                "\"product\":\"Mortgage\",",
                "\"Product\":\"Mortgage\",",
                "\"Complaint ID\":\"5\",",
                "\"DATE_RECEIVED\":\"2019-01-01\",",
                "\"zipcode\":\"12345\",",
            ][*k];
            let want = match *k {
                0 | 1 => "product",
                2 => "complaint_id",
                3 => "date_received",
                _ => "zip_code",
            };
            if !r.contains_key(want) {
                r.insert(want.to_string(), json!("present"));
            }
            let mut b = enc(&r);
            b.splice(1..1, extra.bytes());
            (b, vec![K::DuplicateField])
        }
        Targeted::InvalidUtf8(byte) => {
            r["company"] = json!("Bank OF_UTF8_HOLE");
            let mut b = enc(&r);
            let at = memchr_find(&b, b"OF_UTF8_HOLE").unwrap();
            b[at] = *byte;
            (b, vec![K::InvalidUtf8])
        }
        Targeted::NotAnObject(k) => {
            let b = [json!([r.clone()]), json!(42), json!("record"), json!(null)][*k].to_string();
            (b.into_bytes(), vec![K::NotAnObject])
        }
        Targeted::SentBeforeReceived(days) => {
            r["date_received"] = json!("2020-06-15");
            let sent = chrono::NaiveDate::from_ymd_opt(2020, 6, 15).unwrap()
                - chrono::Duration::days(i64::from(*days));
            r["date_sent_to_company"] = json!(sent.to_string());
            (enc(&r), vec![K::SentBeforeReceived])
        }
        Targeted::Truncated(p) => {
            let mut b = enc(&r);
            let cut = p % (b.len() - 1); // at least the last `}` goes
            b.truncate(cut);
            (b, vec![K::MalformedJson, K::TruncatedInput, K::NotAnObject])
        }
    }
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn fuzz_record_parser_targeted_kinds() {
    let recs = real_records();
    let opts = opts();
    let tally = Tally::new("record parser (targeted, exact kinds)");
    let strategy = (0..recs.len(), targeted());
    runner(cases("targeted", 20_000))
        .run(&strategy, |(i, t)| {
            // The record itself is valid (the sample has no bad records under these options,
            // except narratives over the small limit: those are skipped).
            let base = serde_json::to_vec(&recs[i]).unwrap();
            if parse_json_record(&base, &opts).is_err() {
                tally.rejected("skipped_base_record");
                return Ok(());
            }
            let (bytes, want) = apply_targeted(&recs[i], &t);
            match check(&bytes, &opts)? {
                None => {
                    return Err(TestCaseError::fail(format!(
                        "{t:?} was accepted, want {want:?}"
                    )))
                }
                Some(k) => {
                    prop_assert!(want.contains(&k), "{:?} gave {:?}, want {:?}", t, k, want);
                    tally.rejected(k.as_str());
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(tally.report() > 0);
}

#[test]
fn every_real_record_is_accepted_and_stable() {
    let opts = ValidationOptions::default();
    for r in real_records() {
        let b = serde_json::to_vec(r).unwrap();
        assert_eq!(check(&b, &opts).unwrap(), None, "{r:?}");
    }
}
