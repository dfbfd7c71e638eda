//! Replicate predictions: create (community models by `version`, official
//! models by name), poll, cancel, download outputs, and the usage they are
//! billed by.
//!
//! Base `{replicate_base}/v1`, header `Authorization: Bearer r8_...`.
//! Create answers 201 with a [`Prediction`]; the webhook (see
//! [`super::webhook`]) or [`get_prediction`] brings it to a terminal status.
//! Outputs are URLs (a string or an array) that Replicate deletes about an
//! hour later: download them at once with [`download_output`].
//!
//! Errors are problem+json-like (`{"title","detail","status"}`): 401 →
//! [`codes::AUTH`], 402 → [`codes::NO_CREDIT`], 422 →
//! [`codes::INVALID_INPUT`], 429 → transient honouring `Retry-After`, 5xx →
//! transient. A failed prediction ends as [`codes::PREDICTION_FAILED`] with
//! the model's error.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::{
    ProviderConfig, ProviderError, bad_response, codes, delay_after, human_duration,
    retry_after_header, sentence, transport_error, trim_base,
};
use crate::registry::{Model, Price, Provider, Usage};

/// Largest output we download.
pub const MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;

/// A prediction as Replicate reports it (create, get, cancel, webhook).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub id: String,
    /// `owner/name`.
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub version: Option<String>,
    pub status: PredictionStatus,
    #[serde(default)]
    pub input: Value,
    /// A URL, an array of URLs, or `None` until it succeeds.
    #[serde(default)]
    pub output: Option<Value>,
    /// The model's error, on failure.
    #[serde(default, deserialize_with = "error_text")]
    pub error: Option<String>,
    #[serde(default)]
    pub logs: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metrics: Metrics,
    #[serde(default, deserialize_with = "null_as_default")]
    pub urls: Urls,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
    /// Outputs (and inputs) deleted: too late to download.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data_removed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PredictionStatus {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
    /// The deadline passed before it started.
    Aborted,
    /// A status this client does not know; treated as still running.
    #[serde(other)]
    Unknown,
}

/// `metrics`: empty (`{}`) until the prediction has run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Seconds of compute billed for community models.
    #[serde(default)]
    pub predict_time: Option<f64>,
    #[serde(default)]
    pub total_time: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Urls {
    #[serde(default)]
    pub get: Option<String>,
    #[serde(default)]
    pub cancel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<String>,
}

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `error` is documented as a string; anything else is kept as its JSON.
fn error_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

impl PredictionStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PredictionStatus::Succeeded
                | PredictionStatus::Failed
                | PredictionStatus::Canceled
                | PredictionStatus::Aborted
        )
    }
}

impl Prediction {
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// The output URLs: `output` as a string, or the strings of an array
    /// (or of an object's values).
    pub fn output_urls(&self) -> Vec<String> {
        let strings = |v: &Value| v.as_str().map(str::to_owned);
        match &self.output {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(strings).collect(),
            Some(Value::Object(fields)) => fields.values().filter_map(strings).collect(),
            _ => Vec::new(),
        }
    }

    /// `None` while it runs; then its output URLs, or why there are none.
    pub fn outcome(&self) -> Option<Result<Vec<String>, ProviderError>> {
        let failed = |code, message: String| Some(Err(ProviderError::permanent(code, message)));
        match self.status {
            PredictionStatus::Starting | PredictionStatus::Processing | PredictionStatus::Unknown => None,
            PredictionStatus::Failed => match self.error.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
                Some(e) => failed(codes::PREDICTION_FAILED, format!("The Replicate prediction failed: {}", sentence(e, 300))),
                None => failed(codes::PREDICTION_FAILED, "The Replicate prediction failed without saying why.".into()),
            },
            PredictionStatus::Canceled => failed(codes::CANCELED, "The Replicate prediction was canceled.".into()),
            PredictionStatus::Aborted => failed(
                codes::CANCELED,
                "The Replicate prediction was aborted: its deadline passed before it could start.".into(),
            ),
            PredictionStatus::Succeeded if self.data_removed => failed(
                codes::OUTPUT_EXPIRED,
                "Replicate has already deleted this prediction's output (outputs are kept for about an hour).".into(),
            ),
            PredictionStatus::Succeeded => {
                let urls = self.output_urls();
                if urls.is_empty() {
                    failed(codes::NO_IMAGE, "Replicate finished the prediction but returned no output.".into())
                } else {
                    Some(Ok(urls))
                }
            }
        }
    }
}

/// What the prediction is billed by: [`Usage::Seconds`] of
/// `metrics.predict_time` for per-second (community) models,
/// [`Usage::Outputs`] for per-output (official) ones.
pub fn usage(model: &Model, prediction: &Prediction) -> Usage {
    match model.price {
        Price::PerSecond { .. } => Usage::Seconds(prediction.metrics.predict_time.unwrap_or(0.0)),
        _ => Usage::Outputs(prediction.output_urls().len() as u64),
    }
}

/// Starts `model` on `input`. Community models (with a `version` in the
/// registry) go to `POST /v1/predictions`; official ones to
/// `POST /v1/models/{owner}/{name}/predictions`. With a `webhook`, Replicate
/// posts the prediction there on start and on completion.
pub async fn create_prediction(
    cfg: &ProviderConfig,
    model: &Model,
    input: Value,
    webhook: Option<&str>,
) -> Result<Prediction, ProviderError> {
    if model.provider != Provider::Replicate {
        return Err(ProviderError::permanent(
            codes::INVALID_INPUT,
            format!("{} is not a Replicate model.", model.id),
        ));
    }
    let mut body = json!({ "input": input });
    if let Some(url) = webhook {
        body["webhook"] = url.into();
        body["webhook_events_filter"] = json!(["start", "completed"]);
    }
    let base = trim_base(&cfg.replicate_base);
    let url = match &model.version {
        Some(version) => {
            body["version"] = version.as_str().into();
            format!("{base}/v1/predictions")
        }
        None => {
            let (owner, name) = model
                .id
                .split_once('/')
                .filter(|(o, n)| is_path_segment(o) && is_path_segment(n))
                .ok_or_else(|| {
                    ProviderError::permanent(
                        codes::INVALID_INPUT,
                        format!("{} is not a Replicate model name (owner/name).", model.id),
                    )
                })?;
            format!("{base}/v1/models/{owner}/{name}/predictions")
        }
    };
    let what = format!("the model {}", model.id);
    call(cfg, Method::POST, &url, Some(&body), &what).await
}

/// The prediction's current state.
pub async fn get_prediction(cfg: &ProviderConfig, id: &str) -> Result<Prediction, ProviderError> {
    check_id(id)?;
    let url = format!("{}/v1/predictions/{id}", trim_base(&cfg.replicate_base));
    call(cfg, Method::GET, &url, None, &format!("prediction {id}")).await
}

/// Asks Replicate to stop the prediction; answers its state.
pub async fn cancel_prediction(
    cfg: &ProviderConfig,
    id: &str,
) -> Result<Prediction, ProviderError> {
    check_id(id)?;
    let url = format!(
        "{}/v1/predictions/{id}/cancel",
        trim_base(&cfg.replicate_base)
    );
    call(cfg, Method::POST, &url, None, &format!("prediction {id}")).await
}

/// Polls every `every` until the prediction is terminal (and returns it,
/// whatever its status: see [`Prediction::outcome`]). Transient errors on
/// the way are waited out; after `give_up_after` the answer is a transient
/// error (the prediction may still finish: its webhook still counts).
pub async fn wait_for_prediction(
    cfg: &ProviderConfig,
    id: &str,
    every: Duration,
    give_up_after: Duration,
) -> Result<Prediction, ProviderError> {
    let start = Instant::now();
    loop {
        let pause = match get_prediction(cfg, id).await {
            Ok(p) if p.is_terminal() => return Ok(p),
            Ok(_) => every,
            Err(ProviderError::Transient { retry_after, .. }) => {
                retry_after.unwrap_or(every).max(every)
            }
            Err(e) => return Err(e),
        };
        if start.elapsed() + pause > give_up_after {
            return Err(ProviderError::transient(
                format!(
                    "Replicate was still working on the prediction after {}.",
                    human_duration(give_up_after)
                ),
                None,
            ));
        }
        tokio::time::sleep(pause).await;
    }
}

/// Downloads one output: an `https://` URL (with the token only when it is
/// Replicate's own API) or a `data:` URL.
pub async fn download_output(cfg: &ProviderConfig, url: &str) -> Result<Vec<u8>, ProviderError> {
    if let Some(data) = url.strip_prefix("data:") {
        return decode_data_url(data);
    }
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            ProviderError::permanent(
                codes::BAD_RESPONSE,
                "Replicate returned an output that is not a web address.",
            )
        })?;
    let client = cfg.client()?;
    let timeout = cfg.download_timeout;
    let mut req = client.get(parsed).timeout(timeout);
    let own_api = format!("{}/", trim_base(&cfg.replicate_base));
    if let (true, Some(token)) = (url.starts_with(&own_api), &cfg.replicate_token) {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| transport_error("Replicate", &e, timeout))?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        return Err(ProviderError::permanent(
            codes::OUTPUT_EXPIRED,
            "Replicate's output is no longer there (outputs are deleted about an hour after the prediction).",
        ));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(ProviderError::transient(
            format!(
                "Replicate's output could not be downloaded just now (HTTP {}).",
                status.as_u16()
            ),
            retry_after_header(resp.headers(), SystemTime::now()),
        ));
    }
    if !status.is_success() {
        return Err(ProviderError::permanent(
            codes::BAD_RESPONSE,
            format!(
                "Replicate's output could not be downloaded (HTTP {}).",
                status.as_u16()
            ),
        ));
    }
    let too_big = || {
        ProviderError::permanent(
            codes::BAD_RESPONSE,
            format!(
                "Replicate's output is larger than {} MB.",
                MAX_OUTPUT_BYTES / 1024 / 1024
            ),
        )
    };
    let announced = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_OUTPUT_BYTES) {
        return Err(too_big());
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| transport_error("Replicate", &e, timeout))?;
    if bytes.len() as u64 > MAX_OUTPUT_BYTES {
        return Err(too_big());
    }
    Ok(bytes.to_vec())
}

/// `data:[<mime>][;base64],<data>` without the `data:`.
fn decode_data_url(data: &str) -> Result<Vec<u8>, ProviderError> {
    let bad = || {
        ProviderError::permanent(
            codes::BAD_RESPONSE,
            "Replicate returned an output that could not be decoded.",
        )
    };
    let (meta, payload) = data.split_once(',').ok_or_else(bad)?;
    if meta.ends_with(";base64") {
        super::decode_base64(payload).ok_or_else(bad)
    } else {
        Ok(payload.as_bytes().to_vec())
    }
}

fn is_path_segment(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
}

fn check_id(id: &str) -> Result<(), ProviderError> {
    if !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        Ok(())
    } else {
        Err(ProviderError::permanent(
            codes::INVALID_INPUT,
            "That is not a Replicate prediction id.",
        ))
    }
}

/// One authenticated API call answering a prediction.
async fn call(
    cfg: &ProviderConfig,
    method: Method,
    url: &str,
    body: Option<&Value>,
    what: &str,
) -> Result<Prediction, ProviderError> {
    let token = cfg.replicate_token.as_deref().ok_or_else(|| {
        ProviderError::permanent(
            codes::MISSING_KEY,
            "No Replicate API token is configured (REPLICATE_API_TOKEN).",
        )
    })?;
    let client = cfg.client()?;
    let timeout = cfg.api_timeout;
    let mut req = client
        .request(method, url)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .timeout(timeout);
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| transport_error("Replicate", &e, timeout))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| transport_error("Replicate", &e, timeout))?;
    if !status.is_success() {
        return Err(replicate_error(cfg, status, &headers, &bytes, what));
    }
    serde_json::from_slice(&bytes).map_err(|_| bad_response("Replicate"))
}

/// Classifies a Replicate error answer (any non-2xx).
pub(crate) fn replicate_error(
    cfg: &ProviderConfig,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
) -> ProviderError {
    let problem = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let text = |key: &str| {
        problem[key]
            .as_str()
            .map(|s| cfg.scrub(s))
            .filter(|s| !s.trim().is_empty())
    };
    let title = text("title");
    let detail = text("detail");
    // "- input: image is required\n" → "input: image is required".
    let tidy = |s: &str| {
        let lines: Vec<&str> = s
            .lines()
            .map(|l| l.trim().trim_start_matches("- ").trim())
            .filter(|l| !l.is_empty())
            .collect();
        sentence(&lines.join("; "), 300)
    };
    let said = detail
        .as_deref()
        .or(title.as_deref())
        .map(|d| format!(" Replicate says: {}", tidy(d)))
        .unwrap_or_default();
    let permanent = ProviderError::permanent;
    match status.as_u16() {
        401 => permanent(
            codes::AUTH,
            "Replicate did not accept the API token.".to_owned(),
        ),
        402 => permanent(
            codes::NO_CREDIT,
            "Replicate says the account is out of credit.".to_owned(),
        ),
        403 => permanent(
            codes::AUTH,
            format!("Replicate refused access to {what}.{said}"),
        ),
        404 => permanent(
            codes::NOT_FOUND,
            format!("Replicate could not find {what}.{said}"),
        ),
        413 => permanent(
            codes::INVALID_INPUT,
            format!("Replicate refused {what} as too large (HTTP 413)."),
        ),
        422 => {
            let detail = detail.as_deref().or(title.as_deref()).map(tidy);
            let is_input = title.as_deref() == Some("Input validation failed")
                || problem.get("invalid_fields").is_some();
            let message = match (is_input, detail) {
                (true, Some(d)) => format!("Replicate rejected the input: {d}"),
                (false, Some(d)) => format!("Replicate rejected the request: {d}"),
                (_, None) => "Replicate rejected the request as invalid.".to_owned(),
            };
            permanent(codes::INVALID_INPUT, message)
        }
        429 => {
            let retry_after = retry_after_header(headers, SystemTime::now()).or_else(|| {
                detail
                    .as_deref()
                    .and_then(|d| delay_after(d, "available in"))
            });
            ProviderError::transient(
                format!("Replicate is throttling requests.{said}"),
                retry_after,
            )
        }
        s if (500..600).contains(&s) => ProviderError::transient(
            format!("Replicate is having trouble (HTTP {s})."),
            retry_after_header(headers, SystemTime::now()),
        ),
        s if (400..500).contains(&s) => permanent(
            codes::REJECTED,
            format!("Replicate refused the request (HTTP {s}).{said}"),
        ),
        s => permanent(
            codes::BAD_RESPONSE,
            format!("Replicate answered with an unexpected HTTP {s}."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{BUILTIN, Registry};

    const DOCUMENTED: &str = r#"{"id":"gm3qorzdhgbfurvjtvhg6dckhu","model":"nightmareai/real-esrgan","version":"42fed1c4...",
 "input":{"image":"...","scale":4},"logs":"","output":"https://replicate.delivery/.../out.png",
 "error":null,"status":"succeeded","data_removed":false,
 "created_at":"2023-09-08T16:19:34.765994Z","started_at":"2023-09-08T16:19:34.779176Z",
 "completed_at":"2023-09-08T16:19:34.791859Z",
 "metrics":{"predict_time":0.012683,"total_time":0.03},
 "urls":{"get":"https://api.replicate.com/v1/predictions/gm3q...","cancel":"https://api.replicate.com/v1/predictions/gm3q.../cancel"}}"#;

    fn classify(status: u16, headers: HeaderMap, body: &str) -> ProviderError {
        replicate_error(
            &ProviderConfig::default(),
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
            "the model x/y",
        )
    }

    #[test]
    fn the_documented_prediction_parses_and_prices() {
        let p: Prediction = serde_json::from_str(DOCUMENTED).unwrap();
        assert_eq!(p.id, "gm3qorzdhgbfurvjtvhg6dckhu");
        assert_eq!(p.model, "nightmareai/real-esrgan");
        assert_eq!(p.version.as_deref(), Some("42fed1c4..."));
        assert_eq!(p.status, PredictionStatus::Succeeded);
        assert_eq!(p.input["scale"], 4);
        assert_eq!(p.logs.as_deref(), Some(""));
        assert_eq!(p.error, None);
        assert!(!p.data_removed);
        assert_eq!(
            p.metrics,
            Metrics {
                predict_time: Some(0.012683),
                total_time: Some(0.03)
            }
        );
        assert_eq!(
            p.urls.cancel.as_deref(),
            Some("https://api.replicate.com/v1/predictions/gm3q.../cancel")
        );
        assert_eq!(p.created_at.as_deref(), Some("2023-09-08T16:19:34.765994Z"));
        assert_eq!(
            p.completed_at.as_deref(),
            Some("2023-09-08T16:19:34.791859Z")
        );
        assert_eq!(
            p.outcome(),
            Some(Ok(vec![
                "https://replicate.delivery/.../out.png".to_owned()
            ]))
        );

        let registry = Registry::parse(BUILTIN).unwrap();
        let esrgan = registry.get("nightmareai/real-esrgan").unwrap();
        assert_eq!(usage(esrgan, &p), Usage::Seconds(0.012683));
        assert_eq!(
            esrgan.price.cost(usage(esrgan, &p)).unwrap().nano_usd,
            2_854
        );
        let bria = registry.get("bria/remove-background").unwrap();
        assert_eq!(usage(bria, &p), Usage::Outputs(1));
        assert_eq!(
            bria.price.cost(usage(bria, &p)).unwrap().nano_usd,
            18_000_000
        );

        let again: Prediction = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(again, p, "stored predictions read back the same");
    }

    #[test]
    fn fresh_failed_and_array_predictions() {
        let fresh = r#"{"id":"abc","model":"bria/remove-background","version":"dp-1","status":"starting","input":{},
            "output":null,"error":null,"logs":null,"metrics":{},"urls":{"get":"g","cancel":"c"},
            "created_at":"2026-01-01T00:00:00Z","started_at":null,"completed_at":null}"#;
        let p: Prediction = serde_json::from_str(fresh).unwrap();
        assert_eq!(
            (p.status, p.output.clone(), p.started_at.clone()),
            (PredictionStatus::Starting, None, None)
        );
        assert_eq!(p.metrics, Metrics::default());
        assert!(!p.is_terminal());
        assert_eq!(p.outcome(), None);

        let failed = r#"{"id":"abc","model":"m/n","version":"v","status":"failed","input":{},"output":null,
            "error":"CUDA out of memory","logs":"","metrics":{"predict_time":1.5},"urls":{},"created_at":"t"}"#;
        let p: Prediction = serde_json::from_str(failed).unwrap();
        let e = p.outcome().unwrap().unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                codes::PREDICTION_FAILED,
                "The Replicate prediction failed: CUDA out of memory."
            )
        );

        let array = r#"{"id":"abc","model":"m/n","version":"v","status":"succeeded","input":{},
            "output":["https://a/1.png","https://a/2.png"],"error":null,"logs":"","metrics":{},"urls":{},"created_at":"t"}"#;
        let p: Prediction = serde_json::from_str(array).unwrap();
        assert_eq!(p.output_urls(), ["https://a/1.png", "https://a/2.png"]);
        let registry = Registry::parse(BUILTIN).unwrap();
        assert_eq!(
            usage(registry.get("bria/remove-background").unwrap(), &p),
            Usage::Outputs(2)
        );
        assert_eq!(
            usage(registry.get("nightmareai/real-esrgan").unwrap(), &p),
            Usage::Seconds(0.0)
        );

        for (status, code) in [("canceled", codes::CANCELED), ("aborted", codes::CANCELED)] {
            let body = format!(
                r#"{{"id":"a","model":"m/n","version":"v","status":"{status}","input":{{}},"output":null,"error":null,"logs":"","metrics":{{}},"urls":{{}},"created_at":"t"}}"#
            );
            let p: Prediction = serde_json::from_str(&body).unwrap();
            assert_eq!(p.outcome().unwrap().unwrap_err().code(), code);
        }
        let removed: Prediction = serde_json::from_str(
            &DOCUMENTED.replace(r#""data_removed":false"#, r#""data_removed":true"#),
        )
        .unwrap();
        assert_eq!(
            removed.outcome().unwrap().unwrap_err().code(),
            codes::OUTPUT_EXPIRED
        );
        let empty: Prediction = serde_json::from_str(&DOCUMENTED.replace(
            r#""output":"https://replicate.delivery/.../out.png""#,
            r#""output":[]"#,
        ))
        .unwrap();
        assert_eq!(
            empty.outcome().unwrap().unwrap_err().code(),
            codes::NO_IMAGE
        );
        let odd: Prediction = serde_json::from_str(
            &DOCUMENTED.replace(r#""status":"succeeded""#, r#""status":"queued""#),
        )
        .unwrap();
        assert_eq!(
            (odd.status, odd.outcome()),
            (PredictionStatus::Unknown, None)
        );
    }

    #[test]
    fn replicate_errors_are_classified() {
        let none = HeaderMap::new();
        let e = classify(
            401,
            none.clone(),
            r#"{"title":"Unauthenticated","detail":"You did not pass a valid authentication token","status":401}"#,
        );
        assert_eq!(
            (e.code(), e.message()),
            (codes::AUTH, "Replicate did not accept the API token.")
        );
        let e = classify(
            402,
            none.clone(),
            r#"{"title":"Insufficient credit","detail":"You have insufficient credit to run this model.","status":402}"#,
        );
        assert_eq!(
            (e.code(), e.message()),
            (
                codes::NO_CREDIT,
                "Replicate says the account is out of credit."
            )
        );
        let e = classify(
            422,
            none.clone(),
            r#"{"title":"Input validation failed","detail":"- input: image is required\n","status":422,"invalid_fields":[{"type":"required","field":"input","description":"image is required"}]}"#,
        );
        assert_eq!(
            (e.code(), e.message()),
            (
                codes::INVALID_INPUT,
                "Replicate rejected the input: input: image is required."
            )
        );
        let e = classify(
            422,
            none.clone(),
            r#"{"title":"Invalid version or not permitted","detail":"The specified version does not exist (or perhaps you don't have permission to use it?)","status":422}"#,
        );
        assert_eq!(e.code(), codes::INVALID_INPUT);
        assert!(
            e.message().starts_with(
                "Replicate rejected the request: The specified version does not exist"
            ),
            "{}",
            e.message()
        );
        let e = classify(
            404,
            none.clone(),
            r#"{"title":"Not found","detail":"The requested resource could not be found.","status":404}"#,
        );
        assert_eq!(e.code(), codes::NOT_FOUND);

        let mut retry = HeaderMap::new();
        retry.insert("retry-after", "3".parse().unwrap());
        let throttled =
            r#"{"detail":"Request was throttled. Expected available in 1 second.","status":429}"#;
        let e = classify(429, retry, throttled);
        assert!(e.is_transient());
        assert_eq!(
            e.retry_after(),
            Some(Duration::from_secs(3)),
            "the header is honoured"
        );
        assert_eq!(
            e.message(),
            "Replicate is throttling requests. Replicate says: Request was throttled. Expected available in 1 second."
        );
        assert_eq!(
            classify(429, none.clone(), throttled).retry_after(),
            Some(Duration::from_secs(1)),
            "else the detail"
        );
        assert!(classify(503, none.clone(), "").is_transient());
        assert!(classify(500, none.clone(), "<html>").is_transient());
        assert_eq!(classify(409, none, "").code(), codes::REJECTED);
    }

    #[tokio::test]
    async fn calls_are_refused_before_sending_when_they_cannot_work() {
        let cfg = ProviderConfig {
            replicate_base: "http://127.0.0.1:9".into(),
            ..ProviderConfig::default()
        };
        let registry = Registry::parse(BUILTIN).unwrap();
        let esrgan = registry.get("nightmareai/real-esrgan").unwrap();
        let e = create_prediction(&cfg, esrgan, json!({}), None)
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                codes::MISSING_KEY,
                "No Replicate API token is configured (REPLICATE_API_TOKEN)."
            )
        );
        let gemini = registry.get("gemini-3.1-flash-image").unwrap();
        assert_eq!(
            create_prediction(&cfg, gemini, json!({}), None)
                .await
                .unwrap_err()
                .code(),
            codes::INVALID_INPUT
        );
        assert_eq!(
            get_prediction(&cfg, "../../etc").await.unwrap_err().code(),
            codes::INVALID_INPUT
        );
        assert_eq!(
            cancel_prediction(&cfg, "").await.unwrap_err().code(),
            codes::INVALID_INPUT
        );
        assert_eq!(
            download_output(&cfg, "file:///etc/passwd")
                .await
                .unwrap_err()
                .code(),
            codes::BAD_RESPONSE
        );
        assert_eq!(
            download_output(&cfg, "data:image/png;base64,aGk=")
                .await
                .unwrap(),
            b"hi"
        );
        assert_eq!(
            download_output(&cfg, "data:text/plain,hi").await.unwrap(),
            b"hi"
        );
    }

    #[tokio::test]
    async fn an_unreachable_replicate_is_transient() {
        // A port that was free a moment ago: the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = ProviderConfig {
            replicate_base: format!("http://127.0.0.1:{port}"),
            replicate_token: Some("r8_test".into()),
            ..ProviderConfig::default()
        };
        let e = get_prediction(&cfg, "abc").await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert_eq!(e.message(), "Could not connect to Replicate.");
    }
}
