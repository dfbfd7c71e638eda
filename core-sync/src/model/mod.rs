//! The asset document: a typed API over one Automerge document per asset.
//!
//! **Invariant:** this module performs no IO and reads no clock. Callers pass
//! the time in; the store (`crate::store`) makes changes durable.
//!
//! Every write is one Automerge change: it either commits whole or, on error,
//! is rolled back and leaves the document as it was. Appending a message costs
//! the same whatever the timeline's length: the message is written with one
//! batched insert at the end of the list, and lookups by message id use an
//! index that is filled lazily from the end of the timeline (where updates
//! happen) and kept across appends.

pub mod chunks;
mod error;
mod parse;
mod persist;
mod read;
pub mod schema;
mod touched;
mod trash;
mod types;
pub mod weight;

use std::collections::HashMap;
use std::ops::Range;

use automerge::hydrate::Value as H;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, Value};

pub use error::{ModelError, ModelResult};
pub use persist::{ChangeInfo, check_chunks};
pub use read::Reader;
pub use schema::SCHEMA_VERSION;
pub use touched::Touched;
pub use trash::{MAX_TITLE_CHARS, TRASH_CHANGE, blob_refs};
pub use types::*;

use crate::ids::new_id;
use schema::*;

/// One asset: its Automerge document plus caches that make common writes
/// cheap. Caches are derived state and are dropped whenever remote changes
/// arrive.
pub struct AssetDoc {
    doc: AutoCommit,
    /// Heads whose changes are durable in the local store.
    saved_heads: Vec<ChangeHash>,
    messages_obj: Option<ObjId>,
    index: MessageIndex,
    summary: Option<AssetSummary>,
}

/// Message id -> message object and its position, filled backwards from the
/// end of the list.
#[derive(Default)]
struct MessageIndex {
    ids: HashMap<String, (ObjId, usize)>,
    /// Positions `lo..len` of the list are indexed.
    lo: usize,
    len: usize,
}

impl AssetDoc {
    /// A new, empty asset. The first change creates every container, so no
    /// two devices ever create the same container concurrently.
    pub fn create(title: &str, now: Millis) -> Self {
        let mut doc = AutoCommit::new().with_actor(crate::ids::new_actor_id());
        let root: HashMap<&str, H> = HashMap::from([
            (SCHEMA, H::scalar(SCHEMA_VERSION as i64)),
            (TITLE, H::scalar(title)),
            (CREATED_AT, H::scalar(now)),
            (UPDATED_AT, H::scalar(now)),
            (VERSIONS, H::map()),
            (MESSAGES, H::list()),
            (COST_EVENTS, H::list()),
        ]);
        doc.init_root_from_hydrate(&root.into())
            .expect("initialising an empty document cannot fail");
        doc.commit();
        Self::wrap(doc)
    }

    fn wrap(doc: AutoCommit) -> Self {
        AssetDoc {
            doc,
            saved_heads: Vec::new(),
            messages_obj: None,
            index: MessageIndex::default(),
            summary: None,
        }
    }

    // ------------------------------------------------------------ plumbing

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The underlying Automerge document, for sync and tests.
    pub fn automerge(&self) -> &AutoCommit {
        &self.doc
    }

    fn invalidate(&mut self) {
        self.messages_obj = None;
        self.index = MessageIndex::default();
        self.summary = None;
    }

    fn messages_obj(&mut self) -> ModelResult<ObjId> {
        if let Some(obj) = &self.messages_obj {
            return Ok(obj.clone());
        }
        let obj = Reader::new(&self.doc, None)
            .object(&ROOT, MESSAGES, ObjType::List)?
            .ok_or_else(|| ModelError::Malformed("no messages list".into()))?;
        self.messages_obj = Some(obj.clone());
        Ok(obj)
    }

    /// Runs `f` as one change: committed on success, rolled back on error.
    fn change<T>(&mut self, f: impl FnOnce(&mut Self) -> ModelResult<T>) -> ModelResult<T> {
        match f(self) {
            Ok(v) => {
                self.doc.commit();
                Ok(v)
            }
            Err(e) => {
                self.doc.rollback();
                self.invalidate();
                Err(e)
            }
        }
    }

    fn touch(&mut self, now: Millis) -> ModelResult<()> {
        self.doc.put(ROOT, UPDATED_AT, now)?;
        if let Some(s) = &mut self.summary {
            s.updated_at = now;
            if s.deleted.is_some() {
                // An edit of an asset in the trash: what the trash says
                // about it is worked out again on the next look.
                self.summary = None;
            }
        }
        Ok(())
    }

    // --------------------------------------------------------------- writes

    /// Renames the asset. A title another client wrote as collaborative
    /// text is edited in place (so a concurrent edit of its characters
    /// merges); a title that is neither text nor a string is refused, not
    /// overwritten.
    pub fn set_title(&mut self, title: &str, now: Millis) -> ModelResult<()> {
        let text = match self.doc.get(ROOT, TITLE)? {
            None => None,
            Some((Value::Object(ObjType::Text), text)) => Some(text),
            Some((Value::Scalar(s), _)) if s.is_str() => None,
            Some(_) => {
                let found = self.reader().describe(&ROOT, TITLE)?;
                return Err(ModelError::Unreadable(Box::new(Unreadable {
                    place: Place::Asset,
                    id: None,
                    reason: format!("{TITLE} is {found}, expected a string"),
                })));
            }
        };
        self.change(|this| {
            match text {
                Some(text) => this.doc.update_text(&text, title)?,
                None => this.doc.put(ROOT, TITLE, title)?,
            }
            this.touch(now)?;
            if let Some(s) = &mut this.summary {
                s.title = title.to_owned();
            }
            Ok(())
        })
    }

    /// Appends a timeline entry and returns its id.
    pub fn append_message(&mut self, msg: NewMessage, now: Millis) -> ModelResult<String> {
        self.change(|this| this.insert_message(msg, now))
    }

    /// Writes a message at the end of the timeline inside the open change.
    fn insert_message(&mut self, msg: NewMessage, now: Millis) -> ModelResult<String> {
        let kind = msg
            .kind
            .ok_or_else(|| ModelError::Invalid("a message needs a kind".into()))?;
        if kind == MessageKind::ToolRequest && msg.tool.is_none() {
            return Err(ModelError::Invalid("a tool request needs a tool".into()));
        }
        let params = match &msg.params {
            None => None,
            Some(p @ serde_json::Value::Object(_)) => Some(p.to_string()),
            Some(_) => return Err(ModelError::Invalid("params must be a JSON object".into())),
        };
        let id = new_id();
        let mut fields: HashMap<&str, H> = HashMap::with_capacity(16);
        fields.insert(ID, H::scalar(id.as_str()));
        fields.insert(KIND, H::scalar(kind.as_str()));
        for (key, value) in [
            (TEXT, &msg.text),
            (TOOL, &msg.tool),
            (PROVIDER, &msg.provider),
            (MODEL, &msg.model),
            (PARAMS, &params),
        ] {
            if let Some(v) = value {
                fields.insert(key, H::scalar(v.as_str()));
            }
        }
        if let Some(status) = msg.status {
            fields.insert(STATUS, H::scalar(status.as_str()));
        }
        let inputs: Vec<H> = msg
            .input_version_ids
            .iter()
            .map(|v| H::scalar(v.as_str()))
            .collect();
        fields.insert(INPUT_VERSION_IDS, inputs.into());
        fields.insert(OUTPUT_VERSION_IDS, H::list());
        fields.insert(CREATED_AT, H::scalar(now));
        fields.insert(UPDATED_AT, H::scalar(now));
        let value: H = fields.into();

        let list = self.messages_obj()?;
        let len = self.doc.length(&list);
        let obj = self.doc.batch_create_object(&list, len, &value, true)?;
        self.touch(now)?;
        if self.index.len == len {
            self.index.ids.insert(id.clone(), (obj, len));
            self.index.len = len + 1;
        }
        if let Some(s) = &mut self.summary {
            s.message_count = len as u64 + 1;
        }
        Ok(id)
    }

    /// Finds a message object (and its position) by id, extending the index
    /// backwards from the end of the timeline only as far as needed. Ids
    /// written as text by another client are found too.
    fn find_message(&mut self, id: &str) -> ModelResult<(ObjId, usize)> {
        let list = self.messages_obj()?;
        let len = self.doc.length(&list);
        if self.index.len != len {
            self.index = MessageIndex {
                ids: HashMap::new(),
                lo: len,
                len,
            };
        }
        if let Some(found) = self.index.ids.get(id) {
            return Ok(found.clone());
        }
        while self.index.lo > 0 {
            self.index.lo -= 1;
            let at = self.index.lo;
            let Some((Value::Object(ObjType::Map), obj)) = self.doc.get(&list, at)? else {
                continue;
            };
            let Some(found) = Reader::new(&self.doc, None).string(&obj, ID)? else {
                continue;
            };
            let hit = found == id;
            self.index.ids.insert(found, (obj.clone(), at));
            if hit {
                return Ok((obj, at));
            }
        }
        Err(ModelError::UnknownMessage(id.to_owned()))
    }

    /// The message `id` as it reads; an unreadable one is an error naming
    /// why, so no write builds on what it cannot read.
    pub fn message(&mut self, id: &str) -> ModelResult<MessageView> {
        let (obj, index) = self.find_message(id)?;
        match self.reader().message_obj(&obj, index)? {
            Entry::Read(m) => Ok(m),
            Entry::Unreadable(u) => Err(ModelError::Unreadable(Box::new(u))),
        }
    }

    /// Updates a message's lifecycle fields. A finished message (succeeded,
    /// failed, canceled) cannot change status again.
    pub fn update_message(
        &mut self,
        id: &str,
        update: MessageUpdate,
        now: Millis,
    ) -> ModelResult<()> {
        if let Some(p) = update.progress
            && !(0.0..=1.0).contains(&p)
        {
            return Err(ModelError::Invalid(format!(
                "progress {p} is outside 0..=1"
            )));
        }
        let (obj, _) = self.find_message(id)?;
        let current = self.message(id)?.status;
        if let Some(next) = update.status
            && let Some(cur) = current
            && cur.is_terminal()
            && cur != next
        {
            return Err(ModelError::Invalid(format!(
                "message {id} is already {}; it cannot become {}",
                cur.as_str(),
                next.as_str()
            )));
        }
        for v in &update.add_output_version_ids {
            self.version_exists(v)?;
        }
        self.change(|this| {
            if let Some(s) = update.status {
                this.doc.put(&obj, STATUS, s.as_str())?;
            }
            if let Some(p) = update.progress {
                this.doc.put(&obj, PROGRESS, p)?;
            }
            if let Some(e) = &update.error {
                let value: H = HashMap::from([
                    (CODE, H::scalar(e.code.as_str())),
                    (MESSAGE, H::scalar(e.message.as_str())),
                ])
                .into();
                this.doc.batch_create_object(&obj, ERROR, &value, false)?;
            }
            if let Some(op) = &update.operation_id {
                this.doc.put(&obj, OPERATION_ID, op.as_str())?;
            }
            if !update.add_output_version_ids.is_empty() {
                let outputs = match this.doc.get(&obj, OUTPUT_VERSION_IDS)? {
                    Some((Value::Object(ObjType::List), l)) => l,
                    _ => this
                        .doc
                        .put_object(&obj, OUTPUT_VERSION_IDS, ObjType::List)?,
                };
                for v in &update.add_output_version_ids {
                    let at = this.doc.length(&outputs);
                    this.doc.insert(&outputs, at, v.as_str())?;
                }
            }
            this.doc.put(&obj, UPDATED_AT, now)?;
            this.touch(now)
        })
    }

    /// Whether version `id` is there, readable or not: referring to a
    /// version (as a parent, an output) changes nothing in it.
    fn version_exists(&self, id: &str) -> ModelResult<()> {
        match self.reader().version_entry(id)? {
            Some(_) => Ok(()),
            None => Err(ModelError::UnknownVersion(id.to_owned())),
        }
    }

    /// Adds an image version and makes it the active one. Returns its id.
    pub fn add_version(&mut self, v: NewVersion, now: Millis) -> ModelResult<String> {
        for b in std::iter::once(&v.blob).chain(&v.thumbnail) {
            if !crate::blob::is_valid_sha256(&b.sha256) {
                return Err(ModelError::Invalid(format!("bad sha256 {:?}", b.sha256)));
            }
            if b.bytes > i64::MAX as u64 {
                return Err(ModelError::Invalid(format!(
                    "blob size {} is not a real size",
                    b.bytes
                )));
            }
        }
        if let Some(p) = &v.parent_version_id {
            self.version_exists(p)?;
        }
        if let Some(m) = &v.created_by_message_id {
            self.find_message(m)?;
        }
        let versions = Reader::new(&self.doc, None)
            .object(&ROOT, VERSIONS, ObjType::Map)?
            .ok_or_else(|| ModelError::Malformed("no versions map".into()))?;
        let id = new_id();
        let mut fields: HashMap<&str, H> = HashMap::from([
            (ID, H::scalar(id.as_str())),
            (BLOB, blob_value(&v.blob)),
            (CREATED_AT, H::scalar(now)),
        ]);
        if let Some(t) = &v.thumbnail {
            fields.insert(THUMBNAIL, blob_value(t));
        }
        if let Some(p) = &v.parent_version_id {
            fields.insert(PARENT_VERSION_ID, H::scalar(p.as_str()));
        }
        if let Some(m) = &v.created_by_message_id {
            fields.insert(CREATED_BY_MESSAGE_ID, H::scalar(m.as_str()));
        }
        let value: H = fields.into();
        self.change(|this| {
            this.doc
                .batch_create_object(&versions, id.as_str(), &value, false)?;
            this.doc.put(ROOT, ACTIVE_VERSION_ID, id.as_str())?;
            this.touch(now)?;
            if let Some(s) = &mut this.summary {
                s.active_version_id = Some(id.clone());
                s.cover = Some(v.thumbnail.clone().unwrap_or_else(|| v.blob.clone()));
            }
            Ok(id.clone())
        })
    }

    /// Rolls back (or forward) to `version_id`: a new change that sets the
    /// active version and records a system message; history is kept.
    /// Concurrent rollbacks on two devices both stay in the timeline, and the
    /// active version resolves to the same one everywhere. Returns the
    /// system message's id.
    pub fn set_active_version(&mut self, version_id: &str, now: Millis) -> ModelResult<String> {
        let version = Reader::new(&self.doc, None)
            .version(version_id)?
            .ok_or_else(|| ModelError::UnknownVersion(version_id.to_owned()))?;
        self.change(|this| {
            let id = this.insert_message(
                NewMessage {
                    input_version_ids: vec![version_id.to_owned()],
                    ..NewMessage::system(format!("Switched to version {}", short(version_id)))
                },
                now,
            )?;
            this.doc.put(ROOT, ACTIVE_VERSION_ID, version_id)?;
            if let Some(s) = &mut this.summary {
                s.active_version_id = Some(version_id.to_owned());
                s.cover = Some(version.thumbnail.clone().unwrap_or(version.blob.clone()));
            }
            Ok(id)
        })
    }

    /// Records what a provider call cost. Returns the event's id.
    pub fn record_cost(&mut self, ev: NewCostEvent, now: Millis) -> ModelResult<String> {
        if !ev.units.is_finite() || ev.units < 0.0 || ev.cost_nano_usd < 0 {
            return Err(ModelError::Invalid(
                "cost and units must be non-negative".into(),
            ));
        }
        let list = Reader::new(&self.doc, None)
            .cost_event_lists()?
            .into_iter()
            .next()
            .ok_or_else(|| ModelError::Malformed("no costEvents list".into()))?;
        // The winning list of `get_all` is the last; any one is read back.
        let id = new_id();
        let mut fields: HashMap<&str, H> = HashMap::from([
            (ID, H::scalar(id.as_str())),
            (TS, H::scalar(now)),
            (PROVIDER, H::scalar(ev.provider.as_str())),
            (MODEL, H::scalar(ev.model.as_str())),
            (UNITS, H::scalar(ev.units)),
            (UNIT, H::scalar(ev.unit.as_str())),
            (COST_NANO_USD, H::scalar(ev.cost_nano_usd)),
        ]);
        if let Some(m) = &ev.message_id {
            fields.insert(MESSAGE_ID, H::scalar(m.as_str()));
        }
        let value: H = fields.into();
        self.change(|this| {
            let len = this.doc.length(&list);
            this.doc.batch_create_object(&list, len, &value, true)?;
            this.touch(now)?;
            Ok(id.clone())
        })
    }

    // ---------------------------------------------------------------- reads

    /// A reader of the current state.
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.doc, None)
    }

    /// A reader of the state at `heads` (any heads from [`Self::history`]).
    pub fn reader_at<'a>(&'a self, heads: &'a [ChangeHash]) -> Reader<'a> {
        Reader::new(&self.doc, Some(heads))
    }

    /// The listing projection: cheap after the first call, as writes keep it
    /// current.
    pub fn summary(&mut self) -> ModelResult<AssetSummary> {
        if let Some(s) = &self.summary {
            return Ok(s.clone());
        }
        let mut s = self.reader().summary()?;
        self.complete_summary(&mut s)?;
        self.summary = Some(s.clone());
        Ok(s)
    }

    pub fn messages(&self) -> ModelResult<Vec<MessageView>> {
        self.reader().messages()
    }

    pub fn messages_range(&self, range: Range<usize>) -> ModelResult<Vec<MessageView>> {
        self.reader().messages_range(range)
    }

    /// Every timeline entry, unreadable ones in place (what a timeline shows).
    pub fn timeline(&self) -> ModelResult<Vec<Entry<MessageView>>> {
        self.reader().timeline()
    }

    /// Everything in the document that does not follow the schema.
    pub fn unreadable(&self) -> ModelResult<Vec<Unreadable>> {
        self.reader().unreadable()
    }

    pub fn versions(&self) -> ModelResult<Vec<VersionView>> {
        self.reader().versions()
    }

    pub fn cost_events(&self) -> ModelResult<Vec<CostEventView>> {
        self.reader().cost_events()
    }
}

fn blob_value(b: &BlobRef) -> H {
    HashMap::from([
        (SHA256, H::scalar(b.sha256.as_str())),
        (MIME, H::scalar(b.mime.as_str())),
        (WIDTH, H::scalar(b.width as i64)),
        (HEIGHT, H::scalar(b.height as i64)),
        (BYTES, H::scalar(b.bytes as i64)),
    ])
    .into()
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}
