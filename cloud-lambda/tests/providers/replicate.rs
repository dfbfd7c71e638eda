//! The Replicate predictions client against the fake Replicate: an upscale
//! (by version) and an official model (by name) run to real output images,
//! priced by seconds or outputs, with webhooks that verify; failed,
//! canceled, slow and expired predictions, a dropped webhook covered by
//! polling, and request errors classified.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atelier_fixtures::fakes::{self, FakeConfig, scenario};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cloud_lambda::providers::replicate::{self, Prediction, PredictionStatus};
use cloud_lambda::providers::{ProviderConfig, codes, webhook};
use cloud_lambda::registry::{Model, Usage};
use serde_json::json;

use crate::fixtures::{fakes, nano_usd, permanent, png, png_header, registry, start, transient};

const POLL: Duration = Duration::from_millis(50);
const PATIENCE: Duration = Duration::from_secs(20);

fn model(id: &str) -> Model {
    registry().get(id).unwrap().clone()
}

fn data_url(bytes: &[u8]) -> String {
    format!("data:image/png;base64,{}", STANDARD.encode(bytes))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

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
