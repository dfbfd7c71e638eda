//! The provider call of a job: Gemini `generateContent`, Imagen
//! `:predict` or a Replicate prediction (created once, its id stored, then
//! followed by webhook and polling, so a resumed job picks the same
//! prediction up), transient failures retried with backoff, the input
//! image readied as `providers::inputs` decides and its upload released.

use std::sync::Arc;

use core_sync::model::MessageView;
use core_sync::now_millis;
use tokio::sync::Notify;

use super::{Ending, JobResult, Jobs, Output, fail};
use crate::images;
use crate::providers::inputs::{self, InputImage, Prepared};
use crate::providers::{self, ProviderError};
use crate::registry::{Api, Model, Tool};
use crate::storage::jobs::Operation;

/// A prediction canceled because the user canceled or the asset went to
/// the trash, as the provider call's outcome.
fn stopped(ending: &Ending) -> ProviderError {
    match ending {
        Ending::Trashed => ProviderError::Permanent {
            code: super::TRASHED_CODE,
            message: "The asset was moved to the trash.".into(),
        },
        _ => ProviderError::Permanent {
            code: "canceled",
            message: "Canceled.".into(),
        },
    }
}

impl Jobs {
    /// Calls the provider, retrying transient failures with backoff.
    pub(super) async fn call(
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
                Err(ProviderError::Permanent {
                    code: super::TRASHED_CODE,
                    ..
                }) => return Err(Ending::Trashed),
                Err(ProviderError::Permanent { code, message }) => return Err(fail(code, message)),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    pub(super) async fn replicate(
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
                if let Err(stop @ (Ending::Canceled | Ending::Trashed)) =
                    self.progress(op, 0.5, false).await
                {
                    let _ =
                        providers::replicate::cancel_prediction(&self.providers, &prediction.id)
                            .await;
                    break Err(stopped(&stop));
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
            if let Err(stop @ (Ending::Canceled | Ending::Trashed)) = self.message(op).await {
                let _ =
                    providers::replicate::cancel_prediction(&self.providers, &prediction.id).await;
                break Err(stopped(&stop));
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
    pub(super) async fn gemini(
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
    pub(super) async fn prepare_input(
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
    pub(super) async fn release_input(&self, op: &mut Operation) {
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
}
