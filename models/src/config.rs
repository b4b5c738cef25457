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
    /// Bins of the calibration table. Default `10`.
    pub calibration_bins: usize,
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
        if self.threads == 0 {
            return Err(ModelError::Config("threads = 0: at least 1".into()));
        }
        if self.calibration_bins == 0 {
            return Err(ModelError::Config(
                "calibration_bins = 0: at least 1".into(),
            ));
        }
        Ok(())
    }
}
