//! Stable, dependency-free hashing.
//!
//! Every hash that ends up in a saved artifact (term ids, bigram ids, hash buckets) is
//! computed here with a fixed algorithm (FNV-1a 64 plus a 64-bit
//! finaliser), so artifacts stay valid across Rust and crate versions — unlike `ahash` or
//! the std `RandomState`, whose output may change.
//!
//! ```
//! use complaintflow_models::hash::fnv1a64;
//! // Reference value of FNV-1a 64 for "a" (from the FNV specification).
//! assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
//! ```

use std::hash::{BuildHasherDefault, Hasher};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of a byte string.
#[inline]
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The 64-bit finaliser of MurmurHash3 (`fmix64`): spreads the bits of `k`.
#[inline]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Combines two term ids into the id of the ordered pair (used for bigrams, phrases).
#[inline]
pub fn combine(a: u64, b: u64) -> u64 {
    fmix64(a.rotate_left(23) ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A `Hasher` for keys that are already well-mixed 64-bit hashes: it passes them through.
/// Other writes fall back to FNV-1a.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { FNV_OFFSET } else { self.0 };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        self.0 = h;
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

/// Builds [`IdHasher`]s (deterministic; usable as the `S` of a `HashMap`).
pub type IdBuildHasher = BuildHasherDefault<IdHasher>;

/// A `HashMap` keyed by pre-hashed `u64` ids.
pub type IdMap<V> = std::collections::HashMap<u64, V, IdBuildHasher>;

/// A `HashMap` with string keys hashed by FNV-1a (deterministic, fast on short keys).
pub type StrMap<V> = std::collections::HashMap<String, V, IdBuildHasher>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn combine_is_order_sensitive() {
        let (a, b) = (fnv1a64(b"credit"), fnv1a64(b"report"));
        assert_ne!(combine(a, b), combine(b, a));
    }
}
