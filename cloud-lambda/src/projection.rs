//! Keeps the REST API's projections (`storage::projection`: the listing of
//! each document and the user's cost events) and the purge's facts
//! (`storage::purge`: blobs named, trash state) in step with the documents.
//!
//! [`after_write`] is the one function that derives both from a document's
//! state; every server write calls it right after its append succeeded,
//! with the `useq` the append got: `write::DocWriter::after_append`, in the
//! one write path every push, job write and REST write takes. It never fails
//! the write it follows: the document is already durable, so a projection
//! error is logged and counted, and the next write to the document repairs
//! the listing and records any events missed (events are keyed by id, so
//! recording one again is harmless).

use std::sync::Arc;

use automerge::AutoCommit;
use core_sync::DocId;
use core_sync::model::{AssetDoc, CostEventView, ModelError, Reader};

use crate::storage::embedded::EmbeddedStore;
use crate::storage::projection::{CostEvent, Listing, ListingTrash};
use crate::storage::{DocStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("the document does not read: {0}")]
    Model(#[from] ModelError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a document's state says for the projections.
struct Derived {
    listing: Listing,
    /// Every readable cost event, when the document has any.
    events: Vec<CostEvent>,
    /// Every blob the document names (for the purge's reference counts).
    blobs: Vec<String>,
    /// Since when retention counts, when the asset is in the trash.
    trashed_since: Option<core_sync::model::Millis>,
}

/// Reads listing and cost events out of `doc` (no IO).
fn derive(doc_id: &DocId, useq: u64, doc: &AutoCommit) -> Result<Derived, ModelError> {
    let reader = Reader::new(doc, None);
    let summary = reader.summary()?;
    let mut cost_event_count = 0u64;
    for list in reader.cost_event_lists()? {
        cost_event_count += automerge::ReadDoc::length(doc, &list) as u64;
    }
    let events = if cost_event_count > 0 {
        reader
            .cost_events()?
            .into_iter()
            .map(|e| cost_event(doc_id, e))
            .collect()
    } else {
        Vec::new()
    };
    let blobs = core_sync::model::blob_refs(doc)?.into_iter().collect();
    let trashed_since = summary.deleted.as_ref().map(|d| d.retained_since());
    Ok(Derived {
        blobs,
        trashed_since,
        listing: Listing {
            doc_id: doc_id.clone(),
            title: summary.title,
            cover: summary.cover,
            active_version_id: summary.active_version_id,
            message_count: summary.message_count,
            cost_event_count,
            created_at: summary.created_at,
            updated_at: summary.updated_at,
            useq,
            trash: summary.deleted.as_ref().map(|d| ListingTrash {
                deleted_at: d.at,
                retained_since: d.retained_since(),
            }),
        },
        events,
    })
}

fn cost_event(doc_id: &DocId, e: CostEventView) -> CostEvent {
    CostEvent {
        event_id: e.id,
        doc_id: doc_id.clone(),
        ts: e.ts,
        provider: e.provider,
        model: e.model,
        units: e.units,
        unit: e.unit,
        cost_nano_usd: e.cost_nano_usd,
        message_id: e.message_id,
    }
}

/// Updates `doc_id`'s listing and records its cost events, from `doc` as it
/// stands after the append that got `useq`. Errors are logged, not
/// returned (see the module docs).
pub async fn after_write(
    store: &dyn DocStore,
    user: &str,
    doc_id: &DocId,
    useq: u64,
    doc: &AutoCommit,
) {
    if let Err(e) = update(store, user, doc_id, useq, doc).await {
        crate::metrics::global().projection_failed();
        tracing::error!(doc = %doc_id, useq, error = %e, "asset listing or cost events not updated");
    }
}

async fn update(
    store: &dyn DocStore,
    user: &str,
    doc_id: &DocId,
    useq: u64,
    doc: &AutoCommit,
) -> Result<(), ProjectionError> {
    let derived = derive(doc_id, useq, doc)?;
    let projections = store.projections();
    // Events first: a listing that says they are counted must not come
    // before them.
    if !derived.events.is_empty() {
        let recorded = projections
            .get_listing(user, doc_id)
            .await?
            .map(|l| l.cost_event_count);
        if recorded != Some(derived.listing.cost_event_count) {
            projections
                .put_cost_events(user, doc_id, &derived.events)
                .await?;
        }
    }
    projections.put_listing(user, &derived.listing).await?;
    if let Some(purges) = store.purges() {
        purges
            .put_purge_facts(user, doc_id, useq, &derived.blobs, derived.trashed_since)
            .await?;
    }
    Ok(())
}

/// Derives listings (and cost events) for documents the embedded store
/// holds without a current one: documents written before the projections
/// existed, or whose last append's projection a crash cut off. Returns how
/// many it listed. Run in the background at start-up.
pub async fn backfill(store: Arc<EmbeddedStore>) -> Result<usize, ProjectionError> {
    let mut listed = 0;
    let mut failed = std::collections::HashSet::new();
    loop {
        let batch = store.unlisted_docs(failed.len() + 100).await?;
        let todo: Vec<_> = batch
            .into_iter()
            .filter(|(_, d)| !failed.contains(d))
            .collect();
        if todo.is_empty() {
            return Ok(listed);
        }
        for (user, doc_id) in todo {
            let Some(head) = store.head(&user, &doc_id).await? else {
                failed.insert(doc_id);
                continue;
            };
            let chunks = store.read_all(&user, &doc_id).await?;
            match AssetDoc::load_chunks(chunks.iter().map(|c| c.bytes.as_slice())) {
                Ok(doc) => {
                    match update(
                        store.as_ref(),
                        &user,
                        &doc_id,
                        head.last_useq,
                        doc.automerge(),
                    )
                    .await
                    {
                        Ok(()) => listed += 1,
                        Err(e) => {
                            tracing::warn!(doc = %doc_id, error = %e, "cannot list document");
                            failed.insert(doc_id);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(doc = %doc_id, error = %e, "cannot list document");
                    failed.insert(doc_id);
                }
            }
        }
    }
}
