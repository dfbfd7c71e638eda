//! Creating a deployment's tables and buckets from the schema file: what
//! `atelier-cloud init-aws` does against an emulator (on AWS the
//! infrastructure code creates them from the same file). Idempotent: what
//! exists is left alone, so it can run before every test or start.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, VersioningConfiguration,
};

use super::Aws;
use super::errors::{build_error, code_of, sdk_error};
use super::schema::{BucketDef, KeySchema, TableDef};
use crate::storage::StorageError;

/// How long a new table may take to become active.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// What `init` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InitReport {
    pub created_tables: Vec<String>,
    pub existing_tables: Vec<String>,
    pub created_buckets: Vec<String>,
    pub existing_buckets: Vec<String>,
}

impl Aws {
    /// Creates every table and bucket of this deployment that is missing.
    pub async fn init(&self) -> Result<InitReport, StorageError> {
        let mut report = InitReport::default();
        let names = &self.names;
        for (name, def) in names.tables() {
            if self.create_table(&name, def).await? {
                report.created_tables.push(name);
            } else {
                report.existing_tables.push(name);
            }
        }
        for (name, def) in names.tables() {
            self.wait_active(&name).await?;
            self.table_settings(&name, def).await?;
        }
        for (bucket, def) in names.buckets() {
            if self.create_bucket(&bucket).await? {
                report.created_buckets.push(bucket.clone());
            } else {
                report.existing_buckets.push(bucket.clone());
            }
            self.bucket_settings(&bucket, def).await?;
        }
        Ok(report)
    }

    /// Versioning and the expiry of noncurrent versions, as the schema
    /// says (both idempotent).
    async fn bucket_settings(&self, bucket: &str, def: &BucketDef) -> Result<(), StorageError> {
        if def.versioned {
            self.s3
                .put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| sdk_error(&format!("turning versioning on for {bucket}"), e))?;
        }
        if let Some(days) = def.noncurrent_version_expiration_days {
            let rule = LifecycleRule::builder()
                .id("expire-noncurrent-versions")
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix("").build())
                .noncurrent_version_expiration(
                    NoncurrentVersionExpiration::builder()
                        .noncurrent_days(days)
                        .build(),
                )
                .expiration(
                    LifecycleExpiration::builder()
                        .expired_object_delete_marker(true)
                        .build(),
                )
                .build()
                .map_err(build_error)?;
            self.s3
                .put_bucket_lifecycle_configuration()
                .bucket(bucket)
                .lifecycle_configuration(
                    BucketLifecycleConfiguration::builder()
                        .rules(rule)
                        .build()
                        .map_err(build_error)?,
                )
                .send()
                .await
                .map_err(|e| sdk_error(&format!("setting the lifecycle of {bucket}"), e))?;
        }
        Ok(())
    }

    /// `false` if the table already exists.
    async fn create_table(&self, name: &str, def: &TableDef) -> Result<bool, StorageError> {
        let mut attributes: Vec<(String, String)> = Vec::new();
        let mut declare = |keys: &KeySchema| {
            for key in std::iter::once(&keys.partition).chain(&keys.sort) {
                if !attributes.iter().any(|(n, _)| *n == key.name) {
                    attributes.push((key.name.clone(), key.kind.clone()));
                }
            }
        };
        declare(&def.keys);
        for index in &def.global_secondary_indexes {
            declare(&index.keys);
        }
        let mut create = self
            .ddb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(&def.keys)?));
        for (attr, kind) in attributes {
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(ScalarAttributeType::from(kind.as_str()))
                    .build()
                    .map_err(build_error)?,
            );
        }
        for index in &def.global_secondary_indexes {
            create = create.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(&index.name)
                    .set_key_schema(Some(key_schema(&index.keys)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(index.projection.as_str()))
                            .build(),
                    )
                    .build()
                    .map_err(build_error)?,
            );
        }
        match create.send().await {
            Ok(_) => {
                tracing::info!(table = name, "created table");
                Ok(true)
            }
            Err(e) if code_of(&e) == Some("ResourceInUseException") => Ok(false),
            Err(e) => Err(sdk_error(&format!("creating table {name}"), e)),
        }
    }

    async fn wait_active(&self, name: &str) -> Result<(), StorageError> {
        let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
        loop {
            let described = self
                .ddb
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("describing table {name}"), e))?;
            let status = described.table().and_then(|t| t.table_status().cloned());
            if status == Some(TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StorageError::Backend(format!(
                    "table {name} is still {status:?} after {ACTIVE_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// TTL and point-in-time recovery, as the schema says.
    async fn table_settings(&self, name: &str, def: &TableDef) -> Result<(), StorageError> {
        if let Some(ttl) = &def.ttl_attribute {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(ttl)
                .enabled(true)
                .build()
                .map_err(build_error)?;
            match self
                .ddb
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(spec)
                .send()
                .await
            {
                Ok(_) => {}
                // Already on (AWS refuses to enable it twice).
                Err(e) if code_of(&e) == Some("ValidationException") => {}
                Err(e) => return Err(sdk_error(&format!("enabling TTL on {name}"), e)),
            }
        }
        if def.point_in_time_recovery {
            let spec = PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .map_err(build_error)?;
            self.ddb
                .update_continuous_backups()
                .table_name(name)
                .point_in_time_recovery_specification(spec)
                .send()
                .await
                .map_err(|e| sdk_error(&format!("enabling point-in-time recovery on {name}"), e))?;
        }
        Ok(())
    }

    /// `false` if the bucket already exists (and is ours).
    async fn create_bucket(&self, bucket: &str) -> Result<bool, StorageError> {
        let mut create = self.s3.create_bucket().bucket(bucket);
        let region = self.region.as_str();
        // us-east-1 is the one region that takes no location constraint.
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => {
                tracing::info!(bucket, "created bucket");
                Ok(true)
            }
            Err(e) if code_of(&e) == Some("BucketAlreadyOwnedByYou") => Ok(false),
            Err(e) => Err(sdk_error(&format!("creating bucket {bucket}"), e)),
        }
    }
}

fn key_schema(keys: &KeySchema) -> Result<Vec<KeySchemaElement>, StorageError> {
    let mut out = vec![
        KeySchemaElement::builder()
            .attribute_name(&keys.partition.name)
            .key_type(KeyType::Hash)
            .build()
            .map_err(build_error)?,
    ];
    if let Some(sort) = &keys.sort {
        out.push(
            KeySchemaElement::builder()
                .attribute_name(&sort.name)
                .key_type(KeyType::Range)
                .build()
                .map_err(build_error)?,
        );
    }
    Ok(out)
}
