//! Typed, per-record errors.
//!
//! Every way a record can be bad has an [`ErrorKind`] (a stable snake_case name, used as a
//! Prometheus label and in dead-letter records) and a [`RecordError`] that says what was wrong
//! (naming the field and the offending value), where ([`Location`]) and, when it could be read,
//! which complaint.
//!
//! ```
//! use complaintflow_datasets::error::{ErrorKind, Location, RecordError};
//! let e = RecordError::new(ErrorKind::BadYesNo, "field `timely`: expected Yes/No/N/A, got \"maybe\"")
//!     .at(Location::record(3).with_line(5));
//! assert_eq!(e.kind.as_str(), "bad_yes_no");
//! assert!(e.to_string().contains("record 3"));
//! assert!(e.to_string().contains("line 5"));
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest value excerpt quoted in an error message, in bytes.
pub const MAX_EXCERPT_BYTES: usize = 120;

/// What kind of problem a record has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The bytes are not valid JSON (syntax error).
    MalformedJson,
    /// The input ended in the middle of a record or before the enclosing array was closed.
    TruncatedInput,
    /// A field has a JSON type that cannot hold its value (e.g. an object as `product`).
    WrongType,
    /// A required field (`complaint_id`, `date_received`) is absent or empty.
    MissingField,
    /// The record is not valid UTF-8.
    InvalidUtf8,
    /// A date field is in no supported format, or names a day that does not exist.
    UnparseableDate,
    /// `date_sent_to_company` is earlier than `date_received`.
    SentBeforeReceived,
    /// `state` is not a known US state / territory / military code.
    UnknownState,
    /// `timely` / `consumer_disputed` is not Yes / No / N/A (or a known spelling of them).
    BadYesNo,
    /// `tags` holds a tag other than `Servicemember` / `Older American`.
    UnknownTag,
    /// The narrative is longer than `ValidationOptions::max_narrative_bytes`.
    NarrativeTooLong,
    /// The record is larger than `ValidationOptions::max_record_bytes`.
    RecordTooLarge,
    /// A complaint id seen before in the same input.
    DuplicateId,
    /// The same field appears twice in one record (possibly under two of its accepted names).
    DuplicateField,
    /// A CSV input lacks a required column.
    CsvMissingColumn,
    /// A CSV row cannot be read (wrong number of fields, bad quoting).
    CsvMalformed,
    /// A JSON value where a record was expected is not an object.
    NotAnObject,
    /// The input as a whole is not in the expected format (an object where a JSON array was
    /// expected, an API envelope without a `hits` array, an empty input, data after the array).
    WrongFormat,
    /// Reading the input failed.
    Io,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 19] = [
        ErrorKind::MalformedJson,
        ErrorKind::TruncatedInput,
        ErrorKind::WrongType,
        ErrorKind::MissingField,
        ErrorKind::InvalidUtf8,
        ErrorKind::UnparseableDate,
        ErrorKind::SentBeforeReceived,
        ErrorKind::UnknownState,
        ErrorKind::BadYesNo,
        ErrorKind::UnknownTag,
        ErrorKind::NarrativeTooLong,
        ErrorKind::RecordTooLarge,
        ErrorKind::DuplicateId,
        ErrorKind::DuplicateField,
        ErrorKind::CsvMissingColumn,
        ErrorKind::CsvMalformed,
        ErrorKind::NotAnObject,
        ErrorKind::WrongFormat,
        ErrorKind::Io,
    ];

    /// The stable snake_case name (a metrics label and the `kind` of dead-letter records).
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::MalformedJson => "malformed_json",
            ErrorKind::TruncatedInput => "truncated_input",
            ErrorKind::WrongType => "wrong_type",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::UnparseableDate => "unparseable_date",
            ErrorKind::SentBeforeReceived => "sent_before_received",
            ErrorKind::UnknownState => "unknown_state",
            ErrorKind::BadYesNo => "bad_yes_no",
            ErrorKind::UnknownTag => "unknown_tag",
            ErrorKind::NarrativeTooLong => "narrative_too_long",
            ErrorKind::RecordTooLarge => "record_too_large",
            ErrorKind::DuplicateId => "duplicate_id",
            ErrorKind::DuplicateField => "duplicate_field",
            ErrorKind::CsvMissingColumn => "csv_missing_column",
            ErrorKind::CsvMalformed => "csv_malformed",
            ErrorKind::NotAnObject => "not_an_object",
            ErrorKind::WrongFormat => "wrong_format",
            ErrorKind::Io => "io",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a record sits in its input.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Location {
    /// 0-based index of the record in its input (counting bad records too).
    pub record: u64,
    /// 1-based line on which the record starts, when known.
    pub line: Option<u64>,
    /// 0-based byte offset at which the record starts, when known.
    pub byte_offset: Option<u64>,
}

impl Location {
    /// A location known only by record index.
    pub fn record(record: u64) -> Location {
        Location {
            record,
            line: None,
            byte_offset: None,
        }
    }

    /// Sets the line.
    pub fn with_line(mut self, line: u64) -> Location {
        self.line = Some(line);
        self
    }

    /// Sets the byte offset.
    pub fn with_offset(mut self, byte_offset: u64) -> Location {
        self.byte_offset = Some(byte_offset);
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}", self.record)?;
        if let Some(l) = self.line {
            write!(f, ", line {l}")?;
        }
        if let Some(o) = self.byte_offset {
            write!(f, ", byte {o}")?;
        }
        Ok(())
    }
}

/// One bad record: what is wrong, where, and (when it could be read) which complaint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind} at {location}{}: {message}", complaint_suffix(.complaint_id))]
pub struct RecordError {
    /// The kind of problem.
    pub kind: ErrorKind,
    /// What is wrong, naming the field and quoting (a truncated excerpt of) the bad value.
    pub message: String,
    /// Where the record is in its input.
    pub location: Location,
    /// The record's complaint id, when it could be read.
    pub complaint_id: Option<String>,
}

fn complaint_suffix(id: &Option<String>) -> String {
    match id {
        Some(id) => format!(" (complaint {id})"),
        None => String::new(),
    }
}

impl RecordError {
    /// A new error at record 0 with no complaint id; chain [`RecordError::at`] /
    /// [`RecordError::with_id`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> RecordError {
        RecordError {
            kind,
            message: message.into(),
            location: Location::default(),
            complaint_id: None,
        }
    }

    /// Sets the location.
    pub fn at(mut self, location: Location) -> RecordError {
        self.location = location;
        self
    }

    /// Sets the complaint id.
    pub fn with_id(mut self, id: impl Into<String>) -> RecordError {
        self.complaint_id = Some(id.into());
        self
    }

    /// An [`ErrorKind::Io`] error from an I/O failure.
    pub fn io(err: &std::io::Error, location: Location) -> RecordError {
        RecordError::new(ErrorKind::Io, format!("read failed: {err}")).at(location)
    }
}

/// Quotes a value for an error message: Debug-escaped, cut to [`MAX_EXCERPT_BYTES`] at a
/// character boundary, with `…(N bytes)` appended when cut.
pub fn excerpt(s: &str) -> String {
    if s.len() <= MAX_EXCERPT_BYTES {
        return format!("{s:?}");
    }
    let mut end = MAX_EXCERPT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…({} bytes)", &s[..end], s.len())
}

/// Like [`excerpt`] for raw bytes (invalid UTF-8 shown lossily).
pub fn excerpt_bytes(b: &[u8]) -> String {
    let cut = &b[..b.len().min(MAX_EXCERPT_BYTES)];
    let s = String::from_utf8_lossy(cut);
    if b.len() > MAX_EXCERPT_BYTES {
        format!("{s:?}…({} bytes)", b.len())
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_snake_case_and_distinct() {
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        for n in &names {
            assert!(n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        // serde name = as_str
        for k in ErrorKind::ALL {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
    }

    #[test]
    fn excerpt_truncates_on_char_boundary() {
        let long = "é".repeat(200);
        let e = excerpt(&long);
        assert!(e.len() < 200);
        assert!(e.ends_with("(400 bytes)"));
        assert_eq!(excerpt("ab"), "\"ab\"");
    }

    #[test]
    fn display_names_location_and_id() {
        let e = RecordError::new(ErrorKind::MissingField, "field `complaint_id` is missing")
            .at(Location::record(7).with_line(12).with_offset(900))
            .with_id("42");
        let s = e.to_string();
        assert!(s.starts_with("missing_field at record 7, line 12, byte 900 (complaint 42)"));
    }
}

/// Errors of whole-dataset operations (opening files, writing reports and plots), as opposed
/// to the per-record [`RecordError`].
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error("plot {path}: {message}")]
    Plot {
        /// The output file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl DatasetError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> DatasetError {
        DatasetError::Io {
            path: path.into(),
            source,
        }
    }
}
