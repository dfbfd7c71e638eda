//! One run of a job, step by step: read the request from the document
//! (a cancel wins at every step), resolve tool and model, fetch the input
//! image, mark the request running, call the provider (`call.rs`), then
//! store the outputs and write version, cost and final status as one
//! server change.

use std::time::Duration;

use core_sync::model::{
    AssetDoc, BlobRef, ErrorInfo, MessageStatus, MessageUpdate, MessageView, NewCostEvent,
    NewVersion,
};
use core_sync::now_millis;

use super::{Ending, InputVersion, JobResult, Jobs, Output, fail};
use crate::images;
use crate::providers::inputs::InputImage;
use crate::registry::{Model, Tool};
use crate::storage::BlobKind;
use crate::storage::jobs::{OpStatus, Operation};

impl Jobs {
    /// The job's request as the document has it now; `Canceled` if the
    /// user canceled it, `Trashed` if the asset is in the trash.
    pub(super) async fn message(&self, op: &Operation) -> JobResult<MessageView> {
        Ok(self.request(op).await?.0)
    }

    /// The request and the version its input refers to (the first input
    /// version, else the asset's active one): its id, and the version if
    /// the asset has it.
    pub(super) async fn request(&self, op: &Operation) -> JobResult<(MessageView, InputVersion)> {
        let (m, version, trashed) = self
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
                let trashed = reader.deletion()?.is_some();
                Ok::<_, core_sync::model::ModelError>((m, (version_id, version), trashed))
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
        if trashed && !m.status.is_some_and(MessageStatus::is_terminal) {
            return Err(Ending::Trashed);
        }
        Ok((m, version))
    }

    pub(super) async fn execute(&self, mut op: Operation) -> JobResult<()> {
        let (msg, input_version) = self.request(&op).await?;
        // A runner that went away after writing the result: nothing is
        // called again, only the operation is finished.
        match msg.status {
            Some(MessageStatus::Succeeded) => return Ok(()),
            Some(MessageStatus::Failed) => {
                let error = msg.error.unwrap_or_else(|| ErrorInfo {
                    code: "failed".into(),
                    message: "The request failed.".into(),
                });
                return Err(fail(&error.code, error.message));
            }
            _ => {}
        }
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

    pub(super) async fn input_blob(&self, user: &str, sha: &str) -> JobResult<Vec<u8>> {
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

    pub(super) async fn progress(
        &self,
        op: &Operation,
        progress: f64,
        running: bool,
    ) -> JobResult<()> {
        let id = op.id.clone();
        let op_id = op.id.clone();
        let stopped = self
            .docs
            .write(&op.user, &op.doc_id, |d| {
                let m = d.message(&id)?;
                if m.status == Some(MessageStatus::Canceled) {
                    return Ok(Some(Ending::Canceled));
                }
                if d.reader().deletion()?.is_some() {
                    return Ok(Some(Ending::Trashed));
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
                Ok(None)
            })
            .await?;
        match stopped {
            Some(ending) => Err(ending),
            None => Ok(()),
        }
    }

    /// Stores the outputs and writes version, cost and final status as one
    /// server change.
    pub(super) async fn finish(
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
                .put_as(&op.user, &sha, &bytes, BlobKind::Derivative)
                .await
                .map_err(|e| fail("internal", e.to_string()))?;
            self.blobs
                .put_as(&op.user, &tsha, &thumb, BlobKind::Thumbnail)
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
