//! Malformed inputs: each gives a typed error naming the record / line, never a panic.

#![allow(clippy::unwrap_used)]

use std::io::Write;

use complaintflow_datasets::reader::{Complaints, Format, RawRecords};
use complaintflow_datasets::{parse_json_record, ErrorKind, RecordError, ValidationOptions};
use proptest::prelude::*;

const GOOD: &str = r#"{"complaint_id":"1","date_received":"2019-09-24","product":"Mortgage"}"#;

fn read(input: &[u8], format: Format) -> Vec<Result<u64, RecordError>> {
    Complaints::new(input, format, &ValidationOptions::default())
        .map(|r| r.map(|c| c.complaint_id.0))
        .collect()
}

fn only_error(results: &[Result<u64, RecordError>]) -> &RecordError {
    let errs: Vec<&RecordError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(errs.len(), 1, "{results:?}");
    errs[0]
}

#[test]
fn truncated_json_array() {
    let input = format!("[\n{GOOD},\n{{\"complaint_id\":\"2\",\"date_rec");
    let r = read(input.as_bytes(), Format::Auto);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].as_ref().unwrap(), &1);
    let e = only_error(&r);
    assert_eq!(e.kind, ErrorKind::TruncatedInput);
    assert_eq!(e.location.record, 1);
    assert_eq!(e.location.line, Some(3));

    // complete elements, but no closing bracket
    let r = read(format!("[{GOOD},").as_bytes(), Format::JsonArray);
    assert_eq!(only_error(&r).kind, ErrorKind::TruncatedInput);
}

#[test]
fn wrong_types() {
    let input = r#"[{"complaint_id":"1","date_received":"2019-09-24","timely":[1]},
{"complaint_id":true,"date_received":"2019-09-24"}]"#;
    let r = read(input.as_bytes(), Format::Auto);
    assert_eq!(r.len(), 2);
    for (i, x) in r.iter().enumerate() {
        let e = x.as_ref().unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongType);
        assert_eq!(e.location.record, i as u64);
        assert_eq!(e.location.line, Some(i as u64 + 1));
    }
    assert!(r[0].as_ref().unwrap_err().message.contains("timely"));
    assert!(r[1].as_ref().unwrap_err().message.contains("complaint_id"));
}

#[test]
fn invalid_utf8_in_json_and_csv() {
    let mut input =
        b"{\"complaint_id\":\"1\",\"date_received\":\"2019-09-24\",\"company\":\"A\xC3\x28\"}\n"
            .to_vec();
    input.extend_from_slice(GOOD.replace("\"1\"", "\"2\"").as_bytes());
    let r = read(&input, Format::JsonLines);
    assert_eq!(r.len(), 2);
    let e = only_error(&r);
    assert_eq!(e.kind, ErrorKind::InvalidUtf8);
    assert_eq!(e.location.line, Some(1));
    assert_eq!(r[1].as_ref().unwrap(), &2);

    let csv = b"Complaint ID,Date received,Company\n1,2019-09-24,Acme\n2,2019-09-24,B\xFFank\n";
    let r = read(csv, Format::Csv);
    let e = only_error(&r);
    assert_eq!(e.kind, ErrorKind::InvalidUtf8);
    assert_eq!(e.location.line, Some(3));
    assert!(e.message.contains("company"), "{e}");
}

#[test]
fn twenty_megabyte_narrative_is_rejected_without_buffering_it() {
    let narrative = "x".repeat(20 << 20);
    let input = format!(
        "[{{\"complaint_id\":\"1\",\"date_received\":\"2019-09-24\",\"complaint_what_happened\":\"{narrative}\"}},\n{}]",
        GOOD.replace("\"1\"", "\"2\"")
    );
    let r = read(input.as_bytes(), Format::Auto);
    assert_eq!(r.len(), 2);
    let e = only_error(&r);
    assert_eq!(e.kind, ErrorKind::RecordTooLarge);
    assert_eq!(e.location.record, 0);
    assert!(e.message.len() < 1000);
    assert_eq!(r[1].as_ref().unwrap(), &2);

    // Under a record limit that admits it, the narrative limit applies.
    let opts = ValidationOptions {
        max_record_bytes: 64 << 20,
        ..ValidationOptions::default()
    };
    let e = parse_json_record(&input.as_bytes()[1..input.find(",\n").unwrap()], &opts).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NarrativeTooLong);
    assert_eq!(e.complaint_id.as_deref(), Some("1"));
}

#[test]
fn empty_file() {
    for format in [
        Format::Auto,
        Format::JsonArray,
        Format::ApiEnvelope,
        Format::Csv,
    ] {
        let r = read(b"", format);
        assert_eq!(r.len(), 1, "{format}");
        assert_eq!(only_error(&r).kind, ErrorKind::WrongFormat, "{format}");
    }
    // An empty JSON Lines stream is simply no records, and `[]` is an empty array.
    assert!(read(b"", Format::JsonLines).is_empty());
    assert!(read(b" [ ] ", Format::Auto).is_empty());
}

#[test]
fn object_instead_of_array() {
    let r = read(
        format!("{{\n{}\n}}", &GOOD[1..GOOD.len() - 1]).as_bytes(),
        Format::JsonArray,
    );
    let e = only_error(&r);
    assert_eq!(e.kind, ErrorKind::WrongFormat);
    assert_eq!(e.location.line, Some(1));
    // Auto: a pretty-printed object is taken for an API envelope, and it has no hits.
    let r = read(
        format!("{{\n{}\n}}", &GOOD[1..GOOD.len() - 1]).as_bytes(),
        Format::Auto,
    );
    assert_eq!(only_error(&r).kind, ErrorKind::WrongFormat);
    // Auto: a one-line object is JSON Lines with one record.
    assert_eq!(read(GOOD.as_bytes(), Format::Auto), vec![Ok(1)]);
}

#[test]
fn csv_missing_column() {
    let r = read(
        b"Date received,Product\n2019-09-24,Mortgage\n",
        Format::Auto,
    );
    let e = only_error(&r);
    assert_eq!(e.kind, ErrorKind::CsvMissingColumn);
    assert!(e.message.contains("Complaint ID"));
    assert_eq!(e.location.line, Some(1));
}

#[test]
fn junk_between_elements() {
    let input = format!(
        "[{GOOD}, \"junk\", 17, [1,2], {}]",
        GOOD.replace("\"1\"", "\"3\"")
    );
    let r = read(input.as_bytes(), Format::Auto);
    assert_eq!(r.len(), 5);
    assert_eq!(r[0].as_ref().unwrap(), &1);
    for e in &r[1..4] {
        assert_eq!(e.as_ref().unwrap_err().kind, ErrorKind::NotAnObject);
    }
    assert_eq!(r[4].as_ref().unwrap(), &3);
}

#[test]
fn reads_from_a_file_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.jsonl");
    let mut f = std::fs::File::create(&p).unwrap();
    writeln!(f, "{GOOD}").unwrap();
    writeln!(f, "{}", GOOD.replace("2019-09-24", "24/09/2019")).unwrap();
    drop(f);
    let r: Vec<_> =
        complaintflow_datasets::read_path(&p, Format::Auto, &ValidationOptions::default())
            .unwrap()
            .collect();
    assert_eq!(r.len(), 2);
    assert!(r[0].is_ok());
    // same id again: its date is bad, which is reported before the duplicate
    assert_eq!(r[1].as_ref().unwrap_err().kind, ErrorKind::UnparseableDate);
    assert!(complaintflow_datasets::read_path(
        dir.path().join("missing.json"),
        Format::Auto,
        &ValidationOptions::default()
    )
    .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let opts = ValidationOptions { max_record_bytes: 128, ..ValidationOptions::default() };
        let _ = parse_json_record(&bytes, &opts);
        for format in [Format::Auto, Format::JsonArray, Format::JsonLines, Format::ApiEnvelope, Format::Csv] {
            let n = RawRecords::new(&bytes[..], format, 128).take(10_000).count();
            prop_assert!(n < 10_000);
            let _ = Complaints::new(&bytes[..], format, &opts).take(10_000).count();
        }
    }

    #[test]
    fn json_shaped_bytes_never_panic(s in r#"[\[\]{}",:\\ a-z0-9\n-]{0,200}"#) {
        let opts = ValidationOptions::default();
        let _ = parse_json_record(s.as_bytes(), &opts);
        for format in [Format::Auto, Format::JsonArray, Format::JsonLines, Format::ApiEnvelope] {
            let n = Complaints::new(s.as_bytes(), format, &opts).take(10_000).count();
            prop_assert!(n < 10_000);
        }
    }
}
