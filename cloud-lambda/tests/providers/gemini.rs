//! The Gemini `generateContent` client against the fake Gemini: text to
//! image and edits priced by their tokens, thoughts skipped, safety blocks
//! and text-only answers permanent, overload, quota, timeouts and
//! unreachable servers transient, request errors permanent; and the fake
//! bills the image tokens the registry cites.

use std::time::Duration;

use atelier_fixtures::fakes::{images, scenario};
use cloud_lambda::providers::{ProviderConfig, codes, gemini};
use cloud_lambda::registry::Usage;
use serde_json::json;

use crate::fixtures::{fakes, nano_usd, permanent, png, png_header, transient};

const GEMINI: &str = "gemini-3.1-flash-image";

fn tokens_for(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

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
