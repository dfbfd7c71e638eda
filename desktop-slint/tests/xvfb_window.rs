//! The real `atelier` binary in a real X window (Xvfb, winit with the
//! software renderer), on its default embedded server with the fake
//! providers, driven with xdotool through a whole flow: create an asset
//! from a prompt, edit it, roll back, send another edit and `kill -9` the app
//! (the request survives the restart), quit. What the app stored is checked
//! through the store; screenshots of each step are saved to
//! `target/tmp/xvfb-window/` (look at them).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atelier_fixtures::fakes::{self, FakeConfig};
#[path = "support/xvfb.rs"]
mod xvfb;
use core_sync::model::MessageStatus;
use core_sync::store::{Store, StoreOptions};
use xvfb::Xvfb;

/// Polls the app's store (read-only use, beside the running app).
async fn wait_store<T>(store: &Store, what: &str, f: impl AsyncCheck<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f.check(store).await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

trait AsyncCheck<T> {
    async fn check(&self, store: &Store) -> Option<T>;
}

/// The only asset has `versions` versions and its newest tool request
/// succeeded; returns its id and version ids.
struct Finished {
    versions: usize,
}

impl AsyncCheck<(core_sync::ids::DocId, Vec<String>)> for Finished {
    async fn check(&self, store: &Store) -> Option<(core_sync::ids::DocId, Vec<String>)> {
        let list = store.list().await.ok()?;
        let id = list.first()?.id.clone();
        let asset = store.load(&id).await.ok()?;
        let versions = asset.doc.versions().ok()?;
        let done = asset
            .doc
            .messages()
            .ok()?
            .iter()
            .rev()
            .find(|m| m.tool.is_some())
            .is_some_and(|m| m.status == Some(MessageStatus::Succeeded));
        (versions.len() == self.versions && done)
            .then(|| (id, versions.into_iter().map(|v| v.id).collect()))
    }
}

/// The text of the asset's last message (here, the last prompt sent).
struct LastMessage(core_sync::ids::DocId, &'static str);

impl AsyncCheck<()> for LastMessage {
    async fn check(&self, store: &Store) -> Option<()> {
        let asset = store.load(&self.0).await.ok()?;
        let messages = asset.doc.messages().ok()?;
        (messages.last()?.text.as_deref() == Some(self.1)).then_some(())
    }
}

struct Active(core_sync::ids::DocId, String);

impl AsyncCheck<()> for Active {
    async fn check(&self, store: &Store) -> Option<()> {
        let mut asset = store.load(&self.0).await.ok()?;
        (asset.summary().ok()?.active_version_id.as_deref() == Some(self.1.as_str())).then_some(())
    }
}

/// Starts `atelier` on the default embedded server with the fake providers;
/// returns the process and its window id once the window is up.
fn launch(
    x: &Xvfb,
    data: &std::path::Path,
    fakes: &fakes::RunningFakes,
    log: &str,
) -> (std::process::Child, String) {
    let log_path = data.join(log);
    let log = std::fs::File::create(&log_path).unwrap();
    let mut app = Command::new(env!("CARGO_BIN_EXE_atelier"))
        .arg("--data")
        .arg(data.join("store"))
        .env("DISPLAY", &x.display)
        .env("SLINT_BACKEND", "winit-software")
        .env("GEMINI_API_KEY", fakes::DEFAULT_API_KEY)
        .env("ATELIER_GEMINI_BASE_URL", fakes.base_url())
        .env("REPLICATE_API_TOKEN", fakes::DEFAULT_REPLICATE_TOKEN)
        .env("ATELIER_REPLICATE_BASE_URL", fakes.base_url())
        .env_remove("ATELIER_SERVER")
        .env_remove("ATELIER_DATA")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("xdotool")
            .args(["search", "--name", "^Atelier$"])
            .env("DISPLAY", &x.display)
            .output()
            .unwrap();
        let id = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .map(str::to_owned);
        if let Some(id) = id.filter(|s| !s.is_empty()) {
            return (app, id);
        }
        if let Some(status) = app.try_wait().unwrap() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the app exited at start ({status}):\n{text}");
        }
        assert!(Instant::now() < deadline, "no window within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_real_window_through_a_whole_flow() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fakes = rt.block_on(fakes::spawn(FakeConfig::default())).unwrap();
    let x = Xvfb::start();
    let data = tempfile::tempdir().unwrap();
    let (mut app, window) = launch(&x, data.path(), &fakes, "app.log");
    std::thread::sleep(Duration::from_secs(2));
    x.xdotool(&["windowfocus", "--sync", &window]);
    x.screenshot("01-start");

    let store = rt
        .block_on(Store::open(
            data.path().join("store"),
            StoreOptions::default(),
        ))
        .unwrap();

    // Ctrl+N, a prompt, Enter: a new asset generated by the (fake) Gemini.
    x.xdotool(&["key", "--window", &window, "ctrl+n"]);
    std::thread::sleep(Duration::from_millis(700));
    x.screenshot("02-new-sheet");
    x.xdotool(&["type", "--delay", "20", "a lighthouse at dusk"]);
    x.xdotool(&["key", "Return"]);
    let (id, versions) = rt.block_on(wait_store(
        &store,
        "the generated image",
        Finished { versions: 1 },
    ));
    std::thread::sleep(Duration::from_secs(1));
    x.screenshot("03-generated");

    // The composer has the focus: type an edit, Enter.
    x.xdotool(&["type", "--delay", "20", "make it warmer"]);
    std::thread::sleep(Duration::from_millis(500));
    x.screenshot("04-typed");
    x.xdotool(&["key", "Return"]);
    let (_, versions2) = rt.block_on(wait_store(&store, "the edit", Finished { versions: 2 }));
    assert_eq!(versions2[0], versions[0]);
    std::thread::sleep(Duration::from_secs(1));
    x.screenshot("05-edited");

    // Click "Roll back" on v1 (the second row of the inspector's versions).
    x.xdotool(&[
        "mousemove",
        "--window",
        &window,
        "1304",
        "463",
        "click",
        "1",
    ]);
    rt.block_on(wait_store(
        &store,
        "the rollback",
        Active(id.clone(), versions[0].clone()),
    ));
    std::thread::sleep(Duration::from_secs(1));
    x.screenshot("06-rolled-back");

    // kill -9 right after a request was saved: nothing acknowledged is lost,
    // and the embedded server resumes the job after the restart.
    x.xdotool(&["type", "--delay", "20", "brighter sky, please"]);
    x.xdotool(&["key", "Return"]);
    rt.block_on(wait_store(
        &store,
        "the request, saved",
        LastMessage(id.clone(), "brighter sky, please"),
    ));
    let status = Command::new("kill")
        .args(["-9", &app.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = app.wait();
    let (mut app, window) = launch(&x, data.path(), &fakes, "app2.log");
    // Whether or not it reached the server before the kill, the request
    // runs: three versions.
    rt.block_on(wait_store(
        &store,
        "the request's result",
        Finished { versions: 3 },
    ));
    // The restarted app shows the asset as it is: open it from the list.
    x.xdotool(&["windowfocus", "--sync", &window]);
    x.xdotool(&["mousemove", "--window", &window, "140", "155", "click", "1"]);
    std::thread::sleep(Duration::from_secs(2));
    x.screenshot("07-after-kill-9");

    // Ctrl+Q quits cleanly.
    x.xdotool(&["key", "--window", &window, "ctrl+q"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = app.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = app.kill();
            panic!("the app did not quit on Ctrl+Q");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status}");
    for log in ["app.log", "app2.log"] {
        let text = std::fs::read_to_string(data.path().join(log)).unwrap();
        assert!(!text.contains("ERROR"), "errors in {log}:\n{text}");
    }
    rt.block_on(store.close());
    drop(fakes);
}
