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
//! prediction, and records the cost of what was already spent.
//!
//! Outliving the request. On `serve` a launch is a tokio task. On Lambda
//! the same [`Jobs::run`] is invoked by an asynchronous self-invocation
//! carrying the operation id (the [`crate::launcher::JobLauncher`] is the
//! only difference), and a
//! Replicate job that is still running when an invocation ends is finished
//! by its webhook (`POST /replicate/webhook`), which calls [`Jobs::run`]
//! again: `run` is idempotent, picking up from the operation's stored state.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use core_sync::DocId;
use core_sync::model::{
    AssetDoc, BlobRef, ErrorInfo, MessageStatus, MessageUpdate, MessageView, NewCostEvent,
    NewVersion, VersionView,
};
use core_sync::now_millis;
use tokio::sync::Notify;

use crate::images;
use crate::providers::inputs::{self, InputImage, Prepared, PublicInputUrls};
use crate::providers::{self, ProviderConfig, ProviderError};
use crate::registry::{Api, Model, Registry, Tool, Usage};
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
    /// Where a launched job runs: a tokio task (the default) or, on Lambda,
    /// an asynchronous invocation of the function (see [`crate::launcher`]).
    pub launcher: Arc<dyn crate::launcher::JobLauncher>,
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
            launcher: Arc::new(crate::launcher::TaskLauncher),
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
    /// Operations running in this process (a webhook or a resume must not
    /// start a second copy).
    running: Mutex<HashSet<String>>,
    /// Serializes the limit check and the creation of operations in this
    /// process, so concurrent pushes cannot both pass the last free slot.
    admission: tokio::sync::Mutex<()>,
}

/// How a job is ended by a person or a provider: the message's last words.
#[derive(Debug)]
enum Ending {
    Failed { code: String, message: String },
    Canceled,
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
    /// [`crate::launcher::JobLauncher`].
    pub async fn launch(self: &Arc<Self>, op: Operation) {
        let launcher = self.config.launcher.clone();
        launcher.launch(self, op).await;
    }

    /// Runs a job as a tokio task of this process, unless it already runs
    /// here (what [`crate::launcher::TaskLauncher`] does).
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

    /// Resumes every unfinished operation (after a restart).
    pub async fn resume_all(self: &Arc<Self>) {
        match self.ops.unfinished().await {
            Ok(ops) => {
                for op in ops {
                    self.launch(op).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list unfinished operations"),
        }
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

    /// Runs (or resumes) one operation to its end. Idempotent: a finished
    /// operation is left alone.
    pub async fn run(&self, user: &str, op_id: &str) {
        let op = match self.ops.get_operation(user, op_id).await {
            Ok(Some(op)) if !op.status.is_terminal() => op,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(op = op_id, error = %e, "cannot read operation");
                return;
            }
        };
        let span = tracing::info_span!("job", op = %op.id, doc = %op.doc_id);
        let _enter = span.enter();
        let ending = self.execute(op.clone()).await;
        let (status, error) = match ending {
            Ok(()) => (OpStatus::Succeeded, None),
            Err(Ending::Canceled) => (OpStatus::Canceled, None),
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

    /// The job's request as the document has it now; `Canceled` if the
    /// user canceled it.
    async fn message(&self, op: &Operation) -> JobResult<MessageView> {
        Ok(self.request(op).await?.0)
    }

    /// The request and the version its input refers to (the first input
    /// version, else the asset's active one): its id, and the version if
    /// the asset has it.
    async fn request(&self, op: &Operation) -> JobResult<(MessageView, InputVersion)> {
        let (m, version) = self
            .docs
            .read(&op.user, &op.doc_id, |doc| {
                let m = doc.message(&op.id)?;
                let reader = doc.reader();
                let version_id = m
                    .input_version_ids
                    .first()
                    .cloned()
                    .or_else(|| reader.summary().ok().and_then(|s| s.active_version_id));
                let version = version_id
                    .as_ref()
                    .and_then(|v| reader.version(v).ok().flatten());
                Ok::<_, core_sync::model::ModelError>((m, (version_id, version)))
            })
            .await?
            .map_err(|e| {
                fail(
                    "internal",
                    format!("The request is gone from the asset: {e}"),
                )
            })?;
        if m.status == Some(MessageStatus::Canceled) {
            return Err(Ending::Canceled);
        }
        Ok((m, version))
    }

    async fn execute(&self, mut op: Operation) -> JobResult<()> {
        let (msg, input_version) = self.request(&op).await?;
        let tool = msg.tool.as_deref().and_then(Tool::parse).ok_or_else(|| {
            fail(
                "unknown_tool",
                format!(
                    "There is no tool called {:?}.",
                    msg.tool.as_deref().unwrap_or("")
                ),
            )
        })?;
        let model_id = match msg.model.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => m.to_owned(),
            None => self
                .registry
                .default_for(tool)
                .map(|m| m.id.clone())
                .ok_or_else(|| {
                    fail(
                        "model_unavailable",
                        format!("No model can {} right now.", tool.as_str()),
                    )
                })?,
        };
        let model = self
            .registry
            .resolve(&model_id, tool)
            .map_err(|e| fail("model_unavailable", format!("{e}.")))?
            .clone();

        // The input image, from the blob store.
        let input = if tool.needs_input() {
            let (version_id, version) = input_version;
            let version_id = version_id.ok_or_else(|| {
                fail(
                    "no_input",
                    "This tool needs an image, and the asset has none yet.",
                )
            })?;
            let version = version.ok_or_else(|| {
                fail(
                    "no_input",
                    "The image this request refers to is not in the asset.",
                )
            })?;
            let bytes = self.input_blob(&op.user, &version.blob.sha256).await?;
            let image = InputImage {
                sha256: version.blob.sha256.clone(),
                mime: version.blob.mime.clone(),
                bytes: bytes.into(),
            };
            Some((version_id, image))
        } else {
            None
        };

        op.status = OpStatus::Running;
        op.attempts += 1;
        op.updated_at = now_millis();
        let _ = self.ops.update_operation(&op).await;
        self.progress(&op, 0.1, true).await?;

        let output = self
            .call(&mut op, &model, tool, &msg, input.as_ref().map(|(_, i)| i))
            .await?;
        self.finish(&op, &model, tool, input.map(|(v, _)| v), output)
            .await
    }

    async fn input_blob(&self, user: &str, sha: &str) -> JobResult<Vec<u8>> {
        // The client uploads blobs before pushing; give a slow upload a moment.
        for attempt in 0..5u32 {
            match self.blobs.get(user, sha).await {
                Ok(Some(b)) => return Ok(b),
                Ok(None) => tokio::time::sleep(Duration::from_millis(200 * (1 << attempt))).await,
                Err(e) => {
                    return Err(fail(
                        "internal",
                        format!("The input image could not be read: {e}"),
                    ));
                }
            }
        }
        Err(fail(
            "input_missing",
            "The input image never reached the cloud. Sync the asset and retry.",
        ))
    }

    async fn progress(&self, op: &Operation, progress: f64, running: bool) -> JobResult<()> {
        let id = op.id.clone();
        let op_id = op.id.clone();
        let canceled = self
            .docs
            .write(&op.user, &op.doc_id, |d| {
                let m = d.message(&id)?;
                if m.status == Some(MessageStatus::Canceled) {
                    return Ok(true);
                }
                d.update_message(
                    &id,
                    MessageUpdate {
                        status: running.then_some(MessageStatus::Running),
                        progress: Some(progress),
                        operation_id: Some(op_id.clone()),
                        ..Default::default()
                    },
                    now_millis(),
                )?;
                Ok(false)
            })
            .await?;
        if canceled {
            Err(Ending::Canceled)
        } else {
            Ok(())
        }
    }

    /// Calls the provider, retrying transient failures with backoff.
    async fn call(
        &self,
        op: &mut Operation,
        model: &Model,
        tool: Tool,
        msg: &MessageView,
        input: Option<&InputImage>,
    ) -> JobResult<Output> {
        let prompt = msg.text.clone().unwrap_or_default();
        let param = |k: &str| {
            msg.params
                .as_ref()
                .and_then(|p| p.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let mut delay = self.config.retry_base;
        for attempt in 1..=self.config.max_attempts {
            let result = match model.api {
                Api::GenerateContent => self.gemini(op, model, &prompt, input, &param).await,
                Api::Predict => providers::imagen::predict(
                    &self.providers,
                    &model.id,
                    &prompt,
                    1,
                    param("aspectRatio").as_deref(),
                    &providers::imagen::ImagenOptions::default(),
                )
                .await
                .map(|r| Output {
                    images: r.images,
                    usage: r.usage,
                }),
                Api::Predictions => self.replicate(op, model, tool, msg, input).await,
            };
            match result {
                Ok(out) => return Ok(out),
                Err(ProviderError::Transient {
                    reason,
                    retry_after,
                }) if attempt < self.config.max_attempts => {
                    let wait = retry_after.unwrap_or(delay).min(self.config.retry_max);
                    tracing::info!(%reason, ?wait, attempt, "transient provider error; retrying");
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(self.config.retry_max);
                    // A cancel while waiting wins.
                    self.message(op).await?;
                }
                Err(ProviderError::Transient { reason, .. }) => {
                    return Err(fail(
                        "unavailable",
                        format!("The provider stayed unavailable after {attempt} tries: {reason}"),
                    ));
                }
                // The user's cancel, carried out at the provider.
                Err(ProviderError::Permanent {
                    code: "canceled", ..
                }) => return Err(Ending::Canceled),
                Err(ProviderError::Permanent { code, message }) => return Err(fail(code, message)),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    async fn replicate(
        &self,
        op: &mut Operation,
        model: &Model,
        tool: Tool,
        msg: &MessageView,
        input: Option<&InputImage>,
    ) -> Result<Output, ProviderError> {
        let image = input.ok_or_else(|| ProviderError::Permanent {
            code: "no_input",
            message: "This tool needs an image.".into(),
        })?;
        let webhook = self
            .config
            .public_url
            .as_ref()
            .map(|u| format!("{}/replicate/webhook", u.trim_end_matches('/')));
        // Resume an existing prediction instead of paying for a second one.
        let mut prediction = match &op.provider_ref {
            Some(id) => providers::replicate::get_prediction(&self.providers, id).await?,
            None => {
                // The tool's parameters are the model's inputs; the image is ours.
                let mut json = match &msg.params {
                    Some(serde_json::Value::Object(p)) => serde_json::Value::Object(p.clone()),
                    _ => serde_json::json!({}),
                };
                let prepared = self.prepare_input(op, model, image).await?;
                json["image"] = prepared.replicate_value(image)?.into();
                if tool == Tool::Upscale && json.get("scale").is_none() {
                    json["scale"] = 4.into();
                }
                let p = providers::replicate::create_prediction(
                    &self.providers,
                    model,
                    json,
                    webhook.as_deref(),
                )
                .await?;
                op.provider_ref = Some(p.id.clone());
                op.updated_at = now_millis();
                let _ = self.ops.update_operation(op).await;
                p
            }
        };
        let notify = Arc::new(Notify::new());
        self.wakeups
            .lock()
            .expect("wakeups lock")
            .insert(prediction.id.clone(), Arc::clone(&notify));
        let started = tokio::time::Instant::now();
        let mut reported_processing = false;
        let outcome = loop {
            if let Some(outcome) = prediction.outcome() {
                break outcome;
            }
            if prediction.status == providers::replicate::PredictionStatus::Processing
                && !reported_processing
            {
                reported_processing = true;
                if let Err(Ending::Canceled) = self.progress(op, 0.5, false).await {
                    let _ =
                        providers::replicate::cancel_prediction(&self.providers, &prediction.id)
                            .await;
                    break Err(ProviderError::Permanent {
                        code: "canceled",
                        message: "Canceled.".into(),
                    });
                }
            }
            if started.elapsed() > self.config.prediction_timeout {
                let _ =
                    providers::replicate::cancel_prediction(&self.providers, &prediction.id).await;
                break Err(ProviderError::Permanent {
                    code: "timeout",
                    message: "Replicate took too long; the job was stopped.".into(),
                });
            }
            let _ = tokio::time::timeout(self.config.poll_interval, notify.notified()).await;
            if matches!(self.message(op).await, Err(Ending::Canceled)) {
                let _ =
                    providers::replicate::cancel_prediction(&self.providers, &prediction.id).await;
                break Err(ProviderError::Permanent {
                    code: "canceled",
                    message: "Canceled.".into(),
                });
            }
            match providers::replicate::get_prediction(&self.providers, &prediction.id).await {
                Ok(p) => prediction = p,
                Err(e) if e.is_transient() => continue,
                Err(e) => break Err(e),
            }
        };
        self.wakeups
            .lock()
            .expect("wakeups lock")
            .remove(&prediction.id);
        // The prediction has ended: its uploaded input is not needed any more.
        self.release_input(op).await;
        let urls = outcome?;
        let usage = providers::replicate::usage(model, &prediction);
        let mut images = Vec::new();
        for url in urls {
            let bytes = providers::replicate::download_output(&self.providers, &url).await?;
            let mime = images::sniff(&bytes).unwrap_or("image/png").to_owned();
            images.push((mime, bytes));
        }
        if images.is_empty() {
            return Err(ProviderError::Permanent {
                code: "no_image",
                message: "Replicate finished without an image.".into(),
            });
        }
        Ok(Output { images, usage })
    }

    /// One `generateContent` call, the input inline or uploaded.
    async fn gemini(
        &self,
        op: &mut Operation,
        model: &Model,
        prompt: &str,
        input: Option<&InputImage>,
        param: &impl Fn(&str) -> Option<String>,
    ) -> Result<Output, ProviderError> {
        let prepared = match input {
            Some(image) => Some((self.prepare_input(op, model, image).await?, image)),
            None => None,
        };
        let part = match &prepared {
            Some((p, image)) => Some(p.gemini(image)?),
            None => None,
        };
        let img = providers::gemini::generate_content(
            &self.providers,
            &model.id,
            prompt,
            part,
            param("aspectRatio").as_deref(),
            param("imageSize").as_deref(),
        )
        .await?;
        Ok(Output {
            images: vec![(img.mime, img.bytes)],
            usage: img.usage,
        })
    }

    /// Readies the input image (see `providers::inputs`), storing the
    /// operation's input record when it changes.
    async fn prepare_input(
        &self,
        op: &mut Operation,
        model: &Model,
        image: &InputImage,
    ) -> Result<Prepared, ProviderError> {
        let (user, label) = (op.user.clone(), op.id.clone());
        let ctx = inputs::Context {
            cfg: &self.providers,
            public: self.config.public_inputs.as_deref(),
            user: &user,
            label: &label,
            now_ms: now_millis(),
        };
        let (prepared, changed) = inputs::prepare(ctx, model, image, &mut op.input).await?;
        if changed {
            op.updated_at = now_millis();
            if let Err(e) = self.ops.update_operation(op).await {
                tracing::warn!(error = %e, "cannot record the prepared input");
            }
        }
        Ok(prepared)
    }

    /// Deletes the operation's upload at the provider, if one is live.
    async fn release_input(&self, op: &mut Operation) {
        let Some(record) = op.input.as_mut() else {
            return;
        };
        match inputs::release(&self.providers, record).await {
            Ok(true) => {
                op.updated_at = now_millis();
                if let Err(e) = self.ops.update_operation(op).await {
                    tracing::warn!(error = %e, "cannot record the deleted upload");
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot delete the uploaded input; it expires on its own")
            }
        }
    }

    /// Stores the outputs and writes version, cost and final status as one
    /// server change.
    async fn finish(
        &self,
        op: &Operation,
        model: &Model,
        tool: Tool,
        input_version: Option<String>,
        out: Output,
    ) -> JobResult<()> {
        let mut versions = Vec::new();
        for (_, bytes) in out.images {
            let described = tokio::task::spawn_blocking(move || {
                let (mime, w, h) = images::describe(&bytes)?;
                let (thumb, tw, th) = images::thumbnail(&bytes)?;
                Ok::<_, images::ImageError>((bytes, mime, w, h, thumb, tw, th))
            })
            .await
            .map_err(|e| fail("internal", e.to_string()))?;
            let (bytes, mime, w, h, thumb, tw, th) = described.map_err(|e| {
                fail(
                    "bad_output",
                    format!("The provider returned an unusable image: {e}"),
                )
            })?;
            let sha = core_sync::blob::sha256_hex(&bytes);
            let tsha = core_sync::blob::sha256_hex(&thumb);
            self.blobs
                .put(&op.user, &sha, &bytes)
                .await
                .map_err(|e| fail("internal", e.to_string()))?;
            self.blobs
                .put(&op.user, &tsha, &thumb)
                .await
                .map_err(|e| fail("internal", e.to_string()))?;
            versions.push(NewVersion {
                blob: BlobRef {
                    sha256: sha,
                    mime: mime.into(),
                    width: w,
                    height: h,
                    bytes: bytes.len() as u64,
                },
                thumbnail: Some(BlobRef {
                    sha256: tsha,
                    mime: "image/png".into(),
                    width: tw,
                    height: th,
                    bytes: thumb.len() as u64,
                }),
                parent_version_id: input_version.clone(),
                created_by_message_id: Some(op.id.clone()),
            });
        }
        let cost = model.price.cost(out.usage);
        crate::metrics::global().spent(cost.as_ref().map_or(0, |c| c.nano_usd));
        let id = op.id.clone();
        let provider = format!("{:?}", model.provider).to_lowercase();
        let canceled = self
            .docs
            .write(&op.user, &op.doc_id, |d| {
                let now = now_millis();
                let record = |d: &mut AssetDoc| -> Result<(), core_sync::model::ModelError> {
                    if let Some(c) = &cost {
                        d.record_cost(
                            NewCostEvent {
                                provider: provider.clone(),
                                model: model.id.clone(),
                                units: c.units,
                                unit: c.unit.into(),
                                cost_nano_usd: c.nano_usd,
                                message_id: Some(id.clone()),
                            },
                            now,
                        )?;
                    }
                    Ok(())
                };
                match d.message(&id)?.status {
                    // Canceled meanwhile: the money is spent, the result is not wanted.
                    Some(MessageStatus::Canceled) => {
                        record(d)?;
                        return Ok(true);
                    }
                    // Another run of this operation finished first (a webhook and
                    // a poll racing across instances): write nothing twice.
                    Some(MessageStatus::Succeeded | MessageStatus::Failed) => return Ok(false),
                    _ => {}
                }
                record(d)?;
                let mut outputs = Vec::new();
                for v in &versions {
                    outputs.push(d.add_version(v.clone(), now)?);
                }
                d.update_message(
                    &id,
                    MessageUpdate {
                        status: Some(MessageStatus::Succeeded),
                        progress: Some(1.0),
                        add_output_version_ids: outputs,
                        ..Default::default()
                    },
                    now,
                )?;
                Ok(false)
            })
            .await?;
        tracing::info!(tool = tool.as_str(), model = %model.id, nano_usd = cost.as_ref().map(|c| c.nano_usd), "job finished");
        if canceled {
            Err(Ending::Canceled)
        } else {
            Ok(())
        }
    }
}
