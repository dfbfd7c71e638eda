//! `BatchGetItem` as one call: keys sent 100 at a time, strongly
//! consistent, unprocessed keys asked again (with jittered backoff) until
//! none are left or DynamoDB keeps refusing, which is `Unavailable`.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::KeysAndAttributes;

use super::StoreInner;
use super::errors::{build_error, jitter, sdk_error};
use super::items::Item;
use crate::storage::StorageError;

/// DynamoDB's `BatchGetItem` limit.
const BATCH_GET: usize = 100;

/// Rounds per batch before unprocessed keys are given up on.
const ROUNDS: usize = 8;

impl StoreInner {
    /// The items of `table` with these primary keys (absent ones left out,
    /// in no particular order). `projection`: the attributes to return
    /// (empty: all).
    pub(super) async fn batch_get(
        &self,
        table: &str,
        keys: Vec<Item>,
        projection: &[&str],
        what: &str,
    ) -> Result<Vec<Item>, StorageError> {
        let (expression, names) = if projection.is_empty() {
            (None, None)
        } else {
            let names: HashMap<String, String> = projection
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("#p{i}"), (*a).to_owned()))
                .collect();
            let expression = (0..projection.len())
                .map(|i| format!("#p{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            (Some(expression), Some(names))
        };
        let mut found = Vec::new();
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            let mut batch: Vec<Item> = keys.by_ref().take(BATCH_GET).collect();
            let mut pause = Duration::from_millis(20);
            for round in 0..ROUNDS {
                if batch.is_empty() {
                    break;
                }
                if round > 0 {
                    tokio::time::sleep(jitter(pause)).await;
                    pause *= 2;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(batch))
                    .consistent_read(true)
                    .set_projection_expression(expression.clone())
                    .set_expression_attribute_names(names.clone())
                    .build()
                    .map_err(build_error)?;
                let out = self
                    .ddb
                    .batch_get_item()
                    .request_items(table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error(what, e))?;
                found.extend(
                    out.responses
                        .and_then(|mut r| r.remove(table))
                        .unwrap_or_default(),
                );
                batch = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
            if !batch.is_empty() {
                return Err(StorageError::Unavailable(format!(
                    "{what}: DynamoDB kept leaving keys unprocessed"
                )));
            }
        }
        Ok(found)
    }
}
