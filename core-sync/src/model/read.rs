//! Typed read views over an asset document, at the current state or at any
//! past heads. Reads go through [`Reader`], which picks the `*_at` variant of
//! each Automerge read when heads are given, so every view is available for
//! history at no extra code.
//!
//! Reads accept what any Automerge client writes (`parse` has the rules:
//! text or scalar strings, every numeric type). An entry that still does not
//! follow the schema is never skipped silently: [`Reader::timeline`] keeps
//! it in place as [`Entry::Unreadable`] with the reason, and
//! [`Reader::unreadable`] lists every such part of the document. Structural
//! damage (bytes that do not decode) never gets here: it fails at load.

use std::collections::HashMap;
use std::ops::Range;

use automerge::hydrate;
use automerge::{AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use super::error::{ModelError, ModelResult};
use super::parse;
use super::schema::*;
use super::types::*;

/// A read-only window on a document at its current state or at `heads`.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    doc: &'a AutoCommit,
    heads: Option<&'a [ChangeHash]>,
}

impl<'a> Reader<'a> {
    pub fn new(doc: &'a AutoCommit, heads: Option<&'a [ChangeHash]>) -> Self {
        Reader { doc, heads }
    }

    fn get(&self, obj: &ObjId, key: &str) -> ModelResult<Option<(Value<'a>, ObjId)>> {
        Ok(match self.heads {
            None => self.doc.get(obj, key)?,
            Some(h) => self.doc.get_at(obj, key, h)?,
        })
    }

    fn get_index(&self, obj: &ObjId, index: usize) -> ModelResult<Option<(Value<'a>, ObjId)>> {
        Ok(match self.heads {
            None => self.doc.get(obj, index)?,
            Some(h) => self.doc.get_at(obj, index, h)?,
        })
    }

    fn get_all(&self, obj: &ObjId, key: &str) -> ModelResult<Vec<(Value<'a>, ObjId)>> {
        Ok(match self.heads {
            None => self.doc.get_all(obj, key)?,
            Some(h) => self.doc.get_all_at(obj, key, h)?,
        })
    }

    fn length(&self, obj: &ObjId) -> usize {
        match self.heads {
            None => self.doc.length(obj),
            Some(h) => self.doc.length_at(obj, h),
        }
    }

    fn hydrate(&self, obj: &ObjId) -> ModelResult<hydrate::Value> {
        Ok(self.doc.hydrate(obj, self.heads)?)
    }

    fn scalar(&self, obj: &ObjId, key: &str) -> ModelResult<Option<ScalarValue>> {
        Ok(match self.get(obj, key)? {
            Some((Value::Scalar(s), _)) => Some(s.into_owned()),
            _ => None,
        })
    }

    /// The object under `key` if it is of type `ty`.
    pub fn object(&self, obj: &ObjId, key: &str, ty: ObjType) -> ModelResult<Option<ObjId>> {
        Ok(match self.get(obj, key)? {
            Some((Value::Object(t), id)) if t == ty => Some(id),
            _ => None,
        })
    }

    /// A scalar or text under `key` as a hydrated value. Other objects are
    /// stood in for by an empty one of their kind: enough to say what they
    /// are, without reading a whole container.
    fn leaf(&self, obj: &ObjId, key: &str) -> ModelResult<Option<hydrate::Value>> {
        Ok(match self.get(obj, key)? {
            None => None,
            Some((Value::Scalar(s), _)) => Some(hydrate::Value::Scalar(s.into_owned())),
            Some((Value::Object(ObjType::Text), id)) => Some(self.hydrate(&id)?),
            Some((Value::Object(ObjType::List), _)) => Some(hydrate::Value::list()),
            Some((Value::Object(_), _)) => Some(hydrate::Value::map()),
        })
    }

    /// The string under `key`, written as a scalar string or as text.
    pub(super) fn string(&self, obj: &ObjId, key: &str) -> ModelResult<Option<String>> {
        Ok(self.leaf(obj, key)?.as_ref().and_then(parse::string))
    }

    /// What is under `key`, described for a reason ("the number 3").
    pub(super) fn describe(&self, obj: &ObjId, key: &str) -> ModelResult<String> {
        Ok(match self.leaf(obj, key)? {
            Some(v) => parse::describe(&v),
            None => "missing".into(),
        })
    }

    pub fn schema_version(&self) -> ModelResult<u64> {
        Ok(match self.scalar(&ROOT, SCHEMA)? {
            Some(s) => parse::whole(&s).map(|n| n.max(0) as u64).unwrap_or(0),
            None => 0,
        })
    }

    pub fn message_count(&self) -> ModelResult<u64> {
        Ok(match self.object(&ROOT, MESSAGES, ObjType::List)? {
            Some(list) => self.length(&list) as u64,
            None => 0,
        })
    }

    /// The asset's own fields as far as they read, and why the others do not.
    fn asset_fields(&self) -> ModelResult<(parse::AssetFields, Vec<String>)> {
        let mut leaves = HashMap::new();
        for key in [TITLE, CREATED_AT, UPDATED_AT, ACTIVE_VERSION_ID] {
            if let Some(v) = self.leaf(&ROOT, key)? {
                leaves.insert(key, v);
            }
        }
        Ok(parse::asset(leaves))
    }

    /// The listing view. Fields that do not read take their defaults here
    /// (an empty title, time 0); [`Self::unreadable`] names them.
    pub fn summary(&self) -> ModelResult<AssetSummary> {
        let (fields, _) = self.asset_fields()?;
        let cover = match &fields.active_version_id {
            Some(v) => match self.version_entry(v)? {
                Some(Entry::Read(v)) => Some(v.thumbnail.unwrap_or(v.blob)),
                _ => None,
            },
            None => None,
        };
        Ok(AssetSummary {
            title: fields.title,
            created_at: fields.created_at,
            updated_at: fields.updated_at,
            active_version_id: fields.active_version_id,
            cover,
            message_count: self.message_count()?,
            schema_version: self.schema_version()?,
            deleted: self.deletion()?,
        })
    }

    /// The tombstone, if the asset is in the trash. Concurrent deletions
    /// resolve to one (Automerge's winner); a tombstone that does not read
    /// (not a map, no time) leaves the asset live, so nothing is ever
    /// purged on a misreading, and [`Self::unreadable`] names it.
    pub fn deletion(&self) -> ModelResult<Option<Deletion>> {
        let Some(obj) = self.object(&ROOT, DELETED, ObjType::Map)? else {
            return Ok(None);
        };
        let Some(at) = self.scalar(&obj, AT)?.as_ref().and_then(parse::millis) else {
            return Ok(None);
        };
        let by = self.string(&obj, BY)?.unwrap_or_default();
        let mut last_edit = i64::MIN;
        for (v, _) in self.get_all(&ROOT, UPDATED_AT)? {
            if let Value::Scalar(s) = v
                && let Some(t) = parse::millis(&s)
            {
                last_edit = last_edit.max(t);
            }
        }
        Ok(Some(Deletion {
            at,
            by,
            edited_after: false,
            last_edit: if last_edit == i64::MIN { at } else { last_edit },
        }))
    }

    /// Why the tombstone does not read, when there is one that does not.
    fn unreadable_deletion(&self) -> ModelResult<Option<String>> {
        let found = self.describe(&ROOT, DELETED)?;
        if found == "missing" || found == "null" {
            return Ok(None);
        }
        let Some(obj) = self.object(&ROOT, DELETED, ObjType::Map)? else {
            return Ok(Some(format!("{DELETED} is {found}, expected a map")));
        };
        if self
            .scalar(&obj, AT)?
            .as_ref()
            .and_then(parse::millis)
            .is_none()
        {
            let at = self.describe(&obj, AT)?;
            return Ok(Some(format!(
                "{DELETED}.{AT} is {at}, expected a time; the asset stays live"
            )));
        }
        Ok(None)
    }

    /// Every timeline entry in timeline order, unreadable ones included
    /// where they stand.
    pub fn timeline(&self) -> ModelResult<Vec<Entry<MessageView>>> {
        let Some(list) = self.object(&ROOT, MESSAGES, ObjType::List)? else {
            return Ok(Vec::new());
        };
        let hydrate::Value::List(items) = self.hydrate(&list)? else {
            return Ok(Vec::new());
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(index, item)| message_entry(index, &item.value))
            .collect())
    }

    /// Timeline entries `range` (clamped to the timeline); cost is
    /// proportional to the range, not the timeline, for virtualized lists.
    pub fn timeline_range(&self, range: Range<usize>) -> ModelResult<Vec<Entry<MessageView>>> {
        let Some(list) = self.object(&ROOT, MESSAGES, ObjType::List)? else {
            return Ok(Vec::new());
        };
        let end = range.end.min(self.length(&list));
        let mut out = Vec::with_capacity(end.saturating_sub(range.start));
        for index in range.start..end {
            let value = match self.get_index(&list, index)? {
                Some((Value::Object(_), obj)) => self.hydrate(&obj)?,
                Some((Value::Scalar(s), _)) => hydrate::Value::Scalar(s.into_owned()),
                None => continue,
            };
            out.push(message_entry(index, &value));
        }
        Ok(out)
    }

    /// The readable timeline entries, in order: what a caller that acts on
    /// messages (jobs, sync) can use. [`Self::timeline`] shows the
    /// unreadable ones too; [`Self::unreadable`] lists them.
    pub fn messages(&self) -> ModelResult<Vec<MessageView>> {
        Ok(self
            .timeline()?
            .into_iter()
            .filter_map(Entry::read)
            .collect())
    }

    /// The readable entries among timeline entries `range`.
    pub fn messages_range(&self, range: Range<usize>) -> ModelResult<Vec<MessageView>> {
        Ok(self
            .timeline_range(range)?
            .into_iter()
            .filter_map(Entry::read)
            .collect())
    }

    /// The message object `obj`, at timeline position `index`.
    pub fn message_obj(&self, obj: &ObjId, index: usize) -> ModelResult<Entry<MessageView>> {
        Ok(message_entry(index, &self.hydrate(obj)?))
    }

    /// The version `id`, or `None` when there is none; an unreadable one is
    /// [`ModelError::Unreadable`].
    pub fn version(&self, id: &str) -> ModelResult<Option<VersionView>> {
        match self.version_entry(id)? {
            None => Ok(None),
            Some(Entry::Read(v)) => Ok(Some(v)),
            Some(Entry::Unreadable(u)) => Err(ModelError::Unreadable(Box::new(u))),
        }
    }

    /// The version under key `id`, readable or not.
    pub fn version_entry(&self, id: &str) -> ModelResult<Option<Entry<VersionView>>> {
        let Some(versions) = self.object(&ROOT, VERSIONS, ObjType::Map)? else {
            return Ok(None);
        };
        let value = match self.get(&versions, id)? {
            None => return Ok(None),
            Some((Value::Object(_), obj)) => self.hydrate(&obj)?,
            Some((Value::Scalar(s), _)) => hydrate::Value::Scalar(s.into_owned()),
        };
        Ok(Some(version_entry(id, &value)))
    }

    /// Every version under its key, readable or not, in key order.
    pub fn version_entries(&self) -> ModelResult<Vec<Entry<VersionView>>> {
        let Some(versions) = self.object(&ROOT, VERSIONS, ObjType::Map)? else {
            return Ok(Vec::new());
        };
        let hydrate::Value::Map(map) = self.hydrate(&versions)? else {
            return Ok(Vec::new());
        };
        let mut out: Vec<_> = map
            .iter()
            .map(|(key, v)| version_entry(key, &v.value))
            .collect();
        out.sort_by(|a, b| entry_key(a).cmp(entry_key(b)));
        Ok(out)
    }

    /// The readable versions, oldest first.
    pub fn versions(&self) -> ModelResult<Vec<VersionView>> {
        let mut out: Vec<VersionView> = self
            .version_entries()?
            .into_iter()
            .filter_map(Entry::read)
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// Every `costEvents` list: normally one, but two devices migrating the
    /// same schema-0 document each create one, and both must be read.
    pub fn cost_event_lists(&self) -> ModelResult<Vec<ObjId>> {
        Ok(self
            .get_all(&ROOT, COST_EVENTS)?
            .into_iter()
            .filter_map(|(v, id)| matches!(v, Value::Object(ObjType::List)).then_some(id))
            .collect())
    }

    /// Every cost event, readable or not, list by list in list order.
    pub fn cost_event_entries(&self) -> ModelResult<Vec<Entry<CostEventView>>> {
        let mut out = Vec::new();
        for list in self.cost_event_lists()? {
            if let hydrate::Value::List(items) = self.hydrate(&list)? {
                out.extend(items.iter().enumerate().map(|(index, i)| {
                    match parse::cost_event(&i.value) {
                        Ok(c) => Entry::Read(c),
                        Err(flaw) => Entry::Unreadable(flaw.at(Place::CostEvent { index })),
                    }
                }));
            }
        }
        Ok(out)
    }

    /// The readable cost events, by time.
    pub fn cost_events(&self) -> ModelResult<Vec<CostEventView>> {
        let mut out: Vec<CostEventView> = self
            .cost_event_entries()?
            .into_iter()
            .filter_map(Entry::read)
            .collect();
        out.sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }

    /// Everything in the document that does not follow the schema: the
    /// asset's own fields and containers, then timeline entries, versions
    /// and cost events. Each stays in the document as it is.
    pub fn unreadable(&self) -> ModelResult<Vec<Unreadable>> {
        let asset = |reason| Unreadable {
            place: Place::Asset,
            id: None,
            reason,
        };
        let (_, reasons) = self.asset_fields()?;
        let mut out: Vec<Unreadable> = reasons.into_iter().map(asset).collect();
        out.extend(self.unreadable_deletion()?.map(asset));
        for (key, ty, what) in [
            (VERSIONS, ObjType::Map, "a map"),
            (MESSAGES, ObjType::List, "a list"),
            (COST_EVENTS, ObjType::List, "a list"),
        ] {
            if self.object(&ROOT, key, ty)?.is_none() {
                let found = self.describe(&ROOT, key)?;
                out.push(asset(if found == "missing" {
                    format!("{key} is missing")
                } else {
                    format!("{key} is {found}, expected {what}")
                }));
            }
        }
        let timeline = self.timeline()?;
        let versions = self.version_entries()?;
        let costs = self.cost_event_entries()?;
        out.extend(timeline.iter().filter_map(Entry::unreadable).cloned());
        out.extend(versions.iter().filter_map(Entry::unreadable).cloned());
        out.extend(costs.iter().filter_map(Entry::unreadable).cloned());
        Ok(out)
    }
}

fn message_entry(index: usize, value: &hydrate::Value) -> Entry<MessageView> {
    match parse::message(value) {
        Ok(m) => Entry::Read(m),
        Err(flaw) => Entry::Unreadable(flaw.at(Place::Message { index })),
    }
}

fn version_entry(key: &str, value: &hydrate::Value) -> Entry<VersionView> {
    match parse::version(key, value) {
        Ok(v) => Entry::Read(v),
        Err(flaw) => Entry::Unreadable(flaw.at(Place::Version {
            key: key.to_owned(),
        })),
    }
}

fn entry_key(e: &Entry<VersionView>) -> &str {
    match e {
        Entry::Read(v) => &v.id,
        Entry::Unreadable(u) => match &u.place {
            Place::Version { key } => key,
            _ => "",
        },
    }
}
