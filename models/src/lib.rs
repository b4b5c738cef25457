//! # complaintflow-models
//!
//! Turns a CFPB complaint into a feature vector and a feature vector into a probability of
//! `SuccessfulResolution` — with exactly the same code in batch training and in the streaming
//! `score` operator.
//!
//! - [`FeatureConfig`] / [`FeaturePipeline::fit`] / [`FittedPipeline::transform`]: text
//!   (tokenize, redactions, money, stop words, Snowball stems, 1–2-gram TF-IDF by vocabulary
//!   or hashing), categoricals (one-hot with unknown bucket and top-K cap), dates, narrative
//!   statistics, VADER-lexicon sentiment and rule-based entities; one switch per family.
//! - [`Model`]: pipeline + logistic-regression weights, optionally a gradient-boosted tree
//!   ensemble with its [`encode`] row encoder ([`ModelFamily`] `lr` / `gbdt` / `blend`), a
//!   [`Calibration`] and a threshold on the calibrated probability; [`Model::score`] allocates
//!   nothing after warm-up; [`Model::save`] / [`Model::load`] with schema version and content
//!   hashes; plain serde (bincode between timely workers).
//! - [`train()`]: hash split, k-fold cross-validation over the LR penalty grid (own sparse
//!   L-BFGS) and the tree grid (own histogram GBDT, [`gbdt`]) on per-fold cached design
//!   matrices, blend weight and calibration on out-of-fold margins, temporal out-of-time
//!   evaluation, `auto` family choice, served model refitted on every labelled complaint.
//! - [`compare()`] / [`promotion_gate`]: champion / challenger on a labelled file.
//! - [`Registry`]: versioned models on disk with candidate / production / archived stages.
//!
//! The train/test hash split is `complaintflow_datasets::split::is_train` (shared with the
//! rest of the project); cross-validation folds use its `stable_hash` with salt `cv-fold`.
//!
//! Outcome fields (`company_response`, `timely`, `consumer_disputed`,
//! `company_public_response`) are never features.
//!
//! ## Measured (2-core machine shared with other builds, release; docs/MODELS.md has the tables)
//!
//! Default `train` (served family `auto` → trees on both sets), hash test split:
//! `complaints-dev.json` AUC **0.848** (sklearn LR 0.827, LightGBM 0.817, their blend 0.829),
//! out-of-time 0.860, 9 s; extended dev set AUC **0.831** (baselines 0.785 / 0.805 / 0.811),
//! out-of-time 0.630, 33 s. Scoring 2.4 µs (LR) / 2.05 µs (trees) on-CPU per complaint
//! (`examples/score_cpu.rs`; the 2 µs target is narrowly missed by the trees).
#![warn(missing_docs)]

pub mod calibrate;
pub mod compare;
pub mod config;
pub mod encode;
pub mod error;
pub mod gbdt;
pub mod hash;
mod lexicon;
mod linear;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod registry;
mod text;
pub mod train;

pub use calibrate::Calibration;
pub use compare::{compare, promotion_gate, Comparison, GateDecision, ModelEvaluation};
pub use config::{
    CalibrationMethod, CategoricalField, ClassBalance, FamilyChoice, FeatureConfig, GbdtConfig,
    SplitMethod, TemporalConfig, TextVectorizer, TrainConfig,
};
pub use error::ModelError;
pub use metrics::{CalibrationBin, ConfusionMatrix, Metrics};
pub use model::{sha256_file, Model, ModelFamily, TreeModel, MODEL_SCHEMA_VERSION};
pub use pipeline::{FeaturePipeline, FittedPipeline, SparseFeatures, SparseRows};
pub use registry::{DataInfo, Registry, Stage, VersionMetadata};
pub use train::{
    importance, temporal_assignment, train, train_on_split, CvPoint, FamilyReport, FeatureWeight,
    GbdtCvPoint, RowCounts, Timings, TrainOutcome, TrainProgress, TrainReport, TrainStage,
    WindowInfo,
};
