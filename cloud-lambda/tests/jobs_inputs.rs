//! Provider jobs on real-size inputs, end to end through the job runner and
//! on a second device: how each input reaches the provider (inline, uploaded
//! to the provider's Files API, or a presigned URL of our own storage), that
//! uploads are deleted once the job ends, retried when the upload fails for
//! a while, reused when a job resumes, and never billed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use atelier_fixtures::fakes::{Fault, FaultPoint, FileCounts};
use cloud_lambda::providers::inputs::{InputRecord, InputRoute, PublicInputUrls, PublicUrl};
use cloud_lambda::providers::replicate_files;
use cloud_lambda::storage::BlobStore;
use cloud_lambda::storage::jobs::{OpStatus, Operation};
use core_sync::model::{MessageStatus, MessageView};
use core_sync::now_millis;
use serde_json::json;

mod support;
use support::*;

const KB: usize = 1024;

/// The route the server recorded for a request's operation.
async fn route_of(w: &World, id: &str) -> InputRecord {
    w.state
        .ops
        .get_operation(&user(), id)
        .await
        .unwrap()
        .unwrap()
        .input
        .expect("the operation records its input")
}

/// The `input.image` of every prediction the fake Replicate was asked for.
fn prediction_images(w: &World) -> Vec<String> {
    w.fakes
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("predictions"))
        .filter_map(|r| r.json()["input"]["image"].as_str().map(str::to_owned))
        .collect()
}

fn succeeded(msgs: &[MessageView]) {
    for m in msgs {
        assert_eq!(
            m.status,
            Some(MessageStatus::Succeeded),
            "{:?}: {:?}",
            m.text,
            m.error
        );
        assert_eq!(m.output_version_ids.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_mb_photo_and_a_generated_image_go_through_every_tool_to_a_second_device() {
    let w = world().await;
    let mut a = device(&w).await;
    let mut b = device(&w).await;
    let photo = noisy_png(1152, 864);
    assert!(photo.len() > 2_900 * KB, "a ~3 MB photo: {}", photo.len());
    let (doc, v1) = asset_with(&mut a, photo, 1152, 864, true).await;
    let generate = request(
        &mut a,
        &doc,
        tool(
            "generate",
            "google",
            "gemini-3.1-flash-image",
            "a lighthouse",
            None,
            json!({"aspectRatio": "1:1"}),
        ),
    )
    .await;
    a.sync.sync_until_idle().await.unwrap();
    let generated = wait_finished(&mut a, &doc, std::slice::from_ref(&generate)).await;
    succeeded(&generated);
    let v2 = generated[0].output_version_ids[0].clone();
    let gen_bytes = {
        let asset = a.store.load(&doc).await.unwrap();
        let v = asset.doc.reader().version(&v2).unwrap().unwrap();
        assert_eq!((v.blob.width, v.blob.height), (1024, 1024));
        v.blob.bytes as usize
    };
    let upload_way = |bytes: usize| {
        if bytes > 128 * KB {
            InputRoute::ReplicateFile
        } else {
            InputRoute::Inline
        }
    };

    // (tool, model, input, input size, output size, way to the provider)
    let cases = [
        (
            "remove-background",
            "bria/remove-background",
            &v1,
            (1152, 864),
            (1152, 864),
            InputRoute::ReplicateFile,
        ),
        (
            "upscale",
            "nightmareai/real-esrgan",
            &v1,
            (1152, 864),
            (4608, 3456),
            InputRoute::ReplicateFile,
        ),
        (
            "edit",
            "gemini-3.1-flash-image",
            &v1,
            (1152, 864),
            (1152, 864),
            InputRoute::Inline,
        ),
        (
            "remove-background",
            "bria/remove-background",
            &v2,
            (1024, 1024),
            (1024, 1024),
            upload_way(gen_bytes),
        ),
        (
            "upscale",
            "nightmareai/real-esrgan",
            &v2,
            (1024, 1024),
            (4096, 4096),
            upload_way(gen_bytes),
        ),
    ];
    let mut ids = Vec::new();
    for (t, model, input, ..) in &cases {
        let provider = if model.starts_with("gemini") {
            "google"
        } else {
            "replicate"
        };
        let params = if *t == "upscale" {
            json!({"scale": 4})
        } else {
            json!({})
        };
        ids.push(
            request(
                &mut a,
                &doc,
                tool(t, provider, model, "go", Some(input), params),
            )
            .await,
        );
    }
    a.sync.sync_until_idle().await.unwrap();
    let msgs = wait_finished_within(&mut b, &doc, &ids, Duration::from_secs(120)).await;
    succeeded(&msgs);

    let asset = b.store.load(&doc).await.unwrap();
    for ((t, model, input, _, out, way), m) in cases.iter().zip(&msgs) {
        let v = asset
            .doc
            .reader()
            .version(&m.output_version_ids[0])
            .unwrap()
            .unwrap();
        assert_eq!((v.blob.width, v.blob.height), *out, "{t} {model}");
        assert_eq!(v.parent_version_id.as_deref(), Some(input.as_str()));
        b.store.get_blob(&v.blob.sha256).await.unwrap();
        let record = route_of(&w, &m.id).await;
        assert_eq!(record.route, *way, "{t} {model}");
        assert_eq!(
            record.deleted,
            *way == InputRoute::ReplicateFile,
            "deleted when uploaded"
        );
    }
    // Every upload was handed over as its file URL, and deleted afterwards.
    let uploads = cases
        .iter()
        .filter(|c| c.5 == InputRoute::ReplicateFile)
        .count() as u32;
    assert_eq!(
        w.fakes.file_counts(),
        FileCounts {
            replicate_uploads: uploads,
            replicate_deletes: uploads,
            ..FileCounts::default()
        }
    );
    let images = prediction_images(&w);
    assert_eq!(images.len(), 4);
    assert_eq!(
        images.iter().filter(|i| i.contains("/v1/files/")).count() as u32,
        uploads
    );
    assert!(
        images.iter().all(|i| i.len() < 200_000),
        "no large data URL"
    );
    // The timeline holds the requests and nothing else; one exact cost event
    // per provider call, none for the uploads.
    assert_eq!(asset.doc.messages().unwrap().len(), 1 + cases.len());
    let mut costs: Vec<(String, i64)> = asset
        .doc
        .cost_events()
        .unwrap()
        .into_iter()
        .map(|c| (c.model, c.cost_nano_usd))
        .collect();
    costs.sort();
    let prompt = |text_tokens: i64, images: i64| (text_tokens + 1120 * images) * 500;
    assert_eq!(
        costs,
        vec![
            ("bria/remove-background".into(), 18_000_000),
            ("bria/remove-background".into(), 18_000_000),
            (
                "gemini-3.1-flash-image".into(),
                prompt(3, 0) + 1120 * 60_000
            ),
            (
                "gemini-3.1-flash-image".into(),
                prompt(1, 1) + 1120 * 60_000
            ),
            ("nightmareai/real-esrgan".into(), 337_500),
            ("nightmareai/real-esrgan".into(), 337_500),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_image_is_edited_with_gemini_through_its_files_api() {
    let w = world().await;
    let mut a = device(&w).await;
    let mut b = device(&w).await;
    let big = noisy_png(2600, 2600);
    assert!(big.len() > 20_000_000, "{}", big.len());
    // The image goes up by sync, streamed through its upload URL, as any
    // device's would.
    let (doc, v1) = asset_with(&mut a, big, 2600, 2600, true).await;
    let id = request(
        &mut a,
        &doc,
        tool(
            "edit",
            "google",
            "gemini-3.1-flash-image",
            "invert",
            Some(&v1),
            json!({}),
        ),
    )
    .await;
    a.sync.sync_until_idle().await.unwrap();
    let msgs = wait_finished_within(
        &mut b,
        &doc,
        std::slice::from_ref(&id),
        Duration::from_secs(120),
    )
    .await;
    succeeded(&msgs);
    let asset = b.store.load(&doc).await.unwrap();
    let out = asset
        .doc
        .reader()
        .version(&msgs[0].output_version_ids[0])
        .unwrap()
        .unwrap();
    assert_eq!((out.blob.width, out.blob.height), (2600, 2600));

    let record = route_of(&w, &id).await;
    assert_eq!(record.route, InputRoute::GeminiFile);
    assert!(record.deleted, "the file is deleted once the job is done");
    assert_eq!(
        w.fakes.file_counts(),
        FileCounts {
            gemini_uploads: 1,
            gemini_deletes: 1,
            ..FileCounts::default()
        }
    );
    // The call named the file instead of carrying the image.
    let call = w
        .fakes
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(":generateContent"))
        .unwrap();
    assert!(call.body.len() < 10_000, "{} bytes", call.body.len());
    assert_eq!(
        call.json()["contents"][0]["parts"][1]["file_data"]["file_uri"],
        json!(record.url.unwrap())
    );
    let costs: Vec<i64> = asset
        .doc
        .cost_events()
        .unwrap()
        .iter()
        .map(|c| c.cost_nano_usd)
        .collect();
    assert_eq!(costs, vec![(2 + 1120) * 500 + 1120 * 60_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_uploads_are_retried_or_end_with_a_readable_reason() {
    let w = world().await;
    let mut a = device(&w).await;
    let small = noisy_png(320, 320);
    assert!(small.len() > 128 * KB);
    let (doc, v_small) = asset_with(&mut a, small, 320, 320, true).await;
    let (doc_big, v_big) = asset_with(&mut a, noisy_png(1560, 1560), 1560, 1560, true).await;
    a.sync.sync_until_idle().await.unwrap();

    // (where, fault, how many times, Ok or the words the failure must say)
    let cases: [(FaultPoint, Fault, u32, Result<(), &str>); 6] = [
        (FaultPoint::ReplicateUpload, Fault::Unavailable, 2, Ok(())),
        (FaultPoint::ReplicateUpload, Fault::CutConnection, 1, Ok(())),
        (
            FaultPoint::ReplicateUpload,
            Fault::BadCredentials,
            1,
            Err(
                "Uploading the input image to Replicate failed: Replicate did not accept the API token.",
            ),
        ),
        (
            FaultPoint::ReplicateUpload,
            Fault::Unavailable,
            4,
            Err("after 4 tries: Uploading the input image to Replicate failed"),
        ),
        (FaultPoint::GeminiUploadStart, Fault::Unavailable, 1, Ok(())),
        (
            FaultPoint::GeminiUploadChunk,
            Fault::CutConnection,
            1,
            Ok(()),
        ),
    ];
    for (point, fault, times, want) in cases {
        let before = w.fakes.file_counts();
        w.fakes.inject(point, fault, times);
        let (doc, msg) = match point {
            FaultPoint::ReplicateUpload => (
                &doc,
                tool(
                    "upscale",
                    "replicate",
                    "nightmareai/real-esrgan",
                    "up",
                    Some(&v_small),
                    json!({"scale": 2}),
                ),
            ),
            _ => (
                &doc_big,
                tool(
                    "edit",
                    "google",
                    "gemini-3.1-flash-image",
                    "edit",
                    Some(&v_big),
                    json!({}),
                ),
            ),
        };
        let id = request(&mut a, doc, msg).await;
        a.sync.sync_until_idle().await.unwrap();
        let m = wait_finished_within(
            &mut a,
            doc,
            std::slice::from_ref(&id),
            Duration::from_secs(60),
        )
        .await
        .remove(0);
        let after = w.fakes.file_counts();
        match want {
            Ok(()) => {
                assert_eq!(
                    m.status,
                    Some(MessageStatus::Succeeded),
                    "{point:?} {fault:?}: {:?}",
                    m.error
                );
                // One file made it, and it was deleted after the job.
                let made = (after.replicate_uploads + after.gemini_uploads)
                    - (before.replicate_uploads + before.gemini_uploads);
                assert_eq!(made, 1, "{point:?} {fault:?}");
                assert_eq!(after.replicate_live + after.gemini_live, 0);
            }
            Err(words) => {
                assert_eq!(m.status, Some(MessageStatus::Failed), "{point:?} {fault:?}");
                let e = m.error.unwrap();
                assert!(
                    e.message.contains(words),
                    "{point:?} {fault:?}: {:?}",
                    e.message
                );
                assert!(m.output_version_ids.is_empty());
            }
        }
    }
    // No fault was left unanswered, and failures cost nothing.
    let asset = a.store.load(&doc).await.unwrap();
    assert_eq!(asset.doc.cost_events().unwrap().len(), 2);
}

/// A server without jobs takes an upscale request; the job then resumes on
/// a server with jobs, from an operation that recorded an earlier upload of
/// its input (`expired` or not). Returns the world, the request and the
/// earlier upload's URL.
async fn resumed_job(expired: bool) -> (World, String, String) {
    let mut w = world_with(Options {
        jobs: false,
        ..Options::default()
    })
    .await;
    let mut a = device(&w).await;
    let image = noisy_png(320, 320);
    let (doc, v1) = asset_with(&mut a, image.clone(), 320, 320, true).await;
    let id = request(
        &mut a,
        &doc,
        tool(
            "upscale",
            "replicate",
            "nightmareai/real-esrgan",
            "up",
            Some(&v1),
            json!({"scale": 2}),
        ),
    )
    .await;
    a.sync.sync_until_idle().await.unwrap();
    let file = replicate_files::create_file(
        &providers(&w.fakes),
        image.clone().into(),
        "earlier.png",
        "image/png",
        None,
    )
    .await
    .unwrap();
    let earlier = file.input_url().unwrap().to_owned();
    w.restart(Options::default()).await;
    let op = Operation {
        id: id.clone(),
        user: user(),
        doc_id: doc.clone(),
        status: OpStatus::Running,
        provider_ref: None,
        attempts: 1,
        error: None,
        input: Some(InputRecord {
            route: InputRoute::ReplicateFile,
            sha256: core_sync::blob::sha256_hex(&image),
            bytes: image.len() as u64,
            file_id: Some(file.id.clone()),
            url: Some(earlier.clone()),
            expires_at: Some(if expired {
                now_millis() - 1
            } else {
                now_millis() + 3_600_000
            }),
            deleted: false,
        }),
        created_at: now_millis(),
        updated_at: now_millis(),
    };
    assert!(w.state.ops.create_operation(&op).await.unwrap());
    w.state.jobs.as_ref().unwrap().resume_all().await;
    let mut b = device(&w).await;
    let msgs = wait_finished(&mut b, &doc, std::slice::from_ref(&id)).await;
    succeeded(&msgs);
    (w, id, earlier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_job_reuses_its_upload_unless_it_expired() {
    // (expired, uploads in all, reused)
    for (expired, uploads, reused) in [(false, 1, true), (true, 2, false)] {
        let (w, id, earlier) = resumed_job(expired).await;
        let counts = w.fakes.file_counts();
        assert_eq!(counts.replicate_uploads, uploads, "expired {expired}");
        let images = prediction_images(&w);
        assert_eq!(images.len(), 1);
        assert_eq!(images[0] == earlier, reused, "expired {expired}");
        let record = route_of(&w, &id).await;
        assert_eq!(record.route, InputRoute::ReplicateFile);
        assert_eq!(record.url.as_deref() == Some(earlier.as_str()), reused);
        assert!(record.deleted);
        assert_eq!(
            counts.replicate_deletes, 1,
            "the file the job used is deleted"
        );
    }
}

/// Presigned URLs of the server's own blobs, served on loopback: what the
/// AWS backend gives with S3.
#[derive(Debug)]
struct LoopbackPresigner {
    base: String,
    issued: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl PublicInputUrls for LoopbackPresigner {
    async fn input_url(
        &self,
        user: &str,
        sha256: &str,
        ttl: Duration,
    ) -> Result<PublicUrl, String> {
        let expires_at = now_millis() + ttl.as_millis() as i64;
        let url = format!("{}/{user}/{sha256}?expires={expires_at}", self.base);
        self.issued.lock().unwrap().push(url.clone());
        Ok(PublicUrl { url, expires_at })
    }
}

async fn serve_blobs(blobs: Arc<OnceLock<Arc<dyn BlobStore>>>) -> String {
    use axum::extract::{Path, Query};
    let app = axum::Router::new().route(
        "/{user}/{sha}",
        axum::routing::get(
            move |Path((user, sha)): Path<(String, String)>,
                  Query(q): Query<std::collections::HashMap<String, i64>>| {
                let blobs = blobs.clone();
                async move {
                    let live = q.get("expires").is_some_and(|t| *t > now_millis());
                    match (live, blobs.get().unwrap().get(&user, &sha).await) {
                        (true, Ok(Some(bytes))) => Ok(bytes),
                        _ => Err(axum::http::StatusCode::FORBIDDEN),
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_public_storage_replicate_fetches_a_presigned_url_and_nothing_is_uploaded() {
    let blobs = Arc::new(OnceLock::new());
    let presigner = Arc::new(LoopbackPresigner {
        base: serve_blobs(blobs.clone()).await,
        issued: Default::default(),
    });
    let mut options = Options::default();
    options.job_config.public_inputs = Some(presigner.clone());
    let w = world_with(options).await;
    assert!(blobs.set(w.state.blobs.clone()).is_ok());
    let mut a = device(&w).await;
    let (doc, v1) = asset_with(&mut a, noisy_png(640, 480), 640, 480, true).await;
    let (small_doc, small) = asset_with_image(&mut a).await;
    let ids = [
        request(
            &mut a,
            &doc,
            tool(
                "upscale",
                "replicate",
                "nightmareai/real-esrgan",
                "up",
                Some(&v1),
                json!({"scale": 2}),
            ),
        )
        .await,
        request(
            &mut a,
            &small_doc,
            tool(
                "remove-background",
                "replicate",
                "bria/remove-background",
                "bg",
                Some(&small),
                json!({}),
            ),
        )
        .await,
    ];
    a.sync.sync_until_idle().await.unwrap();
    succeeded(&wait_finished(&mut a, &doc, &ids[..1]).await);
    succeeded(&wait_finished(&mut a, &small_doc, &ids[1..]).await);
    let mut asset = a.store.load(&doc).await.unwrap();
    let out_id = asset.doc.message(&ids[0]).unwrap().output_version_ids[0].clone();
    let out = asset.doc.reader().version(&out_id).unwrap().unwrap();
    assert_eq!((out.blob.width, out.blob.height), (1280, 960));

    assert_eq!(route_of(&w, &ids[0]).await.route, InputRoute::Presigned);
    assert_eq!(
        route_of(&w, &ids[1]).await.route,
        InputRoute::Inline,
        "small stays inline"
    );
    assert_eq!(w.fakes.file_counts(), FileCounts::default(), "no upload");
    let issued = presigner.issued.lock().unwrap().clone();
    assert_eq!(issued.len(), 1);
    assert!(prediction_images(&w).contains(&issued[0]));
}
