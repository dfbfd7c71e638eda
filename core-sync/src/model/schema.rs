//! The document's schema: key names, the current schema version, and the
//! migration hook that lifts older documents to it.
//!
//! Layout of an asset document (schema 1):
//! ```text
//! ROOT { schema: Int, title: Str, createdAt: Int(ms), updatedAt: Int(ms),
//!        activeVersionId: Str?,
//!        versions:   Map { <id>: Map { id, parentVersionId?, createdByMessageId?,
//!                                      blob: Map{sha256,mime,width,height,bytes},
//!                                      thumbnail: Map?, createdAt } },
//!        messages:   List [ Map { id, kind, text?, tool?, provider?, model?,
//!                                 params?(JSON Str), inputVersionIds: List,
//!                                 outputVersionIds: List, status?, progress?,
//!                                 error?: Map{code,message}, operationId?,
//!                                 createdAt, updatedAt } ],
//!        costEvents: List [ Map { id, ts, provider, model, units, unit,
//!                                 costNanoUsd, messageId? } ],
//!        deleted?:   Map { at: Int(ms), by: Str } }   // the tombstone
//! ```
//! `Str` reads a scalar string or a text object and `Int` any Automerge
//! number (times also a timestamp); Atelier writes scalars.
//! The published form of this layout, with the rules other writers keep,
//! is `core-sync/SCHEMA.md` (and `core-sync/schema/asset.d.ts`).
//!
//! Schema 0 is the shape of the original web plan (no `schema` key,
//! `latestVersionId`, messages typed by `type`, no cost events).

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, Value};

use super::error::{ModelError, ModelResult};

pub const SCHEMA_VERSION: u64 = 1;

pub const SCHEMA: &str = "schema";
pub const TITLE: &str = "title";
pub const CREATED_AT: &str = "createdAt";
pub const UPDATED_AT: &str = "updatedAt";
pub const ACTIVE_VERSION_ID: &str = "activeVersionId";
pub const VERSIONS: &str = "versions";
pub const MESSAGES: &str = "messages";
pub const COST_EVENTS: &str = "costEvents";
pub const DELETED: &str = "deleted";
pub const AT: &str = "at";
pub const BY: &str = "by";

pub const ID: &str = "id";
pub const KIND: &str = "kind";
pub const TEXT: &str = "text";
pub const TOOL: &str = "tool";
pub const PROVIDER: &str = "provider";
pub const MODEL: &str = "model";
pub const PARAMS: &str = "params";
pub const INPUT_VERSION_IDS: &str = "inputVersionIds";
pub const OUTPUT_VERSION_IDS: &str = "outputVersionIds";
pub const STATUS: &str = "status";
pub const PROGRESS: &str = "progress";
pub const ERROR: &str = "error";
pub const CODE: &str = "code";
pub const MESSAGE: &str = "message";
pub const OPERATION_ID: &str = "operationId";

pub const PARENT_VERSION_ID: &str = "parentVersionId";
pub const CREATED_BY_MESSAGE_ID: &str = "createdByMessageId";
pub const BLOB: &str = "blob";
pub const THUMBNAIL: &str = "thumbnail";
pub const SHA256: &str = "sha256";
pub const MIME: &str = "mime";
pub const WIDTH: &str = "width";
pub const HEIGHT: &str = "height";
pub const BYTES: &str = "bytes";

pub const TS: &str = "ts";
pub const UNITS: &str = "units";
pub const UNIT: &str = "unit";
pub const COST_NANO_USD: &str = "costNanoUsd";
pub const MESSAGE_ID: &str = "messageId";

/// The schema version a document declares; a document without the key is
/// schema 0.
pub fn declared_version(doc: &AutoCommit) -> ModelResult<u64> {
    match doc.get(ROOT, SCHEMA)? {
        None => Ok(0),
        Some((Value::Scalar(s), _)) => match super::parse::whole(&s) {
            Some(n) if n >= 0 => Ok(n as u64),
            _ => Err(ModelError::Malformed(format!(
                "schema version is {s}, not a whole number"
            ))),
        },
        Some(_) => Err(ModelError::Malformed("schema version is an object".into())),
    }
}

/// One step of the migration hook: lifts a document from `from` to `from + 1`.
type Step = fn(&mut AutoCommit) -> ModelResult<()>;

/// Steps indexed by the version they start from.
const STEPS: [Step; SCHEMA_VERSION as usize] = [v0_to_v1];

/// Brings `doc` up to [`SCHEMA_VERSION`] as one new change. Returns whether it
/// changed anything. A newer version than this build knows is refused.
///
/// Two devices migrating the same old document concurrently converge: every
/// step writes values that are equal on both sides, and the one container a
/// step may create (`costEvents`) is read as the union of all concurrent
/// copies (see `read::cost_event_lists`).
pub fn migrate(doc: &mut AutoCommit) -> ModelResult<bool> {
    let found = declared_version(doc)?;
    if found > SCHEMA_VERSION {
        return Err(ModelError::UnsupportedSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(false);
    }
    for step in &STEPS[found as usize..] {
        if let Err(e) = step(doc) {
            doc.rollback();
            return Err(e);
        }
    }
    doc.commit();
    Ok(true)
}

/// Schema 0 (the original web plan's shape) to schema 1.
fn v0_to_v1(doc: &mut AutoCommit) -> ModelResult<()> {
    if let Some((Value::Scalar(v), _)) = doc.get(ROOT, "latestVersionId")? {
        let v = v.into_owned();
        doc.put(ROOT, ACTIVE_VERSION_ID, v)?;
        doc.delete(ROOT, "latestVersionId")?;
    }
    if doc.get(ROOT, COST_EVENTS)?.is_none() {
        doc.put_object(ROOT, COST_EVENTS, ObjType::List)?;
    }
    if doc.get(ROOT, UPDATED_AT)?.is_none() {
        let created = match doc.get(ROOT, CREATED_AT)? {
            Some((Value::Scalar(s), _)) => super::parse::millis(&s).unwrap_or(0),
            _ => 0,
        };
        doc.put(ROOT, UPDATED_AT, created)?;
    }
    if let Some((Value::Object(ObjType::List), messages)) = doc.get(ROOT, MESSAGES)? {
        for i in 0..doc.length(&messages) {
            let Some((Value::Object(ObjType::Map), msg)) = doc.get(&messages, i)? else {
                continue;
            };
            // Only what schema 0 wrote is moved: a writer that forgot the
            // `schema` key but wrote schema-1 fields keeps them untouched.
            let old = string(doc, &msg, "type")?;
            if old.is_some() || doc.get(&msg, KIND)?.is_none() {
                let kind = match old.as_deref() {
                    Some("prompt") | Some("user") => "user",
                    Some("tool") => "toolRequest",
                    Some("result") => "result",
                    _ => "system",
                };
                doc.put(&msg, KIND, kind)?;
                if old.is_some() {
                    doc.delete(&msg, "type")?;
                }
            }
            for (old, new) in [
                ("inputRefs", INPUT_VERSION_IDS),
                ("outputRefs", OUTPUT_VERSION_IDS),
            ] {
                if doc.get(&msg, old)?.is_none() {
                    continue;
                }
                let ids = string_list(doc, &msg, old)?;
                let list = doc.put_object(&msg, new, ObjType::List)?;
                for (j, id) in ids.into_iter().enumerate() {
                    doc.insert(&list, j, id)?;
                }
                doc.delete(&msg, old)?;
            }
            if doc.get(&msg, UPDATED_AT)?.is_none() {
                let created = match doc.get(&msg, CREATED_AT)? {
                    Some((Value::Scalar(s), _)) => super::parse::millis(&s).unwrap_or(0),
                    _ => 0,
                };
                doc.put(&msg, UPDATED_AT, created)?;
            }
        }
    }
    doc.put(ROOT, SCHEMA, 1_i64)?;
    Ok(())
}

/// A string written as a scalar or as text.
fn string(doc: &AutoCommit, obj: &ObjId, key: &str) -> ModelResult<Option<String>> {
    Ok(match doc.get(obj, key)? {
        Some((Value::Scalar(s), _)) => s.as_str().map(str::to_owned),
        Some((Value::Object(ObjType::Text), text)) => Some(doc.text(&text)?),
        _ => None,
    })
}

fn string_list(doc: &AutoCommit, obj: &ObjId, key: &str) -> ModelResult<Vec<String>> {
    let Some((Value::Object(ObjType::List), list)) = doc.get(obj, key)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for i in 0..doc.length(&list) {
        let s = match doc.get(&list, i)? {
            Some((Value::Scalar(s), _)) => s.as_str().map(str::to_owned),
            Some((Value::Object(ObjType::Text), text)) => Some(doc.text(&text)?),
            _ => None,
        };
        out.extend(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MessageKind, MessageStatus};

    const RUST: &str = include_str!("schema.rs");
    const TYPES: &str = include_str!("../../schema/asset.d.ts");
    const DOC: &str = include_str!("../../SCHEMA.md");

    /// Every `pub const NAME: &str = "key";` of this file.
    fn keys() -> Vec<&'static str> {
        RUST.lines()
            .filter_map(|l| {
                l.strip_prefix("pub const ")?
                    .split_once(": &str = \"")?
                    .1
                    .strip_suffix("\";")
            })
            .collect()
    }

    #[test]
    fn the_published_schema_names_every_key_and_value() {
        let keys = keys();
        assert!(keys.len() > 30, "found only {keys:?}");
        for key in keys {
            assert!(
                TYPES.contains(&format!("\n  {key}: ")) || TYPES.contains(&format!("\n  {key}?: ")),
                "schema/asset.d.ts has no field {key:?}"
            );
            assert!(
                DOC.contains(&format!("`{key}`")),
                "SCHEMA.md does not name `{key}`"
            );
        }
        assert!(TYPES.contains(&format!("export type SchemaVersion = {SCHEMA_VERSION};")));
        assert!(DOC.starts_with(&format!("# The asset document, schema {SCHEMA_VERSION}\n")));
        let union = |names: Vec<&str>| {
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let kinds = union(MessageKind::ALL.iter().map(|k| k.as_str()).collect());
        assert!(
            TYPES.contains(&format!("export type MessageKind = {kinds};")),
            "{kinds}"
        );
        let statuses = union(MessageStatus::ALL.iter().map(|s| s.as_str()).collect());
        assert!(
            TYPES.contains(&format!("export type MessageStatus = {statuses};")),
            "{statuses}"
        );
    }
}
