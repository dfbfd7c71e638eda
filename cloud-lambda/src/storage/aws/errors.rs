//! SDK errors as [`StorageError`]s: throttling, server faults and
//! connections that fail become `Unavailable` (retry later; a 503), a
//! missing table or bucket says how to create it, anything else is
//! `Backend` with the service's code and message. Plus the jitter our own
//! retries back off with, and the conditional put and transaction whose
//! lost condition is an answer, not an error.

use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{CancellationReason, TransactWriteItem};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::storage::StorageError;

/// Error codes that mean "not now": the SDK already retried them (standard
/// retry mode) before they reach us.
const TRANSIENT: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottlingError",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionInProgressException",
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
];

/// Whether a DynamoDB or S3 error code is transient.
pub(super) fn is_transient_code(code: &str) -> bool {
    TRANSIENT.contains(&code)
}

/// The service's error code, if the service answered.
pub(super) fn code_of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    err.as_service_error().and_then(|e| e.code())
}

/// The HTTP status of a service's error answer.
pub(super) fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(e) => Some(e.raw().status().as_u16()),
        _ => None,
    }
}

/// `what` failed with `err`.
pub(super) fn sdk_error<E>(what: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            StorageError::Unavailable(format!(
                "{what}: the service is out of reach: {}",
                DisplayErrorContext(&err)
            ))
        }
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("(no code)");
            let message = e.message().unwrap_or("");
            let status = service.raw().status();
            if is_transient_code(code) || status.is_server_error() {
                StorageError::Unavailable(format!("{what}: {code} ({status}): {message}"))
            } else if code == "ResourceNotFoundException" || code == "NoSuchBucket" {
                StorageError::Backend(format!(
                    "{what}: {code}: {message} (the tables and buckets are missing: \
                     create them with `atelier-cloud init-aws` for this endpoint and prefix)"
                ))
            } else {
                StorageError::Backend(format!("{what}: {code} ({status}): {message}"))
            }
        }
        _ => StorageError::Backend(format!("{what}: {}", DisplayErrorContext(&err))),
    }
}

/// A request builder refused its input (a bug here, not the caller's).
pub(super) fn build_error(e: aws_smithy_types::error::operation::BuildError) -> StorageError {
    StorageError::Backend(format!("building a request: {e}"))
}

/// `base` plus up to 100% random jitter, so colliding writers spread out.
pub(super) fn jitter(base: std::time::Duration) -> std::time::Duration {
    use rand08::Rng;
    base + base.mul_f64(rand08::thread_rng().r#gen::<f64>())
}

/// Sends a conditional put: `true` if it wrote, `false` if its condition
/// (the item is not there yet) failed.
pub(super) async fn put_unless_there(
    put: PutItemFluentBuilder,
    what: &str,
) -> Result<bool, StorageError> {
    match put.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(PutItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(sdk_error(what, e)),
    }
}

/// Rounds of a transaction that keeps colliding with other writers.
const TRANSACT_ATTEMPTS: usize = 32;

/// The outcome of a transaction whose cancellation is an answer.
pub(super) enum Transacted {
    Done,
    /// Cancelled by a failed condition: the reasons, by action.
    Refused(Vec<CancellationReason>),
}

/// Sends one transaction, retrying collisions and throttling with
/// backoff; a failed condition is [`Transacted::Refused`].
pub(super) async fn transact(
    ddb: &aws_sdk_dynamodb::Client,
    actions: Vec<TransactWriteItem>,
    what: &str,
) -> Result<Transacted, StorageError> {
    let mut pause = Duration::from_millis(10);
    for _ in 0..TRANSACT_ATTEMPTS {
        let sent = ddb
            .transact_write_items()
            .set_transact_items(Some(actions.clone()))
            .send()
            .await;
        let err = match sent {
            Ok(_) => return Ok(Transacted::Done),
            Err(e) => e,
        };
        let reasons = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                c.cancellation_reasons().to_vec()
            }
            _ => return Err(sdk_error(what, err)),
        };
        let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
        if codes.contains(&"ConditionalCheckFailed") {
            return Ok(Transacted::Refused(reasons));
        }
        if codes
            .iter()
            .any(|c| *c == "TransactionConflict" || is_transient_code(c))
        {
            tokio::time::sleep(jitter(pause)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
            continue;
        }
        return Err(StorageError::Backend(format!(
            "{what}: transaction cancelled: {codes:?}"
        )));
    }
    Err(StorageError::Unavailable(format!(
        "{what}: still colliding with other writers"
    )))
}
