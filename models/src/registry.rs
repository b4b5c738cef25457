//! The on-disk model registry (default `./state/registry`).
//!
//! ```text
//! <dir>/registry.json              {"production": "v0002", "history": ["v0001"]}
//! <dir>/versions/v0001/manifest.json, pipeline.json, model.json, metadata.json
//! ```
//!
//! Each version is a saved [`Model`] plus `metadata.json` ([`VersionMetadata`]). A new
//! version is built in a temporary directory and renamed into place; `registry.json` and
//! `metadata.json` are rewritten atomically (temp file + rename). `registry.json` is the
//! source of truth for which version is in production; `history` is the stack of earlier
//! production versions that [`Registry::rollback`] returns to. One writer at a time.
//!
//! ```no_run
//! # fn demo(outcome: complaintflow_models::TrainOutcome) -> Result<(), complaintflow_models::ModelError> {
//! use complaintflow_models::{DataInfo, Registry};
//! let reg = Registry::open("./state/registry")?;
//! let meta = reg.register(&outcome, DataInfo::default())?;
//! reg.promote(&meta.version)?;
//! let model = reg.load_production()?;
//! # Ok(()) }
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use complaintflow_datasets::LabelPolicy;
use serde::{Deserialize, Serialize};

use crate::config::{ClassBalance, FeatureConfig};
use crate::metrics::Metrics;
use crate::model::{read_json, sha256_file, write_atomic, Model, ModelFamily};
use crate::train::{CvPoint, FamilyReport, GbdtCvPoint, RowCounts, TrainOutcome, WindowInfo};
use crate::ModelError;

/// Lifecycle stage of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Registered, not serving.
    Candidate,
    /// Serving.
    Production,
    /// Was in production, replaced.
    Archived,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Candidate => "candidate",
            Stage::Production => "production",
            Stage::Archived => "archived",
        })
    }
}

/// Where the training data came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// Path of the data file, as given.
    pub path: Option<String>,
    /// SHA-256 of the data file.
    pub sha256: Option<String>,
    /// Records read from it.
    pub records: Option<u64>,
}

impl DataInfo {
    /// Describes a data file: path, SHA-256, and the number of records read.
    pub fn from_file(path: &Path, records: u64) -> Result<DataInfo, ModelError> {
        Ok(DataInfo {
            path: Some(path.display().to_string()),
            sha256: Some(sha256_file(path)?),
            records: Some(records),
        })
    }
}

/// Hyperparameters of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    /// Penalty grid.
    pub alphas: Vec<f64>,
    /// Chosen penalty.
    pub alpha: f64,
    /// Folds.
    pub folds: usize,
    /// L-BFGS iterations.
    pub max_iterations: u64,
    /// Class balance strategy.
    pub class_balance: ClassBalance,
    /// Decision threshold.
    pub threshold: f64,
    /// Feature configuration.
    pub features: FeatureConfig,
    /// Served family (`lr` in metadata written before trees existed).
    #[serde(default)]
    pub family: ModelFamily,
    /// Tree leaves per tree (0 before trees existed).
    #[serde(default)]
    pub gbdt_leaves: usize,
    /// Tree rounds.
    #[serde(default)]
    pub gbdt_rounds: usize,
    /// Blend weight of the LR margin.
    #[serde(default)]
    pub blend_lr_weight: f64,
}

/// `metadata.json` of a version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionMetadata {
    /// Version id (`v0001`, …).
    pub version: String,
    /// Registration time, RFC 3339 UTC.
    pub created_at: String,
    /// Stage.
    pub stage: Stage,
    /// Label policy.
    pub label_policy: LabelPolicy,
    /// Training data.
    pub data: DataInfo,
    /// Row counts of the split.
    pub rows: RowCounts,
    /// Hyperparameters.
    pub hyperparameters: Hyperparameters,
    /// Cross-validation scores.
    pub cv: Vec<CvPoint>,
    /// Test-split metrics.
    pub test_metrics: Metrics,
    /// Feature dimension.
    pub dim: usize,
    /// Tree cross-validation.
    #[serde(default)]
    pub gbdt_cv: Vec<GbdtCvPoint>,
    /// Per-family hash-test, temporal-test and out-of-time figures.
    #[serde(default)]
    pub families: Vec<FamilyReport>,
    /// Temporal windows of the evaluation.
    #[serde(default)]
    pub windows: Vec<WindowInfo>,
    /// Out-of-time AUC of the served family (what the promotion gate compares).
    #[serde(default)]
    pub out_of_time_auc: Option<f64>,
    /// `complaintflow-models` version (and `COMPLAINTFLOW_GIT_SHA` when set at build time).
    pub code_version: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Index {
    production: Option<String>,
    history: Vec<String>,
}

/// A model registry directory.
#[derive(Clone, Debug)]
pub struct Registry {
    dir: PathBuf,
}

const INDEX_FILE: &str = "registry.json";
const METADATA_FILE: &str = "metadata.json";

fn code_version() -> String {
    match option_env!("COMPLAINTFLOW_GIT_SHA") {
        Some(sha) => format!("{} ({sha})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_string(),
    }
}

fn valid_version(v: &str) -> bool {
    v.len() > 1 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit())
}

impl Registry {
    /// Opens (creating if needed) a registry directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Registry, ModelError> {
        let dir = dir.as_ref().to_path_buf();
        let versions = dir.join("versions");
        fs::create_dir_all(&versions)
            .map_err(|e| ModelError::io("creating registry directory", &versions, e))?;
        Ok(Registry { dir })
    }

    /// The registry directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Directory of one version.
    pub fn version_dir(&self, version: &str) -> PathBuf {
        self.dir.join("versions").join(version)
    }

    fn index(&self) -> Result<Index, ModelError> {
        let path = self.dir.join(INDEX_FILE);
        if path.exists() {
            read_json(&path)
        } else {
            Ok(Index::default())
        }
    }

    fn write_index(&self, index: &Index) -> Result<(), ModelError> {
        let path = self.dir.join(INDEX_FILE);
        let bytes = serde_json::to_vec_pretty(index).map_err(|source| ModelError::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes)
    }

    fn write_metadata(&self, dir: &Path, meta: &VersionMetadata) -> Result<(), ModelError> {
        let path = dir.join(METADATA_FILE);
        let bytes = serde_json::to_vec_pretty(meta).map_err(|source| ModelError::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes)
    }

    fn version_ids(&self) -> Result<Vec<String>, ModelError> {
        let versions = self.dir.join("versions");
        let rd = fs::read_dir(&versions).map_err(|e| ModelError::io("listing", &versions, e))?;
        let mut ids = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| ModelError::io("listing", &versions, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if valid_version(&name) && entry.path().join(METADATA_FILE).exists() {
                ids.push(name);
            }
        }
        ids.sort_by_key(|v| v[1..].parse::<u64>().unwrap_or(u64::MAX));
        Ok(ids)
    }

    fn read_metadata(&self, version: &str, index: &Index) -> Result<VersionMetadata, ModelError> {
        if !valid_version(version) || !self.version_dir(version).join(METADATA_FILE).exists() {
            return Err(ModelError::UnknownVersion {
                dir: self.dir.clone(),
                version: version.to_string(),
            });
        }
        let mut meta: VersionMetadata = read_json(&self.version_dir(version).join(METADATA_FILE))?;
        // registry.json decides production; a stale `production` in metadata means archived.
        if index.production.as_deref() == Some(version) {
            meta.stage = Stage::Production;
        } else if meta.stage == Stage::Production {
            meta.stage = Stage::Archived;
        }
        Ok(meta)
    }

    /// All versions, oldest first.
    pub fn list(&self) -> Result<Vec<VersionMetadata>, ModelError> {
        let index = self.index()?;
        self.version_ids()?
            .iter()
            .map(|v| self.read_metadata(v, &index))
            .collect()
    }

    /// One version's metadata.
    pub fn get(&self, version: &str) -> Result<VersionMetadata, ModelError> {
        self.read_metadata(version, &self.index()?)
    }

    /// Loads a version's model (hash- and schema-checked).
    pub fn load_model(&self, version: &str) -> Result<Model, ModelError> {
        self.get(version)?;
        Model::load(&self.version_dir(version))
    }

    /// The production version's metadata, if any.
    pub fn production(&self) -> Result<Option<VersionMetadata>, ModelError> {
        let index = self.index()?;
        match &index.production {
            Some(v) => self.read_metadata(v, &index).map(Some),
            None => Ok(None),
        }
    }

    /// Loads the production model; [`ModelError::NoProduction`] when none is promoted.
    pub fn load_production(&self) -> Result<Model, ModelError> {
        match self.production()? {
            Some(meta) => self.load_model(&meta.version),
            None => Err(ModelError::NoProduction {
                dir: self.dir.clone(),
            }),
        }
    }

    /// Registers a trained model as a new candidate version and returns its metadata.
    pub fn register(
        &self,
        outcome: &TrainOutcome,
        data: DataInfo,
    ) -> Result<VersionMetadata, ModelError> {
        let versions = self.dir.join("versions");
        for _attempt in 0..16 {
            let next = self
                .version_ids()?
                .iter()
                .filter_map(|v| v[1..].parse::<u64>().ok())
                .max()
                .unwrap_or(0)
                + 1;
            let version = format!("v{next:04}");
            let r = &outcome.report;
            let meta = VersionMetadata {
                version: version.clone(),
                created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                stage: Stage::Candidate,
                label_policy: r.label_policy,
                data: data.clone(),
                rows: r.rows.clone(),
                hyperparameters: Hyperparameters {
                    alphas: r.cv.iter().map(|p| p.alpha).collect(),
                    alpha: r.best_alpha,
                    folds: r.folds,
                    max_iterations: r.max_iterations,
                    class_balance: r.class_balance,
                    threshold: r.threshold,
                    features: r.features.clone(),
                    family: r.family,
                    gbdt_leaves: r.gbdt_leaves,
                    gbdt_rounds: r.gbdt_rounds,
                    blend_lr_weight: r.blend_lr_weight,
                },
                cv: r.cv.clone(),
                test_metrics: r.test.clone(),
                dim: r.dim,
                gbdt_cv: r.gbdt_cv.clone(),
                families: r.families.clone(),
                windows: r.windows.clone(),
                out_of_time_auc: r.out_of_time_auc(),
                code_version: code_version(),
            };
            let mut model = outcome.model.clone();
            model.version = version.clone();
            let tmp = versions.join(format!(".tmp-{version}-{}", std::process::id()));
            if tmp.exists() {
                fs::remove_dir_all(&tmp).map_err(|e| ModelError::io("removing", &tmp, e))?;
            }
            model.save(&tmp)?;
            self.write_metadata(&tmp, &meta)?;
            let dest = self.version_dir(&version);
            if dest.exists() {
                // Another writer took this id; try the next.
                fs::remove_dir_all(&tmp).map_err(|e| ModelError::io("removing", &tmp, e))?;
                continue;
            }
            fs::rename(&tmp, &dest).map_err(|e| ModelError::io("renaming into place", &dest, e))?;
            tracing::info!(%version, "registered model");
            return Ok(meta);
        }
        Err(ModelError::Invalid {
            path: versions,
            reason: "could not allocate a version id (concurrent writers?)".into(),
        })
    }

    fn set_stage(&self, version: &str, stage: Stage) -> Result<(), ModelError> {
        let dir = self.version_dir(version);
        let mut meta: VersionMetadata = read_json(&dir.join(METADATA_FILE))?;
        meta.stage = stage;
        self.write_metadata(&dir, &meta)
    }

    /// Makes `version` the production model; the previous one is archived and remembered for
    /// [`Registry::rollback`]. Promoting the current production version changes nothing.
    pub fn promote(&self, version: &str) -> Result<VersionMetadata, ModelError> {
        let mut index = self.index()?;
        self.read_metadata(version, &index)?;
        // Refuse to promote a model whose files do not load.
        Model::load(&self.version_dir(version))?;
        if index.production.as_deref() == Some(version) {
            return self.get(version);
        }
        if let Some(prev) = index.production.take() {
            self.set_stage(&prev, Stage::Archived)?;
            index.history.push(prev);
        }
        self.set_stage(version, Stage::Production)?;
        index.production = Some(version.to_string());
        self.write_index(&index)?;
        tracing::info!(%version, "promoted model");
        self.get(version)
    }

    /// Returns production to the previous production version (the current one is archived).
    pub fn rollback(&self) -> Result<VersionMetadata, ModelError> {
        let mut index = self.index()?;
        let Some(prev) = index.history.pop() else {
            return Err(ModelError::NothingToRollBack {
                dir: self.dir.clone(),
            });
        };
        if let Some(cur) = index.production.take() {
            self.set_stage(&cur, Stage::Archived)?;
        }
        self.set_stage(&prev, Stage::Production)?;
        index.production = Some(prev.clone());
        self.write_index(&index)?;
        tracing::info!(version = %prev, "rolled back");
        self.get(&prev)
    }
}

impl std::fmt::Display for VersionMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "version        {}", self.version)?;
        writeln!(f, "stage          {}", self.stage)?;
        writeln!(f, "created_at     {}", self.created_at)?;
        writeln!(f, "label policy   {}", self.label_policy)?;
        writeln!(
            f,
            "data           {} (sha256 {}, {} records)",
            self.data.path.as_deref().unwrap_or("-"),
            self.data.sha256.as_deref().unwrap_or("-"),
            self.data.records.map_or("-".to_string(), |n| n.to_string())
        )?;
        writeln!(
            f,
            "rows           train {} ({} positive), test {} ({} positive)",
            self.rows.train, self.rows.train_positives, self.rows.test, self.rows.test_positives
        )?;
        let h = &self.hyperparameters;
        writeln!(
            f,
            "hyperparams    alpha {} of {:?}, {} folds, threshold {:.4}, {:?}, dim {}",
            h.alpha, h.alphas, h.folds, h.threshold, h.class_balance, self.dim
        )?;
        writeln!(
            f,
            "family         {} (trees {} × {} leaves, blend LR weight {:.2})",
            h.family, h.gbdt_rounds, h.gbdt_leaves, h.blend_lr_weight
        )?;
        for w in &self.windows {
            writeln!(
                f,
                "window         {:<12} {} .. {}  {} rows",
                w.window, w.start, w.end, w.rows
            )?;
        }
        for fr in &self.families {
            writeln!(
                f,
                "family {:<7} OOF AUC {:.4}  test AUC {}  OOT AUC {}",
                fr.family.name(),
                fr.oof_auc,
                fr.test
                    .auc_roc
                    .map_or("n/a".to_string(), |a| format!("{a:.4}")),
                fr.out_of_time
                    .as_ref()
                    .and_then(|m| m.auc_roc)
                    .map_or("n/a".to_string(), |a| format!("{a:.4}"))
            )?;
        }
        for p in &self.cv {
            writeln!(
                f,
                "cv             alpha {:>7}  mean AUC {:.4} ± {:.4}",
                p.alpha, p.mean_auc, p.std_auc
            )?;
        }
        writeln!(f, "code version   {}", self.code_version)?;
        writeln!(f, "test metrics")?;
        write!(f, "{}", self.test_metrics)
    }
}

impl VersionMetadata {
    /// One line for `models list`: version, stage, created, test AUC-ROC, label policy.
    pub fn summary_line(&self) -> String {
        format!(
            "{:<8} {:<10} {}  {:<5}  AUC {}  OOT AUC {}  {}",
            self.version,
            self.stage,
            self.created_at,
            self.hyperparameters.family.name(),
            self.test_metrics
                .auc_roc
                .map_or("n/a".to_string(), |a| format!("{a:.4}")),
            self.out_of_time_auc
                .map_or("n/a".to_string(), |a| format!("{a:.4}")),
            self.label_policy
        )
    }
}
