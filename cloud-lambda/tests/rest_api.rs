//! The REST resources through a real server on loopback (embedded backend,
//! no provider jobs unless a test says so): each endpoint's success, 401
//! without a token, 404 for another user's resource (nothing leaked),
//! refused input (4xx, nothing stored), pagination edges; the OpenAPI
//! document against the router and the committed copy; rate limits; the
//! problem shape of errors from outside handlers.

#[path = "support/rest.rs"]
mod rest;

use std::num::NonZeroU32;

use cloud_lambda::limits::ApiConfig;
use reqwest::Method;
use rest::{Backend, Options, png, world};
use serde_json::{Value, json};

#[tokio::test]
async fn every_route_but_the_public_ones_wants_a_token() {
    let w = world(Options::default()).await;
    let id = w.asset_with_image(&w.alice, "Shoe").await;
    let sha = "a".repeat(64);
    let routes: &[(Method, String, Option<Value>)] = &[
        (Method::GET, "/assets".into(), None),
        (
            Method::POST,
            "/assets".into(),
            Some(json!({"from": "prompt", "prompt": "x"})),
        ),
        (Method::GET, format!("/assets/{id}"), None),
        (Method::GET, format!("/assets/{id}/messages"), None),
        (
            Method::POST,
            format!("/assets/{id}/messages"),
            Some(json!({"type": "note", "text": "x"})),
        ),
        (Method::GET, "/costs".into(), None),
        (Method::GET, "/costs.csv".into(), None),
        (Method::GET, format!("/download-url?sha256={sha}"), None),
        (
            Method::POST,
            "/upload-url".into(),
            Some(json!({"sha256": sha, "bytes": 10, "contentType": "image/png"})),
        ),
        (
            Method::POST,
            "/v1/sync".into(),
            Some(json!({"feedCursor": 0})),
        ),
    ];
    for (method, path, body) in routes {
        let r = w.call(None, method.clone(), path, body.clone()).await;
        r.problem(401, "unauthorized");
        assert!(
            r.header("www-authenticate").unwrap().starts_with("Bearer"),
            "{method} {path}"
        );
    }
    // The public ones.
    for path in ["/healthz", "/openapi.json", "/metrics"] {
        let r = w.call(None, Method::GET, path, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
}

#[tokio::test]
async fn an_asset_from_an_upload_is_listed_and_read_by_its_owner_only_on_the_embedded_backend() {
    an_asset_from_an_upload_is_listed_and_read_by_its_owner_only(Backend::Embedded).await;
}

#[tokio::test]
async fn an_asset_from_an_upload_is_listed_and_read_by_its_owner_only_on_the_aws_backend() {
    an_asset_from_an_upload_is_listed_and_read_by_its_owner_only(Backend::Aws).await;
}

async fn an_asset_from_an_upload_is_listed_and_read_by_its_owner_only(backend: Backend) {
    let w = world(Options {
        backend,
        ..Options::default()
    })
    .await;
    let bytes = png(64, 48);
    let sha = w.upload(&w.alice, &bytes).await;
    let r = w
        .post(
            &w.alice,
            "/assets",
            json!({"from": "blob", "sha256": sha, "title": "Red shoe"}),
        )
        .await;
    let created = r.json(201);
    let id = created["asset"]["id"].as_str().unwrap();
    assert_eq!(r.header("location"), Some(format!("/assets/{id}").as_str()));
    let v = &created["asset"]["versions"][0];
    assert_eq!(
        (v["image"]["width"].as_u64(), v["image"]["height"].as_u64()),
        (Some(64), Some(48))
    );
    assert_eq!(v["image"]["sha256"], sha.as_str());
    assert_eq!(v["image"]["bytes"], bytes.len());
    assert_eq!(created["asset"]["activeVersionId"], v["id"]);
    // The cover is the thumbnail, stored as a blob the owner can fetch.
    let cover = created["asset"]["cover"]["sha256"].as_str().unwrap();
    assert_eq!(w.download(&w.alice, cover).await.status, 200);

    let list = w.get(&w.alice, "/assets").await.json(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["title"], "Red shoe");
    assert_eq!(list["items"][0]["cover"]["sha256"], cover);
    let one = w.get(&w.alice, &format!("/assets/{id}")).await.json(200);
    assert_eq!(one["title"], "Red shoe");
    assert_eq!(
        (one["costUsd"].as_str(), one["costEvents"].as_u64()),
        (Some("0.00"), Some(0))
    );

    // Bob sees nothing of it: not in his list, 404 by id, no leak.
    assert_eq!(w.get(&w.bob, "/assets").await.json(200)["items"], json!([]));
    for path in [
        format!("/assets/{id}"),
        format!("/assets/{id}/messages"),
        format!("/download-url?sha256={sha}"),
    ] {
        let r = w.get(&w.bob, &path).await;
        r.problem(404, "not_found");
        // The answer is the one an absent id gets: nothing of Alice's in it.
        assert!(
            !r.text().contains("Red shoe") && !r.text().contains(cover),
            "{}",
            r.text()
        );
    }
    let r = w
        .post(
            &w.bob,
            &format!("/assets/{id}/messages"),
            json!({"type": "note", "text": "mine now"}),
        )
        .await;
    r.problem(404, "not_found");
    assert_eq!(
        w.get(&w.alice, &format!("/assets/{id}")).await.json(200)["messageCount"],
        0
    );
    // Bob cannot make an asset of Alice's upload either.
    w.post(&w.bob, "/assets", json!({"from": "blob", "sha256": sha}))
        .await
        .problem(404, "not_found");
    assert_eq!(w.doc_count(&w.bob).await, 0);
}

#[tokio::test]
async fn refused_input_stores_nothing() {
    let w = world(Options::default()).await;
    let ok = w.upload(&w.alice, &png(8, 8)).await;
    let missing = "b".repeat(64);
    let long = "x".repeat(4001);
    let cases: &[(Value, u16, &str)] = &[
        (
            json!({"from": "blob", "sha256": ok, "colour": "red"}),
            400,
            "unknown_field",
        ),
        (json!({"sha256": ok}), 400, "bad_request"),
        (json!({"from": "scan", "sha256": ok}), 400, "bad_request"),
        (json!({"from": "blob", "sha256": missing}), 404, "not_found"),
        (json!({"from": "blob", "sha256": "ABC"}), 400, "bad_sha256"),
        (
            json!({"from": "blob", "sha256": ok, "title": "t".repeat(201)}),
            400,
            "text_too_long",
        ),
        (
            json!({"from": "blob", "sha256": ok, "title": "a\nb"}),
            400,
            "bad_title",
        ),
        (json!({"from": "prompt", "prompt": "  "}), 400, "empty_text"),
        (
            json!({"from": "prompt", "prompt": long}),
            400,
            "text_too_long",
        ),
        (
            json!({"from": "prompt", "prompt": "x", "model": "gemini-2.5-flash-image"}),
            400,
            "model_retired",
        ),
        (
            json!({"from": "prompt", "prompt": "x", "model": "imagen-4.0-generate-001"}),
            400,
            "model_retired",
        ),
        (
            json!({"from": "prompt", "prompt": "x", "model": "dall-e-3"}),
            400,
            "unknown_model",
        ),
        (
            json!({"from": "prompt", "prompt": "x", "model": "bria/remove-background"}),
            400,
            "wrong_tool",
        ),
        (
            json!({"from": "prompt", "prompt": "x", "aspectRatio": "7:3"}),
            400,
            "bad_request",
        ),
        (json!([1, 2]), 400, "bad_request"),
    ];
    for (body, status, code) in cases {
        let detail = w
            .post(&w.alice, "/assets", body.clone())
            .await
            .problem(*status, code);
        if *code == "model_retired" {
            assert!(
                detail.contains("use gemini-3"),
                "names the replacement: {detail}"
            );
        }
    }
    // Not JSON at all.
    let r = w
        .http
        .post(format!("{}/assets", w.url))
        .bearer_auth(&w.alice.token)
        .body("from=blob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(w.doc_count(&w.alice).await, 0, "nothing was stored");

    // Images are checked by content: a type the service does not take is
    // refused before any URL is given; bytes that are not what the upload
    // URL was asked for are refused by the upload; a header claiming too
    // many pixels is refused where the image is used, before it is decoded.
    let gif = b"GIF89a\x01\x00\x01\x00".to_vec();
    w.try_upload(&w.alice, &gif, "image/gif")
        .await
        .problem(415, "unsupported_image");
    w.try_upload(&w.alice, &gif, "image/png")
        .await
        .problem(415, "unsupported_image");
    let gif_sha = core_sync::blob::sha256_hex(&gif);
    w.download(&w.alice, &gif_sha)
        .await
        .problem(404, "not_found");
    let mut bomb = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bomb.extend_from_slice(&100_000u32.to_be_bytes());
    bomb.extend_from_slice(&100_000u32.to_be_bytes());
    bomb.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    let bomb_sha = w.upload(&w.alice, &bomb).await;
    w.post(
        &w.alice,
        "/assets",
        json!({"from": "blob", "sha256": bomb_sha}),
    )
    .await
    .problem(400, "image_too_large");
    assert_eq!(w.doc_count(&w.alice).await, 0, "nothing was stored");
}

#[tokio::test]
async fn the_image_limits_come_from_configuration() {
    let w = world(Options {
        api: ApiConfig {
            max_image_pixels: 1_000,
            max_image_bytes: 2_000,
            ..ApiConfig::default()
        },
        ..Options::default()
    })
    .await;
    let big = vec![0x89; 2_001];
    w.try_upload(&w.alice, &big, "image/png")
        .await
        .problem(400, "image_too_large");
    let sha = w.upload(&w.alice, &png(40, 40)).await;
    w.post(&w.alice, "/assets", json!({"from": "blob", "sha256": sha}))
        .await
        .problem(400, "image_too_large");
    let sha = w.upload(&w.alice, &png(30, 30)).await;
    w.post(&w.alice, "/assets", json!({"from": "blob", "sha256": sha}))
        .await
        .json(201);
}

/// The pages of `path` (`limit` per page) as lists of `key` values.
async fn pages(w: &rest::World, path: &str, limit: usize, key: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}?limit={limit}&cursor={c}"),
            None => format!("{path}?limit={limit}"),
        };
        let page = w.get(&w.alice, &url).await.json(200);
        out.push(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i[key].as_str().unwrap().to_owned())
                .collect(),
        );
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
        assert!(out.len() < 50, "pages never end");
    }
}

#[tokio::test]
async fn asset_pages_are_newest_first_and_end_exactly_on_the_embedded_backend() {
    asset_pages_are_newest_first_and_end_exactly(Backend::Embedded).await;
}

#[tokio::test]
async fn asset_pages_are_newest_first_and_end_exactly_on_the_aws_backend() {
    asset_pages_are_newest_first_and_end_exactly(Backend::Aws).await;
}

async fn asset_pages_are_newest_first_and_end_exactly(backend: Backend) {
    let w = world(Options {
        backend,
        ..Options::default()
    })
    .await;
    assert_eq!(
        pages(&w, "/assets", 3, "title").await,
        vec![Vec::<String>::new()]
    );
    let mut titles = Vec::new();
    for i in 0..7 {
        let t = format!("asset {i}");
        w.asset_with_image(&w.alice, &t).await;
        titles.insert(0, t);
        if i == 2 {
            // Exactly one full page: no cursor to an empty page.
            assert_eq!(pages(&w, "/assets", 3, "title").await, vec![titles.clone()]);
        }
    }
    let got = pages(&w, "/assets", 3, "title").await;
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(got.concat(), titles, "newest first, each once");
    for (q, code) in [
        ("limit=0", "bad_limit"),
        ("limit=101", "bad_limit"),
        ("cursor=nope", "bad_cursor"),
        ("limit=1&limit=2", "repeated_parameter"),
        ("page=2", "unknown_parameter"),
    ] {
        w.get(&w.alice, &format!("/assets?{q}"))
            .await
            .problem(400, code);
    }
}

#[tokio::test]
async fn messages_are_written_into_the_document_and_paged_newest_first_on_the_embedded_backend() {
    messages_are_written_into_the_document_and_paged_newest_first(Backend::Embedded).await;
}

#[tokio::test]
async fn messages_are_written_into_the_document_and_paged_newest_first_on_the_aws_backend() {
    messages_are_written_into_the_document_and_paged_newest_first(Backend::Aws).await;
}

async fn messages_are_written_into_the_document_and_paged_newest_first(backend: Backend) {
    let w = world(Options {
        backend,
        ..Options::default()
    })
    .await;
    let id = w.asset_with_image(&w.alice, "Shoe").await;
    let msgs = format!("/assets/{id}/messages");
    assert_eq!(
        pages(&w, &msgs, 2, "text").await,
        vec![Vec::<String>::new()]
    );
    let mut texts = Vec::new();
    for i in 0..4 {
        let posted = w
            .post(
                &w.alice,
                &msgs,
                json!({"type": "note", "text": format!("note {i}")}),
            )
            .await
            .json(202);
        assert_eq!(posted["message"]["kind"], "user");
        assert_eq!(posted["operation"], Value::Null);
        texts.push(format!("note {i}"));
    }
    // Exactly one full page: no cursor to an empty page.
    assert_eq!(pages(&w, &msgs, 4, "text").await, vec![texts.clone()]);
    // A tool request without jobs on this server stays queued.
    let posted = w
        .post(&w.alice, &msgs, json!({"type": "upscale", "scale": 2}))
        .await
        .json(202);
    assert_eq!(posted["message"]["kind"], "toolRequest");
    assert_eq!(posted["message"]["status"], "queued");
    assert_eq!(posted["message"]["model"], "nightmareai/real-esrgan");
    assert_eq!(posted["message"]["params"], json!({"scale": 2}));
    assert_eq!(posted["operation"], Value::Null);
    let got = pages(&w, &msgs, 2, "kind").await;
    assert_eq!(
        got.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2, 1],
        "newest page first"
    );
    assert_eq!(
        got[0],
        ["user", "toolRequest"],
        "within a page, timeline order"
    );
    let page = w.get(&w.alice, &format!("{msgs}?limit=4")).await.json(200);
    assert_eq!(page["items"][0]["text"], "note 1");
    assert_eq!(page["nextCursor"], "1");
    let page = w
        .get(&w.alice, &format!("{msgs}?limit=4&cursor=1"))
        .await
        .json(200);
    assert_eq!(page["items"][0]["text"], texts[0]);
    assert_eq!(page["nextCursor"], Value::Null);

    // Refusals write nothing.
    let bare = w.asset_with_image(&w.bob, "x").await;
    let prompt_only = w
        .post(
            &w.alice,
            "/assets",
            json!({"from": "prompt", "prompt": "a lighthouse"}),
        )
        .await
        .json(201)["asset"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: &[(String, Value, u16, &str)] = &[
        (
            msgs.clone(),
            json!({"type": "shout", "text": "x"}),
            400,
            "bad_request",
        ),
        (
            msgs.clone(),
            json!({"type": "note", "text": "x", "pinned": true}),
            400,
            "unknown_field",
        ),
        (
            msgs.clone(),
            json!({"type": "note", "text": ""}),
            400,
            "empty_text",
        ),
        (
            msgs.clone(),
            json!({"type": "edit", "prompt": "x", "model": "gemini-2.5-flash-image"}),
            400,
            "model_retired",
        ),
        (
            msgs.clone(),
            json!({"type": "edit", "prompt": "x", "inputVersionId": "0".repeat(32)}),
            409,
            "unknown_version",
        ),
        (
            msgs.clone(),
            json!({"type": "upscale", "scale": 9}),
            400,
            "bad_parameter",
        ),
        (
            format!("/assets/{prompt_only}/messages"),
            json!({"type": "remove-background"}),
            409,
            "no_image",
        ),
        (
            format!("/assets/{bare}/messages"),
            json!({"type": "note", "text": "x"}),
            404,
            "not_found",
        ),
        (
            "/assets/not-an-id/messages".into(),
            json!({"type": "note", "text": "x"}),
            400,
            "bad_id",
        ),
    ];
    for (path, body, status, code) in cases {
        w.post(&w.alice, path, body.clone())
            .await
            .problem(*status, code);
    }
    let count = w.get(&w.alice, &format!("/assets/{id}")).await.json(200)["messageCount"].clone();
    assert_eq!(count, 5, "only the five accepted messages");
}

#[tokio::test]
async fn over_the_rate_a_user_gets_429_with_retry_after_and_others_do_not() {
    let w = world(Options {
        api: ApiConfig {
            requests_per_minute: NonZeroU32::new(1),
            request_burst: NonZeroU32::new(3).unwrap(),
            ..ApiConfig::default()
        },
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(w.get(&w.alice, "/assets").await.status, 200);
    }
    let r = w.get(&w.alice, "/assets").await;
    r.problem(429, "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(w.get(&w.bob, "/assets").await.status, 200, "keyed by user");
    let metrics = w.call(None, Method::GET, "/metrics", None).await.text();
    let throttles = metrics
        .lines()
        .find_map(|l| l.strip_prefix("atelier_http_throttled_total "))
        .unwrap();
    assert!(throttles.parse::<u64>().unwrap() >= 1, "{metrics}");
}

#[tokio::test]
async fn errors_from_outside_handlers_are_problems_too() {
    let w = world(Options::default()).await;
    w.get(&w.alice, "/nowhere").await.problem(404, "no_route");
    let r = w
        .call(Some(&w.alice), Method::DELETE, "/assets", None)
        .await;
    r.problem(405, "method_not_allowed");
    assert!(r.header("allow").unwrap().contains("POST"));
    let r = w
        .http
        .post(format!("{}/assets", w.url))
        .bearer_auth(&w.alice.token)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn the_openapi_document_matches_the_router_and_the_committed_copy() {
    let w = world(Options::default()).await;
    let served = w
        .call(None, Method::GET, "/openapi.json", None)
        .await
        .json(200);
    let registry =
        cloud_lambda::registry::Registry::parse(cloud_lambda::registry::BUILTIN).unwrap();
    let generated = cloud_lambda::app::openapi_document(&registry);
    assert_eq!(served, generated);
    assert_eq!(served["openapi"], "3.1.0");
    assert!(
        served["paths"]
            .get(core_sync::sync::protocol::SYNC_PATH)
            .is_some()
    );

    // Every documented operation is routed: none answers "no route" or 405.
    let id = w.asset_with_image(&w.alice, "x").await;
    let sha = "c".repeat(64);
    let mut operations = 0;
    for (path, item) in served["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", &id).replace("{sha256}", &sha);
        for method in item.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = w.call(Some(&w.alice), m, &concrete, None).await;
            assert!(r.status != 405, "{method} {path}: {}", r.text());
            assert!(
                !r.text().contains("no_route"),
                "{method} {path} is documented but not routed"
            );
            operations += 1;
        }
    }
    assert!(operations >= 14, "{operations}");
    // Every route is registered with `routes!` (path and method from its
    // handler's #[utoipa::path]), never with a bare `.route(`, which would
    // serve a route the document lacks.
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut files = vec![format!("{src}/app.rs")];
    for entry in std::fs::read_dir(format!("{src}/api")).unwrap() {
        files.push(entry.unwrap().path().display().to_string());
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains(".route("),
            "{f} registers a route outside the document"
        );
    }

    // The committed copy (read by the infrastructure) is the generated one.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    let pretty = serde_json::to_string_pretty(&generated).unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == pretty,
        "cloud-lambda/openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p cloud-lambda --test rest_api` and commit it"
    );
}

/// Captures what the log writes.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_request_is_one_json_log_line_with_its_user_and_never_its_token() {
    let capture = Capture::default();
    let writer = capture.clone();
    // The only test in this binary that installs a subscriber.
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .try_init()
        .unwrap();
    let w = world(Options::default()).await;
    let id = "0".repeat(32);
    let r = w
        .http
        .get(format!("{}/assets/{id}", w.url))
        .bearer_auth(&w.alice.token)
        .header("x-request-id", "log-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-request-id"], "log-test-1", "echoed back");
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "atelier::access" && l["span"]["request_id"] == "log-test-1")
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = &lines[0];
    assert_eq!(line["span"]["route"], "/assets/{id}");
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["span"]["user"], w.alice.sub.as_str());
    assert_eq!(line["fields"]["status"], 404);
    assert!(line["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(!text.contains(&w.alice.token), "the token is never logged");
}
