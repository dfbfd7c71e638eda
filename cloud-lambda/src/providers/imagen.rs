//! Imagen 4 text-to-image through `:predict`.
//!
//! `POST {base}/v1beta/models/{model}:predict` with `x-goog-api-key`;
//! answers `{"predictions":[{"mimeType","bytesBase64Encoded"}]}`. Filtered
//! images are left out or come back as `{"raiFilteredReason": ...}`: they are
//! skipped, and when nothing is left the call ends as
//! [`codes::SAFETY_BLOCK`]. Google retired Imagen 4 on its API in 2026, so a
//! 404 reads "Imagen 4 model X is no longer served by Google."; the
//! registry normally refuses the model before any request.
//!
//! Usage is [`Usage::Images`]: the images returned (filtered ones are not
//! billed).

use std::fmt;

use serde::Deserialize;
use serde_json::{Value, json};

use super::gemini::{Google, google_error, post_json};
use super::{ProviderConfig, ProviderError, codes, decode_base64, sentence, sniff_mime, trim_base};
use crate::registry::Usage;

/// Aspect ratios Imagen 4 accepts.
pub const ASPECT_RATIOS: [&str; 5] = ["1:1", "3:4", "4:3", "9:16", "16:9"];
/// `sampleImageSize` values (not on the fast model).
pub const IMAGE_SIZES: [&str; 2] = ["1K", "2K"];
/// `personGeneration` values (matched case-insensitively).
pub const PERSON_GENERATION: [&str; 3] = ["dont_allow", "allow_adult", "allow_all"];
/// `outputOptions.mimeType` values.
pub const OUTPUT_MIME_TYPES: [&str; 2] = ["image/png", "image/jpeg"];

/// The less common `parameters`; all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImagenOptions {
    /// One of [`PERSON_GENERATION`].
    pub person_generation: Option<String>,
    /// One of [`IMAGE_SIZES`].
    pub sample_image_size: Option<String>,
    /// One of [`OUTPUT_MIME_TYPES`].
    pub output_mime_type: Option<String>,
}

/// What Imagen returned.
#[derive(Clone, PartialEq)]
pub struct ImagenImages {
    /// `(mime type, bytes)` of each image, in order.
    pub images: Vec<(String, Vec<u8>)>,
    /// The `raiFilteredReason` of each image left out.
    pub filtered: Vec<String>,
    /// [`Usage::Images`] of the images returned.
    pub usage: Usage,
}

impl fmt::Debug for ImagenImages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let images: Vec<String> = self
            .images
            .iter()
            .map(|(m, b)| format!("{m}, {} bytes", b.len()))
            .collect();
        f.debug_struct("ImagenImages")
            .field("images", &images)
            .field("filtered", &self.filtered)
            .field("usage", &self.usage)
            .finish()
    }
}

/// Makes `sample_count` (1-4) images of `prompt` with `model_id`.
pub async fn predict(
    cfg: &ProviderConfig,
    model_id: &str,
    prompt: &str,
    sample_count: u32,
    aspect_ratio: Option<&str>,
    options: &ImagenOptions,
) -> Result<ImagenImages, ProviderError> {
    let key = cfg.gemini_key.as_deref().ok_or_else(|| {
        ProviderError::permanent(
            codes::MISSING_KEY,
            "No Gemini API key is configured (GEMINI_API_KEY).",
        )
    })?;
    let body = request_body(model_id, prompt, sample_count, aspect_ratio, options)?;
    let url = format!(
        "{}/v1beta/models/{model_id}:predict",
        trim_base(&cfg.gemini_base)
    );
    let (status, headers, bytes) = post_json(cfg, "Imagen", &url, key, &body).await?;
    if !status.is_success() {
        return Err(google_error(
            cfg,
            Google::Imagen,
            model_id,
            status,
            &headers,
            &bytes,
        ));
    }
    parse_response(&bytes)
}

fn invalid(message: String) -> ProviderError {
    ProviderError::permanent(codes::INVALID_INPUT, message)
}

/// The request body, as `providers.md` shows it.
fn request_body(
    model_id: &str,
    prompt: &str,
    sample_count: u32,
    aspect_ratio: Option<&str>,
    options: &ImagenOptions,
) -> Result<Value, ProviderError> {
    if prompt.trim().is_empty() {
        return Err(invalid("The prompt is empty.".into()));
    }
    if !(1..=4).contains(&sample_count) {
        return Err(invalid(format!(
            "Imagen makes 1 to 4 images at a time, not {sample_count}."
        )));
    }
    let mut parameters = json!({ "sampleCount": sample_count, "includeRaiReason": true });
    if let Some(ratio) = aspect_ratio {
        if !ASPECT_RATIOS.contains(&ratio) {
            return Err(invalid(format!(
                "Imagen does not make {ratio} images; pick one of {}.",
                ASPECT_RATIOS.join(", ")
            )));
        }
        parameters["aspectRatio"] = ratio.into();
    }
    if let Some(person) = &options.person_generation {
        let Some(canonical) = PERSON_GENERATION
            .iter()
            .find(|p| p.eq_ignore_ascii_case(person.trim()))
        else {
            return Err(invalid(format!(
                "Imagen does not know the person setting “{person}”; use one of {}.",
                PERSON_GENERATION.join(", ")
            )));
        };
        parameters["personGeneration"] = (*canonical).into();
    }
    if let Some(size) = &options.sample_image_size {
        if model_id.contains("fast") {
            return Err(invalid(format!("{model_id} cannot choose an image size.")));
        }
        if !IMAGE_SIZES.contains(&size.as_str()) {
            return Err(invalid(format!(
                "Imagen does not make {size} images; pick one of {}.",
                IMAGE_SIZES.join(", ")
            )));
        }
        parameters["sampleImageSize"] = size.as_str().into();
    }
    if let Some(mime) = &options.output_mime_type {
        if !OUTPUT_MIME_TYPES.contains(&mime.as_str()) {
            return Err(invalid(format!(
                "Imagen cannot return {mime}; use image/png or image/jpeg."
            )));
        }
        parameters["outputOptions"] = json!({ "mimeType": mime });
    }
    Ok(json!({ "instances": [{ "prompt": prompt }], "parameters": parameters }))
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    predictions: Vec<Prediction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prediction {
    mime_type: Option<String>,
    bytes_base64_encoded: Option<String>,
    rai_filtered_reason: Option<String>,
}

fn parse_response(body: &[u8]) -> Result<ImagenImages, ProviderError> {
    let r: Response = serde_json::from_slice(body).map_err(|_| super::bad_response("Imagen"))?;
    let mut images = Vec::new();
    let mut filtered = Vec::new();
    for p in r.predictions {
        match (p.bytes_base64_encoded, p.rai_filtered_reason) {
            (Some(data), _) => {
                let bytes = decode_base64(&data)
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| {
                        ProviderError::permanent(
                            codes::BAD_RESPONSE,
                            "Imagen sent an image that could not be decoded.",
                        )
                    })?;
                let mime = p
                    .mime_type
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| sniff_mime(&bytes).to_owned());
                images.push((mime, bytes));
            }
            (None, Some(reason)) => filtered.push(reason),
            (None, None) => {}
        }
    }
    if images.is_empty() {
        let message = match filtered.first() {
            Some(reason) => format!(
                "Imagen filtered out every image it made for safety reasons. Google says: {}",
                sentence(reason, 300)
            ),
            None => {
                "Imagen returned no images; they were most likely filtered out for safety reasons."
                    .to_owned()
            }
        };
        return Err(ProviderError::permanent(codes::SAFETY_BLOCK, message));
    }
    let usage = Usage::Images(images.len() as u64);
    Ok(ImagenImages {
        images,
        filtered,
        usage,
    })
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    use super::*;
    use crate::registry::{BUILTIN, Registry};

    const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

    #[test]
    fn the_request_body_is_the_documented_shape() {
        let options = ImagenOptions {
            person_generation: Some("ALLOW_ADULT".into()),
            sample_image_size: Some("2K".into()),
            output_mime_type: Some("image/jpeg".into()),
        };
        let body = request_body(
            "imagen-4.0-generate-001",
            "Robot holding a red skateboard",
            1,
            Some("16:9"),
            &options,
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"instances":[{"prompt":"Robot holding a red skateboard"}],
             "parameters":{"sampleCount":1,"aspectRatio":"16:9","personGeneration":"allow_adult",
               "sampleImageSize":"2K","outputOptions":{"mimeType":"image/jpeg"},"includeRaiReason":true}})
        );
        let minimal = request_body(
            "imagen-4.0-generate-001",
            "A cat",
            4,
            None,
            &ImagenOptions::default(),
        )
        .unwrap();
        assert_eq!(
            minimal["parameters"],
            json!({"sampleCount":4,"includeRaiReason":true})
        );
    }

    #[test]
    fn bad_parameters_are_refused_before_any_request() {
        let none = ImagenOptions::default();
        for (count, ratio) in [(0, None), (5, None), (1, Some("21:9"))] {
            let e = request_body("imagen-4.0-generate-001", "x", count, ratio, &none).unwrap_err();
            assert_eq!(e.code(), codes::INVALID_INPUT);
        }
        let sized = ImagenOptions {
            sample_image_size: Some("2K".into()),
            ..ImagenOptions::default()
        };
        let e = request_body("imagen-4.0-fast-generate-001", "x", 1, None, &sized).unwrap_err();
        assert_eq!(
            e.message(),
            "imagen-4.0-fast-generate-001 cannot choose an image size."
        );
        let big = ImagenOptions {
            sample_image_size: Some("4K".into()),
            ..ImagenOptions::default()
        };
        assert_eq!(
            request_body("imagen-4.0-generate-001", "x", 1, None, &big)
                .unwrap_err()
                .code(),
            codes::INVALID_INPUT
        );
        let people = ImagenOptions {
            person_generation: Some("everyone".into()),
            ..ImagenOptions::default()
        };
        assert_eq!(
            request_body("imagen-4.0-generate-001", "x", 1, None, &people)
                .unwrap_err()
                .code(),
            codes::INVALID_INPUT
        );
        let gif = ImagenOptions {
            output_mime_type: Some("image/gif".into()),
            ..ImagenOptions::default()
        };
        assert_eq!(
            request_body("imagen-4.0-generate-001", "x", 1, None, &gif)
                .unwrap_err()
                .code(),
            codes::INVALID_INPUT
        );
    }

    #[test]
    fn filtered_images_are_skipped_and_usage_counts_the_rest() {
        let body = format!(
            r#"{{"predictions":[{{"mimeType":"image/png","bytesBase64Encoded":"{PNG_1X1}"}},
               {{"raiFilteredReason":"Your current safety filter threshold filtered out the generated image."}},
               {{"bytesBase64Encoded":"{PNG_1X1}"}}]}}"#
        );
        let out = parse_response(body.as_bytes()).unwrap();
        assert_eq!(out.images.len(), 2);
        assert_eq!(
            out.images[1].0, "image/png",
            "sniffed when the answer does not say"
        );
        assert_eq!(out.filtered.len(), 1);
        assert_eq!(out.usage, Usage::Images(2));
        let registry = Registry::parse(BUILTIN).unwrap();
        let price = &registry.get("imagen-4.0-generate-001").unwrap().price;
        assert_eq!(price.cost(out.usage).unwrap().nano_usd, 80_000_000);
        assert!(!format!("{out:?}").contains("iVBOR"));
    }

    #[test]
    fn nothing_left_after_filtering_is_a_safety_block() {
        let all_filtered = r#"{"predictions":[{"raiFilteredReason":"The image was filtered (Support code 58061214)."}]}"#;
        let e = parse_response(all_filtered.as_bytes()).unwrap_err();
        assert_eq!(e.code(), codes::SAFETY_BLOCK);
        assert_eq!(
            e.message(),
            "Imagen filtered out every image it made for safety reasons. Google says: The image was filtered (Support code 58061214)."
        );
        for empty in ["{}", r#"{"predictions":[]}"#] {
            assert_eq!(
                parse_response(empty.as_bytes()).unwrap_err().code(),
                codes::SAFETY_BLOCK
            );
        }
        assert_eq!(
            parse_response(b"not json").unwrap_err().code(),
            codes::BAD_RESPONSE
        );
    }

    #[test]
    fn a_retired_model_reads_as_no_longer_served() {
        let body = r#"{"error":{"code":404,"message":"models/imagen-4.0-generate-001 is not found for API version v1beta, or is not supported for predict.","status":"NOT_FOUND"}}"#;
        let cfg = ProviderConfig::default();
        let e = google_error(
            &cfg,
            Google::Imagen,
            "imagen-4.0-generate-001",
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            body.as_bytes(),
        );
        assert_eq!(e.code(), codes::NOT_FOUND);
        assert!(
            e.message().starts_with(
                "Imagen 4 model imagen-4.0-generate-001 is no longer served by Google."
            ),
            "{}",
            e.message()
        );
    }
}
