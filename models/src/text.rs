//! Text analysis of the narrative: tokenizing, redactions, money, stop words, stemming,
//! n-gram ids, sentiment and entity counts — in one pass, without allocating once the
//! scratch buffers are warm.
//!
//! Tokens are maximal runs of Unicode alphanumeric characters (apostrophes inside a word are
//! dropped: `don't` → `dont`), lowercased. CFPB redactions (`XXXX`, `XX/XX/XXXX`) are
//! removed and counted; money amounts written `{$1,200.00}` are removed and collected. Terms
//! are the Snowball stems of the remaining tokens that are at least two characters long, not
//! all digits and not stop words; n-gram ids are stable 64-bit hashes of the terms
//! ([`crate::hash`]).

use rust_stemmers::{Algorithm, Stemmer};

use crate::hash::{combine, fnv1a64, IdMap};
use crate::lexicon::{lexicon, Entity, LexInfo, Lexicon, MAX_PHRASE, N_ENTITIES};

/// Which parts of the analysis to run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AnalyzeOpts {
    pub terms: bool,
    pub bigrams: bool,
    pub stop_words: bool,
    pub stemming: bool,
    pub sentiment: bool,
    pub entities: bool,
    /// Produce display names of terms (fit time only; allocates).
    pub names: bool,
}

/// Counts gathered from one narrative.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TextStats {
    pub chars: u32,
    pub words: u32,
    pub letters: u32,
    pub upper: u32,
    pub exclamations: u32,
    pub redactions: u32,
    pub redacted_dates: u32,
    pub money_count: u32,
    pub money_max: f64,
    pub valence_sum: f32,
    pub pos_sum: f32,
    pub neg_sum: f32,
    pub neutral: u32,
    pub entities: [u32; N_ENTITIES],
}

const CACHE_MAX: usize = 262_144;

/// Reusable buffers of the analyzer.
pub(crate) struct TextScratch {
    stemmer: Stemmer,
    /// Lowercase UTF-8 bytes of the current token.
    lower: Vec<u8>,
    /// Lowercase-token hash → (stem hash, lexicon info): one lookup per token once warm.
    cache: IdMap<(u64, LexInfo)>,
    /// Display name of the current term (names mode).
    pub name: String,
    prev_name: String,
    /// The last tokens' hashes, circular: the newest at `ring_head`.
    ring: [u64; MAX_PHRASE],
    ring_head: usize,
    ring_len: usize,
    negation_ring: [bool; 3],
}

impl std::fmt::Debug for TextScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextScratch")
            .field("cache_len", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Default for TextScratch {
    fn default() -> Self {
        TextScratch {
            stemmer: Stemmer::create(Algorithm::English),
            lower: Vec::with_capacity(64),
            cache: IdMap::default(),
            name: String::new(),
            prev_name: String::new(),
            ring: [0; MAX_PHRASE],
            ring_head: 0,
            ring_len: 0,
            negation_ring: [false; 3],
        }
    }
}

impl Clone for TextScratch {
    fn clone(&self) -> Self {
        TextScratch::default()
    }
}

/// Parses a money amount after `{$` (`1,200.00}`); returns the amount and the byte length
/// consumed including the closing brace.
fn parse_money(rest: &str) -> Option<(f64, usize)> {
    let mut value = 0.0f64;
    let mut frac_scale = 0.0f64;
    let mut digits = 0usize;
    for (i, b) in rest.bytes().enumerate().take(32) {
        match b {
            b'0'..=b'9' => {
                let d = f64::from(b - b'0');
                if frac_scale > 0.0 {
                    value += d * frac_scale;
                    frac_scale /= 10.0;
                } else {
                    value = value * 10.0 + d;
                }
                digits += 1;
            }
            b',' if frac_scale == 0.0 => {}
            b'.' if frac_scale == 0.0 => frac_scale = 0.1,
            b'}' if digits > 0 => return Some((value, i + 1)),
            _ => return None,
        }
    }
    None
}

/// ASCII byte classes of the tokenizer.
const ALNUM: u8 = 1;
const DIGIT: u8 = 2;
const UPPER: u8 = 4;

const fn ascii_classes() -> [u8; 128] {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() {
            ALNUM | DIGIT
        } else if c.is_ascii_uppercase() {
            ALNUM | UPPER
        } else if c.is_ascii_lowercase() {
            ALNUM
        } else {
            0
        };
        b += 1;
    }
    t
}

static CLASS: [u8; 128] = ascii_classes();

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Whether the character starting at byte `at` of `text` is alphanumeric.
#[inline]
fn alnum_at(text: &str, at: usize) -> bool {
    text.get(at..)
        .and_then(|s| s.chars().next())
        .is_some_and(char::is_alphanumeric)
}

/// Analyzes `text`, filling `stats` and calling `sink(term_id, name)` for every unigram and
/// (when enabled) bigram occurrence. `name` is `Some` only in names mode.
///
/// The hot path classifies ASCII bytes with a table and hashes each token's lowercase bytes
/// (FNV-1a, as [`fnv1a64`]) while it scans them; other characters take the Unicode path.
/// A test checks that it agrees exactly with the straightforward char-by-char version on
/// every real narrative of the datasets.
pub(crate) fn analyze<F: FnMut(u64, Option<&str>)>(
    text: &str,
    opts: AnalyzeOpts,
    scratch: &mut TextScratch,
    stats: &mut TextStats,
    mut sink: F,
) {
    *stats = TextStats::default();
    let lex = lexicon();
    scratch.ring_len = 0;
    scratch.negation_ring = [false; 3];
    scratch.prev_name.clear();
    let mut prev_term: Option<u64> = None;
    // Byte offset just after the last redaction token, and how many parts its span has.
    let mut last_redaction_end = usize::MAX;
    let mut redaction_parts = 0u32;

    let bytes = text.as_bytes();
    let len = bytes.len();
    // Characters, kept in a register (a per-byte increment of `stats.chars` in memory is a
    // store-to-load chain); stored at the end.
    let mut chars = 0u32;
    let mut i = 0usize;
    while i < len {
        let b = bytes[i];
        chars += 1;
        if b < 0x80 {
            if CLASS[b as usize] & ALNUM == 0 {
                if b == b'!' {
                    stats.exclamations += 1;
                } else if b == b'{' && bytes.get(i + 1) == Some(&b'$') {
                    if let Some((amount, used)) = text.get(i + 2..).and_then(parse_money) {
                        stats.money_count += 1;
                        if amount > stats.money_max {
                            stats.money_max = amount;
                        }
                        chars += (used + 1) as u32;
                        i += 2 + used;
                        continue;
                    }
                }
                i += 1;
                continue;
            }
        } else {
            match text.get(i..).and_then(|s| s.chars().next()) {
                Some(c) if c.is_alphanumeric() => {}
                Some(c) => {
                    i += c.len_utf8();
                    continue;
                }
                None => break,
            }
        }
        // A token: alphanumeric run, apostrophes between alphanumerics are skipped.
        let start = i;
        let Token {
            end: j,
            h,
            n_chars,
            letters,
            upper,
            all_x,
            all_digit,
        } = scan_token(text, start);
        chars += n_chars.saturating_sub(1);
        i = j;

        if all_x && n_chars >= 2 {
            // CFPB redaction. `XX/XX/XXXX` is one span, a redacted date.
            if last_redaction_end != usize::MAX
                && start == last_redaction_end + 1
                && bytes.get(last_redaction_end) == Some(&b'/')
            {
                redaction_parts += 1;
                if redaction_parts == 2 {
                    stats.redacted_dates += 1;
                }
            } else {
                stats.redactions += 1;
                redaction_parts = 1;
            }
            last_redaction_end = j;
            continue;
        }
        if all_digit
            && last_redaction_end != usize::MAX
            && start == last_redaction_end + 1
            && bytes.get(last_redaction_end) == Some(&b'/')
            && redaction_parts == 1
        {
            // `XX/XX/2019`-style partially redacted date.
            stats.redacted_dates += 1;
            redaction_parts = 2;
        }

        stats.words += 1;
        stats.letters += letters;
        stats.upper += upper;
        if all_digit {
            push_ring(scratch, h);
            continue;
        }
        let (stem_hash, info) = if opts.names || !opts.terms {
            // No stem needed (names mode stems below; without terms nothing reads it): the
            // lexicon alone, which is what the cache would hold besides the stem.
            (0, lex.words.get(&h).copied().unwrap_or_default())
        } else if let Some(&hit) = scratch.cache.get(&h) {
            hit
        } else {
            // Miss: stem (this may allocate) and remember both, whatever the options. The
            // buffer holds the UTF-8 of whole lowercase characters.
            lowercase_token(text.get(start..j).unwrap_or_default(), &mut scratch.lower);
            let lower = std::str::from_utf8(&scratch.lower).unwrap_or_default();
            let entry = (
                fnv1a64(scratch.stemmer.stem(lower).as_bytes()),
                lex.words.get(&h).copied().unwrap_or_default(),
            );
            if scratch.cache.len() >= CACHE_MAX {
                scratch.cache.clear();
            }
            scratch.cache.insert(h, entry);
            entry
        };
        push_ring(scratch, h);

        if opts.sentiment {
            let mut v = info.valence;
            if v != 0.0 {
                if scratch.negation_ring.iter().any(|&n| n) {
                    v *= -0.74;
                }
                stats.valence_sum += v;
                if v > 0.0 {
                    stats.pos_sum += v + 1.0;
                } else {
                    stats.neg_sum += v - 1.0;
                }
            } else {
                stats.neutral += 1;
            }
            scratch.negation_ring = [
                info.negation,
                scratch.negation_ring[0],
                scratch.negation_ring[1],
            ];
        }
        if opts.entities {
            if let Some(e) = info.entity {
                stats.entities[e as usize] += 1;
            }
            if info.phrase_end {
                match_phrases(lex, scratch, stats);
            }
        }

        if !opts.terms || n_chars < 2 || (opts.stop_words && info.stop) {
            continue;
        }
        let term = if opts.names {
            lowercase_token(text.get(start..j).unwrap_or_default(), &mut scratch.lower);
            let lower = std::str::from_utf8(&scratch.lower).unwrap_or_default();
            scratch.name.clear();
            if opts.stemming {
                let stem = scratch.stemmer.stem(lower);
                scratch.name.push_str(&stem);
            } else {
                scratch.name.push_str(lower);
            }
            fnv1a64(scratch.name.as_bytes())
        } else if opts.stemming {
            stem_hash
        } else {
            h
        };
        sink(term, opts.names.then_some(scratch.name.as_str()));
        if opts.bigrams {
            if let Some(p) = prev_term {
                let id = combine(p, term);
                if opts.names {
                    let mut bigram =
                        String::with_capacity(scratch.prev_name.len() + 1 + scratch.name.len());
                    bigram.push_str(&scratch.prev_name);
                    bigram.push(' ');
                    bigram.push_str(&scratch.name);
                    sink(id, Some(&bigram));
                } else {
                    sink(id, None);
                }
            }
        }
        if opts.names {
            std::mem::swap(&mut scratch.prev_name, &mut scratch.name);
        }
        prev_term = Some(term);
    }
    stats.chars = chars;
    stats.entities[Entity::DateMention as usize] += stats.redacted_dates;
    stats.entities[Entity::MoneyWord as usize] += stats.money_count;
}

/// One token found by [`scan_token`].
struct Token {
    /// Byte offset just past it.
    end: usize,
    /// FNV-1a of its lowercase UTF-8 bytes.
    h: u64,
    n_chars: u32,
    letters: u32,
    upper: u32,
    all_x: bool,
    all_digit: bool,
}

/// Per ASCII byte: `letter | upper << 32` (added to a packed counter).
const fn ascii_letter_upper() -> [u64; 128] {
    let mut t = [0u64; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_uppercase() {
            1 | 1 << 32
        } else if c.is_ascii_lowercase() {
            1
        } else {
            0
        };
        b += 1;
    }
    t
}

static LETTER_UPPER: [u64; 128] = ascii_letter_upper();

/// ASCII lowercase of each ASCII byte.
const fn ascii_lower() -> [u8; 128] {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        t[b] = (b as u8).to_ascii_lowercase();
        b += 1;
    }
    t
}

static LOWER: [u8; 128] = ascii_lower();

/// Scans the token starting at byte `start` of `text` (an alphanumeric character):
/// the maximal run of alphanumerics, apostrophes (`'`, `’`) between them skipped.
/// The ASCII loop keeps its few counters in registers and updates them without branches;
/// other characters go through [`scan_non_ascii`].
#[inline(always)]
fn scan_token(text: &str, start: usize) -> Token {
    let bytes = text.as_bytes();
    let len = bytes.len();
    let mut t = Scan {
        h: FNV_OFFSET,
        n_chars: 0,
        non_ascii: 0,
        letters_u: 0,
        upper_u: 0,
    };
    // ASCII letters | ASCII uppercase << 32.
    let mut letter_upper = 0u64;
    let mut n_x = 0u32;
    let mut j = start;
    while j < len {
        let bj = bytes[j];
        if bj < 0x80 {
            let k = bj as usize;
            if CLASS[k] & ALNUM != 0 {
                t.n_chars += 1;
                letter_upper += LETTER_UPPER[k];
                n_x += u32::from(bj == b'X');
                t.h = (t.h ^ u64::from(LOWER[k])).wrapping_mul(FNV_PRIME);
                j += 1;
            } else if bj == b'\'' && t.n_chars > 0 && alnum_at(text, j + 1) {
                j += 1;
            } else {
                break;
            }
            continue;
        }
        match scan_non_ascii(text, j, &mut t) {
            Some(next) => j = next,
            None => break,
        }
    }
    let ascii_letters = letter_upper as u32;
    Token {
        end: j,
        h: t.h,
        n_chars: t.n_chars,
        letters: ascii_letters.wrapping_add(t.letters_u),
        upper: ((letter_upper >> 32) as u32).wrapping_add(t.upper_u),
        // Every alphanumeric is an ASCII `X` / an ASCII digit.
        all_x: n_x == t.n_chars,
        all_digit: ascii_letters == 0 && t.non_ascii == 0,
    }
}

/// The state [`scan_non_ascii`] updates.
struct Scan {
    h: u64,
    n_chars: u32,
    /// Non-ASCII alphanumerics.
    non_ascii: u32,
    /// Non-ASCII letters and uppercase letters.
    letters_u: u32,
    upper_u: u32,
}

/// One non-ASCII character at byte `j` of a token: `Some(next byte)` when it continues the
/// token, `None` when it ends it.
#[cold]
#[inline(never)]
fn scan_non_ascii(text: &str, j: usize, t: &mut Scan) -> Option<usize> {
    let c = text.get(j..).and_then(|s| s.chars().next())?;
    let l = c.len_utf8();
    if c.is_alphanumeric() {
        t.n_chars += 1;
        t.non_ascii += 1;
        if c.is_alphabetic() {
            t.letters_u += 1;
            if c.is_uppercase() {
                t.upper_u += 1;
            }
        }
        let mut buf = [0u8; 4];
        for lc in c.to_lowercase() {
            for &lb in lc.encode_utf8(&mut buf).as_bytes() {
                t.h = (t.h ^ u64::from(lb)).wrapping_mul(FNV_PRIME);
            }
        }
        Some(j + l)
    } else if c == '\u{2019}' && t.n_chars > 0 && alnum_at(text, j + l) {
        Some(j + l)
    } else {
        None
    }
}

/// The lowercase UTF-8 bytes the tokenizer hashed for the token spanning `token` (its
/// alphanumeric characters lowercased; the apostrophes inside it dropped).
fn lowercase_token(token: &str, out: &mut Vec<u8>) {
    out.clear();
    let mut buf = [0u8; 4];
    for c in token.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase() as u8);
            }
        } else if c.is_alphanumeric() {
            for lc in c.to_lowercase() {
                out.extend_from_slice(lc.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[inline]
fn push_ring(scratch: &mut TextScratch, h: u64) {
    scratch.ring_head = (scratch.ring_head + 1) % MAX_PHRASE;
    scratch.ring[scratch.ring_head] = h;
    scratch.ring_len = (scratch.ring_len + 1).min(MAX_PHRASE);
}

/// Checks whether the last 2..=MAX_PHRASE tokens form a known phrase.
fn match_phrases(lex: &Lexicon, scratch: &TextScratch, stats: &mut TextStats) {
    for n in 2..=scratch.ring_len {
        let mut h = 0u64;
        for k in (0..n).rev() {
            // The k-th newest token.
            h = combine(
                h,
                scratch.ring[(scratch.ring_head + MAX_PHRASE - k) % MAX_PHRASE],
            );
        }
        if let Some(e) = lex.phrases.get(&h) {
            stats.entities[*e as usize] += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod reference {
    //! The straightforward char-by-char analyzer the fast one must agree with.
    use super::*;

    /// Analyzes `text`, filling `stats` and calling `sink(term_id, name)` for every unigram and
    /// (when enabled) bigram occurrence. `name` is `Some` only in names mode.
    pub(crate) fn analyze_reference<F: FnMut(u64, Option<&str>)>(
        text: &str,
        opts: AnalyzeOpts,
        scratch: &mut TextScratch,
        stats: &mut TextStats,
        mut sink: F,
    ) {
        *stats = TextStats::default();
        let lex = lexicon();
        scratch.ring_len = 0;
        scratch.negation_ring = [false; 3];
        scratch.prev_name.clear();
        let mut prev_term: Option<u64> = None;
        // Byte offset just after the last redaction token, and how many parts its span has.
        let mut last_redaction_end = usize::MAX;
        let mut redaction_parts = 0u32;

        let mut lower = String::new();
        let bytes = text.as_bytes();
        let mut i = 0usize;
        while i < bytes.len() {
            let b = bytes[i];
            // Fast ASCII classification, falling back to char decoding.
            let (ch, ch_len) = if b < 0x80 {
                (b as char, 1)
            } else {
                match text.get(i..).and_then(|s| s.chars().next()) {
                    Some(c) => (c, c.len_utf8()),
                    None => break,
                }
            };
            stats.chars += 1;
            if ch == '!' {
                stats.exclamations += 1;
                i += 1;
                continue;
            }
            if ch == '{' && bytes.get(i + 1) == Some(&b'$') {
                if let Some((amount, used)) = text.get(i + 2..).and_then(parse_money) {
                    stats.money_count += 1;
                    if amount > stats.money_max {
                        stats.money_max = amount;
                    }
                    stats.chars += (used + 1) as u32;
                    i += 2 + used;
                    continue;
                }
            }
            if !ch.is_alphanumeric() {
                i += ch_len;
                continue;
            }
            // A token: alphanumeric run, apostrophes between alphanumerics are skipped.
            let start = i;
            lower.clear();
            let mut all_x = true;
            let mut all_digit = true;
            let mut n_chars = 0u32;
            let mut letters = 0u32;
            let mut upper = 0u32;
            let mut j = i;
            while j < bytes.len() {
                let bj = bytes[j];
                if bj.is_ascii_alphanumeric() {
                    // ASCII fast path.
                    n_chars += 1;
                    all_x &= bj == b'X';
                    let digit = bj.is_ascii_digit();
                    all_digit &= digit;
                    if !digit {
                        letters += 1;
                        upper += u32::from(bj.is_ascii_uppercase());
                    }
                    lower.push(char::from(bj.to_ascii_lowercase()));
                    j += 1;
                    continue;
                }
                let (c, l) = if bj < 0x80 {
                    (bj as char, 1)
                } else {
                    match text.get(j..).and_then(|s| s.chars().next()) {
                        Some(c) => (c, c.len_utf8()),
                        None => break,
                    }
                };
                if c.is_alphanumeric() {
                    n_chars += 1;
                    all_x &= c == 'X';
                    all_digit &= c.is_ascii_digit();
                    if c.is_alphabetic() {
                        letters += 1;
                        if c.is_uppercase() {
                            upper += 1;
                        }
                    }
                    if c.is_ascii() {
                        lower.push(c.to_ascii_lowercase());
                    } else {
                        lower.extend(c.to_lowercase());
                    }
                    j += l;
                } else if (c == '\'' || c == '\u{2019}') && n_chars > 0 {
                    // Keep going only if an alphanumeric follows.
                    let next = text.get(j + l..).and_then(|s| s.chars().next());
                    if next.is_some_and(char::is_alphanumeric) {
                        j += l;
                    } else {
                        break;
                    }
                } else {
                    break;
                }
            }
            stats.chars += n_chars.saturating_sub(1);
            i = j;

            if all_x && n_chars >= 2 {
                // CFPB redaction. `XX/XX/XXXX` is one span, a redacted date.
                if last_redaction_end != usize::MAX
                    && start == last_redaction_end + 1
                    && bytes.get(last_redaction_end) == Some(&b'/')
                {
                    redaction_parts += 1;
                    if redaction_parts == 2 {
                        stats.redacted_dates += 1;
                    }
                } else {
                    stats.redactions += 1;
                    redaction_parts = 1;
                }
                last_redaction_end = j;
                continue;
            }
            if all_digit
                && last_redaction_end != usize::MAX
                && start == last_redaction_end + 1
                && bytes.get(last_redaction_end) == Some(&b'/')
                && redaction_parts == 1
            {
                // `XX/XX/2019`-style partially redacted date.
                stats.redacted_dates += 1;
                redaction_parts = 2;
            }

            stats.words += 1;
            stats.letters += letters;
            stats.upper += upper;
            if all_digit {
                push_ring(scratch, fnv1a64(lower.as_bytes()));
                continue;
            }
            let h = fnv1a64(lower.as_bytes());
            let (stem_hash, info) = if opts.names {
                (0, lex.words.get(&h).copied().unwrap_or_default())
            } else if let Some(&hit) = scratch.cache.get(&h) {
                hit
            } else {
                // Miss: stem (this may allocate) and remember both, whatever the options.
                let entry = (
                    fnv1a64(scratch.stemmer.stem(&lower).as_bytes()),
                    lex.words.get(&h).copied().unwrap_or_default(),
                );
                if scratch.cache.len() >= CACHE_MAX {
                    scratch.cache.clear();
                }
                scratch.cache.insert(h, entry);
                entry
            };
            push_ring(scratch, h);

            if opts.sentiment {
                let mut v = info.valence;
                if v != 0.0 {
                    if scratch.negation_ring.iter().any(|&n| n) {
                        v *= -0.74;
                    }
                    stats.valence_sum += v;
                    if v > 0.0 {
                        stats.pos_sum += v + 1.0;
                    } else {
                        stats.neg_sum += v - 1.0;
                    }
                } else {
                    stats.neutral += 1;
                }
                scratch.negation_ring = [
                    info.negation,
                    scratch.negation_ring[0],
                    scratch.negation_ring[1],
                ];
            }
            if opts.entities {
                if let Some(e) = info.entity {
                    stats.entities[e as usize] += 1;
                }
                if info.phrase_end {
                    match_phrases(lex, scratch, stats);
                }
            }

            if !opts.terms || n_chars < 2 || (opts.stop_words && info.stop) {
                continue;
            }
            let term = if opts.names {
                scratch.name.clear();
                if opts.stemming {
                    let stem = scratch.stemmer.stem(&lower);
                    scratch.name.push_str(&stem);
                } else {
                    scratch.name.push_str(&lower);
                }
                fnv1a64(scratch.name.as_bytes())
            } else if opts.stemming {
                stem_hash
            } else {
                h
            };
            sink(term, opts.names.then_some(scratch.name.as_str()));
            if opts.bigrams {
                if let Some(p) = prev_term {
                    let id = combine(p, term);
                    if opts.names {
                        let mut bigram =
                            String::with_capacity(scratch.prev_name.len() + 1 + scratch.name.len());
                        bigram.push_str(&scratch.prev_name);
                        bigram.push(' ');
                        bigram.push_str(&scratch.name);
                        sink(id, Some(&bigram));
                    } else {
                        sink(id, None);
                    }
                }
            }
            if opts.names {
                std::mem::swap(&mut scratch.prev_name, &mut scratch.name);
            }
            prev_term = Some(term);
        }
        stats.entities[Entity::DateMention as usize] += stats.redacted_dates;
        stats.entities[Entity::MoneyWord as usize] += stats.money_count;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn opts() -> AnalyzeOpts {
        AnalyzeOpts {
            terms: true,
            bigrams: true,
            stop_words: true,
            stemming: true,
            sentiment: true,
            entities: true,
            names: true,
        }
    }

    fn run(text: &str) -> (TextStats, Vec<String>) {
        let mut scratch = TextScratch::default();
        let mut stats = TextStats::default();
        let mut names = Vec::new();
        analyze(text, opts(), &mut scratch, &mut stats, |_, n| {
            names.push(n.unwrap_or("").to_string())
        });
        (stats, names)
    }

    #[test]
    fn redactions_and_money_are_removed_and_counted() {
        let (s, names) = run("On XX/XX/XXXX I paid {$1,200.50} and {$35.00} to XXXX XXXX.");
        // `XX/XX/XXXX` is one span; `XXXX XXXX` two (space-separated).
        assert_eq!(s.redactions, 3);
        assert_eq!(s.redacted_dates, 1);
        assert_eq!(s.money_count, 2);
        assert!((s.money_max - 1200.5).abs() < 1e-9);
        // "On", "I", "and", "to" are stop words / too short; "paid" stems to "paid".
        assert_eq!(names, vec!["paid".to_string()]);
    }

    #[test]
    fn stems_and_bigrams() {
        let (s, names) = run("Disputed REPORTS, don't");
        assert_eq!(s.words, 3);
        assert_eq!(s.upper, 1 + 7);
        assert_eq!(
            names,
            vec!["disput", "report", "disput report", "dont", "report dont"]
        );
    }

    #[test]
    fn unicode_lowercasing_without_stemming() {
        let mut scratch = TextScratch::default();
        let mut stats = TextStats::default();
        let mut names = Vec::new();
        let o = AnalyzeOpts {
            stemming: false,
            bigrams: false,
            ..opts()
        };
        analyze(
            "Straße ÜBER Ĳssel",
            o,
            &mut scratch,
            &mut stats,
            |_, n| names.push(n.unwrap_or("").to_string()),
        );
        assert_eq!(names, vec!["straße", "über", "ĳssel"]);
        assert_eq!(stats.letters, 6 + 4 + 5);
    }

    #[test]
    fn sentiment_negation_and_entities() {
        let (pos, _) = run("great help, thank you");
        let (neg, _) = run("this is not great, it is a scam");
        assert!(pos.valence_sum > 0.0);
        assert!(neg.valence_sum < 0.0, "negated `great` plus `scam`");
        let (e, _) = run(
            "Equifax and Trans Union violated the Fair Credit Reporting Act (FCRA); \
             I will contact my attorney and take legal action. In January.",
        );
        assert_eq!(e.entities[Entity::Equifax as usize], 1);
        assert_eq!(e.entities[Entity::TransUnion as usize], 1);
        // "fair credit reporting" and "fair credit reporting act" both match, plus FCRA.
        assert_eq!(e.entities[Entity::Fcra as usize], 3);
        assert_eq!(e.entities[Entity::LegalThreat as usize], 2);
        assert_eq!(e.entities[Entity::DateMention as usize], 1);
        assert_eq!(e.entities[Entity::Experian as usize], 0);
    }

    #[test]
    fn cached_and_uncached_stemming_give_the_same_ids() {
        let text = "Collections agency keeps calling about debts, collecting again";
        let mut scratch = TextScratch::default();
        let mut stats = TextStats::default();
        let mut named = Vec::new();
        analyze(text, opts(), &mut scratch, &mut stats, |id, _| {
            named.push(id)
        });
        let fast = AnalyzeOpts {
            names: false,
            ..opts()
        };
        for _ in 0..2 {
            let mut ids = Vec::new();
            analyze(text, fast, &mut scratch, &mut stats, |id, _| ids.push(id));
            assert_eq!(ids, named);
        }
    }

    /// Real narratives: the bundled sample always, the development and extended sets of
    /// `../shared` when they are there.
    fn real_narratives() -> Vec<String> {
        let mut paths = vec![complaintflow_datasets::bundled_sample_path()];
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets");
        for p in [
            "cfpb/complaints-dev.json",
            "cfpb-extended/complaints-dev-extended.json",
        ] {
            if shared.join(p).is_file() {
                paths.push(shared.join(p));
            }
        }
        let mut out = Vec::new();
        for p in paths {
            let opts = complaintflow_datasets::ValidationOptions::default();
            for c in complaintflow_datasets::read_path(&p, Default::default(), &opts)
                .unwrap()
                .flatten()
            {
                if let Some(n) = c.complaint_what_happened {
                    out.push(n);
                }
            }
        }
        out
    }

    #[test]
    fn fast_analyzer_agrees_with_the_reference_on_every_real_narrative() {
        let mut texts = real_narratives();
        assert!(texts.len() > 1_000, "{} narratives", texts.len());
        // Edge cases the data may lack: apostrophes at ends, curly quotes, non-ASCII
        // letters and digits, money at the end, lone braces, redaction variants.
        texts.extend(
            [
                "don't 'quoted' it's’ o’clock ’tis",
                "Straße ÜBER Ĳssel ﬁne café ４２ Ⅻ",
                "{$12.50} {$ {$1,2,3.4} {$9",
                "XX/XX/2019 XX/XX/XXXX XXXX/12 xxxx X",
                "!!! ?! {}",
                "ΑΒΓ δε İstanbul",
                "",
            ]
            .map(String::from),
        );
        let all = opts();
        let variants = [
            all,
            AnalyzeOpts {
                names: false,
                ..all
            },
            AnalyzeOpts {
                names: false,
                stemming: false,
                stop_words: false,
                ..all
            },
            AnalyzeOpts {
                names: false,
                bigrams: false,
                sentiment: false,
                entities: false,
                ..all
            },
            // The numeric-only analysis of the tree family (no stems, no cache).
            AnalyzeOpts {
                names: false,
                terms: false,
                bigrams: false,
                ..all
            },
        ];
        for o in variants {
            let (mut s1, mut s2) = (TextScratch::default(), TextScratch::default());
            let (mut t1, mut t2) = (TextStats::default(), TextStats::default());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for t in &texts {
                a.clear();
                b.clear();
                analyze(t, o, &mut s1, &mut t1, |id, n| {
                    a.push((id, n.map(String::from)))
                });
                reference::analyze_reference(t, o, &mut s2, &mut t2, |id, n| {
                    b.push((id, n.map(String::from)))
                });
                assert_eq!(t1, t2, "stats differ on {t:?}");
                assert_eq!(a, b, "terms differ on {t:?}");
            }
        }
    }

    #[test]
    fn money_parser_rejects_garbage() {
        assert_eq!(parse_money("12.50}"), Some((12.5, 6)));
        assert_eq!(parse_money("abc}"), None);
        assert_eq!(parse_money("}"), None);
        assert_eq!(parse_money("12"), None);
    }
}
