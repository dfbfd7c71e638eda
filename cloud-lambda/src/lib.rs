//! `cloud-lambda`: Atelier's cloud. One axum `Router` serves the sync
//! endpoint, blobs, provider jobs and the Replicate webhook over the
//! embedded storage backend (SQLite + files, the default of `atelier-cloud
//! serve`).
//!
//! - [`app`]: the Router and its state.
//! - [`sync`]: the sync endpoint's logic.
//! - [`write`]: the one path every document write takes (a pure decision,
//!   one adapter, a byte-bounded cache of warm documents).
//! - [`jobs`]: provider jobs, launched for queued tool requests;
//!   [`launcher`]: where a launched job runs (a tokio task, or on Lambda
//!   an asynchronous self-invocation).
//! - [`auth`]: bearer JWT (RS256) validation against a JWKS; the embedded
//!   server's own issuer.
//! - [`storage`]: the fallible storage trait, its embedded implementation,
//!   and the conformance suite every backend passes.
//! - [`lambda`]: the Lambda entry point (API Gateway HTTP API events and
//!   job self-invocations through the same Router).
//! - [`embedded`]: the embedded server as a running thing (`atelier-cloud
//!   serve`, the desktop app's in-process default).
//! - [`error`]: the API's error type.
//! - [`local`]: the Router as an in-process sync transport.
//! - [`registry`]: provider models, tools, prices and retirement (data in
//!   `models.json`).
//! - [`providers`]: the Gemini, Imagen and Replicate clients, their error
//!   classification (transient or permanent) and Replicate webhook signatures.
//! - [`api`]: the REST resources (assets, messages, costs), the OpenAPI
//!   document, request logs.
//! - [`projection`]: keeps the listing and cost-event projections in step
//!   with the documents.
//! - [`limits`]: per-user request rate, input bounds, spend limits.
//! - [`metrics`]: counters for alarms (Prometheus text, CloudWatch EMF).
//! - [`purge`]: removes assets that stayed in the trash past the retention
//!   period, and the blobs no other asset names.

pub mod api;
pub mod app;
pub mod auth;
#[cfg(feature = "aws")]
pub mod aws_sdk;
pub mod blob_routes;
pub mod embedded;
pub mod error;
pub mod images;
pub mod jobs;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod limits;
pub mod local;
pub mod metrics;
pub mod projection;
pub mod providers;
pub mod purge;
pub mod registry;
pub mod state;
pub mod storage;
pub mod sync;
pub mod webhook_route;
pub mod write;
