//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while fitting, training, saving, loading or registering.
/// Messages name the file involved and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Not enough usable data to fit or evaluate.
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    /// The logistic-regression solver failed.
    #[error("logistic regression failed: {0}")]
    Solver(String),
    /// An I/O error on a named path.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `writing`, `renaming`, …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but is not valid JSON of the expected shape.
    #[error("cannot parse {path}: {source} (the file is damaged or was written by another tool; re-train or restore it)")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A saved artifact has a schema version this code does not read.
    #[error("{path} has schema version {found}, this build reads version {expected}: re-train the model with this build")]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this code reads.
        expected: u32,
    },
    /// A saved artifact's content hash does not match its manifest.
    #[error("{path} is corrupted: sha256 {found} does not match the manifest's {expected}; restore the file or re-train")]
    Hash {
        /// The file.
        path: PathBuf,
        /// Hash recorded in the manifest.
        expected: String,
        /// Hash of the file as read.
        found: String,
    },
    /// A saved artifact is internally inconsistent (e.g. weight count ≠ pipeline dimension).
    #[error("invalid model artifact {path}: {reason}")]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The registry has no such version.
    #[error("no model version {version:?} in registry {dir}: run `complaintflow models list` to see the versions")]
    UnknownVersion {
        /// The registry directory.
        dir: PathBuf,
        /// The version asked for.
        version: String,
    },
    /// The registry has no production version.
    #[error("registry {dir} has no production model: promote one with `complaintflow models promote VERSION`")]
    NoProduction {
        /// The registry directory.
        dir: PathBuf,
    },
    /// Nothing to roll back to.
    #[error("registry {dir} has no earlier production model to roll back to")]
    NothingToRollBack {
        /// The registry directory.
        dir: PathBuf,
    },
}

impl ModelError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ModelError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
