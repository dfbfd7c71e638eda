//! The tables and buckets of the AWS backend, read from
//! `cloud-lambda/aws-schema.json`: the one source of truth for their names,
//! key schemas, secondary indexes, TTL attributes and object key layouts,
//! shared with the infrastructure code. This module parses it, names every
//! table and bucket for a deployment prefix, and holds the attribute names
//! the code uses (a test checks them against the file).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::storage::StorageError;

/// The schema file, compiled in.
pub const SCHEMA_JSON: &str = include_str!("../../../aws-schema.json");

/// The parsed schema file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    pub version: u32,
    pub billing_mode: String,
    pub tables: Vec<TableDef>,
    pub buckets: Vec<BucketDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableDef {
    pub name: String,
    pub purpose: String,
    pub keys: KeySchema,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexDef>,
    pub ttl_attribute: Option<String>,
    pub point_in_time_recovery: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeySchema {
    pub partition: KeyAttr,
    pub sort: Option<KeyAttr>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeyAttr {
    pub name: String,
    /// `S`, `N` or `B`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IndexDef {
    pub name: String,
    pub purpose: String,
    pub keys: KeySchema,
    /// `KEYS_ONLY` or `ALL`.
    pub projection: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketDef {
    pub name: String,
    pub purpose: String,
    /// Object key layouts by kind, e.g. `raw: users/{userId}/raw/{sha256}`.
    pub keys: BTreeMap<String, String>,
    /// Versioning on: deleted objects stay as noncurrent versions.
    #[serde(default)]
    pub versioned: bool,
    /// Noncurrent versions expire this many days after they became so.
    pub noncurrent_version_expiration_days: Option<i32>,
    /// The object tag naming each object's kind (a key of `keys`), set on
    /// every write; lifecycle rules select on it.
    pub kind_tag: Option<String>,
}

/// The schema compiled into this build. It is checked by a unit test, so
/// a broken file never ships.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::from_str(SCHEMA_JSON).expect("aws-schema.json parses (checked by a unit test)")
    })
}

impl Schema {
    pub fn table(&self, name: &str) -> &TableDef {
        self.tables
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("aws-schema.json has no table {name:?}"))
    }

    pub fn bucket(&self, name: &str) -> &BucketDef {
        self.buckets
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("aws-schema.json has no bucket {name:?}"))
    }
}

/// Attribute and index names as the code uses them.
pub(super) mod attr {
    pub const USER_ID: &str = "user_id";
    pub const DOC_ID: &str = "doc_id";
    pub const USEQ: &str = "useq";
    pub const LAST_USEQ: &str = "last_useq";
    pub const EPOCH: &str = "epoch";
    pub const OWNER: &str = "owner";
    pub const HEADS: &str = "heads";
    pub const SNAPSHOT_UPTO: &str = "snapshot_upto";
    pub const SNAPSHOT_KEY: &str = "snapshot_key";
    pub const PREV: &str = "prev";
    pub const BYTES: &str = "bytes";
    pub const SPILL_KEY: &str = "spill_key";
    pub const SPILL_BYTES: &str = "spill_bytes";
    pub const OP_ID: &str = "id";
    pub const STATUS: &str = "status";
    pub const PROVIDER_REF: &str = "provider_ref";
    pub const ATTEMPTS: &str = "attempts";
    pub const ERROR: &str = "error";
    pub const INPUT: &str = "input";
    pub const CREATED_AT: &str = "created_at";
    pub const UPDATED_AT: &str = "updated_at";
    pub const UNFINISHED: &str = "unfinished";
    pub const WEBHOOK_ID: &str = "webhook_id";
    pub const SEEN_AT: &str = "seen_at";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const STARTED_BY: &str = "started_by";
    pub const LEASE_OWNER: &str = "lease_owner";
    pub const LEASE_EXPIRES_AT: &str = "lease_expires_at";
    // Listings.
    pub const TITLE: &str = "title";
    pub const COVER: &str = "cover";
    pub const ACTIVE_VERSION_ID: &str = "active_version_id";
    pub const MESSAGE_COUNT: &str = "message_count";
    pub const COST_EVENT_COUNT: &str = "cost_event_count";
    pub const LIST_ORDER: &str = "list_order";
    pub const DELETED_AT: &str = "deleted_at";
    // Cost events.
    pub const EVENT_KEY: &str = "event_key";
    pub const EVENT_ID: &str = "event_id";
    pub const TS: &str = "ts";
    pub const PROVIDER: &str = "provider";
    pub const MODEL: &str = "model";
    pub const UNITS: &str = "units";
    pub const UNIT: &str = "unit";
    pub const COST_NANO_USD: &str = "cost_nano_usd";
    pub const MESSAGE_ID: &str = "message_id";
    // Purging.
    pub const PURGED: &str = "purged";
    pub const PART: &str = "part";
    pub const TRASHED_SINCE: &str = "trashed_since";
    pub const TRASH_STATE: &str = "trash_state";
    pub const BLOBS_DIGEST: &str = "blobs_digest";
    pub const REF_KEY: &str = "ref_key";
    pub const SHA256: &str = "sha256";

    pub const BY_PROVIDER_REF: &str = "by_provider_ref";
    pub const UNFINISHED_INDEX: &str = "unfinished";
    pub const STARTED_BY_USER: &str = "started_by_user";
    pub const LISTINGS_BY_USER: &str = "by_user";
    pub const TRASH_INDEX: &str = "trash";
}

/// Longest deployment prefix: the longest table name then stays far under
/// DynamoDB's 255 and the bucket names under S3's 63 characters.
pub const MAX_PREFIX_LEN: usize = 40;

/// Checks a deployment prefix: lowercase ASCII letters, digits and `-`
/// (valid in both table and bucket names), starting with a letter or digit.
pub fn validate_prefix(prefix: &str) -> Result<(), StorageError> {
    let ok = prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && prefix.bytes().next().is_none_or(|c| c != b'-');
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "prefix {prefix:?}: use at most {MAX_PREFIX_LEN} lowercase letters, digits and '-', \
             not starting with '-' (it begins table and bucket names)"
        )))
    }
}

/// Every table and bucket name of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub prefix: String,
    pub users: String,
    pub docs: String,
    pub log: String,
    pub feed: String,
    pub listings: String,
    pub cost_events: String,
    pub operations: String,
    pub deliveries: String,
    pub purge_facts: String,
    pub blob_refs: String,
    pub blob_deletions: String,
    pub blob_bucket: String,
    pub doc_bucket: String,
}

impl Names {
    pub fn new(prefix: &str) -> Result<Names, StorageError> {
        validate_prefix(prefix)?;
        let s = schema();
        let t = |name: &str| format!("{prefix}{}", s.table(name).name);
        let b = |name: &str| format!("{prefix}{}", s.bucket(name).name);
        Ok(Names {
            prefix: prefix.to_owned(),
            users: t("users"),
            docs: t("docs"),
            log: t("log"),
            feed: t("feed"),
            listings: t("listings"),
            cost_events: t("cost_events"),
            operations: t("operations"),
            deliveries: t("webhook_deliveries"),
            purge_facts: t("purge_facts"),
            blob_refs: t("blob_refs"),
            blob_deletions: t("blob_deletions"),
            blob_bucket: b("blobs"),
            doc_bucket: b("docs"),
        })
    }

    /// Every table, with its definition.
    pub fn tables(&self) -> Vec<(String, &'static TableDef)> {
        schema()
            .tables
            .iter()
            .map(|t| (format!("{}{}", self.prefix, t.name), t))
            .collect()
    }

    /// Every bucket, with its definition.
    pub fn buckets(&self) -> Vec<(String, &'static BucketDef)> {
        schema()
            .buckets
            .iter()
            .map(|b| (format!("{}{}", self.prefix, b.name), b))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parses_and_names_every_table_and_bucket() {
        let s: Schema = serde_json::from_str(SCHEMA_JSON).unwrap();
        assert_eq!(s.version, 1);
        assert_eq!(s.billing_mode, "PAY_PER_REQUEST");
        let names = Names::new("atelier-dev-").unwrap();
        assert_eq!(names.log, "atelier-dev-log");
        assert_eq!(names.deliveries, "atelier-dev-webhook_deliveries");
        assert_eq!(names.blob_bucket, "atelier-dev-blobs");
        assert_eq!(names.tables().len(), s.tables.len());
        for (name, _) in names.tables() {
            assert!(name.len() <= 255 && name.len() >= 3, "{name}");
        }
        let longest = Names::new(&"p".repeat(MAX_PREFIX_LEN)).unwrap();
        for (bucket, _) in longest.buckets() {
            assert!(bucket.len() <= 63, "{bucket}");
        }
        // The documents' bucket keeps deleted objects through the tables'
        // point-in-time recovery window (35 days).
        let docs = s.buckets.iter().find(|b| b.name == "docs").unwrap();
        assert!(docs.versioned);
        assert_eq!(docs.noncurrent_version_expiration_days, Some(35));
        for t in &s.tables {
            assert!(!t.purpose.is_empty() && t.keys.partition.kind.len() == 1);
            for key in std::iter::once(&t.keys.partition).chain(&t.keys.sort) {
                assert!(["S", "N", "B"].contains(&key.kind.as_str()), "{}", key.name);
            }
        }
    }

    /// The key, index and TTL attributes the code uses are the ones the
    /// schema declares (so the infrastructure creates what the code reads).
    #[test]
    fn the_code_uses_the_schemas_key_attributes() {
        use attr::*;
        let s = schema();
        let keys = |table: &str| {
            let k = &s.table(table).keys;
            (
                k.partition.name.clone(),
                k.sort.as_ref().map(|a| a.name.clone()),
            )
        };
        let one = |a: &str| (a.to_owned(), None);
        let two = |a: &str, b: &str| (a.to_owned(), Some(b.to_owned()));
        assert_eq!(keys("users"), one(USER_ID));
        assert_eq!(keys("docs"), one(DOC_ID));
        assert_eq!(keys("log"), two(DOC_ID, USEQ));
        assert_eq!(keys("feed"), two(USER_ID, USEQ));
        assert_eq!(keys("listings"), one(DOC_ID));
        assert_eq!(keys("cost_events"), two(USER_ID, EVENT_KEY));
        assert_eq!(keys("operations"), one(OP_ID));
        assert_eq!(keys("webhook_deliveries"), one(WEBHOOK_ID));
        assert_eq!(keys("purge_facts"), two(DOC_ID, PART));
        assert_eq!(keys("blob_refs"), two(USER_ID, REF_KEY));
        assert_eq!(keys("blob_deletions"), two(USER_ID, SHA256));
        let index_of = |table: &str, name: &str| {
            let i = s
                .table(table)
                .global_secondary_indexes
                .iter()
                .find(|i| i.name == name)
                .unwrap();
            (
                i.keys.partition.name.clone(),
                i.keys.sort.as_ref().map(|a| a.name.clone()),
            )
        };
        let index = |name: &str| index_of("operations", name);
        assert_eq!(index(BY_PROVIDER_REF), one(PROVIDER_REF));
        assert_eq!(index(UNFINISHED_INDEX), two(UNFINISHED, CREATED_AT));
        assert_eq!(index(STARTED_BY_USER), two(STARTED_BY, CREATED_AT));
        assert_eq!(
            index_of("listings", LISTINGS_BY_USER),
            two(USER_ID, LIST_ORDER)
        );
        assert_eq!(
            index_of("purge_facts", TRASH_INDEX),
            two(TRASH_STATE, TRASHED_SINCE)
        );
        assert_eq!(
            s.table("webhook_deliveries").ttl_attribute.as_deref(),
            Some(EXPIRES_AT)
        );
        // Documented non-key attributes.
        for (table, names) in [
            ("users", &[LAST_USEQ, EPOCH][..]),
            (
                "docs",
                &[OWNER, LAST_USEQ, HEADS, SNAPSHOT_UPTO, SNAPSHOT_KEY, PURGED],
            ),
            ("log", &[PREV, BYTES, SPILL_KEY, SPILL_BYTES]),
            ("feed", &[DOC_ID]),
            (
                "listings",
                &[
                    USER_ID,
                    USEQ,
                    TITLE,
                    COVER,
                    ACTIVE_VERSION_ID,
                    MESSAGE_COUNT,
                    COST_EVENT_COUNT,
                    CREATED_AT,
                    UPDATED_AT,
                    DELETED_AT,
                    TRASHED_SINCE,
                ][..],
            ),
            (
                "cost_events",
                &[
                    DOC_ID,
                    EVENT_ID,
                    TS,
                    PROVIDER,
                    MODEL,
                    UNITS,
                    UNIT,
                    COST_NANO_USD,
                    MESSAGE_ID,
                ][..],
            ),
            (
                "operations",
                &[
                    USER_ID,
                    DOC_ID,
                    STATUS,
                    ATTEMPTS,
                    ERROR,
                    INPUT,
                    UPDATED_AT,
                    STARTED_BY,
                    LEASE_OWNER,
                    LEASE_EXPIRES_AT,
                ][..],
            ),
            ("webhook_deliveries", &[SEEN_AT, EXPIRES_AT]),
            (
                "purge_facts",
                &[
                    USER_ID,
                    USEQ,
                    TRASHED_SINCE,
                    TRASH_STATE,
                    BLOBS_DIGEST,
                    PURGED,
                ][..],
            ),
        ] {
            for name in names {
                assert!(
                    s.table(table).attributes.contains_key(*name),
                    "{table}.{name} is not documented in aws-schema.json"
                );
            }
        }
    }

    #[test]
    fn prefixes_must_be_valid_in_table_and_bucket_names() {
        for good in ["", "atelier-dev-", "t1-", "0abc"] {
            assert!(validate_prefix(good).is_ok(), "{good:?}");
        }
        let long = "a".repeat(MAX_PREFIX_LEN + 1);
        for bad in ["Atelier-", "-x", "a_b", "a.b", "a b", long.as_str()] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
