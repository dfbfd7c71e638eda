//! The function for real under a local Lambda runtime: `cargo lambda watch`
//! (cargo-lambda from PyPI, in the venv `tests/run.sh` fills) runs the
//! `atelier-lambda` binary against its Lambda Runtime API emulator, and the
//! test drives it through the emulator's invoke endpoint
//! (`POST /2015-03-31/functions/atelier-lambda/invocations`) with API
//! Gateway HTTP API events from `fixtures/events/apigw-v2/`: a health check,
//! an unauthenticated push (401), and a push that queues a provider job.
//! The job is launched the Lambda way: the function invokes itself
//! (`Invoke`, `InvocationType=Event`, signed by aws-sdk-lambda) at the
//! emulator, which runs the job event in a second instance of the function.
//!
//! cargo-lambda's emulator cannot take an asynchronous invoke: it runs an
//! `Event` invocation like a `RequestResponse` one and answers 200 with the
//! result once the job has run (AWS answers 202 at once). The launch path
//! is the same; the push that launched the job simply returns after it.
//!
//! `watch` builds the binary with `cargo run`, in the workspace's target
//! directory and profile, so this costs no second build (`cargo lambda
//! build` cross-compiles the whole workspace again; see README).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use atelier_fixtures::fakes::cognito::{self, CognitoConfig};
use atelier_fixtures::fakes::oauth::FakeUser;
use atelier_fixtures::fakes::{self, FakeConfig};
use cloud_lambda::storage::embedded::EmbeddedStore;
use cloud_lambda::storage::jobs::{JobStore as _, OpStatus};
use core_sync::sync::protocol::{Bytes, DocPush, SyncRequest};
use core_sync::{AssetDoc, DocId};
use serde_json::{Value, json};

/// cargo-lambda: `ATELIER_CARGO_LAMBDA`, else the project venv's.
fn cargo_lambda() -> PathBuf {
    if let Some(p) = std::env::var_os("ATELIER_CARGO_LAMBDA") {
        return p.into();
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let p = PathBuf::from(home).join(".cache/atelier/venv/bin/cargo-lambda");
    assert!(
        p.exists(),
        "{} is missing: tests/run.sh installs cargo-lambda from tests/requirements.txt",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cargo lambda watch` and the function instances it starts, as one
/// process group, stopped on drop.
struct Watch {
    child: tokio::process::Child,
    log: PathBuf,
    invoke: String,
}

impl Watch {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The whole group: cargo-lambda, `cargo run`, the function.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .status();
        }
    }
}

fn fixture(name: &str, token: &str) -> Value {
    let path = format!(
        "{}/../fixtures/events/apigw-v2/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("__ACCESS_TOKEN__", token);
    serde_json::from_str(&text).unwrap()
}

async fn invoke(http: &reqwest::Client, w: &Watch, event: &Value) -> reqwest::Result<Value> {
    http.post(&w.invoke)
        .json(event)
        .timeout(Duration::from_secs(120))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

#[tokio::test]
async fn the_built_function_answers_events_and_runs_a_self_invoked_job() {
    let pool = cognito::spawn(CognitoConfig::default()).await.unwrap();
    let providers = fakes::spawn(FakeConfig::default()).await.unwrap();
    let token = pool.sign(&pool.access_claims(cognito::DEFAULT_CLIENT_ID, &FakeUser::default()));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cloud");
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("ATELIER_BACKEND", "embedded".to_owned()),
        ("ATELIER_CLOUD_DATA", data.display().to_string()),
        ("ATELIER_COGNITO_ISSUER", pool.issuer()),
        ("ATELIER_COGNITO_JWKS_URL", pool.jwks_url()),
        (
            "ATELIER_COGNITO_CLIENT_IDS",
            cognito::DEFAULT_CLIENT_ID.to_owned(),
        ),
        ("ATELIER_GEMINI_BASE_URL", providers.base_url().to_owned()),
        ("GEMINI_API_KEY", fakes::DEFAULT_API_KEY.to_owned()),
        ("AWS_ENDPOINT_URL_LAMBDA", endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "eu-central-1".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let env_file = dir.path().join("function.env");
    std::fs::write(
        &env_file,
        env.iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let log = dir.path().join("watch.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = tokio::process::Command::new(cargo_lambda())
        .args([
            "lambda",
            "watch",
            "--bin",
            "atelier-lambda",
            "--ignore-changes",
            "--quiet",
        ])
        .args([
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "--concurrency",
            "2",
        ])
        .arg("--env-file")
        .arg(&env_file)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("cargo lambda watch starts");
    let w = Watch {
        child,
        log,
        invoke: format!("{endpoint}/2015-03-31/functions/atelier-lambda/invocations"),
    };
    let http = reqwest::Client::new();

    // Up once the function answers (it may still be compiling).
    let deadline = Instant::now() + Duration::from_secs(900);
    let health = loop {
        match invoke(&http, &w, &fixture("healthz.json", "")).await {
            Ok(v) => break v,
            Err(e) => {
                assert!(Instant::now() < deadline, "no answer: {e}\n{}", w.log());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert_eq!(health["statusCode"], 200, "{health}");
    assert_eq!(health["body"], "ok");

    let refused = invoke(&http, &w, &fixture("sync-unauthenticated.json", ""))
        .await
        .unwrap();
    assert_eq!(refused["statusCode"], 401, "{refused}");

    // A push queuing a provider job.
    let doc_id = DocId::random();
    let mut doc = AssetDoc::create("Generated on Lambda", 1_000);
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
    let req = SyncRequest {
        push: vec![DocPush {
            doc_id: doc_id.clone(),
            changes: Bytes(doc.changes_since(&[])),
        }],
        ..SyncRequest::default()
    };
    let mut push = fixture("sync-json.json", &token);
    let body = serde_json::to_string(&req).unwrap();
    push["headers"]["content-length"] = json!(body.len().to_string());
    push["body"] = json!(body);
    let pushed = invoke(&http, &w, &push).await.unwrap();
    assert_eq!(pushed["statusCode"], 200, "{pushed}\n{}", w.log());

    // The job ran in an invocation of its own, launched by the function.
    let store = EmbeddedStore::open(&data).await.unwrap();
    let user = FakeUser::default().sub;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let op = store.get_operation(&user, &msg).await.unwrap();
        if op.as_ref().is_some_and(|o| o.status == OpStatus::Succeeded) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job not done: {op:?}\n{}",
            w.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = w.log();
    assert!(log.contains("\"message\":\"job invoked\""), "{log}");
    assert!(
        log.contains("\"message\":\"running an invoked job\""),
        "{log}"
    );
    let calls = providers
        .requests()
        .iter()
        .filter(|r| r.path.contains(":generateContent"))
        .count();
    assert_eq!(calls, 1, "one provider call");
}
