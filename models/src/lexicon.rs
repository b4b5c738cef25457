//! Static word tables: English stop words, VADER valences and negations, entity keywords and
//! phrases. Built once (lazily) into one hash table keyed by the FNV-1a hash of the lowercase
//! token, so the hot path does a single lookup per token.

use std::sync::OnceLock;

use crate::hash::{combine, fnv1a64, IdMap};

/// The VADER sentiment lexicon (C.J. Hutto, MIT licence: `data/VADER-LICENSE.txt`),
/// `word<TAB>mean valence<TAB>…` per line.
const VADER_LEXICON: &str = include_str!("../data/vader_lexicon.txt");

/// English stop words: the list of scikit-learn's `ENGLISH_STOP_WORDS` (BSD-3-Clause; from the
/// Glasgow Information Retrieval Group list), here without apostrophes as our tokenizer drops
/// them.
pub(crate) const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "across",
    "after",
    "afterwards",
    "again",
    "against",
    "all",
    "almost",
    "alone",
    "along",
    "already",
    "also",
    "although",
    "always",
    "am",
    "among",
    "amongst",
    "amoungst",
    "amount",
    "an",
    "and",
    "another",
    "any",
    "anyhow",
    "anyone",
    "anything",
    "anyway",
    "anywhere",
    "are",
    "around",
    "as",
    "at",
    "back",
    "be",
    "became",
    "because",
    "become",
    "becomes",
    "becoming",
    "been",
    "before",
    "beforehand",
    "behind",
    "being",
    "below",
    "beside",
    "besides",
    "between",
    "beyond",
    "bill",
    "both",
    "bottom",
    "but",
    "by",
    "call",
    "can",
    "cannot",
    "cant",
    "co",
    "con",
    "could",
    "couldnt",
    "cry",
    "de",
    "describe",
    "detail",
    "do",
    "done",
    "down",
    "due",
    "during",
    "each",
    "eg",
    "eight",
    "either",
    "eleven",
    "else",
    "elsewhere",
    "empty",
    "enough",
    "etc",
    "even",
    "ever",
    "every",
    "everyone",
    "everything",
    "everywhere",
    "except",
    "few",
    "fifteen",
    "fifty",
    "fill",
    "find",
    "fire",
    "first",
    "five",
    "for",
    "former",
    "formerly",
    "forty",
    "found",
    "four",
    "from",
    "front",
    "full",
    "further",
    "get",
    "give",
    "go",
    "had",
    "has",
    "hasnt",
    "have",
    "he",
    "hence",
    "her",
    "here",
    "hereafter",
    "hereby",
    "herein",
    "hereupon",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "however",
    "hundred",
    "i",
    "ie",
    "if",
    "in",
    "inc",
    "indeed",
    "interest",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "keep",
    "last",
    "latter",
    "latterly",
    "least",
    "less",
    "ltd",
    "made",
    "many",
    "may",
    "me",
    "meanwhile",
    "might",
    "mill",
    "mine",
    "more",
    "moreover",
    "most",
    "mostly",
    "move",
    "much",
    "must",
    "my",
    "myself",
    "name",
    "namely",
    "neither",
    "never",
    "nevertheless",
    "next",
    "nine",
    "no",
    "nobody",
    "none",
    "noone",
    "nor",
    "not",
    "nothing",
    "now",
    "nowhere",
    "of",
    "off",
    "often",
    "on",
    "once",
    "one",
    "only",
    "onto",
    "or",
    "other",
    "others",
    "otherwise",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "part",
    "per",
    "perhaps",
    "please",
    "put",
    "rather",
    "re",
    "same",
    "see",
    "seem",
    "seemed",
    "seeming",
    "seems",
    "serious",
    "several",
    "she",
    "should",
    "show",
    "side",
    "since",
    "sincere",
    "six",
    "sixty",
    "so",
    "some",
    "somehow",
    "someone",
    "something",
    "sometime",
    "sometimes",
    "somewhere",
    "still",
    "such",
    "system",
    "take",
    "ten",
    "than",
    "that",
    "the",
    "their",
    "them",
    "themselves",
    "then",
    "thence",
    "there",
    "thereafter",
    "thereby",
    "therefore",
    "therein",
    "thereupon",
    "these",
    "they",
    "thick",
    "thin",
    "third",
    "this",
    "those",
    "though",
    "three",
    "through",
    "throughout",
    "thru",
    "thus",
    "to",
    "together",
    "too",
    "top",
    "toward",
    "towards",
    "twelve",
    "twenty",
    "two",
    "un",
    "under",
    "until",
    "up",
    "upon",
    "us",
    "very",
    "via",
    "was",
    "we",
    "well",
    "were",
    "what",
    "whatever",
    "when",
    "whence",
    "whenever",
    "where",
    "whereafter",
    "whereas",
    "whereby",
    "wherein",
    "whereupon",
    "wherever",
    "whether",
    "which",
    "while",
    "whither",
    "who",
    "whoever",
    "whole",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "within",
    "without",
    "would",
    "yet",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// VADER's negation words (without apostrophes).
const NEGATIONS: &[&str] = &[
    "aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt", "dont", "hadnt",
    "hasnt", "havent", "isnt", "mightnt", "mustnt", "neither", "neednt", "never", "none", "nope",
    "nor", "not", "nothing", "nowhere", "oughtnt", "shant", "shouldnt", "wasnt", "werent",
    "without", "wont", "wouldnt", "rarely", "seldom", "despite",
];

/// Kinds of rule-based entities. The discriminant is the index into
/// [`crate::text::TextStats::entities`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Entity {
    Equifax = 0,
    Experian = 1,
    TransUnion = 2,
    Fcra = 3,
    Fdcpa = 4,
    Respa = 5,
    Tila = 6,
    OtherStatute = 7,
    LegalThreat = 8,
    DateMention = 9,
    MoneyWord = 10,
}

/// Number of [`Entity`] kinds.
pub(crate) const N_ENTITIES: usize = 11;

const SINGLE_ENTITIES: &[(&str, Entity)] = &[
    ("equifax", Entity::Equifax),
    ("experian", Entity::Experian),
    ("transunion", Entity::TransUnion),
    ("fcra", Entity::Fcra),
    ("fdcpa", Entity::Fdcpa),
    ("respa", Entity::Respa),
    ("tila", Entity::Tila),
    ("ecoa", Entity::OtherStatute),
    ("fcba", Entity::OtherStatute),
    ("glba", Entity::OtherStatute),
    ("udaap", Entity::OtherStatute),
    ("udap", Entity::OtherStatute),
    ("usc", Entity::OtherStatute),
    ("attorney", Entity::LegalThreat),
    ("attorneys", Entity::LegalThreat),
    ("lawyer", Entity::LegalThreat),
    ("lawyers", Entity::LegalThreat),
    ("lawsuit", Entity::LegalThreat),
    ("lawsuits", Entity::LegalThreat),
    ("sue", Entity::LegalThreat),
    ("suing", Entity::LegalThreat),
    ("litigation", Entity::LegalThreat),
    ("court", Entity::LegalThreat),
    ("arbitration", Entity::LegalThreat),
    ("january", Entity::DateMention),
    ("february", Entity::DateMention),
    ("march", Entity::DateMention),
    ("april", Entity::DateMention),
    ("june", Entity::DateMention),
    ("july", Entity::DateMention),
    ("august", Entity::DateMention),
    ("september", Entity::DateMention),
    ("october", Entity::DateMention),
    ("november", Entity::DateMention),
    ("december", Entity::DateMention),
    ("dollar", Entity::MoneyWord),
    ("dollars", Entity::MoneyWord),
];

const PHRASE_ENTITIES: &[(&str, Entity)] = &[
    ("trans union", Entity::TransUnion),
    ("fair credit reporting act", Entity::Fcra),
    ("fair credit reporting", Entity::Fcra),
    ("fair debt collection practices act", Entity::Fdcpa),
    ("fair debt collection practices", Entity::Fdcpa),
    ("real estate settlement procedures act", Entity::Respa),
    ("truth in lending", Entity::Tila),
    ("regulation z", Entity::Tila),
    ("reg z", Entity::Tila),
    ("equal credit opportunity act", Entity::OtherStatute),
    ("fair credit billing act", Entity::OtherStatute),
    ("regulation e", Entity::OtherStatute),
    ("u s c", Entity::OtherStatute),
    ("legal action", Entity::LegalThreat),
    ("small claims", Entity::LegalThreat),
    ("class action", Entity::LegalThreat),
    ("legal counsel", Entity::LegalThreat),
    ("take you to court", Entity::LegalThreat),
];

/// Longest phrase in [`PHRASE_ENTITIES`], in tokens.
pub(crate) const MAX_PHRASE: usize = 6;

/// What the tables know about one lowercase token.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LexInfo {
    /// VADER mean valence (0 when not in the lexicon).
    pub valence: f32,
    /// English stop word.
    pub stop: bool,
    /// VADER negation word.
    pub negation: bool,
    /// Single-token entity, if any.
    pub entity: Option<Entity>,
    /// Some phrase ends with this token.
    pub phrase_end: bool,
}

/// The tables.
#[derive(Debug)]
pub(crate) struct Lexicon {
    /// Token hash → info.
    pub words: IdMap<LexInfo>,
    /// Combined hash of a phrase's tokens → entity.
    pub phrases: IdMap<Entity>,
}

/// The hash of a phrase: tokens' FNV hashes folded with [`combine`].
pub(crate) fn phrase_hash<'a>(tokens: impl Iterator<Item = &'a str>) -> u64 {
    let mut h = 0u64;
    for t in tokens {
        h = combine(h, fnv1a64(t.as_bytes()));
    }
    h
}

/// The shared tables, built on first use.
pub(crate) fn lexicon() -> &'static Lexicon {
    static LEX: OnceLock<Lexicon> = OnceLock::new();
    LEX.get_or_init(build)
}

fn build() -> Lexicon {
    let mut words: IdMap<LexInfo> = IdMap::default();
    for line in VADER_LEXICON.lines() {
        let mut parts = line.split('\t');
        let (Some(word), Some(val)) = (parts.next(), parts.next()) else {
            continue;
        };
        // Only entries our tokenizer can produce (letters/digits); emoticons are skipped.
        if word.is_empty() || !word.chars().all(char::is_alphanumeric) {
            continue;
        }
        if let Ok(v) = val.trim().parse::<f32>() {
            words
                .entry(fnv1a64(word.to_lowercase().as_bytes()))
                .or_default()
                .valence = v;
        }
    }
    for w in STOP_WORDS {
        words.entry(fnv1a64(w.as_bytes())).or_default().stop = true;
    }
    for w in NEGATIONS {
        words.entry(fnv1a64(w.as_bytes())).or_default().negation = true;
    }
    for (w, e) in SINGLE_ENTITIES {
        words.entry(fnv1a64(w.as_bytes())).or_default().entity = Some(*e);
    }
    let mut phrases: IdMap<Entity> = IdMap::default();
    for (p, e) in PHRASE_ENTITIES {
        phrases.insert(phrase_hash(p.split(' ')), *e);
        if let Some(last) = p.split(' ').next_back() {
            words
                .entry(fnv1a64(last.as_bytes()))
                .or_default()
                .phrase_end = true;
        }
    }
    Lexicon { words, phrases }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tables_know_their_words() {
        let lex = lexicon();
        let get = |w: &str| {
            lex.words
                .get(&fnv1a64(w.as_bytes()))
                .copied()
                .unwrap_or_default()
        };
        assert!(get("the").stop);
        assert!(!get("equifax").stop);
        assert_eq!(get("equifax").entity, Some(Entity::Equifax));
        assert!(get("not").negation);
        // VADER: "scam" -2.7, "great" +3.1.
        assert!((get("scam").valence + 2.7).abs() < 1e-6);
        assert!(get("great").valence > 3.0);
        assert!(get("act").phrase_end);
        assert!(PHRASE_ENTITIES
            .iter()
            .all(|(p, _)| p.split(' ').count() <= MAX_PHRASE));
    }
}
