//! `PurgeStore` on DynamoDB (tables `purge_facts`, `blob_refs`,
//! `blob_deletions`; see `aws-schema.json`) and the purge's steps
//! (`purge_steps.rs`).
//!
//! - **Facts** are one `facts` item per document (owner, the `useq` they
//!   were derived at, the trash state, a digest of the blobs recorded) and
//!   one `blob#{sha256}` item per blob the document names, mirrored in
//!   `blob_refs` under the user (`{sha256}#{docId}`), where "does any
//!   document of this user name the blob" is one strongly consistent
//!   query. A put is one conditional `UpdateItem` when the document names
//!   no new blob (the common case, so a push costs one request more); a
//!   new blob's two items are written first, each transaction checking
//!   that no purge has begun, and only then do the facts move, so facts
//!   never claim a blob whose reference is missing.
//! - **Due documents** come from the sparse `trash` index (eventually
//!   consistent); the purge itself is conditional on the facts item.
//! - **The blob queue** is `blob_deletions`, read by a (strongly
//!   consistent) scan: it is empty but for a run's work.
//! - **Stale facts** are found by scanning `docs` page by page and reading
//!   the facts of each page's documents: one pass over the table per run.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use core_sync::DocId;
use core_sync::blob::sha256_hex;
use core_sync::model::Millis;

use super::errors::{Transacted, build_error, sdk_error, transact};
use super::items::{Item, get_n, get_s, n, opt_n, opt_s, s, useq as nu};
use super::schema::attr::*;
use super::{AwsStore, StoreInner};
use crate::storage::purge::{PurgeStore, QueuedBlob, StalePage, TrashEntry};
use crate::storage::{StorageError, validate_sha256, validate_user};

/// The sort key of a document's facts item.
pub(super) const FACTS: &str = "facts";
/// `trash_state` values.
pub(super) const IN_TRASH: &str = "trash";
pub(super) const PURGING: &str = "purging";
/// Blob items per transaction (two actions each, plus the check).
const BLOBS_PER_TRANSACTION: usize = 49;
/// Attempts of a put that keeps meeting other writers.
const PUT_ATTEMPTS: usize = 8;

/// The sort key of a document's item for blob `sha256`.
pub(super) fn blob_part(sha256: &str) -> String {
    format!("blob#{sha256}")
}

/// The `blob_refs` sort key of `doc` naming `sha256`.
pub(super) fn ref_key(sha256: &str, doc: &DocId) -> String {
    format!("{sha256}#{doc}")
}

/// The key of a document's facts item.
pub(super) fn facts_key(doc: &DocId) -> Item {
    Item::from([
        (DOC_ID.to_owned(), s(doc.as_str())),
        (PART.to_owned(), s(FACTS)),
    ])
}

/// One name for a set of blobs, whatever their order.
fn digest(blobs: &BTreeSet<&str>) -> String {
    let joined: Vec<&str> = blobs.iter().copied().collect();
    sha256_hex(joined.join(",").as_bytes())
}

pub(super) fn parse_doc(item: &Item) -> Result<DocId, StorageError> {
    get_s(item, DOC_ID)?
        .parse()
        .map_err(|e| StorageError::Backend(format!("stored doc id: {e}")))
}

/// What a conditional facts update found when it lost.
enum FactsUpdate {
    Done,
    /// Its condition failed; the item as it was (`None`: absent).
    Refused(Option<Item>),
}

impl StoreInner {
    /// Moves `doc`'s facts to `useq` if they belong to `user`, are older,
    /// no purge has begun and (with `digest`) the recorded blobs are
    /// these.
    async fn update_facts(
        &self,
        user: &str,
        doc: &DocId,
        useq: u64,
        trashed_since: Option<Millis>,
        digest: &str,
        require_digest: bool,
    ) -> Result<FactsUpdate, StorageError> {
        let mut condition = "#user = :user AND #useq < :useq AND attribute_not_exists(#purged)";
        let with_digest;
        if require_digest {
            with_digest = format!("{condition} AND #digest = :digest");
            condition = &with_digest;
        }
        let mut update = self
            .ddb
            .update_item()
            .table_name(&self.names.purge_facts)
            .set_key(Some(facts_key(doc)))
            .condition_expression(condition)
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#useq", USEQ)
            .expression_attribute_names("#purged", PURGED)
            .expression_attribute_names("#digest", BLOBS_DIGEST)
            .expression_attribute_names("#since", TRASHED_SINCE)
            .expression_attribute_names("#state", TRASH_STATE)
            .expression_attribute_values(":user", s(user))
            .expression_attribute_values(":useq", nu(useq))
            .expression_attribute_values(":digest", s(digest))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        update = match trashed_since {
            Some(t) => update
                .update_expression(
                    "SET #useq = :useq, #digest = :digest, #since = :since, #state = :trash",
                )
                .expression_attribute_values(":since", n(t))
                .expression_attribute_values(":trash", s(IN_TRASH)),
            None => update
                .update_expression("SET #useq = :useq, #digest = :digest REMOVE #since, #state"),
        };
        match update.send().await {
            Ok(_) => Ok(FactsUpdate::Done),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                    Ok(FactsUpdate::Refused(refused.item().cloned()))
                }
                _ => Err(sdk_error(&format!("recording the purge facts of {doc}"), e)),
            },
        }
    }

    /// The blobs whose items `doc` has.
    pub(super) async fn recorded_blobs(&self, doc: &DocId) -> Result<Vec<String>, StorageError> {
        let query = self
            .ddb
            .query()
            .table_name(&self.names.purge_facts)
            .consistent_read(true)
            .key_condition_expression("#doc = :doc AND begins_with(#part, :blob)")
            .projection_expression("#part")
            .expression_attribute_names("#doc", DOC_ID)
            .expression_attribute_names("#part", PART)
            .expression_attribute_values(":doc", s(doc.as_str()))
            .expression_attribute_values(":blob", s(blob_part("")));
        let items = self
            .query(
                query,
                None,
                &format!("reading the blobs document {doc} names"),
            )
            .await?;
        items
            .iter()
            .map(|i| {
                let part = get_s(i, PART)?;
                Ok(part.strip_prefix(&blob_part("")).unwrap_or(part).to_owned())
            })
            .collect()
    }

    /// Writes the two items of each blob in `missing` (unless a purge of
    /// `doc` began: then `false`).
    async fn write_blob_refs(
        &self,
        user: &str,
        doc: &DocId,
        missing: &[&str],
    ) -> Result<bool, StorageError> {
        for chunk in missing.chunks(BLOBS_PER_TRANSACTION) {
            let check = ConditionCheck::builder()
                .table_name(&self.names.purge_facts)
                .set_key(Some(facts_key(doc)))
                .condition_expression("attribute_not_exists(#purged)")
                .expression_attribute_names("#purged", PURGED)
                .build()
                .map_err(build_error)?;
            let mut actions = vec![TransactWriteItem::builder().condition_check(check).build()];
            for sha in chunk {
                let by_doc = Put::builder()
                    .table_name(&self.names.purge_facts)
                    .item(DOC_ID, s(doc.as_str()))
                    .item(PART, s(blob_part(sha)))
                    .item(USER_ID, s(user))
                    .build()
                    .map_err(build_error)?;
                let by_user = Put::builder()
                    .table_name(&self.names.blob_refs)
                    .item(USER_ID, s(user))
                    .item(REF_KEY, s(ref_key(sha, doc)))
                    .build()
                    .map_err(build_error)?;
                actions.push(TransactWriteItem::builder().put(by_doc).build());
                actions.push(TransactWriteItem::builder().put(by_user).build());
            }
            let what = format!("recording the blobs document {doc} names");
            if let Transacted::Refused(_) = transact(&self.ddb, actions, &what).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn put_facts(
        &self,
        user: &str,
        doc: &DocId,
        useq: u64,
        blobs: &[String],
        trashed_since: Option<Millis>,
    ) -> Result<(), StorageError> {
        let set: BTreeSet<&str> = blobs.iter().map(String::as_str).collect();
        let digest = digest(&set);
        for _ in 0..PUT_ATTEMPTS {
            // The common case: no new blob, one request.
            let old = match self
                .update_facts(user, doc, useq, trashed_since, &digest, true)
                .await?
            {
                FactsUpdate::Done => return Ok(()),
                FactsUpdate::Refused(old) => old,
            };
            let Some(old) = old else {
                // The document's first facts: only its owner's, and not
                // after a purge.
                let Some(d) = self.any_doc_item(doc).await? else {
                    return Ok(());
                };
                if d.owner != user || d.purged {
                    return Ok(());
                }
                let missing: Vec<&str> = set.iter().copied().collect();
                if !self.write_blob_refs(user, doc, &missing).await? {
                    return Ok(());
                }
                let mut item = facts_key(doc);
                item.insert(USER_ID.to_owned(), s(user));
                item.insert(USEQ.to_owned(), nu(useq));
                item.insert(BLOBS_DIGEST.to_owned(), s(&digest));
                if let Some(t) = trashed_since {
                    item.insert(TRASHED_SINCE.to_owned(), n(t));
                    item.insert(TRASH_STATE.to_owned(), s(IN_TRASH));
                }
                let put = self
                    .ddb
                    .put_item()
                    .table_name(&self.names.purge_facts)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(#doc)")
                    .expression_attribute_names("#doc", DOC_ID);
                if super::errors::put_unless_there(
                    put,
                    &format!("recording the purge facts of {doc}"),
                )
                .await?
                {
                    return Ok(());
                }
                // Another writer made them meanwhile: start over.
                continue;
            };
            let stale = get_s(&old, USER_ID)? != user
                || opt_n::<u64>(&old, PURGED)?.is_some()
                || get_n::<u64>(&old, USEQ)? >= useq;
            if stale {
                return Ok(());
            }
            // New blobs: their items first, then the facts.
            let recorded: BTreeSet<String> = self.recorded_blobs(doc).await?.into_iter().collect();
            let missing: Vec<&str> = set
                .iter()
                .copied()
                .filter(|b| !recorded.contains(*b))
                .collect();
            if !self.write_blob_refs(user, doc, &missing).await? {
                return Ok(());
            }
            match self
                .update_facts(user, doc, useq, trashed_since, &digest, false)
                .await?
            {
                FactsUpdate::Done => return Ok(()),
                FactsUpdate::Refused(_) => continue,
            }
        }
        Err(StorageError::Unavailable(format!(
            "recording the purge facts of {doc}: still colliding with other writers"
        )))
    }

    async fn due_for_purge(
        &self,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<TrashEntry>, StorageError> {
        let items = self.trash_index(IN_TRASH, Some(since), Some(limit)).await?;
        items
            .iter()
            .map(|i| {
                Ok(TrashEntry {
                    user: get_s(i, USER_ID)?.to_owned(),
                    doc_id: parse_doc(i)?,
                    retained_since: get_n(i, TRASHED_SINCE)?,
                })
            })
            .collect()
    }

    /// Facts items in the `trash` index with `state`, oldest first (at
    /// most `until` and `limit`, when given).
    pub(super) async fn trash_index(
        &self,
        state: &str,
        until: Option<Millis>,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StorageError> {
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut query = self
            .ddb
            .query()
            .table_name(&self.names.purge_facts)
            .index_name(TRASH_INDEX)
            .expression_attribute_names("#state", TRASH_STATE)
            .expression_attribute_values(":state", s(state));
        query = match until {
            Some(t) => query
                .key_condition_expression("#state = :state AND #since <= :until")
                .expression_attribute_names("#since", TRASHED_SINCE)
                .expression_attribute_values(":until", n(t)),
            None => query.key_condition_expression("#state = :state"),
        };
        self.query(query, limit, "reading the trash").await
    }

    async fn stale_facts(
        &self,
        start: Option<&str>,
        limit: usize,
    ) -> Result<StalePage, StorageError> {
        let mut scan = self
            .ddb
            .scan()
            .table_name(&self.names.docs)
            .consistent_read(true)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .projection_expression("#doc, #owner, #last, #purged")
            .expression_attribute_names("#doc", DOC_ID)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#last", LAST_USEQ)
            .expression_attribute_names("#purged", PURGED);
        if let Some(start) = start {
            scan = scan.exclusive_start_key(DOC_ID, s(start));
        }
        let out = scan
            .send()
            .await
            .map_err(|e| sdk_error("looking for documents whose purge facts are behind", e))?;
        let mut live = Vec::new();
        for item in out.items() {
            if opt_n::<u64>(item, PURGED)?.is_none() {
                live.push((
                    get_s(item, OWNER)?.to_owned(),
                    parse_doc(item)?,
                    get_n::<u64>(item, LAST_USEQ)?,
                ));
            }
        }
        let facts = self
            .batch_get(
                &self.names.purge_facts,
                live.iter().map(|(_, d, _)| facts_key(d)).collect(),
                &[DOC_ID, USEQ],
                "reading purge facts",
            )
            .await?;
        let mut derived_at = std::collections::HashMap::new();
        for f in &facts {
            derived_at.insert(parse_doc(f)?, get_n::<u64>(f, USEQ)?);
        }
        let docs = live
            .into_iter()
            .filter(|(_, d, last)| derived_at.get(d).is_none_or(|u| u < last))
            .map(|(owner, d, _)| (owner, d))
            .collect();
        let next = match out.last_evaluated_key() {
            Some(key) => Some(
                opt_s(key, DOC_ID)?
                    .ok_or_else(|| StorageError::Backend("a scan key without doc_id".into()))?
                    .to_owned(),
            ),
            None => None,
        };
        Ok(StalePage { docs, next })
    }
}

#[async_trait]
impl PurgeStore for AwsStore {
    async fn put_purge_facts(
        &self,
        user: &str,
        doc: &DocId,
        useq: u64,
        blobs: &[String],
        trashed_since: Option<Millis>,
    ) -> Result<(), StorageError> {
        validate_user(user)?;
        for sha in blobs {
            validate_sha256(sha)?;
        }
        self.inner
            .put_facts(user, doc, useq, blobs, trashed_since)
            .await
    }

    async fn stale_purge_facts(
        &self,
        start: Option<&str>,
        limit: usize,
    ) -> Result<StalePage, StorageError> {
        self.inner.stale_facts(start, limit).await
    }

    async fn due_for_purge(
        &self,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<TrashEntry>, StorageError> {
        self.inner.due_for_purge(since, limit).await
    }

    async fn purge_doc(
        &self,
        user: &str,
        doc: &DocId,
        expected_last_useq: u64,
    ) -> Result<Vec<String>, StorageError> {
        self.purge_doc_stopping(user, doc, expected_last_useq, super::PurgeStop::Never)
            .await
    }

    async fn finish_purges(&self) -> Result<u64, StorageError> {
        self.inner.finish_purges().await
    }

    async fn is_purged(&self, user: &str, doc: &DocId) -> Result<bool, StorageError> {
        validate_user(user)?;
        Ok(self
            .inner
            .any_doc_item(doc)
            .await?
            .is_some_and(|d| d.owner == user && d.purged))
    }

    async fn queued_blobs(&self, limit: usize) -> Result<Vec<QueuedBlob>, StorageError> {
        let inner = &self.inner;
        let mut start = None;
        loop {
            let out = inner
                .ddb
                .scan()
                .table_name(&inner.names.blob_deletions)
                .consistent_read(true)
                .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("reading queued blob deletions", e))?;
            let mut queued = out
                .items()
                .iter()
                .map(|i| {
                    Ok(QueuedBlob {
                        user: get_s(i, USER_ID)?.to_owned(),
                        sha256: get_s(i, SHA256)?.to_owned(),
                    })
                })
                .collect::<Result<Vec<_>, StorageError>>()?;
            start = out.last_evaluated_key;
            if !queued.is_empty() || start.is_none() {
                queued.sort();
                queued.truncate(limit);
                return Ok(queued);
            }
        }
    }

    async fn blob_unreferenced(&self, user: &str, sha256: &str) -> Result<bool, StorageError> {
        validate_user(user)?;
        validate_sha256(sha256)?;
        self.inner.blob_unreferenced(user, sha256).await
    }

    async fn unqueue_blob(&self, user: &str, sha256: &str) -> Result<(), StorageError> {
        validate_user(user)?;
        self.inner.unqueue_blob(user, sha256).await
    }
}

impl StoreInner {
    pub(super) async fn blob_unreferenced(
        &self,
        user: &str,
        sha256: &str,
    ) -> Result<bool, StorageError> {
        let query = self
            .ddb
            .query()
            .table_name(&self.names.blob_refs)
            .consistent_read(true)
            .key_condition_expression("#user = :user AND begins_with(#ref, :sha)")
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#ref", REF_KEY)
            .expression_attribute_values(":user", s(user))
            .expression_attribute_values(":sha", s(format!("{sha256}#")));
        let found = self
            .query(
                query,
                Some(1),
                &format!("counting references to blob {sha256}"),
            )
            .await?;
        Ok(found.is_empty())
    }

    pub(super) async fn unqueue_blob(&self, user: &str, sha256: &str) -> Result<(), StorageError> {
        self.ddb
            .delete_item()
            .table_name(&self.names.blob_deletions)
            .key(USER_ID, s(user))
            .key(SHA256, s(sha256))
            .send()
            .await
            .map(drop)
            .map_err(|e| sdk_error(&format!("unqueueing the deletion of blob {sha256}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_items_sort_apart_from_the_facts_and_digests_ignore_order() {
        assert!(!FACTS.starts_with(&blob_part("")));
        let (a, b) = (sha256_hex(b"a"), sha256_hex(b"b"));
        let one: BTreeSet<&str> = [a.as_str(), b.as_str()].into();
        let other: BTreeSet<&str> = [b.as_str(), a.as_str()].into();
        assert_eq!(digest(&one), digest(&other));
        assert_ne!(digest(&one), digest(&BTreeSet::from([a.as_str()])));
        let doc = DocId::random();
        assert!(ref_key(&a, &doc).starts_with(&format!("{a}#")));
    }
}
