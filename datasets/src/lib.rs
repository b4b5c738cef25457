//! # complaintflow-datasets
//!
//! The CFPB Consumer Complaint Database schema and everything that reads it.
//!
//! | module | what |
//! |---|---|
//! | [`schema`] | the typed 18-field [`Complaint`] (`ComplaintId`, `YesNo`, `CompanyResponse`, `UsState`, `Tags`) |
//! | [`label`] | deriving `SuccessfulResolution` ([`LabelPolicy::Relief`] / [`LabelPolicy::Closed`]) |
//! | [`error`] | per-record [`RecordError`] with a stable [`ErrorKind`] name and a [`Location`]; [`DatasetError`] |
//! | [`parse`] | [`parse_json_record`]: one JSON object → validated [`Complaint`] (lenient on real-world spellings), [`ValidationOptions`] |
//! | [`reader`] | streaming, bounded-memory readers: JSON array, JSON Lines, API envelope, CSV ([`RawRecords`], [`Complaints`], [`read_path`]) |
//! | [`quality`] | data-quality [`quality::Profile`] → Markdown / JSON |
//! | [`plots`] | SVG charts of a profile |
//! | [`split`] | stable hash split by complaint id (75/25) and temporal windows |
//! | [`replay`] | rate-controlled replay ([`replay::Rate`], [`replay::Clock`]) and resampling for load tests |
//!
//! A real sample of 4,303 CFPB complaints ships with the crate ([`bundled_sample_path`]).
//!
//! ```
//! use complaintflow_datasets::{bundled_sample_path, read_path, Format, LabelPolicy, ValidationOptions};
//! let mut valid = 0;
//! for r in read_path(bundled_sample_path(), Format::Auto, &ValidationOptions::default()).unwrap() {
//!     let c = r.unwrap(); // the sample has no bad records
//!     valid += 1;
//!     let _ = LabelPolicy::Relief.label(&c);
//! }
//! assert_eq!(valid, 4303);
//! ```
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod error;
pub mod label;
pub mod parse;
pub mod plots;
pub mod quality;
pub mod reader;
pub mod replay;
pub mod schema;
pub mod split;

pub use error::{DatasetError, ErrorKind, Location, RecordError};
pub use label::LabelPolicy;
pub use parse::{parse_json_record, ValidationOptions};
pub use reader::{read_path, Complaints, Format, RawRecord, RawRecords};
pub use schema::{CompanyResponse, Complaint, ComplaintId, Tags, UsState, YesNo};

/// Share of the development set kept in the bundled sample (see `data/README.md`).
pub const SAMPLE_FRACTION: f64 = 0.80;

/// Salt of the stable hash that selects the bundled sample (independent of the train/test
/// hash split, which uses no salt).
pub const SAMPLE_SALT: &str = "complaintflow-sample:";

/// Path of the bundled real sample, `datasets/data/complaints-sample.json` (a JSON array in
/// the CFPB export format; provenance and statistics in `datasets/data/README.md`).
pub fn bundled_sample_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/complaints-sample.json")
}
