//! What the REST API reads without loading documents: a **listing** per
//! document (title, cover, active version, message count, times) and the
//! user's **cost events**, queryable by UTC time range and model.
//!
//! Both are derived from the asset document after every server write
//! (`crate::projection::after_write`), never written by hand: the document
//! stays the truth, and a projection that missed a write catches up on the
//! next one. Rules every backend keeps:
//!
//! - **Newer wins.** A listing carries the log position (`useq`) it was
//!   derived at; a put with an older or equal `useq` changes nothing, so two
//!   writers finishing out of order never regress it.
//! - **Events are recorded once.** A cost event is keyed by (user,
//!   document, event id); putting it again keeps the first copy.
//! - **Scoped by owner.** Every call takes the authenticated user; another
//!   user's listing or events behave as absent, and a put for a document
//!   listed under another user changes nothing.
//!
//! What this module does *not* know: Automerge, HTTP, money formatting.

use async_trait::async_trait;
use core_sync::DocId;
use core_sync::model::{BlobRef, Millis};

use super::StorageError;

/// Most models one cost query may filter on (a backend may refuse more
/// with `Invalid`).
pub const MAX_MODELS: usize = 64;

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// One document as the asset list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub doc_id: DocId,
    pub title: String,
    /// The active version's thumbnail (or, lacking one, its image).
    pub cover: Option<BlobRef>,
    pub active_version_id: Option<String>,
    pub message_count: u64,
    /// Cost events in the document when the listing was derived (to skip
    /// re-recording them when none were added).
    pub cost_event_count: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The document's log position this listing was derived at.
    pub useq: u64,
    /// Set while the asset is in the trash.
    pub trash: Option<ListingTrash>,
}

/// A listed asset in the trash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingTrash {
    /// When it was moved to the trash (the deleting device's clock).
    pub deleted_at: Millis,
    /// From when its retention period counts
    /// (`model::Deletion::retained_since`).
    pub retained_since: Millis,
}

/// Where a page of the asset list ends: the last listing it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingCursor {
    pub updated_at: Millis,
    pub doc_id: DocId,
}

impl From<&Listing> for ListingCursor {
    fn from(l: &Listing) -> Self {
        ListingCursor {
            updated_at: l.updated_at,
            doc_id: l.doc_id.clone(),
        }
    }
}

/// One provider call's cost, as recorded in a document.
#[derive(Debug, Clone, PartialEq)]
pub struct CostEvent {
    pub event_id: String,
    pub doc_id: DocId,
    pub ts: Millis,
    pub provider: String,
    pub model: String,
    pub units: f64,
    pub unit: String,
    /// Billionths of a US dollar.
    pub cost_nano_usd: i64,
    pub message_id: Option<String>,
}

/// A cost event with its asset's current title (a CSV row).
#[derive(Debug, Clone, PartialEq)]
pub struct CostEventRow {
    pub event: CostEvent,
    /// Empty when the document has no listing.
    pub asset_title: String,
}

/// Which cost events: `from <= ts < to` (either open) and, when `models` is
/// not empty, only those models.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostRange {
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    pub models: Vec<String>,
}

impl CostRange {
    pub fn contains(&self, e: &CostEvent) -> bool {
        self.from.is_none_or(|f| e.ts >= f)
            && self.to.is_none_or(|t| e.ts < t)
            && (self.models.is_empty() || self.models.contains(&e.model))
    }
}

/// The events of one UTC day, provider and model, added up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CostGroup {
    /// Days since 1970-01-01 (UTC; floor, so times before 1970 fall on
    /// negative days).
    pub day: i64,
    pub provider: String,
    pub model: String,
    /// Exact sum; it cannot overflow (i128).
    pub nano_usd: i128,
    pub events: u64,
}

/// Where a page of cost events ends: the last event it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostCursor {
    pub ts: Millis,
    pub doc_id: DocId,
    pub event_id: String,
}

impl From<&CostEvent> for CostCursor {
    fn from(e: &CostEvent) -> Self {
        CostCursor {
            ts: e.ts,
            doc_id: e.doc_id.clone(),
            event_id: e.event_id.clone(),
        }
    }
}

/// The UTC day (days since the epoch) `ts` falls on.
pub fn utc_day(ts: Millis) -> i64 {
    ts.div_euclid(DAY_MS)
}

/// The asset list's projection.
#[async_trait]
pub trait ListingStore: Send + Sync {
    /// Stores `listing` for `user`, unless a listing derived at the same or
    /// a later `useq` is stored, or the document is listed under another
    /// user (then nothing changes).
    async fn put_listing(&self, user: &str, listing: &Listing) -> Result<(), StorageError>;

    /// The listing of `doc`, `None` if absent or another user's.
    async fn get_listing(&self, user: &str, doc: &DocId) -> Result<Option<Listing>, StorageError>;

    /// The user's listings in the trash (`trashed`) or out of it, newest
    /// first (`updated_at` descending, then `doc_id` ascending), strictly
    /// after `after`, at most `limit`.
    async fn list_assets(
        &self,
        user: &str,
        trashed: bool,
        after: Option<&ListingCursor>,
        limit: usize,
    ) -> Result<Vec<Listing>, StorageError>;
}

/// The user's cost events.
#[async_trait]
pub trait CostStore: Send + Sync {
    /// Records `events` of `user`'s document `doc` (each event's `doc_id`
    /// must be `doc`, else `Invalid` and nothing is stored). An event
    /// already recorded keeps its first copy. All or nothing.
    async fn put_cost_events(
        &self,
        user: &str,
        doc: &DocId,
        events: &[CostEvent],
    ) -> Result<(), StorageError>;

    /// The events in `range` added up per UTC day, provider and model,
    /// ordered by those keys.
    async fn cost_groups(
        &self,
        user: &str,
        range: &CostRange,
    ) -> Result<Vec<CostGroup>, StorageError>;

    /// The events in `range` ordered by (`ts`, `doc_id`, `event_id`),
    /// strictly after `after`, at most `limit`, each with its asset's title.
    async fn cost_events(
        &self,
        user: &str,
        range: &CostRange,
        after: Option<&CostCursor>,
        limit: usize,
    ) -> Result<Vec<CostEventRow>, StorageError>;
}

/// Both projections: what a backend's [`super::DocStore::projections`]
/// hands out.
pub trait ProjectionStore: ListingStore + CostStore {}

impl<T: ListingStore + CostStore> ProjectionStore for T {}
