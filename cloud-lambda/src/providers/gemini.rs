//! Gemini image models through `generateContent`: text-to-image, or an edit
//! of one input image with a prompt.
//!
//! `POST {base}/v1beta/models/{model}:generateContent` with
//! `x-goog-api-key`. Blocks arrive as 200s (`promptFeedback.blockReason`, or
//! a candidate whose `finishReason` is `IMAGE_SAFETY` and the like) and end
//! as [`codes::SAFETY_BLOCK`]; an answer with only text ends as
//! [`codes::NO_IMAGE`]. Google's error JSON (`{"error":{code,message,status,
//! details}}`) is classified by [`google_error`], which Imagen shares.
//!
//! Usage comes from `usageMetadata`: prompt tokens and the IMAGE modality's
//! output tokens, which is what Google bills.

use std::fmt;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ProviderConfig, ProviderError, bad_response, codes, decode_base64, delay_after, human_duration,
    parse_proto_duration, retry_after_header, sentence, sniff_mime, transport_error, trim_base,
};
use crate::registry::Usage;

/// Aspect ratios the Gemini image models accept.
pub const ASPECT_RATIOS: [&str; 10] = [
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
];
/// `imageSize` values (3.x models).
pub const IMAGE_SIZES: [&str; 3] = ["1K", "2K", "4K"];
/// Google's limit on a whole inline request; larger inputs go through
/// the Files API ([`super::gemini_files`]) and are refused inline before
/// sending.
pub const MAX_INLINE_BYTES: usize = 20 * 1024 * 1024;

/// An input image: inside the request, or a file uploaded with
/// [`super::gemini_files`].
#[derive(Clone, Copy, PartialEq)]
pub enum GeminiInput<'a> {
    Inline { mime: &'a str, bytes: &'a [u8] },
    File { mime: &'a str, uri: &'a str },
}

impl fmt::Debug for GeminiInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeminiInput::Inline { mime, bytes } => {
                write!(f, "Inline({mime}, {} bytes)", bytes.len())
            }
            GeminiInput::File { mime, uri } => write!(f, "File({mime}, {uri})"),
        }
    }
}

/// The image Gemini made.
#[derive(Clone, PartialEq)]
pub struct GeminiImage {
    pub mime: String,
    pub bytes: Vec<u8>,
    /// Text the model wrote alongside the image (thoughts left out).
    pub text: Option<String>,
    /// [`Usage::Tokens`]: `promptTokenCount` and the IMAGE output tokens.
    pub usage: Usage,
    pub model_version: Option<String>,
}

impl fmt::Debug for GeminiImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiImage")
            .field("mime", &self.mime)
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .field("text", &self.text)
            .field("usage", &self.usage)
            .field("model_version", &self.model_version)
            .finish()
    }
}

/// Generates (no `input`) or edits (`input`, inline or an uploaded file)
/// an image with `model_id`. `aspect_ratio` is one of [`ASPECT_RATIOS`];
/// `image_size` one of [`IMAGE_SIZES`] (3.x models only).
pub async fn generate_content(
    cfg: &ProviderConfig,
    model_id: &str,
    prompt: &str,
    input: Option<GeminiInput<'_>>,
    aspect_ratio: Option<&str>,
    image_size: Option<&str>,
) -> Result<GeminiImage, ProviderError> {
    let key = cfg.gemini_key.as_deref().ok_or_else(|| {
        ProviderError::permanent(
            codes::MISSING_KEY,
            "No Gemini API key is configured (GEMINI_API_KEY).",
        )
    })?;
    let body = request_body(prompt, input, aspect_ratio, image_size)?;
    let url = format!(
        "{}/v1beta/models/{model_id}:generateContent",
        trim_base(&cfg.gemini_base)
    );
    let (status, headers, bytes) = post_json(cfg, "Gemini", &url, key, &body).await?;
    if !status.is_success() {
        return Err(google_error(
            cfg,
            Google::Gemini,
            model_id,
            status,
            &headers,
            &bytes,
        ));
    }
    parse_response(&bytes)
}

/// The request body, exactly as `providers.md` shows it.
fn request_body(
    prompt: &str,
    input: Option<GeminiInput<'_>>,
    aspect_ratio: Option<&str>,
    image_size: Option<&str>,
) -> Result<Value, ProviderError> {
    if prompt.trim().is_empty() {
        return Err(ProviderError::permanent(
            codes::INVALID_INPUT,
            "The prompt is empty.",
        ));
    }
    let mut parts = vec![json!({ "text": prompt })];
    if let Some(GeminiInput::File { mime, uri }) = input {
        parts.push(json!({ "file_data": { "mime_type": mime, "file_uri": uri } }));
    }
    if let Some(GeminiInput::Inline { mime, bytes }) = input {
        if bytes.is_empty() {
            return Err(ProviderError::permanent(
                codes::INVALID_INPUT,
                "The input image is empty.",
            ));
        }
        // Base64 grows the image by a third.
        if bytes.len() / 3 * 4 > MAX_INLINE_BYTES {
            return Err(ProviderError::permanent(
                codes::INVALID_INPUT,
                format!(
                    "The input image is too large to send to Gemini inline ({:.1} MB; the limit is about 15 MB).",
                    bytes.len() as f64 / 1_048_576.0
                ),
            ));
        }
        parts.push(json!({ "inline_data": { "mime_type": mime, "data": STANDARD.encode(bytes) } }));
    }
    let mut generation = json!({ "responseModalities": ["TEXT", "IMAGE"] });
    let mut image_config = serde_json::Map::new();
    if let Some(ratio) = aspect_ratio {
        if !ASPECT_RATIOS.contains(&ratio) {
            return Err(ProviderError::permanent(
                codes::INVALID_INPUT,
                format!(
                    "Gemini does not make {ratio} images; pick one of {}.",
                    ASPECT_RATIOS.join(", ")
                ),
            ));
        }
        image_config.insert("aspectRatio".into(), ratio.into());
    }
    if let Some(size) = image_size {
        if !IMAGE_SIZES.contains(&size) {
            return Err(ProviderError::permanent(
                codes::INVALID_INPUT,
                format!(
                    "Gemini does not make {size} images; pick one of {}.",
                    IMAGE_SIZES.join(", ")
                ),
            ));
        }
        image_config.insert("imageSize".into(), size.into());
    }
    if !image_config.is_empty() {
        generation["imageConfig"] = Value::Object(image_config);
    }
    Ok(json!({
        "contents": [{ "role": "user", "parts": parts }],
        "generationConfig": generation,
    }))
}

/// POSTs JSON to a Google endpoint and reads the whole answer.
pub(crate) async fn post_json(
    cfg: &ProviderConfig,
    service: &str,
    url: &str,
    key: &str,
    body: &Value,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), ProviderError> {
    let client = cfg.client()?;
    let timeout = cfg.generate_timeout;
    let resp = client
        .post(url)
        .header("x-goog-api-key", key)
        .json(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_error(service, &e, timeout))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| transport_error(service, &e, timeout))?;
    Ok((status, headers, bytes.to_vec()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    #[serde(alias = "inline_data")]
    inline_data: Option<Blob>,
    thought: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Blob {
    #[serde(default, alias = "mime_type")]
    mime_type: String,
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    #[serde(default)]
    candidates_tokens_details: Vec<ModalityCount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModalityCount {
    modality: Option<String>,
    token_count: Option<u64>,
}

/// A 200 answer: the image, or why there is none.
fn parse_response(body: &[u8]) -> Result<GeminiImage, ProviderError> {
    let r: Response = serde_json::from_slice(body).map_err(|_| bad_response("Gemini"))?;
    let usage = usage_of(r.usage_metadata.as_ref());

    fn visible(c: &Candidate) -> Vec<&Part> {
        c.content
            .iter()
            .flat_map(|c| &c.parts)
            .filter(|p| p.thought != Some(true))
            .collect()
    }
    let image = r
        .candidates
        .iter()
        .flat_map(visible)
        .find_map(|p| p.inline_data.as_ref());
    let text = r.candidates.first().map(|c| {
        visible(c)
            .iter()
            .filter_map(|p| p.text.as_deref())
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_owned()
    });
    let text = text.filter(|t| !t.is_empty());

    if let Some(blob) = image {
        let bytes = decode_base64(&blob.data)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                ProviderError::permanent(
                    codes::BAD_RESPONSE,
                    "Gemini sent an image that could not be decoded.",
                )
            })?;
        let mime = if blob.mime_type.is_empty() {
            sniff_mime(&bytes).to_owned()
        } else {
            blob.mime_type.clone()
        };
        return Ok(GeminiImage {
            mime,
            bytes,
            text,
            usage,
            model_version: r.model_version,
        });
    }

    if let Some(reason) = r
        .prompt_feedback
        .as_ref()
        .and_then(|f| f.block_reason.as_deref())
    {
        return Err(prompt_blocked(reason));
    }
    let Some(first) = r.candidates.first() else {
        return Err(ProviderError::permanent(
            codes::NO_IMAGE,
            "Gemini returned no answer and no image.",
        ));
    };
    Err(no_image(
        first.finish_reason.as_deref().unwrap_or("STOP"),
        text.as_deref(),
    ))
}

fn usage_of(meta: Option<&UsageMetadata>) -> Usage {
    let Some(m) = meta else {
        return Usage::Tokens {
            prompt: 0,
            image_output: 0,
        };
    };
    let image_counts: Vec<u64> = m
        .candidates_tokens_details
        .iter()
        .filter(|d| d.modality.as_deref() == Some("IMAGE"))
        .filter_map(|d| d.token_count)
        .collect();
    let image_output = if image_counts.is_empty() {
        m.candidates_token_count.unwrap_or(0)
    } else {
        image_counts.iter().sum()
    };
    Usage::Tokens {
        prompt: m.prompt_token_count.unwrap_or(0),
        image_output,
    }
}

fn prompt_blocked(reason: &str) -> ProviderError {
    let message = match reason {
        "SAFETY" | "PROHIBITED_CONTENT" | "IMAGE_SAFETY" => {
            format!("Gemini refused this prompt for safety reasons ({reason}).")
        }
        "BLOCKLIST" => {
            format!("Gemini refused this prompt because it contains blocked terms ({reason}).")
        }
        _ => format!("Gemini refused this prompt ({reason})."),
    };
    ProviderError::permanent(codes::SAFETY_BLOCK, message)
}

/// A candidate without an image: blocked, or Gemini just did not draw.
fn no_image(finish_reason: &str, text: Option<&str>) -> ProviderError {
    let said = text
        .map(|t| format!(" Gemini said: “{}”", sentence(t, 200)))
        .unwrap_or_default();
    let blocked = |why: &str| {
        ProviderError::permanent(
            codes::SAFETY_BLOCK,
            format!("Gemini withheld the image {why} ({finish_reason}).{said}"),
        )
    };
    match finish_reason {
        "SAFETY" | "IMAGE_SAFETY" => blocked("for safety reasons"),
        "PROHIBITED_CONTENT" | "IMAGE_PROHIBITED_CONTENT" | "BLOCKLIST" | "SPII" => {
            blocked("because the request involves prohibited content")
        }
        "RECITATION" | "IMAGE_RECITATION" => {
            blocked("because it would copy existing work too closely")
        }
        "STOP" => match text {
            Some(t) => ProviderError::permanent(
                codes::NO_IMAGE,
                format!(
                    "Gemini answered with text but no image: “{}”",
                    sentence(t, 200)
                ),
            ),
            None => ProviderError::permanent(codes::NO_IMAGE, "Gemini returned no image."),
        },
        "MAX_TOKENS" => ProviderError::permanent(
            codes::NO_IMAGE,
            format!(
                "Gemini ran out of output tokens before it made an image ({finish_reason}).{said}"
            ),
        ),
        _ => ProviderError::permanent(
            codes::NO_IMAGE,
            format!("Gemini returned no image ({finish_reason}).{said}"),
        ),
    }
}

/// Which Google API an error came from: it names the product in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Google {
    Gemini,
    Imagen,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

/// Classifies a Google error answer (any non-2xx).
pub(crate) fn google_error(
    cfg: &ProviderConfig,
    api: Google,
    model_id: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> ProviderError {
    let service = match api {
        Google::Gemini => "Gemini",
        Google::Imagen => "Imagen",
    };
    let parsed = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let raw_message = parsed
        .as_ref()
        .map(|e| cfg.scrub(&e.message))
        .unwrap_or_default();
    let said = if raw_message.trim().is_empty() {
        String::new()
    } else {
        format!(" Google says: {}", sentence(&raw_message, 300))
    };
    let status_name = parsed
        .as_ref()
        .map(|e| e.status.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("");
    let details = parsed
        .as_ref()
        .map(|e| e.details.as_slice())
        .unwrap_or_default();
    let detail_of = |suffix: &str| {
        details
            .iter()
            .find(|d| d["@type"].as_str().is_some_and(|t| t.ends_with(suffix)))
    };

    if detail_of("google.rpc.ErrorInfo").is_some_and(|d| d["reason"] == "API_KEY_INVALID") {
        return ProviderError::permanent(codes::AUTH, "The Gemini API key is invalid.");
    }
    let permanent = |code, text: String| ProviderError::permanent(code, text);
    match status.as_u16() {
        400 if status_name == "FAILED_PRECONDITION" => permanent(
            codes::AUTH,
            format!("{service} cannot be used with this account as it is set up.{said}"),
        ),
        400 => permanent(
            codes::INVALID_INPUT,
            format!("{service} rejected the request.{said}"),
        ),
        401 => permanent(
            codes::AUTH,
            format!("{service} did not accept the API key.{said}"),
        ),
        403 => permanent(
            codes::AUTH,
            format!("The Gemini API key is not allowed to use {model_id}.{said}"),
        ),
        404 => match api {
            Google::Gemini => permanent(
                codes::NOT_FOUND,
                format!("Gemini model {model_id} is not available (it may have been retired)."),
            ),
            Google::Imagen => permanent(
                codes::NOT_FOUND,
                format!("Imagen 4 model {model_id} is no longer served by Google."),
            ),
        },
        413 => permanent(
            codes::INVALID_INPUT,
            format!("The request was too large for {service}."),
        ),
        408 => ProviderError::transient(
            format!("{service} stopped waiting for the request (HTTP 408)."),
            retry_after_header(headers, SystemTime::now()),
        ),
        429 => {
            // Google's own message is long (links, quota metrics): say it briefly.
            let retry_after = detail_of("google.rpc.RetryInfo")
                .and_then(|d| d["retryDelay"].as_str())
                .and_then(parse_proto_duration)
                .or_else(|| delay_after(&raw_message, "retry in"))
                .or_else(|| retry_after_header(headers, SystemTime::now()));
            let when = retry_after
                .map(|d| format!("; it asks to wait {}", human_duration(d)))
                .unwrap_or_default();
            ProviderError::transient(
                format!("{service} is rate-limiting this account (quota exhausted for now{when})."),
                retry_after,
            )
        }
        500 => ProviderError::transient(
            format!("{service} had an internal error.{said}"),
            retry_after_header(headers, SystemTime::now()),
        ),
        503 => ProviderError::transient(
            format!("{service} is overloaded or unavailable right now.{said}"),
            retry_after_header(headers, SystemTime::now()),
        ),
        504 => ProviderError::transient(
            format!("{service} ran out of time on its side.{said}"),
            retry_after_header(headers, SystemTime::now()),
        ),
        s if (500..600).contains(&s) => ProviderError::transient(
            format!("{service} is having trouble (HTTP {s})."),
            retry_after_header(headers, SystemTime::now()),
        ),
        s if (400..500).contains(&s) => permanent(
            codes::REJECTED,
            format!("{service} refused the request (HTTP {s}).{said}"),
        ),
        s => permanent(
            codes::BAD_RESPONSE,
            format!("{service} answered with an unexpected HTTP {s}."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::registry::{BUILTIN, Registry};

    const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

    fn cfg() -> ProviderConfig {
        ProviderConfig {
            gemini_key: Some("AIzaTESTKEY".into()),
            ..ProviderConfig::default()
        }
    }

    fn classify(status: u16, body: &str) -> ProviderError {
        google_error(
            &cfg(),
            Google::Gemini,
            "gemini-3.1-flash-image",
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    fn permanent(e: ProviderError) -> (&'static str, String) {
        match e {
            ProviderError::Permanent { code, message } => (code, message),
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn the_request_body_is_the_documented_shape() {
        let body = request_body(
            "Put this product on a white background",
            Some(GeminiInput::Inline {
                mime: "image/png",
                bytes: b"png",
            }),
            Some("16:9"),
            None,
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"contents":[{"role":"user","parts":[
                {"text":"Put this product on a white background"},
                {"inline_data":{"mime_type":"image/png","data":"cG5n"}}]}],
             "generationConfig":{"responseModalities":["TEXT","IMAGE"],"imageConfig":{"aspectRatio":"16:9"}}})
        );
        let text_only = request_body("A cat", None, None, Some("2K")).unwrap();
        assert_eq!(
            text_only["contents"][0]["parts"].as_array().unwrap().len(),
            1
        );
        assert_eq!(
            text_only["generationConfig"]["imageConfig"],
            json!({"imageSize":"2K"})
        );
        let bare = request_body("A cat", None, None, None).unwrap();
        assert!(bare["generationConfig"].get("imageConfig").is_none());
        let uploaded = request_body(
            "Brighter",
            Some(GeminiInput::File {
                mime: "image/png",
                uri: "https://generativelanguage.googleapis.com/v1beta/files/abc-123",
            }),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            uploaded["contents"][0]["parts"][1],
            json!({"file_data":{"mime_type":"image/png","file_uri":"https://generativelanguage.googleapis.com/v1beta/files/abc-123"}})
        );
    }

    #[test]
    fn bad_parameters_are_refused_before_any_request() {
        let (code, msg) = permanent(request_body("x", None, Some("7:3"), None).unwrap_err());
        assert_eq!(code, codes::INVALID_INPUT);
        assert!(
            msg.starts_with("Gemini does not make 7:3 images; pick one of 1:1, 2:3"),
            "{msg}"
        );
        assert_eq!(
            permanent(request_body("x", None, None, Some("8K")).unwrap_err()).0,
            codes::INVALID_INPUT
        );
        assert_eq!(
            permanent(request_body("  ", None, None, None).unwrap_err()).1,
            "The prompt is empty."
        );
        assert_eq!(
            permanent(
                request_body(
                    "x",
                    Some(GeminiInput::Inline {
                        mime: "image/png",
                        bytes: b""
                    }),
                    None,
                    None
                )
                .unwrap_err()
            )
            .0,
            codes::INVALID_INPUT
        );
    }

    #[tokio::test]
    async fn a_missing_key_is_permanent_and_sends_nothing() {
        let cfg = ProviderConfig {
            gemini_base: "http://127.0.0.1:9".into(),
            ..ProviderConfig::default()
        };
        let e = generate_content(&cfg, "gemini-3.1-flash-image", "A cat", None, None, None)
            .await
            .unwrap_err();
        assert_eq!(
            permanent(e),
            (
                codes::MISSING_KEY,
                "No Gemini API key is configured (GEMINI_API_KEY).".to_owned()
            )
        );
    }

    #[test]
    fn the_documented_success_parses_with_usage_and_prices_to_the_nano_dollar() {
        let body = r#"{"candidates":[{"content":{"role":"model","parts":[
            {"text":"Here you go"},
            {"inlineData":{"mimeType":"image/png","data":"PNG_DATA"}}]},
          "finishReason":"STOP","index":0}],
         "usageMetadata":{"promptTokenCount":264,"candidatesTokenCount":1291,"totalTokenCount":1555,
          "promptTokensDetails":[{"modality":"TEXT","tokenCount":6},{"modality":"IMAGE","tokenCount":258}],
          "candidatesTokensDetails":[{"modality":"IMAGE","tokenCount":1290}]},
         "modelVersion":"gemini-2.5-flash-image","responseId":"BgtOas67BpOJqtsP3pXGqQU"}"#
            .replace("PNG_DATA", PNG_1X1);
        let img = parse_response(body.as_bytes()).unwrap();
        assert_eq!(img.mime, "image/png");
        assert!(img.bytes.starts_with(b"\x89PNG"));
        assert_eq!(img.text.as_deref(), Some("Here you go"));
        assert_eq!(img.model_version.as_deref(), Some("gemini-2.5-flash-image"));
        assert_eq!(
            img.usage,
            Usage::Tokens {
                prompt: 264,
                image_output: 1290
            }
        );
        let registry = Registry::parse(BUILTIN).unwrap();
        let cost = registry
            .get("gemini-2.5-flash-image")
            .unwrap()
            .price
            .cost(img.usage)
            .unwrap();
        assert_eq!(cost.nano_usd, 38_779_200);
        let shown = format!("{img:?}");
        assert!(
            !shown.contains("iVBOR") && shown.contains("bytes"),
            "{shown}"
        );
    }

    #[test]
    fn thoughts_are_skipped_and_usage_falls_back_to_the_candidate_count() {
        let body = r#"{"candidates":[{"content":{"parts":[
            {"text":"thinking about it","thought":true},
            {"inlineData":{"mimeType":"image/jpeg","data":"/9j/AA=="},"thought":true},
            {"inline_data":{"mime_type":"image/png","data":"PNG_DATA"}}]},"finishReason":"STOP"}],
          "usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":1120}}"#
            .replace("PNG_DATA", PNG_1X1);
        let img = parse_response(body.as_bytes()).unwrap();
        assert_eq!(img.mime, "image/png", "the thought image is skipped");
        assert_eq!(img.text, None, "thought text is not the answer's text");
        assert_eq!(
            img.usage,
            Usage::Tokens {
                prompt: 10,
                image_output: 1120
            }
        );
        let no_usage =
            r#"{"candidates":[{"content":{"parts":[{"inlineData":{"data":"PNG_DATA"}}]}}]}"#
                .replace("PNG_DATA", PNG_1X1);
        let img = parse_response(no_usage.as_bytes()).unwrap();
        assert_eq!(
            img.mime, "image/png",
            "sniffed when the answer does not say"
        );
        assert_eq!(
            img.usage,
            Usage::Tokens {
                prompt: 0,
                image_output: 0
            }
        );
    }

    #[test]
    fn blocks_and_text_only_answers_are_permanent_with_readable_messages() {
        let prompt_block = r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":12,"totalTokenCount":12}}"#;
        assert_eq!(
            permanent(parse_response(prompt_block.as_bytes()).unwrap_err()),
            (
                codes::SAFETY_BLOCK,
                "Gemini refused this prompt for safety reasons (PROHIBITED_CONTENT).".to_owned()
            )
        );
        let blocklist = r#"{"promptFeedback":{"blockReason":"BLOCKLIST"}}"#;
        assert_eq!(
            permanent(parse_response(blocklist.as_bytes()).unwrap_err()).0,
            codes::SAFETY_BLOCK
        );

        let image_block = r#"{"candidates":[{"content":{"parts":[{"text":"I can't..."}]},"finishReason":"IMAGE_SAFETY"}]}"#;
        assert_eq!(
            permanent(parse_response(image_block.as_bytes()).unwrap_err()),
            (codes::SAFETY_BLOCK, "Gemini withheld the image for safety reasons (IMAGE_SAFETY). Gemini said: “I can't...”".to_owned())
        );
        for reason in [
            "SAFETY",
            "PROHIBITED_CONTENT",
            "IMAGE_PROHIBITED_CONTENT",
            "RECITATION",
            "IMAGE_RECITATION",
        ] {
            let body = format!(
                r#"{{"candidates":[{{"content":{{"parts":[]}},"finishReason":"{reason}"}}]}}"#
            );
            let (code, msg) = permanent(parse_response(body.as_bytes()).unwrap_err());
            assert_eq!(code, codes::SAFETY_BLOCK, "{reason}");
            assert!(
                msg.starts_with("Gemini withheld the image") && msg.contains(reason),
                "{msg}"
            );
        }
        for reason in ["NO_IMAGE", "IMAGE_OTHER", "OTHER", "MAX_TOKENS"] {
            let body = format!(r#"{{"candidates":[{{"finishReason":"{reason}"}}]}}"#);
            let (code, msg) = permanent(parse_response(body.as_bytes()).unwrap_err());
            assert_eq!(code, codes::NO_IMAGE, "{reason}");
            assert!(msg.contains(reason), "{msg}");
        }

        let text_only = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Here is a description of a cat."}]},"finishReason":"STOP"}]}"#;
        assert_eq!(
            permanent(parse_response(text_only.as_bytes()).unwrap_err()),
            (
                codes::NO_IMAGE,
                "Gemini answered with text but no image: “Here is a description of a cat.”"
                    .to_owned()
            )
        );
        assert_eq!(
            permanent(parse_response(b"{}").unwrap_err()).0,
            codes::NO_IMAGE
        );
        assert_eq!(
            permanent(parse_response(b"<html>").unwrap_err()).0,
            codes::BAD_RESPONSE
        );
        let bad_b64 = r#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"%%%"}}]}}]}"#;
        let (code, msg) = permanent(parse_response(bad_b64.as_bytes()).unwrap_err());
        assert_eq!(code, codes::BAD_RESPONSE);
        assert!(!msg.contains("%%%"));
    }

    #[test]
    fn google_errors_are_classified() {
        let bad_key = r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
            "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}}]}}"#;
        assert_eq!(
            permanent(classify(400, bad_key)),
            (codes::AUTH, "The Gemini API key is invalid.".to_owned())
        );

        let invalid = r#"{"error":{"code":400,"message":"Unsupported MIME type: image/bmp","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            permanent(classify(400, invalid)),
            (
                codes::INVALID_INPUT,
                "Gemini rejected the request. Google says: Unsupported MIME type: image/bmp."
                    .to_owned()
            )
        );

        let denied = r#"{"error":{"code":403,"message":"Method doesn't allow unregistered callers","status":"PERMISSION_DENIED"}}"#;
        assert_eq!(permanent(classify(403, denied)).0, codes::AUTH);

        let missing = r#"{"error":{"code":404,"message":"models/gemini-9 is not found for API version v1beta, or is not supported for generateContent.","status":"NOT_FOUND"}}"#;
        let (code, msg) = permanent(classify(404, missing));
        assert_eq!(code, codes::NOT_FOUND);
        assert!(
            msg.starts_with("Gemini model gemini-3.1-flash-image is not available"),
            "{msg}"
        );

        let quota = r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details. Please retry in 49.1s.","status":"RESOURCE_EXHAUSTED",
            "details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"41s"}]}}"#;
        let e = classify(429, quota);
        assert!(e.is_transient());
        assert_eq!(
            e.retry_after(),
            Some(Duration::from_secs(41)),
            "RetryInfo wins"
        );
        assert!(
            e.message()
                .starts_with("Gemini is rate-limiting this account"),
            "{}",
            e.message()
        );
        let quota_msg_only = r#"{"error":{"code":429,"message":"Resource exhausted. Please retry in 49.1s.","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            classify(429, quota_msg_only).retry_after(),
            Some(Duration::from_secs_f64(49.1))
        );
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "12".parse().unwrap());
        let bare = google_error(
            &cfg(),
            Google::Gemini,
            "m",
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            b"{}",
        );
        assert_eq!(
            bare.retry_after(),
            Some(Duration::from_secs(12)),
            "Retry-After as the last resort"
        );

        let overloaded = r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#;
        let e = classify(503, overloaded);
        assert_eq!(
            e.message(),
            "Gemini is overloaded or unavailable right now. Google says: The model is overloaded. Please try again later."
        );
        assert!(e.is_transient());
        assert!(classify(504, r#"{"error":{"code":504,"message":"Deadline expired before operation could complete.","status":"DEADLINE_EXCEEDED"}}"#).is_transient());
        assert!(classify(500, "").is_transient());
        assert!(classify(502, "<html>bad gateway</html>").is_transient());
        assert_eq!(classify(418, "").code(), codes::REJECTED);
    }

    #[test]
    fn provider_text_never_leaks_the_key() {
        let echo =
            r#"{"error":{"code":400,"message":"Bad key AIzaTESTKEY","status":"INVALID_ARGUMENT"}}"#;
        let msg = classify(400, echo).to_string();
        assert!(!msg.contains("AIzaTESTKEY"), "{msg}");
    }
}
