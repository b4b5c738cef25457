//! Streaming readers: JSON array, JSON Lines, CFPB API envelope and CSV export, with bounded
//! memory (one record at a time; a record is never buffered beyond `max_record_bytes`).
//!
//! * [`RawRecords`] frames the input into one JSON object per record ([`RawRecord`]): CSV rows
//!   are transcoded to a JSON object with the CFPB JSON field names (values as strings, absent
//!   columns as `null`), and API hits (`{"_source": {…}}`) are unwrapped to their `_source`, so
//!   every source looks alike downstream and a dead-letter record can keep the record's content.
//!   A framing error (truncated array, junk between elements, bad CSV row) is an `Err` for that
//!   record; the iterator continues where it can and ends where it cannot.
//! * [`Complaints`] = [`RawRecords`] + [`parse_json_record`] + duplicate-id detection.
//!
//! ```
//! use complaintflow_datasets::reader::{Complaints, Format};
//! use complaintflow_datasets::{ErrorKind, ValidationOptions};
//! let input = br#"[{"complaint_id":"1","date_received":"2019-09-24"},
//!   42,
//!   {"complaint_id":"1","date_received":"2019-09-25"},
//!   {"complaint_id":"2","date_received":"2019-09-26""#;
//! let results: Vec<_> =
//!     Complaints::new(&input[..], Format::Auto, &ValidationOptions::default()).collect();
//! assert_eq!(results.len(), 4);
//! assert_eq!(results[0].as_ref().unwrap().complaint_id.0, 1);
//! assert_eq!(results[1].as_ref().unwrap_err().kind, ErrorKind::NotAnObject);
//! assert_eq!(results[2].as_ref().unwrap_err().kind, ErrorKind::DuplicateId);
//! let truncated = results[3].as_ref().unwrap_err();
//! assert_eq!(truncated.kind, ErrorKind::TruncatedInput);
//! assert_eq!(truncated.location.line, Some(4));
//! ```

mod csv_rows;
mod scan;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{excerpt_bytes, DatasetError, ErrorKind, Location, RecordError};
use crate::parse::{parse_json_record, ValidationOptions};
use crate::schema::Complaint;

use csv_rows::CsvRows;
use scan::Scanner;

/// Buffer size of readers opened from a path (also the window used to detect the format).
pub const READ_BUFFER_BYTES: usize = 256 * 1024;

/// An input format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Detect: by extension (`.csv`/`.tsv` → CSV, `.jsonl`/`.ndjson` → JSON Lines), else by the
    /// first non-white-space byte: `[` → JSON array; `{` → JSON Lines when the first line is a
    /// complete object without a `"hits"` key, else API envelope; anything else → CSV.
    #[default]
    Auto,
    /// One JSON array of complaint objects (the CFPB JSON export). Elements that are API hits
    /// (`{"_source": {…}}`) are unwrapped.
    JsonArray,
    /// One JSON object per line; blank lines are skipped.
    JsonLines,
    /// A CFPB search-API response: every element of every `"hits": [ … ]` array, unwrapped to its
    /// `_source`.
    ApiEnvelope,
    /// The CFPB CSV export and its re-saved variants (comma or tab separated, header names in
    /// any of the accepted spellings, or no header row with the 18 canonical columns).
    Csv,
}

impl Format {
    /// The name accepted by [`Format::from_str`].
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::JsonArray => "json",
            Format::JsonLines => "jsonl",
            Format::ApiEnvelope => "api",
            Format::Csv => "csv",
        }
    }

    /// The format implied by a file name's extension, if any.
    pub fn from_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::JsonLines),
            _ => None,
        }
    }

    /// Detects the format from the first bytes of an input (after white space and a BOM).
    /// `None` for an empty (or all-white-space) head.
    pub fn sniff(head: &[u8]) -> Option<Format> {
        let head = head.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(head);
        let start = head
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
        let rest = head.get(start..)?;
        match rest.first()? {
            b'[' => Some(Format::JsonArray),
            b'{' => {
                let line = match memchr::memchr(b'\n', rest) {
                    Some(n) => rest.get(..n)?,
                    None => rest,
                };
                let has_hits = memchr::memmem::find(line, b"\"hits\"").is_some();
                let complete = line.trim_ascii_end().ends_with(b"}");
                Some(if complete && !has_hits {
                    Format::JsonLines
                } else {
                    Format::ApiEnvelope
                })
            }
            _ => Some(Format::Csv),
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Format::Auto),
            "json" | "json-array" | "array" => Ok(Format::JsonArray),
            "jsonl" | "json-lines" | "ndjson" => Ok(Format::JsonLines),
            "api" | "api-envelope" | "envelope" => Ok(Format::ApiEnvelope),
            "csv" | "tsv" => Ok(Format::Csv),
            other => Err(format!(
                "unknown input format {other:?}: expected auto, json, jsonl, api or csv"
            )),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One record's bytes: a single JSON object (CSV rows already transcoded), and where it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    /// The JSON object.
    pub bytes: Vec<u8>,
    /// Where the record starts in its input.
    pub location: Location,
}

impl RawRecord {
    /// Parses and validates the record, stamping errors with its location.
    pub fn parse(&self, opts: &ValidationOptions) -> Result<Complaint, RecordError> {
        parse_json_record(&self.bytes, opts).map_err(|e| e.at(self.location))
    }
}

enum JsonMode {
    Array,
    Lines,
    Envelope,
}

enum ArrayState {
    /// Before the opening `[`.
    Start,
    /// Inside the array.
    Elements,
}

enum State<R> {
    Start(R),
    Json {
        scan: Scanner<R>,
        mode: JsonMode,
        array: ArrayState,
        /// Envelope mode: inside a `hits` array (else scanning for one).
        in_hits: bool,
        found_hits: bool,
    },
    Csv(Box<CsvRows<R>>),
    Done,
}

/// Iterator over the records of an input, one JSON object each. See the [module docs](self).
pub struct RawRecords<R> {
    state: State<R>,
    format: Format,
    hint: Option<Format>,
    max_record_bytes: usize,
    index: u64,
}

impl RawRecords<BufReader<File>> {
    /// Opens a file. With [`Format::Auto`] the extension is consulted before the content.
    pub fn from_path(
        path: impl AsRef<Path>,
        format: Format,
        max_record_bytes: usize,
    ) -> Result<Self, DatasetError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
        let mut r = RawRecords::new(
            BufReader::with_capacity(READ_BUFFER_BYTES, file),
            format,
            max_record_bytes,
        );
        if format == Format::Auto {
            r.hint = Format::from_extension(path);
        }
        Ok(r)
    }
}

impl<R: BufRead> RawRecords<R> {
    /// Frames `reader` (use a `BufReader` of at least a few KiB for [`Format::Auto`], which
    /// sniffs the buffered head). Records longer than `max_record_bytes` are skipped with an
    /// [`ErrorKind::RecordTooLarge`] error, never buffered whole.
    pub fn new(reader: R, format: Format, max_record_bytes: usize) -> Self {
        RawRecords {
            state: State::Start(reader),
            format,
            hint: None,
            max_record_bytes,
            index: 0,
        }
    }

    /// The format being read (the detected one once reading started with [`Format::Auto`]).
    pub fn format(&self) -> Format {
        self.format
    }

    fn loc(&self, line: u64, offset: u64) -> Location {
        Location::record(self.index)
            .with_line(line)
            .with_offset(offset)
    }

    /// Yields an error for the current record index and advances it.
    fn err(&mut self, kind: ErrorKind, msg: String, line: u64, offset: u64) -> RecordError {
        let e = RecordError::new(kind, msg).at(self.loc(line, offset));
        self.index += 1;
        e
    }

    fn start(&mut self, reader: R) -> Option<Result<RawRecord, RecordError>> {
        let mut scan = Scanner::new(reader);
        if let Err(e) = scan.skip_bom() {
            return Some(Err(RecordError::io(&e, Location::record(self.index))));
        }
        let format = match (self.format, self.hint) {
            (Format::Auto, Some(h)) => h,
            (Format::Auto, None) => {
                // Skip leading white space so the sniffed window starts at the content.
                let sniffed = match scan.skip_ws() {
                    Err(e) => return Some(Err(RecordError::io(&e, Location::record(0)))),
                    Ok(None) => None,
                    Ok(Some(_)) => match scan.buffer() {
                        Ok(head) => Format::sniff(head),
                        Err(e) => return Some(Err(RecordError::io(&e, Location::record(0)))),
                    },
                };
                match sniffed {
                    Some(f) => f,
                    None => {
                        self.state = State::Done;
                        let (l, o) = (scan.line, scan.offset);
                        return Some(Err(self.err(
                            ErrorKind::WrongFormat,
                            "empty input: expected a JSON array, JSON Lines, an API envelope or a CSV file".into(),
                            l,
                            o,
                        )));
                    }
                }
            }
            (f, _) => f,
        };
        self.format = format;
        self.state = match format {
            Format::Csv => {
                let (line, offset) = (scan.line, scan.offset);
                State::Csv(Box::new(CsvRows::new(
                    scan.r,
                    line,
                    offset,
                    self.max_record_bytes,
                )))
            }
            Format::JsonLines => State::Json {
                scan,
                mode: JsonMode::Lines,
                array: ArrayState::Elements,
                in_hits: false,
                found_hits: false,
            },
            Format::ApiEnvelope => State::Json {
                scan,
                mode: JsonMode::Envelope,
                array: ArrayState::Elements,
                in_hits: false,
                found_hits: false,
            },
            Format::JsonArray | Format::Auto => State::Json {
                scan,
                mode: JsonMode::Array,
                array: ArrayState::Start,
                in_hits: false,
                found_hits: false,
            },
        };
        self.next()
    }
}

/// Extracts `_source` from an API hit, if the element is one.
fn unwrap_source(bytes: Vec<u8>) -> Vec<u8> {
    if memchr::memmem::find(&bytes, b"\"_source\"").is_none() {
        return bytes;
    }
    #[derive(Deserialize)]
    struct Hit<'a> {
        #[serde(rename = "_source", borrow)]
        source: Option<&'a serde_json::value::RawValue>,
    }
    match serde_json::from_slice::<Hit<'_>>(&bytes) {
        Ok(Hit { source: Some(s) }) => s.get().as_bytes().to_vec(),
        _ => bytes,
    }
}

impl<R: BufRead> Iterator for RawRecords<R> {
    type Item = Result<RawRecord, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        let max = self.max_record_bytes;
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => None,
            State::Start(r) => self.start(r),
            State::Csv(mut rows) => {
                let item = rows.next_row(self.index);
                if item.is_some() {
                    self.index += 1;
                    self.state = State::Csv(rows);
                }
                item
            }
            State::Json {
                mut scan,
                mode,
                mut array,
                mut in_hits,
                mut found_hits,
            } => {
                let item = self.next_json(
                    &mut scan,
                    &mode,
                    &mut array,
                    &mut in_hits,
                    &mut found_hits,
                    max,
                );
                if let Some((_, true)) = item {
                    self.state = State::Json {
                        scan,
                        mode,
                        array,
                        in_hits,
                        found_hits,
                    };
                }
                item.map(|(r, _)| r)
            }
        }
    }
}

type Step = Option<(Result<RawRecord, RecordError>, bool)>;

impl<R: BufRead> RawRecords<R> {
    /// One JSON-framed item; the bool says whether reading can continue after it.
    fn next_json(
        &mut self,
        scan: &mut Scanner<R>,
        mode: &JsonMode,
        array: &mut ArrayState,
        in_hits: &mut bool,
        found_hits: &mut bool,
        max: usize,
    ) -> Step {
        macro_rules! io_try {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => {
                        let (l, o) = (scan.line, scan.offset);
                        return Some((
                            Err(self.err(ErrorKind::Io, format!("read failed: {e}"), l, o)),
                            false,
                        ));
                    }
                }
            };
        }
        match mode {
            JsonMode::Lines => loop {
                let (line, offset) = (scan.line, scan.offset);
                let mut buf = Vec::new();
                let total = io_try!(scan.read_line(&mut buf, max.saturating_add(1)))?;
                if buf.iter().all(|b| b.is_ascii_whitespace()) && total as usize <= max {
                    continue;
                }
                if total > max as u64 {
                    return Some((
                        Err(self.err(
                            ErrorKind::RecordTooLarge,
                            format!(
                                "line is {total} bytes, more than max_record_bytes = {max}; skipped (starts {})",
                                excerpt_bytes(&buf)
                            ),
                            line,
                            offset,
                        )),
                        true,
                    ));
                }
                let trimmed_start = buf
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(0);
                if trimmed_start > 0 {
                    buf.drain(..trimmed_start);
                }
                while buf.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    buf.pop();
                }
                let loc = self.loc(line, offset);
                self.index += 1;
                return Some((
                    Ok(RawRecord {
                        bytes: buf,
                        location: loc,
                    }),
                    true,
                ));
            },
            JsonMode::Array | JsonMode::Envelope => loop {
                let envelope = matches!(mode, JsonMode::Envelope);
                let next = io_try!(scan.skip_ws());
                let (line, offset) = (scan.line, scan.offset);
                if let ArrayState::Start = array {
                    match next {
                        Some(b'[') => {
                            io_try!(scan.bump());
                            *array = ArrayState::Elements;
                            continue;
                        }
                        Some(b) => {
                            return Some((
                                Err(self.err(
                                    ErrorKind::WrongFormat,
                                    format!(
                                        "expected a JSON array (`[`), found {:?}{}",
                                        b as char,
                                        if b == b'{' {
                                            "; for one object per line use format `jsonl`, for a search-API response `api`"
                                        } else {
                                            ""
                                        }
                                    ),
                                    line,
                                    offset,
                                )),
                                false,
                            ))
                        }
                        None => {
                            return Some((
                                Err(self.err(
                                    ErrorKind::WrongFormat,
                                    "empty input: expected a JSON array".into(),
                                    line,
                                    offset,
                                )),
                                false,
                            ))
                        }
                    }
                }
                if envelope && !*in_hits {
                    // Scan for a `"hits": [` key outside strings.
                    match next {
                        None => {
                            if *found_hits {
                                return None;
                            }
                            return Some((
                                Err(self.err(
                                    ErrorKind::WrongFormat,
                                    "no `\"hits\": [...]` array found: not a CFPB search-API response (use format `json` or `jsonl`)".into(),
                                    line,
                                    offset,
                                )),
                                false,
                            ));
                        }
                        Some(b'"') => {
                            let mut key = Vec::new();
                            let v = io_try!(scan.read_value(&mut key, 16));
                            if !v.complete {
                                continue;
                            }
                            if io_try!(scan.skip_ws()) == Some(b':') {
                                io_try!(scan.bump());
                                if key == b"\"hits\"" && io_try!(scan.skip_ws()) == Some(b'[') {
                                    io_try!(scan.bump());
                                    *in_hits = true;
                                    *found_hits = true;
                                }
                            }
                            continue;
                        }
                        Some(_) => {
                            io_try!(scan.bump());
                            continue;
                        }
                    }
                }
                match next {
                    None => {
                        return Some((
                            Err(self.err(
                                ErrorKind::TruncatedInput,
                                "input ends inside the array (no closing `]`)".into(),
                                line,
                                offset,
                            )),
                            false,
                        ))
                    }
                    Some(b',') => {
                        io_try!(scan.bump());
                        continue;
                    }
                    Some(b']') => {
                        io_try!(scan.bump());
                        if envelope {
                            *in_hits = false;
                            continue;
                        }
                        // Only white space may follow the array.
                        return match io_try!(scan.skip_ws()) {
                            None => None,
                            Some(_) => {
                                let (l, o) = (scan.line, scan.offset);
                                let mut junk = Vec::new();
                                let _ = scan.read_value(&mut junk, 64);
                                Some((
                                    Err(self.err(
                                        ErrorKind::WrongFormat,
                                        format!(
                                            "data after the end of the JSON array: {}",
                                            excerpt_bytes(&junk)
                                        ),
                                        l,
                                        o,
                                    )),
                                    false,
                                ))
                            }
                        };
                    }
                    Some(first) => {
                        let mut buf = Vec::new();
                        let v = io_try!(scan.read_value(&mut buf, max.saturating_add(1)));
                        if !v.complete {
                            return Some((
                                Err(self.err(
                                    ErrorKind::TruncatedInput,
                                    format!(
                                        "input ends inside a record after {} bytes (starts {})",
                                        v.total,
                                        excerpt_bytes(&buf)
                                    ),
                                    line,
                                    offset,
                                )),
                                false,
                            ));
                        }
                        if v.total > max as u64 {
                            return Some((
                                Err(self.err(
                                    ErrorKind::RecordTooLarge,
                                    format!(
                                        "record is {} bytes, more than max_record_bytes = {max}; skipped (starts {})",
                                        v.total,
                                        excerpt_bytes(&buf)
                                    ),
                                    line,
                                    offset,
                                )),
                                true,
                            ));
                        }
                        if first != b'{' {
                            return Some((
                                Err(self.err(
                                    ErrorKind::NotAnObject,
                                    format!(
                                        "array element is not an object: {}",
                                        excerpt_bytes(&buf)
                                    ),
                                    line,
                                    offset,
                                )),
                                true,
                            ));
                        }
                        let loc = self.loc(line, offset);
                        self.index += 1;
                        return Some((
                            Ok(RawRecord {
                                bytes: unwrap_source(buf),
                                location: loc,
                            }),
                            true,
                        ));
                    }
                }
            },
        }
    }
}

/// Detects repeated complaint ids (the second and later occurrences are errors).
#[derive(Debug, Default)]
pub struct DuplicateFilter {
    seen: HashMap<u64, Location>,
}

impl DuplicateFilter {
    /// An empty filter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `c` as seen at `location`; an [`ErrorKind::DuplicateId`] error (naming where it
    /// was first seen) if its id was seen before.
    pub fn check(&mut self, c: &Complaint, location: Location) -> Result<(), RecordError> {
        match self.seen.entry(c.complaint_id.0) {
            std::collections::hash_map::Entry::Occupied(first) => Err(RecordError::new(
                ErrorKind::DuplicateId,
                format!(
                    "complaint_id {} already seen at {}",
                    c.complaint_id,
                    first.get()
                ),
            )
            .at(location)
            .with_id(c.complaint_id.to_string())),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(location);
                Ok(())
            }
        }
    }

    /// Distinct ids seen.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Iterator of validated complaints: [`RawRecords`] + [`parse_json_record`] + [`DuplicateFilter`].
pub struct Complaints<R> {
    raw: RawRecords<R>,
    opts: ValidationOptions,
    dups: DuplicateFilter,
}

impl<R: BufRead> Complaints<R> {
    /// Reads complaints from `reader` in `format`.
    pub fn new(reader: R, format: Format, opts: &ValidationOptions) -> Self {
        Complaints::from_raw(RawRecords::new(reader, format, opts.max_record_bytes), opts)
    }

    /// Parses the records of an existing [`RawRecords`].
    pub fn from_raw(raw: RawRecords<R>, opts: &ValidationOptions) -> Self {
        Complaints {
            raw,
            opts: opts.clone(),
            dups: DuplicateFilter::new(),
        }
    }

    /// The format being read.
    pub fn format(&self) -> Format {
        self.raw.format()
    }
}

impl<R: BufRead> Iterator for Complaints<R> {
    type Item = Result<Complaint, RecordError>;
    fn next(&mut self) -> Option<Self::Item> {
        let raw = match self.raw.next()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        Some(raw.parse(&self.opts).and_then(|c| {
            self.dups.check(&c, raw.location)?;
            Ok(c)
        }))
    }
}

/// Opens `path` and reads its complaints (see [`Format::Auto`] for detection).
pub fn read_path(
    path: impl AsRef<Path>,
    format: Format,
    opts: &ValidationOptions,
) -> Result<Complaints<BufReader<File>>, DatasetError> {
    let raw = RawRecords::from_path(path, format, opts.max_record_bytes)?;
    Ok(Complaints::from_raw(raw, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(input: &str, format: Format) -> Vec<Result<RawRecord, RecordError>> {
        RawRecords::new(
            std::io::BufReader::with_capacity(7, input.as_bytes()),
            format,
            1000,
        )
        .collect()
    }

    #[test]
    fn format_from_str_and_sniff() {
        assert_eq!("JSONL".parse::<Format>(), Ok(Format::JsonLines));
        assert_eq!("api".parse::<Format>(), Ok(Format::ApiEnvelope));
        assert!("xml".parse::<Format>().is_err());
        assert_eq!(Format::sniff(b"  \n[{"), Some(Format::JsonArray));
        assert_eq!(
            Format::sniff(b"{\"a\":1}\n{\"a\":2}"),
            Some(Format::JsonLines)
        );
        assert_eq!(
            Format::sniff(b"{\n \"payload\": {"),
            Some(Format::ApiEnvelope)
        );
        assert_eq!(
            Format::sniff(b"{\"hits\":{\"hits\":[]}}"),
            Some(Format::ApiEnvelope)
        );
        assert_eq!(
            Format::sniff(b"\xEF\xBB\xBFDate received,Product"),
            Some(Format::Csv)
        );
        assert_eq!(Format::sniff(b" \n "), None);
    }

    #[test]
    fn array_elements_with_locations() {
        let r = raw("[\n {\"a\": \"x]}\"},\n {\"b\": [1,2]}\n]\n", Format::Auto);
        assert_eq!(r.len(), 2);
        let first = r[0].as_ref().unwrap();
        assert_eq!(first.bytes, b"{\"a\": \"x]}\"}");
        assert_eq!(
            first.location,
            Location::record(0).with_line(2).with_offset(3)
        );
        assert_eq!(r[1].as_ref().unwrap().location.line, Some(3));
    }

    #[test]
    fn oversized_record_is_skipped_and_reading_continues() {
        let big = format!("[{{\"n\":\"{}\"}},{{\"a\":1}}]", "x".repeat(5000));
        let r = raw(&big, Format::JsonArray);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].as_ref().unwrap_err().kind, ErrorKind::RecordTooLarge);
        assert_eq!(r[1].as_ref().unwrap().bytes, b"{\"a\":1}");
        assert_eq!(r[1].as_ref().unwrap().location.record, 1);
    }

    #[test]
    fn junk_after_array_and_object_instead_of_array() {
        let r = raw("[{\"a\":1}] xyz", Format::JsonArray);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].as_ref().unwrap_err().kind, ErrorKind::WrongFormat);
        let r = raw("{\"a\":1}", Format::JsonArray);
        assert_eq!(r.len(), 1);
        let e = r[0].as_ref().unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongFormat);
        assert!(e.message.contains("jsonl"));
    }

    #[test]
    fn json_lines_skip_blank_lines_and_keep_line_numbers() {
        let r = raw("{\"a\":1}\r\n\n  \n{\"a\":2}\nnot json", Format::Auto);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].as_ref().unwrap().bytes, b"{\"a\":1}");
        assert_eq!(r[1].as_ref().unwrap().location.line, Some(4));
        assert_eq!(r[2].as_ref().unwrap().bytes, b"not json");
    }

    #[test]
    fn envelope_unwraps_sources() {
        let input = r#"{"took":1,"aggs":{"x":{"buckets":[{"key":"hits"}]}},
          "hits":{"total":2,"hits":[{"_id":"1","_source":{"complaint_id":"1"}},
          {"_id":"2","_source":{"complaint_id":"2","tags":"\"hits\": ["}}]}}"#;
        let r = raw(input, Format::Auto);
        let bytes: Vec<String> = r
            .into_iter()
            .map(|x| String::from_utf8(x.unwrap().bytes).unwrap())
            .collect();
        assert_eq!(
            bytes,
            vec![
                r#"{"complaint_id":"1"}"#,
                r#"{"complaint_id":"2","tags":"\"hits\": ["}"#
            ]
        );
        let r = raw("{\n\"a\": 1}", Format::ApiEnvelope);
        assert_eq!(r[0].as_ref().unwrap_err().kind, ErrorKind::WrongFormat);
    }
}
