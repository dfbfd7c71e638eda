//! One document's purge on DynamoDB and S3, in steps that each fit a
//! transaction (DynamoDB's hold 100 actions; a long log holds more items):
//!
//! 1. **The mark**, one transaction and the only conditional step: the
//!    user's counter moves (the purge's feed position), the document item
//!    is marked `purged` (it reads as absent from here on, and its
//!    condition refuses every later append: owner, the caller's
//!    `last_useq`, not purged), the facts item goes from `trash` to
//!    `purging` (condition: derived at that `last_useq` and in the trash,
//!    so facts behind the log decide nothing), and the feed row moves.
//! 2. **References**, 33 blobs per transaction: each blob's two reference
//!    items go and a deletion is queued for it, together; then a queued
//!    blob another document still names is unqueued. Reference writes
//!    check the facts item in their own transaction, so none can land
//!    after the mark.
//! 3. **The log** (`BatchWriteItem`, 25 at a time), **its objects** in S3
//!    (spilled chunks, snapshots), the **listing**.
//! 4. **The facts item** loses its `purging` state last; it stays (with
//!    `purged`) so a late put of facts changes nothing.
//!
//! Every step after the mark is idempotent. A crash between steps leaves
//! a document that reads as purged and a facts item still `purging`,
//! which the next run finds in the `trash` index and finishes
//! ([`StoreInner::finish_purges`]).

use std::time::Duration;

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::types::{
    Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use core_sync::DocId;

use super::docs::DocItem;
use super::errors::{Transacted, build_error, jitter, sdk_error, transact};
use super::items::{Item, get_n, get_s, n, s, useq as nu};
use super::purge::{IN_TRASH, PURGING, blob_part, facts_key, parse_doc, ref_key};
use super::schema::attr::*;
use super::{AwsStore, PurgeStop, StoreInner};
use crate::storage::{StorageError, validate_user};

/// Blobs per reference transaction (three actions each).
const BLOBS_PER_STEP: usize = 33;
/// Attempts of the mark against a moving counter or colliding writers.
const MARK_ATTEMPTS: usize = 64;

/// The mark's actions, by position.
const USER_ACTION: usize = 0;
const DOC_ACTION: usize = 1;
const FACTS_ACTION: usize = 2;

impl StoreInner {
    /// Step 1 (see the module docs). Returns the purge's `useq`.
    async fn mark_purged(
        &self,
        user: &str,
        doc: &DocId,
        expected: u64,
    ) -> Result<u64, StorageError> {
        let mut guess = self.remembered_head(user).unwrap_or(expected).max(expected);
        let mut pause = Duration::from_millis(5);
        for _ in 0..MARK_ATTEMPTS {
            let useq = guess.checked_add(1).ok_or(StorageError::NotFound)?;
            let actions = self.mark_actions(user, doc, expected, guess, useq)?;
            let what = format!("purging document {doc}");
            let reasons = match transact(&self.ddb, actions, &what).await {
                Ok(Transacted::Done) => {
                    self.remember_head(user, useq);
                    return Ok(useq);
                }
                Ok(Transacted::Refused(reasons)) => reasons,
                Err(e) => return Err(e),
            };
            let failed =
                |i: usize| reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
            if failed(DOC_ACTION) {
                let stored = reasons[DOC_ACTION].item().map(DocItem::parse).transpose()?;
                return Err(match stored {
                    Some(d) if d.owner == user && !d.purged => StorageError::Conflict,
                    _ => StorageError::NotFound,
                });
            }
            if failed(FACTS_ACTION) {
                return Err(StorageError::Conflict);
            }
            if failed(USER_ACTION) {
                guess = match reasons[USER_ACTION].item() {
                    Some(item) => get_n(item, LAST_USEQ)?,
                    None => 0,
                };
                self.remember_head(user, guess);
                continue;
            }
            // Refused by an action without a condition: not expected.
            tokio::time::sleep(jitter(pause)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        Err(StorageError::Unavailable(format!(
            "purging document {doc}: still colliding after {MARK_ATTEMPTS} attempts"
        )))
    }

    fn mark_actions(
        &self,
        user: &str,
        doc: &DocId,
        expected: u64,
        guess: u64,
        useq: u64,
    ) -> Result<Vec<TransactWriteItem>, StorageError> {
        let all_old = ReturnValuesOnConditionCheckFailure::AllOld;
        // A user without a counter has no document either: the document's
        // condition then refuses the purge.
        let counter = self.counter_update(user, guess, useq)?;
        let document = Update::builder()
            .table_name(&self.names.docs)
            .key(DOC_ID, s(doc.as_str()))
            .update_expression(
                "SET #purged = :useq, #last = :useq, #upto = :zero REMOVE #heads, #key",
            )
            .condition_expression(
                "#owner = :user AND #last = :expected AND attribute_not_exists(#purged)",
            )
            .expression_attribute_names("#purged", PURGED)
            .expression_attribute_names("#last", LAST_USEQ)
            .expression_attribute_names("#upto", SNAPSHOT_UPTO)
            .expression_attribute_names("#heads", HEADS)
            .expression_attribute_names("#key", SNAPSHOT_KEY)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":useq", nu(useq))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":user", s(user))
            .expression_attribute_values(":expected", nu(expected))
            .return_values_on_condition_check_failure(all_old)
            .build()
            .map_err(build_error)?;
        let facts = Update::builder()
            .table_name(&self.names.purge_facts)
            .set_key(Some(facts_key(doc)))
            .update_expression("SET #state = :purging, #purged = :useq")
            .condition_expression(
                "#user = :user AND #useq = :expected AND #state = :trash \
                 AND attribute_not_exists(#purged)",
            )
            .expression_attribute_names("#state", TRASH_STATE)
            .expression_attribute_names("#purged", PURGED)
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#useq", USEQ)
            .expression_attribute_values(":purging", s(PURGING))
            .expression_attribute_values(":trash", s(IN_TRASH))
            .expression_attribute_values(":useq", nu(useq))
            .expression_attribute_values(":user", s(user))
            .expression_attribute_values(":expected", nu(expected))
            .build()
            .map_err(build_error)?;
        let mut actions = vec![
            TransactWriteItem::builder().update(counter).build(),
            TransactWriteItem::builder().update(document).build(),
            TransactWriteItem::builder().update(facts).build(),
        ];
        actions.extend(self.feed_move(user, doc, expected, useq)?);
        Ok(actions)
    }

    /// Steps 2 to 4 (see the module docs), stopping early where `stop`
    /// says. Returns the blobs queued that no document names.
    async fn finish_purge(
        &self,
        user: &str,
        doc: &DocId,
        stop: PurgeStop,
    ) -> Result<Vec<String>, StorageError> {
        let mut queued = Vec::new();
        let blobs = self.recorded_blobs(doc).await?;
        for chunk in blobs.chunks(BLOBS_PER_STEP) {
            let mut actions = Vec::with_capacity(chunk.len() * 3);
            for sha in chunk {
                let by_user = Delete::builder()
                    .table_name(&self.names.blob_refs)
                    .key(USER_ID, s(user))
                    .key(REF_KEY, s(ref_key(sha, doc)))
                    .build()
                    .map_err(build_error)?;
                let by_doc = Delete::builder()
                    .table_name(&self.names.purge_facts)
                    .key(DOC_ID, s(doc.as_str()))
                    .key(PART, s(blob_part(sha)))
                    .build()
                    .map_err(build_error)?;
                let queue = Put::builder()
                    .table_name(&self.names.blob_deletions)
                    .item(USER_ID, s(user))
                    .item(SHA256, s(sha.as_str()))
                    .build()
                    .map_err(build_error)?;
                actions.push(TransactWriteItem::builder().delete(by_user).build());
                actions.push(TransactWriteItem::builder().delete(by_doc).build());
                actions.push(TransactWriteItem::builder().put(queue).build());
            }
            let what = format!("releasing the blobs of purged document {doc}");
            if let Transacted::Refused(_) = transact(&self.ddb, actions, &what).await? {
                return Err(StorageError::Backend(format!("{what}: a condition failed")));
            }
            for sha in chunk {
                if self.blob_unreferenced(user, sha).await? {
                    queued.push(sha.clone());
                } else {
                    self.unqueue_blob(user, sha).await?;
                }
            }
        }
        if stop == PurgeStop::AfterReferences {
            return Ok(queued);
        }
        self.delete_log(doc).await?;
        self.delete_doc_objects(doc).await?;
        if stop == PurgeStop::AfterLog {
            return Ok(queued);
        }
        self.delete_listing(user, doc).await?;
        self.ddb
            .update_item()
            .table_name(&self.names.purge_facts)
            .set_key(Some(facts_key(doc)))
            .update_expression("REMOVE #state, #since, #digest")
            .condition_expression("attribute_exists(#purged)")
            .expression_attribute_names("#state", TRASH_STATE)
            .expression_attribute_names("#since", TRASHED_SINCE)
            .expression_attribute_names("#digest", BLOBS_DIGEST)
            .expression_attribute_names("#purged", PURGED)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("finishing the purge of {doc}"), e))?;
        Ok(queued)
    }

    async fn delete_listing(&self, user: &str, doc: &DocId) -> Result<(), StorageError> {
        let deleted = self
            .ddb
            .delete_item()
            .table_name(&self.names.listings)
            .key(DOC_ID, s(doc.as_str()))
            .condition_expression("#user = :user")
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_values(":user", s(user))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            // Gone already (or never listed).
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error(&format!("deleting the listing of {doc}"), e)),
        }
    }

    /// Finishes every purge the `trash` index shows `purging`.
    pub(super) async fn finish_purges(&self) -> Result<u64, StorageError> {
        let mut finished = 0;
        for item in self.trash_index(PURGING, None, None).await? {
            let (user, doc) = (get_s(&item, USER_ID)?.to_owned(), parse_doc(&item)?);
            let queued = self.finish_purge(&user, &doc, PurgeStop::Never).await?;
            tracing::info!(%doc, blobs_queued = queued.len(), "finished an interrupted purge");
            finished += 1;
        }
        Ok(finished)
    }
}

impl AwsStore {
    /// [`PurgeStore::purge_doc`](crate::storage::purge::PurgeStore::purge_doc),
    /// stopped where `stop` says, as a crash there would stop it: for
    /// tests of what readers and the next run make of a half-done purge.
    pub async fn purge_doc_stopping(
        &self,
        user: &str,
        doc: &DocId,
        expected_last_useq: u64,
        stop: PurgeStop,
    ) -> Result<Vec<String>, StorageError> {
        validate_user(user)?;
        self.inner
            .mark_purged(user, doc, expected_last_useq)
            .await?;
        if stop == PurgeStop::AfterMark {
            return Ok(Vec::new());
        }
        self.inner.finish_purge(user, doc, stop).await
    }

    /// What a purge left half-done: for each purged document, whatever of
    /// it should be gone (log entries, objects, the listing, blob
    /// references, a facts item still `purging`). Empty on a healthy
    /// deployment; a check for tests and operators (it scans tables).
    pub async fn purge_leftovers(&self) -> Result<Vec<String>, StorageError> {
        let inner = &self.inner;
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = inner
                .ddb
                .scan()
                .table_name(&inner.names.docs)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("scanning documents", e))?;
            for item in page.items() {
                let d = DocItem::parse(item)?;
                if !d.purged {
                    continue;
                }
                let doc = parse_doc(item)?;
                if inner.log_or_objects_left(&doc).await? {
                    out.push(format!(
                        "log entries or objects of a purged document: {doc}"
                    ));
                }
                if !inner.recorded_blobs(&doc).await?.is_empty() {
                    out.push(format!("blob references of a purged document: {doc}"));
                }
                let listing = inner
                    .ddb
                    .get_item()
                    .table_name(&inner.names.listings)
                    .key(DOC_ID, s(doc.as_str()))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| sdk_error("reading a listing", e))?;
                if listing.item.is_some() {
                    out.push(format!("a listing of a purged document: {doc}"));
                }
                let facts = inner
                    .ddb
                    .get_item()
                    .table_name(&inner.names.purge_facts)
                    .set_key(Some(facts_key(&doc)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| sdk_error("reading purge facts", e))?;
                if facts
                    .item
                    .as_ref()
                    .is_some_and(|f| f.contains_key(TRASH_STATE))
                {
                    out.push(format!("an unfinished purge: {doc}"));
                }
                let refs = inner.refs_naming(&d.owner, &doc).await?;
                if refs > 0 {
                    out.push(format!(
                        "{refs} blob_refs items of a purged document: {doc}"
                    ));
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}

impl StoreInner {
    /// How many of `user`'s `blob_refs` items name `doc` (a scan of the
    /// user's references; for [`AwsStore::purge_leftovers`]).
    async fn refs_naming(&self, user: &str, doc: &DocId) -> Result<usize, StorageError> {
        let query = self
            .ddb
            .query()
            .table_name(&self.names.blob_refs)
            .consistent_read(true)
            .key_condition_expression("#user = :user")
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_values(":user", s(user));
        let items = self.query(query, None, "reading blob references").await?;
        let suffix = format!("#{doc}");
        Ok(items
            .iter()
            .filter(|i| get_s(i, REF_KEY).is_ok_and(|k| k.ends_with(&suffix)))
            .count())
    }
}
