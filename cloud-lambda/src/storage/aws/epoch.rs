//! The user's feed epoch on DynamoDB: a random number in the user's item
//! (`users.epoch`), made on first use with `if_not_exists` and renewed with
//! a conditional update, mixed with the identity of the `users` table
//! (its `TableId`, or its ARN and creation time where an emulator has no
//! id). Every DynamoDB restore, point-in-time or from a backup, makes a
//! new table, so the epoch devices see changes with it and nothing has to
//! be done by hand.
//!
//! Both parts are cached for a minute, so an idle poll stays one query;
//! a caller naming another epoch than the cached one (a device that heard
//! of a newer one from another instance) makes it read again.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::ReturnValue;

use super::StoreInner;
use super::errors::sdk_error;
use super::items::{n, opt_n, s};
use super::schema::attr::*;
use crate::storage::{StorageError, mix_epoch, new_epoch};

/// How long a cached epoch or table identity is trusted.
const FRESH: Duration = Duration::from_secs(60);

impl StoreInner {
    /// What names the tables' data as a whole (cached).
    async fn data_id(&self, reread: bool) -> Result<String, StorageError> {
        if !reread
            && let Some((id, at)) = self.data_id.lock().expect("data id").clone()
            && at.elapsed() < FRESH
        {
            return Ok(id);
        }
        let out = self
            .ddb
            .describe_table()
            .table_name(&self.names.users)
            .send()
            .await
            .map_err(|e| sdk_error("describing the users table", e))?;
        let table = out.table.ok_or_else(|| {
            StorageError::Backend("describing the users table: no description came back".into())
        })?;
        let id = match table.table_id() {
            Some(id) => id.to_owned(),
            None => format!(
                "{}@{}",
                table.table_arn().unwrap_or(&self.names.users),
                table
                    .creation_date_time()
                    .map(|t| t.as_nanos())
                    .unwrap_or_default()
            ),
        };
        *self.data_id.lock().expect("data id") = Some((id.clone(), Instant::now()));
        Ok(id)
    }

    /// The user's stored epoch, made if absent (strongly consistent).
    async fn stored_epoch(&self, user: &str) -> Result<u64, StorageError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.names.users)
            .key(USER_ID, s(user))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading the user's epoch", e))?;
        if let Some(epoch) = out
            .item
            .as_ref()
            .map(|i| opt_n(i, EPOCH))
            .transpose()?
            .flatten()
        {
            return Ok(epoch);
        }
        let out = self
            .ddb
            .update_item()
            .table_name(&self.names.users)
            .key(USER_ID, s(user))
            .update_expression("SET #epoch = if_not_exists(#epoch, :new)")
            .expression_attribute_names("#epoch", EPOCH)
            .expression_attribute_values(":new", n(new_epoch()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| sdk_error("making the user's epoch", e))?;
        out.attributes
            .as_ref()
            .map(|i| opt_n(i, EPOCH))
            .transpose()?
            .flatten()
            .ok_or_else(|| StorageError::Backend("the user's epoch did not stick".into()))
    }

    fn remember_epoch(&self, user: &str, epoch: u64) {
        let mut epochs = self.epochs.lock().expect("epochs");
        if epochs.len() >= super::REMEMBERED_USERS && !epochs.contains_key(user) {
            epochs.clear();
        }
        epochs.insert(user.to_owned(), (epoch, Instant::now()));
    }

    /// The epoch devices see (see `DocStore::epoch`).
    pub(super) async fn epoch(&self, user: &str, known: u64) -> Result<u64, StorageError> {
        let cached = self.epochs.lock().expect("epochs").get(user).copied();
        if let Some((user_epoch, at)) = cached
            && at.elapsed() < FRESH
        {
            let mixed = mix_epoch(&self.data_id(false).await?, user_epoch);
            if known == 0 || known == mixed {
                return Ok(mixed);
            }
        }
        self.fresh_epoch(user).await.map(|(mixed, _)| mixed)
    }

    /// Reads both parts again: the epoch devices see, and the user's part.
    async fn fresh_epoch(&self, user: &str) -> Result<(u64, u64), StorageError> {
        let data_id = self.data_id(true).await?;
        let user_epoch = self.stored_epoch(user).await?;
        self.remember_epoch(user, user_epoch);
        Ok((mix_epoch(&data_id, user_epoch), user_epoch))
    }

    /// See `DocStore::renew_epoch`.
    pub(super) async fn renew_epoch(&self, user: &str, seen: u64) -> Result<u64, StorageError> {
        let (mixed, user_epoch) = self.fresh_epoch(user).await?;
        if mixed != seen {
            return Ok(mixed);
        }
        let renewed = self
            .ddb
            .update_item()
            .table_name(&self.names.users)
            .key(USER_ID, s(user))
            .update_expression("SET #epoch = :new")
            .condition_expression("#epoch = :seen")
            .expression_attribute_names("#epoch", EPOCH)
            .expression_attribute_values(":new", n(new_epoch()))
            .expression_attribute_values(":seen", n(user_epoch))
            .send()
            .await;
        match renewed {
            Ok(_) => {}
            // Another caller renewed it first: theirs is the new one.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(sdk_error("renewing the user's epoch", e)),
        }
        self.fresh_epoch(user).await.map(|(mixed, _)| mixed)
    }
}
