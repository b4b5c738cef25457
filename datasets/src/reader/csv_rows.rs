//! CSV rows → one JSON object per row with the CFPB JSON field names.

use std::io::BufRead;

use crate::error::{excerpt, ErrorKind, Location, RecordError};
use crate::parse::{canonical_field, parse_date};
use crate::schema::{CSV_HEADERS, JSON_FIELDS};

use super::RawRecord;

/// The fields a CSV input must have (the non-optional fields of a `Complaint`).
const REQUIRED: [usize; 2] = [17, 0];

pub(crate) struct CsvRows<R> {
    rdr: csv::Reader<R>,
    /// Column index of each of the 18 fields.
    columns: [Option<usize>; 18],
    ncols: usize,
    started: bool,
    /// Header-less input: the first row is data.
    pending: Option<csv::ByteRecord>,
    base_line: u64,
    base_offset: u64,
    max_record_bytes: usize,
    delimiter: u8,
}

/// Tab when the first line has more tabs than commas.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = match memchr::memchr(b'\n', head) {
        Some(n) => head.get(..n).unwrap_or(head),
        None => head,
    };
    let tabs = memchr::memchr_iter(b'\t', line).count();
    let commas = memchr::memchr_iter(b',', line).count();
    if tabs > commas {
        b'\t'
    } else {
        b','
    }
}

impl<R: BufRead> CsvRows<R> {
    pub fn new(mut r: R, base_line: u64, base_offset: u64, max_record_bytes: usize) -> Self {
        // An I/O error here resurfaces on the first read.
        let delimiter = r.fill_buf().map(sniff_delimiter).unwrap_or(b',');
        let rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(r);
        CsvRows {
            rdr,
            columns: [None; 18],
            ncols: 0,
            started: false,
            pending: None,
            base_line,
            base_offset,
            max_record_bytes,
            delimiter,
        }
    }

    fn location(&self, index: u64, pos: Option<&csv::Position>) -> Location {
        let mut l = Location::record(index);
        if let Some(p) = pos {
            l = l
                .with_line(self.base_line + p.line().saturating_sub(1))
                .with_offset(self.base_offset + p.byte());
        }
        l
    }

    fn read(&mut self, index: u64) -> Result<Option<csv::ByteRecord>, RecordError> {
        let mut rec = csv::ByteRecord::new();
        match self.rdr.read_byte_record(&mut rec) {
            Ok(true) => Ok(Some(rec)),
            Ok(false) => Ok(None),
            Err(e) => {
                let pos = e.position().cloned();
                let kind = if e.is_io_error() {
                    ErrorKind::Io
                } else {
                    ErrorKind::CsvMalformed
                };
                Err(RecordError::new(kind, format!("CSV read failed: {e}"))
                    .at(self.location(index, pos.as_ref())))
            }
        }
    }

    /// Reads the header row; `Err` ends the input.
    fn start(&mut self, index: u64) -> Result<(), RecordError> {
        self.started = true;
        let header = match self.read(index)? {
            Some(h) => h,
            None => {
                return Err(RecordError::new(
                    ErrorKind::WrongFormat,
                    "empty CSV input: no header row",
                )
                .at(self.location(index, None)))
            }
        };
        self.ncols = header.len();
        for (col, name) in header.iter().enumerate() {
            let name = String::from_utf8_lossy(name);
            if let Some(slot) = canonical_field(&name).and_then(|f| self.columns.get_mut(f)) {
                if slot.is_none() {
                    *slot = Some(col);
                }
            }
        }
        let has_required = REQUIRED.iter().any(|&f| self.columns[f].is_some());
        let first_is_date = header
            .get(0)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(parse_date)
            .is_some();
        if !has_required && header.len() == 18 && first_is_date {
            // No header row: the 18 canonical columns in export order.
            for (i, slot) in self.columns.iter_mut().enumerate() {
                *slot = Some(i);
            }
            self.pending = Some(header);
            return Ok(());
        }
        let missing: Vec<String> = REQUIRED
            .iter()
            .filter(|&&f| self.columns[f].is_none())
            .map(|&f| format!("`{}` ({})", CSV_HEADERS[f], JSON_FIELDS[f]))
            .collect();
        if !missing.is_empty() {
            let found: Vec<String> = header
                .iter()
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .collect();
            return Err(RecordError::new(
                ErrorKind::CsvMissingColumn,
                format!(
                    "CSV header lacks required column {}; header is {}",
                    missing.join(" and "),
                    excerpt(&found.join(if self.delimiter == b'\t' { "\t" } else { "," }))
                ),
            )
            .at(self.location(index, header.position())));
        }
        Ok(())
    }

    /// The next row as a JSON record; `None` at the end.
    pub fn next_row(&mut self, index: u64) -> Option<Result<RawRecord, RecordError>> {
        if !self.started {
            if let Err(e) = self.start(index) {
                self.pending = None;
                self.ncols = usize::MAX; // mark finished
                return Some(Err(e));
            }
        }
        if self.ncols == usize::MAX {
            return None;
        }
        let rec = match self.pending.take() {
            Some(r) => r,
            None => match self.read(index) {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => {
                    self.ncols = usize::MAX;
                    return Some(Err(e));
                }
            },
        };
        let loc = self.location(index, rec.position());
        Some(
            self.transcode(&rec)
                .map(|bytes| RawRecord {
                    bytes,
                    location: loc,
                })
                .map_err(|e| e.at(loc)),
        )
    }

    fn transcode(&self, rec: &csv::ByteRecord) -> Result<Vec<u8>, RecordError> {
        if rec.len() != self.ncols {
            // A lone empty line is not a record.
            return Err(RecordError::new(
                ErrorKind::CsvMalformed,
                format!(
                    "row has {} fields, the header has {} (row starts {})",
                    rec.len(),
                    self.ncols,
                    excerpt(&String::from_utf8_lossy(rec.get(0).unwrap_or_default()))
                ),
            ));
        }
        let mut out = Vec::with_capacity(rec.as_slice().len() + 512);
        out.push(b'{');
        for (i, (name, col)) in JSON_FIELDS.iter().zip(self.columns.iter()).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            match col.and_then(|c| rec.get(c)) {
                None => out.extend_from_slice(b"null"),
                Some(cell) => {
                    let s = std::str::from_utf8(cell).map_err(|e| {
                        RecordError::new(
                            ErrorKind::InvalidUtf8,
                            format!(
                                "column for `{name}` is not valid UTF-8: {e} (value {})",
                                excerpt(&String::from_utf8_lossy(cell))
                            ),
                        )
                    })?;
                    // Writing a &str to a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut out, s);
                }
            }
        }
        out.push(b'}');
        if out.len() > self.max_record_bytes {
            return Err(RecordError::new(
                ErrorKind::RecordTooLarge,
                format!(
                    "row is {} bytes as JSON, more than max_record_bytes = {}",
                    out.len(),
                    self.max_record_bytes
                ),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, RawRecords};
    use crate::error::ErrorKind;

    fn rows(input: &str) -> Vec<Result<serde_json::Value, crate::error::RecordError>> {
        RawRecords::new(input.as_bytes(), Format::Csv, 1 << 20)
            .map(|r| r.map(|r| serde_json::from_slice(&r.bytes).unwrap()))
            .collect()
    }

    #[test]
    fn header_variants_map_to_json_names() {
        let r = rows(
            ",Complaint_ID,Date_received,ZIP_code,narrative_length\n0,12,27-04-2023,\"1,2\",5\n",
        );
        assert_eq!(r.len(), 1);
        let v = r[0].as_ref().unwrap();
        assert_eq!(v["complaint_id"], "12");
        assert_eq!(v["date_received"], "27-04-2023");
        assert_eq!(v["zip_code"], "1,2");
        assert!(v["product"].is_null());
        assert_eq!(v.as_object().unwrap().len(), 18);
    }

    #[test]
    fn tsv_and_headerless() {
        let r = rows("Complaint ID\tDate received\n5\t2019/9/24\n");
        assert_eq!(r[0].as_ref().unwrap()["complaint_id"], "5");
        let line =
            "2019-09-24,Debt collection,,,,,,ACME,FL,335XX,,,Web,2019-09-24,Closed,Yes,N/A,77";
        let r = rows(&format!("{line}\n{line}\n"));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].as_ref().unwrap()["complaint_id"], "77");
        assert_eq!(r[0].as_ref().unwrap()["company"], "ACME");
    }

    #[test]
    fn missing_column_and_bad_rows() {
        let r = rows("Product,Date received\nMortgage,2019-01-01\n");
        assert_eq!(r.len(), 1);
        let e = r[0].as_ref().unwrap_err();
        assert_eq!(e.kind, ErrorKind::CsvMissingColumn);
        assert!(e.message.contains("Complaint ID"), "{e}");

        let r = rows("Complaint ID,Date received\n1,2019-01-01,extra\n2,2019-01-02\n");
        assert_eq!(r.len(), 2);
        let e = r[0].as_ref().unwrap_err();
        assert_eq!(e.kind, ErrorKind::CsvMalformed);
        assert_eq!(e.location.line, Some(2));
        assert_eq!(r[1].as_ref().unwrap()["complaint_id"], "2");
    }
}
