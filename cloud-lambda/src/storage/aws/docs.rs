//! `DocStore` on DynamoDB: the document item, the append transaction, the
//! feed and the user's counter. Reading and compacting a document's log
//! (and the S3 objects behind it) is in `log.rs`.

use std::time::Duration;

use async_trait::async_trait;
use automerge::ChangeHash;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use core_sync::DocId;

use super::errors::{build_error, is_transient_code, jitter, sdk_error};
use super::items::{Item, b, get_n, get_s, opt_b, opt_n, opt_s, s, useq as nu};
use super::schema::attr::*;
use super::{AwsStore, CompactStop, StoreInner};
use crate::storage::{
    Chunk, DocHead, DocStore, FeedEntry, StorageError, decode_heads, validate_user,
};

/// How often an append retries a stale counter guess or a transaction
/// that collided with another one on the same item.
const APPEND_ATTEMPTS: usize = 64;

/// The actions of an append transaction, by position.
const USER_ACTION: usize = 0;
const DOC_ACTION: usize = 1;
const LOG_ACTION: usize = 2;

/// A `docs` item.
#[derive(Debug, Clone)]
pub(super) struct DocItem {
    pub owner: String,
    pub last_useq: u64,
    pub snapshot_upto: u64,
    pub snapshot_key: Option<String>,
    pub heads: Vec<ChangeHash>,
    /// Purged (`purge.rs`): it reads as absent and refuses appends.
    pub purged: bool,
}

impl DocItem {
    pub(super) fn parse(item: &Item) -> Result<DocItem, StorageError> {
        Ok(DocItem {
            owner: get_s(item, OWNER)?.to_owned(),
            last_useq: get_n(item, LAST_USEQ)?,
            snapshot_upto: opt_n(item, SNAPSHOT_UPTO)?.unwrap_or(0),
            snapshot_key: opt_s(item, SNAPSHOT_KEY)?.map(str::to_owned),
            heads: decode_heads(opt_b(item, HEADS)?.unwrap_or_default())?,
            purged: opt_n::<u64>(item, PURGED)?.is_some(),
        })
    }
}

/// The body of a log entry: in the item, or in S3.
pub(super) enum Body<'a> {
    Inline(&'a [u8]),
    Spilled { key: String, len: usize },
}

impl StoreInner {
    /// The document's item, whoever owns it (strongly consistent).
    pub(super) async fn any_doc_item(&self, doc: &DocId) -> Result<Option<DocItem>, StorageError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.names.docs)
            .key(DOC_ID, s(doc.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("reading document {doc}"), e))?;
        out.item.as_ref().map(DocItem::parse).transpose()
    }

    /// The document's item if it belongs to `user` and is not purged.
    pub(super) async fn doc_item(
        &self,
        user: &str,
        doc: &DocId,
    ) -> Result<Option<DocItem>, StorageError> {
        Ok(self
            .any_doc_item(doc)
            .await?
            .filter(|item| item.owner == user && !item.purged))
    }

    /// Why an append expecting `expected` is refused, given the document's
    /// item as stored (`None`: absent).
    fn refusal(user: &str, expected: u64, stored: Option<&DocItem>) -> StorageError {
        match stored {
            Some(d) if d.owner != user || d.purged => StorageError::NotFound,
            Some(_) => StorageError::Conflict,
            None if expected == 0 => StorageError::Conflict,
            None => StorageError::NotFound,
        }
    }

    async fn append(
        &self,
        user: &str,
        doc: &DocId,
        expected: u64,
        bytes: &[u8],
        heads: &[ChangeHash],
    ) -> Result<u64, StorageError> {
        let body = if bytes.len() > self.spill_bytes {
            // Refuse first, so a refused append writes no object (a lost
            // race can still leave one nothing names; it is never read).
            let stored = self.any_doc_item(doc).await?;
            let fits = match &stored {
                Some(d) => d.owner == user && !d.purged && d.last_useq == expected && expected > 0,
                None => expected == 0,
            };
            if !fits {
                return Err(Self::refusal(user, expected, stored.as_ref()));
            }
            Body::Spilled {
                key: self.put_chunk_object(doc, bytes).await?,
                len: bytes.len(),
            }
        } else {
            Body::Inline(bytes)
        };
        let heads: Vec<u8> = heads.iter().flat_map(|h| h.0).collect();
        // The user's counter is at least the document's position.
        let mut guess = self.remembered_head(user).unwrap_or(expected).max(expected);
        let mut pause = Duration::from_millis(5);
        for _ in 0..APPEND_ATTEMPTS {
            // No counter reaches u64::MAX: an `expected` that high is refused.
            let Some(useq) = guess.checked_add(1) else {
                let stored = self.any_doc_item(doc).await?;
                return Err(Self::refusal(user, expected, stored.as_ref()));
            };
            let actions = self.append_actions(user, doc, expected, guess, useq, &body, &heads)?;
            let sent = self
                .ddb
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await;
            let err = match sent {
                Ok(_) => {
                    self.remember_head(user, useq);
                    return Ok(useq);
                }
                Err(e) => e,
            };
            let reasons = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    c.cancellation_reasons().to_vec()
                }
                _ => return Err(sdk_error(&format!("appending to document {doc}"), err)),
            };
            let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
            if code(DOC_ACTION) == "ConditionalCheckFailed" {
                let stored = reasons[DOC_ACTION].item().map(DocItem::parse).transpose()?;
                return Err(Self::refusal(user, expected, stored.as_ref()));
            }
            if code(USER_ACTION) == "ConditionalCheckFailed" {
                // Another writer moved the counter: its value came back.
                // (A user item with an epoch but no counter yet, as after
                // the tables were made anew under a warm process, is 0.)
                guess = match reasons[USER_ACTION].item() {
                    Some(item) => opt_n(item, LAST_USEQ)?.unwrap_or(0),
                    None => 0,
                };
                self.remember_head(user, guess);
                continue;
            }
            if code(LOG_ACTION) == "ConditionalCheckFailed" {
                return Err(StorageError::Backend(format!(
                    "document {doc}: a log entry at useq {useq} exists though the user's \
                     counter is below it (was the users table restored alone?)"
                )));
            }
            if reasons
                .iter()
                .filter_map(CancellationReason::code)
                .any(|c| c == "TransactionConflict" || is_transient_code(c))
            {
                tokio::time::sleep(jitter(pause)).await;
                pause = (pause * 2).min(Duration::from_millis(500));
                continue;
            }
            return Err(StorageError::Backend(format!(
                "appending to document {doc}: transaction cancelled: {}",
                describe(&reasons)
            )));
        }
        Err(StorageError::Unavailable(format!(
            "appending to document {doc}: still colliding after {APPEND_ATTEMPTS} attempts"
        )))
    }

    /// The move of `user`'s counter from `guess` (this process's belief;
    /// 0: no counter yet) to `useq`, for a transaction that allocates a
    /// feed position. A wrong guess fails it with the counter's value.
    pub(super) fn counter_update(
        &self,
        user: &str,
        guess: u64,
        useq: u64,
    ) -> Result<Update, StorageError> {
        let counter = Update::builder()
            .table_name(&self.names.users)
            .key(USER_ID, s(user))
            .update_expression("SET #last = :useq")
            .expression_attribute_names("#last", LAST_USEQ)
            .expression_attribute_values(":useq", nu(useq))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let counter = if guess == 0 {
            counter.condition_expression("attribute_not_exists(#last)")
        } else {
            counter
                .condition_expression("#last = :guess")
                .expression_attribute_values(":guess", nu(guess))
        };
        counter.build().map_err(build_error)
    }

    /// The one transaction of an append: counter, document, entry, feed.
    #[allow(clippy::too_many_arguments)]
    fn append_actions(
        &self,
        user: &str,
        doc: &DocId,
        expected: u64,
        guess: u64,
        useq: u64,
        body: &Body<'_>,
        heads: &[u8],
    ) -> Result<Vec<TransactWriteItem>, StorageError> {
        let all_old = ReturnValuesOnConditionCheckFailure::AllOld;
        let counter = self.counter_update(user, guess, useq)?;
        let document = if expected == 0 {
            let mut item = Item::from([
                (DOC_ID.to_owned(), s(doc.as_str())),
                (OWNER.to_owned(), s(user)),
                (LAST_USEQ.to_owned(), nu(useq)),
                (SNAPSHOT_UPTO.to_owned(), nu(0)),
            ]);
            if !heads.is_empty() {
                item.insert(HEADS.to_owned(), b(heads.to_vec()));
            }
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.names.docs)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(#doc)")
                        .expression_attribute_names("#doc", DOC_ID)
                        .return_values_on_condition_check_failure(all_old.clone())
                        .build()
                        .map_err(build_error)?,
                )
                .build()
        } else {
            let mut update = Update::builder()
                .table_name(&self.names.docs)
                .key(DOC_ID, s(doc.as_str()))
                .condition_expression(
                    "#owner = :user AND #last = :expected AND attribute_not_exists(#purged)",
                )
                .expression_attribute_names("#last", LAST_USEQ)
                .expression_attribute_names("#owner", OWNER)
                .expression_attribute_names("#purged", PURGED)
                .expression_attribute_names("#heads", HEADS)
                .expression_attribute_values(":useq", nu(useq))
                .expression_attribute_values(":user", s(user))
                .expression_attribute_values(":expected", nu(expected))
                .return_values_on_condition_check_failure(all_old.clone());
            update = if heads.is_empty() {
                update.update_expression("SET #last = :useq REMOVE #heads")
            } else {
                update
                    .update_expression("SET #last = :useq, #heads = :heads")
                    .expression_attribute_values(":heads", b(heads.to_vec()))
            };
            let update = update.build().map_err(build_error)?;
            TransactWriteItem::builder().update(update).build()
        };
        let mut entry = Item::from([
            (DOC_ID.to_owned(), s(doc.as_str())),
            (USEQ.to_owned(), nu(useq)),
            (PREV.to_owned(), nu(expected)),
        ]);
        match body {
            Body::Inline(bytes) => {
                entry.insert(BYTES.to_owned(), b(bytes.to_vec()));
            }
            Body::Spilled { key, len } => {
                entry.insert(SPILL_KEY.to_owned(), s(key.clone()));
                entry.insert(SPILL_BYTES.to_owned(), nu(*len as u64));
            }
        }
        let log = Put::builder()
            .table_name(&self.names.log)
            .set_item(Some(entry))
            .condition_expression("attribute_not_exists(#useq)")
            .expression_attribute_names("#useq", USEQ)
            .build()
            .map_err(build_error)?;
        let mut actions = vec![
            TransactWriteItem::builder().update(counter).build(),
            document,
            TransactWriteItem::builder().put(log).build(),
        ];
        actions.extend(self.feed_move(user, doc, expected, useq)?);
        Ok(actions)
    }

    /// The document's feed row moves to `useq`: put there, and the old one
    /// (at `from`, its last useq, which the document's condition pins;
    /// 0: a new document has none) deleted.
    pub(super) fn feed_move(
        &self,
        user: &str,
        doc: &DocId,
        from: u64,
        useq: u64,
    ) -> Result<Vec<TransactWriteItem>, StorageError> {
        let row = Put::builder()
            .table_name(&self.names.feed)
            .item(USER_ID, s(user))
            .item(USEQ, nu(useq))
            .item(DOC_ID, s(doc.as_str()))
            .build()
            .map_err(build_error)?;
        let mut actions = vec![TransactWriteItem::builder().put(row).build()];
        if from > 0 {
            let old = Delete::builder()
                .table_name(&self.names.feed)
                .key(USER_ID, s(user))
                .key(USEQ, nu(from))
                .build()
                .map_err(build_error)?;
            actions.push(TransactWriteItem::builder().delete(old).build());
        }
        Ok(actions)
    }

    async fn feed_since(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedEntry>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let query = self
            .ddb
            .query()
            .table_name(&self.names.feed)
            .consistent_read(true)
            .key_condition_expression("#user = :user AND #useq > :after")
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#useq", USEQ)
            .expression_attribute_values(":user", s(user))
            .expression_attribute_values(":after", nu(after));
        let rows = self.query(query, Some(limit), "reading the feed").await?;
        rows.iter()
            .map(|row| {
                Ok(FeedEntry {
                    doc_id: get_s(row, DOC_ID)?.parse().map_err(|e| {
                        StorageError::Backend(format!("the feed holds a bad document id: {e}"))
                    })?,
                    useq: get_n(row, USEQ)?,
                })
            })
            .collect()
    }

    async fn user_head(&self, user: &str) -> Result<u64, StorageError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.names.users)
            .key(USER_ID, s(user))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading the user's counter", e))?;
        let head = match &out.item {
            Some(item) => opt_n(item, LAST_USEQ)?.unwrap_or(0),
            None => 0,
        };
        self.remember_head(user, head);
        Ok(head)
    }
}

impl AwsStore {
    /// [`DocStore::compact`], stopped where `stop` says, as a crash there
    /// would stop it: for tests of what readers and the next compaction
    /// make of the leftovers.
    pub async fn compact_stopping(
        &self,
        user: &str,
        doc: &DocId,
        upto: u64,
        snapshot: &[u8],
        stop: CompactStop,
    ) -> Result<(), StorageError> {
        validate_user(user)?;
        if snapshot.is_empty() {
            return Err(StorageError::Invalid("empty snapshot".into()));
        }
        self.inner.compact(user, doc, upto, snapshot, stop).await
    }
}

#[async_trait]
impl DocStore for AwsStore {
    async fn head(&self, user: &str, doc: &DocId) -> Result<Option<DocHead>, StorageError> {
        validate_user(user)?;
        Ok(self.inner.doc_item(user, doc).await?.map(|d| DocHead {
            owner: d.owner,
            last_useq: d.last_useq,
            snapshot_upto: d.snapshot_upto,
            heads: d.heads,
        }))
    }

    async fn append(
        &self,
        user: &str,
        doc: &DocId,
        expected_last_useq: u64,
        bytes: &[u8],
        heads: &[ChangeHash],
    ) -> Result<u64, StorageError> {
        validate_user(user)?;
        if bytes.is_empty() {
            return Err(StorageError::Invalid("empty log entry".into()));
        }
        self.inner
            .append(user, doc, expected_last_useq, bytes, heads)
            .await
    }

    async fn read_since(
        &self,
        user: &str,
        doc: &DocId,
        after: u64,
    ) -> Result<Vec<Chunk>, StorageError> {
        validate_user(user)?;
        self.inner.read_since(user, doc, after).await
    }

    async fn feed_since(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedEntry>, StorageError> {
        validate_user(user)?;
        self.inner.feed_since(user, after, limit).await
    }

    async fn compact(
        &self,
        user: &str,
        doc: &DocId,
        upto: u64,
        snapshot: &[u8],
    ) -> Result<(), StorageError> {
        self.compact_stopping(user, doc, upto, snapshot, CompactStop::Never)
            .await
    }

    fn projections(&self) -> &dyn crate::storage::projection::ProjectionStore {
        self
    }

    fn purges(&self) -> Option<&dyn crate::storage::purge::PurgeStore> {
        Some(self)
    }

    async fn user_head(&self, user: &str) -> Result<u64, StorageError> {
        validate_user(user)?;
        self.inner.user_head(user).await
    }

    async fn epoch(&self, user: &str, known: u64) -> Result<u64, StorageError> {
        validate_user(user)?;
        self.inner.epoch(user, known).await
    }

    async fn renew_epoch(&self, user: &str, seen: u64) -> Result<u64, StorageError> {
        validate_user(user)?;
        self.inner.renew_epoch(user, seen).await
    }
}

/// Cancellation reasons for a message: `None, ConditionalCheckFailed, …`.
fn describe(reasons: &[CancellationReason]) -> String {
    reasons
        .iter()
        .map(|r| match r.message() {
            Some(m) => format!("{} ({m})", r.code().unwrap_or("?")),
            None => r.code().unwrap_or("?").to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
