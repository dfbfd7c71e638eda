//! The provider clients against the fake providers (`atelier_fixtures::fakes`):
//! every success and error scenario of Gemini, Imagen 4 and Replicate ends as
//! the right result or `ProviderError`, usage prices to the expected
//! nano-dollars, and Replicate predictions run to real output images whose
//! webhooks verify.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atelier_fixtures::fakes::{self, FakeConfig, RunningFakes, images, scenario};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cloud_lambda::providers::replicate::{self, Prediction, PredictionStatus};
use cloud_lambda::providers::{ProviderConfig, ProviderError, codes, gemini, imagen, webhook};
use cloud_lambda::registry::{BUILTIN, Model, Registry, Usage};
use serde_json::json;

const GEMINI: &str = "gemini-3.1-flash-image";
const POLL: Duration = Duration::from_millis(50);
const PATIENCE: Duration = Duration::from_secs(20);

async fn start(cfg: FakeConfig) -> (RunningFakes, ProviderConfig) {
    let f = fakes::spawn(cfg).await.expect("the fakes start");
    let c = f.config();
    let cfg = ProviderConfig {
        gemini_base: f.base_url().to_owned(),
        gemini_key: Some(c.api_key.clone()),
        replicate_base: f.base_url().to_owned(),
        replicate_token: Some(c.replicate_token.clone()),
        replicate_webhook_secret: Some(c.webhook_secret.clone()),
        ..ProviderConfig::default()
    };
    (f, cfg)
}

async fn fakes() -> (RunningFakes, ProviderConfig) {
    start(FakeConfig {
        step: Duration::from_millis(50),
        ..FakeConfig::default()
    })
    .await
}

fn registry() -> Registry {
    Registry::parse(BUILTIN).unwrap()
}

fn model(id: &str) -> Model {
    registry().get(id).unwrap().clone()
}

fn nano_usd(model_id: &str, usage: Usage) -> i64 {
    registry()
        .get(model_id)
        .unwrap()
        .price
        .cost(usage)
        .expect("the usage fits the price")
        .nano_usd
}

/// A solid-colour PNG.
fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    images::encode_png(&images::solid(width, height, rgb).into())
}

/// Width, height and colour type from a PNG's IHDR.
fn png_header(bytes: &[u8]) -> (u32, u32, u8) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20), bytes[25])
}

fn data_url(bytes: &[u8]) -> String {
    format!("data:image/png;base64,{}", STANDARD.encode(bytes))
}

fn tokens_for(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

#[track_caller]
fn permanent(e: ProviderError) -> (&'static str, String) {
    match e {
        ProviderError::Permanent { code, message } => (code, message),
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

#[track_caller]
fn transient(e: ProviderError) -> (String, Option<Duration>) {
    match e {
        ProviderError::Transient {
            reason,
            retry_after,
        } => (reason, retry_after),
        other => panic!("expected a transient error, got {other:?}"),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ------------------------------------------------------------------ Gemini

#[tokio::test]
async fn gemini_text_to_image_returns_a_png_and_prices_its_usage() {
    let (f, cfg) = fakes().await;
    let prompt = "A lighthouse at dawn";
    let img = gemini::generate_content(&cfg, GEMINI, prompt, None, None, None)
        .await
        .unwrap();
    assert_eq!(img.mime, "image/png");
    let (w, h, _) = png_header(&img.bytes);
    assert_eq!((w, h), (1024, 1024), "1:1 at 1K");
    assert_eq!(
        img.text.as_deref(),
        Some("Here is the image you asked for.")
    );
    assert_eq!(img.model_version.as_deref(), Some(GEMINI));
    let prompt_tokens = tokens_for(prompt);
    assert_eq!(
        img.usage,
        Usage::Tokens {
            prompt: prompt_tokens,
            image_output: 1120
        }
    );
    // Google's price for 3.1 Flash Image: $0.50 per 1M input tokens, $60 per
    // 1M image tokens; a 1K image is 1120 tokens ($0.0672).
    assert_eq!(
        nano_usd(GEMINI, img.usage),
        prompt_tokens as i64 * 500 + 1120 * 60_000
    );

    let reqs = f.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].path,
        format!("/v1beta/models/{GEMINI}:generateContent")
    );
    assert_eq!(
        reqs[0].header("x-goog-api-key"),
        Some(f.config().api_key.as_str())
    );
    assert_eq!(
        reqs[0].json()["generationConfig"]["responseModalities"],
        json!(["TEXT", "IMAGE"])
    );
}

#[tokio::test]
async fn gemini_edits_the_input_image() {
    let (_f, cfg) = fakes().await;
    let input = png(40, 30, [10, 200, 30]);
    let prompt = "Invert it";
    let img = gemini::generate_content(
        &cfg,
        GEMINI,
        prompt,
        Some(gemini::GeminiInput::Inline {
            mime: "image/png",
            bytes: &input,
        }),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(png_header(&img.bytes), (40, 30, 2), "same size, RGB");
    let pixel = images::decode(&img.bytes)
        .unwrap()
        .to_rgb8()
        .get_pixel(5, 5)
        .0;
    assert_eq!(pixel, [245, 55, 225], "the fake's edit inverts colours");
    assert_eq!(
        img.usage,
        Usage::Tokens {
            prompt: tokens_for(prompt) + 1120,
            image_output: 1120
        }
    );

    let sized = gemini::generate_content(
        &cfg,
        GEMINI,
        "Wide",
        Some(gemini::GeminiInput::Inline {
            mime: "image/png",
            bytes: &input,
        }),
        Some("16:9"),
        Some("1K"),
    )
    .await
    .unwrap();
    let (w, h, _) = png_header(&sized.bytes);
    assert_eq!((w, h), images::dims_for_aspect("16:9", 1024));
}

#[tokio::test]
async fn gemini_thoughts_are_skipped() {
    let (_f, cfg) = fakes().await;
    let prompt = format!("A cat {}", scenario::keyword(scenario::THOUGHT));
    let img = gemini::generate_content(&cfg, GEMINI, &prompt, None, None, None)
        .await
        .unwrap();
    let (w, h, _) = png_header(&img.bytes);
    assert_eq!(
        (w, h),
        (1024, 1024),
        "the final image, not the 256 px draft"
    );
    assert_eq!(
        img.text.as_deref(),
        Some("Here is the image you asked for."),
        "no thought text"
    );
    assert_eq!(
        img.usage,
        Usage::Tokens {
            prompt: tokens_for(&prompt),
            image_output: 1120
        }
    );
}

#[tokio::test]
async fn gemini_blocks_and_text_only_answers_are_permanent() {
    let (_f, cfg) = fakes().await;
    let run = |kw: &'static str| {
        let cfg = cfg.clone();
        async move {
            let prompt = format!("Something {}", scenario::keyword(kw));
            permanent(
                gemini::generate_content(&cfg, GEMINI, &prompt, None, None, None)
                    .await
                    .unwrap_err(),
            )
        }
    };
    assert_eq!(
        run(scenario::BLOCK_PROMPT).await,
        (
            codes::SAFETY_BLOCK,
            "Gemini refused this prompt for safety reasons (PROHIBITED_CONTENT).".to_owned()
        )
    );
    let (code, msg) = run(scenario::BLOCK_IMAGE).await;
    assert_eq!(code, codes::SAFETY_BLOCK);
    assert_eq!(
        msg,
        "Gemini withheld the image for safety reasons (IMAGE_SAFETY). Gemini said: “I can't create that image \
         because it may go against our safety guidelines. Try a different prompt.”"
    );
    let (code, msg) = run(scenario::TEXT_ONLY).await;
    assert_eq!(code, codes::NO_IMAGE);
    assert!(
        msg.starts_with("Gemini answered with text but no image: “I can describe the picture"),
        "{msg}"
    );
}

#[tokio::test]
async fn gemini_overload_and_quota_are_transient_with_the_advised_delay() {
    let (_f, cfg) = fakes().await;
    let run = |kw: &'static str| {
        let cfg = cfg.clone();
        async move {
            let prompt = format!("Busy {}", scenario::keyword(kw));
            transient(
                gemini::generate_content(&cfg, GEMINI, &prompt, None, None, None)
                    .await
                    .unwrap_err(),
            )
        }
    };
    let (reason, after) = run(scenario::RATE_LIMITED).await;
    assert_eq!(
        after,
        Some(Duration::from_secs(1)),
        "RetryInfo's retryDelay"
    );
    assert_eq!(
        reason,
        "Gemini is rate-limiting this account (quota exhausted for now; it asks to wait 1 s)."
    );
    let (reason, after) = run(scenario::OVERLOADED).await;
    assert_eq!(
        (reason.as_str(), after),
        (
            "Gemini is overloaded or unavailable right now. Google says: The model is overloaded. Please try again later.",
            None
        )
    );
    let (reason, _) = run(scenario::DEADLINE).await;
    assert!(
        reason.starts_with("Gemini ran out of time on its side."),
        "{reason}"
    );
}

#[tokio::test]
async fn gemini_timeouts_and_unreachable_servers_are_transient() {
    let (_f, cfg) = fakes().await;
    let impatient = ProviderConfig {
        generate_timeout: Duration::from_millis(300),
        ..cfg.clone()
    };
    let prompt = format!("Slow {}", scenario::keyword(scenario::SLOW));
    let (reason, _) = transient(
        gemini::generate_content(&impatient, GEMINI, &prompt, None, None, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(reason, "Gemini did not answer within 0.3 s.");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = ProviderConfig {
        gemini_base: format!("http://127.0.0.1:{port}"),
        ..cfg
    };
    let (reason, _) = transient(
        gemini::generate_content(&nowhere, GEMINI, "x", None, None, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(reason, "Could not connect to Gemini.");
}

#[tokio::test]
async fn gemini_request_errors_are_permanent() {
    let (f, cfg) = fakes().await;
    let wrong_key = ProviderConfig {
        gemini_key: Some("AIzaWRONG".into()),
        ..cfg.clone()
    };
    let e = gemini::generate_content(&wrong_key, GEMINI, "x", None, None, None)
        .await
        .unwrap_err();
    assert_eq!(
        permanent(e),
        (codes::AUTH, "The Gemini API key is invalid.".to_owned())
    );

    let (code, msg) = permanent(
        gemini::generate_content(&cfg, "gemini-2.5-flash-image", "x", None, None, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            codes::NOT_FOUND,
            "Gemini model gemini-2.5-flash-image is not available (it may have been retired)."
        )
    );

    let bmp = gemini::generate_content(
        &cfg,
        GEMINI,
        "x",
        Some(gemini::GeminiInput::Inline {
            mime: "image/bmp",
            bytes: b"BM...",
        }),
        None,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(
        permanent(bmp),
        (
            codes::INVALID_INPUT,
            "Gemini rejected the request. Google says: Unsupported MIME type: image/bmp."
                .to_owned()
        )
    );
    let junk = gemini::generate_content(
        &cfg,
        GEMINI,
        "x",
        Some(gemini::GeminiInput::Inline {
            mime: "image/png",
            bytes: b"not a png",
        }),
        None,
        None,
    )
    .await
    .unwrap_err();
    let (code, msg) = permanent(junk);
    assert_eq!(code, codes::INVALID_INPUT);
    assert!(
        msg.starts_with("Gemini rejected the request. Google says: "),
        "{msg}"
    );

    let sent = f.requests().len();
    let no_key = ProviderConfig {
        gemini_key: None,
        ..cfg.clone()
    };
    assert_eq!(
        gemini::generate_content(&no_key, GEMINI, "x", None, None, None)
            .await
            .unwrap_err()
            .code(),
        codes::MISSING_KEY
    );
    assert_eq!(
        gemini::generate_content(&cfg, GEMINI, "x", None, Some("7:3"), None)
            .await
            .unwrap_err()
            .code(),
        codes::INVALID_INPUT
    );
    assert_eq!(f.requests().len(), sent, "refused before any request");
}

// ------------------------------------------------------------------ Imagen

#[tokio::test]
async fn imagen_is_retired_unless_the_fake_keeps_it_alive() {
    let (_f, cfg) = fakes().await;
    let e = imagen::predict(
        &cfg,
        "imagen-4.0-generate-001",
        "A robot",
        1,
        None,
        &Default::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        permanent(e),
        (
            codes::NOT_FOUND,
            "Imagen 4 model imagen-4.0-generate-001 is no longer served by Google.".to_owned()
        )
    );
}

#[tokio::test]
async fn imagen_returns_images_skips_filtered_ones_and_prices_per_image() {
    let (f, cfg) = start(FakeConfig {
        imagen_alive: true,
        ..FakeConfig::default()
    })
    .await;
    let model_id = "imagen-4.0-generate-001";
    let out = imagen::predict(
        &cfg,
        model_id,
        "Robot holding a red skateboard",
        2,
        Some("16:9"),
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.images.len(), 2);
    for (mime, bytes) in &out.images {
        assert_eq!(mime, "image/png");
        let (w, h, _) = png_header(bytes);
        assert_eq!((w, h), images::dims_for_aspect("16:9", 1024));
    }
    assert_eq!(out.usage, Usage::Images(2));
    assert_eq!(nano_usd(model_id, out.usage), 80_000_000);
    assert_eq!(
        f.requests()[0].path,
        format!("/v1beta/models/{model_id}:predict")
    );
    assert_eq!(
        f.requests()[0].json()["parameters"]["includeRaiReason"],
        true
    );

    let options = imagen::ImagenOptions {
        person_generation: Some("Allow_Adult".into()),
        sample_image_size: Some("1K".into()),
        output_mime_type: Some("image/jpeg".into()),
    };
    let jpeg = imagen::predict(
        &cfg,
        "imagen-4.0-ultra-generate-001",
        "A robot",
        1,
        None,
        &options,
    )
    .await
    .unwrap();
    assert_eq!(jpeg.images[0].0, "image/jpeg");
    assert!(jpeg.images[0].1.starts_with(&[0xFF, 0xD8, 0xFF]));
    assert_eq!(
        nano_usd("imagen-4.0-ultra-generate-001", jpeg.usage),
        60_000_000
    );

    let filtered = format!("A robot {}", scenario::keyword(scenario::FILTERED));
    let some = imagen::predict(&cfg, model_id, &filtered, 2, None, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        (some.images.len(), some.filtered.len(), some.usage),
        (1, 1, Usage::Images(1))
    );
    let none = imagen::predict(&cfg, model_id, &filtered, 1, None, &Default::default())
        .await
        .unwrap_err();
    let (code, msg) = permanent(none);
    assert_eq!(code, codes::SAFETY_BLOCK);
    assert!(msg.starts_with("Imagen filtered out every image it made for safety reasons. Google says: Unable to show"), "{msg}");

    let busy = format!("A robot {}", scenario::keyword(scenario::RATE_LIMITED));
    let (_, after) = transient(
        imagen::predict(&cfg, model_id, &busy, 1, None, &Default::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(after, Some(Duration::from_secs(1)));
    let overloaded = format!("A robot {}", scenario::keyword(scenario::OVERLOADED));
    let (reason, _) = transient(
        imagen::predict(&cfg, model_id, &overloaded, 1, None, &Default::default())
            .await
            .unwrap_err(),
    );
    assert!(reason.starts_with("Imagen is overloaded"), "{reason}");

    let sent = f.requests().len();
    let sized = imagen::ImagenOptions {
        sample_image_size: Some("2K".into()),
        ..Default::default()
    };
    let e = imagen::predict(
        &cfg,
        "imagen-4.0-fast-generate-001",
        "A robot",
        1,
        None,
        &sized,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), codes::INVALID_INPUT);
    assert_eq!(f.requests().len(), sent, "refused before any request");
}

// ------------------------------------------------------------------ Replicate

/// A webhook receiver: records every delivery's headers and body.
async fn receiver() -> (String, Arc<Mutex<Vec<(HeaderMap, Bytes)>>>) {
    let seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/replicate/webhook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/replicate/webhook",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn an_upscale_runs_to_a_real_png_four_times_larger_with_verified_webhooks() {
    let (f, cfg) = fakes().await;
    let (hook, seen) = receiver().await;
    let esrgan = model("nightmareai/real-esrgan");
    let input =
        json!({"image": data_url(&png(32, 24, [200, 100, 50])), "scale": 4, "face_enhance": false});
    let created = replicate::create_prediction(&cfg, &esrgan, input, Some(&hook))
        .await
        .unwrap();
    assert_eq!(created.status, PredictionStatus::Starting);
    assert_eq!(
        (created.output.clone(), created.started_at.clone()),
        (None, None)
    );
    assert_eq!(created.model, "nightmareai/real-esrgan");
    assert_eq!(created.version.as_deref(), esrgan.version.as_deref());

    let create = &f.requests()[0];
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", "/v1/predictions")
    );
    assert_eq!(
        create.header("authorization"),
        Some(format!("Bearer {}", f.config().replicate_token).as_str())
    );
    assert_eq!(create.json()["version"], esrgan.version.clone().unwrap());
    assert_eq!(
        create.json()["webhook_events_filter"],
        json!(["start", "completed"])
    );

    let done = replicate::wait_for_prediction(&cfg, &created.id, POLL, PATIENCE)
        .await
        .unwrap();
    assert_eq!(done.status, PredictionStatus::Succeeded);
    let urls = done.outcome().unwrap().unwrap();
    assert_eq!(urls.len(), 1);
    let bytes = replicate::download_output(&cfg, &urls[0]).await.unwrap();
    let (w, h, _) = png_header(&bytes);
    assert_eq!((w, h), (128, 96), "4x the 32x24 input");

    let usage = replicate::usage(&esrgan, &done);
    assert_eq!(usage, Usage::Seconds(fakes::replicate::FAKE_PREDICT_TIME));
    assert_eq!(
        nano_usd("nightmareai/real-esrgan", usage),
        337_500,
        "1.5 s on a T4 at $0.000225/s"
    );

    // Both webhooks arrive, verify, and carry the prediction.
    f.wait_for_delivery(
        |d| d.prediction_id == created.id && d.event == "completed",
        PATIENCE,
    )
    .await
    .unwrap();
    let deliveries = seen.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 2, "start and completed");
    let secret = cfg.replicate_webhook_secret.as_deref().unwrap();
    for (headers, body) in &deliveries {
        webhook::verify_headers(
            secret,
            headers,
            body,
            unix_now(),
            webhook::DEFAULT_TOLERANCE,
        )
        .unwrap();
        let p: Prediction = serde_json::from_slice(body).unwrap();
        assert_eq!(p.id, created.id);
        let mut tampered = body.to_vec();
        tampered.push(b' ');
        assert_eq!(
            webhook::verify_headers(
                secret,
                headers,
                &tampered,
                unix_now(),
                webhook::DEFAULT_TOLERANCE
            ),
            Err(webhook::WebhookError::NoMatch)
        );
    }
    let last: Prediction = serde_json::from_slice(&deliveries[1].1).unwrap();
    assert_eq!(last.status, PredictionStatus::Succeeded);
}

#[tokio::test]
async fn an_official_model_is_called_by_name_and_billed_per_output() {
    let (f, cfg) = fakes().await;
    let bria = model("bria/remove-background");
    let input = json!({"image": data_url(&png(16, 16, [255, 255, 255])), "preserve_alpha": true});
    let created = replicate::create_prediction(&cfg, &bria, input, None)
        .await
        .unwrap();
    assert_eq!(
        f.requests()[0].path,
        "/v1/models/bria/remove-background/predictions"
    );
    assert!(f.requests()[0].json().get("version").is_none());
    let done = replicate::wait_for_prediction(&cfg, &created.id, POLL, PATIENCE)
        .await
        .unwrap();
    let urls = done.outcome().unwrap().unwrap();
    let bytes = replicate::download_output(&cfg, &urls[0]).await.unwrap();
    assert_eq!(png_header(&bytes), (16, 16, 6), "an RGBA PNG");
    let usage = replicate::usage(&bria, &done);
    assert_eq!(usage, Usage::Outputs(1));
    assert_eq!(nano_usd("bria/remove-background", usage), 18_000_000);
}

#[tokio::test]
async fn a_failed_prediction_is_permanent_with_the_models_error() {
    let (_f, cfg) = fakes().await;
    let input = json!({"image": data_url(&png(8, 8, [0, 0, 0])), "_fake_scenario": scenario::FAIL});
    let created =
        replicate::create_prediction(&cfg, &model("nightmareai/real-esrgan"), input, None)
            .await
            .unwrap();
    let done = replicate::wait_for_prediction(&cfg, &created.id, POLL, PATIENCE)
        .await
        .unwrap();
    assert_eq!(
        (done.status, done.output.clone()),
        (PredictionStatus::Failed, None)
    );
    assert!(
        done.error
            .as_deref()
            .is_some_and(|e| e.starts_with("CUDA out of memory"))
    );
    assert_eq!(
        permanent(done.outcome().unwrap().unwrap_err()),
        (
            codes::PREDICTION_FAILED,
            "The Replicate prediction failed: CUDA out of memory. Tried to allocate 2.00 GiB (fake failure: \
             scenario \"fail\")."
                .to_owned()
        )
    );
}

#[tokio::test]
async fn polling_covers_a_dropped_webhook() {
    let (f, cfg) = fakes().await;
    let (hook, seen) = receiver().await;
    let input =
        json!({"image": data_url(&png(8, 8, [9, 9, 9])), "_fake_scenario": scenario::NO_WEBHOOK});
    let created =
        replicate::create_prediction(&cfg, &model("nightmareai/real-esrgan"), input, Some(&hook))
            .await
            .unwrap();
    let done = replicate::wait_for_prediction(&cfg, &created.id, POLL, PATIENCE)
        .await
        .unwrap();
    assert!(done.outcome().unwrap().is_ok());
    let completed = f
        .wait_for_delivery(|d| d.event == "completed", PATIENCE)
        .await
        .unwrap();
    assert_eq!(completed.outcome, fakes::DeliveryOutcome::Dropped);
    assert_eq!(seen.lock().unwrap().len(), 1, "only start arrived");
}

#[tokio::test]
async fn cancel_and_give_up_on_a_slow_prediction() {
    let (_f, cfg) = fakes().await;
    let input = json!({"image": data_url(&png(8, 8, [1, 2, 3])), "_fake_scenario": scenario::SLOW});
    let created =
        replicate::create_prediction(&cfg, &model("nightmareai/real-esrgan"), input, None)
            .await
            .unwrap();
    let (reason, _) = transient(
        replicate::wait_for_prediction(&cfg, &created.id, POLL, Duration::from_millis(300))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        reason,
        "Replicate was still working on the prediction after 0.3 s."
    );
    let canceled = replicate::cancel_prediction(&cfg, &created.id)
        .await
        .unwrap();
    assert_eq!(canceled.status, PredictionStatus::Canceled);
    assert_eq!(
        permanent(canceled.outcome().unwrap().unwrap_err()),
        (
            codes::CANCELED,
            "The Replicate prediction was canceled.".to_owned()
        )
    );
    assert_eq!(
        replicate::get_prediction(&cfg, &created.id)
            .await
            .unwrap()
            .status,
        PredictionStatus::Canceled
    );
}

#[tokio::test]
async fn expired_outputs_are_reported_as_such() {
    // A prediction that succeeds at once, on a clock the test moves: past
    // the output's hour of life, it is gone.
    let clock = fakes::FakeClock::manual();
    let ttl = Duration::from_secs(3600);
    let (_f, cfg) = start(FakeConfig {
        step: Duration::ZERO,
        output_ttl: ttl,
        clock: clock.clone(),
        ..FakeConfig::default()
    })
    .await;
    let input = json!({"image": data_url(&png(8, 8, [4, 5, 6]))});
    let created =
        replicate::create_prediction(&cfg, &model("nightmareai/real-esrgan"), input, None)
            .await
            .unwrap();
    let done =
        replicate::wait_for_prediction(&cfg, &created.id, Duration::from_millis(20), PATIENCE)
            .await
            .unwrap();
    let url = done.output_urls().remove(0);
    clock.advance(ttl);
    let later = replicate::get_prediction(&cfg, &created.id).await.unwrap();
    assert!(later.data_removed);
    assert_eq!(
        later.outcome().unwrap().unwrap_err().code(),
        codes::OUTPUT_EXPIRED
    );
    assert_eq!(
        replicate::download_output(&cfg, &url)
            .await
            .unwrap_err()
            .code(),
        codes::OUTPUT_EXPIRED
    );
}

#[tokio::test]
async fn replicate_request_errors_are_classified() {
    let (f, cfg) = fakes().await;
    let esrgan = model("nightmareai/real-esrgan");
    let image = data_url(&png(8, 8, [7, 7, 7]));

    let no_credit = json!({"image": image, "_fake_scenario": scenario::NO_CREDIT});
    assert_eq!(
        permanent(
            replicate::create_prediction(&cfg, &esrgan, no_credit, None)
                .await
                .unwrap_err()
        ),
        (
            codes::NO_CREDIT,
            "Replicate says the account is out of credit.".to_owned()
        )
    );

    let throttle = json!({"image": image, "_fake_scenario": scenario::THROTTLE});
    let (reason, after) = transient(
        replicate::create_prediction(&cfg, &esrgan, throttle, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        after,
        Some(Duration::from_secs(1)),
        "Retry-After is honoured"
    );
    assert_eq!(
        reason,
        "Replicate is throttling requests. Replicate says: Request was throttled. Expected available in 1 second."
    );

    assert_eq!(
        permanent(
            replicate::create_prediction(&cfg, &esrgan, json!({}), None)
                .await
                .unwrap_err()
        ),
        (
            codes::INVALID_INPUT,
            "Replicate rejected the input: input: image is required.".to_owned()
        )
    );
    let mut unknown_version = esrgan.clone();
    unknown_version.version = Some("0".repeat(64));
    let (code, msg) = permanent(
        replicate::create_prediction(&cfg, &unknown_version, json!({"image": image}), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, codes::INVALID_INPUT);
    assert!(
        msg.starts_with("Replicate rejected the request: The specified version does not exist"),
        "{msg}"
    );

    let mut unknown_official = model("bria/remove-background");
    unknown_official.id = "bria/no-such-model".into();
    let (code, msg) = permanent(
        replicate::create_prediction(&cfg, &unknown_official, json!({"image": image}), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, msg.as_str()),
        (
            codes::NOT_FOUND,
            "Replicate could not find the model bria/no-such-model. Replicate says: Not found."
        )
    );

    assert_eq!(
        replicate::get_prediction(&cfg, "nosuchprediction")
            .await
            .unwrap_err()
            .code(),
        codes::NOT_FOUND
    );

    let wrong_token = ProviderConfig {
        replicate_token: Some("r8_wrong".into()),
        ..cfg.clone()
    };
    assert_eq!(
        permanent(
            replicate::get_prediction(&wrong_token, "abc")
                .await
                .unwrap_err()
        ),
        (
            codes::AUTH,
            "Replicate did not accept the API token.".to_owned()
        )
    );

    let sent = f.requests().len();
    let no_token = ProviderConfig {
        replicate_token: None,
        ..cfg.clone()
    };
    assert_eq!(
        replicate::create_prediction(&no_token, &esrgan, json!({"image": image}), None)
            .await
            .unwrap_err()
            .code(),
        codes::MISSING_KEY
    );
    assert_eq!(f.requests().len(), sent, "refused before any request");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = ProviderConfig {
        replicate_base: format!("http://127.0.0.1:{port}"),
        ..cfg
    };
    assert!(
        replicate::get_prediction(&nowhere, "abc")
            .await
            .unwrap_err()
            .is_transient()
    );
}

#[test]
fn the_fake_gemini_bills_the_tokens_the_registry_cites() {
    let registry =
        cloud_lambda::registry::Registry::parse(cloud_lambda::registry::BUILTIN).unwrap();
    for (model, per_input, outputs) in atelier_fixtures::fakes::gemini::IMAGE_TOKENS {
        let tokens = registry.get(model).unwrap().image_tokens.clone().unwrap();
        assert_eq!(tokens.input_per_image, *per_input, "{model}");
        let fake: std::collections::BTreeMap<String, u64> = outputs
            .iter()
            .map(|(size, n)| (size.to_string(), *n))
            .collect();
        assert_eq!(tokens.output, fake, "{model}");
    }
}
