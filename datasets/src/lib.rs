//! # complaintflow-datasets
//!
//! The CFPB Consumer Complaint Database schema and everything that reads it: the typed
//! 18-field [`schema::Complaint`], label derivation ([`label::LabelPolicy`]).
#![warn(missing_docs)]

pub mod label;
pub mod schema;

pub use label::LabelPolicy;
pub use schema::{CompanyResponse, Complaint, ComplaintId, Tags, UsState, YesNo};
