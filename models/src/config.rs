//! Feature and training configuration (serde, every field defaulted).
//!
//! ```
//! use complaintflow_models::{FeatureConfig, TextVectorizer};
//! // Any subset of keys may be given; the rest take their documented defaults.
//! let cfg: FeatureConfig = serde_json::from_str(r#"{"sentiment": false, "ngram_max": 1}"#).unwrap();
//! assert!(!cfg.sentiment && cfg.text && cfg.ngram_max == 1);
//! assert_eq!(cfg.vectorizer, TextVectorizer::Vocabulary);
//! cfg.validate().unwrap();
//! ```

use complaintflow_datasets::LabelPolicy;
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// How text n-grams become columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TextVectorizer {
    /// A vocabulary chosen on the training split (`min_df`, `max_features` by document
    /// frequency) with one column per kept term. Default: better AUC at the same dimension
    /// (see the crate docs) and human-readable feature names.
    #[default]
    Vocabulary,
    /// Feature hashing into `hashing_dim` buckets (signed), IDF per bucket. No vocabulary to
    /// store; unseen terms still land somewhere.
    Hashing,
}

/// The categorical fields that can be one-hot encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CategoricalField {
    /// `product`
    Product,
    /// `sub_product`
    SubProduct,
    /// `issue`
    Issue,
    /// `sub_issue`
    SubIssue,
    /// `state`
    State,
    /// `submitted_via`
    SubmittedVia,
    /// `company` (thousands of values: capped by `categorical_min_count` / `categorical_top_k`)
    Company,
    /// `tags` (multi-hot: Servicemember, Older American)
    Tags,
    /// `consumer_consent_provided`
    ConsumerConsentProvided,
}

impl CategoricalField {
    /// All fields, in column order.
    pub const ALL: [CategoricalField; 9] = [
        CategoricalField::Product,
        CategoricalField::SubProduct,
        CategoricalField::Issue,
        CategoricalField::SubIssue,
        CategoricalField::State,
        CategoricalField::SubmittedVia,
        CategoricalField::Company,
        CategoricalField::Tags,
        CategoricalField::ConsumerConsentProvided,
    ];

    /// The CFPB JSON field name.
    pub fn name(self) -> &'static str {
        match self {
            CategoricalField::Product => "product",
            CategoricalField::SubProduct => "sub_product",
            CategoricalField::Issue => "issue",
            CategoricalField::SubIssue => "sub_issue",
            CategoricalField::State => "state",
            CategoricalField::SubmittedVia => "submitted_via",
            CategoricalField::Company => "company",
            CategoricalField::Tags => "tags",
            CategoricalField::ConsumerConsentProvided => "consumer_consent_provided",
        }
    }
}

/// Which features to compute and how. One switch per feature family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureConfig {
    /// Family `text`: TF-IDF of stemmed word n-grams of the narrative. Default `true`.
    pub text: bool,
    /// Family `text_stats`: narrative present, log length, log word count, exclamation
    /// marks, uppercase ratio, redaction (`XXXX`) counts, money amounts (count, log of max).
    /// Default `true`.
    pub text_stats: bool,
    /// Family `categoricals`: one-hot of the fields in `categorical_fields`. Default `true`.
    pub categoricals: bool,
    /// Family `dates`: weekday, month and year of `date_received`, days until sent to the
    /// company (missing / negative flagged). Default `true`.
    pub dates: bool,
    /// Family `sentiment`: VADER-lexicon sentiment (compound, positive, negative) of the
    /// narrative, with VADER's negation rule. Default `true`.
    pub sentiment: bool,
    /// Family `entities`: rule-based mentions of money, dates, the three credit bureaus,
    /// statutes (FCRA, FDCPA, RESPA, TILA, …) and threats of legal action. Default `true`.
    pub entities: bool,
    /// Vocabulary or hashing. Default [`TextVectorizer::Vocabulary`].
    pub vectorizer: TextVectorizer,
    /// Longest word n-gram, 1 or 2. Default `2`.
    pub ngram_max: u8,
    /// Vocabulary: keep terms found in at least this many training narratives. Default `3`.
    pub min_df: u32,
    /// Vocabulary: keep at most this many terms (most frequent by document frequency).
    /// Default `3000` (the dense f32 training matrix is rows × dim × 4 bytes: 48 MB for 4,000
    /// rows).
    pub max_features: usize,
    /// Hashing: number of buckets. Default `4096`.
    pub hashing_dim: u32,
    /// Use `1 + ln(tf)` instead of raw term counts. Default `true`.
    pub sublinear_tf: bool,
    /// Drop English stop words before building n-grams. Default `true`.
    pub stop_words: bool,
    /// Snowball (Porter2) English stemming. Default `true`.
    pub stemming: bool,
    /// Categorical fields to encode. Default: all nine.
    pub categorical_fields: Vec<CategoricalField>,
    /// A categorical value seen fewer times than this in training goes to the unknown
    /// bucket. Default `5`.
    pub categorical_min_count: u32,
    /// At most this many values per categorical field (most frequent first). Default `200`.
    pub categorical_top_k: usize,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            text: true,
            text_stats: true,
            categoricals: true,
            dates: true,
            sentiment: true,
            entities: true,
            vectorizer: TextVectorizer::Vocabulary,
            ngram_max: 2,
            min_df: 3,
            max_features: 3000,
            hashing_dim: 4096,
            sublinear_tf: true,
            stop_words: true,
            stemming: true,
            categorical_fields: CategoricalField::ALL.to_vec(),
            categorical_min_count: 5,
            categorical_top_k: 200,
        }
    }
}

impl FeatureConfig {
    /// Checks ranges; the error names the key and the accepted values.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !(1..=2).contains(&self.ngram_max) {
            return Err(ModelError::Config(format!(
                "ngram_max = {}: must be 1 or 2",
                self.ngram_max
            )));
        }
        if self.text && self.vectorizer == TextVectorizer::Hashing && self.hashing_dim == 0 {
            return Err(ModelError::Config(
                "hashing_dim = 0: must be at least 1".into(),
            ));
        }
        if self.hashing_dim > 1 << 24 {
            return Err(ModelError::Config(format!(
                "hashing_dim = {}: at most 16777216",
                self.hashing_dim
            )));
        }
        if self.max_features > 1 << 24 {
            return Err(ModelError::Config(format!(
                "max_features = {}: at most 16777216",
                self.max_features
            )));
        }
        Ok(())
    }
}

/// How the labelled data is split into training and test sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SplitMethod {
    /// Stable hash of the complaint id (`complaintflow_datasets::split::is_train`: FNV-1a 64
    /// of the decimal id, `fmix64`-finalised). Default.
    #[default]
    Hash,
    /// The earliest `train_fraction` of complaints by `date_received` (ties by id) train;
    /// the latest are the test set.
    Temporal,
}

/// How the 15 % positive rate is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClassBalance {
    /// Fit unweighted (probabilities stay calibrated) and choose the decision threshold that
    /// maximises F1 on the out-of-fold cross-validation predictions. Default.
    #[default]
    Threshold,
    /// Duplicate each positive row `round(negatives / positives)` times (class weighting by
    /// replication; linfa-logistic has no sample weights), and still tune the threshold.
    /// Probabilities are then biased upward.
    Duplicate,
}

/// Which model family `train` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FamilyChoice {
    /// Logistic regression.
    Lr,
    /// Gradient-boosted trees.
    Gbdt,
    /// LR + trees, margins mixed by the weight that maximises out-of-fold AUC.
    Blend,
    /// The family with the best out-of-time AUC (the temporal evaluation). Default.
    #[default]
    Auto,
}

/// How raw margins become probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationMethod {
    /// Platt scaling on out-of-fold margins (rank-preserving). Default.
    #[default]
    Platt,
    /// Isotonic regression on out-of-fold margins (may tie scores).
    Isotonic,
    /// `σ(margin)` as fitted.
    None,
}

/// Gradient-boosted trees (see `gbdt`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GbdtConfig {
    /// Most boosting rounds; cross-validation picks the best multiple of `eval_every` up to
    /// this. Default `400`.
    pub max_rounds: usize,
    /// Rounds between cross-validation checkpoints. Default `20`.
    pub eval_every: usize,
    /// Shrinkage. Default `0.05`.
    pub learning_rate: f64,
    /// Leaves-per-tree grid searched by cross-validation. Default `[15, 31]`.
    pub max_leaves: Vec<usize>,
    /// Depth limit. Default `8`.
    pub max_depth: usize,
    /// Fewest training rows in a leaf. Default `40`.
    pub min_leaf: usize,
    /// L2 penalty on leaf values. Default `5.0`.
    pub lambda: f64,
    /// Row share sampled per tree. Default `0.8`.
    pub subsample: f64,
    /// Feature share sampled per tree. Default `0.8`.
    pub feature_fraction: f64,
    /// Quantile bins per feature (≤ 256). Default `64`.
    pub max_bins: usize,
    /// Smoothing count `m` of the target encodings. Default `20.0`.
    pub target_smoothing: f64,
    /// Seed of the row / feature sampling. Default `17`.
    pub seed: u64,
}

impl Default for GbdtConfig {
    fn default() -> Self {
        GbdtConfig {
            max_rounds: 400,
            eval_every: 20,
            learning_rate: 0.05,
            max_leaves: vec![15, 31],
            max_depth: 8,
            min_leaf: 40,
            lambda: 5.0,
            subsample: 0.8,
            feature_fraction: 0.8,
            max_bins: 64,
            target_smoothing: 20.0,
            seed: 17,
        }
    }
}

/// The temporal evaluation: labelled complaints sorted by `date_received` and cut at fixed
/// dates into train / validation / test / out-of-time windows holding these shares of the
/// rows (a date never straddles two windows). Models with the selected hyperparameters are
/// fitted on the train window, calibrated on the validation window and scored on the test
/// and out-of-time windows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemporalConfig {
    /// Run it. Default `true`.
    pub enabled: bool,
    /// Share of the validation window. Default `0.1`.
    pub validation_fraction: f64,
    /// Share of the test window. Default `0.1`.
    pub test_fraction: f64,
    /// Share of the out-of-time window (the newest complaints). Default `0.15`.
    pub out_of_time_fraction: f64,
    /// Fixed windows instead of shares: first `date_received` of the validation window.
    /// When `validation_start`, `test_start` and `out_of_time_start` are all set (increasing),
    /// they replace the three fractions. Default unset.
    pub validation_start: Option<chrono::NaiveDate>,
    /// First `date_received` of the test window (see `validation_start`).
    pub test_start: Option<chrono::NaiveDate>,
    /// First `date_received` of the out-of-time window (see `validation_start`).
    pub out_of_time_start: Option<chrono::NaiveDate>,
}

impl TemporalConfig {
    /// The fixed start dates `(validation, test, out_of_time)`, when all three are set.
    pub fn fixed_starts(
        &self,
    ) -> Option<(chrono::NaiveDate, chrono::NaiveDate, chrono::NaiveDate)> {
        Some((
            self.validation_start?,
            self.test_start?,
            self.out_of_time_start?,
        ))
    }
}

impl Default for TemporalConfig {
    fn default() -> Self {
        TemporalConfig {
            enabled: true,
            validation_fraction: 0.1,
            test_fraction: 0.1,
            out_of_time_fraction: 0.15,
            validation_start: None,
            test_start: None,
            out_of_time_start: None,
        }
    }
}

/// Training configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Feature pipeline configuration.
    pub features: FeatureConfig,
    /// Label policy. Default `relief`.
    pub label_policy: LabelPolicy,
    /// Split method. Default `hash`.
    pub split: SplitMethod,
    /// Fraction of labelled complaints used for training. Default `0.75`.
    pub train_fraction: f64,
    /// Cross-validation folds over the training split. Default `3`.
    pub folds: usize,
    /// L2 penalties (`alpha` of linfa-logistic: loss = Σ log-loss + α/2·‖w‖²; sklearn's
    /// `C = 1/α`). Default `[0.3, 1, 3, 10, 30, 100]`.
    pub alphas: Vec<f64>,
    /// L-BFGS iterations per fit. Default `100`.
    pub max_iterations: u64,
    /// L-BFGS gradient tolerance. Default `1e-4`.
    pub gradient_tolerance: f64,
    /// Class balance strategy. Default [`ClassBalance::Threshold`].
    pub class_balance: ClassBalance,
    /// Fixed decision threshold; `None` (default) tunes it for F1 on out-of-fold predictions.
    pub threshold: Option<f64>,
    /// Worker threads for cross-validation. Default `2`.
    pub threads: usize,
    /// Number of top positive and negative weights reported. Default `15`.
    pub importance_top_n: usize,
    /// Bins of the calibration table (and of the ECE). Default `10`.
    pub calibration_bins: usize,
    /// Served family. Default [`FamilyChoice::Auto`].
    pub family: FamilyChoice,
    /// Calibration. Default [`CalibrationMethod::Platt`].
    pub calibration: CalibrationMethod,
    /// Fit the served model on every labelled complaint once hyperparameters, family and
    /// calibration are chosen (test metrics come from the model fitted on the training split).
    /// Default `true`.
    pub fit_on_all: bool,
    /// A challenger is promoted over the production model only when its out-of-time AUC is
    /// at least this much higher. Default `0.0`.
    pub promotion_margin: f64,
    /// Trees.
    pub gbdt: GbdtConfig,
    /// Temporal windows.
    pub temporal: TemporalConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            features: FeatureConfig::default(),
            label_policy: LabelPolicy::Relief,
            split: SplitMethod::Hash,
            train_fraction: 0.75,
            folds: 3,
            alphas: vec![0.3, 1.0, 3.0, 10.0, 30.0, 100.0],
            max_iterations: 100,
            gradient_tolerance: 1e-4,
            class_balance: ClassBalance::Threshold,
            threshold: None,
            threads: 2,
            importance_top_n: 15,
            calibration_bins: 10,
            family: FamilyChoice::Auto,
            calibration: CalibrationMethod::Platt,
            fit_on_all: true,
            promotion_margin: 0.0,
            gbdt: GbdtConfig::default(),
            temporal: TemporalConfig::default(),
        }
    }
}

impl TrainConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.features.validate()?;
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) {
            return Err(ModelError::Config(format!(
                "train_fraction = {}: must be strictly between 0 and 1",
                self.train_fraction
            )));
        }
        if self.folds < 2 {
            return Err(ModelError::Config(format!(
                "folds = {}: at least 2",
                self.folds
            )));
        }
        if self.alphas.is_empty() || self.alphas.iter().any(|a| !(a.is_finite() && *a >= 0.0)) {
            return Err(ModelError::Config(format!(
                "alphas = {:?}: need at least one finite, non-negative penalty",
                self.alphas
            )));
        }
        if let Some(t) = self.threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(ModelError::Config(format!(
                    "threshold = {t}: must be in [0, 1]"
                )));
            }
        }
        if !(self.gradient_tolerance.is_finite() && self.gradient_tolerance > 0.0) {
            return Err(ModelError::Config(format!(
                "gradient_tolerance = {}: a finite number above 0 (e.g. 1e-4)",
                self.gradient_tolerance
            )));
        }
        if self.threads == 0 {
            return Err(ModelError::Config("threads = 0: at least 1".into()));
        }
        if self.calibration_bins == 0 {
            return Err(ModelError::Config(
                "calibration_bins = 0: at least 1".into(),
            ));
        }
        let g = &self.gbdt;
        if g.max_rounds == 0 || g.eval_every == 0 || g.max_leaves.is_empty() {
            return Err(ModelError::Config(
                "gbdt.max_rounds, gbdt.eval_every and gbdt.max_leaves must be non-empty / positive"
                    .into(),
            ));
        }
        if g.max_leaves.iter().any(|&l| l < 2) || g.max_depth == 0 {
            return Err(ModelError::Config(
                "gbdt.max_leaves entries must be at least 2 and gbdt.max_depth at least 1".into(),
            ));
        }
        let unit = |x: f64| x > 0.0 && x <= 1.0;
        if !(unit(g.learning_rate) && unit(g.subsample) && unit(g.feature_fraction)) {
            return Err(ModelError::Config(
                "gbdt.learning_rate, gbdt.subsample and gbdt.feature_fraction must be in (0, 1]"
                    .into(),
            ));
        }
        if !((2..=256).contains(&g.max_bins) && g.lambda >= 0.0 && g.target_smoothing >= 0.0) {
            return Err(ModelError::Config(
                "gbdt.max_bins must be 2..=256; gbdt.lambda and gbdt.target_smoothing ≥ 0".into(),
            ));
        }
        let t = &self.temporal;
        let shares = [
            t.validation_fraction,
            t.test_fraction,
            t.out_of_time_fraction,
        ];
        if shares.iter().any(|s| !(*s > 0.0 && *s < 1.0)) || shares.iter().sum::<f64>() >= 0.9 {
            return Err(ModelError::Config(format!(
                "temporal fractions {shares:?}: each in (0, 1), together below 0.9"
            )));
        }
        let dates = [t.validation_start, t.test_start, t.out_of_time_start];
        let set = dates.iter().filter(|d| d.is_some()).count();
        if set != 0 && set != 3 {
            return Err(ModelError::Config(
                "temporal: set all of validation_start, test_start and out_of_time_start, or none"
                    .into(),
            ));
        }
        if let Some((v, te, o)) = t.fixed_starts() {
            if !(v < te && te < o) {
                return Err(ModelError::Config(format!(
                    "temporal: validation_start {v} < test_start {te} < out_of_time_start {o} required"
                )));
            }
        }
        if !(self.promotion_margin.is_finite() && self.promotion_margin >= -1.0) {
            return Err(ModelError::Config(format!(
                "promotion_margin = {}: a finite AUC difference",
                self.promotion_margin
            )));
        }
        Ok(())
    }
}
