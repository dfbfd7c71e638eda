//! A document's log as readers and compaction see it: strongly consistent
//! queries of the `log` table, chunks spilled to S3, and snapshots in S3
//! behind the document item's pointer.
//!
//! **Reads never miss a folded entry.** A read takes the document item
//! (snapshot pointer, last `useq`), then queries the entries after
//! `max(cursor, snapshot)`. A compaction may move the pointer and delete
//! entries in between; each entry names the document's previous one
//! (`prev`), so the read checks the chain from its starting point to the
//! last `useq` it saw. A gap, a missing spilled chunk or a missing snapshot
//! object means a compaction got there first: the read starts again and
//! finds the newer snapshot.
//!
//! **Compaction is crash-safe in three steps**: the snapshot object is
//! written (`If-None-Match: *`), the pointer moves (conditional on the
//! owner, an older snapshot and enough log), and only then are the folded
//! entries, their spilled chunks and older snapshot objects deleted. A
//! crash after step one leaves an object nothing points to; after step two,
//! entries reads skip. The next compaction removes both. Deleted objects
//! stay readable as noncurrent versions for the point-in-time recovery
//! window (the bucket is versioned), so tables restored to an earlier time
//! still find every object they name (`objects::get_any`).

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    DeleteRequest, ReturnValue, ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use core_sync::DocId;
use core_sync::blob::sha256_hex;

use super::docs::DocItem;
use super::errors::{build_error, jitter, sdk_error};
use super::items::{Item, get_n, opt_n, opt_s, s, useq as nu};
use super::objects;
use super::schema::attr::*;
use super::{CompactStop, StoreInner};
use crate::storage::{Chunk, StorageError};

/// How often a read starts over because compactions kept folding what it
/// was reading.
const READ_ATTEMPTS: usize = 16;

/// DynamoDB's `BatchWriteItem` limit.
const BATCH: usize = 25;

/// The key of a spilled chunk.
pub(super) fn chunk_key(doc: &DocId, sha256: &str) -> String {
    format!("docs/{doc}/chunks/{sha256}")
}

/// The key of a snapshot folding everything up to `upto`.
pub(super) fn snapshot_key(doc: &DocId, upto: u64, sha256: &str) -> String {
    format!("{}{upto:020}-{sha256}", snapshot_prefix(doc))
}

fn snapshot_prefix(doc: &DocId) -> String {
    format!("docs/{doc}/snapshots/")
}

/// `upto` and hash of a snapshot key (`None`: not one of ours).
fn parse_snapshot_key<'a>(doc: &DocId, key: &'a str) -> Option<(u64, &'a str)> {
    let name = key.strip_prefix(&snapshot_prefix(doc))?;
    let (upto, sha) = name.split_once('-')?;
    Some((upto.parse().ok()?, sha))
}

/// The SHA-256 an object key ends with.
fn key_sha(key: &str) -> Option<&str> {
    let sha = key.rsplit(['/', '-']).next()?;
    core_sync::blob::is_valid_sha256(sha).then_some(sha)
}

/// One log item as read.
struct Entry {
    useq: u64,
    prev: u64,
    bytes: Option<Vec<u8>>,
    spill_key: Option<String>,
}

impl Entry {
    fn parse(item: Item) -> Result<Entry, StorageError> {
        let spill_key = opt_s(&item, SPILL_KEY)?.map(str::to_owned);
        let useq = get_n(&item, USEQ)?;
        let prev = opt_n(&item, PREV)?.unwrap_or(0);
        let bytes = match item.get(BYTES) {
            Some(aws_sdk_dynamodb::types::AttributeValue::B(b)) => Some(b.clone().into_inner()),
            _ => None,
        };
        if bytes.is_none() && spill_key.is_none() {
            return Err(StorageError::Backend(format!(
                "log entry {useq} has neither bytes nor a spilled chunk"
            )));
        }
        Ok(Entry {
            useq,
            prev,
            bytes,
            spill_key,
        })
    }
}

/// Whether `entries` (ascending) are every entry of the document after
/// `from` up to at least `last`: each names the one before it.
fn chain_is_whole(entries: &[Entry], from: u64, last: u64) -> bool {
    if last <= from {
        return true;
    }
    let Some(first) = entries.first() else {
        return false;
    };
    first.prev <= from
        && entries.windows(2).all(|w| w[1].prev == w[0].useq)
        && entries.last().is_some_and(|e| e.useq >= last)
}

impl StoreInner {
    /// Writes a chunk too large for an item; returns its key.
    pub(super) async fn put_chunk_object(
        &self,
        doc: &DocId,
        bytes: &[u8],
    ) -> Result<String, StorageError> {
        let key = chunk_key(doc, &sha256_hex(bytes));
        objects::put_once(&self.s3, &self.names.doc_bucket, &key, bytes).await?;
        Ok(key)
    }

    pub(super) async fn read_since(
        &self,
        user: &str,
        doc: &DocId,
        after: u64,
    ) -> Result<Vec<Chunk>, StorageError> {
        'read: for _ in 0..READ_ATTEMPTS {
            let stored = self
                .doc_item(user, doc)
                .await?
                .ok_or(StorageError::NotFound)?;
            let from = after.max(stored.snapshot_upto);
            let entries = if stored.last_useq > from {
                self.entries(doc, "#useq > :from", from, false).await?
            } else {
                Vec::new()
            };
            if !chain_is_whole(&entries, from, stored.last_useq) {
                continue 'read;
            }
            let mut chunks = Vec::with_capacity(entries.len() + 1);
            if stored.snapshot_upto > after {
                let Some(bytes) = self.snapshot_bytes(doc, &stored).await? else {
                    continue 'read;
                };
                chunks.push(Chunk {
                    useq: stored.snapshot_upto,
                    bytes,
                    is_snapshot: true,
                });
            }
            for entry in entries {
                let bytes = match (entry.bytes, &entry.spill_key) {
                    (Some(bytes), _) => bytes,
                    (None, Some(key)) => {
                        let got =
                            objects::get_any(&self.s3, &self.names.doc_bucket, key, key_sha(key))
                                .await?;
                        // Folded and deleted since the query: read again.
                        let Some(bytes) = got else { continue 'read };
                        bytes
                    }
                    (None, None) => unreachable!("checked by Entry::parse"),
                };
                chunks.push(Chunk {
                    useq: entry.useq,
                    bytes,
                    is_snapshot: false,
                });
            }
            return Ok(chunks);
        }
        Err(StorageError::Unavailable(format!(
            "document {doc}: compactions kept folding what was being read"
        )))
    }

    /// The snapshot the item points at; `None` if its object is gone (a
    /// newer compaction replaced it since the item was read).
    async fn snapshot_bytes(
        &self,
        doc: &DocId,
        stored: &DocItem,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let key = stored.snapshot_key.as_deref().ok_or_else(|| {
            StorageError::Backend(format!(
                "document {doc} has a snapshot up to {} but no snapshot key",
                stored.snapshot_upto
            ))
        })?;
        objects::get_any(&self.s3, &self.names.doc_bucket, key, key_sha(key)).await
    }

    /// The document's log entries matching `condition` (on `:from`),
    /// ascending; `keys_only` leaves the bytes out.
    async fn entries(
        &self,
        doc: &DocId,
        condition: &str,
        from: u64,
        keys_only: bool,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut query = self
            .ddb
            .query()
            .table_name(&self.names.log)
            .consistent_read(true)
            .key_condition_expression(format!("#doc = :doc AND {condition}"))
            .expression_attribute_names("#doc", DOC_ID)
            .expression_attribute_names("#useq", USEQ)
            .expression_attribute_values(":doc", s(doc.as_str()))
            .expression_attribute_values(":from", nu(from));
        if keys_only {
            query = query
                .projection_expression("#useq, #prev, #spill")
                .expression_attribute_names("#prev", PREV)
                .expression_attribute_names("#spill", SPILL_KEY);
        }
        let items = self
            .query(query, None, &format!("reading the log of document {doc}"))
            .await?;
        items
            .into_iter()
            .map(|item| {
                if keys_only {
                    Ok(Entry {
                        useq: get_n(&item, USEQ)?,
                        prev: opt_n(&item, PREV)?.unwrap_or(0),
                        bytes: None,
                        spill_key: opt_s(&item, SPILL_KEY)?.map(str::to_owned),
                    })
                } else {
                    Entry::parse(item)
                }
            })
            .collect()
    }

    pub(super) async fn compact(
        &self,
        user: &str,
        doc: &DocId,
        upto: u64,
        snapshot: &[u8],
        stop: CompactStop,
    ) -> Result<(), StorageError> {
        let stored = self
            .doc_item(user, doc)
            .await?
            .ok_or(StorageError::NotFound)?;
        if stored.snapshot_upto >= upto || upto > stored.last_useq {
            return Err(StorageError::Conflict);
        }
        // 1. The snapshot object.
        let key = snapshot_key(doc, upto, &sha256_hex(snapshot));
        objects::put_once(&self.s3, &self.names.doc_bucket, &key, snapshot).await?;
        if stop == CompactStop::AfterSnapshotWritten {
            return Ok(());
        }
        // 2. The pointer, once the object exists.
        self.move_pointer(user, doc, upto, &key).await?;
        if stop == CompactStop::AfterPointerMoved {
            return Ok(());
        }
        // 3. What it folded. The snapshot is in place: a failure here only
        // leaves entries and objects that reads skip and the next
        // compaction deletes.
        if let Err(e) = self.delete_folded(doc, upto, &key).await {
            tracing::warn!(%doc, upto, error = %e, "compaction left folded entries behind");
        }
        Ok(())
    }

    async fn move_pointer(
        &self,
        user: &str,
        doc: &DocId,
        upto: u64,
        key: &str,
    ) -> Result<(), StorageError> {
        let moved = self
            .ddb
            .update_item()
            .table_name(&self.names.docs)
            .key(DOC_ID, s(doc.as_str()))
            .update_expression("SET #upto = :upto, #key = :key")
            .condition_expression(
                "#owner = :user AND #upto < :upto AND #last >= :upto \
                 AND attribute_not_exists(#purged)",
            )
            .expression_attribute_names("#purged", PURGED)
            .expression_attribute_names("#upto", SNAPSHOT_UPTO)
            .expression_attribute_names("#key", SNAPSHOT_KEY)
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_names("#last", LAST_USEQ)
            .expression_attribute_values(":upto", nu(upto))
            .expression_attribute_values(":key", s(key))
            .expression_attribute_values(":user", s(user))
            .return_values(ReturnValue::None)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match moved {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let Some(UpdateItemError::ConditionalCheckFailedException(refused)) =
            err.as_service_error()
        else {
            // The outcome is unknown: the object stays (it may be the pointer now).
            return Err(sdk_error(
                &format!("moving the snapshot pointer of {doc}"),
                err,
            ));
        };
        let stored = refused.item().map(DocItem::parse).transpose()?;
        // Nothing points at the object unless an identical compaction won.
        if stored.as_ref().and_then(|d| d.snapshot_key.as_deref()) != Some(key)
            && let Err(e) = objects::delete(&self.s3, &self.names.doc_bucket, key).await
        {
            tracing::warn!(%doc, error = %e, "an unused snapshot object stays behind");
        }
        Err(match stored {
            Some(d) if d.owner == user && !d.purged => StorageError::Conflict,
            _ => StorageError::NotFound,
        })
    }

    /// Deletes the entries with `useq <= upto` (leftovers of earlier
    /// crashes included), the spilled chunks only they name, and snapshot
    /// objects older than `current`.
    async fn delete_folded(
        &self,
        doc: &DocId,
        upto: u64,
        current: &str,
    ) -> Result<(), StorageError> {
        let folded = self.entries(doc, "#useq <= :from", upto, true).await?;
        let spilled: Vec<String> = folded.iter().filter_map(|e| e.spill_key.clone()).collect();
        self.delete_entries(doc, &folded).await?;
        if !spilled.is_empty() {
            // A later entry may carry the same bytes (the same object).
            let kept: HashSet<String> = self
                .entries(doc, "#useq > :from", upto, true)
                .await?
                .into_iter()
                .filter_map(|e| e.spill_key)
                .collect();
            for key in spilled.iter().filter(|k| !kept.contains(*k)) {
                objects::delete(&self.s3, &self.names.doc_bucket, key).await?;
            }
        }
        let bucket = &self.names.doc_bucket;
        for key in objects::list(&self.s3, bucket, &snapshot_prefix(doc)).await? {
            // Only older ones: a compaction to a later `upto` may have just
            // written its object and be about to move the pointer to it.
            if key != current && parse_snapshot_key(doc, &key).is_some_and(|(u, _)| u <= upto) {
                objects::delete(&self.s3, bucket, &key).await?;
            }
        }
        Ok(())
    }

    /// Deletes these log entries of `doc`, 25 per `BatchWriteItem`.
    async fn delete_entries(&self, doc: &DocId, entries: &[Entry]) -> Result<(), StorageError> {
        for batch in entries.chunks(BATCH) {
            let requests = batch
                .iter()
                .map(|e| {
                    let delete = DeleteRequest::builder()
                        .key(DOC_ID, s(doc.as_str()))
                        .key(USEQ, nu(e.useq))
                        .build()
                        .map_err(build_error)?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<Result<Vec<_>, StorageError>>()?;
            self.batch_write(requests).await?;
        }
        Ok(())
    }

    /// Deletes every log entry of `doc` (a purge's step); returns how many.
    pub(super) async fn delete_log(&self, doc: &DocId) -> Result<u64, StorageError> {
        let all = self.entries(doc, "#useq >= :from", 0, true).await?;
        self.delete_entries(doc, &all).await?;
        Ok(all.len() as u64)
    }

    /// Deletes every object of `doc` in the documents' bucket (spilled
    /// chunks and snapshots; a purge's step). Their noncurrent versions
    /// expire with the bucket's lifecycle. Returns how many.
    pub(super) async fn delete_doc_objects(&self, doc: &DocId) -> Result<u64, StorageError> {
        let bucket = &self.names.doc_bucket;
        let keys = objects::list(&self.s3, bucket, &format!("docs/{doc}/")).await?;
        for key in &keys {
            objects::delete(&self.s3, bucket, key).await?;
        }
        Ok(keys.len() as u64)
    }

    /// Whether any log entry or object of `doc` is left (a check for
    /// tests and operators).
    pub(super) async fn log_or_objects_left(&self, doc: &DocId) -> Result<bool, StorageError> {
        if !self
            .entries(doc, "#useq >= :from", 0, true)
            .await?
            .is_empty()
        {
            return Ok(true);
        }
        let keys = objects::list(&self.s3, &self.names.doc_bucket, &format!("docs/{doc}/")).await?;
        Ok(!keys.is_empty())
    }

    /// One `BatchWriteItem` on the log, resending what DynamoDB left
    /// unprocessed.
    async fn batch_write(&self, mut requests: Vec<WriteRequest>) -> Result<(), StorageError> {
        let mut pause = Duration::from_millis(20);
        for _ in 0..8 {
            let out = self
                .ddb
                .batch_write_item()
                .request_items(&self.names.log, requests)
                .send()
                .await
                .map_err(|e| sdk_error("deleting folded log entries", e))?;
            requests = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.names.log))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(jitter(pause)).await;
            pause *= 2;
        }
        Err(StorageError::Unavailable(
            "deleting folded log entries: DynamoDB kept leaving some unprocessed".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(useq: u64, prev: u64) -> Entry {
        Entry {
            useq,
            prev,
            bytes: Some(vec![]),
            spill_key: None,
        }
    }

    #[test]
    fn a_gap_in_the_chain_is_noticed() {
        // The document's entries: 1, 3, 6, 7.
        let all = [e(1, 0), e(3, 1), e(6, 3), e(7, 6)];
        assert!(chain_is_whole(&all, 0, 7));
        assert!(chain_is_whole(&all[2..], 4, 7), "a cursor between entries");
        assert!(chain_is_whole(&all[1..], 2, 7));
        assert!(chain_is_whole(&[], 7, 7), "nothing newer");
        assert!(chain_is_whole(&all[..3], 9, 6), "nothing asked for");
        // Entries appended after the document item was read are welcome.
        assert!(chain_is_whole(&all, 0, 6));
        // Missing at the start, in the middle, at the end, or all of them.
        assert!(!chain_is_whole(&all[1..], 0, 7));
        assert!(!chain_is_whole(&[e(1, 0), e(6, 3), e(7, 6)], 0, 7));
        assert!(!chain_is_whole(&all[..3], 0, 7));
        assert!(!chain_is_whole(&[], 0, 7));
    }

    #[test]
    fn object_keys_follow_the_schema() {
        let doc: DocId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let sha = sha256_hex(b"x");
        let layouts = &super::super::schema::schema().bucket("docs").keys;
        let fill = |t: &str| {
            t.replace("{docId}", doc.as_str())
                .replace("{sha256}", &sha)
                .replace("{upto:020}", &format!("{:020}", 42))
        };
        assert_eq!(chunk_key(&doc, &sha), fill(&layouts["chunks"]));
        assert_eq!(snapshot_key(&doc, 42, &sha), fill(&layouts["snapshots"]));
        assert_eq!(
            parse_snapshot_key(&doc, &snapshot_key(&doc, 42, &sha)),
            Some((42, sha.as_str()))
        );
        assert_eq!(key_sha(&snapshot_key(&doc, 42, &sha)), Some(sha.as_str()));
        assert_eq!(key_sha(&chunk_key(&doc, &sha)), Some(sha.as_str()));
        assert_eq!(parse_snapshot_key(&doc, &chunk_key(&doc, &sha)), None);
    }
}
