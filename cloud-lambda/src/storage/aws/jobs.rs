//! `JobStore` on DynamoDB: operations keyed by id (created with
//! `attribute_not_exists`, so a job starts once), two sparse KEYS_ONLY
//! indexes (by provider id, for webhooks; unfinished, for resuming) whose
//! hits are then read strongly consistently by id, and webhook deliveries
//! with a TTL. A lease is two attributes of the operation, moved by
//! conditional `UpdateItem`s.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, Select};

use super::errors::{put_unless_there, sdk_error};
use super::items::{Item, get_n, get_s, n, opt_n, opt_s, s};
use super::schema::attr::*;
use super::{AwsStore, StoreInner};
use crate::storage::jobs::{InputRecord, JobStore, Lease, OpStatus, Operation, validate_owner};
use crate::storage::{StorageError, validate_user};

/// Webhook delivery ids are kept this long (seconds); a delivery is only
/// accepted within its 5-minute signature window anyway.
const DELIVERY_TTL_SECS: i64 = 24 * 3600;

/// The `unfinished` index's one partition value.
const UNFINISHED_MARK: &str = "1";

fn to_item(op: &Operation) -> Result<Item, StorageError> {
    let mut item = Item::from([
        (OP_ID.to_owned(), s(&op.id)),
        (USER_ID.to_owned(), s(&op.user)),
        (DOC_ID.to_owned(), s(op.doc_id.as_str())),
        (STATUS.to_owned(), s(op.status.as_str())),
        (ATTEMPTS.to_owned(), n(op.attempts)),
        (CREATED_AT.to_owned(), n(op.created_at)),
        (UPDATED_AT.to_owned(), n(op.updated_at)),
    ]);
    for (name, value) in mutable_optionals(op)? {
        if let Some(v) = value {
            item.insert(name.to_owned(), v);
        }
    }
    Ok(item)
}

/// The optional attributes an update sets or removes.
fn mutable_optionals(
    op: &Operation,
) -> Result<[(&'static str, Option<AttributeValue>); 5], StorageError> {
    let input = op
        .input
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StorageError::Backend(format!("input record: {e}")))?;
    Ok([
        (PROVIDER_REF, op.provider_ref.as_deref().map(s)),
        (ERROR, op.error.as_deref().map(s)),
        (INPUT, input.map(s)),
        (
            UNFINISHED,
            (!op.status.is_terminal()).then(|| s(UNFINISHED_MARK)),
        ),
        (STARTED_BY, counts_as_started(op).then(|| s(&op.user))),
    ])
}

/// Whether the jobs-per-hour limit counts `op`: every operation except one
/// that failed before any attempt (refused by a limit, a retired model).
fn counts_as_started(op: &Operation) -> bool {
    !(op.status == OpStatus::Failed && op.attempts == 0)
}

fn from_item(item: &Item) -> Result<Operation, StorageError> {
    let status = get_s(item, STATUS)?;
    let input: Option<InputRecord> = opt_s(item, INPUT)?
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| StorageError::Backend(format!("stored input record: {e}")))?;
    Ok(Operation {
        id: get_s(item, OP_ID)?.to_owned(),
        user: get_s(item, USER_ID)?.to_owned(),
        doc_id: get_s(item, DOC_ID)?
            .parse()
            .map_err(|e| StorageError::Backend(format!("stored doc id: {e}")))?,
        status: OpStatus::parse(status)
            .ok_or_else(|| StorageError::Backend(format!("stored status {status:?}")))?,
        provider_ref: opt_s(item, PROVIDER_REF)?.map(str::to_owned),
        attempts: get_n(item, ATTEMPTS)?,
        error: opt_s(item, ERROR)?.map(str::to_owned),
        input,
        created_at: get_n(item, CREATED_AT)?,
        updated_at: get_n(item, UPDATED_AT)?,
    })
}

/// Sends a conditional update: its output if it wrote, `None` if its
/// condition failed.
async fn update_if(
    update: UpdateItemFluentBuilder,
    what: &str,
) -> Result<Option<UpdateItemOutput>, StorageError> {
    match update.send().await {
        Ok(out) => Ok(Some(out)),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(UpdateItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error(what, e)),
    }
}

impl StoreInner {
    /// An update of `user`'s operation `id` held by `owner` (the condition
    /// and its values set; the caller adds the update expression).
    fn owned_lease_update(&self, user: &str, id: &str, owner: &str) -> UpdateItemFluentBuilder {
        self.ddb
            .update_item()
            .table_name(&self.names.operations)
            .key(OP_ID, s(id))
            .condition_expression("#user = :user AND #owner = :owner")
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_values(":user", s(user))
            .expression_attribute_values(":owner", s(owner))
    }

    /// The operation by id, whoever owns it (strongly consistent).
    async fn operation(&self, id: &str) -> Result<Option<Operation>, StorageError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.names.operations)
            .key(OP_ID, s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("reading operation {id}"), e))?;
        out.item.as_ref().map(from_item).transpose()
    }

    /// Operation ids from one of the operations table's indexes.
    async fn index_ids(
        &self,
        index: &str,
        condition: &str,
        attr: &str,
        value: &str,
        wanted: Option<usize>,
    ) -> Result<Vec<String>, StorageError> {
        let query = self
            .ddb
            .query()
            .table_name(&self.names.operations)
            .index_name(index)
            .key_condition_expression(condition)
            .expression_attribute_names("#k", attr)
            .expression_attribute_values(":v", s(value));
        let items = self
            .query(query, wanted, &format!("querying index {index}"))
            .await?;
        items
            .iter()
            .map(|i| get_s(i, OP_ID).map(str::to_owned))
            .collect()
    }

    /// The operations with these ids, strongly consistent, in the given
    /// order (absent ones left out).
    async fn operations(&self, ids: &[String]) -> Result<Vec<Operation>, StorageError> {
        let keys = ids
            .iter()
            .map(|id| Item::from([(OP_ID.to_owned(), s(id))]))
            .collect();
        let items = self
            .batch_get(&self.names.operations, keys, &[], "reading operations")
            .await?;
        let mut found = std::collections::HashMap::new();
        for item in &items {
            let op = from_item(item)?;
            found.insert(op.id.clone(), op);
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }
}

#[async_trait]
impl JobStore for AwsStore {
    async fn create_operation(&self, op: &Operation) -> Result<bool, StorageError> {
        validate_user(&op.user)?;
        let inner = &self.inner;
        let put = inner
            .ddb
            .put_item()
            .table_name(&inner.names.operations)
            .set_item(Some(to_item(op)?))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", OP_ID);
        put_unless_there(put, &format!("creating operation {}", op.id)).await
    }

    async fn get_operation(&self, user: &str, id: &str) -> Result<Option<Operation>, StorageError> {
        Ok(self.inner.operation(id).await?.filter(|op| op.user == user))
    }

    async fn update_operation(&self, op: &Operation) -> Result<(), StorageError> {
        let inner = &self.inner;
        let mut sets = vec![
            "#status = :status",
            "#attempts = :attempts",
            "#updated = :updated",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        let mut removes = Vec::new();
        let mut update = inner
            .ddb
            .update_item()
            .table_name(&inner.names.operations)
            .key(OP_ID, s(&op.id))
            .condition_expression("#user = :user")
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_names("#attempts", ATTEMPTS)
            .expression_attribute_names("#updated", UPDATED_AT)
            .expression_attribute_values(":user", s(&op.user))
            .expression_attribute_values(":status", s(op.status.as_str()))
            .expression_attribute_values(":attempts", n(op.attempts))
            .expression_attribute_values(":updated", n(op.updated_at));
        for (i, (name, value)) in mutable_optionals(op)?.into_iter().enumerate() {
            update = update.expression_attribute_names(format!("#o{i}"), name);
            match value {
                Some(v) => {
                    sets.push(format!("#o{i} = :o{i}"));
                    update = update.expression_attribute_values(format!(":o{i}"), v);
                }
                None => removes.push(format!("#o{i}")),
            }
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let what = format!("updating operation {}", op.id);
        match update_if(update.update_expression(expression), &what).await? {
            Some(_) => Ok(()),
            None => Err(StorageError::NotFound),
        }
    }

    async fn find_by_provider_ref(
        &self,
        provider_ref: &str,
    ) -> Result<Option<Operation>, StorageError> {
        let ids = self
            .inner
            .index_ids(
                BY_PROVIDER_REF,
                "#k = :v",
                PROVIDER_REF,
                provider_ref,
                Some(1),
            )
            .await?;
        match ids.first() {
            // The index is eventually consistent; the item is read fresh.
            Some(id) => Ok(self
                .inner
                .operation(id)
                .await?
                .filter(|op| op.provider_ref.as_deref() == Some(provider_ref))),
            None => Ok(None),
        }
    }

    async fn first_delivery(&self, webhook_id: &str, now: i64) -> Result<bool, StorageError> {
        if webhook_id.is_empty() || webhook_id.len() > 256 {
            return Err(StorageError::Invalid("bad webhook id".into()));
        }
        let inner = &self.inner;
        // TTL deletion lags (up to days): an expired item counts as absent.
        let put = inner
            .ddb
            .put_item()
            .table_name(&inner.names.deliveries)
            .item(WEBHOOK_ID, s(webhook_id))
            .item(SEEN_AT, n(now))
            .item(EXPIRES_AT, n(now + DELIVERY_TTL_SECS))
            .condition_expression("attribute_not_exists(#id) OR #expires < :now")
            .expression_attribute_names("#id", WEBHOOK_ID)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":now", n(now));
        put_unless_there(put, "recording a webhook delivery").await
    }

    async fn count_started_since(&self, user: &str, since: i64) -> Result<u64, StorageError> {
        validate_user(user)?;
        let inner = &self.inner;
        let query = inner
            .ddb
            .query()
            .table_name(&inner.names.operations)
            .index_name(STARTED_BY_USER)
            .key_condition_expression("#k = :u AND #created >= :since")
            .expression_attribute_names("#k", STARTED_BY)
            .expression_attribute_names("#created", CREATED_AT)
            .expression_attribute_values(":u", s(user))
            .expression_attribute_values(":since", n(since))
            .select(Select::Count)
            .set_limit(inner.page_size);
        let mut count = 0u64;
        let mut start = None;
        loop {
            let out = query
                .clone()
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("counting operations started", e))?;
            count += u64::try_from(out.count).unwrap_or(0);
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(count);
            }
        }
    }

    async fn unfinished(&self) -> Result<Vec<Operation>, StorageError> {
        let ids = self
            .inner
            .index_ids(
                UNFINISHED_INDEX,
                "#k = :v",
                UNFINISHED,
                UNFINISHED_MARK,
                None,
            )
            .await?;
        // The index lags the table: what it lists is read again by id, and
        // only what is still unfinished is returned.
        Ok(self
            .inner
            .operations(&ids)
            .await?
            .into_iter()
            .filter(|op| !op.status.is_terminal())
            .collect())
    }

    async fn take_lease(
        &self,
        user: &str,
        id: &str,
        owner: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Option<Operation>, StorageError> {
        validate_user(user)?;
        validate_owner(owner)?;
        let inner = &self.inner;
        let update = inner
            .ddb
            .update_item()
            .table_name(&inner.names.operations)
            .key(OP_ID, s(id))
            .update_expression("SET #owner = :owner, #expires = :expires")
            .condition_expression(
                "#user = :user AND attribute_exists(#unfinished) AND \
                 (attribute_not_exists(#owner) OR #expires <= :now OR #owner = :owner)",
            )
            .expression_attribute_names("#user", USER_ID)
            .expression_attribute_names("#unfinished", UNFINISHED)
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#expires", LEASE_EXPIRES_AT)
            .expression_attribute_values(":user", s(user))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":expires", n(expires_at))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew);
        match update_if(update, &format!("taking the lease of operation {id}")).await? {
            Some(out) => out.attributes.as_ref().map(from_item).transpose(),
            None => Ok(None),
        }
    }

    async fn renew_lease(
        &self,
        user: &str,
        id: &str,
        owner: &str,
        expires_at: i64,
    ) -> Result<bool, StorageError> {
        validate_user(user)?;
        let update = self
            .inner
            .owned_lease_update(user, id, owner)
            .update_expression("SET #expires = :expires")
            .expression_attribute_names("#expires", LEASE_EXPIRES_AT)
            .expression_attribute_values(":expires", n(expires_at));
        let what = format!("renewing the lease of operation {id}");
        Ok(update_if(update, &what).await?.is_some())
    }

    async fn release_lease(&self, user: &str, id: &str, owner: &str) -> Result<(), StorageError> {
        validate_user(user)?;
        let update = self
            .inner
            .owned_lease_update(user, id, owner)
            .update_expression("REMOVE #owner, #expires")
            .expression_attribute_names("#expires", LEASE_EXPIRES_AT);
        let what = format!("releasing the lease of operation {id}");
        update_if(update, &what).await.map(drop)
    }

    async fn lease(&self, user: &str, id: &str) -> Result<Option<Lease>, StorageError> {
        validate_user(user)?;
        let out = self
            .inner
            .ddb
            .get_item()
            .table_name(&self.inner.names.operations)
            .key(OP_ID, s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(&format!("reading operation {id}"), e))?;
        let Some(item) = out
            .item
            .filter(|i| get_s(i, USER_ID).is_ok_and(|u| u == user))
        else {
            return Ok(None);
        };
        Ok(match opt_s(&item, LEASE_OWNER)? {
            Some(owner) => Some(Lease {
                owner: owner.to_owned(),
                expires_at: opt_n(&item, LEASE_EXPIRES_AT)?.unwrap_or(0),
            }),
            None => None,
        })
    }
}
