//! How an input image reaches a provider, decided in one place
//! ([`choose_route`]) and recorded on the operation ([`InputRecord`]), so a
//! resumed job reuses what it uploaded.
//!
//! Three ways (an [`InputRoute`]):
//! - **inline**, inside the request, for images up to the model's
//!   `inline_max_bytes` (`models.json`): a base64 data URL for Replicate, an
//!   `inline_data` part for Gemini;
//! - **presigned**, a short-lived GET URL of the server's own storage, for
//!   Replicate when the server has public storage (the AWS backend gives a
//!   [`PublicInputUrls`]; the embedded backend has none);
//! - **uploaded** with the provider's Files API otherwise
//!   ([`super::replicate_files`], [`super::gemini_files`]), up to the
//!   provider's own `upload_max_bytes`. The upload is deleted at the
//!   provider ([`release`]) once the job no longer needs it, whatever its
//!   outcome.
//!
//! [`prepare`] reuses the operation's record when it still holds (same
//! blob, not released, not about to expire, and for uploads still there at
//! the provider); otherwise it makes a new one. Uploads are not billed: no
//! cost event comes from here.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use base64::Engine as _;

use super::gemini::GeminiInput;
use super::{ProviderConfig, ProviderError, codes, gemini_files, replicate_files};
use crate::registry::{Model, Provider};
pub use crate::storage::jobs::{InputRecord, InputRoute};

/// How long a presigned input URL is asked to stay valid: long enough for a
/// queued prediction to start and read it.
pub const PRESIGNED_TTL: Duration = Duration::from_secs(60 * 60);
/// An upload or URL expiring sooner than this is made again rather than
/// handed to a provider.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(10 * 60);

/// Short-lived public GET URLs for a user's blobs: what a server with public
/// storage (S3) gives, so Replicate can fetch an input directly.
#[async_trait]
pub trait PublicInputUrls: Send + Sync + fmt::Debug {
    /// A URL that serves the blob `sha256` of `user` for at least `ttl`.
    async fn input_url(&self, user: &str, sha256: &str, ttl: Duration)
    -> Result<PublicUrl, String>;
}

/// A URL and when it stops working (unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    pub url: String,
    pub expires_at: i64,
}

/// An input image as the job has it.
#[derive(Clone)]
pub struct InputImage {
    pub sha256: String,
    pub mime: String,
    pub bytes: Bytes,
}

impl fmt::Debug for InputImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "InputImage({}, {}, {} bytes)",
            self.sha256,
            self.mime,
            self.bytes.len()
        )
    }
}

/// An input ready to hand to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Send the bytes inside the request.
    Inline,
    /// Replicate: pass this URL (a file's `urls.get` or a presigned URL).
    Url(String),
    /// Gemini: reference this file URI in `file_data`.
    GeminiFile(String),
}

impl Prepared {
    /// The value of a Replicate file input: the URL, or a data URL.
    pub fn replicate_value(&self, image: &InputImage) -> Result<String, ProviderError> {
        match self {
            Prepared::Inline => Ok(format!(
                "data:{};base64,{}",
                image.mime,
                base64::engine::general_purpose::STANDARD.encode(&image.bytes)
            )),
            Prepared::Url(url) => Ok(url.clone()),
            Prepared::GeminiFile(_) => Err(mismatch()),
        }
    }

    /// The Gemini input part.
    pub fn gemini<'a>(&'a self, image: &'a InputImage) -> Result<GeminiInput<'a>, ProviderError> {
        match self {
            Prepared::Inline => Ok(GeminiInput::Inline {
                mime: &image.mime,
                bytes: &image.bytes,
            }),
            Prepared::GeminiFile(uri) => Ok(GeminiInput::File {
                mime: &image.mime,
                uri,
            }),
            Prepared::Url(_) => Err(mismatch()),
        }
    }
}

fn mismatch() -> ProviderError {
    ProviderError::permanent(
        codes::CONFIG,
        "The input was prepared for another provider.",
    )
}

/// The one place the way is chosen: inline up to the model's inline limit;
/// above it a presigned URL where the server has public storage and the
/// provider fetches URLs (Replicate), else the provider's upload, up to its
/// own limit. Too large for every way is a permanent error.
pub fn choose_route(
    model: &Model,
    bytes: u64,
    presigned_available: bool,
) -> Result<InputRoute, ProviderError> {
    let limits = model.inputs.as_ref().ok_or_else(|| {
        ProviderError::permanent(
            codes::CONFIG,
            format!("The model registry gives no input limits for {}.", model.id),
        )
    })?;
    if bytes <= limits.inline_max_bytes {
        return Ok(InputRoute::Inline);
    }
    let (name, upload) = match model.provider {
        Provider::Replicate if presigned_available => return Ok(InputRoute::Presigned),
        Provider::Replicate => ("Replicate", InputRoute::ReplicateFile),
        Provider::Google => ("Gemini", InputRoute::GeminiFile),
    };
    if bytes > limits.upload_max_bytes {
        return Err(ProviderError::permanent(
            codes::INVALID_INPUT,
            format!(
                "The input image is {}; {name} takes files up to {}.",
                human_bytes(bytes),
                human_bytes(limits.upload_max_bytes)
            ),
        ));
    }
    Ok(upload)
}

/// Where and for whom an input is prepared.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub cfg: &'a ProviderConfig,
    /// Public URLs of our own storage, where the server has them.
    pub public: Option<&'a dyn PublicInputUrls>,
    pub user: &'a str,
    /// Names the upload at the provider (the operation id).
    pub label: &'a str,
    /// Now, in unix milliseconds.
    pub now_ms: i64,
}

/// Readies `image` for `model`: reuses `record` when it still holds,
/// otherwise chooses a way, uploads or signs if that way needs it, and
/// replaces `record`. Returns what to hand the provider and whether
/// `record` changed (to be stored).
pub async fn prepare(
    ctx: Context<'_>,
    model: &Model,
    image: &InputImage,
    record: &mut Option<InputRecord>,
) -> Result<(Prepared, bool), ProviderError> {
    let Context {
        cfg,
        public,
        user,
        label,
        now_ms,
    } = ctx;
    if let Some(r) = record.as_ref()
        && let Some(prepared) = reusable(cfg, r, image, now_ms).await?
    {
        tracing::debug!(route = ?r.route, "reusing the recorded input");
        return Ok((prepared, false));
    }
    let bytes = image.bytes.len() as u64;
    let route = choose_route(model, bytes, public.is_some())?;
    let base = InputRecord {
        route,
        sha256: image.sha256.clone(),
        bytes,
        file_id: None,
        url: None,
        expires_at: None,
        deleted: false,
    };
    let (new, prepared) = match route {
        InputRoute::Inline => (base, Prepared::Inline),
        InputRoute::Presigned => {
            let public = public.ok_or_else(mismatch)?;
            let url = public
                .input_url(user, &image.sha256, PRESIGNED_TTL)
                .await
                .map_err(|e| {
                    ProviderError::transient(
                        format!("The cloud could not make a link to the input image: {e}"),
                        None,
                    )
                })?;
            let prepared = Prepared::Url(url.url.clone());
            (
                InputRecord {
                    url: Some(url.url),
                    expires_at: Some(url.expires_at),
                    ..base
                },
                prepared,
            )
        }
        InputRoute::ReplicateFile => {
            let metadata = serde_json::json!({ "atelier_input": label, "sha256": image.sha256 });
            let file = replicate_files::create_file(
                cfg,
                image.bytes.clone(),
                &file_name(label, &image.mime),
                &image.mime,
                Some(&metadata),
            )
            .await?;
            let url = file.input_url()?.to_owned();
            (
                InputRecord {
                    file_id: Some(file.id.clone()),
                    url: Some(url.clone()),
                    expires_at: file.expires_at_millis(),
                    ..base
                },
                Prepared::Url(url),
            )
        }
        InputRoute::GeminiFile => {
            let file = gemini_files::upload(
                cfg,
                image.bytes.clone(),
                &image.mime,
                &file_name(label, &image.mime),
            )
            .await?;
            (
                InputRecord {
                    file_id: Some(file.name.clone()),
                    url: Some(file.uri.clone()),
                    expires_at: file.expires_at_millis(),
                    ..base
                },
                Prepared::GeminiFile(file.uri),
            )
        }
    };
    tracing::info!(?route, bytes, "input prepared");
    *record = Some(new);
    Ok((prepared, true))
}

/// The recorded input, if it can be used again as it is.
async fn reusable(
    cfg: &ProviderConfig,
    r: &InputRecord,
    image: &InputImage,
    now_ms: i64,
) -> Result<Option<Prepared>, ProviderError> {
    let margin = EXPIRY_MARGIN.as_millis() as i64;
    if r.sha256 != image.sha256 || r.deleted || r.expires_at.is_some_and(|t| t <= now_ms + margin) {
        return Ok(None);
    }
    Ok(match (r.route, r.file_id.as_deref(), r.url.as_deref()) {
        (InputRoute::Inline, _, _) => Some(Prepared::Inline),
        (InputRoute::Presigned, _, Some(url)) => Some(Prepared::Url(url.to_owned())),
        // An upload must still be there (nobody deleted it meanwhile).
        (InputRoute::ReplicateFile, Some(id), Some(url)) => replicate_files::get_file(cfg, id)
            .await?
            .map(|_| Prepared::Url(url.to_owned())),
        (InputRoute::GeminiFile, Some(name), Some(uri)) => gemini_files::get(cfg, name)
            .await?
            .filter(|f| f.is_active())
            .map(|_| Prepared::GeminiFile(uri.to_owned())),
        _ => None,
    })
}

/// Deletes the recorded upload at the provider, once the job no longer
/// needs it; returns whether `record` changed. Inline and presigned inputs
/// have nothing to delete (a presigned URL simply expires).
pub async fn release(
    cfg: &ProviderConfig,
    record: &mut InputRecord,
) -> Result<bool, ProviderError> {
    if record.deleted {
        return Ok(false);
    }
    let Some(id) = record.file_id.as_deref() else {
        return Ok(false);
    };
    match record.route {
        InputRoute::ReplicateFile => replicate_files::delete_file(cfg, id).await?,
        InputRoute::GeminiFile => gemini_files::delete(cfg, id).await?,
        InputRoute::Inline | InputRoute::Presigned => return Ok(false),
    };
    record.deleted = true;
    Ok(true)
}

/// `{label}.{ext}` from the image type.
fn file_name(label: &str, mime: &str) -> String {
    let ext = match mime {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        "image/gif" => "gif",
        _ => "bin",
    };
    let safe: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect();
    format!("{}.{ext}", if safe.is_empty() { "input" } else { &safe })
}

/// "3.1 MB", "100 MB", "512 KB".
fn human_bytes(n: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    if n >= 1024 * 1024 {
        let mb = n as f64 / MB;
        if mb.fract() == 0.0 {
            format!("{mb:.0} MB")
        } else {
            format!("{mb:.1} MB")
        }
    } else {
        format!("{} KB", n.div_ceil(1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{BUILTIN, Registry};

    #[test]
    fn the_way_is_chosen_by_size_provider_and_storage() {
        let r = Registry::parse(BUILTIN).unwrap();
        let esrgan = r.get("nightmareai/real-esrgan").unwrap();
        let bria = r.get("bria/remove-background").unwrap();
        let flash = r.get("gemini-3.1-flash-image").unwrap();
        let pro = r.get("gemini-3-pro-image").unwrap();
        const KB: u64 = 1024;
        const MB: u64 = 1024 * 1024;
        use InputRoute::*;
        // (model, bytes, public storage, way)
        let table: &[(&Model, u64, bool, InputRoute)] = &[
            (esrgan, 2 * KB, false, Inline),
            (esrgan, 128 * KB, false, Inline),
            (esrgan, 128 * KB + 1, false, ReplicateFile),
            (esrgan, 296 * KB, false, ReplicateFile),
            (bria, 3 * MB, false, ReplicateFile),
            (bria, 3 * MB, true, Presigned),
            (bria, 64 * KB, true, Inline),
            (esrgan, 100 * MB, false, ReplicateFile),
            (esrgan, 300 * MB, true, Presigned),
            (flash, 3 * MB, false, Inline),
            (flash, 3 * MB, true, Inline),
            (flash, 7_000_000, false, Inline),
            (flash, 7_000_001, false, GeminiFile),
            (flash, 20 * MB, true, GeminiFile),
            (pro, 20 * MB, false, GeminiFile),
        ];
        for (model, bytes, public, want) in table {
            assert_eq!(
                choose_route(model, *bytes, *public).unwrap(),
                *want,
                "{} {bytes} bytes, public storage {public}",
                model.id
            );
        }
        let e = choose_route(esrgan, 101 * MB, false).unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                codes::INVALID_INPUT,
                "The input image is 101 MB; Replicate takes files up to 100 MB."
            )
        );
        assert_eq!(
            choose_route(flash, 3 * 1024 * MB, false)
                .unwrap_err()
                .code(),
            codes::INVALID_INPUT
        );
    }

    #[test]
    fn prepared_inputs_become_provider_values() {
        let image = InputImage {
            sha256: "s".into(),
            mime: "image/png".into(),
            bytes: Bytes::from_static(b"hi"),
        };
        assert_eq!(
            Prepared::Inline.replicate_value(&image).unwrap(),
            "data:image/png;base64,aGk="
        );
        assert_eq!(
            Prepared::Url("https://x/f".into())
                .replicate_value(&image)
                .unwrap(),
            "https://x/f"
        );
        assert_eq!(
            Prepared::GeminiFile("u".into()).gemini(&image).unwrap(),
            GeminiInput::File {
                mime: "image/png",
                uri: "u"
            }
        );
        assert!(Prepared::Url("u".into()).gemini(&image).is_err());
        assert_eq!(file_name("0123abcd", "image/jpeg"), "0123abcd.jpg");
        assert_eq!(file_name("../..", "image/png"), "input.png");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 200_000), "3.2 MB");
    }

    #[tokio::test]
    async fn a_recorded_input_is_reused_only_while_it_holds() {
        let cfg = ProviderConfig::default();
        let image = InputImage {
            sha256: "aa".into(),
            mime: "image/png".into(),
            bytes: Bytes::from_static(b"png"),
        };
        let presigned = InputRecord {
            route: InputRoute::Presigned,
            sha256: "aa".into(),
            bytes: 3,
            file_id: None,
            url: Some("https://bucket/aa?sig".into()),
            expires_at: Some(10_000_000),
            deleted: false,
        };
        let now = 1_000_000;
        assert_eq!(
            reusable(&cfg, &presigned, &image, now).await.unwrap(),
            Some(Prepared::Url("https://bucket/aa?sig".into()))
        );
        let soon = 10_000_000 - EXPIRY_MARGIN.as_millis() as i64 + 1;
        assert_eq!(
            reusable(&cfg, &presigned, &image, soon).await.unwrap(),
            None
        );
        let other = InputRecord {
            sha256: "bb".into(),
            ..presigned.clone()
        };
        assert_eq!(reusable(&cfg, &other, &image, now).await.unwrap(), None);
        let gone = InputRecord {
            deleted: true,
            ..presigned
        };
        assert_eq!(reusable(&cfg, &gone, &image, now).await.unwrap(), None);
    }
}
