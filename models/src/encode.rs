//! The dense feature row of the tree model: numeric features, era features and, for every
//! categorical field and cross, a smoothed target encoding and a frequency encoding.
//!
//! Contract:
//! - Values are keyed by a stable hash of the trimmed, ASCII-lowercased string (crosses: the
//!   pair of hashes combined), so scoring allocates nothing and never builds a key string.
//! - Target encoding = `(positives + m·prior) / (count + m)` with `m = smoothing`; a level
//!   never seen in training encodes as the prior with frequency 0; a missing value is its own
//!   level (and also sets a missingness flag). Frequency = `ln(1 + count)`.
//! - During training every row's target encoding comes from the *other* folds (out-of-fold,
//!   salted hash of the complaint id), so a row never sees its own label; the stored tables
//!   (used at scoring) hold the statistics of all training rows.
//! - Outcome fields (`company_response`, `timely`, `consumer_disputed`,
//!   `company_public_response`) are never read.
//!
//! Cost: the nine base fields are hashed once per complaint (crosses combine those hashes;
//! on the scoring path the text fields' keys come from a per-buffer memo), then one lookup of
//! a precomputed `[te, freq]` pair per field or cross (14); together with the tree walk this
//! is what the served tree family adds to the pipeline's numeric block (2.05 µs on-CPU per
//! complaint in all) (docs/MODELS.md, `examples/score_cpu.rs`).

use std::sync::OnceLock;

use chrono::Datelike;
use complaintflow_datasets::split::stable_hash;
use complaintflow_datasets::Complaint;
use serde::{Deserialize, Serialize};

use crate::hash::{combine, IdMap};

/// The fields and crosses the tree model encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TreeField {
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
    /// First three digits of `zip_code` (4-digit ZIPs that lost a leading zero are padded).
    Zip3,
    /// `submitted_via`
    SubmittedVia,
    /// `company`
    Company,
    /// `consumer_consent_provided`
    Consent,
    /// product × issue
    ProductIssue,
    /// company × product
    CompanyProduct,
    /// company × issue
    CompanyIssue,
    /// product × sub_issue
    ProductSubIssue,
    /// company × year received (response practice changes over the years)
    CompanyYear,
}

impl TreeField {
    /// Every field, in column order.
    pub const ALL: [TreeField; 14] = [
        TreeField::Product,
        TreeField::SubProduct,
        TreeField::Issue,
        TreeField::SubIssue,
        TreeField::State,
        TreeField::Zip3,
        TreeField::SubmittedVia,
        TreeField::Company,
        TreeField::Consent,
        TreeField::ProductIssue,
        TreeField::CompanyProduct,
        TreeField::CompanyIssue,
        TreeField::ProductSubIssue,
        TreeField::CompanyYear,
    ];

    /// Column name prefix.
    pub fn name(self) -> &'static str {
        match self {
            TreeField::Product => "product",
            TreeField::SubProduct => "sub_product",
            TreeField::Issue => "issue",
            TreeField::SubIssue => "sub_issue",
            TreeField::State => "state",
            TreeField::Zip3 => "zip3",
            TreeField::SubmittedVia => "submitted_via",
            TreeField::Company => "company",
            TreeField::Consent => "consumer_consent_provided",
            TreeField::ProductIssue => "product_x_issue",
            TreeField::CompanyProduct => "company_x_product",
            TreeField::CompanyIssue => "company_x_issue",
            TreeField::ProductSubIssue => "product_x_sub_issue",
            TreeField::CompanyYear => "company_x_year",
        }
    }
}

const MISSING: u64 = 0x6d69_7373_696e_6721;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Stable hash of a trimmed, ASCII-lowercased value; [`MISSING`] for none / empty / `None` /
/// `N/A`.
fn key_of(v: Option<&str>) -> u64 {
    let Some(s) = v.map(str::trim).filter(|s| {
        !s.is_empty()
            && !s.eq_ignore_ascii_case("none")
            && !s.eq_ignore_ascii_case("n/a")
            && !s.eq_ignore_ascii_case("null")
    }) else {
        return MISSING;
    };
    let mut h = FNV_OFFSET;
    for b in s.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(FNV_PRIME);
    }
    crate::hash::fmix64(h)
}

fn zip3(c: &Complaint) -> u64 {
    let Some(z) = c.zip_code.as_deref().map(str::trim) else {
        return MISSING;
    };
    let b = z.as_bytes();
    let digits = b.iter().take_while(|x| x.is_ascii_digit()).count();
    let mut k = [b'0'; 3];
    match (b.len(), digits) {
        // Lost a leading zero ("2138" for 02138).
        (4, 4) => k[1..].copy_from_slice(&b[..2]),
        (_, d) if d >= 3 => k.copy_from_slice(&b[..3]),
        _ => return MISSING,
    }
    let mut h = FNV_OFFSET;
    for x in k {
        h ^= u64::from(x);
        h = h.wrapping_mul(FNV_PRIME);
    }
    crate::hash::fmix64(h)
}

fn cross(a: u64, b: u64) -> u64 {
    if a == MISSING && b == MISSING {
        MISSING
    } else {
        combine(a, b)
    }
}

/// The base level keys of a complaint, each hashed once (crosses are derived from them).
#[derive(Clone, Copy)]
struct Keys {
    product: u64,
    sub_product: u64,
    issue: u64,
    sub_issue: u64,
    state: u64,
    zip3: u64,
    via: u64,
    company: u64,
    consent: u64,
    year: u64,
}

/// Slots per field of a [`KeyCache`].
const KEY_CACHE_SLOTS: usize = 256;

/// A per-thread memo of [`key_of`] for the eight text fields: the level values repeat from
/// complaint to complaint, and comparing a value with the cached copy is cheaper than
/// FNV-hashing it byte by byte. Direct-mapped, keyed by the raw value (so the result is
/// exactly `key_of` of it); a miss recomputes and overwrites the slot, reusing its
/// capacity.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyCache {
    slots: Vec<(String, u64)>,
}

impl KeyCache {
    /// `key_of(v)` of field `field` (0..8).
    #[inline]
    fn key(&mut self, field: usize, v: Option<&str>) -> u64 {
        let Some(s) = v else {
            return key_of(None);
        };
        if self.slots.is_empty() {
            self.slots = vec![(String::new(), MISSING); 8 * KEY_CACHE_SLOTS];
        }
        let b = s.as_bytes();
        // A cheap spread of the length and the first and last bytes.
        let mix = (b.len() as u64)
            ^ u64::from(b.first().copied().unwrap_or(0)) << 8
            ^ u64::from(b.get(b.len() / 2).copied().unwrap_or(0)) << 16
            ^ u64::from(b.last().copied().unwrap_or(0)) << 24;
        let slot = (crate::hash::fmix64(mix) as usize) % KEY_CACHE_SLOTS;
        let Some(entry) = self.slots.get_mut(field * KEY_CACHE_SLOTS + slot) else {
            return key_of(Some(s));
        };
        if entry.0 != s {
            entry.0.clear();
            entry.0.push_str(s);
            entry.1 = key_of(Some(s));
        }
        entry.1
    }
}

impl Keys {
    /// [`Keys::of`] through a [`KeyCache`] (identical keys).
    fn of_cached(c: &Complaint, cache: &mut KeyCache) -> Keys {
        Keys {
            product: cache.key(0, c.product.as_deref()),
            sub_product: cache.key(1, c.sub_product.as_deref()),
            issue: cache.key(2, c.issue.as_deref()),
            sub_issue: cache.key(3, c.sub_issue.as_deref()),
            state: key_of(c.state.map(|s| s.code())),
            zip3: zip3(c),
            via: cache.key(4, c.submitted_via.as_deref()),
            company: cache.key(5, c.company.as_deref()),
            consent: cache.key(6, c.consumer_consent_provided.as_deref()),
            year: c.date_received.year() as u64,
        }
    }

    fn of(c: &Complaint) -> Keys {
        Keys {
            product: key_of(c.product.as_deref()),
            sub_product: key_of(c.sub_product.as_deref()),
            issue: key_of(c.issue.as_deref()),
            sub_issue: key_of(c.sub_issue.as_deref()),
            state: key_of(c.state.map(|s| s.code())),
            zip3: zip3(c),
            via: key_of(c.submitted_via.as_deref()),
            company: key_of(c.company.as_deref()),
            consent: key_of(c.consumer_consent_provided.as_deref()),
            year: c.date_received.year() as u64,
        }
    }

    /// The level key of one field.
    #[inline]
    fn field(&self, f: TreeField) -> u64 {
        match f {
            TreeField::Product => self.product,
            TreeField::SubProduct => self.sub_product,
            TreeField::Issue => self.issue,
            TreeField::SubIssue => self.sub_issue,
            TreeField::State => self.state,
            TreeField::Zip3 => self.zip3,
            TreeField::SubmittedVia => self.via,
            TreeField::Company => self.company,
            TreeField::Consent => self.consent,
            TreeField::ProductIssue => cross(self.product, self.issue),
            TreeField::CompanyProduct => cross(self.company, self.product),
            TreeField::CompanyIssue => cross(self.company, self.issue),
            TreeField::ProductSubIssue => cross(self.product, self.sub_issue),
            TreeField::CompanyYear => cross(self.company, self.year),
        }
    }
}

/// Counts of one level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LevelStats {
    /// Training rows with this level.
    pub count: u32,
    /// Positives among them.
    pub positives: u32,
}

/// The table of one field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldTable {
    /// Field.
    pub field: TreeField,
    /// Level key → statistics.
    pub levels: IdMap<LevelStats>,
}

/// Fitted encoder of the tree model's rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeEncoder {
    /// Numeric features copied from the pipeline's numeric block (columns `0..n_numeric`).
    pub n_numeric: u32,
    /// `12·year + month0` of the earliest training complaint.
    pub start_month: i32,
    /// Training positive rate.
    pub prior: f64,
    /// Smoothing count `m`.
    pub smoothing: f64,
    /// One table per field, in column order.
    pub tables: Vec<FieldTable>,
    /// `[te, freq]` of every level, derived from `tables` on first use (never serialized).
    #[serde(skip)]
    encoded: EncodedLevels,
}

/// The encoded `[te, freq]` pair of every level of one table, and of an unseen level.
#[derive(Clone, Debug)]
struct EncodedTable {
    levels: IdMap<[f32; 2]>,
    unseen: [f32; 2],
}

/// Lazily built [`EncodedTable`]s: a pure function of the encoder's other fields, so it
/// takes no part in equality and is rebuilt (not stored) after loading.
#[derive(Clone, Default)]
struct EncodedLevels(OnceLock<Vec<EncodedTable>>);

impl PartialEq for EncodedLevels {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for EncodedLevels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "EncodedLevels(built)"
        } else {
            "EncodedLevels(pending)"
        })
    }
}

/// Era and flag columns after the numerics.
const ERA_NAMES: [&str; 10] = [
    "year",
    "month",
    "weekday",
    "months_since_start",
    "servicemember",
    "older_american",
    "sub_product_missing",
    "sub_issue_missing",
    "zip_missing",
    "consent_missing",
];

impl TreeEncoder {
    /// Number of columns of a row.
    pub fn width(&self) -> usize {
        self.n_numeric as usize + ERA_NAMES.len() + 2 * self.tables.len()
    }

    /// Column names (numerics named by the caller's pipeline).
    pub fn column_name(&self, k: usize, numeric_name: impl Fn(usize) -> String) -> String {
        let n = self.n_numeric as usize;
        if k < n {
            return numeric_name(k);
        }
        let k = k - n;
        if let Some(e) = ERA_NAMES.get(k) {
            return (*e).to_string();
        }
        let k = k - ERA_NAMES.len();
        match self.tables.get(k / 2) {
            Some(t) if k.is_multiple_of(2) => format!("te:{}", t.field.name()),
            Some(t) => format!("freq:{}", t.field.name()),
            None => format!("#{k}"),
        }
    }

    /// The `[te, freq]` tables of every field, built on first use.
    fn encoded(&self) -> &[EncodedTable] {
        self.encoded.0.get_or_init(|| {
            self.tables
                .iter()
                .map(|t| EncodedTable {
                    levels: t
                        .levels
                        .iter()
                        .map(|(&k, &s)| (k, self.encode_level(s)))
                        .collect(),
                    unseen: self.encode_level(LevelStats::default()),
                })
                .collect()
        })
    }

    fn encode_level(&self, s: LevelStats) -> [f32; 2] {
        let te = (f64::from(s.positives) + self.smoothing * self.prior)
            / (f64::from(s.count) + self.smoothing);
        [te as f32, (f64::from(s.count)).ln_1p() as f32]
    }

    fn era(&self, c: &Complaint, k: &Keys, out: &mut Vec<f32>) {
        let d = c.date_received;
        out.push(d.year() as f32);
        out.push(d.month0() as f32);
        out.push(d.weekday().num_days_from_monday() as f32);
        out.push((d.year() * 12 + d.month0() as i32 - self.start_month) as f32);
        out.push(f32::from(u8::from(c.tags.servicemember())));
        out.push(f32::from(u8::from(c.tags.older_american())));
        out.push(f32::from(u8::from(k.sub_product == MISSING)));
        out.push(f32::from(u8::from(k.sub_issue == MISSING)));
        out.push(f32::from(u8::from(k.zip3 == MISSING)));
        out.push(f32::from(u8::from(k.consent == MISSING)));
    }

    /// The row of a complaint (cleared and refilled). `numeric` = the pipeline's numeric
    /// block of the same complaint.
    #[inline]
    pub fn encode(&self, c: &Complaint, numeric: &[f32], out: &mut Vec<f32>) {
        self.encode_keys(c, Keys::of(c), numeric, out);
    }

    /// [`TreeEncoder::encode`] with the level keys memoized in `cache` (the scoring path).
    #[inline]
    pub(crate) fn encode_cached(
        &self,
        c: &Complaint,
        numeric: &[f32],
        out: &mut Vec<f32>,
        cache: &mut KeyCache,
    ) {
        self.encode_keys(c, Keys::of_cached(c, cache), numeric, out);
    }

    #[inline]
    fn encode_keys(&self, c: &Complaint, keys: Keys, numeric: &[f32], out: &mut Vec<f32>) {
        out.clear();
        let n = self.n_numeric as usize;
        out.extend(numeric.iter().take(n).copied());
        while out.len() < n {
            out.push(0.0);
        }
        self.era(c, &keys, out);
        let encoded = self.encoded();
        // The precomputed pairs hold exactly `encode_level` of each level (one lookup, no
        // division or logarithm); should `tables` have been edited after they were built,
        // compute from the counts instead.
        let fresh = encoded.len() == self.tables.len()
            && encoded
                .iter()
                .zip(&self.tables)
                .all(|(e, t)| e.levels.len() == t.levels.len());
        if fresh {
            for (t, e) in self.tables.iter().zip(encoded) {
                let pair = e
                    .levels
                    .get(&keys.field(t.field))
                    .copied()
                    .unwrap_or(e.unseen);
                out.extend(pair);
            }
        } else {
            for t in &self.tables {
                let s = t
                    .levels
                    .get(&keys.field(t.field))
                    .copied()
                    .unwrap_or_default();
                out.extend(self.encode_level(s));
            }
        }
    }

    /// [`TreeEncoder::encode`] computing every pair from the level counts (the reference
    /// the precomputed tables must agree with).
    pub fn encode_uncached(&self, c: &Complaint, numeric: &[f32], out: &mut Vec<f32>) {
        out.clear();
        let n = self.n_numeric as usize;
        out.extend(numeric.iter().take(n).copied());
        while out.len() < n {
            out.push(0.0);
        }
        let keys = Keys::of(c);
        self.era(c, &keys, out);
        for t in &self.tables {
            let s = t
                .levels
                .get(&keys.field(t.field))
                .copied()
                .unwrap_or_default();
            out.extend(self.encode_level(s));
        }
    }

    /// Fits on training rows and returns the encoder with the out-of-fold design matrix
    /// (row-major, `width()` columns). `numeric(i)` gives row `i`'s numeric block.
    pub(crate) fn fit<'a>(
        rows: &[&Complaint],
        y: &[bool],
        n_numeric: usize,
        smoothing: f64,
        folds: usize,
        numeric: impl Fn(usize) -> &'a [f32],
    ) -> (TreeEncoder, Vec<f32>) {
        let n = rows.len();
        let folds = folds.max(2);
        let pos = y.iter().filter(|&&v| v).count();
        let prior = if n > 0 { pos as f64 / n as f64 } else { 0.5 };
        let start_month = rows
            .iter()
            .map(|c| c.date_received.year() * 12 + c.date_received.month0() as i32)
            .min()
            .unwrap_or(0);
        let fold: Vec<usize> = rows
            .iter()
            .map(|c| (stable_hash("te-fold", c.complaint_id) % folds as u64) as usize)
            .collect();
        let mut tables = Vec::with_capacity(TreeField::ALL.len());
        // keys[f][i]
        let mut keys: Vec<Vec<u64>> = Vec::with_capacity(TreeField::ALL.len());
        // per fold stats per field
        let mut per_fold: Vec<Vec<IdMap<LevelStats>>> = Vec::new();
        let row_keys: Vec<Keys> = rows.iter().map(|c| Keys::of(c)).collect();
        for f in TreeField::ALL {
            let k: Vec<u64> = row_keys.iter().map(|r| r.field(f)).collect();
            let mut all: IdMap<LevelStats> = IdMap::default();
            let mut pf: Vec<IdMap<LevelStats>> = vec![IdMap::default(); folds];
            for (i, &key) in k.iter().enumerate() {
                let e = all.entry(key).or_default();
                e.count += 1;
                e.positives += u32::from(y[i]);
                let e = pf[fold[i]].entry(key).or_default();
                e.count += 1;
                e.positives += u32::from(y[i]);
            }
            tables.push(FieldTable {
                field: f,
                levels: all,
            });
            keys.push(k);
            per_fold.push(pf);
        }
        let enc = TreeEncoder {
            n_numeric: n_numeric as u32,
            start_month,
            prior,
            smoothing,
            tables,
            encoded: EncodedLevels::default(),
        };
        let w = enc.width();
        let mut x = Vec::with_capacity(n * w);
        let mut row = Vec::with_capacity(w);
        for (i, c) in rows.iter().enumerate() {
            row.clear();
            let num = numeric(i);
            row.extend(num.iter().take(n_numeric).copied());
            while row.len() < n_numeric {
                row.push(0.0);
            }
            enc.era(c, &row_keys[i], &mut row);
            for (t, table) in enc.tables.iter().enumerate() {
                let key = keys[t][i];
                let all = table.levels.get(&key).copied().unwrap_or_default();
                let own = per_fold[t][fold[i]].get(&key).copied().unwrap_or_default();
                let oof = LevelStats {
                    count: all.count - own.count,
                    positives: all.positives - own.positives,
                };
                let te = enc.encode_level(oof)[0];
                // Frequency needs no label: the full-training count, as at scoring.
                let freq = enc.encode_level(all)[1];
                row.push(te);
                row.push(freq);
            }
            x.extend_from_slice(&row);
        }
        (enc, x)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise_case_space_and_missing_spellings() {
        assert_eq!(key_of(Some(" Wells Fargo ")), key_of(Some("WELLS FARGO")));
        assert_eq!(key_of(Some("None")), MISSING);
        assert_eq!(key_of(Some("N/A")), MISSING);
        assert_eq!(key_of(Some("")), MISSING);
        assert_ne!(key_of(Some("a")), key_of(Some("b")));
        let d = chrono::NaiveDate::from_ymd_opt(2014, 1, 2).unwrap();
        let mut c = Complaint::minimal(1, d);
        c.zip_code = Some("2138".into());
        let a = zip3(&c);
        c.zip_code = Some("021XX".into());
        assert_eq!(a, zip3(&c));
        c.zip_code = Some("XXXXX".into());
        assert_eq!(zip3(&c), MISSING);
    }

    #[test]
    fn out_of_fold_encoding_never_sees_its_own_label() {
        // Every company is unique: the OOF encoding must be the prior for all rows, whatever
        // the label, while the stored table (scoring) knows the label.
        let d = chrono::NaiveDate::from_ymd_opt(2019, 1, 2).unwrap();
        let rows: Vec<Complaint> = (0..200)
            .map(|i| {
                let mut c = Complaint::minimal(i, d);
                c.company = Some(format!("company {i}"));
                c
            })
            .collect();
        let refs: Vec<&Complaint> = rows.iter().collect();
        let y: Vec<bool> = (0..200).map(|i| i % 4 == 0).collect();
        let (enc, x) = TreeEncoder::fit(&refs, &y, 0, 10.0, 3, |_| &[]);
        let w = enc.width();
        let col = ERA_NAMES.len()
            + 2 * TreeField::ALL
                .iter()
                .position(|&f| f == TreeField::Company)
                .unwrap();
        for i in 0..200 {
            assert!((f64::from(x[i * w + col]) - 0.25).abs() < 1e-6);
        }
        let mut row = Vec::new();
        enc.encode(&rows[0], &[], &mut row);
        assert!(f64::from(row[col]) > 0.25);
        enc.encode(&rows[1], &[], &mut row);
        assert!(f64::from(row[col]) < 0.25);
    }

    #[test]
    fn memoized_keys_and_precomputed_pairs_equal_the_direct_computation() {
        let d = chrono::NaiveDate::from_ymd_opt(2019, 1, 2).unwrap();
        let rows: Vec<Complaint> = (0..3000)
            .map(|i| {
                let mut c = Complaint::minimal(i, d);
                c.company = Some(format!("Company {}", i % 700));
                c.product = Some(if i % 3 == 0 {
                    " Mortgage ".into()
                } else {
                    "mortgage".into()
                });
                c.issue = match i % 4 {
                    0 => None,
                    1 => Some("N/A".into()),
                    2 => Some(String::new()),
                    _ => Some(format!("issue {}", i % 37)),
                };
                c.sub_issue = Some("x".repeat((i % 300) as usize));
                c.zip_code = Some(format!("{:05}", i * 7));
                c
            })
            .collect();
        let refs: Vec<&Complaint> = rows.iter().collect();
        let y: Vec<bool> = (0..3000).map(|i| i % 3 == 0).collect();
        let (enc, _) = TreeEncoder::fit(&refs[..2000], &y[..2000], 0, 10.0, 3, |_| &[]);
        let mut cache = KeyCache::default();
        let (mut a, mut b, mut c2) = (Vec::new(), Vec::new(), Vec::new());
        // Twice: cold and warm memo, unseen levels in the last third.
        for _ in 0..2 {
            for r in &rows {
                let k1 = Keys::of(r);
                let k2 = Keys::of_cached(r, &mut cache);
                for f in TreeField::ALL {
                    assert_eq!(k1.field(f), k2.field(f));
                }
                enc.encode(r, &[], &mut a);
                enc.encode_cached(r, &[], &mut b, &mut cache);
                enc.encode_uncached(r, &[], &mut c2);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&c2));
                assert_eq!(bits(&b), bits(&c2));
            }
        }
    }
}
