//! The function for real under a local Lambda runtime: `cargo lambda watch`
//! (cargo-lambda from PyPI, in the venv `tests/run.sh` fills) runs the
//! `atelier-lambda` binary against its Lambda Runtime API emulator, and the
//! test drives it through the emulator's invoke endpoint
//! (`POST /2015-03-31/functions/atelier-lambda/invocations`) with API
//! Gateway HTTP API events from `fixtures/events/apigw-v2/`: a health check,
//! an unauthenticated push (401), and pushes that queue provider jobs (one
//! succeeds, one fails). A job is launched the Lambda way: the function
//! invokes itself (`Invoke`, `InvocationType=Event`, signed by
//! aws-sdk-lambda) at the emulator, which runs the job event in a second
//! instance of the function.
//!
//! As deployed, the Gemini key is not in the function's environment: each
//! instance reads it at start from SSM Parameter Store (moto's, a
//! SecureString as Amplify keeps its secrets). And what the function
//! counts reaches its stdout as CloudWatch EMF lines, one per invocation
//! that counted something, each checked against the format's rules and
//! summed: the jobs finished and failed and the spend the alarms read.
//!
//! cargo-lambda's emulator cannot take an asynchronous invoke: it runs an
//! `Event` invocation like a `RequestResponse` one and answers 200 with the
//! result once the job has run (AWS answers 202 at once). The launch path
//! is the same; the push that launched the job simply returns after it.
//!
//! `watch` builds the binary with `cargo run` in `cloud-lambda/`, in the
//! workspace's target directory and profile (`cargo lambda build` would
//! cross-compile the whole workspace again; see README). Its features
//! resolve for this package alone, so `tests/run.sh` builds it the same way
//! first (`cargo build -p cloud-lambda --bin atelier-lambda`) and the watch
//! finds it fresh.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use atelier_fixtures::fakes::cognito::{self, CognitoConfig};
use atelier_fixtures::fakes::oauth::FakeUser;
use atelier_fixtures::fakes::{self, FakeConfig};
use atelier_fixtures::moto::Moto;
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
/// process group, stopped on drop, and also when the test process dies
/// without dropping it (nextest kills a test that runs past its limit with
/// SIGKILL): a shell started first in the group waits on a pipe from the
/// test, and when the pipe closes it stops the group.
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
            // The whole group: cargo-lambda (which outlives a SIGTERM),
            // `cargo run`, the function instances, the pipe's watcher.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
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
    let moto = Moto::start();
    cloud_lambda::lambda::secrets::client(&cloud_lambda::lambda::secrets::SsmEndpoint {
        url: Some(moto.url()),
        region: "eu-central-1".into(),
        credentials: Some(("test".into(), "test".into())),
    })
    .await
    .put_parameter()
    .name(GEMINI_PARAMETER)
    .value(fakes::DEFAULT_API_KEY)
    .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
    .send()
    .await
    .unwrap();
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
        (
            "ATELIER_SECRET_PARAMETERS",
            json!({"GEMINI_API_KEY": [GEMINI_PARAMETER]}).to_string(),
        ),
        ("AWS_ENDPOINT_URL_SSM", moto.url()),
        ("ATELIER_METRICS_DEPLOYMENT", DEPLOYMENT.to_owned()),
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
            // Single quotes: taken literally (the JSON value has quotes).
            .map(|(k, v)| format!("{k}='{v}'\n"))
            .collect::<String>(),
    )
    .unwrap();
    let log = dir.path().join("watch.log");
    let out = std::fs::File::create(&log).unwrap();
    // The shell keeps the pipe's read end as fd 3 for a watcher in the
    // background (whose own stdin a shell sets to /dev/null), then becomes
    // cargo-lambda, so the child's pid is the group's and cargo-lambda's.
    let dead_man = r#"exec 3<&0
{ read -r _ <&3; kill -s KILL -- "-$$"; } &
exec "$@" 3<&-"#;
    let child = tokio::process::Command::new("sh")
        .args(["-c", dead_man, "sh"])
        .arg(cargo_lambda())
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
        .stdin(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("cargo lambda watch starts");
    let mut w = Watch {
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
                // cargo lambda gave up (a bad env file, a failed build).
                if let Ok(Some(status)) = w.child.try_wait() {
                    panic!("cargo lambda watch exited ({status}):\n{}", w.log());
                }
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

    // Pushes queuing provider jobs: one runs, one names a retired model.
    let store = EmbeddedStore::open(&data).await.unwrap();
    let user = FakeUser::default().sub;
    for (model, outcome) in [
        ("gemini-3.1-flash-image", OpStatus::Succeeded),
        ("gemini-2.5-flash-image", OpStatus::Failed),
    ] {
        let mut doc = AssetDoc::create("Generated on Lambda", 1_000);
        let msg = doc
            .append_message(
                core_sync::model::NewMessage::tool_request(
                    "generate",
                    "google",
                    model,
                    "a red shoe",
                ),
                2_000,
            )
            .unwrap();
        let req = SyncRequest {
            push: vec![DocPush {
                doc_id: DocId::random(),
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
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let op = store.get_operation(&user, &msg).await.unwrap();
            if op.as_ref().is_some_and(|o| o.status == outcome) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{model}: not {outcome:?}: {op:?}\n{}",
                w.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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
    assert_eq!(calls, 1, "one provider call, with the key from SSM");

    // What CloudWatch would make of the function's stdout: every EMF line
    // valid, in namespace Atelier, of this deployment; together, the two
    // jobs (one failed), the spend, the 401. Lines close invocations, so
    // there are no more of them than invocations (2 pushes, 2 jobs, 2 more).
    let docs = emf_documents(&w.log());
    assert!(!docs.is_empty() && docs.len() <= 6, "{docs:?}");
    let mut sums = std::collections::BTreeMap::<String, f64>::new();
    for doc in &docs {
        let metrics = check_emf(doc).unwrap_or_else(|e| panic!("{e}: {doc}"));
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Atelier");
        assert_eq!(doc["Deployment"], DEPLOYMENT);
        for (name, value) in metrics {
            *sums.entry(name).or_default() += value;
        }
    }
    assert_eq!(sums.get("JobsFinished"), Some(&2.0), "{sums:?}");
    assert_eq!(sums.get("JobFailures"), Some(&1.0), "{sums:?}");
    assert_eq!(sums.get("ClientErrors"), Some(&1.0), "{sums:?}");
    assert!(
        sums.get("SpendNanoUsd").is_some_and(|n| *n > 0.0),
        "{sums:?}"
    );
    drop(moto);
}

/// The deployment the function's metrics are of.
const DEPLOYMENT: &str = "atelier-local-test-";
/// Where the function finds its Gemini key.
const GEMINI_PARAMETER: &str = "/amplify/shared/localtest/GEMINI_API_KEY";

/// Every JSON object in `log` that carries an `_aws` member: the EMF lines.
fn emf_documents(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| line.find('{').map(|i| &line[i..]))
        .filter_map(|json| serde_json::from_str::<Value>(json.trim_end()).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect()
}

/// Checks `doc` against the rules of CloudWatch's Embedded Metric Format
/// specification and returns its metrics' names and values.
fn check_emf(doc: &Value) -> Result<Vec<(String, f64)>, String> {
    const UNITS: [&str; 27] = [
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];
    let aws = doc["_aws"].as_object().ok_or("_aws is not an object")?;
    aws.get("Timestamp")
        .and_then(Value::as_i64)
        .filter(|t| *t > 1_600_000_000_000)
        .ok_or("Timestamp is not milliseconds since the epoch")?;
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .filter(|d| !d.is_empty())
        .ok_or("no CloudWatchMetrics")?;
    let mut metrics = Vec::new();
    for d in directives {
        let namespace = d["Namespace"].as_str().unwrap_or_default();
        if namespace.is_empty() || namespace.len() > 255 {
            return Err(format!("namespace {namespace:?}"));
        }
        for set in d["Dimensions"].as_array().ok_or("no Dimensions")? {
            let keys = set.as_array().ok_or("a dimension set is not an array")?;
            if keys.len() > 30 {
                return Err("over 30 dimensions".into());
            }
            for key in keys {
                let key = key.as_str().ok_or("a dimension key is not a string")?;
                doc[key].as_str().ok_or(format!(
                    "dimension {key} is not a string member of the root"
                ))?;
            }
        }
        let list = d["Metrics"].as_array().ok_or("no Metrics")?;
        if list.is_empty() || list.len() > 100 {
            return Err(format!("{} metrics", list.len()));
        }
        for m in list {
            let name = m["Name"].as_str().ok_or("a metric without a name")?;
            if let Some(unit) = m.get("Unit")
                && !unit.as_str().is_some_and(|u| UNITS.contains(&u))
            {
                return Err(format!("{name}: unit {unit}"));
            }
            let value = doc[name]
                .as_f64()
                .ok_or(format!("{name} is not a number at the root"))?;
            metrics.push((name.to_owned(), value));
        }
    }
    Ok(metrics)
}
