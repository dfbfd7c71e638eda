//! How a provider job outlives the request that started it. A
//! [`JobLauncher`] gets an operation that was just created (or needs
//! resuming) and sees that [`Jobs::run`] runs it to its end somewhere:
//!
//! - [`TaskLauncher`] (`atelier-cloud serve`, the desktop's embedded
//!   server): a tokio task in this process, at most one per operation.
//! - `lambda::invoke::InvokeLauncher` (on AWS Lambda): an asynchronous
//!   invocation of this same function (`InvocationType=Event`) carrying
//!   the user and the operation id; that invocation runs [`Jobs::run`]
//!   itself. A Lambda instance is frozen once it has answered, so a task
//!   spawned there would not run; the invoke is made before the answer.
//!
//! Either way the job itself is the same code, and [`Jobs::run`] is
//! idempotent (a finished operation is left alone), so launching twice
//! (a retried asynchronous invoke, a webhook) does no harm.

use std::sync::Arc;

use crate::jobs::Jobs;
use crate::storage::jobs::Operation;

/// Starts an operation's run beyond the current request.
#[async_trait::async_trait]
pub trait JobLauncher: Send + Sync + std::fmt::Debug {
    /// Sees that `op` runs to its end; returns once it is on its way.
    async fn launch(&self, jobs: &Arc<Jobs>, op: Operation);
}

/// Runs jobs as tokio tasks of this process.
#[derive(Debug, Default, Clone, Copy)]
pub struct TaskLauncher;

#[async_trait::async_trait]
impl JobLauncher for TaskLauncher {
    async fn launch(&self, jobs: &Arc<Jobs>, op: Operation) {
        jobs.spawn(op);
    }
}
