//! Parsing and validating one record: JSON bytes → [`Complaint`].
//!
//! [`parse_json_record`] is the hot path of the streaming engine. It deserializes one JSON
//! object with `serde_json` into borrowed values (no copy of unescaped strings), maps every
//! accepted field name onto the 18 CFPB fields ([`canonical_field`]) and converts the values
//! leniently but strictly typed:
//!
//! * field names: the CFPB JSON names, the CSV export headers, and the variants found in
//!   re-saved copies (`zipcode`, `consumer_disputed?`, `Date_received`, `DateReceived`,
//!   `company_response_to_consumer`, `timely_response`, …): names are compared ignoring case
//!   and every non-alphanumeric character;
//! * missing values: `null`, `""`, `"None"`, `"null"`, `"NaN"` (see [`crate::schema::is_missing`]);
//! * dates: `2019-09-24`, `2019-09-24T12:00:00-05:00`, `09/24/2019`, `9/24/2019`, `2019/9/24`,
//!   `24-09-2019` (day first with dashes), `09/24/19` ([`parse_date`]);
//! * Yes/No: `Yes`/`No`/`N/A`, `true`/`false` (strings or JSON booleans);
//! * `complaint_id` and `zip_code`: strings or numbers.
//!
//! ```
//! use complaintflow_datasets::parse::{parse_json_record, ValidationOptions};
//! use complaintflow_datasets::error::ErrorKind;
//! let opts = ValidationOptions::default();
//! let c = parse_json_record(
//!     br#"{"Date received":"9/24/2019","Complaint ID":3384392,"Timely response?":true,"State":"None"}"#,
//!     &opts,
//! ).unwrap();
//! assert_eq!(c.complaint_id.0, 3384392);
//! assert_eq!(c.date_received.to_string(), "2019-09-24");
//! assert_eq!(c.state, None);
//! let e = parse_json_record(br#"{"complaint_id":"1","date_received":"2019-13-01"}"#, &opts).unwrap_err();
//! assert_eq!(e.kind, ErrorKind::UnparseableDate);
//! assert_eq!(e.complaint_id.as_deref(), Some("1"));
//! ```

use std::borrow::Cow;
use std::fmt;

use chrono::NaiveDate;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{excerpt, ErrorKind, RecordError};
use crate::schema::{
    is_missing, CompanyResponse, Complaint, ComplaintId, Tags, UsState, YesNo, JSON_FIELDS,
};

/// Limits and switches of record validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ValidationOptions {
    /// Longest accepted narrative (`complaint_what_happened`) in bytes; longer is
    /// [`ErrorKind::NarrativeTooLong`]. Default 262,144 (256 KiB; the longest real CFPB
    /// narratives are around 30 KB).
    pub max_narrative_bytes: usize,
    /// Largest accepted record in bytes (the JSON object, or the CSV row transcoded to JSON);
    /// larger is [`ErrorKind::RecordTooLarge`]. Readers also stop buffering a record beyond
    /// this size, so it bounds their memory. Default 1,048,576 (1 MiB).
    pub max_record_bytes: usize,
    /// `true` (default): a `state` that is not a known US state / territory / military code is
    /// an [`ErrorKind::UnknownState`] error; `false`: it is read as missing.
    pub require_state_valid: bool,
    /// `true` (default): `date_sent_to_company` earlier than `date_received` (by more than
    /// [`ValidationOptions::sent_before_received_tolerance_days`]) is an
    /// [`ErrorKind::SentBeforeReceived`] error.
    pub check_sent_after_received: bool,
    /// Days `date_sent_to_company` may precede `date_received` without an error. Default 1:
    /// real CFPB records (2012–2014) show the sent date one day before the received date, a
    /// time-zone artefact of the CFPB's own export, not a bad record.
    pub sent_before_received_tolerance_days: u32,
}

impl Default for ValidationOptions {
    fn default() -> Self {
        ValidationOptions {
            max_narrative_bytes: 262_144,
            max_record_bytes: 1 << 20,
            require_state_valid: true,
            check_sent_after_received: true,
            sent_before_received_tolerance_days: 1,
        }
    }
}

/// Indices into [`JSON_FIELDS`].
mod f {
    pub const DATE_RECEIVED: usize = 0;
    pub const PRODUCT: usize = 1;
    pub const SUB_PRODUCT: usize = 2;
    pub const ISSUE: usize = 3;
    pub const SUB_ISSUE: usize = 4;
    pub const NARRATIVE: usize = 5;
    pub const PUBLIC_RESPONSE: usize = 6;
    pub const COMPANY: usize = 7;
    pub const STATE: usize = 8;
    pub const ZIP: usize = 9;
    pub const TAGS: usize = 10;
    pub const CONSENT: usize = 11;
    pub const SUBMITTED_VIA: usize = 12;
    pub const DATE_SENT: usize = 13;
    pub const COMPANY_RESPONSE: usize = 14;
    pub const TIMELY: usize = 15;
    pub const DISPUTED: usize = 16;
    pub const COMPLAINT_ID: usize = 17;
}

/// The index (into [`JSON_FIELDS`]) of the CFPB field a field name or column header denotes,
/// or `None` for names that are not one of the 18 fields (they are ignored).
///
/// ```
/// use complaintflow_datasets::parse::canonical_field;
/// use complaintflow_datasets::schema::JSON_FIELDS;
/// let name = |s| canonical_field(s).map(|i| JSON_FIELDS[i]);
/// assert_eq!(name("Consumer disputed?"), Some("consumer_disputed"));
/// assert_eq!(name("zipcode"), Some("zip_code"));
/// assert_eq!(name("Company response to consumer"), Some("company_response"));
/// assert_eq!(name("TimelyResponseSts"), Some("timely"));
/// assert_eq!(name("has_narrative"), None);
/// ```
pub fn canonical_field(name: &str) -> Option<usize> {
    // Fast path: the CFPB JSON names as written.
    if let Some(i) = JSON_FIELDS.iter().position(|f| *f == name) {
        return Some(i);
    }
    let mut buf = [0u8; 48];
    let mut n = 0;
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() {
            if n == buf.len() {
                return None;
            }
            buf[n] = b.to_ascii_lowercase();
            n += 1;
        }
    }
    let norm = buf.get(..n)?;
    Some(match norm {
        b"datereceived" => f::DATE_RECEIVED,
        b"product" => f::PRODUCT,
        b"subproduct" => f::SUB_PRODUCT,
        b"issue" => f::ISSUE,
        b"subissue" => f::SUB_ISSUE,
        b"complaintwhathappened" | b"consumercomplaintnarrative" | b"consumercomplaint" => {
            f::NARRATIVE
        }
        b"companypublicresponse" => f::PUBLIC_RESPONSE,
        b"company" => f::COMPANY,
        b"state" => f::STATE,
        b"zipcode" => f::ZIP,
        b"tags" => f::TAGS,
        b"consumerconsentprovided" => f::CONSENT,
        b"submittedvia" => f::SUBMITTED_VIA,
        b"datesenttocompany" | b"datesentcompany" => f::DATE_SENT,
        b"companyresponse" | b"companyresponsetoconsumer" | b"companyresponseconsumer" => {
            f::COMPANY_RESPONSE
        }
        b"timely" | b"timelyresponse" | b"timelyresponsests" => f::TIMELY,
        b"consumerdisputed" | b"consumerdisputedsts" => f::DISPUTED,
        b"complaintid" => f::COMPLAINT_ID,
        _ => return None,
    })
}

/// One field value as found in the JSON, borrowed where possible.
#[derive(Debug)]
enum Val<'a> {
    Null,
    Str(Cow<'a, str>),
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Object,
    Array,
}

impl Val<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Str(_) => "a string",
            Val::Bool(_) => "a boolean",
            Val::U64(_) | Val::I64(_) | Val::F64(_) => "a number",
            Val::Object => "an object",
            Val::Array => "an array",
        }
    }
}

impl<'de> Deserialize<'de> for Val<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Val<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Val<'de>, E> {
                Ok(Val::Str(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Val<'de>, E> {
                Ok(Val::Bool(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Val<'de>, E> {
                Ok(Val::U64(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Val<'de>, E> {
                Ok(Val::I64(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Val<'de>, E> {
                Ok(Val::F64(v))
            }
            fn visit_unit<E>(self) -> Result<Val<'de>, E> {
                Ok(Val::Null)
            }
            fn visit_none<E>(self) -> Result<Val<'de>, E> {
                Ok(Val::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Val<'de>, D::Error> {
                Val::deserialize(d)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Val<'de>, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Val::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Val<'de>, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Val::Array)
            }
        }
        d.deserialize_any(V)
    }
}

/// A map key, resolved to a field index without allocating.
struct Key(Option<usize>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(canonical_field(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The 18 fields of one record, before conversion.
struct RawFields<'a> {
    vals: [Option<Val<'a>>; 18],
    duplicate: Option<usize>,
}

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object (one complaint)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawFields<'de>, A::Error> {
                let mut out = RawFields {
                    vals: Default::default(),
                    duplicate: None,
                };
                while let Some(Key(k)) = m.next_key::<Key>()? {
                    match k.and_then(|i| out.vals.get_mut(i).map(|slot| (i, slot))) {
                        Some((i, slot)) => {
                            let v = m.next_value::<Val<'de>>()?;
                            if slot.is_some() {
                                out.duplicate.get_or_insert(i);
                            } else {
                                *slot = Some(v);
                            }
                        }
                        None => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses and validates ONE JSON object (one complaint) into a [`Complaint`].
///
/// The error's [`crate::error::Location`] is left at its default (record 0): readers set it.
/// The error carries the complaint id whenever it could be read.
pub fn parse_json_record(bytes: &[u8], opts: &ValidationOptions) -> Result<Complaint, RecordError> {
    if bytes.len() > opts.max_record_bytes {
        return Err(RecordError::new(
            ErrorKind::RecordTooLarge,
            format!(
                "record is {} bytes, more than max_record_bytes = {}",
                bytes.len(),
                opts.max_record_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        RecordError::new(
            ErrorKind::InvalidUtf8,
            format!(
                "record is not valid UTF-8: {e} (bytes near the error: {:02x?})",
                &bytes[e.valid_up_to()..bytes.len().min(e.valid_up_to() + 4)]
            ),
        )
    })?;
    let raw: RawFields<'_> = serde_json::from_str(text).map_err(|e| json_error(&e))?;
    convert(raw, opts)
}

/// Reads ONE outcome record (a JSON object with `complaint_id` and any of
/// `company_response`, `timely`, `consumer_disputed`, under any accepted field name). Every
/// complaint record is also an outcome record (its other fields are not checked); a record
/// without any response field is an error, since it says nothing about an outcome.
///
/// ```
/// use complaintflow_datasets::parse::{parse_outcome_record, ValidationOptions};
/// use complaintflow_datasets::YesNo;
/// let o = parse_outcome_record(br#"{"Complaint ID":"7","Company response to consumer":"Closed","Consumer disputed?":"Yes"}"#,
///                              &ValidationOptions::default()).unwrap();
/// assert_eq!((o.complaint_id.0, o.consumer_disputed), (7, Some(YesNo::Yes)));
/// let e = parse_outcome_record(br#"{"complaint_id":"7"}"#, &ValidationOptions::default()).unwrap_err();
/// assert_eq!(e.kind.as_str(), "missing_field");
/// ```
pub fn parse_outcome_record(
    bytes: &[u8],
    opts: &ValidationOptions,
) -> Result<crate::label::Outcome, RecordError> {
    if bytes.len() > opts.max_record_bytes {
        return Err(RecordError::new(
            ErrorKind::RecordTooLarge,
            format!(
                "outcome record is {} bytes, more than max_record_bytes = {}",
                bytes.len(),
                opts.max_record_bytes
            ),
        ));
    }
    let mut raw: RawFields<'_> = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
    let id = complaint_id(take(&mut raw, f::COMPLAINT_ID))?;
    let with_id = |e: RecordError| e.with_id(id.to_string());
    let response = text_field(f::COMPANY_RESPONSE, take(&mut raw, f::COMPANY_RESPONSE))
        .map_err(with_id)?
        .as_deref()
        .and_then(CompanyResponse::parse);
    let timely = yes_no(f::TIMELY, take(&mut raw, f::TIMELY)).map_err(with_id)?;
    let consumer_disputed = yes_no(f::DISPUTED, take(&mut raw, f::DISPUTED)).map_err(with_id)?;
    if response.is_none() && timely.is_none() && consumer_disputed.is_none() {
        return Err(with_id(RecordError::new(
            ErrorKind::MissingField,
            "outcome record has none of `company_response`, `timely`, `consumer_disputed`"
                .to_string(),
        )));
    }
    Ok(crate::label::Outcome {
        complaint_id: id,
        company_response: response,
        timely,
        consumer_disputed,
    })
}

/// Maps a serde_json error to a record error.
pub(crate) fn json_error(e: &serde_json::Error) -> RecordError {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Eof => ErrorKind::TruncatedInput,
        Category::Syntax => ErrorKind::MalformedJson,
        Category::Data => ErrorKind::NotAnObject,
        Category::Io => ErrorKind::Io,
    };
    let what = match kind {
        ErrorKind::NotAnObject => "record is not a JSON object",
        ErrorKind::TruncatedInput => "record ends early",
        _ => "record is not valid JSON",
    };
    RecordError::new(kind, format!("{what}: {e}"))
}

fn field_err(kind: ErrorKind, field: usize, detail: String) -> RecordError {
    let name = JSON_FIELDS.get(field).copied().unwrap_or("?");
    RecordError::new(kind, format!("field `{name}`: {detail}"))
}

fn wrong_type(field: usize, v: &Val<'_>, expected: &str) -> RecordError {
    field_err(
        ErrorKind::WrongType,
        field,
        format!("expected {expected}, got {}", v.type_name()),
    )
}

fn take<'a>(raw: &mut RawFields<'a>, i: usize) -> Option<Val<'a>> {
    raw.vals.get_mut(i).and_then(Option::take)
}

fn convert(mut raw: RawFields<'_>, opts: &ValidationOptions) -> Result<Complaint, RecordError> {
    // complaint_id first, so every later error can name the complaint.
    let id = complaint_id(take(&mut raw, f::COMPLAINT_ID))?;
    let with_id = |e: RecordError| e.with_id(id.to_string());
    if let Some(d) = raw.duplicate {
        return Err(with_id(field_err(
            ErrorKind::DuplicateField,
            d,
            "given twice (possibly under two accepted names)".into(),
        )));
    }
    let date_received = match take(&mut raw, f::DATE_RECEIVED) {
        None => None,
        Some(v) => date(f::DATE_RECEIVED, v).map_err(with_id)?,
    }
    .ok_or_else(|| {
        with_id(field_err(
            ErrorKind::MissingField,
            f::DATE_RECEIVED,
            "required but missing or empty".into(),
        ))
    })?;
    let date_sent_to_company = match take(&mut raw, f::DATE_SENT) {
        None => None,
        Some(v) => date(f::DATE_SENT, v).map_err(with_id)?,
    };
    if opts.check_sent_after_received {
        if let Some(sent) = date_sent_to_company {
            let early = (date_received - sent).num_days();
            if early > i64::from(opts.sent_before_received_tolerance_days) {
                return Err(with_id(RecordError::new(
                    ErrorKind::SentBeforeReceived,
                    format!(
                        "field `date_sent_to_company` ({sent}) is before `date_received` ({date_received})"
                    ),
                )));
            }
        }
    }
    let mut text = |i: usize| -> Result<Option<String>, RecordError> {
        text_field(i, take(&mut raw, i)).map_err(with_id)
    };
    let product = text(f::PRODUCT)?;
    let sub_product = text(f::SUB_PRODUCT)?;
    let issue = text(f::ISSUE)?;
    let sub_issue = text(f::SUB_ISSUE)?;
    let complaint_what_happened = text(f::NARRATIVE)?;
    if let Some(n) = &complaint_what_happened {
        if n.len() > opts.max_narrative_bytes {
            return Err(with_id(field_err(
                ErrorKind::NarrativeTooLong,
                f::NARRATIVE,
                format!(
                    "{} bytes, more than max_narrative_bytes = {}",
                    n.len(),
                    opts.max_narrative_bytes
                ),
            )));
        }
    }
    let company_public_response = text(f::PUBLIC_RESPONSE)?;
    let company = text(f::COMPANY)?;
    let consumer_consent_provided = text(f::CONSENT)?;
    let submitted_via = text(f::SUBMITTED_VIA)?;
    let state_text = text_ref(f::STATE, take(&mut raw, f::STATE)).map_err(with_id)?;
    let tags_text = text_ref(f::TAGS, take(&mut raw, f::TAGS)).map_err(with_id)?;
    let response_text =
        text_ref(f::COMPANY_RESPONSE, take(&mut raw, f::COMPANY_RESPONSE)).map_err(with_id)?;
    let zip_code = zip(take(&mut raw, f::ZIP)).map_err(with_id)?;
    let timely = yes_no(f::TIMELY, take(&mut raw, f::TIMELY)).map_err(with_id)?;
    let consumer_disputed = yes_no(f::DISPUTED, take(&mut raw, f::DISPUTED)).map_err(with_id)?;

    let state = match state_text {
        None => None,
        Some(s) => match UsState::parse(&s).or_else(|| state_from_name(&s)) {
            Some(st) => Some(st),
            None if opts.require_state_valid => {
                return Err(with_id(field_err(
                    ErrorKind::UnknownState,
                    f::STATE,
                    format!(
                        "{} is not a US state, territory or military code",
                        excerpt(&s)
                    ),
                )))
            }
            None => None,
        },
    };
    let tags = match tags_text {
        None => Tags::NONE,
        Some(t) => Tags::parse(&t).map_err(|bad| {
            with_id(field_err(
                ErrorKind::UnknownTag,
                f::TAGS,
                format!(
                    "unknown tag {} (known: Servicemember, Older American)",
                    excerpt(&bad)
                ),
            ))
        })?,
    };
    let company_response = response_text.as_deref().and_then(CompanyResponse::parse);

    Ok(Complaint {
        date_received,
        product,
        sub_product,
        issue,
        sub_issue,
        complaint_what_happened,
        company_public_response,
        company,
        state,
        zip_code,
        tags,
        consumer_consent_provided,
        submitted_via,
        date_sent_to_company,
        company_response,
        timely,
        consumer_disputed,
        complaint_id: id,
    })
}

/// US states and territories by full name (the CFPB writes a few territories in full, e.g.
/// `UNITED STATES MINOR OUTLYING ISLANDS`).
const STATE_NAMES: [(&str, &str); 59] = [
    ("alabama", "AL"),
    ("alaska", "AK"),
    ("arizona", "AZ"),
    ("arkansas", "AR"),
    ("california", "CA"),
    ("colorado", "CO"),
    ("connecticut", "CT"),
    ("delaware", "DE"),
    ("florida", "FL"),
    ("georgia", "GA"),
    ("hawaii", "HI"),
    ("idaho", "ID"),
    ("illinois", "IL"),
    ("indiana", "IN"),
    ("iowa", "IA"),
    ("kansas", "KS"),
    ("kentucky", "KY"),
    ("louisiana", "LA"),
    ("maine", "ME"),
    ("maryland", "MD"),
    ("massachusetts", "MA"),
    ("michigan", "MI"),
    ("minnesota", "MN"),
    ("mississippi", "MS"),
    ("missouri", "MO"),
    ("montana", "MT"),
    ("nebraska", "NE"),
    ("nevada", "NV"),
    ("new hampshire", "NH"),
    ("new jersey", "NJ"),
    ("new mexico", "NM"),
    ("new york", "NY"),
    ("north carolina", "NC"),
    ("north dakota", "ND"),
    ("ohio", "OH"),
    ("oklahoma", "OK"),
    ("oregon", "OR"),
    ("pennsylvania", "PA"),
    ("rhode island", "RI"),
    ("south carolina", "SC"),
    ("south dakota", "SD"),
    ("tennessee", "TN"),
    ("texas", "TX"),
    ("utah", "UT"),
    ("vermont", "VT"),
    ("virginia", "VA"),
    ("washington", "WA"),
    ("west virginia", "WV"),
    ("wisconsin", "WI"),
    ("wyoming", "WY"),
    ("district of columbia", "DC"),
    ("puerto rico", "PR"),
    ("guam", "GU"),
    ("virgin islands", "VI"),
    ("united states virgin islands", "VI"),
    ("american samoa", "AS"),
    ("northern mariana islands", "MP"),
    ("united states minor outlying islands", "UM"),
    ("federated states of micronesia", "FM"),
];

/// A state or territory written out in full (case-insensitive).
fn state_from_name(s: &str) -> Option<UsState> {
    let t = s.trim();
    STATE_NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(t))
        .and_then(|(_, code)| UsState::parse(code))
}

fn complaint_id(v: Option<Val<'_>>) -> Result<ComplaintId, RecordError> {
    let missing = || {
        field_err(
            ErrorKind::MissingField,
            f::COMPLAINT_ID,
            "required but missing or empty".into(),
        )
    };
    match v {
        None | Some(Val::Null) => Err(missing()),
        Some(Val::U64(n)) => Ok(ComplaintId(n)),
        Some(Val::F64(x)) if x >= 0.0 && x.fract() == 0.0 && x < 1e18 => Ok(ComplaintId(x as u64)),
        Some(Val::Str(s)) => {
            let t = s.trim();
            if is_missing(t) {
                return Err(missing());
            }
            // pandas re-saves ids as `3384392.0`
            let digits = t.strip_suffix(".0").unwrap_or(t);
            digits.parse::<u64>().map(ComplaintId).map_err(|_| {
                field_err(
                    ErrorKind::WrongType,
                    f::COMPLAINT_ID,
                    format!("{} is not a non-negative integer", excerpt(t)),
                )
            })
        }
        Some(Val::I64(n)) => Err(field_err(
            ErrorKind::WrongType,
            f::COMPLAINT_ID,
            format!("{n} is negative"),
        )),
        Some(Val::F64(x)) => Err(field_err(
            ErrorKind::WrongType,
            f::COMPLAINT_ID,
            format!("{x} is not a non-negative integer"),
        )),
        Some(v) => Err(wrong_type(
            f::COMPLAINT_ID,
            &v,
            "a string or number of digits",
        )),
    }
}

fn text_field(field: usize, v: Option<Val<'_>>) -> Result<Option<String>, RecordError> {
    text_ref(field, v).map(|t| t.map(Cow::into_owned))
}

/// [`text_field`] without copying the text out of the record (for fields that are parsed
/// into something else: state, tags, company response).
fn text_ref(field: usize, v: Option<Val<'_>>) -> Result<Option<Cow<'_, str>>, RecordError> {
    match v {
        None | Some(Val::Null) => Ok(None),
        Some(Val::Str(s)) => {
            if is_missing(&s) {
                Ok(None)
            } else {
                Ok(Some(s))
            }
        }
        Some(v) => Err(wrong_type(field, &v, "a string or null")),
    }
}

fn zip(v: Option<Val<'_>>) -> Result<Option<String>, RecordError> {
    match v {
        Some(Val::U64(n)) => Ok(Some(n.to_string())),
        Some(Val::F64(x)) if x >= 0.0 && x.fract() == 0.0 && x < 1e9 => {
            Ok(Some((x as u64).to_string()))
        }
        other => text_field(f::ZIP, other),
    }
}

fn yes_no(field: usize, v: Option<Val<'_>>) -> Result<Option<YesNo>, RecordError> {
    match v {
        None | Some(Val::Null) => Ok(None),
        Some(Val::Bool(b)) => Ok(Some(if b { YesNo::Yes } else { YesNo::No })),
        Some(Val::Str(s)) => YesNo::parse(&s).map_err(|()| {
            field_err(
                ErrorKind::BadYesNo,
                field,
                format!("expected Yes, No or N/A, got {}", excerpt(&s)),
            )
        }),
        Some(v) => Err(wrong_type(field, &v, "Yes, No, N/A, a boolean or null")),
    }
}

fn date(field: usize, v: Val<'_>) -> Result<Option<NaiveDate>, RecordError> {
    match v {
        Val::Null => Ok(None),
        Val::Str(s) => {
            if is_missing(&s) {
                return Ok(None);
            }
            parse_date(&s).map(Some).ok_or_else(|| {
                field_err(
                    ErrorKind::UnparseableDate,
                    field,
                    format!(
                        "{} is not a valid date (accepted: YYYY-MM-DD, YYYY/M/D, M/D/YYYY, \
                         MM/DD/YY, DD-MM-YYYY, ISO timestamps)",
                        excerpt(&s)
                    ),
                )
            })
        }
        v => Err(wrong_type(field, &v, "a date string or null")),
    }
}

/// Parses the date spellings found in CFPB files: `2019-09-24`, `2019/9/24`, an ISO
/// timestamp (`2019-09-24T12:00:00-05:00`, `2019-09-24 00:00:00`: the date part is taken as
/// written), `09/24/2019`, `9/24/2019`, `09/24/19` (month first with slashes; two-digit years are
/// 20YY), `24-09-2019` (day first with dashes; if that is not a valid date, month first is
/// tried). Years outside 1900–2100 are rejected. `None` when it is none of these.
///
/// ```
/// use complaintflow_datasets::parse::parse_date;
/// let d = chrono::NaiveDate::from_ymd_opt(2019, 9, 24);
/// for s in ["2019-09-24", "2019-09-24T12:00:00-05:00", "09/24/2019", "9/24/2019", "2019/9/24",
///           "24-09-2019", "09/24/19"] {
///     assert_eq!(parse_date(s), d, "{s}");
/// }
/// assert_eq!(parse_date("2019-02-30"), None);
/// assert_eq!(parse_date("yesterday"), None);
/// ```
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.trim().as_bytes();
    let mut parts = [0u32; 3];
    let mut lens = [0usize; 3];
    let mut n = 0usize;
    let mut sep = 0u8;
    for &c in b {
        if c.is_ascii_digit() {
            let len = lens.get_mut(n)?;
            if *len >= 4 {
                return None;
            }
            *len += 1;
            let p = parts.get_mut(n)?;
            *p = *p * 10 + u32::from(c - b'0');
        } else if (c == b'-' || c == b'/' || c == b'.') && n < 2 && lens.get(n).copied()? > 0 {
            if sep == 0 {
                sep = c;
            } else if sep != c {
                return None;
            }
            n += 1;
        } else if n == 2 && lens[2] > 0 && (c == b'T' || c == b' ') {
            break; // time of day follows: the date part is what counts
        } else {
            return None;
        }
    }
    if n != 2 || lens[2] == 0 || !(1..=2).contains(&lens[1]) {
        return None;
    }
    let ymd = |y: u32, m: u32, d: u32| {
        if (1900..=2100).contains(&y) {
            NaiveDate::from_ymd_opt(y as i32, m, d)
        } else {
            None
        }
    };
    if lens[0] == 4 {
        if lens[2] > 2 {
            return None;
        }
        return ymd(parts[0], parts[1], parts[2]);
    }
    if lens[0] > 2 {
        return None;
    }
    let year = match lens[2] {
        4 => parts[2],
        2 => 2000 + parts[2],
        _ => return None,
    };
    if sep == b'-' {
        ymd(year, parts[1], parts[0]).or_else(|| ymd(year, parts[0], parts[1]))
    } else {
        ymd(year, parts[0], parts[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ValidationOptions {
        ValidationOptions::default()
    }

    fn parse(s: &str) -> Result<Complaint, RecordError> {
        parse_json_record(s.as_bytes(), &opts())
    }

    #[test]
    fn reads_the_cfpb_export_form() {
        let c = parse(
            r#"{"date_received":"2019-09-24","product":"Debt collection","sub_product":null,
            "issue":"Attempts to collect debt not owed","sub_issue":"","complaint_what_happened":"a \"quoted\"\nline",
            "company_public_response":null,"company":"TRANSWORLD SYSTEMS INC","state":"FL","zip_code":"335XX",
            "tags":"Older American, Servicemember","consumer_consent_provided":"Consent provided",
            "submitted_via":"Web","date_sent_to_company":"2019-09-25",
            "company_response":"Closed with explanation","timely":"Yes","consumer_disputed":"N/A",
            "complaint_id":"3384392"}"#,
        )
        .unwrap();
        assert_eq!(c.complaint_id, ComplaintId(3384392));
        assert_eq!(c.sub_issue, None);
        assert_eq!(
            c.complaint_what_happened.as_deref(),
            Some("a \"quoted\"\nline")
        );
        assert_eq!(c.date_sent_to_company, NaiveDate::from_ymd_opt(2019, 9, 25));
        assert!(c.tags.servicemember() && c.tags.older_american());
        assert_eq!(c.consumer_disputed, Some(YesNo::NotApplicable));
        assert_eq!(
            c.company_response,
            Some(CompanyResponse::ClosedWithExplanation)
        );
    }

    #[test]
    fn accepts_header_and_snake_case_names_and_odd_values() {
        let c = parse(
            r#"{"Date_received":"27-04-2023","zipcode":2134,"consumer_disputed?":"","timely_response":false,
            "Complaint_ID":6896026.0,"State":"ma","has_narrative":true,"Tags":"None"}"#,
        )
        .unwrap();
        assert_eq!(
            c.date_received,
            NaiveDate::from_ymd_opt(2023, 4, 27).unwrap()
        );
        assert_eq!(c.zip_code.as_deref(), Some("2134"));
        assert_eq!(c.consumer_disputed, None);
        assert_eq!(c.timely, Some(YesNo::No));
        assert_eq!(c.complaint_id.0, 6896026);
        assert_eq!(c.state.map(|s| s.code()), Some("MA"));
        assert!(c.tags.is_empty());
    }

    #[test]
    fn typed_errors_name_field_and_value() {
        let e = parse(r#"{"complaint_id":"5","date_received":"2019-01-01","timely":"maybe"}"#)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadYesNo);
        assert!(
            e.message.contains("timely") && e.message.contains("maybe"),
            "{e}"
        );
        assert_eq!(e.complaint_id.as_deref(), Some("5"));

        let e = parse(r#"{"complaint_id":"5","date_received":"2019-01-01","product":{"a":1}}"#)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongType);
        assert!(
            e.message.contains("product") && e.message.contains("object"),
            "{e}"
        );

        let e =
            parse(r#"{"complaint_id":"5","date_received":"2019-01-01","state":"ZZ"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownState);
        let lenient = ValidationOptions {
            require_state_valid: false,
            ..opts()
        };
        let c = parse_json_record(
            br#"{"complaint_id":"5","date_received":"2019-01-01","state":"ZZ"}"#,
            &lenient,
        )
        .unwrap();
        assert_eq!(c.state, None);

        let e = parse(r#"{"complaint_id":"5","date_received":"2019-01-03","date_sent_to_company":"2019-01-01"}"#)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::SentBeforeReceived);
        // one day early is the CFPB's own time-zone artefact: tolerated by default
        assert!(parse(r#"{"complaint_id":"5","date_received":"2019-01-02","date_sent_to_company":"2019-01-01"}"#).is_ok());
        let strict = ValidationOptions {
            sent_before_received_tolerance_days: 0,
            ..opts()
        };
        let e = parse_json_record(
            br#"{"complaint_id":"5","date_received":"2019-01-02","date_sent_to_company":"2019-01-01"}"#,
            &strict,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::SentBeforeReceived);
        let c = parse(r#"{"complaint_id":"5","date_received":"2019-01-01","state":"UNITED STATES MINOR OUTLYING ISLANDS"}"#).unwrap();
        assert_eq!(c.state.map(|s| s.code()), Some("UM"));

        let e =
            parse(r#"{"complaint_id":"5","date_received":"2019-01-01","tags":"VIP"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownTag);
        assert!(e.message.contains("VIP"));

        let e = parse(r#"{"date_received":"2019-01-01"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MissingField);
        assert!(e.message.contains("complaint_id"));

        let e = parse(r#"{"complaint_id":"x1","date_received":"2019-01-01"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongType);

        let e = parse(r#"{"complaint_id":"5","date_received":""}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MissingField);
        assert!(e.message.contains("date_received"));

        let e = parse(
            r#"{"complaint_id":"5","zip_code":"1","zipcode":"2","date_received":"2019-01-01"}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::DuplicateField);
        assert!(e.message.contains("zip_code"));
    }

    #[test]
    fn framing_level_errors() {
        assert_eq!(
            parse(r#"{"complaint_id":"5""#).unwrap_err().kind,
            ErrorKind::TruncatedInput
        );
        assert_eq!(
            parse(r#"{"complaint_id" 5}"#).unwrap_err().kind,
            ErrorKind::MalformedJson
        );
        assert_eq!(parse(r#"[1,2]"#).unwrap_err().kind, ErrorKind::NotAnObject);
        assert_eq!(parse(r#""text""#).unwrap_err().kind, ErrorKind::NotAnObject);
        assert_eq!(parse("").unwrap_err().kind, ErrorKind::TruncatedInput);
        let e = parse_json_record(b"{\"complaint_id\":\"\xff\"}", &opts()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidUtf8);
        let small = ValidationOptions {
            max_record_bytes: 10,
            ..opts()
        };
        let e = parse_json_record(br#"{"complaint_id":"12345"}"#, &small).unwrap_err();
        assert_eq!(e.kind, ErrorKind::RecordTooLarge);
        let short_narr = ValidationOptions {
            max_narrative_bytes: 3,
            ..opts()
        };
        let e = parse_json_record(
            br#"{"complaint_id":"1","date_received":"2019-01-01","complaint_what_happened":"abcd"}"#,
            &short_narr,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NarrativeTooLong);
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_date("04-27-2023"),
            NaiveDate::from_ymd_opt(2023, 4, 27)
        );
        assert_eq!(
            parse_date("2019-09-24 00:00:00"),
            NaiveDate::from_ymd_opt(2019, 9, 24)
        );
        assert_eq!(parse_date("3/1/2014"), NaiveDate::from_ymd_opt(2014, 3, 1));
        assert_eq!(parse_date("2019-9"), None);
        assert_eq!(parse_date("2019-09-24-1"), None);
        assert_eq!(parse_date("1/2/3"), None);
        assert_eq!(parse_date("0001-01-01"), None);
        assert_eq!(parse_date("2019/09-24"), None);
        assert_eq!(parse_date("20190-09-24"), None);
    }
}
