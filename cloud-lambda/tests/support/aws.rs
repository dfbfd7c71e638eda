//! The AWS backend against moto: a deployment with its own table and
//! bucket prefix (so tests sharing one moto never see each other's data),
//! created with `Aws::init`, and the conformance suite's view of it.

use std::sync::Arc;

use cloud_lambda::storage::aws::{Aws, AwsOptions};
use cloud_lambda::storage::conformance::Backend;

/// A prefix no other deployment in this moto uses.
pub fn fresh_prefix() -> String {
    format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Options for a fresh deployment on the moto at `endpoint`.
pub fn options(endpoint: &str) -> AwsOptions {
    AwsOptions {
        region: Some("eu-central-1".into()),
        ..AwsOptions::emulator(fresh_prefix(), endpoint)
    }
}

/// A deployment made with `options`, its tables and buckets created.
pub async fn deployment_with(options: AwsOptions) -> Aws {
    let aws = Aws::connect(options).await.expect("AWS clients");
    aws.init()
        .await
        .expect("create the tables and buckets on moto");
    aws
}

/// A fresh deployment on the moto at `endpoint`.
pub async fn deployment(endpoint: &str) -> Aws {
    deployment_with(options(endpoint)).await
}

/// The conformance suite's view of a deployment.
pub fn backend(aws: &Aws) -> Backend {
    let store = Arc::new(aws.store());
    Backend {
        docs: store.clone(),
        blobs: Arc::new(aws.blobs()),
        ops: store,
        guard: Box::new(()),
    }
}
