//! From hydrated Automerge values to the typed views, field by field, read
//! the way any Automerge client may have written them (see `SCHEMA.md`):
//! a string is a scalar string or a text object (Automerge JS writes text);
//! a whole number is an int, uint, integral float or counter; a time is a
//! timestamp or a whole number of milliseconds; `null` is an absent field.
//!
//! A field of the wrong type, a missing required field or an unknown kind
//! is a [`Flaw`] naming the field and what was found there; the reader turns
//! it into an [`Unreadable`] entry. Nothing here skips anything.

use std::collections::HashMap;

use automerge::ScalarValue;
use automerge::hydrate::{Map as HMap, Value as HValue};

use super::schema::*;
use super::types::*;
use crate::blob::is_valid_sha256;
use crate::ids::is_valid_id;

/// Why an entry does not read, with its id when that much reads.
#[derive(Debug)]
pub(super) struct Flaw {
    pub id: Option<String>,
    pub reason: String,
}

impl Flaw {
    pub fn at(self, place: Place) -> Unreadable {
        Unreadable {
            place,
            id: self.id,
            reason: self.reason,
        }
    }
}

type Parsed<T> = Result<T, String>;

const A_STRING: &str = "a string";
const AN_ID: &str = "an id (32 lowercase hex characters)";
const A_TIME: &str = "a time (a timestamp, or whole milliseconds since 1970)";
const A_LIST_OF_IDS: &str = "a list of ids";

// ------------------------------------------------------------ single values

/// A scalar string or a text object as a `String`.
pub(super) fn string(v: &HValue) -> Option<String> {
    match v {
        HValue::Scalar(ScalarValue::Str(s)) => Some(s.to_string()),
        HValue::Text(t) => Some(String::from(t)),
        _ => None,
    }
}

/// An int, a uint that fits, an integral float, or a counter's value.
pub(super) fn whole(s: &ScalarValue) -> Option<i64> {
    // Past 2^53 a float no longer holds every whole number exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match s {
        ScalarValue::Int(n) => Some(*n),
        ScalarValue::Uint(n) => i64::try_from(*n).ok(),
        ScalarValue::F64(f) if f.fract() == 0.0 && f.abs() <= EXACT => Some(*f as i64),
        ScalarValue::Counter(c) => Some(i64::from(c)),
        _ => None,
    }
}

/// A timestamp, or a whole number of milliseconds.
pub(super) fn millis(s: &ScalarValue) -> Option<i64> {
    match s {
        ScalarValue::Timestamp(t) => Some(*t),
        ScalarValue::Counter(_) => None,
        other => whole(other),
    }
}

/// Any finite number.
fn real(s: &ScalarValue) -> Option<f64> {
    match s {
        ScalarValue::Int(n) => Some(*n as f64),
        ScalarValue::Uint(n) => Some(*n as f64),
        ScalarValue::F64(f) if f.is_finite() => Some(*f),
        ScalarValue::Counter(c) => Some(f64::from(c)),
        _ => None,
    }
}

fn scalar(v: &HValue) -> Option<&ScalarValue> {
    match v {
        HValue::Scalar(s) => Some(s),
        _ => None,
    }
}

/// What was found, for a reason a person reads: `the number 3`.
pub(super) fn describe(v: &HValue) -> String {
    fn clip(s: &str) -> String {
        if s.chars().count() <= 40 {
            format!("{s:?}")
        } else {
            format!("{:?}…", s.chars().take(40).collect::<String>())
        }
    }
    match v {
        HValue::Map(_) => "a map".into(),
        HValue::List(_) => "a list".into(),
        HValue::Text(t) => format!("the text {}", clip(&String::from(t))),
        HValue::Scalar(s) => match s {
            ScalarValue::Str(s) => format!("the string {}", clip(s)),
            ScalarValue::Int(n) => format!("the number {n}"),
            ScalarValue::Uint(n) => format!("the number {n}"),
            ScalarValue::F64(f) => format!("the number {f}"),
            ScalarValue::Counter(c) => format!("the counter {c}"),
            ScalarValue::Timestamp(t) => format!("the timestamp {t}"),
            ScalarValue::Boolean(b) => format!("the boolean {b}"),
            ScalarValue::Bytes(b) => format!("{} bytes", b.len()),
            ScalarValue::Null => "null".into(),
            ScalarValue::Unknown { type_code, .. } => {
                format!("a value of unknown type {type_code}")
            }
        },
    }
}

/// A JSON object written as a JSON string, or as a map of plain values.
fn params(v: &HValue) -> Option<serde_json::Value> {
    let json = match string(v) {
        Some(s) => serde_json::from_str(&s).ok()?,
        None => to_json(v)?,
    };
    json.is_object().then_some(json)
}

fn to_json(v: &HValue) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        HValue::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| Some((k.clone(), to_json(&v.value)?)))
                .collect::<Option<_>>()?,
        ),
        HValue::List(l) => J::Array(l.iter().map(|i| to_json(&i.value)).collect::<Option<_>>()?),
        HValue::Text(t) => J::String(String::from(t)),
        HValue::Scalar(s) => match s {
            ScalarValue::Str(s) => J::String(s.to_string()),
            ScalarValue::Boolean(b) => J::Bool(*b),
            ScalarValue::Null => J::Null,
            ScalarValue::F64(f) => J::from(serde_json::Number::from_f64(*f)?),
            ScalarValue::Uint(n) => J::from(*n),
            other => J::from(millis(other).or_else(|| whole(other))?),
        },
    })
}

// ------------------------------------------------------------------ fields

/// The fields of one map, each read or refused with a reason naming it.
struct Fields<'a>(&'a HMap);

impl<'a> Fields<'a> {
    /// The value under `key`; `null` counts as absent.
    fn get(&self, key: &str) -> Option<&'a HValue> {
        self.0
            .get(key)
            .filter(|v| !matches!(v, HValue::Scalar(ScalarValue::Null)))
    }

    fn opt<T>(&self, key: &str, what: &str, f: impl Fn(&HValue) -> Option<T>) -> Parsed<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v)
                .map(Some)
                .ok_or_else(|| format!("{key} is {}, expected {what}", describe(v))),
        }
    }

    fn req<T>(&self, key: &str, what: &str, f: impl Fn(&HValue) -> Option<T>) -> Parsed<T> {
        self.opt(key, what, f)?
            .ok_or_else(|| format!("{key} is missing"))
    }

    fn string(&self, key: &str) -> Parsed<Option<String>> {
        self.opt(key, A_STRING, string)
    }

    fn req_string(&self, key: &str) -> Parsed<String> {
        self.req(key, A_STRING, string)
    }

    fn id(&self, key: &str) -> Parsed<Option<String>> {
        self.opt(key, AN_ID, id)
    }

    fn time(&self, key: &str) -> Parsed<Option<i64>> {
        self.opt(key, A_TIME, |v| scalar(v).and_then(millis))
    }

    fn req_time(&self, key: &str) -> Parsed<i64> {
        self.req(key, A_TIME, |v| scalar(v).and_then(millis))
    }

    /// A whole number in `0..=max`.
    fn count(&self, key: &str, max: i64) -> Parsed<i64> {
        let what = if max == i64::MAX {
            "a whole number of at least 0".to_owned()
        } else {
            format!("a whole number from 0 to {max}")
        };
        self.req(key, &what, |v| {
            scalar(v).and_then(whole).filter(|n| (0..=max).contains(n))
        })
    }

    /// A list of ids; absent is empty.
    fn ids(&self, key: &str) -> Parsed<Vec<String>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(HValue::List(list)) => list
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    id(&item.value).ok_or_else(|| {
                        format!("{key}[{i}] is {}, expected {AN_ID}", describe(&item.value))
                    })
                })
                .collect(),
            Some(v) => Err(format!(
                "{key} is {}, expected {A_LIST_OF_IDS}",
                describe(v)
            )),
        }
    }

    fn map(&self, key: &str) -> Parsed<Option<&'a HMap>> {
        match self.get(key) {
            None => Ok(None),
            Some(HValue::Map(m)) => Ok(Some(m)),
            Some(v) => Err(format!("{key} is {}, expected a map", describe(v))),
        }
    }

    /// The `id` field as far as it reads, for naming a flawed entry.
    fn any_id(&self) -> Option<String> {
        self.get(ID).and_then(string)
    }
}

fn id(v: &HValue) -> Option<String> {
    string(v).filter(|s| is_valid_id(s))
}

fn map_of<'a>(v: &'a HValue, what: &str) -> Result<Fields<'a>, Flaw> {
    match v {
        HValue::Map(m) => Ok(Fields(m)),
        other => Err(Flaw {
            id: None,
            reason: format!("{what} is {}, expected a map", describe(other)),
        }),
    }
}

// ------------------------------------------------------------------- views

/// A timeline entry.
pub(super) fn message(v: &HValue) -> Result<MessageView, Flaw> {
    let f = map_of(v, "the entry")?;
    message_fields(&f).map_err(|reason| Flaw {
        id: f.any_id(),
        reason,
    })
}

fn message_fields(f: &Fields<'_>) -> Parsed<MessageView> {
    let id = f.req(ID, AN_ID, id)?;
    let kinds = MessageKind::ALL.map(|k| k.as_str()).join(", ");
    let kind = f.req(KIND, &format!("one of {kinds}"), |v| {
        string(v).and_then(|s| MessageKind::parse(&s))
    })?;
    let statuses = MessageStatus::ALL.map(|s| s.as_str()).join(", ");
    let status = f.opt(STATUS, &format!("one of {statuses}"), |v| {
        string(v).and_then(|s| MessageStatus::parse(&s))
    })?;
    let error = match f.map(ERROR)? {
        None => None,
        Some(e) => {
            let e = Fields(e);
            let read = || -> Parsed<ErrorInfo> {
                Ok(ErrorInfo {
                    code: e.req_string(CODE)?,
                    message: e.req_string(MESSAGE)?,
                })
            };
            Some(read().map_err(|r| format!("{ERROR}.{r}"))?)
        }
    };
    let created_at = f.req_time(CREATED_AT)?;
    Ok(MessageView {
        id,
        kind,
        text: f.string(TEXT)?,
        tool: f.string(TOOL)?,
        provider: f.string(PROVIDER)?,
        model: f.string(MODEL)?,
        params: f.opt(PARAMS, "a JSON object (as a string or a map)", params)?,
        input_version_ids: f.ids(INPUT_VERSION_IDS)?,
        output_version_ids: f.ids(OUTPUT_VERSION_IDS)?,
        status,
        progress: f.opt(PROGRESS, "a number from 0 to 1", |v| {
            scalar(v).and_then(real).filter(|p| (0.0..=1.0).contains(p))
        })?,
        error,
        operation_id: f.string(OPERATION_ID)?,
        created_at,
        updated_at: f.time(UPDATED_AT)?.unwrap_or(created_at),
    })
}

/// The version under `key` of `versions`.
pub(super) fn version(key: &str, v: &HValue) -> Result<VersionView, Flaw> {
    let named = |reason| Flaw {
        id: Some(key.to_owned()),
        reason,
    };
    let f = map_of(v, "the version").map_err(|flaw| named(flaw.reason))?;
    version_fields(key, &f).map_err(named)
}

fn version_fields(key: &str, f: &Fields<'_>) -> Parsed<VersionView> {
    if !is_valid_id(key) {
        return Err(format!("its key {key:?} is not {AN_ID}"));
    }
    if let Some(inner) = f.string(ID)?
        && inner != key
    {
        return Err(format!("{ID} {inner:?} differs from its key"));
    }
    let blob = f.map(BLOB)?.ok_or_else(|| format!("{BLOB} is missing"))?;
    Ok(VersionView {
        id: key.to_owned(),
        parent_version_id: f.id(PARENT_VERSION_ID)?,
        created_by_message_id: f.id(CREATED_BY_MESSAGE_ID)?,
        blob: blob_ref(blob).map_err(|r| format!("{BLOB}.{r}"))?,
        thumbnail: match f.map(THUMBNAIL)? {
            None => None,
            Some(t) => Some(blob_ref(t).map_err(|r| format!("{THUMBNAIL}.{r}"))?),
        },
        created_at: f.req_time(CREATED_AT)?,
    })
}

fn blob_ref(m: &HMap) -> Parsed<BlobRef> {
    let f = Fields(m);
    Ok(BlobRef {
        sha256: f.req(SHA256, "a SHA-256 in lowercase hex", |v| {
            string(v).filter(|s| is_valid_sha256(s))
        })?,
        mime: f.req_string(MIME)?,
        width: f.count(WIDTH, u32::MAX as i64)? as u32,
        height: f.count(HEIGHT, u32::MAX as i64)? as u32,
        bytes: f.count(BYTES, i64::MAX)? as u64,
    })
}

/// A cost event.
pub(super) fn cost_event(v: &HValue) -> Result<CostEventView, Flaw> {
    let f = map_of(v, "the cost event")?;
    cost_fields(&f).map_err(|reason| Flaw {
        id: f.any_id(),
        reason,
    })
}

fn cost_fields(f: &Fields<'_>) -> Parsed<CostEventView> {
    Ok(CostEventView {
        id: f.req(ID, AN_ID, id)?,
        ts: f.req_time(TS)?,
        provider: f.req_string(PROVIDER)?,
        model: f.req_string(MODEL)?,
        units: f.req(UNITS, "a number of at least 0", |v| {
            scalar(v).and_then(real).filter(|u| *u >= 0.0)
        })?,
        unit: f.req_string(UNIT)?,
        cost_nano_usd: f.count(COST_NANO_USD, i64::MAX)?,
        message_id: f.id(MESSAGE_ID)?,
    })
}

/// The asset's own fields, read as far as they go: a field that does not
/// read takes its default here and is named in the returned reasons.
pub(super) struct AssetFields {
    pub title: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub active_version_id: Option<String>,
}

/// `leaves` holds the root's `title`, `createdAt`, `updatedAt` and
/// `activeVersionId` as found (absent keys left out).
pub(super) fn asset(leaves: HashMap<&str, HValue>) -> (AssetFields, Vec<String>) {
    let root: HValue = leaves.into();
    let HValue::Map(m) = &root else {
        unreachable!("a HashMap hydrates to a map")
    };
    let f = Fields(m);
    let mut reasons = Vec::new();
    let title = keep(&mut reasons, f.string(TITLE)).unwrap_or_default();
    let created_at = keep(&mut reasons, f.time(CREATED_AT));
    let updated_at = keep(&mut reasons, f.time(UPDATED_AT));
    let active_version_id = keep(&mut reasons, f.id(ACTIVE_VERSION_ID));
    if created_at.is_none() && f.get(CREATED_AT).is_none() {
        reasons.push(format!("{CREATED_AT} is missing"));
    }
    let created_at = created_at.unwrap_or(0);
    (
        AssetFields {
            title,
            created_at,
            updated_at: updated_at.unwrap_or(created_at),
            active_version_id,
        },
        reasons,
    )
}

/// The value, or `None` with the reason recorded.
fn keep<T>(reasons: &mut Vec<String>, read: Parsed<Option<T>>) -> Option<T> {
    read.unwrap_or_else(|reason| {
        reasons.push(reason);
        None
    })
}
