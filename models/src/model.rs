//! The scoring model: fitted pipeline + logistic-regression weights + decision threshold, and
//! its on-disk format.
//!
//! On disk a model is a directory with `pipeline.json`, `model.json` and `manifest.json`; the
//! manifest records the schema version and the SHA-256 of the other two files, and
//! [`Model::load`] refuses files whose hash, schema version or shape do not match.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use complaintflow_datasets::{Complaint, LabelPolicy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pipeline::{FittedPipeline, SparseFeatures};
use crate::ModelError;

/// Version of the on-disk model format this build writes and reads.
pub const MODEL_SCHEMA_VERSION: u32 = 1;

/// File names inside a model directory.
pub const PIPELINE_FILE: &str = "pipeline.json";
/// See [`PIPELINE_FILE`].
pub const MODEL_FILE: &str = "model.json";
/// See [`PIPELINE_FILE`].
pub const MANIFEST_FILE: &str = "manifest.json";

/// A trained model: what the streaming `score` operator holds. Cheap to clone relative to
/// scoring, `Send + Sync`, and round-trips through serde (JSON and bincode).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Version id (the registry's, e.g. `v0003`; `unregistered` before registration).
    pub version: String,
    /// Label policy it predicts.
    pub label_policy: LabelPolicy,
    /// The fitted feature pipeline.
    pub pipeline: FittedPipeline,
    /// One weight per pipeline column.
    pub weights: Vec<f32>,
    /// Intercept.
    pub intercept: f64,
    /// Decision threshold on the probability.
    pub threshold: f64,
}

/// `model.json`: everything but the pipeline.
#[derive(Serialize, Deserialize)]
struct ModelFile {
    version: String,
    label_policy: LabelPolicy,
    weights: Vec<f32>,
    intercept: f64,
    threshold: f64,
}

/// `manifest.json`.
#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    schema_version: u32,
    files: Vec<ManifestEntry>,
}

#[derive(Serialize, Deserialize)]
struct ManifestEntry {
    name: String,
    sha256: String,
    bytes: u64,
}

/// The logistic function.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// SHA-256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of a file, lowercase hex (for `metadata.json`'s data hash).
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = fs::File::open(path).map_err(|e| ModelError::io("opening", path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| ModelError::io("reading", path, e))?;
    Ok(hex::encode(h.finalize()))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp).map_err(|e| ModelError::io("creating", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| ModelError::io("writing", &tmp, e))?;
        f.sync_all()
            .map_err(|e| ModelError::io("syncing", &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| ModelError::io("renaming into place", path, e))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let bytes = fs::read(path).map_err(|e| ModelError::io("reading", path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| ModelError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn to_json<T: Serialize>(v: &T, path: &Path) -> Result<Vec<u8>, ModelError> {
    serde_json::to_vec(v).map_err(|source| ModelError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

impl Model {
    /// P(SuccessfulResolution) for a complaint. `buf` is the caller's reusable buffer; it holds
    /// the complaint's features afterwards.
    #[inline]
    pub fn score(&self, c: &Complaint, buf: &mut SparseFeatures) -> f64 {
        self.pipeline.transform(c, buf);
        self.score_features(buf)
    }

    /// P(SuccessfulResolution) for an already transformed vector: a sparse dot product.
    #[inline]
    pub fn score_features(&self, x: &SparseFeatures) -> f64 {
        sigmoid(self.margin(x))
    }

    /// The linear margin `w·x + b`.
    #[inline]
    pub fn margin(&self, x: &SparseFeatures) -> f64 {
        let mut z = 0.0f32;
        for (i, v) in x.iter() {
            z += self.weights.get(i as usize).copied().unwrap_or(0.0) * v;
        }
        f64::from(z) + self.intercept
    }

    /// The decision at the model's threshold.
    #[inline]
    pub fn predict(&self, p: f64) -> bool {
        p >= self.threshold
    }

    /// Checks the weights against the pipeline.
    pub fn validate(&self) -> Result<(), String> {
        self.pipeline.validate()?;
        if self.weights.len() != self.pipeline.dim() {
            return Err(format!(
                "{} weights for a pipeline of dimension {}",
                self.weights.len(),
                self.pipeline.dim()
            ));
        }
        if self.weights.iter().any(|w| !w.is_finite()) || !self.intercept.is_finite() {
            return Err("non-finite weight or intercept".into());
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(format!("threshold {} outside [0, 1]", self.threshold));
        }
        Ok(())
    }

    /// Saves into `dir` (created if needed): `pipeline.json`, `model.json`, then
    /// `manifest.json` with the schema version and content hashes, each written atomically.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        fs::create_dir_all(dir).map_err(|e| ModelError::io("creating directory", dir, e))?;
        let pipeline_path = dir.join(PIPELINE_FILE);
        let model_path = dir.join(MODEL_FILE);
        let pipeline = to_json(&self.pipeline, &pipeline_path)?;
        let model = to_json(
            &ModelFile {
                version: self.version.clone(),
                label_policy: self.label_policy,
                weights: self.weights.clone(),
                intercept: self.intercept,
                threshold: self.threshold,
            },
            &model_path,
        )?;
        write_atomic(&pipeline_path, &pipeline)?;
        write_atomic(&model_path, &model)?;
        let manifest = Manifest {
            format: "complaintflow-model".into(),
            schema_version: MODEL_SCHEMA_VERSION,
            files: vec![
                ManifestEntry {
                    name: PIPELINE_FILE.into(),
                    sha256: sha256_hex(&pipeline),
                    bytes: pipeline.len() as u64,
                },
                ManifestEntry {
                    name: MODEL_FILE.into(),
                    sha256: sha256_hex(&model),
                    bytes: model.len() as u64,
                },
            ],
        };
        let manifest_path = dir.join(MANIFEST_FILE);
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|source| ModelError::Parse {
            path: manifest_path.clone(),
            source,
        })?;
        write_atomic(&manifest_path, &bytes)
    }

    /// Loads a model saved by [`Model::save`], checking the schema version, the content
    /// hashes and the model's internal consistency.
    pub fn load(dir: &Path) -> Result<Model, ModelError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest: Manifest = read_json(&manifest_path)?;
        if manifest.schema_version != MODEL_SCHEMA_VERSION {
            return Err(ModelError::SchemaVersion {
                path: manifest_path,
                found: manifest.schema_version,
                expected: MODEL_SCHEMA_VERSION,
            });
        }
        let read_checked = |name: &str| -> Result<Vec<u8>, ModelError> {
            let path = dir.join(name);
            let entry = manifest
                .files
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| ModelError::Invalid {
                    path: manifest_path.clone(),
                    reason: format!("manifest does not list {name}"),
                })?;
            let bytes = fs::read(&path).map_err(|e| ModelError::io("reading", &path, e))?;
            let found = sha256_hex(&bytes);
            if found != entry.sha256 {
                return Err(ModelError::Hash {
                    path,
                    expected: entry.sha256.clone(),
                    found,
                });
            }
            Ok(bytes)
        };
        let pipeline_bytes = read_checked(PIPELINE_FILE)?;
        let model_bytes = read_checked(MODEL_FILE)?;
        let pipeline: FittedPipeline =
            serde_json::from_slice(&pipeline_bytes).map_err(|source| ModelError::Parse {
                path: dir.join(PIPELINE_FILE),
                source,
            })?;
        let file: ModelFile =
            serde_json::from_slice(&model_bytes).map_err(|source| ModelError::Parse {
                path: dir.join(MODEL_FILE),
                source,
            })?;
        let model = Model {
            version: file.version,
            label_policy: file.label_policy,
            pipeline,
            weights: file.weights,
            intercept: file.intercept,
            threshold: file.threshold,
        };
        model.validate().map_err(|reason| ModelError::Invalid {
            path: dir.to_path_buf(),
            reason,
        })?;
        Ok(model)
    }
}
