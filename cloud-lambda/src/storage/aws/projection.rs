//! `ListingStore` and `CostStore` on DynamoDB (tables `listings` and
//! `cost_events`, see `aws-schema.json`).
//!
//! - **Listings** are keyed by document. A put is one conditional
//!   `PutItem` (no item yet, or the same owner and an older `useq`), so a
//!   listing never moves backwards nor changes hands; a lost condition
//!   changes nothing, as the trait asks. `GET /assets` pages the `by_user`
//!   index, whose sort key (`list_order`) orders newest first and then by
//!   document id; a cursor is that key.
//! - **Cost events** are keyed by user and `event_key` (time, document,
//!   event id as one sortable string), so a UTC range is one strongly
//!   consistent key-range query, pages follow the trait's order, and a
//!   group sum is exact (added up here in `i128`). Each event has a marker
//!   item keyed by document and event id (`id#…`, sorting after every time
//!   key), put in the same transaction with `attribute_not_exists`: an
//!   event is recorded once by its id. A put first reads which markers
//!   exist (a document re-puts all its events when it gains one), then
//!   writes the rest 50 events per transaction; an event another writer
//!   recorded meanwhile is dropped from the retry.
//!
//! Events beyond one transaction are not atomic together: a failure part
//! way leaves some recorded, and the caller's next put (the projection
//! repairs itself on the next write) records the rest exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{CancellationReason, Put, TransactWriteItem};
use core_sync::DocId;
use core_sync::model::BlobRef;

use super::errors::{build_error, is_transient_code, jitter, sdk_error};
use super::items::{Item, get_n, get_s, n, opt_n, opt_s, s};
use super::schema::attr::*;
use super::{AwsStore, StoreInner};
use crate::storage::projection::{
    CostCursor, CostEvent, CostEventRow, CostGroup, CostRange, CostStore, Listing, ListingCursor,
    ListingStore, ListingTrash, MAX_MODELS, utc_day,
};
use crate::storage::{StorageError, validate_user};

/// Events per transaction (two actions each, of DynamoDB's 100).
const EVENTS_PER_TRANSACTION: usize = 50;

/// Rounds of a cost-event write before it gives up as `Unavailable`.
const WRITE_ROUNDS: usize = 16;

/// Where marker keys start: after every time key (which are digits).
const MARKER_PREFIX: &str = "id#";

/// `list_order`: newest first (`updated_at` descending as 20 digits), then
/// the document id.
fn list_order(updated_at: i64, doc: &DocId) -> String {
    let newest_first = (i64::MAX as i128 - updated_at as i128) as u64;
    format!("{newest_first:020}#{doc}")
}

/// A time as 20 digits that sort like the times (`ts + 2^63`).
fn time_key(ts: i64) -> String {
    format!("{:020}", (ts as i128 - i64::MIN as i128) as u64)
}

/// `event_key`: time, document, event id.
fn event_key(ts: i64, doc: &DocId, event_id: &str) -> String {
    format!("{}#{doc}#{event_id}", time_key(ts))
}

fn marker_key(doc: &DocId, event_id: &str) -> String {
    format!("{MARKER_PREFIX}{doc}#{event_id}")
}

fn parse_doc_id(item: &Item) -> Result<DocId, StorageError> {
    get_s(item, DOC_ID)?
        .parse()
        .map_err(|e| StorageError::Backend(format!("stored doc id: {e}")))
}

fn listing_item(user: &str, l: &Listing) -> Result<Item, StorageError> {
    let mut item = Item::from([
        (DOC_ID.to_owned(), s(l.doc_id.as_str())),
        (USER_ID.to_owned(), s(user)),
        (USEQ.to_owned(), n(l.useq)),
        (TITLE.to_owned(), s(&l.title)),
        (MESSAGE_COUNT.to_owned(), n(l.message_count)),
        (COST_EVENT_COUNT.to_owned(), n(l.cost_event_count)),
        (CREATED_AT.to_owned(), n(l.created_at)),
        (UPDATED_AT.to_owned(), n(l.updated_at)),
        (
            LIST_ORDER.to_owned(),
            s(list_order(l.updated_at, &l.doc_id)),
        ),
    ]);
    if let Some(cover) = &l.cover {
        let json =
            serde_json::to_string(cover).map_err(|e| StorageError::Invalid(e.to_string()))?;
        item.insert(COVER.to_owned(), s(json));
    }
    if let Some(v) = &l.active_version_id {
        item.insert(ACTIVE_VERSION_ID.to_owned(), s(v));
    }
    if let Some(t) = &l.trash {
        item.insert(DELETED_AT.to_owned(), n(t.deleted_at));
        item.insert(TRASHED_SINCE.to_owned(), n(t.retained_since));
    }
    Ok(item)
}

fn parse_listing(item: &Item) -> Result<Listing, StorageError> {
    let cover = opt_s(item, COVER)?
        .map(serde_json::from_str::<BlobRef>)
        .transpose()
        .map_err(|e| StorageError::Backend(format!("stored cover: {e}")))?;
    Ok(Listing {
        doc_id: parse_doc_id(item)?,
        title: get_s(item, TITLE)?.to_owned(),
        cover,
        active_version_id: opt_s(item, ACTIVE_VERSION_ID)?.map(str::to_owned),
        message_count: get_n(item, MESSAGE_COUNT)?,
        cost_event_count: get_n(item, COST_EVENT_COUNT)?,
        created_at: get_n(item, CREATED_AT)?,
        updated_at: get_n(item, UPDATED_AT)?,
        useq: get_n(item, USEQ)?,
        trash: match (opt_n(item, DELETED_AT)?, opt_n(item, TRASHED_SINCE)?) {
            (Some(deleted_at), Some(retained_since)) => Some(ListingTrash {
                deleted_at,
                retained_since,
            }),
            _ => None,
        },
    })
}

fn event_item(user: &str, e: &CostEvent) -> Item {
    let units = if e.units.is_finite() { e.units } else { 0.0 };
    let mut item = Item::from([
        (USER_ID.to_owned(), s(user)),
        (
            EVENT_KEY.to_owned(),
            s(event_key(e.ts, &e.doc_id, &e.event_id)),
        ),
        (DOC_ID.to_owned(), s(e.doc_id.as_str())),
        (EVENT_ID.to_owned(), s(&e.event_id)),
        (TS.to_owned(), n(e.ts)),
        (PROVIDER.to_owned(), s(&e.provider)),
        (MODEL.to_owned(), s(&e.model)),
        (UNITS.to_owned(), s(units.to_string())),
        (UNIT.to_owned(), s(&e.unit)),
        (COST_NANO_USD.to_owned(), n(e.cost_nano_usd)),
    ]);
    if let Some(m) = &e.message_id {
        item.insert(MESSAGE_ID.to_owned(), s(m));
    }
    item
}

fn parse_event(item: &Item) -> Result<CostEvent, StorageError> {
    let units = get_s(item, UNITS)?;
    Ok(CostEvent {
        event_id: get_s(item, EVENT_ID)?.to_owned(),
        doc_id: parse_doc_id(item)?,
        ts: get_n(item, TS)?,
        provider: get_s(item, PROVIDER)?.to_owned(),
        model: get_s(item, MODEL)?.to_owned(),
        units: units
            .parse()
            .map_err(|_| StorageError::Backend(format!("stored units {units:?}")))?,
        unit: get_s(item, UNIT)?.to_owned(),
        cost_nano_usd: get_n(item, COST_NANO_USD)?,
        message_id: opt_s(item, MESSAGE_ID)?.map(str::to_owned),
    })
}

/// The key range of `range` (inclusive bounds no event key equals), or
/// `None` when it is empty.
fn key_bounds(range: &CostRange) -> Option<(String, String)> {
    let lower = time_key(range.from.unwrap_or(i64::MIN));
    let upper = match range.to {
        Some(to) => time_key(to),
        // Past every time key (`~` sorts after the `#` that follows one),
        // before the markers.
        None => format!("{}~", time_key(i64::MAX)),
    };
    (lower < upper).then_some((lower, upper))
}

impl StoreInner {
    /// A query of `user`'s cost events in `range` from `lower` (a filter on
    /// the models, if any), projecting `projection` (empty: all).
    fn cost_query(
        &self,
        user: &str,
        range: &CostRange,
        lower: String,
        upper: String,
        projection: &[&str],
    ) -> Result<aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder, StorageError>
    {
        if range.models.len() > MAX_MODELS {
            return Err(StorageError::Invalid(format!(
                "at most {MAX_MODELS} models per query"
            )));
        }
        let mut query = self
            .ddb
            .query()
            .table_name(&self.names.cost_events)
            .consistent_read(true)
            .key_condition_expression("#user = :user AND #key BETWEEN :lower AND :upper")
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#key", EVENT_KEY)
            .expression_attribute_values(":user", s(user))
            .expression_attribute_values(":lower", s(lower))
            .expression_attribute_values(":upper", s(upper));
        if !range.models.is_empty() {
            let values: Vec<String> = (0..range.models.len()).map(|i| format!(":m{i}")).collect();
            query = query
                .filter_expression(format!("#model IN ({})", values.join(", ")))
                .expression_attribute_names("#model", MODEL);
            for (v, m) in values.iter().zip(&range.models) {
                query = query.expression_attribute_values(v, s(m));
            }
        }
        if !projection.is_empty() {
            let mut names = Vec::new();
            for (i, a) in projection.iter().enumerate() {
                names.push(format!("#p{i}"));
                query = query.expression_attribute_names(format!("#p{i}"), *a);
            }
            query = query.projection_expression(names.join(", "));
        }
        Ok(query)
    }

    /// Which of `events` (of `user`) have a marker already.
    async fn recorded_events(
        &self,
        user: &str,
        events: &[&CostEvent],
    ) -> Result<HashSet<String>, StorageError> {
        let keys = events
            .iter()
            .map(|e| {
                Item::from([
                    (USER_ID.to_owned(), s(user)),
                    (EVENT_KEY.to_owned(), s(marker_key(&e.doc_id, &e.event_id))),
                ])
            })
            .collect();
        let found = self
            .batch_get(
                &self.names.cost_events,
                keys,
                &[EVENT_KEY],
                "reading cost event markers",
            )
            .await?;
        found
            .iter()
            .map(|i| get_s(i, EVENT_KEY).map(str::to_owned))
            .collect()
    }

    /// Records `events` (none recorded as far as the caller knows), 50 per
    /// transaction; an event found recorded meanwhile is dropped.
    async fn record_events(&self, user: &str, events: Vec<&CostEvent>) -> Result<(), StorageError> {
        for chunk in events.chunks(EVENTS_PER_TRANSACTION) {
            let mut todo = chunk.to_vec();
            let mut pause = Duration::from_millis(20);
            let mut rounds = 0;
            while !todo.is_empty() {
                rounds += 1;
                if rounds > WRITE_ROUNDS {
                    return Err(StorageError::Unavailable(
                        "recording cost events: still colliding with other writers".into(),
                    ));
                }
                let mut actions = Vec::with_capacity(todo.len() * 2);
                for e in &todo {
                    let marker = Put::builder()
                        .table_name(&self.names.cost_events)
                        .item(USER_ID, s(user))
                        .item(EVENT_KEY, s(marker_key(&e.doc_id, &e.event_id)))
                        .item(TS, n(e.ts))
                        .condition_expression("attribute_not_exists(#key)")
                        .expression_attribute_names("#key", EVENT_KEY)
                        .build()
                        .map_err(build_error)?;
                    let event = Put::builder()
                        .table_name(&self.names.cost_events)
                        .set_item(Some(event_item(user, e)))
                        .build()
                        .map_err(build_error)?;
                    actions.push(TransactWriteItem::builder().put(marker).build());
                    actions.push(TransactWriteItem::builder().put(event).build());
                }
                let sent = self
                    .ddb
                    .transact_write_items()
                    .set_transact_items(Some(actions))
                    .send()
                    .await;
                let err = match sent {
                    Ok(_) => break,
                    Err(e) => e,
                };
                let reasons = match err.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                        c.cancellation_reasons().to_vec()
                    }
                    _ => return Err(sdk_error("recording cost events", err)),
                };
                let code = |r: &CancellationReason| r.code().unwrap_or("None").to_owned();
                let recorded: HashSet<usize> = reasons
                    .iter()
                    .enumerate()
                    .filter(|(i, r)| i % 2 == 0 && code(r) == "ConditionalCheckFailed")
                    .map(|(i, _)| i / 2)
                    .collect();
                if !recorded.is_empty() {
                    todo = todo
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| !recorded.contains(i))
                        .map(|(_, e)| e)
                        .collect();
                    continue;
                }
                if reasons
                    .iter()
                    .any(|r| code(r) == "TransactionConflict" || is_transient_code(&code(r)))
                {
                    tokio::time::sleep(jitter(pause)).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                    continue;
                }
                let codes: Vec<String> = reasons.iter().map(code).collect();
                return Err(StorageError::Backend(format!(
                    "recording cost events: transaction cancelled: {codes:?}"
                )));
            }
        }
        Ok(())
    }

    /// The titles of `user`'s listings of `docs`.
    async fn titles(
        &self,
        user: &str,
        docs: HashSet<&DocId>,
    ) -> Result<HashMap<DocId, String>, StorageError> {
        let keys = docs
            .into_iter()
            .map(|d| Item::from([(DOC_ID.to_owned(), s(d.as_str()))]))
            .collect();
        let items = self
            .batch_get(
                &self.names.listings,
                keys,
                &[DOC_ID, USER_ID, TITLE],
                "reading asset titles",
            )
            .await?;
        let mut titles = HashMap::new();
        for item in &items {
            if get_s(item, USER_ID)? == user {
                titles.insert(parse_doc_id(item)?, get_s(item, TITLE)?.to_owned());
            }
        }
        Ok(titles)
    }
}

#[async_trait]
impl ListingStore for AwsStore {
    async fn put_listing(&self, user: &str, l: &Listing) -> Result<(), StorageError> {
        validate_user(user)?;
        let inner = &self.inner;
        let put = inner
            .ddb
            .put_item()
            .table_name(&inner.names.listings)
            .set_item(Some(listing_item(user, l)?))
            .condition_expression("attribute_not_exists(#doc) OR (#user = :user AND #useq < :useq)")
            .expression_attribute_names("#doc", DOC_ID)
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#useq", USEQ)
            .expression_attribute_values(":user", s(user))
            .expression_attribute_values(":useq", n(l.useq));
        match put.send().await {
            Ok(_) => Ok(()),
            // A newer listing, or another user's: nothing changes.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error(&format!("listing document {}", l.doc_id), e)),
        }
    }

    async fn get_listing(&self, user: &str, doc: &DocId) -> Result<Option<Listing>, StorageError> {
        validate_user(user)?;
        let inner = &self.inner;
        let out = inner
            .ddb
            .get_item()
            .table_name(&inner.names.listings)
            .key(DOC_ID, s(doc.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("reading the listing of {doc}"), e))?;
        match out.item {
            Some(item) if get_s(&item, USER_ID)? == user => parse_listing(&item).map(Some),
            _ => Ok(None),
        }
    }

    async fn list_assets(
        &self,
        user: &str,
        trashed: bool,
        after: Option<&ListingCursor>,
        limit: usize,
    ) -> Result<Vec<Listing>, StorageError> {
        validate_user(user)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        // The trash is a filter on the same index: reads pass over the
        // other side's listings (few are in the trash, and only for the
        // retention period).
        let mut query = inner
            .ddb
            .query()
            .table_name(&inner.names.listings)
            .index_name(LISTINGS_BY_USER)
            .filter_expression(if trashed {
                "attribute_exists(#deleted)"
            } else {
                "attribute_not_exists(#deleted)"
            })
            .expression_attribute_names("#deleted", DELETED_AT)
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_values(":user", s(user));
        query = match after {
            None => query.key_condition_expression("#user = :user"),
            Some(c) => query
                .key_condition_expression("#user = :user AND #order > :after")
                .expression_attribute_names("#order", LIST_ORDER)
                .expression_attribute_values(":after", s(list_order(c.updated_at, &c.doc_id))),
        };
        let items = inner.query(query, Some(limit), "listing assets").await?;
        items.iter().map(parse_listing).collect()
    }
}

#[async_trait]
impl CostStore for AwsStore {
    async fn put_cost_events(
        &self,
        user: &str,
        doc: &DocId,
        events: &[CostEvent],
    ) -> Result<(), StorageError> {
        validate_user(user)?;
        if let Some(e) = events.iter().find(|e| &e.doc_id != doc) {
            return Err(StorageError::Invalid(format!(
                "cost event {} belongs to document {}, not {doc}",
                e.event_id, e.doc_id
            )));
        }
        // The first copy of an id wins, within one call too.
        let mut seen = HashSet::new();
        let unique: Vec<&CostEvent> = events
            .iter()
            .filter(|e| seen.insert(e.event_id.as_str()))
            .collect();
        if unique.is_empty() {
            return Ok(());
        }
        let recorded = self.inner.recorded_events(user, &unique).await?;
        let todo = unique
            .into_iter()
            .filter(|e| !recorded.contains(&marker_key(&e.doc_id, &e.event_id)))
            .collect();
        self.inner.record_events(user, todo).await
    }

    async fn cost_groups(
        &self,
        user: &str,
        range: &CostRange,
    ) -> Result<Vec<CostGroup>, StorageError> {
        validate_user(user)?;
        let Some((lower, upper)) = key_bounds(range) else {
            return Ok(Vec::new());
        };
        let query = self.inner.cost_query(
            user,
            range,
            lower,
            upper,
            &[TS, PROVIDER, MODEL, COST_NANO_USD],
        )?;
        let items = self.inner.query(query, None, "adding up costs").await?;
        let mut groups: BTreeMap<(i64, String, String), (i128, u64)> = BTreeMap::new();
        for item in &items {
            let key = (
                utc_day(get_n(item, TS)?),
                get_s(item, PROVIDER)?.to_owned(),
                get_s(item, MODEL)?.to_owned(),
            );
            let group = groups.entry(key).or_default();
            group.0 += get_n::<i64>(item, COST_NANO_USD)? as i128;
            group.1 += 1;
        }
        Ok(groups
            .into_iter()
            .map(|((day, provider, model), (nano_usd, events))| CostGroup {
                day,
                provider,
                model,
                nano_usd,
                events,
            })
            .collect())
    }

    async fn cost_events(
        &self,
        user: &str,
        range: &CostRange,
        after: Option<&CostCursor>,
        limit: usize,
    ) -> Result<Vec<CostEventRow>, StorageError> {
        validate_user(user)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let Some((mut lower, upper)) = key_bounds(range) else {
            return Ok(Vec::new());
        };
        // BETWEEN is inclusive: start at the cursor and drop it.
        let cursor = after.map(|c| event_key(c.ts, &c.doc_id, &c.event_id));
        if let Some(c) = &cursor
            && *c > lower
        {
            lower = c.clone();
        }
        if lower > upper {
            return Ok(Vec::new());
        }
        let query = self.inner.cost_query(user, range, lower, upper, &[])?;
        let mut items = self
            .inner
            .query(query, Some(limit.saturating_add(1)), "reading cost events")
            .await?;
        if let Some(c) = &cursor {
            items.retain(|i| get_s(i, EVENT_KEY).is_ok_and(|k| k != c));
        }
        items.truncate(limit);
        let events = items
            .iter()
            .map(parse_event)
            .collect::<Result<Vec<_>, _>>()?;
        let titles = self
            .inner
            .titles(user, events.iter().map(|e| &e.doc_id).collect())
            .await?;
        Ok(events
            .into_iter()
            .map(|event| CostEventRow {
                asset_title: titles.get(&event.doc_id).cloned().unwrap_or_default(),
                event,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_like_what_they_encode() {
        let (a, b) = (DocId::random(), DocId::random());
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        // Listings: newer first, then by id; extreme times included.
        let ordered = [
            list_order(i64::MAX, &lo),
            list_order(5, &lo),
            list_order(5, &hi),
            list_order(-5, &lo),
            list_order(i64::MIN, &hi),
        ];
        assert!(ordered.windows(2).all(|w| w[0] < w[1]), "{ordered:?}");
        // Events: by time, document, event id.
        let ordered = [
            event_key(i64::MIN, &hi, "z"),
            event_key(-1, &lo, "a"),
            event_key(0, &lo, "a"),
            event_key(0, &lo, "b"),
            event_key(0, &hi, "a"),
            event_key(i64::MAX, &lo, ""),
        ];
        assert!(ordered.windows(2).all(|w| w[0] < w[1]), "{ordered:?}");
        // Range bounds fall between keys and before the markers.
        let all = key_bounds(&CostRange::default()).unwrap();
        assert!(all.0 < ordered[0] && ordered[5] < all.1);
        assert!(all.1 < marker_key(&lo, "a"));
        let one = CostRange {
            from: Some(0),
            to: Some(1),
            models: vec![],
        };
        let (l, u) = key_bounds(&one).unwrap();
        assert!(l < ordered[2] && ordered[4] < u && ordered[1] < l);
        assert!(event_key(1, &lo, "") > u);
        let empty = CostRange {
            from: Some(3),
            to: Some(3),
            models: vec![],
        };
        assert_eq!(key_bounds(&empty), None);
    }
}
