//! Provider jobs: from a queued tool-request message to a new version.
//!
//! Lifecycle. When a push brings a tool request with status `queued` to the
//! server, [`Jobs::start`] creates exactly one operation for it (a
//! conditional write keyed by the message id, so retried pushes and two
//! devices pushing the same request never run it twice) and launches it.
//! [`Jobs::run`] then resolves the model in the registry (a retired model
//! fails before any request, naming its replacement), writes `running`,
//! calls the provider (transient errors retry with backoff, honouring the
//! provider's retry hints; permanent ones end `failed` with a readable
//! reason), stores the output image and its thumbnail as blobs at once, and
//! writes the new version, the cost event (priced from the provider's own
//! usage numbers) and the final status into the document as one server
//! change. Devices see all of it by polling.
//!
//! Cancel: the user sets the message to `canceled` (a normal sync); the job
//! checks before each step and before writing results, cancels a Replicate
//! prediction, and records the cost of what was already spent. An asset
//! moved to the trash stops its jobs the same way, at the same checks (so
//! a queued request never reaches the provider): the message ends
//! `canceled` with the reason `asset_deleted`, written as a trash change
//! (not an edit after the deletion).
//!
//! Once across processes. A run first takes the operation's lease in the
//! store (`lease.rs`), renews it while it runs and gives it up at the end:
//! while it is live, every other run of the operation (another server
//! sharing the store, a webhook, a resume, a retried invocation) stops
//! before calling anything. A runner that dies leaves a lease that expires;
//! [`Jobs::keep_resuming`] then takes the job over, and the new run resumes
//! from the operation's stored state (a Replicate prediction already made
//! is followed, not made again; a request the document shows finished is
//! not run again).
//!
//! Outliving the request. On `serve` a launch is a tokio task. On Lambda
//! the same [`Jobs::run`] is invoked by an asynchronous self-invocation
//! carrying the operation id (the [`crate::jobs::launcher::JobLauncher`] is the
//! only difference), and a
//! Replicate job that is still running when an invocation ends is finished
//! by its webhook (`POST /replicate/webhook`), which calls [`Jobs::run`]
//! again: `run` is idempotent, picking up from the operation's stored state.
//!
//! The steps of a run are in `execute.rs`, the provider calls in `call.rs`.

mod call;
mod execute;
pub mod launcher;
mod lease;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use core_sync::DocId;
use core_sync::model::{ErrorInfo, MessageStatus, MessageUpdate, VersionView};
use core_sync::now_millis;
use tokio::sync::Notify;
use tracing::Instrument as _;

use crate::providers::ProviderConfig;
use crate::providers::inputs::PublicInputUrls;
use crate::registry::{Registry, Usage};
use crate::storage::BlobStore;
use crate::storage::jobs::{JobStore, OpStatus, Operation};
use crate::write::{DocWriter, RequestLauncher, WriteError};

/// Tunables.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Attempts of a provider call on transient errors.
    pub max_attempts: u32,
    /// First retry delay (doubles), unless the provider names one.
    pub retry_base: Duration,
    /// Longest retry delay honoured.
    pub retry_max: Duration,
    /// How often a running Replicate prediction is polled when no webhook
    /// arrives (a missed webhook is covered by polling).
    pub poll_interval: Duration,
    /// Give up on a prediction after this long.
    pub prediction_timeout: Duration,
    /// This server's public base URL, for Replicate's webhook; without one,
    /// predictions are only polled.
    pub public_url: Option<String>,
    /// Short-lived public URLs of the server's own storage, for inputs a
    /// provider can fetch (the AWS backend); `None` uploads them to the
    /// provider instead (see `providers::inputs`).
    pub public_inputs: Option<Arc<dyn PublicInputUrls>>,
    /// Jobs per user per hour and the daily spend cap, checked where an
    /// operation is created.
    pub limits: crate::limits::SpendLimits,
    /// How long a run's lease on its operation lasts unless renewed (it is
    /// renewed every third of this), and how often [`Jobs::keep_resuming`]
    /// looks for jobs whose runner went away.
    pub lease: Duration,
    /// Where a launched job runs: a tokio task (the default) or, on Lambda,
    /// an asynchronous invocation of the function (see [`crate::jobs::launcher`]).
    pub launcher: Arc<dyn crate::jobs::launcher::JobLauncher>,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            max_attempts: 4,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            poll_interval: Duration::from_secs(2),
            prediction_timeout: Duration::from_secs(15 * 60),
            public_url: None,
            public_inputs: None,
            limits: crate::limits::SpendLimits::default(),
            lease: Duration::from_secs(30),
            launcher: Arc::new(crate::jobs::launcher::TaskLauncher),
        }
    }
}

pub struct Jobs {
    docs: Arc<DocWriter>,
    blobs: Arc<dyn BlobStore>,
    ops: Arc<dyn JobStore>,
    registry: Arc<Registry>,
    providers: ProviderConfig,
    config: JobConfig,
    /// Running Replicate jobs wait here for their webhook.
    wakeups: Mutex<HashMap<String, Arc<Notify>>>,
    /// Operations this process runs now: a launch of one of them is skipped
    /// without asking the store (the lease is what decides).
    running: Mutex<HashSet<String>>,
    /// This process's part of lease owner ids.
    instance: String,
    /// Serializes the limit check and the creation of operations in this
    /// process, so concurrent pushes cannot both pass the last free slot.
    admission: tokio::sync::Mutex<()>,
}

/// How a job is ended by a person or a provider: the message's last words.
#[derive(Debug)]
enum Ending {
    Failed {
        code: String,
        message: String,
    },
    Canceled,
    /// The asset went to the trash: stopped like a cancel, with the reason
    /// in the message (`Jobs::stop_in_trash`).
    Trashed,
}

/// The code of a request the trash stopped.
pub const TRASHED_CODE: &str = "asset_deleted";

/// The reason a request the trash stopped carries.
fn trashed_reason(started: bool) -> ErrorInfo {
    ErrorInfo {
        code: TRASHED_CODE.into(),
        message: if started {
            "Stopped: the asset was moved to the trash while this ran; what the provider \
             had already done is recorded."
        } else {
            "Not run: the asset was moved to the trash before this request reached the \
             provider, so nothing was spent. Restore the asset and ask again."
        }
        .into(),
    }
}

type JobResult<T> = Result<T, Ending>;

impl From<WriteError> for Ending {
    fn from(e: WriteError) -> Self {
        Ending::Failed {
            code: "internal".into(),
            message: format!("The cloud could not update the asset: {e}"),
        }
    }
}

fn fail(code: &str, message: impl Into<String>) -> Ending {
    Ending::Failed {
        code: code.into(),
        message: message.into(),
    }
}

/// A request's input: the version id it refers to, and that version if
/// the asset has it.
type InputVersion = (Option<String>, Option<VersionView>);

/// Starts jobs for the tool requests a write queued (what the write path
/// calls; weak, so the writer and the jobs do not keep each other alive).
struct Launcher(std::sync::Weak<Jobs>);

#[async_trait::async_trait]
impl RequestLauncher for Launcher {
    async fn queued(&self, user: &str, doc: &DocId, message_ids: Vec<String>) {
        if let Some(jobs) = self.0.upgrade() {
            jobs.start(user, doc, message_ids).await;
        }
    }
}

/// What a provider produced.
struct Output {
    images: Vec<(String, Vec<u8>)>,
    usage: Usage,
}

impl Jobs {
    /// The job runner over `docs`, which it also registers with as the
    /// launcher of tool requests a write queues.
    pub fn new(
        docs: Arc<DocWriter>,
        blobs: Arc<dyn BlobStore>,
        ops: Arc<dyn JobStore>,
        registry: Arc<Registry>,
        providers: ProviderConfig,
        config: JobConfig,
    ) -> Arc<Jobs> {
        let jobs = Arc::new(Jobs {
            docs: docs.clone(),
            blobs,
            ops,
            registry,
            providers,
            config,
            wakeups: Mutex::new(HashMap::new()),
            running: Mutex::new(HashSet::new()),
            instance: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            admission: tokio::sync::Mutex::new(()),
        });
        docs.set_launcher(Arc::new(Launcher(Arc::downgrade(&jobs))));
        jobs
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn registry_arc(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Creates (exactly once, by conditional write) and launches an
    /// operation for each of these queued tool-request messages of `doc_id`.
    /// Over a spend limit (`crate::limits::admit`) the operation is created
    /// `failed` instead, and the message fails with the reason.
    pub async fn start(self: &Arc<Self>, user: &str, doc_id: &DocId, message_ids: Vec<String>) {
        let _admission = self.admission.lock().await;
        for id in message_ids {
            if matches!(self.ops.get_operation(user, &id).await, Ok(Some(_))) {
                continue;
            }
            let now = now_millis();
            let refusal = crate::limits::admit(
                &self.config.limits,
                self.ops.as_ref(),
                self.docs.docs().as_ref(),
                user,
                now,
            )
            .await
            .err();
            let op = Operation {
                id,
                user: user.to_owned(),
                doc_id: doc_id.clone(),
                status: if refusal.is_some() {
                    OpStatus::Failed
                } else {
                    OpStatus::Queued
                },
                provider_ref: None,
                attempts: 0,
                error: refusal.as_ref().map(|r| r.message.clone()),
                input: None,
                created_at: now,
                updated_at: now,
            };
            match (self.ops.create_operation(&op).await, refusal) {
                (Ok(true), None) => self.launch(op).await,
                (Ok(true), Some(refusal)) => self.refuse(&op, refusal).await,
                (Ok(false), _) => {}
                (Err(e), _) => tracing::error!(op = %op.id, error = %e, "cannot create operation"),
            }
        }
    }

    /// Ends a refused request's message `failed` with the reason.
    async fn refuse(&self, op: &Operation, refusal: crate::limits::Refusal) {
        crate::metrics::global().job_refused();
        tracing::info!(op = %op.id, code = refusal.code, "job refused by a spend limit");
        let update = MessageUpdate {
            status: Some(MessageStatus::Failed),
            error: Some(ErrorInfo {
                code: refusal.code.into(),
                message: refusal.message,
            }),
            ..Default::default()
        };
        let written = self
            .docs
            .write(&op.user, &op.doc_id, |d| {
                d.update_message(&op.id, update.clone(), now_millis())
            })
            .await;
        if let Err(e) = written {
            tracing::error!(op = %op.id, error = %e, "cannot record the refusal");
        }
    }

    /// Starts a job beyond the current request, through the configured
    /// [`crate::jobs::launcher::JobLauncher`]; it runs if it gets the lease.
    pub async fn launch(self: &Arc<Self>, op: Operation) {
        let launcher = self.config.launcher.clone();
        launcher.launch(self, op).await;
    }

    /// Runs a job as a tokio task of this process, unless it already runs
    /// here (what [`crate::jobs::launcher::TaskLauncher`] does).
    pub fn spawn(self: &Arc<Self>, op: Operation) {
        if !self
            .running
            .lock()
            .expect("running lock")
            .insert(op.id.clone())
        {
            return;
        }
        let jobs = Arc::clone(self);
        tokio::spawn(async move {
            jobs.run(&op.user, &op.id).await;
            jobs.running.lock().expect("running lock").remove(&op.id);
        });
    }

    /// Launches every unfinished operation (after a restart); those
    /// another live runner holds stay with it. Returns how many it
    /// launched (a finished operation is never launched again).
    pub async fn resume_all(self: &Arc<Self>) -> usize {
        match self.ops.unfinished().await {
            Ok(ops) => {
                let launched = ops.len();
                for op in ops {
                    self.launch(op).await;
                }
                launched
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot list unfinished operations");
                0
            }
        }
    }

    /// Every lease duration, launches the unfinished operations again, so a
    /// job whose runner went away (its lease expired) is taken over. Runs
    /// until the returned task is aborted.
    pub fn keep_resuming(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let jobs = Arc::downgrade(self);
        let every = self.config.lease;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match jobs.upgrade() {
                    Some(jobs) => {
                        jobs.resume_all().await;
                    }
                    None => return,
                }
            }
        })
    }

    /// Wakes the job waiting on a Replicate prediction (its webhook came);
    /// returns whether one was waiting in this process.
    pub fn wake(&self, provider_ref: &str) -> bool {
        match self.wakeups.lock().expect("wakeups lock").get(provider_ref) {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }

    /// Runs (or resumes) one operation to its end, if it gets the
    /// operation's lease. Idempotent: a finished operation is left alone,
    /// one another runner holds too.
    pub async fn run(&self, user: &str, op_id: &str) {
        let owner = self.new_owner();
        let now = now_millis();
        let expires_at = now.saturating_add(lease::millis(self.config.lease));
        let op = match self
            .ops
            .take_lease(user, op_id, &owner, now, expires_at)
            .await
        {
            Ok(Some(op)) => op,
            Ok(None) => {
                tracing::debug!(op = op_id, "not run: finished, or another runner holds it");
                return;
            }
            Err(e) => {
                tracing::error!(op = op_id, error = %e, "cannot take the operation's lease");
                return;
            }
        };
        let span = tracing::info_span!("job", op = %op.id, doc = %op.doc_id, %owner);
        async {
            let ending = tokio::select! {
                ending = self.execute(op.clone()) => ending,
                () = self.keep_lease(&op, &owner, expires_at) => return,
            };
            self.record_end(op.clone(), ending).await;
            if let Err(e) = self.ops.release_lease(&op.user, &op.id, &owner).await {
                tracing::warn!(error = %e, "cannot release the lease; it expires on its own");
            }
        }
        .instrument(span)
        .await
    }

    /// Writes how a run ended: a failure into the request's message, the
    /// final status into the operation.
    async fn record_end(&self, op: Operation, ending: JobResult<()>) {
        crate::metrics::global().job_finished();
        let (status, error) = match ending {
            Ok(()) => (OpStatus::Succeeded, None),
            Err(Ending::Canceled) => (OpStatus::Canceled, None),
            Err(Ending::Trashed) => {
                // Whether a provider was called: the run counts attempts
                // in the stored operation.
                let stored = self.ops.get_operation(&op.user, &op.id).await;
                let started = stored.ok().flatten().is_some_and(|o| o.attempts > 0);
                let reason = trashed_reason(started);
                tracing::info!("job stopped: the asset is in the trash");
                let id = op.id.clone();
                let written = self
                    .docs
                    .write(&op.user, &op.doc_id, |d| {
                        d.stop_request_in_trash(&id, &reason, now_millis())
                    })
                    .await;
                if let Err(e) = written {
                    tracing::error!(error = %e, "cannot record why the job stopped");
                }
                (OpStatus::Canceled, Some(reason.message))
            }
            Err(Ending::Failed { code, message }) => {
                crate::metrics::global().job_failed();
                tracing::info!(%code, %message, "job failed");
                let update = MessageUpdate {
                    status: Some(MessageStatus::Failed),
                    error: Some(ErrorInfo {
                        code: code.clone(),
                        message: message.clone(),
                    }),
                    ..Default::default()
                };
                let id = op.id.clone();
                let written = self
                    .docs
                    .write(&op.user, &op.doc_id, |d| {
                        match d.update_message(&id, update.clone(), now_millis()) {
                            // Already finished (e.g. canceled meanwhile): keep that.
                            Err(core_sync::model::ModelError::Invalid(_)) => Ok(()),
                            other => other,
                        }
                    })
                    .await;
                if let Err(e) = written {
                    tracing::error!(error = %e, "cannot record the failure");
                }
                (OpStatus::Failed, Some(message))
            }
        };
        let mut done = self
            .ops
            .get_operation(&op.user, &op.id)
            .await
            .ok()
            .flatten()
            .unwrap_or(op);
        // Whatever the outcome, an upload the job made is not needed any more.
        self.release_input(&mut done).await;
        done.status = status;
        done.error = error;
        done.updated_at = now_millis();
        if let Err(e) = self.ops.update_operation(&done).await {
            tracing::error!(error = %e, "cannot record the operation's end");
        }
    }
}
