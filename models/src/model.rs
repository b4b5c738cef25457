//! The scoring model: fitted pipeline + logistic-regression weights + (optionally) a
//! gradient-boosted tree ensemble with its encoder + blend weight + calibration + decision
//! threshold, and its on-disk format.
//!
//! Scoring contract: [`Model::score`] = `calibration(w·margin_lr + (1 − w)·margin_trees)`
//! with `w = lr_weight` (1 for [`ModelFamily::Lr`], 0 for [`ModelFamily::Gbdt`], in between
//! for [`ModelFamily::Blend`]); the result is a calibrated P(success) in [0, 1], thresholded by
//! [`Model::predict`]. A part whose weight is 0 is not evaluated. Measured (release, one
//! thread, cfpb dev set resampled, on-CPU time): LR 2.4 µs, trees 2.05 µs (numeric block
//! only), blend 3.1 µs per complaint including featurization (`examples/score_cpu.rs`;
//! criterion: `benches/featurize_score.rs`).
//!
//! On disk a model is a directory with `pipeline.json`, `model.json` and `manifest.json`; the
//! manifest records the schema version and the SHA-256 of the other two files, and
//! [`Model::load`] refuses files whose hash, schema version or shape do not match. Schema 2
//! adds the tree, blend and calibration fields to `model.json`; schema-1 directories (plain
//! logistic regression) still load, as identity-calibrated LR models.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use complaintflow_datasets::{Complaint, LabelPolicy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::calibrate::Calibration;
use crate::encode::TreeEncoder;
use crate::gbdt::Ensemble;
use crate::pipeline::{FittedPipeline, SparseFeatures};
use crate::ModelError;

/// Version of the on-disk model format this build writes. It reads this one and
/// [`MIN_READ_SCHEMA_VERSION`] onwards.
pub const MODEL_SCHEMA_VERSION: u32 = 2;
/// Oldest on-disk schema this build still reads (1: logistic regression only).
pub const MIN_READ_SCHEMA_VERSION: u32 = 1;

/// Which scorer a model uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFamily {
    /// Logistic regression on the sparse pipeline features.
    #[default]
    Lr,
    /// Gradient-boosted trees on the encoded dense row.
    Gbdt,
    /// `lr_weight · LR margin + (1 − lr_weight) · tree margin`.
    Blend,
}

impl ModelFamily {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            ModelFamily::Lr => "lr",
            ModelFamily::Gbdt => "gbdt",
            ModelFamily::Blend => "blend",
        }
    }
}

impl std::fmt::Display for ModelFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The tree part of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeModel {
    /// Builds the dense row.
    pub encoder: TreeEncoder,
    /// The boosted trees.
    pub ensemble: Ensemble,
}

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
    /// Decision threshold on the (calibrated) probability.
    pub threshold: f64,
    /// Scorer family (`lr` for models written before trees existed).
    #[serde(default)]
    pub family: ModelFamily,
    /// Tree part (`None` for `lr`).
    #[serde(default)]
    pub trees: Option<TreeModel>,
    /// Weight of the LR margin (1 = LR only, 0 = trees only).
    #[serde(default = "one")]
    pub lr_weight: f64,
    /// Margin → probability.
    #[serde(default)]
    pub calibration: Calibration,
}

fn one() -> f64 {
    1.0
}

/// `model.json`: everything but the pipeline.
#[derive(Serialize, Deserialize)]
struct ModelFile {
    version: String,
    label_policy: LabelPolicy,
    weights: Vec<f32>,
    intercept: f64,
    threshold: f64,
    #[serde(default)]
    family: ModelFamily,
    #[serde(default)]
    trees: Option<TreeModel>,
    #[serde(default = "one")]
    lr_weight: f64,
    #[serde(default)]
    calibration: Calibration,
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
    /// Calibrated P(SuccessfulResolution) for a complaint. `buf` is the caller's reusable
    /// buffer; afterwards it holds the complaint's sparse features (for a `gbdt` model only
    /// their numeric block, all the trees read).
    #[inline]
    pub fn score(&self, c: &Complaint, buf: &mut SparseFeatures) -> f64 {
        if self.family == ModelFamily::Gbdt && self.trees.is_some() {
            // Trees read only the numeric block: skip n-grams, dates and one-hots.
            self.pipeline.transform_numeric(c, buf);
        } else {
            self.pipeline.transform(c, buf);
        }
        let z = self.raw_margin_transformed(c, buf);
        self.calibration.apply(z)
    }

    /// The uncalibrated margin of the model's family for a complaint.
    pub fn raw_margin(&self, c: &Complaint, buf: &mut SparseFeatures) -> f64 {
        self.pipeline.transform(c, buf);
        self.raw_margin_transformed(c, buf)
    }

    /// The raw margin once `buf` holds `c`'s pipeline features.
    #[inline]
    fn raw_margin_transformed(&self, c: &Complaint, buf: &mut SparseFeatures) -> f64 {
        let w = match (self.family, &self.trees) {
            (ModelFamily::Lr, _) | (_, None) => 1.0,
            (ModelFamily::Gbdt, Some(_)) => 0.0,
            (ModelFamily::Blend, Some(_)) => self.lr_weight,
        };
        let mut z = 0.0;
        if w != 0.0 {
            z += w * self.margin(buf);
        }
        if w != 1.0 {
            if let Some(t) = &self.trees {
                let n = t.encoder.n_numeric as usize;
                let (numeric, row, keys) = buf.numeric_and_dense(n);
                t.encoder.encode_cached(c, numeric, row, keys);
                z += (1.0 - w) * t.ensemble.margin(row);
            }
        }
        z
    }

    /// P(SuccessfulResolution) from the LR part alone for an already transformed vector
    /// (calibrated; equals [`Model::score`] for `lr` models).
    #[inline]
    pub fn score_features(&self, x: &SparseFeatures) -> f64 {
        self.calibration.apply(self.margin(x))
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
        if !(0.0..=1.0).contains(&self.lr_weight) {
            return Err(format!("lr_weight {} outside [0, 1]", self.lr_weight));
        }
        self.calibration.validate()?;
        match (&self.trees, self.family) {
            (None, ModelFamily::Gbdt | ModelFamily::Blend) => {
                return Err(format!("a {} model without trees", self.family));
            }
            (Some(t), _) => {
                t.ensemble.validate()?;
                if t.ensemble.n_features as usize != t.encoder.width() {
                    return Err(format!(
                        "tree ensemble expects {} features, the encoder makes {}",
                        t.ensemble.n_features,
                        t.encoder.width()
                    ));
                }
                if t.encoder.n_numeric as usize > self.pipeline.numeric_len() {
                    return Err("tree encoder reads more numerics than the pipeline has".into());
                }
            }
            (None, ModelFamily::Lr) => {}
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
                family: self.family,
                trees: self.trees.clone(),
                lr_weight: self.lr_weight,
                calibration: self.calibration.clone(),
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
        if !(MIN_READ_SCHEMA_VERSION..=MODEL_SCHEMA_VERSION).contains(&manifest.schema_version) {
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
            family: file.family,
            trees: file.trees,
            lr_weight: file.lr_weight,
            calibration: file.calibration,
        };
        model.validate().map_err(|reason| ModelError::Invalid {
            path: dir.to_path_buf(),
            reason,
        })?;
        Ok(model)
    }
}
