//! Input checks shared by the REST resources and the blob upload: images by
//! content (magic bytes, then the header's dimensions against the pixel
//! limit *before* anything decodes them), prompts and titles by length,
//! tools and models against the registry (a retired model is refused
//! naming its replacement). Every refusal is a problem with its own code.

use core_sync::image_header::{self, ImageHeader, ImageHeaderError};

use crate::error::ApiError;
use crate::limits::ApiConfig;
use crate::registry::{Model, Registry, RegistryError, Status, Tool};

/// Checks an image's bytes: PNG, JPEG or WebP by content, at most
/// `max_image_bytes`, a header claiming at most `max_image_pixels`.
pub fn image(bytes: &[u8], limits: &ApiConfig) -> Result<ImageHeader, ApiError> {
    if bytes.len() > limits.max_image_bytes {
        return Err(ApiError::invalid(
            "image_too_large",
            format!(
                "the image is {} bytes, more than the {} this server accepts",
                bytes.len(),
                limits.max_image_bytes
            ),
        ));
    }
    image_header::inspect_with_limit(bytes, limits.max_image_pixels).map_err(|e| match e {
        ImageHeaderError::UnknownType => ApiError::UnsupportedImage(
            "the bytes are not a PNG, JPEG or WebP image (checked by content, not by name)".into(),
        ),
        ImageHeaderError::TooLarge { .. } => ApiError::invalid("image_too_large", e.to_string()),
        other => ApiError::invalid("bad_image", other.to_string()),
    })
}

/// What the API counts as blank: Unicode's White_Space and the byte-order
/// mark. That is exactly ECMAScript's `\s` with NEL (U+0085) added, so the
/// OpenAPI document's patterns say "not blank" as `[^\s\u0085]` (a test
/// runs them as ECMA-262 regexes against this).
pub fn is_blank(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// A prompt or note: not blank, at most `max_prompt_chars` characters.
pub fn prompt(field: &str, text: &str, limits: &ApiConfig) -> Result<(), ApiError> {
    if text.chars().all(is_blank) {
        return Err(ApiError::invalid(
            "empty_text",
            format!("{field} is empty; write what you want"),
        ));
    }
    let n = text.chars().count();
    if n > limits.max_prompt_chars {
        return Err(ApiError::invalid(
            "text_too_long",
            format!(
                "{field} is {n} characters long; the limit is {}",
                limits.max_prompt_chars
            ),
        ));
    }
    Ok(())
}

/// A title: at most `max_title_chars` characters, no control characters.
pub fn title(text: &str, limits: &ApiConfig) -> Result<(), ApiError> {
    let n = text.chars().count();
    if n > limits.max_title_chars {
        return Err(ApiError::invalid(
            "text_too_long",
            format!(
                "title is {n} characters long; the limit is {}",
                limits.max_title_chars
            ),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "bad_title",
            "title contains control characters (such as line breaks)",
        ));
    }
    Ok(())
}

/// The model to run `tool` with: `model` if given, else the tool's
/// default. Unknown, retired (naming the replacement) and unsuitable
/// models are refused with their own codes.
pub fn model<'r>(
    registry: &'r Registry,
    tool: Tool,
    model: Option<&str>,
) -> Result<&'r Model, ApiError> {
    let Some(id) = model else {
        return registry.default_for(tool).ok_or_else(|| {
            ApiError::Unavailable(format!("no model can {} on this server", tool.as_str()))
        });
    };
    registry.resolve(id, tool).map_err(|e| {
        let code = match &e {
            RegistryError::Retired { .. } => "model_retired",
            RegistryError::WrongTool { .. } => "wrong_tool",
            _ => "unknown_model",
        };
        let mut detail = e.to_string();
        if code != "model_retired" {
            detail.push_str(&format!(
                "; models that can {}: {}",
                tool.as_str(),
                active(registry, tool).join(", ")
            ));
        }
        ApiError::invalid(code, detail)
    })
}

/// The provider's name as messages and cost events record it (`google`,
/// `replicate`).
pub fn provider(model: &Model) -> String {
    format!("{:?}", model.provider).to_lowercase()
}

/// The active models that can do `tool`, in the registry's order.
pub fn active(registry: &Registry, tool: Tool) -> Vec<String> {
    registry
        .models()
        .filter(|m| m.status == Status::Active && m.tools.contains(&tool))
        .map(|m| m.id.clone())
        .collect()
}

/// The registry the API checks against: the jobs' own, or the configured
/// one when this server runs no jobs.
pub fn registry(state: &crate::state::AppState) -> Result<std::sync::Arc<Registry>, ApiError> {
    if let Some(jobs) = &state.jobs {
        return Ok(jobs.registry_arc());
    }
    static LOADED: std::sync::OnceLock<Result<std::sync::Arc<Registry>, String>> =
        std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            Registry::load()
                .map(std::sync::Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(ApiError::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::BUILTIN;

    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    #[test]
    fn images_are_checked_by_content_size_and_claimed_pixels() {
        let limits = ApiConfig {
            max_image_bytes: 1000,
            max_image_pixels: 10_000,
            ..ApiConfig::default()
        };
        assert_eq!(image(&png_header(100, 100), &limits).unwrap().width, 100);
        let cases: &[(&[u8], &str)] = &[
            (&png_header(101, 100), "image_too_large"),
            (&png_header(0, 5), "bad_image"),
            (b"GIF89a not ours", "unsupported_image"),
            (&[0u8; 1001], "image_too_large"),
        ];
        for (bytes, code) in cases {
            assert_eq!(image(bytes, &limits).unwrap_err().code(), *code);
        }
    }

    #[test]
    fn models_are_refused_by_name_with_what_to_use() {
        let r = Registry::parse(BUILTIN).unwrap();
        assert_eq!(
            model(&r, Tool::Edit, None).unwrap().id,
            "gemini-3.1-flash-image"
        );
        let e = model(&r, Tool::Edit, Some("gemini-2.5-flash-image")).unwrap_err();
        assert_eq!(e.code(), "model_retired");
        assert!(e.to_string().contains("gemini-3.1-flash-image"), "{e}");
        let e = model(&r, Tool::Upscale, Some("gemini-3.1-flash-image")).unwrap_err();
        assert_eq!(e.code(), "wrong_tool");
        assert!(e.to_string().contains("nightmareai/real-esrgan"), "{e}");
        assert_eq!(
            model(&r, Tool::Edit, Some("dall-e")).unwrap_err().code(),
            "unknown_model"
        );
    }

    #[test]
    fn texts_are_bounded() {
        let limits = ApiConfig {
            max_prompt_chars: 5,
            max_title_chars: 3,
            ..ApiConfig::default()
        };
        assert!(prompt("prompt", "héllo", &limits).is_ok());
        assert_eq!(
            prompt("prompt", "hello!", &limits).unwrap_err().code(),
            "text_too_long"
        );
        assert_eq!(
            prompt("prompt", " \n", &limits).unwrap_err().code(),
            "empty_text"
        );
        assert!(title("abc", &limits).is_ok());
        assert_eq!(title("a\nb", &limits).unwrap_err().code(), "bad_title");
        assert_eq!(title("abcd", &limits).unwrap_err().code(), "text_too_long");
    }
}
