//! The real `atelier` binary in a real X window (Xvfb, winit with the
//! software renderer), on its default embedded server with the fake
//! providers, driven with xdotool through a whole flow: create an asset
//! from a prompt, edit it, roll back, quit. What the app stored is checked
//! through the store; screenshots of each step are saved to
//! `target/tmp/xvfb-window/` (look at them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atelier_fixtures::fakes::{self, FakeConfig};
use core_sync::model::MessageStatus;
use core_sync::store::{Store, StoreOptions};

struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        for n in 90..200 {
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                || Path::new(&format!("/tmp/.X{n}-lock")).exists()
            {
                continue;
            }
            let child = Command::new("Xvfb")
                .arg(format!(":{n}"))
                .args(["-screen", "0", "1440x900x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Xvfb is installed (.ci/run installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    return Xvfb {
                        child,
                        display: format!(":{n}"),
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("Xvfb :{n} did not start");
        }
        panic!("no free X display number");
    }

    fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .expect("xdotool is installed (.ci/run installs it)");
        assert!(out.status.success(), "xdotool {args:?}: {:?}", out);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xvfb-window");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let status = Command::new("import")
            .args(["-window", "root"])
            .arg(&path)
            .env("DISPLAY", &self.display)
            .status()
            .expect("ImageMagick's import is installed (.ci/run installs it)");
        assert!(status.success());
        let img = image::open(&path).unwrap().to_rgb8();
        let distinct: std::collections::HashSet<[u8; 3]> =
            img.pixels().step_by(97).map(|p| p.0).collect();
        assert!(distinct.len() > 20, "{name}: the screen is nearly blank");
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

struct Active(core_sync::ids::DocId, String);

impl AsyncCheck<()> for Active {
    async fn check(&self, store: &Store) -> Option<()> {
        let mut asset = store.load(&self.0).await.ok()?;
        (asset.summary().ok()?.active_version_id.as_deref() == Some(self.1.as_str())).then_some(())
    }
}

#[test]
fn a_real_window_through_a_whole_flow() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fakes = rt.block_on(fakes::spawn(FakeConfig::default())).unwrap();
    let x = Xvfb::start();
    let data = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(data.path().join("app.log")).unwrap();
    let mut app = Command::new(env!("CARGO_BIN_EXE_atelier"))
        .arg("--data")
        .arg(data.path().join("store"))
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
    let window = loop {
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
            break id;
        }
        assert!(app.try_wait().unwrap().is_none(), "the app exited at start");
        assert!(Instant::now() < deadline, "no window within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    };
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
    let log = std::fs::read_to_string(data.path().join("app.log")).unwrap();
    assert!(!log.contains("ERROR"), "errors in the app's log:\n{log}");
    rt.block_on(store.close());
    drop(fakes);
}
