//! The Imagen 4 `:predict` client against the fake Imagen: retired unless
//! the fake keeps it alive; images returned, filtered ones skipped, priced
//! per image; rate limits and overload transient; a bad size refused
//! before any request.

use std::time::Duration;

use atelier_fixtures::fakes::{FakeConfig, images, scenario};
use cloud_lambda::providers::{codes, imagen};
use cloud_lambda::registry::Usage;

use crate::fixtures::{fakes, nano_usd, permanent, png_header, start, transient};

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
