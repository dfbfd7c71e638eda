//! Typed read views over an asset document, at the current state or at any
//! past heads. Reads go through [`Reader`], which picks the `*_at` variant of
//! each Automerge read when heads are given, so every view is available for
//! history at no extra code.
//!
//! Views are lenient: a timeline entry without an id or kind (something a
//! future or buggy writer could produce) is skipped rather than failing the
//! whole timeline. Structural damage (bytes that do not decode) never gets
//! here: it fails at load.

use std::ops::Range;

use automerge::hydrate::{self, Map as HMap};
use automerge::{AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use super::error::ModelResult;
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

    pub fn schema_version(&self) -> ModelResult<u64> {
        Ok(match self.scalar(&ROOT, SCHEMA)? {
            Some(s) => s
                .as_u64()
                .or_else(|| s.as_i64().map(|n| n.max(0) as u64))
                .unwrap_or(0),
            None => 0,
        })
    }

    pub fn message_count(&self) -> ModelResult<u64> {
        Ok(match self.object(&ROOT, MESSAGES, ObjType::List)? {
            Some(list) => self.length(&list) as u64,
            None => 0,
        })
    }

    pub fn summary(&self) -> ModelResult<AssetSummary> {
        let text = |s: Option<ScalarValue>| s.and_then(|s| s.as_str().map(str::to_owned));
        let int = |s: Option<ScalarValue>| s.and_then(|s| s.as_i64()).unwrap_or(0);
        let active_version_id = text(self.scalar(&ROOT, ACTIVE_VERSION_ID)?);
        let cover = match &active_version_id {
            Some(v) => self.version(v)?.map(|v| v.thumbnail.unwrap_or(v.blob)),
            None => None,
        };
        Ok(AssetSummary {
            title: text(self.scalar(&ROOT, TITLE)?).unwrap_or_default(),
            created_at: int(self.scalar(&ROOT, CREATED_AT)?),
            updated_at: int(self.scalar(&ROOT, UPDATED_AT)?),
            active_version_id,
            cover,
            message_count: self.message_count()?,
            schema_version: self.schema_version()?,
        })
    }

    /// Every timeline entry, in timeline order.
    pub fn messages(&self) -> ModelResult<Vec<MessageView>> {
        let Some(list) = self.object(&ROOT, MESSAGES, ObjType::List)? else {
            return Ok(Vec::new());
        };
        let hydrate::Value::List(items) = self.hydrate(&list)? else {
            return Ok(Vec::new());
        };
        Ok(items
            .iter()
            .filter_map(|item| message_view(&item.value))
            .collect())
    }

    /// Timeline entries `range` (clamped to the timeline); cost is
    /// proportional to the range, not the timeline, for virtualized lists.
    pub fn messages_range(&self, range: Range<usize>) -> ModelResult<Vec<MessageView>> {
        let Some(list) = self.object(&ROOT, MESSAGES, ObjType::List)? else {
            return Ok(Vec::new());
        };
        let end = range.end.min(self.length(&list));
        let mut out = Vec::with_capacity(end.saturating_sub(range.start));
        for i in range.start..end {
            if let Some((Value::Object(ObjType::Map), obj)) = self.get_index(&list, i)?
                && let Some(m) = message_view(&self.hydrate(&obj)?)
            {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// One message by its object id (see `AssetDoc`'s message index).
    pub fn message_obj(&self, obj: &ObjId) -> ModelResult<Option<MessageView>> {
        Ok(message_view(&self.hydrate(obj)?))
    }

    pub fn version(&self, id: &str) -> ModelResult<Option<VersionView>> {
        let Some(versions) = self.object(&ROOT, VERSIONS, ObjType::Map)? else {
            return Ok(None);
        };
        match self.object(&versions, id, ObjType::Map)? {
            Some(obj) => Ok(version_view(id, &self.hydrate(&obj)?)),
            None => Ok(None),
        }
    }

    /// Every version, oldest first.
    pub fn versions(&self) -> ModelResult<Vec<VersionView>> {
        let Some(versions) = self.object(&ROOT, VERSIONS, ObjType::Map)? else {
            return Ok(Vec::new());
        };
        let hydrate::Value::Map(map) = self.hydrate(&versions)? else {
            return Ok(Vec::new());
        };
        let mut out: Vec<VersionView> = map
            .iter()
            .filter_map(|(id, v)| version_view(id, &v.value))
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

    /// Every cost event, by time.
    pub fn cost_events(&self) -> ModelResult<Vec<CostEventView>> {
        let mut out = Vec::new();
        for list in self.cost_event_lists()? {
            if let hydrate::Value::List(items) = self.hydrate(&list)? {
                out.extend(items.iter().filter_map(|i| cost_view(&i.value)));
            }
        }
        out.sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }
}

// ------------------------------------------------------- hydrate -> views

fn field<'v>(map: &'v HMap, key: &str) -> Option<&'v ScalarValue> {
    match map.get(key) {
        Some(hydrate::Value::Scalar(s)) => Some(s),
        _ => None,
    }
}

fn text(map: &HMap, key: &str) -> Option<String> {
    field(map, key).and_then(|s| s.as_str()).map(str::to_owned)
}

fn int(map: &HMap, key: &str) -> Option<i64> {
    field(map, key).and_then(|s| s.as_i64())
}

fn float(map: &HMap, key: &str) -> Option<f64> {
    field(map, key).and_then(|s| s.as_f64())
}

fn strings(map: &HMap, key: &str) -> Vec<String> {
    match map.get(key) {
        Some(hydrate::Value::List(l)) => l
            .iter()
            .filter_map(|v| match &v.value {
                hydrate::Value::Scalar(s) => s.as_str().map(str::to_owned),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn sub_map<'v>(map: &'v HMap, key: &str) -> Option<&'v HMap> {
    match map.get(key) {
        Some(hydrate::Value::Map(m)) => Some(m),
        _ => None,
    }
}

fn blob_ref(map: &HMap) -> Option<BlobRef> {
    Some(BlobRef {
        sha256: text(map, SHA256)?,
        mime: text(map, MIME).unwrap_or_default(),
        width: int(map, WIDTH).unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
        height: int(map, HEIGHT).unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
        bytes: int(map, BYTES).unwrap_or(0).max(0) as u64,
    })
}

fn message_view(value: &hydrate::Value) -> Option<MessageView> {
    let hydrate::Value::Map(m) = value else {
        return None;
    };
    let created_at = int(m, CREATED_AT).unwrap_or(0);
    Some(MessageView {
        id: text(m, ID)?,
        kind: MessageKind::parse(&text(m, KIND)?)?,
        text: text(m, TEXT),
        tool: text(m, TOOL),
        provider: text(m, PROVIDER),
        model: text(m, MODEL),
        params: text(m, PARAMS).and_then(|p| serde_json::from_str(&p).ok()),
        input_version_ids: strings(m, INPUT_VERSION_IDS),
        output_version_ids: strings(m, OUTPUT_VERSION_IDS),
        status: text(m, STATUS).and_then(|s| MessageStatus::parse(&s)),
        progress: float(m, PROGRESS),
        error: sub_map(m, ERROR).map(|e| ErrorInfo {
            code: text(e, CODE).unwrap_or_default(),
            message: text(e, MESSAGE).unwrap_or_default(),
        }),
        operation_id: text(m, OPERATION_ID),
        created_at,
        updated_at: int(m, UPDATED_AT).unwrap_or(created_at),
    })
}

fn version_view(id: &str, value: &hydrate::Value) -> Option<VersionView> {
    let hydrate::Value::Map(m) = value else {
        return None;
    };
    Some(VersionView {
        id: id.to_owned(),
        parent_version_id: text(m, PARENT_VERSION_ID),
        created_by_message_id: text(m, CREATED_BY_MESSAGE_ID),
        blob: blob_ref(sub_map(m, BLOB)?)?,
        thumbnail: sub_map(m, THUMBNAIL).and_then(blob_ref),
        created_at: int(m, CREATED_AT).unwrap_or(0),
    })
}

fn cost_view(value: &hydrate::Value) -> Option<CostEventView> {
    let hydrate::Value::Map(m) = value else {
        return None;
    };
    Some(CostEventView {
        id: text(m, ID)?,
        ts: int(m, TS).unwrap_or(0),
        provider: text(m, PROVIDER).unwrap_or_default(),
        model: text(m, MODEL).unwrap_or_default(),
        units: float(m, UNITS).unwrap_or(0.0),
        unit: text(m, UNIT).unwrap_or_default(),
        cost_nano_usd: int(m, COST_NANO_USD).unwrap_or(0),
        message_id: text(m, MESSAGE_ID),
    })
}
