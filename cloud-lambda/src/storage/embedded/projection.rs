//! `ListingStore` and `CostStore` on the embedded SQLite database (tables
//! `listings` and `cost_events`, migration `20261129000002_projections`).
//!
//! Rollups are one `GROUP BY` over the index `(user_id, ts, …)`; sums are
//! split into whole dollars and the nano-dollar remainder per event, so SQL
//! integer sums stay far from overflow and the exact total is rebuilt in
//! `i128`. Pages of cost events are keyset queries on the same index.

use async_trait::async_trait;
use core_sync::DocId;
use core_sync::model::BlobRef;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Row};

use super::{EmbeddedStore, from_sql, to_sql};
use crate::storage::projection::{
    CostCursor, CostEvent, CostEventRow, CostGroup, CostRange, CostStore, DAY_MS, Listing,
    ListingCursor, ListingStore, ListingTrash, MAX_MODELS,
};
use crate::storage::{StorageError, validate_user};

fn doc_id(row: &SqliteRow) -> Result<DocId, StorageError> {
    let s: String = row.try_get("doc_id")?;
    s.parse()
        .map_err(|e| StorageError::Backend(format!("database holds a bad document id: {e}")))
}

fn row_to_listing(row: &SqliteRow) -> Result<Listing, StorageError> {
    let cover: Option<String> = row.try_get("cover")?;
    let cover = cover
        .map(|c| serde_json::from_str::<BlobRef>(&c))
        .transpose()
        .map_err(|e| StorageError::Backend(format!("database holds a bad cover: {e}")))?;
    Ok(Listing {
        doc_id: doc_id(row)?,
        title: row.try_get("title")?,
        cover,
        active_version_id: row.try_get("active_version_id")?,
        message_count: from_sql(row.try_get("message_count")?)?,
        cost_event_count: from_sql(row.try_get("cost_event_count")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        useq: from_sql(row.try_get("useq")?)?,
        trash: match (row.try_get("deleted_at")?, row.try_get("retained_since")?) {
            (Some(deleted_at), Some(retained_since)) => Some(ListingTrash {
                deleted_at,
                retained_since,
            }),
            _ => None,
        },
    })
}

fn row_to_event(row: &SqliteRow) -> Result<CostEvent, StorageError> {
    Ok(CostEvent {
        event_id: row.try_get("event_id")?,
        doc_id: doc_id(row)?,
        ts: row.try_get("ts")?,
        provider: row.try_get("provider")?,
        model: row.try_get("model")?,
        units: row.try_get("units")?,
        unit: row.try_get("unit")?,
        cost_nano_usd: row.try_get("cost_nano_usd")?,
        message_id: row.try_get("message_id")?,
    })
}

/// `AND …` clauses and their arguments for a range (after `user_id = ?`).
/// Only placeholders go into the SQL text; every value is bound.
fn range_sql(
    range: &CostRange,
    sql: &mut String,
    args: &mut SqliteArguments,
) -> Result<(), StorageError> {
    let bind = |args: &mut SqliteArguments, v: i64| {
        args.add(v)
            .map_err(|e| StorageError::Backend(e.to_string()))
    };
    if let Some(from) = range.from {
        sql.push_str(" AND c.ts >= ?");
        bind(args, from)?;
    }
    if let Some(to) = range.to {
        sql.push_str(" AND c.ts < ?");
        bind(args, to)?;
    }
    if !range.models.is_empty() {
        if range.models.len() > MAX_MODELS {
            return Err(StorageError::Invalid(format!(
                "at most {MAX_MODELS} models per query"
            )));
        }
        sql.push_str(" AND c.model IN (");
        for (i, m) in range.models.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            args.add(m.as_str())
                .map_err(|e| StorageError::Backend(e.to_string()))?;
        }
        sql.push(')');
    }
    Ok(())
}

fn limit_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl ListingStore for EmbeddedStore {
    async fn put_listing(&self, user: &str, l: &Listing) -> Result<(), StorageError> {
        validate_user(user)?;
        let cover = l
            .cover
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StorageError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO listings (doc_id, user_id, useq, title, cover, active_version_id,
                                   message_count, cost_event_count, created_at, updated_at,
                                   deleted_at, retained_since)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (doc_id) DO UPDATE SET
                useq = excluded.useq, title = excluded.title, cover = excluded.cover,
                active_version_id = excluded.active_version_id,
                message_count = excluded.message_count,
                cost_event_count = excluded.cost_event_count,
                created_at = excluded.created_at, updated_at = excluded.updated_at,
                deleted_at = excluded.deleted_at, retained_since = excluded.retained_since
             WHERE listings.user_id = excluded.user_id AND listings.useq < excluded.useq",
        )
        .bind(l.doc_id.as_str())
        .bind(user)
        .bind(to_sql(l.useq))
        .bind(&l.title)
        .bind(cover)
        .bind(&l.active_version_id)
        .bind(to_sql(l.message_count))
        .bind(to_sql(l.cost_event_count))
        .bind(l.created_at)
        .bind(l.updated_at)
        .bind(l.trash.map(|t| t.deleted_at))
        .bind(l.trash.map(|t| t.retained_since))
        .execute(&mut *self.writer.lock().await)
        .await?;
        Ok(())
    }

    async fn get_listing(&self, user: &str, doc: &DocId) -> Result<Option<Listing>, StorageError> {
        validate_user(user)?;
        let row = sqlx::query("SELECT * FROM listings WHERE doc_id = ? AND user_id = ?")
            .bind(doc.as_str())
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_listing).transpose()
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
        let rows = match after {
            None => {
                sqlx::query(
                    "SELECT * FROM listings WHERE user_id = ?1
                       AND (deleted_at IS NOT NULL) = ?2
                     ORDER BY updated_at DESC, doc_id LIMIT ?3",
                )
                .bind(user)
                .bind(trashed)
                .bind(limit_sql(limit))
                .fetch_all(&self.pool)
                .await?
            }
            Some(c) => {
                sqlx::query(
                    "SELECT * FROM listings WHERE user_id = ?1
                       AND (deleted_at IS NOT NULL) = ?5
                       AND (updated_at < ?2 OR (updated_at = ?2 AND doc_id > ?3))
                     ORDER BY updated_at DESC, doc_id LIMIT ?4",
                )
                .bind(user)
                .bind(c.updated_at)
                .bind(c.doc_id.as_str())
                .bind(limit_sql(limit))
                .bind(trashed)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(row_to_listing).collect()
    }
}

#[async_trait]
impl CostStore for EmbeddedStore {
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
        if events.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer.lock().await;
        let mut tx = sqlx::Connection::begin(&mut *writer).await?;
        let mut result = Ok(());
        for e in events {
            let done = sqlx::query(
                "INSERT INTO cost_events (user_id, doc_id, event_id, ts, provider, model,
                                          units, unit, cost_nano_usd, message_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(user)
            .bind(doc.as_str())
            .bind(&e.event_id)
            .bind(e.ts)
            .bind(&e.provider)
            .bind(&e.model)
            .bind(if e.units.is_finite() { e.units } else { 0.0 })
            .bind(&e.unit)
            .bind(e.cost_nano_usd)
            .bind(&e.message_id)
            .execute(&mut *tx)
            .await;
            if let Err(err) = done {
                result = Err(err.into());
                break;
            }
        }
        Self::finish(tx, result).await
    }

    async fn cost_groups(
        &self,
        user: &str,
        range: &CostRange,
    ) -> Result<Vec<CostGroup>, StorageError> {
        validate_user(user)?;
        // Floor division (days before 1970 are negative), and each sum
        // split into whole dollars and the remainder.
        let mut sql = format!(
            "SELECT (c.ts - (((c.ts % {DAY_MS}) + {DAY_MS}) % {DAY_MS})) / {DAY_MS} AS day,
                    c.provider, c.model,
                    SUM(c.cost_nano_usd / 1000000000) AS whole,
                    SUM(c.cost_nano_usd % 1000000000) AS rest,
                    COUNT(*) AS events
             FROM cost_events c WHERE c.user_id = ?"
        );
        let mut args = SqliteArguments::default();
        args.add(user)
            .map_err(|e| StorageError::Backend(e.to_string()))?;
        range_sql(range, &mut sql, &mut args)?;
        sql.push_str(" GROUP BY day, c.provider, c.model ORDER BY day, c.provider, c.model");
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let whole: i64 = r.try_get("whole")?;
                let rest: i64 = r.try_get("rest")?;
                Ok(CostGroup {
                    day: r.try_get("day")?,
                    provider: r.try_get("provider")?,
                    model: r.try_get("model")?,
                    nano_usd: whole as i128 * 1_000_000_000 + rest as i128,
                    events: from_sql(r.try_get("events")?)?,
                })
            })
            .collect()
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
        let mut sql = String::from(
            "SELECT c.*, COALESCE(l.title, '') AS asset_title FROM cost_events c
             LEFT JOIN listings l ON l.doc_id = c.doc_id AND l.user_id = c.user_id
             WHERE c.user_id = ?",
        );
        let mut args = SqliteArguments::default();
        let err = |e: sqlx::error::BoxDynError| StorageError::Backend(e.to_string());
        args.add(user).map_err(err)?;
        range_sql(range, &mut sql, &mut args)?;
        if let Some(c) = after {
            sql.push_str(" AND (c.ts, c.doc_id, c.event_id) > (?, ?, ?)");
            args.add(c.ts).map_err(err)?;
            args.add(c.doc_id.as_str().to_owned()).map_err(err)?;
            args.add(c.event_id.clone()).map_err(err)?;
        }
        sql.push_str(" ORDER BY c.ts, c.doc_id, c.event_id LIMIT ?");
        args.add(limit_sql(limit)).map_err(err)?;
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CostEventRow {
                    event: row_to_event(r)?,
                    asset_title: r.try_get("asset_title")?,
                })
            })
            .collect()
    }
}

impl EmbeddedStore {
    /// Documents whose listing is missing (written before the projections
    /// existed) or behind their log (a crash between an append and its
    /// listing), as (owner, document), at most `limit`: what a backfill
    /// derives listings for.
    pub async fn unlisted_docs(&self, limit: usize) -> Result<Vec<(String, DocId)>, StorageError> {
        let rows = sqlx::query(
            "SELECT d.owner, d.doc_id FROM docs d
             WHERE NOT EXISTS (SELECT 1 FROM listings l
                               WHERE l.doc_id = d.doc_id AND l.useq >= d.last_useq)
             ORDER BY d.doc_id LIMIT ?",
        )
        .bind(limit_sql(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("owner")?, doc_id(r)?)))
            .collect()
    }
}
