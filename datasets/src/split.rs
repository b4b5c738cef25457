//! Reproducible data splits: a stable hash split by complaint id (default 75/25) and temporal
//! windows (train / validation / test / out-of-time) by `date_received`.
//!
//! The hash is 64-bit FNV-1a over the complaint id's decimal digits (optionally after a salt),
//! followed by the SplitMix64 / MurmurHash3 `fmix64` finalizer (FNV-1a alone mixes the last
//! digits of sequential ids poorly into the high bits): fixed constants, no per-process keys,
//! so a complaint lands on the same side on every machine and run.
//!
//! ```
//! use complaintflow_datasets::split::{is_train, TemporalSplit, Window};
//! use complaintflow_datasets::ComplaintId;
//! let n = (1..=10_000u64).filter(|&i| is_train(ComplaintId(i), 0.75)).count();
//! assert!((7_200..7_800).contains(&n));
//! assert_eq!(is_train(ComplaintId(3384392), 0.75), is_train(ComplaintId(3384392), 0.75));
//!
//! let d = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
//! let b = TemporalSplit::default().boundaries(d("2020-06-30")).unwrap();
//! assert_eq!(b.out_of_time_start, d("2020-06-01"));
//! assert_eq!(b.test_start, d("2020-04-01"));
//! assert_eq!(b.validation_start, d("2020-01-01"));
//! assert_eq!(b.train_start, d("2019-01-01"));
//! assert_eq!(b.window(d("2019-12-31")), Some(Window::Train));
//! assert_eq!(b.window(d("2018-12-31")), None);
//! ```

use chrono::{Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::DatasetError;
use crate::schema::ComplaintId;

/// The default share of complaints in the training side of [`is_train`].
pub const DEFAULT_TRAIN_FRACTION: f64 = 0.75;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The `fmix64` finalizer of MurmurHash3 (a bijection that spreads every input bit over the
/// whole word).
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// `fmix64(FNV-1a(salt ++ decimal digits of id))` (`salt` empty for the train/test split;
/// other uses, such as selecting the bundled sample, use their own salt so their choice is
/// independent of the split).
pub fn stable_hash(salt: &str, id: ComplaintId) -> u64 {
    let (buf, start) = itoa_buf(id.0);
    let h = fnv1a64(salt.as_bytes());
    fmix64(
        buf.get(start..)
            .unwrap_or_default()
            .iter()
            .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)),
    )
}

fn itoa_buf(mut n: u64) -> ([u8; 20], usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            return (buf, i);
        }
    }
}

/// The id's position in `[0, 1)` under [`stable_hash`] with `salt`.
pub fn hash_unit(salt: &str, id: ComplaintId) -> f64 {
    (stable_hash(salt, id) >> 11) as f64 / (1u64 << 53) as f64
}

/// True when the complaint belongs to the training side of a `train_fraction` hash split.
pub fn is_train(id: ComplaintId, train_fraction: f64) -> bool {
    hash_unit("", id) < train_fraction
}

/// Configuration of the hash split.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HashSplit {
    /// Share of complaints on the training side, in `[0, 1]`. Default 0.75.
    pub train_fraction: f64,
}

impl Default for HashSplit {
    fn default() -> Self {
        HashSplit {
            train_fraction: DEFAULT_TRAIN_FRACTION,
        }
    }
}

impl HashSplit {
    /// True for training-side complaints.
    pub fn is_train(&self, id: ComplaintId) -> bool {
        is_train(id, self.train_fraction)
    }
}

/// A temporal window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// Training window (oldest).
    Train,
    /// Validation window.
    Validation,
    /// Test window.
    Test,
    /// Out-of-time window (newest).
    OutOfTime,
}

impl Window {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Train => "train",
            Window::Validation => "validation",
            Window::Test => "test",
            Window::OutOfTime => "out_of_time",
        }
    }
}

/// Consecutive windows of whole calendar months by `date_received`, ending at the latest date
/// in the data (or at [`TemporalSplit::end`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemporalSplit {
    /// Months in the training window. Default 12.
    pub train_months: u32,
    /// Months in the validation window. Default 3.
    pub validation_months: u32,
    /// Months in the test window. Default 2.
    pub test_months: u32,
    /// Months in the out-of-time window. Default 1.
    pub out_of_time_months: u32,
    /// Last day (inclusive) of the out-of-time window; default `None` = the latest
    /// `date_received` in the data.
    pub end: Option<NaiveDate>,
}

impl Default for TemporalSplit {
    fn default() -> Self {
        TemporalSplit {
            train_months: 12,
            validation_months: 3,
            test_months: 2,
            out_of_time_months: 1,
            end: None,
        }
    }
}

/// The first day of each window (each runs to the day before the next one starts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boundaries {
    /// First day of the training window.
    pub train_start: NaiveDate,
    /// First day of the validation window.
    pub validation_start: NaiveDate,
    /// First day of the test window.
    pub test_start: NaiveDate,
    /// First day of the out-of-time window.
    pub out_of_time_start: NaiveDate,
    /// Last day (inclusive) of the out-of-time window.
    pub end: NaiveDate,
}

impl Boundaries {
    /// The window of a date; `None` before the training window or after `end`.
    pub fn window(&self, date: NaiveDate) -> Option<Window> {
        if date < self.train_start || date > self.end {
            None
        } else if date < self.validation_start {
            Some(Window::Train)
        } else if date < self.test_start {
            Some(Window::Validation)
        } else if date < self.out_of_time_start {
            Some(Window::Test)
        } else {
            Some(Window::OutOfTime)
        }
    }
}

impl TemporalSplit {
    /// The window boundaries for data whose latest date is `latest` ([`TemporalSplit::end`]
    /// wins when set). Windows are counted back from the day after the end.
    pub fn boundaries(&self, latest: NaiveDate) -> Result<Boundaries, DatasetError> {
        let end = self.end.unwrap_or(latest);
        let err = || {
            DatasetError::Config(format!(
                "temporal split windows before {end} are out of the date range"
            ))
        };
        let after = end.checked_add_days(Days::new(1)).ok_or_else(err)?;
        let back = |d: NaiveDate, m: u32| d.checked_sub_months(Months::new(m)).ok_or_else(err);
        let out_of_time_start = back(after, self.out_of_time_months)?;
        let test_start = back(out_of_time_start, self.test_months)?;
        let validation_start = back(test_start, self.validation_months)?;
        let train_start = back(validation_start, self.train_months)?;
        Ok(Boundaries {
            train_start,
            validation_start,
            test_start,
            out_of_time_start,
            end,
        })
    }

    /// Boundaries from the latest of `dates`; `None` when there are no dates.
    pub fn fit(
        &self,
        dates: impl IntoIterator<Item = NaiveDate>,
    ) -> Option<Result<Boundaries, DatasetError>> {
        let latest = self.end.or_else(|| dates.into_iter().max())?;
        Some(self.boundaries(latest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        assert_eq!(
            stable_hash("", ComplaintId(3384392)),
            fmix64(fnv1a64(b"3384392"))
        );
        assert_eq!(stable_hash("s:", ComplaintId(0)), fmix64(fnv1a64(b"s:0")));
        assert_eq!(
            stable_hash("", ComplaintId(u64::MAX)),
            fmix64(fnv1a64(u64::MAX.to_string().as_bytes()))
        );
        // fmix64 reference value (MurmurHash3 finalizer of 1)
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456bcfc34c2cb2c);
    }

    #[test]
    fn split_fraction_edges_and_salts_are_independent() {
        let ids = (1..=20_000u64).map(ComplaintId);
        assert!(ids.clone().all(|i| is_train(i, 1.0)));
        assert!(ids.clone().all(|i| !is_train(i, 0.0)));
        // Two salts agree about half the time on a 50/50 split, i.e. they are independent.
        let agree = ids
            .filter(|&i| (hash_unit("", i) < 0.5) == (hash_unit("sample:", i) < 0.5))
            .count();
        assert!((9_000..11_000).contains(&agree), "{agree}");
    }

    #[test]
    fn temporal_windows_partition_the_range() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let split = TemporalSplit {
            end: Some(d("2019-12-31")),
            ..TemporalSplit::default()
        };
        let b = split.fit([d("2015-01-01")]).unwrap().unwrap();
        assert_eq!(b.train_start, d("2018-07-01"));
        assert_eq!(b.window(d("2019-12-01")), Some(Window::OutOfTime));
        assert_eq!(b.window(d("2019-11-30")), Some(Window::Test));
        assert_eq!(b.window(d("2019-10-01")), Some(Window::Test));
        assert_eq!(b.window(d("2019-09-30")), Some(Window::Validation));
        assert_eq!(b.window(d("2020-01-01")), None);
        assert!(TemporalSplit::default().fit(std::iter::empty()).is_none());
    }
}
