//! The feature pipeline: [`FeaturePipeline::fit`] on the training split gives a
//! [`FittedPipeline`], whose [`FittedPipeline::transform`] turns one [`Complaint`] into a
//! sparse feature vector in a reusable [`SparseFeatures`] buffer. Batch training and the
//! streaming `score` operator call this same `transform`.
//!
//! Column layout (each block present only when its family is on): numeric features
//! (standardized with the training mean and deviation), date one-hots (weekday, month,
//! year), categorical one-hots (one block per field: kept values, then `(unknown)`, then
//! `(missing)`), text n-grams (TF-IDF, L2-normalized). Indices in a vector are strictly
//! increasing.
//!
//! ```
//! use complaintflow_datasets::Complaint;
//! use complaintflow_models::{FeatureConfig, FeaturePipeline, SparseFeatures};
//! let day = chrono::NaiveDate::from_ymd_opt(2019, 9, 24).unwrap();
//! let mut train: Vec<Complaint> = (0..20).map(|i| Complaint::minimal(i, day)).collect();
//! for c in &mut train {
//!     c.product = Some("Debt collection".into());
//!     c.complaint_what_happened = Some("They keep calling about a debt I do not owe".into());
//! }
//! let pipeline = FeaturePipeline::fit(&FeatureConfig::default(), &train).unwrap();
//! let mut buf = SparseFeatures::new();
//! pipeline.transform(&train[0], &mut buf);
//! assert!(buf.indices().windows(2).all(|w| w[0] < w[1]));
//! assert!(buf.indices().iter().all(|&i| (i as usize) < pipeline.dim()));
//! let names: Vec<String> = buf.indices().iter().map(|&i| pipeline.feature_name(i as usize)).collect();
//! assert!(names.contains(&"product=Debt collection".to_string()));
//! assert!(names.contains(&"text:debt".to_string()));
//! ```

use chrono::Datelike;
use complaintflow_datasets::Complaint;
use serde::{Deserialize, Serialize};

use crate::config::{CategoricalField, FeatureConfig, TextVectorizer};
use crate::hash::{fmix64, IdMap, StrMap};
use crate::lexicon::Entity;
use crate::text::{analyze, AnalyzeOpts, TextScratch, TextStats};
use crate::ModelError;

/// Entry point for fitting: `FeaturePipeline::fit(&config, &training_complaints)`.
#[derive(Debug, Clone, Copy)]
pub struct FeaturePipeline;

/// A reusable sparse feature vector plus the scratch space of [`FittedPipeline::transform`].
/// Keep one per worker/thread and reuse it: after warm-up, transforming allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct SparseFeatures {
    indices: Vec<u32>,
    values: Vec<f32>,
    scratch: Scratch,
}

#[derive(Debug, Clone, Default)]
struct Scratch {
    text: TextScratch,
    stats: TextStats,
    terms: Vec<(u32, f32)>,
    numeric: Vec<f32>,
    /// The tree model's dense row.
    dense: Vec<f32>,
    /// The tree encoder's memo of level keys.
    keys: crate::encode::KeyCache,
}

impl SparseFeatures {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Column indices, strictly increasing.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// Values, parallel to [`Self::indices`].
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// `(index, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u32, f32)> + '_ {
        self.indices
            .iter()
            .copied()
            .zip(self.values.iter().copied())
    }

    /// Number of stored (non-zero or explicitly emitted) entries.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True when no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Empties the vector (keeps capacity).
    pub fn clear(&mut self) {
        self.indices.clear();
        self.values.clear();
    }

    /// The first `n` values (the numeric block, which starts every vector), the dense-row
    /// scratch of the tree model and its key memo.
    pub(crate) fn numeric_and_dense(
        &mut self,
        n: usize,
    ) -> (&[f32], &mut Vec<f32>, &mut crate::encode::KeyCache) {
        let n = n.min(self.values.len());
        (
            &self.values[..n],
            &mut self.scratch.dense,
            &mut self.scratch.keys,
        )
    }

    /// The vector as a dense `Vec` of length `dim` (entries past `dim` are ignored).
    pub fn to_dense(&self, dim: usize) -> Vec<f32> {
        let mut v = vec![0.0; dim];
        for (i, x) in self.iter() {
            if let Some(slot) = v.get_mut(i as usize) {
                *slot = x;
            }
        }
        v
    }
}

/// Many transformed rows in CSR layout: what batch training builds its design matrix from
/// ([`FittedPipeline::transform_batch`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseRows {
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl SparseRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a row (indices strictly increasing).
    pub fn push_row(&mut self, indices: &[u32], values: &[f32]) {
        if self.indptr.is_empty() {
            self.indptr.push(0);
        }
        self.indices.extend_from_slice(indices);
        self.values.extend_from_slice(values);
        self.indptr.push(self.indices.len());
    }

    /// The rows `rows` (in that order) as a new matrix.
    pub fn select(&self, rows: &[usize]) -> SparseRows {
        let mut m = SparseRows {
            indptr: vec![0],
            ..SparseRows::default()
        };
        for &r in rows {
            if let Some((i, v)) = self.row(r) {
                m.push_row(i, v);
            } else {
                m.push_row(&[], &[]);
            }
        }
        m
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Row `r` as `(indices, values)`; `None` past the end.
    pub fn row(&self, r: usize) -> Option<(&[u32], &[f32])> {
        let (a, b) = (*self.indptr.get(r)?, *self.indptr.get(r + 1)?);
        Some((self.indices.get(a..b)?, self.values.get(a..b)?))
    }
}

/// Numeric feature names, by family, in column order.
const TEXT_STATS_NAMES: [&str; 9] = [
    "narrative_present",
    "narrative_log_chars",
    "narrative_log_words",
    "narrative_log_exclamations",
    "narrative_uppercase_ratio",
    "redactions_log_count",
    "redacted_dates_log_count",
    "money_log_count",
    "money_log_max_amount",
];
const DATE_NUMERIC_NAMES: [&str; 4] = [
    "days_to_company_log",
    "days_to_company_missing",
    "days_to_company_negative",
    "sent_same_day",
];
const SENTIMENT_NAMES: [&str; 3] = [
    "sentiment_compound",
    "sentiment_positive",
    "sentiment_negative",
];
const ENTITY_NAMES: [&str; 12] = [
    "entity_equifax",
    "entity_experian",
    "entity_transunion",
    "entity_bureau_count",
    "entity_fcra",
    "entity_fdcpa",
    "entity_respa",
    "entity_tila",
    "entity_other_statute",
    "entity_legal_threat_log",
    "entity_dates_log",
    "entity_money_log",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const TAG_COLUMNS: [&str; 3] = ["Servicemember", "Older American", "(none)"];

/// Standardized numeric features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct NumericBlock {
    offset: u32,
    names: Vec<String>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

/// Weekday, month and year one-hots of `date_received`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct DateBlock {
    offset: u32,
    /// Years seen at least `categorical_min_count` times in training; others → unknown year.
    years: Vec<i32>,
}

impl DateBlock {
    fn width(&self) -> u32 {
        7 + 12 + self.years.len() as u32 + 1
    }
}

/// One-hot of one categorical field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CategoricalIndex {
    field: CategoricalField,
    offset: u32,
    /// Value → local column.
    values: StrMap<u32>,
    /// Local column → value.
    names: Vec<String>,
}

impl CategoricalIndex {
    /// Kept values, `(unknown)`, `(missing)` — or the 3 tag columns.
    fn width(&self) -> u32 {
        if self.field == CategoricalField::Tags {
            TAG_COLUMNS.len() as u32
        } else {
            self.names.len() as u32 + 2
        }
    }
}

/// How term ids map to text columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum TextColumns {
    /// Term id → column; column → term.
    Vocabulary { ids: IdMap<u32>, terms: Vec<String> },
    /// `fmix64(id) % dim`, sign from the top bit; the most frequent training term per bucket.
    Hashing { dim: u32, examples: Vec<String> },
}

/// TF-IDF of n-grams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TextBlock {
    offset: u32,
    columns: TextColumns,
    idf: Vec<f32>,
}

impl TextBlock {
    fn width(&self) -> u32 {
        self.idf.len() as u32
    }

    /// Maps a term id to `(column, sign)`.
    #[inline]
    fn column(&self, id: u64) -> Option<(u32, f32)> {
        match &self.columns {
            TextColumns::Vocabulary { ids, .. } => ids.get(&id).map(|&c| (c, 1.0)),
            TextColumns::Hashing { dim, .. } => {
                let m = fmix64(id);
                let sign = if m >> 63 == 1 { -1.0 } else { 1.0 };
                Some(((m % u64::from(*dim)) as u32, sign))
            }
        }
    }
}

/// A feature pipeline fitted on a training split. Serializable (JSON for files, bincode for
/// broadcasting to workers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FittedPipeline {
    config: FeatureConfig,
    dim: u32,
    training_rows: u64,
    numeric: NumericBlock,
    dates: Option<DateBlock>,
    categoricals: Vec<CategoricalIndex>,
    text: Option<TextBlock>,
}

fn field_value(c: &Complaint, f: CategoricalField) -> Option<&str> {
    let v = match f {
        CategoricalField::Product => c.product.as_deref(),
        CategoricalField::SubProduct => c.sub_product.as_deref(),
        CategoricalField::Issue => c.issue.as_deref(),
        CategoricalField::SubIssue => c.sub_issue.as_deref(),
        CategoricalField::State => c.state.map(|s| s.code()),
        CategoricalField::SubmittedVia => c.submitted_via.as_deref(),
        CategoricalField::Company => c.company.as_deref(),
        CategoricalField::Tags => None,
        CategoricalField::ConsumerConsentProvided => c.consumer_consent_provided.as_deref(),
    };
    v.map(str::trim).filter(|s| !s.is_empty())
}

fn analyze_opts(cfg: &FeatureConfig, names: bool) -> AnalyzeOpts {
    AnalyzeOpts {
        terms: cfg.text,
        bigrams: cfg.ngram_max >= 2,
        stop_words: cfg.stop_words,
        stemming: cfg.stemming,
        sentiment: cfg.sentiment,
        entities: cfg.entities,
        names,
    }
}

fn needs_text_analysis(cfg: &FeatureConfig) -> bool {
    cfg.text || cfg.text_stats || cfg.sentiment || cfg.entities
}

#[inline]
fn ln1p(x: f64) -> f32 {
    // `max(0)` sends negatives and NaN to 0, whose `ln_1p` is +0: skip the call for them
    // (most counts of a complaint without a narrative are 0).
    if x > 0.0 {
        x.ln_1p() as f32
    } else {
        0.0
    }
}

/// Counts below this take [`ln1p_count`]'s table.
const LN1P_TABLE: usize = 4096;

/// `ln1p(n as f64)` of a count: a table of exactly those values for small counts (built on
/// first use with the same `ln_1p`, so bit-identical), the call above.
#[inline]
fn ln1p_count(n: u64) -> f32 {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| (0..LN1P_TABLE).map(|k| ln1p(k as f64)).collect());
    match usize::try_from(n).ok().and_then(|k| table.get(k)) {
        Some(&v) => v,
        None => ln1p(n as f64),
    }
}

/// Raw (unstandardized) numeric features of a complaint, in column order.
fn raw_numeric(c: &Complaint, cfg: &FeatureConfig, s: &TextStats, out: &mut Vec<f32>) {
    out.clear();
    if cfg.text_stats {
        let present = c.narrative().is_some();
        out.push(if present { 1.0 } else { 0.0 });
        out.push(ln1p_count(u64::from(s.chars)));
        out.push(ln1p_count(u64::from(s.words)));
        out.push(ln1p_count(u64::from(s.exclamations)));
        out.push(if s.letters > 0 {
            s.upper as f32 / s.letters as f32
        } else {
            0.0
        });
        out.push(ln1p_count(u64::from(s.redactions)));
        out.push(ln1p_count(u64::from(s.redacted_dates)));
        out.push(ln1p_count(u64::from(s.money_count)));
        out.push(ln1p(s.money_max));
    }
    if cfg.dates {
        match c.date_sent_to_company {
            Some(sent) => {
                let d = (sent - c.date_received).num_days();
                // Negative day counts map to 0 like `ln1p` does.
                out.push(u64::try_from(d).map_or(0.0, ln1p_count));
                out.push(0.0);
                out.push(if d < 0 { 1.0 } else { 0.0 });
                out.push(if d == 0 { 1.0 } else { 0.0 });
            }
            None => out.extend_from_slice(&[0.0, 1.0, 0.0, 0.0]),
        }
    }
    if cfg.sentiment {
        let v = f64::from(s.valence_sum);
        out.push((v / (v * v + 15.0).sqrt()) as f32);
        let total = s.pos_sum + s.neg_sum.abs() + s.neutral as f32;
        if total > 0.0 {
            out.push(s.pos_sum / total);
            out.push(s.neg_sum.abs() / total);
        } else {
            out.extend_from_slice(&[0.0, 0.0]);
        }
    }
    if cfg.entities {
        let e = &s.entities;
        let flag = |k: Entity| if e[k as usize] > 0 { 1.0f32 } else { 0.0 };
        let bureaus = [Entity::Equifax, Entity::Experian, Entity::TransUnion];
        for b in bureaus {
            out.push(flag(b));
        }
        out.push(bureaus.iter().map(|&b| flag(b)).sum());
        for k in [
            Entity::Fcra,
            Entity::Fdcpa,
            Entity::Respa,
            Entity::Tila,
            Entity::OtherStatute,
        ] {
            out.push(flag(k));
        }
        out.push(ln1p_count(u64::from(e[Entity::LegalThreat as usize])));
        out.push(ln1p_count(u64::from(e[Entity::DateMention as usize])));
        out.push(ln1p_count(u64::from(e[Entity::MoneyWord as usize])));
    }
}

fn numeric_names(cfg: &FeatureConfig) -> Vec<String> {
    let mut v: Vec<&str> = Vec::new();
    if cfg.text_stats {
        v.extend(TEXT_STATS_NAMES);
    }
    if cfg.dates {
        v.extend(DATE_NUMERIC_NAMES);
    }
    if cfg.sentiment {
        v.extend(SENTIMENT_NAMES);
    }
    if cfg.entities {
        v.extend(ENTITY_NAMES);
    }
    v.into_iter().map(String::from).collect()
}

/// Keeps values with `count >= min_count`, at most `top_k`, most frequent first (ties by
/// value, for determinism).
fn top_values(counts: StrMap<u32>, min_count: u32, top_k: usize) -> Vec<String> {
    let mut v: Vec<(String, u32)> = counts
        .into_iter()
        .filter(|(_, n)| *n >= min_count.max(1))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(top_k);
    v.into_iter().map(|(s, _)| s).collect()
}

impl FeaturePipeline {
    /// Fits the pipeline on training complaints: categorical indexes, years, vocabulary /
    /// IDF, numeric means and deviations. Labels and outcome fields are never read.
    pub fn fit(cfg: &FeatureConfig, train: &[Complaint]) -> Result<FittedPipeline, ModelError> {
        let refs: Vec<&Complaint> = train.iter().collect();
        Self::fit_refs(cfg, &refs)
    }

    /// [`FeaturePipeline::fit`] on borrowed complaints.
    pub fn fit_refs(
        cfg: &FeatureConfig,
        train: &[&Complaint],
    ) -> Result<FittedPipeline, ModelError> {
        cfg.validate()?;
        if train.is_empty() {
            return Err(ModelError::NotEnoughData(
                "cannot fit a feature pipeline on zero complaints".into(),
            ));
        }
        let n = train.len();
        let mut scratch = TextScratch::default();
        let mut stats;
        let opts = analyze_opts(cfg, true);

        // Pass over the data: text df, numerics, categorical and year counts.
        let mut df: IdMap<u32> = IdMap::default();
        let mut term_names: IdMap<String> = IdMap::default();
        let mut doc_ids: Vec<u64> = Vec::new();
        let names_numeric = numeric_names(cfg);
        let n_num = names_numeric.len();
        let mut sum = vec![0.0f64; n_num];
        let mut sum_sq = vec![0.0f64; n_num];
        let mut raw = Vec::with_capacity(n_num);
        let fields: Vec<CategoricalField> = if cfg.categoricals {
            let mut f = cfg.categorical_fields.clone();
            f.sort();
            f.dedup();
            f
        } else {
            Vec::new()
        };
        let mut cat_counts: Vec<StrMap<u32>> = vec![StrMap::default(); fields.len()];
        let mut year_counts: IdMap<u32> = IdMap::default();

        for &c in train {
            stats = TextStats::default();
            if needs_text_analysis(cfg) {
                if let Some(text) = c.narrative() {
                    doc_ids.clear();
                    analyze(text, opts, &mut scratch, &mut stats, |id, name| {
                        doc_ids.push(id);
                        if let Some(name) = name {
                            term_names.entry(id).or_insert_with(|| name.to_string());
                        }
                    });
                    doc_ids.sort_unstable();
                    doc_ids.dedup();
                    for id in &doc_ids {
                        *df.entry(*id).or_insert(0) += 1;
                    }
                }
            }
            raw_numeric(c, cfg, &stats, &mut raw);
            for (k, x) in raw.iter().enumerate() {
                let x = f64::from(*x);
                sum[k] += x;
                sum_sq[k] += x * x;
            }
            for (k, f) in fields.iter().enumerate() {
                if let Some(v) = field_value(c, *f) {
                    *cat_counts[k].entry(v.to_string()).or_insert(0) += 1;
                }
            }
            *year_counts
                .entry(c.date_received.year() as u64)
                .or_insert(0) += 1;
        }

        let mut offset = 0u32;
        // Numerics.
        let mut mean = Vec::with_capacity(n_num);
        let mut inv_std = Vec::with_capacity(n_num);
        for k in 0..n_num {
            let m = sum[k] / n as f64;
            let var = (sum_sq[k] / n as f64 - m * m).max(0.0);
            let sd = var.sqrt();
            mean.push(m as f32);
            inv_std.push(if sd > 1e-9 { (1.0 / sd) as f32 } else { 1.0 });
        }
        let numeric = NumericBlock {
            offset,
            names: names_numeric,
            mean,
            inv_std,
        };
        offset += n_num as u32;

        // Dates.
        let dates = if cfg.dates {
            let mut years: Vec<i32> = year_counts
                .iter()
                .filter(|(_, &k)| k >= cfg.categorical_min_count.max(1))
                .map(|(&y, _)| y as i32)
                .collect();
            years.sort_unstable();
            let block = DateBlock { offset, years };
            offset += block.width();
            Some(block)
        } else {
            None
        };

        // Categoricals.
        let mut categoricals = Vec::with_capacity(fields.len());
        for (f, counts) in fields.iter().zip(cat_counts) {
            let names = if *f == CategoricalField::Tags {
                Vec::new()
            } else {
                top_values(counts, cfg.categorical_min_count, cfg.categorical_top_k)
            };
            let values: StrMap<u32> = names
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as u32))
                .collect();
            let idx = CategoricalIndex {
                field: *f,
                offset,
                values,
                names,
            };
            offset += idx.width();
            categoricals.push(idx);
        }

        // Text.
        let text = if cfg.text {
            let idf_of = |d: u32| (((1.0 + n as f64) / (1.0 + f64::from(d))).ln() + 1.0) as f32;
            let block = match cfg.vectorizer {
                TextVectorizer::Vocabulary => {
                    let mut kept: Vec<(u64, u32, &str)> = df
                        .iter()
                        .filter(|(_, &d)| d >= cfg.min_df.max(1))
                        .map(|(&id, &d)| {
                            (id, d, term_names.get(&id).map(String::as_str).unwrap_or(""))
                        })
                        .collect();
                    kept.sort_by(|a, b| {
                        b.1.cmp(&a.1).then_with(|| a.2.cmp(b.2)).then(a.0.cmp(&b.0))
                    });
                    kept.truncate(cfg.max_features);
                    let ids: IdMap<u32> = kept
                        .iter()
                        .enumerate()
                        .map(|(col, (id, _, _))| (*id, col as u32))
                        .collect();
                    let terms = kept.iter().map(|(_, _, s)| s.to_string()).collect();
                    let idf = kept.iter().map(|(_, d, _)| idf_of(*d)).collect();
                    TextBlock {
                        offset,
                        columns: TextColumns::Vocabulary { ids, terms },
                        idf,
                    }
                }
                TextVectorizer::Hashing => {
                    let dim = cfg.hashing_dim;
                    let mut bucket_df = vec![0u32; dim as usize];
                    let mut best: Vec<(u32, u64)> = vec![(0, 0); dim as usize];
                    let tmp = TextBlock {
                        offset,
                        columns: TextColumns::Hashing {
                            dim,
                            examples: Vec::new(),
                        },
                        idf: Vec::new(),
                    };
                    for (&id, &d) in &df {
                        if let Some((col, _)) = tmp.column(id) {
                            let col = col as usize;
                            // Upper bound of the bucket's document frequency.
                            bucket_df[col] = bucket_df[col].saturating_add(d).min(n as u32);
                            if d > best[col].0 {
                                best[col] = (d, id);
                            }
                        }
                    }
                    let examples = best
                        .iter()
                        .map(|(d, id)| {
                            if *d == 0 {
                                String::new()
                            } else {
                                term_names.get(id).cloned().unwrap_or_default()
                            }
                        })
                        .collect();
                    let idf = bucket_df.iter().map(|&d| idf_of(d)).collect();
                    TextBlock {
                        offset,
                        columns: TextColumns::Hashing { dim, examples },
                        idf,
                    }
                }
            };
            offset += block.width();
            Some(block)
        } else {
            None
        };

        let fitted = FittedPipeline {
            config: cfg.clone(),
            dim: offset,
            training_rows: n as u64,
            numeric,
            dates,
            categoricals,
            text,
        };
        tracing::debug!(dim = fitted.dim, rows = n, "fitted feature pipeline");
        Ok(fitted)
    }
}

impl FittedPipeline {
    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.dim as usize
    }

    /// The configuration it was fitted with.
    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    /// Number of training complaints it was fitted on.
    pub fn training_rows(&self) -> u64 {
        self.training_rows
    }

    /// Width of the numeric block (the first columns of every vector).
    pub fn numeric_len(&self) -> usize {
        self.numeric.names.len()
    }

    /// Number of text columns (vocabulary size or hashing dimension; 0 when text is off).
    pub fn text_dim(&self) -> usize {
        self.text.as_ref().map_or(0, |t| t.width() as usize)
    }

    /// Only the numeric block of [`FittedPipeline::transform`] (the same values at the same
    /// positions `0..numeric_len()`: text statistics, sentiment, entities, ...): what the
    /// tree family reads. Skips the n-gram columns, dates and one-hot categoricals.
    pub(crate) fn transform_numeric(&self, c: &Complaint, out: &mut SparseFeatures) {
        out.clear();
        let cfg = &self.config;
        let SparseFeatures {
            indices,
            values,
            scratch,
        } = out;
        let Scratch {
            text: text_scratch,
            stats,
            numeric,
            ..
        } = scratch;
        *stats = TextStats::default();
        if needs_text_analysis(cfg) {
            if let Some(narrative) = c.narrative() {
                // No n-grams: the statistics do not depend on them, and without terms the
                // analyzer neither stems nor consults its stem cache.
                let opts = AnalyzeOpts {
                    terms: false,
                    bigrams: false,
                    ..analyze_opts(cfg, false)
                };
                analyze(narrative, opts, text_scratch, stats, |_, _| {});
            }
        }
        raw_numeric(c, cfg, stats, numeric);
        let nb = &self.numeric;
        for (k, ((x, m), s)) in numeric.iter().zip(&nb.mean).zip(&nb.inv_std).enumerate() {
            indices.push(nb.offset + k as u32);
            values.push((x - m) * s);
        }
    }

    /// Turns a complaint into its feature vector (cleared and refilled). Outcome fields
    /// (`company_response`, `timely`, `consumer_disputed`, `company_public_response`) and
    /// `complaint_id` are never read.
    pub fn transform(&self, c: &Complaint, out: &mut SparseFeatures) {
        out.clear();
        let cfg = &self.config;
        let SparseFeatures {
            indices,
            values,
            scratch,
        } = out;
        let Scratch {
            text: text_scratch,
            stats,
            terms,
            numeric,
            ..
        } = scratch;
        terms.clear();
        *stats = TextStats::default();
        if needs_text_analysis(cfg) {
            if let Some(narrative) = c.narrative() {
                let opts = analyze_opts(cfg, false);
                match &self.text {
                    Some(block) => analyze(narrative, opts, text_scratch, stats, |id, _| {
                        if let Some((col, sign)) = block.column(id) {
                            terms.push((col, sign));
                        }
                    }),
                    None => analyze(narrative, opts, text_scratch, stats, |_, _| {}),
                }
            }
        }

        // Numerics.
        raw_numeric(c, cfg, stats, numeric);
        let nb = &self.numeric;
        for (k, ((x, m), s)) in numeric.iter().zip(&nb.mean).zip(&nb.inv_std).enumerate() {
            indices.push(nb.offset + k as u32);
            values.push((x - m) * s);
        }

        // Dates.
        if let Some(d) = &self.dates {
            let date = c.date_received;
            indices.push(d.offset + date.weekday().num_days_from_monday());
            values.push(1.0);
            indices.push(d.offset + 7 + date.month0());
            values.push(1.0);
            let y = d.years.binary_search(&date.year()).unwrap_or(d.years.len());
            indices.push(d.offset + 19 + y as u32);
            values.push(1.0);
        }

        // Categoricals.
        for idx in &self.categoricals {
            if idx.field == CategoricalField::Tags {
                let t = c.tags;
                if t.servicemember() {
                    indices.push(idx.offset);
                    values.push(1.0);
                }
                if t.older_american() {
                    indices.push(idx.offset + 1);
                    values.push(1.0);
                }
                if t.is_empty() {
                    indices.push(idx.offset + 2);
                    values.push(1.0);
                }
                continue;
            }
            let unknown = idx.names.len() as u32;
            let local = match field_value(c, idx.field) {
                Some(v) => idx.values.get(v).copied().unwrap_or(unknown),
                None => unknown + 1,
            };
            indices.push(idx.offset + local);
            values.push(1.0);
        }

        // Text: merge duplicate columns, TF (sublinear), IDF, L2 norm.
        if let Some(block) = &self.text {
            if !terms.is_empty() {
                terms.sort_unstable_by_key(|t| t.0);
                let mut w = 0usize;
                for r in 0..terms.len() {
                    if w > 0 && terms[w - 1].0 == terms[r].0 {
                        terms[w - 1].1 += terms[r].1;
                    } else {
                        terms[w] = terms[r];
                        w += 1;
                    }
                }
                terms.truncate(w);
                let mut norm = 0.0f32;
                for t in terms.iter_mut() {
                    let tf = t.1;
                    let mut v = if cfg.sublinear_tf && tf != 0.0 {
                        tf.signum() * (1.0 + tf.abs().ln())
                    } else {
                        tf
                    };
                    v *= block.idf.get(t.0 as usize).copied().unwrap_or(1.0);
                    t.1 = v;
                    norm += v * v;
                }
                let inv = if norm > 0.0 { 1.0 / norm.sqrt() } else { 0.0 };
                for &(col, v) in terms.iter() {
                    if v != 0.0 {
                        indices.push(block.offset + col);
                        values.push(v * inv);
                    }
                }
            }
        }
    }

    /// Transforms many complaints (the batch / training path) with one reused buffer.
    pub fn transform_batch<'a>(&self, rows: impl IntoIterator<Item = &'a Complaint>) -> SparseRows {
        let mut buf = SparseFeatures::new();
        let mut m = SparseRows {
            indptr: vec![0],
            indices: Vec::new(),
            values: Vec::new(),
        };
        for c in rows {
            self.transform(c, &mut buf);
            m.indices.extend_from_slice(buf.indices());
            m.values.extend_from_slice(buf.values());
            m.indptr.push(m.indices.len());
        }
        m
    }

    /// A human-readable name for column `idx`: `product=Mortgage`, `company=(unknown)`,
    /// `received_weekday=Mon`, `text:credit report`, `sentiment_compound`, ….
    pub fn feature_name(&self, idx: usize) -> String {
        let Ok(i) = u32::try_from(idx) else {
            return format!("#{idx} (out of range)");
        };
        let nb = &self.numeric;
        if i >= nb.offset && i < nb.offset + nb.names.len() as u32 {
            return nb.names[(i - nb.offset) as usize].clone();
        }
        if let Some(d) = &self.dates {
            if i >= d.offset && i < d.offset + d.width() {
                let k = (i - d.offset) as usize;
                return match k {
                    0..=6 => format!("received_weekday={}", WEEKDAYS[k]),
                    7..=18 => format!("received_month={}", MONTHS[k - 7]),
                    _ => match d.years.get(k - 19) {
                        Some(y) => format!("received_year={y}"),
                        None => "received_year=(unknown)".to_string(),
                    },
                };
            }
        }
        for c in &self.categoricals {
            if i >= c.offset && i < c.offset + c.width() {
                let k = (i - c.offset) as usize;
                let name = c.field.name();
                if c.field == CategoricalField::Tags {
                    return format!("{name}={}", TAG_COLUMNS.get(k).unwrap_or(&"?"));
                }
                return match c.names.get(k) {
                    Some(v) => format!("{name}={v}"),
                    None if k == c.names.len() => format!("{name}=(unknown)"),
                    None => format!("{name}=(missing)"),
                };
            }
        }
        if let Some(t) = &self.text {
            if i >= t.offset && i < t.offset + t.width() {
                let k = (i - t.offset) as usize;
                return match &t.columns {
                    TextColumns::Vocabulary { terms, .. } => {
                        format!("text:{}", terms.get(k).map(String::as_str).unwrap_or("?"))
                    }
                    TextColumns::Hashing { examples, .. } => match examples.get(k) {
                        Some(e) if !e.is_empty() => format!("text#{k} (e.g. {e})"),
                        _ => format!("text#{k}"),
                    },
                };
            }
        }
        format!("#{idx} (out of range)")
    }

    /// Checks internal consistency (block offsets and widths, table lengths, finite
    /// numbers); used after loading a file.
    pub fn validate(&self) -> Result<(), String> {
        self.config.validate().map_err(|e| e.to_string())?;
        let mut expect = 0u32;
        let nb = &self.numeric;
        if nb.offset != expect {
            return Err(format!(
                "numeric block at {} (expected {expect})",
                nb.offset
            ));
        }
        if nb.names != numeric_names(&self.config)
            || nb.mean.len() != nb.names.len()
            || nb.inv_std.len() != nb.names.len()
        {
            return Err("numeric block does not match the configured feature families".into());
        }
        if nb.mean.iter().chain(&nb.inv_std).any(|x| !x.is_finite()) {
            return Err("numeric block holds a non-finite mean or scale".into());
        }
        expect += nb.names.len() as u32;
        if self.dates.is_some() != self.config.dates {
            return Err("date block does not match config.dates".into());
        }
        if let Some(d) = &self.dates {
            if d.offset != expect || !d.years.windows(2).all(|w| w[0] < w[1]) {
                return Err("date block offset or years are invalid".into());
            }
            expect += d.width();
        }
        for c in &self.categoricals {
            if c.offset != expect {
                return Err(format!("categorical block {} misplaced", c.field.name()));
            }
            if c.values.len() != c.names.len()
                || c.names
                    .iter()
                    .enumerate()
                    .any(|(k, n)| c.values.get(n) != Some(&(k as u32)))
            {
                return Err(format!(
                    "categorical index of {} is inconsistent",
                    c.field.name()
                ));
            }
            expect += c.width();
        }
        if self.text.is_some() != self.config.text {
            return Err("text block does not match config.text".into());
        }
        if let Some(t) = &self.text {
            if t.offset != expect || t.idf.iter().any(|x| !x.is_finite()) {
                return Err("text block offset or IDF invalid".into());
            }
            match &t.columns {
                TextColumns::Vocabulary { ids, terms } => {
                    if ids.len() != t.idf.len()
                        || terms.len() != t.idf.len()
                        || ids.values().any(|&c| c as usize >= t.idf.len())
                    {
                        return Err("vocabulary and IDF lengths differ".into());
                    }
                }
                TextColumns::Hashing { dim, examples } => {
                    if *dim as usize != t.idf.len() || examples.len() != t.idf.len() {
                        return Err("hashing dimension and IDF length differ".into());
                    }
                }
            }
            expect += t.width();
        }
        if expect != self.dim {
            return Err(format!(
                "blocks add up to {expect} columns, dim says {}",
                self.dim
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_table_holds_exactly_ln1p() {
        for n in (0..LN1P_TABLE as u64 + 10).chain([1 << 20, u64::from(u32::MAX)]) {
            assert_eq!(ln1p_count(n).to_bits(), ln1p(n as f64).to_bits(), "{n}");
        }
        for x in [0.0, -0.0, -3.0, f64::NAN, 0.5, 12.25] {
            assert_eq!(
                ln1p(x).to_bits(),
                (x.max(0.0).ln_1p() as f32).to_bits(),
                "{x}"
            );
        }
    }
}
