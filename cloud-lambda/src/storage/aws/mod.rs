//! The AWS backend: [`DocStore`](crate::storage::DocStore) and
//! [`JobStore`](crate::storage::jobs::JobStore) on DynamoDB
//! ([`AwsStore`]), [`BlobStore`](crate::storage::BlobStore) on S3
//! ([`AwsBlobs`]), through the official SDK. Tables and buckets are named
//! and shaped by `aws-schema.json` ([`schema`]); [`Aws::init`] creates them
//! on an emulator.
//!
//! How the storage model maps onto DynamoDB (see `storage/mod.rs` for the
//! model itself):
//!
//! - **One append, one transaction.** `TransactWriteItems` moves the user's
//!   counter (conditional on the value this process last saw), updates the
//!   document item (conditional on the caller's `last_useq` and owner),
//!   puts the log entry and moves the document's feed row. No reader can
//!   see `useq` 7 before 6 exists. A stale counter guess comes back in the
//!   cancellation reason (`ALL_OLD`) and is retried at once, so a warm
//!   process spends one request per append.
//! - **Reads are strongly consistent queries** on the log and the feed
//!   (never a GSI). Each log entry names the document's previous entry
//!   (`prev`); a read checks that chain, so an entry a concurrent compaction
//!   deleted is noticed and the read starts again from the new snapshot.
//! - **Large chunks and snapshots live in S3**, content-addressed and
//!   written with `If-None-Match: *`. Compaction writes the snapshot
//!   object, then moves the document's pointer (conditionally), and only
//!   then deletes the entries and objects it folded.
//! - **Projections** (listings, cost events) are tables of their own
//!   (`projection.rs`); blobs move through S3 presigned URLs (`blobs.rs`).
//! - **Purges** (`purge.rs`, `purge_steps.rs`): reference-counted blobs,
//!   and a purge in steps behind one conditional mark.
//!
//! Every request is counted per operation ([`metrics::RequestCounter`]).

mod batch;
mod blobs;
mod docs;
mod epoch;
mod errors;
pub mod init;
mod items;
mod jobs;
mod log;
pub mod metrics;
mod objects;
mod projection;
mod purge;
mod purge_steps;
mod query;
pub mod schema;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::Region;
use aws_config::retry::RetryConfig;

pub use self::blobs::{AwsBlobs, BlobKind, kind_tag, tagging};
pub use self::metrics::{RequestCounter, RequestCounts};
pub use self::schema::Names;
use crate::aws_sdk::SdkSettings;
use crate::storage::StorageError;

/// Log entries longer than this go to S3 (DynamoDB items hold 400 KB,
/// attribute names included).
pub const DEFAULT_SPILL_BYTES: usize = 350 * 1024;

/// The region when none is configured (where the product is deployed).
pub const DEFAULT_REGION: &str = "eu-central-1";

/// How to reach a deployment.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// Put in front of every table and bucket name (e.g. `atelier-dev-`).
    pub prefix: String,
    /// An emulator's URL (moto). `None`: `AWS_ENDPOINT_URL` if set, else AWS.
    pub endpoint: Option<String>,
    /// `None`: `AWS_REGION` or `AWS_DEFAULT_REGION`, else
    /// [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// Fixed credentials (an emulator takes any); `None`: the default
    /// provider chain.
    pub credentials: Option<(String, String)>,
    /// At most this many items per query page (`None`: DynamoDB's 1 MB
    /// pages). Small pages exercise pagination in tests.
    pub page_size: Option<i32>,
    /// Log entries longer than this are spilled to S3.
    pub spill_bytes: usize,
    /// Attempts per request (throttling and server faults are retried by
    /// the SDK with exponential backoff and jitter) and the first backoff.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
}

impl AwsOptions {
    pub fn new(prefix: impl Into<String>) -> Self {
        AwsOptions {
            prefix: prefix.into(),
            endpoint: None,
            region: None,
            credentials: None,
            page_size: None,
            spill_bytes: DEFAULT_SPILL_BYTES,
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
        }
    }

    /// An emulator at `endpoint` with dummy credentials.
    pub fn emulator(prefix: impl Into<String>, endpoint: impl Into<String>) -> Self {
        AwsOptions {
            endpoint: Some(endpoint.into()),
            credentials: Some(("test".into(), "test".into())),
            ..AwsOptions::new(prefix)
        }
    }
}

/// One deployment's clients and names.
#[derive(Clone)]
pub struct Aws {
    pub names: Names,
    ddb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    region: String,
    requests: RequestCounter,
    options: AwsOptions,
}

impl Aws {
    /// Builds the clients (nothing is sent yet).
    pub async fn connect(options: AwsOptions) -> Result<Aws, StorageError> {
        let names = Names::new(&options.prefix)?;
        // Always a region of our own (see `crate::aws_sdk`).
        let region = options
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let config = crate::aws_sdk::load(&SdkSettings {
            endpoint: options.endpoint.clone(),
            credentials: options.credentials.clone(),
            attempt_timeout: Duration::from_secs(20),
            retry: Some(
                RetryConfig::standard()
                    .with_max_attempts(options.max_attempts)
                    .with_initial_backoff(options.initial_backoff),
            ),
            ..SdkSettings::new(region.clone())
        })
        .await;
        let emulated = config.endpoint_url().is_some();
        let requests = RequestCounter::default();
        let ddb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&config)
                .region(Region::new(region.clone()))
                .interceptor(requests.clone())
                .build(),
        );
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .region(Region::new(region.clone()))
                // Emulators serve buckets by path, not by host name.
                .force_path_style(emulated)
                .interceptor(requests.clone())
                .build(),
        );
        Ok(Aws {
            names,
            ddb,
            s3,
            region,
            requests,
            options,
        })
    }

    /// Documents and jobs on this deployment.
    pub fn store(&self) -> AwsStore {
        AwsStore {
            inner: Arc::new(StoreInner {
                ddb: self.ddb.clone(),
                s3: self.s3.clone(),
                names: self.names.clone(),
                page_size: self.options.page_size,
                spill_bytes: self.options.spill_bytes,
                user_heads: Mutex::default(),
                epochs: Mutex::default(),
                data_id: Mutex::default(),
            }),
        }
    }

    /// Blobs on this deployment.
    pub fn blobs(&self) -> AwsBlobs {
        AwsBlobs::new(self.s3.clone(), self.names.blob_bucket.clone())
    }

    /// The requests sent so far by every client of this deployment.
    pub fn requests(&self) -> &RequestCounter {
        &self.requests
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The DynamoDB client (counted), for operations and tests that look
    /// at the tables directly.
    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.ddb
    }

    /// The S3 client (counted), e.g. for presigning.
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }
}

/// Where a compaction ([`AwsStore::compact_stopping`]) stops: `Never` in service; the
/// others stop it as a crash would, for tests of what readers and the next
/// compaction make of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactStop {
    Never,
    /// The snapshot object exists; the pointer has not moved.
    AfterSnapshotWritten,
    /// The pointer moved; nothing folded was deleted.
    AfterPointerMoved,
}

/// Where a purge ([`AwsStore::purge_doc_stopping`]) stops: `Never` in
/// service; the others stop it as a crash would (`purge_steps.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeStop {
    Never,
    /// The document is marked purged; nothing else is removed.
    AfterMark,
    /// Its blob references are gone and its blobs queued.
    AfterReferences,
    /// Its log and objects are gone too; the listing and the facts' state
    /// are left.
    AfterLog,
}

/// Documents (log, feed, snapshots) and operations on DynamoDB + S3. Cheap
/// to clone.
#[derive(Clone)]
pub struct AwsStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    ddb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    names: Names,
    page_size: Option<i32>,
    spill_bytes: usize,
    /// The last `useq` this process saw per user: the guess an append's
    /// counter condition starts from.
    user_heads: Mutex<HashMap<String, u64>>,
    /// Users' stored epochs and when they were read (`epoch.rs`).
    epochs: Mutex<HashMap<String, (u64, Instant)>>,
    /// The users table's identity and when it was read (`epoch.rs`).
    data_id: Mutex<Option<(String, Instant)>>,
}

/// Users whose counter this process remembers; past it the memory starts
/// over (a wrong guess costs one retried transaction, never correctness).
const REMEMBERED_USERS: usize = 10_000;

impl StoreInner {
    fn remembered_head(&self, user: &str) -> Option<u64> {
        self.user_heads
            .lock()
            .expect("user heads")
            .get(user)
            .copied()
    }

    fn remember_head(&self, user: &str, useq: u64) {
        let mut heads = self.user_heads.lock().expect("user heads");
        if heads.len() >= REMEMBERED_USERS && !heads.contains_key(user) {
            heads.clear();
        }
        heads.insert(user.to_owned(), useq);
    }
}
