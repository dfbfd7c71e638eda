//! The Lambda entry point, in-process: API Gateway HTTP API (2.0) events
//! kept in `fixtures/events/apigw-v2/` go through [`LambdaApp::handle`]
//! (the function's whole path: event to request, the Router, response to
//! the Lambda answer) over the embedded backend, with tokens from the
//! fake Cognito pool. Binary and compressed bodies travel base64-encoded
//! both ways; errors come back as problem details; sync answers stay under
//! Lambda's 6 MB response limit; an invoked job event runs the job by its
//! operation id; provider keys read at start from SSM Parameter Store
//! (moto's) as Amplify keeps them; EventBridge's scheduled event
//! (`fixtures/events/eventbridge/`) purges the trash, on the AWS backend on
//! moto. (`lambda_local.rs` runs the built function under `cargo lambda
//! watch`.)

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_fixtures::fakes::cognito::{self, CognitoConfig, RunningCognito};
use atelier_fixtures::fakes::oauth::FakeUser;
use atelier_fixtures::fakes::{self, FakeConfig, RunningFakes};
use atelier_fixtures::moto::Moto;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cloud_lambda::app::AppState;
use cloud_lambda::auth::CognitoSettings;
use cloud_lambda::jobs::launcher::JobLauncher;
use cloud_lambda::jobs::{JobConfig, Jobs};
use cloud_lambda::lambda::invoke::JobEvent;
use cloud_lambda::lambda::{LambdaApp, MAX_RESPONSE_BYTES};
use cloud_lambda::registry::{BUILTIN, Registry};
use cloud_lambda::storage::aws::Aws;
use cloud_lambda::storage::jobs::{OpStatus, Operation};
use core_sync::model::MessageStatus;
use core_sync::sync::protocol::{Bytes, DocPush, PushStatus, SyncRequest, SyncResponse};
use core_sync::{AssetDoc, DocId};
use lambda_http::{Context, LambdaEvent};
use serde_json::{Value, json};

/// Launched jobs, recorded instead of run: the test plays Lambda and
/// sends each as a job event.
#[derive(Debug, Default)]
struct Recorded(Mutex<Vec<Operation>>);

#[async_trait::async_trait]
impl JobLauncher for Recorded {
    async fn launch(&self, _jobs: &Arc<Jobs>, op: Operation) {
        self.0.lock().unwrap().push(op);
    }
}

struct Function {
    app: LambdaApp,
    token: String,
    launched: Arc<Recorded>,
    /// The AWS backend, when the function runs on it (moto lives as long).
    aws: Option<(Aws, Moto)>,
    _cognito: RunningCognito,
    _fakes: RunningFakes,
    _dir: tempfile::TempDir,
}

async fn function() -> Function {
    function_on(false).await
}

/// The function on the embedded backend, or (`aws`) on DynamoDB and S3
/// in a moto of its own.
async fn function_on(aws: bool) -> Function {
    let cognito = cognito::spawn(CognitoConfig::default()).await.unwrap();
    let settings = CognitoSettings {
        issuer: cognito.issuer(),
        jwks_url: Some(cognito.jwks_url()),
        client_ids: vec![cognito::DEFAULT_CLIENT_ID.into()],
        min_refetch_interval: Duration::from_secs(60),
    };
    let token =
        cognito.sign(&cognito.access_claims(cognito::DEFAULT_CLIENT_ID, &FakeUser::default()));
    let fakes = fakes::spawn(FakeConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let launched = Arc::new(Recorded::default());
    let (state, aws) = if aws {
        let moto = Moto::start();
        let aws = support::aws::deployment(&moto.url()).await;
        let state = AppState::aws(&aws, settings.verifier().unwrap(), None);
        (state, Some((aws, moto)))
    } else {
        let state = AppState::embedded(dir.path(), settings.verifier().unwrap(), None)
            .await
            .unwrap();
        (state, None)
    };
    let state = state.with_jobs(
        Registry::parse(BUILTIN).unwrap(),
        support::providers(&fakes),
        JobConfig {
            launcher: launched.clone(),
            retry_base: Duration::from_millis(50),
            ..JobConfig::default()
        },
    );
    Function {
        app: LambdaApp::new(state),
        token,
        launched,
        aws,
        _cognito: cognito,
        _fakes: fakes,
        _dir: dir,
    }
}

/// The HTTP API fixture `name` with its placeholders (`__NAME__`, inside
/// JSON strings) replaced.
fn fixture(name: &str, subs: &[(&str, &str)]) -> Value {
    fixture_in("apigw-v2", name, subs)
}

/// [`fixture`] from another kind of event (`fixtures/events/{kind}/`).
fn fixture_in(kind: &str, name: &str, subs: &[(&str, &str)]) -> Value {
    let path = format!(
        "{}/../fixtures/events/{kind}/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (key, value) in subs {
        let escaped = serde_json::to_string(value).unwrap();
        text = text.replace(key, &escaped[1..escaped.len() - 1]);
    }
    serde_json::from_str(&text).unwrap()
}

/// The function's answer to an event: status, headers, decoded body.
struct Answer {
    status: u64,
    headers: Value,
    base64: bool,
    body: Vec<u8>,
    size: usize,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers[name].as_str()
    }

    fn json(&self) -> Value {
        let bytes = match self.header("content-encoding") {
            Some("zstd") => zstd::decode_all(&self.body[..]).unwrap(),
            Some(other) => panic!("cannot decode {other}"),
            None => self.body.clone(),
        };
        serde_json::from_slice(&bytes).unwrap()
    }

    fn problem_code(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        self.json()["code"].as_str().unwrap().to_owned()
    }
}

async fn call(f: &Function, event: Value) -> Answer {
    let out = f
        .app
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    let size = serde_json::to_vec(&out).unwrap().len();
    let base64 = out["isBase64Encoded"].as_bool().unwrap_or(false);
    let body = match out["body"].as_str() {
        None => Vec::new(),
        Some(b) if base64 => STANDARD.decode(b).unwrap(),
        Some(b) => b.as_bytes().to_vec(),
    };
    Answer {
        status: out["statusCode"].as_u64().unwrap(),
        headers: out["headers"].clone(),
        base64,
        body,
        size,
    }
}

async fn event(f: &Function, name: &str, subs: &[(&str, &str)]) -> Answer {
    let mut all = vec![("__ACCESS_TOKEN__", f.token.as_str())];
    all.extend_from_slice(subs);
    call(f, fixture(name, &all)).await
}

fn push_of(docs: &mut [(DocId, AssetDoc)]) -> String {
    let req = SyncRequest {
        push: docs
            .iter_mut()
            .map(|(id, doc)| DocPush {
                doc_id: id.clone(),
                changes: Bytes(doc.changes_since(&[])),
            })
            .collect(),
        ..SyncRequest::default()
    };
    serde_json::to_string(&req).unwrap()
}

#[tokio::test]
async fn every_fixture_round_trips_through_the_function() {
    let f = function().await;
    let mut docs: Vec<(DocId, AssetDoc)> = (0..3)
        .map(|i| {
            (
                DocId::random(),
                AssetDoc::create(&format!("Asset {i}"), 1_000 + i),
            )
        })
        .collect();
    let pushed = event(
        &f,
        "sync-push.json",
        &[("__SYNC_REQUEST__", &push_of(&mut docs))],
    )
    .await;
    assert_eq!(pushed.status, 200);
    assert_eq!(pushed.header("content-encoding"), Some("gzip"));
    assert!(pushed.base64, "a compressed answer is binary");
    assert_eq!(&pushed.body[..2], b"\x1f\x8b");

    // (fixture, status, what else must hold)
    type Check = fn(&Answer);
    let cases: &[(&str, u64, Check)] = &[
        ("healthz.json", 200, |a| {
            assert!(!a.base64);
            assert_eq!(a.body, b"ok");
        }),
        ("sync-json.json", 200, |a| {
            let r: SyncResponse = serde_json::from_value(a.json()).unwrap();
            assert_eq!(r.docs.len(), 3);
            assert!(!r.more);
        }),
        ("sync-gzip.json", 200, |a| {
            assert!(a.base64);
            assert_eq!(a.header("content-encoding"), Some("gzip"));
        }),
        ("sync-zstd.json", 200, |a| {
            assert!(a.base64);
            let r: SyncResponse = serde_json::from_value(a.json()).unwrap();
            assert_eq!(r.docs.len(), 3, "a zstd request, a zstd answer");
        }),
        ("sync-corrupt-zstd.json", 400, |a| {
            assert_eq!(a.problem_code(), "bad_request");
        }),
        ("sync-malformed.json", 400, |a| {
            assert_eq!(a.problem_code(), "bad_request");
        }),
        ("sync-unauthenticated.json", 401, |a| {
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        }),
        ("not-found.json", 404, |a| {
            assert_eq!(a.header("content-type"), Some("application/problem+json"));
        }),
        ("assets-page.json", 200, |a| {
            let page = a.json();
            assert_eq!(
                page["items"].as_array().unwrap().len(),
                2,
                "limit=2 from the query"
            );
            assert!(page["nextCursor"].is_string());
        }),
    ];
    for (name, status, check) in cases {
        let a = event(&f, name, &[]).await;
        assert_eq!(
            a.status,
            *status,
            "{name}: {}",
            String::from_utf8_lossy(&a.body)
        );
        check(&a);
        assert!(
            a.header("x-request-id").is_some(),
            "{name}: the API's layers ran"
        );
    }
}

#[tokio::test]
async fn images_travel_base64_encoded_both_ways() {
    let f = function().await;
    let png = support::png(32, 24);
    let sha = core_sync::blob::sha256_hex(&png);
    let bytes = png.len().to_string();
    let up = event(
        &f,
        "upload-url.json",
        &[("__SHA256__", &sha), ("__BYTES__", &bytes)],
    )
    .await;
    assert_eq!(up.status, 200, "{}", String::from_utf8_lossy(&up.body));
    let url = up.json()["url"].as_str().unwrap().to_owned();
    let t = url.split("t=").nth(1).unwrap().to_owned();
    let put = event(
        &f,
        "blob-transfer-put.json",
        &[
            ("__TRANSFER__", &t),
            ("__PNG_BASE64__", &STANDARD.encode(&png)),
        ],
    )
    .await;
    assert!(
        (200..300).contains(&put.status),
        "{}",
        String::from_utf8_lossy(&put.body)
    );

    let down = event(&f, "download-url.json", &[("__SHA256__", &sha)]).await;
    assert_eq!(down.status, 200);
    let url = down.json()["url"].as_str().unwrap().to_owned();
    let t = url.split("t=").nth(1).unwrap().to_owned();
    let got = event(&f, "blob-transfer-get.json", &[("__TRANSFER__", &t)]).await;
    assert_eq!(got.status, 200);
    assert!(got.base64, "an image is binary");
    assert_eq!(got.body, png, "the same bytes came back");

    // A tampered transfer token is refused, nothing stored.
    let other = support::png(8, 8);
    let bad = event(
        &f,
        "blob-transfer-put.json",
        &[
            ("__TRANSFER__", "AAAA"),
            ("__PNG_BASE64__", &STANDARD.encode(&other)),
        ],
    )
    .await;
    assert!(bad.status >= 400 && bad.status < 500, "{}", bad.status);
}

/// Deterministic text that compresses poorly.
fn noise_text(len: usize, mut seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ALPHABET[(seed % 64) as usize] as char
        })
        .collect()
}

#[tokio::test]
async fn sync_pages_stay_under_lambdas_response_limit() {
    let f = function().await;
    let user = FakeUser::default().sub;
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let id = DocId::random();
        let mut doc = AssetDoc::create(&noise_text(2_000_000, i + 1), 1_000);
        let changes = core_sync::model::chunks::changes(&doc.changes_since(&[])).unwrap();
        f.app
            .state()
            .writer
            .push(&user, &id, changes)
            .await
            .unwrap();
        ids.push(id);
    }
    let mut cursor = 0u64;
    let mut got = Vec::new();
    let mut pages = 0;
    let mut total = 0;
    loop {
        let body = json!({"feedCursor": cursor}).to_string();
        let mut e = fixture("sync-json.json", &[("__ACCESS_TOKEN__", &f.token)]);
        e["body"] = json!(body);
        e["headers"]["content-length"] = json!(body.len().to_string());
        let a = call(&f, e).await;
        assert_eq!(a.status, 200);
        assert!(
            a.size <= MAX_RESPONSE_BYTES,
            "page {pages}: {} bytes",
            a.size
        );
        pages += 1;
        total += a.size;
        let r: SyncResponse = serde_json::from_value(a.json()).unwrap();
        got.extend(r.docs.iter().map(|d| d.doc_id.clone()));
        assert!(r.feed_cursor > cursor || !r.more);
        cursor = r.feed_cursor;
        if !r.more {
            break;
        }
    }
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "every document, once");
    assert!(
        total > MAX_RESPONSE_BYTES,
        "{total} bytes in all: more than one answer could carry"
    );
}

#[tokio::test]
async fn an_invoked_job_event_runs_the_job_by_its_operation_id() {
    let f = function().await;
    let id = DocId::random();
    let mut doc = AssetDoc::create("To generate", 1_000);
    let msg = doc
        .append_message(
            support::tool(
                "generate",
                "google",
                "gemini-3.1-flash-image",
                "a red shoe",
                None,
                json!({}),
            ),
            2_000,
        )
        .unwrap();
    let mut docs = vec![(id.clone(), doc)];
    let pushed = event(
        &f,
        "sync-push.json",
        &[("__SYNC_REQUEST__", &push_of(&mut docs))],
    )
    .await;
    assert_eq!(pushed.status, 200);
    let launched = f.launched.0.lock().unwrap().clone();
    assert_eq!(launched.len(), 1, "the push launched one job");
    assert_eq!(launched[0].id, msg);
    let user = FakeUser::default().sub;
    let queued = f
        .app
        .state()
        .ops
        .get_operation(&user, &msg)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queued.status, OpStatus::Queued, "launched, not run");

    // What the self-invoke delivers, as Lambda hands it over.
    let job = serde_json::to_value(JobEvent::new(&launched[0].user, &launched[0].id)).unwrap();
    let out = f
        .app
        .handle(LambdaEvent::new(job.clone(), Context::default()))
        .await
        .unwrap();
    assert_eq!(out["status"], "succeeded", "{out}");
    let msg_view = f
        .app
        .state()
        .writer
        .read(&user, &id, |d| d.message(&msg))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg_view.status, Some(MessageStatus::Succeeded));
    assert_eq!(msg_view.output_version_ids.len(), 1);
    // Lambda retries a failed async invoke: a second delivery changes nothing.
    let again = f
        .app
        .handle(LambdaEvent::new(job, Context::default()))
        .await
        .unwrap();
    assert_eq!(again["status"], "succeeded");
    assert_eq!(fakes_calls(&f), 1, "the provider was called once");

    // Neither an HTTP nor a job event: an error Lambda reports.
    let err = f
        .app
        .handle(LambdaEvent::new(
            json!({"hello": "world"}),
            Context::default(),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not an API Gateway"), "{err}");
}

fn fakes_calls(f: &Function) -> usize {
    f._fakes
        .requests()
        .iter()
        .filter(|r| r.path.contains(":generateContent"))
        .count()
}

/// The function as `atelier-lambda` starts it, from `env` only, with the
/// fake Cognito pool and providers and the embedded backend.
async fn started(env: &[(&str, String)]) -> Result<Function, cloud_lambda::lambda::LambdaError> {
    use cloud_lambda::lambda::LambdaConfig;
    let cognito = cognito::spawn(CognitoConfig::default()).await.unwrap();
    let token =
        cognito.sign(&cognito.access_claims(cognito::DEFAULT_CLIENT_ID, &FakeUser::default()));
    let fakes = fakes::spawn(FakeConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut vars: std::collections::HashMap<String, String> = [
        ("ATELIER_BACKEND", "embedded".to_owned()),
        ("ATELIER_CLOUD_DATA", dir.path().display().to_string()),
        ("ATELIER_COGNITO_ISSUER", cognito.issuer()),
        ("ATELIER_COGNITO_JWKS_URL", cognito.jwks_url()),
        (
            "ATELIER_COGNITO_CLIENT_IDS",
            cognito::DEFAULT_CLIENT_ID.to_owned(),
        ),
        ("ATELIER_GEMINI_BASE_URL", fakes.base_url().to_owned()),
        // EMF lines would go to this test's stdout.
        ("ATELIER_EMF_METRICS", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let config = LambdaConfig::from_lookup(|name| vars.get(name).cloned())?;
    Ok(Function {
        app: LambdaApp::start(config).await?,
        token,
        launched: Arc::default(),
        aws: None,
        _cognito: cognito,
        _fakes: fakes,
        _dir: dir,
    })
}

#[tokio::test]
async fn provider_keys_come_from_ssm_parameters_at_start_and_a_missing_one_stops_it() {
    use aws_sdk_ssm::types::ParameterType;
    use cloud_lambda::lambda::secrets::{self, SsmEndpoint};

    let moto = Moto::start();
    let ssm = secrets::client(&SsmEndpoint {
        url: Some(moto.url()),
        region: "eu-central-1".into(),
        credentials: Some(("test".into(), "test".into())),
    })
    .await;
    let put = async |name: &str, value: &str| {
        ssm.put_parameter()
            .name(name)
            .value(value)
            .r#type(ParameterType::SecureString)
            .send()
            .await
            .unwrap();
    };
    // As Amplify keeps them: the branch's own, else the app-wide one.
    let (branch, shared) = (
        "/amplify/app1/main-branch-0a1b2c3d4e",
        "/amplify/shared/app1",
    );
    put(&format!("{branch}/GEMINI_API_KEY"), fakes::DEFAULT_API_KEY).await;
    put(&format!("{shared}/GEMINI_API_KEY"), "AIza-stale-shared-key").await;
    put(
        &format!("{shared}/REPLICATE_API_TOKEN"),
        fakes::DEFAULT_REPLICATE_TOKEN,
    )
    .await;
    put(
        &format!("{shared}/REPLICATE_WEBHOOK_SECRET"),
        fakes::DEFAULT_WEBHOOK_SECRET,
    )
    .await;
    let parameters = |names: &[&str]| {
        let map: serde_json::Map<String, Value> = names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    json!([format!("{branch}/{n}"), format!("{shared}/{n}")]),
                )
            })
            .collect();
        Value::Object(map).to_string()
    };
    let all = parameters(&[
        "GEMINI_API_KEY",
        "REPLICATE_API_TOKEN",
        "REPLICATE_WEBHOOK_SECRET",
    ]);
    let endpoint = moto.url();
    let env = |json: String| {
        vec![
            ("ATELIER_SECRET_PARAMETERS", json),
            ("AWS_ENDPOINT_URL_SSM", endpoint.clone()),
            ("AWS_REGION", "eu-central-1".to_owned()),
        ]
    };

    // Started with the keys from SSM, decrypted, the branch's first: the
    // fake Gemini takes only the right key, and the job succeeds.
    let f = started(&env(all.clone())).await.unwrap();
    let mut doc = AssetDoc::create("From SSM", 1_000);
    let msg = doc
        .append_message(
            core_sync::model::NewMessage::tool_request(
                "generate",
                "google",
                "gemini-3.1-flash-image",
                "a red shoe",
            ),
            2_000,
        )
        .unwrap();
    let id = DocId::random();
    let pushed = event(
        &f,
        "sync-push.json",
        &[("__SYNC_REQUEST__", &push_of(&mut [(id, doc)]))],
    )
    .await;
    assert_eq!(pushed.status, 200);
    let user = FakeUser::default().sub;
    support::until("the job to succeed", Duration::from_secs(30), || async {
        let op = f.app.state().ops.get_operation(&user, &msg).await.unwrap();
        match op.as_ref().map(|o| o.status) {
            Some(OpStatus::Failed) => panic!("the job failed: {op:?}"),
            status => status == Some(OpStatus::Succeeded),
        }
    })
    .await;

    // A key set directly wins and is not looked up, even where no
    // parameter holds it.
    let mut direct = env(json!({"GEMINI_API_KEY": ["/nowhere/GEMINI_API_KEY"]}).to_string());
    direct.push(("GEMINI_API_KEY", "AIza-direct".to_owned()));
    assert!(started(&direct).await.is_ok());

    // A secret none of whose parameters exists: the function does not
    // start, and says which and how to set it (never a value).
    let missing = started(&env(json!({
        "GEMINI_API_KEY": [format!("{branch}/GEMINI_API_KEY")],
        "REPLICATE_WEBHOOK_SECRET": [format!("{branch}/REPLICATE_WEBHOOK_SECRET"), "/amplify/shared/other/REPLICATE_WEBHOOK_SECRET"],
    }).to_string()))
    .await
    .err()
    .expect("a missing secret stops the start");
    let text = missing.to_string();
    assert!(
        text.contains("REPLICATE_WEBHOOK_SECRET (none of /amplify/app1/main-branch-0a1b2c3d4e/REPLICATE_WEBHOOK_SECRET, /amplify/shared/other/REPLICATE_WEBHOOK_SECRET)")
            && text.contains("ampx sandbox secret set")
            && !text.contains("GEMINI_API_KEY (")
            && !text.contains(fakes::DEFAULT_API_KEY),
        "{text}"
    );

    // The parameter store out of reach: a clear error too.
    drop(moto);
    let unreachable = started(&env(all))
        .await
        .err()
        .expect("no parameter store, no start");
    assert!(
        unreachable
            .to_string()
            .contains("reading the provider secrets from SSM Parameter Store"),
        "{unreachable}"
    );
}

#[tokio::test]
async fn a_scheduled_event_purges_the_trash_on_the_aws_backend() {
    use core_sync::model::{BlobRef, NewVersion};
    let mut f = function_on(true).await;
    f.app = LambdaApp::new(f.app.state().clone().with_trash_retention(Duration::ZERO));
    let user = FakeUser::default().sub;
    let state = f.app.state().clone();
    // Two assets share an image; the one in the trash has one of its own.
    let (own, shared) = (support::png(20, 10), support::png(30, 10));
    let mut docs = Vec::new();
    for (title, images) in [("Doomed", vec![&own, &shared]), ("Kept", vec![&shared])] {
        let mut doc = AssetDoc::create(title, 1_000);
        for bytes in images {
            let sha = core_sync::blob::sha256_hex(bytes);
            state.blobs.put(&user, &sha, bytes).await.unwrap();
            doc.add_version(
                NewVersion {
                    blob: BlobRef {
                        sha256: sha,
                        mime: "image/png".into(),
                        width: 20,
                        height: 10,
                        bytes: bytes.len() as u64,
                    },
                    thumbnail: None,
                    parent_version_id: None,
                    created_by_message_id: None,
                },
                2_000,
            )
            .unwrap();
        }
        docs.push((DocId::random(), doc));
    }
    docs[0].1.delete("laptop", 3_000).unwrap();
    let push = push_of(&mut docs);
    let pushed = event(&f, "sync-push.json", &[("__SYNC_REQUEST__", &push)]).await;
    assert_eq!(pushed.status, 200);

    // The rule fires: the function purges and says what it removed.
    let scheduled = fixture_in("eventbridge", "scheduled-purge.json", &[]);
    let out = f
        .app
        .handle(LambdaEvent::new(scheduled.clone(), Context::default()))
        .await
        .unwrap();
    assert_eq!(out["purge"]["assets"], 1, "{out}");
    assert_eq!(out["purge"]["blobs"], 1, "{out}");
    assert_eq!(out["purge"]["blobBytes"], own.len() as u64, "{out}");
    let (doomed, kept) = (&docs[0].0.clone(), &docs[1].0.clone());
    assert_eq!(state.store.head(&user, doomed).await.unwrap(), None);
    assert!(state.store.head(&user, kept).await.unwrap().is_some());
    let sha = |b: &[u8]| core_sync::blob::sha256_hex(b);
    assert!(!state.blobs.exists(&user, &sha(&own)).await.unwrap());
    assert!(state.blobs.exists(&user, &sha(&shared)).await.unwrap());
    let (aws, _) = f.aws.as_ref().unwrap();
    assert!(aws.store().purge_leftovers().await.unwrap().is_empty());

    // A device that edited the purged asset offline is told when it
    // pushes; the other asset is as it was.
    docs[0].1.rename("Edited offline", 4_000).unwrap();
    let push = push_of(&mut docs);
    let mut repush = fixture(
        "sync-push.json",
        &[("__ACCESS_TOKEN__", &f.token), ("__SYNC_REQUEST__", &push)],
    );
    repush["headers"]
        .as_object_mut()
        .unwrap()
        .remove("accept-encoding");
    let repushed = call(&f, repush).await;
    assert_eq!(repushed.status, 200);
    let r: SyncResponse = serde_json::from_value(repushed.json()).unwrap();
    let status = |id: &DocId| r.pushed.iter().find(|p| &p.doc_id == id).map(|p| p.status);
    assert_eq!(status(doomed), Some(PushStatus::Purged));
    assert_eq!(status(kept), Some(PushStatus::Accepted));
    // A second firing (Lambda's retry of a failed one) finds nothing left.
    let twice = f
        .app
        .handle(LambdaEvent::new(scheduled, Context::default()))
        .await
        .unwrap();
    assert_eq!(twice["purge"]["assets"], 0, "{twice}");
    assert_eq!(twice["purge"]["blobs"], 0, "{twice}");
}
