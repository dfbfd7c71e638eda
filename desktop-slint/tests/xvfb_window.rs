//! The real `atelier` binary in a real X window (Xvfb, winit with the
//! software renderer), on its default embedded server with the fake
//! providers, driven with xdotool through a whole flow: create an asset
//! from a prompt, edit it, roll back, send another edit and `kill -9` the app
//! (the request survives the restart), remove the background, rename and
//! delete it and open the Trash, quit. What the app stored is checked
//! through the store; screenshots of each step are saved to
//! `target/tmp/xvfb-window/` (look at them).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atelier_fixtures::fakes::{self, FakeConfig};
#[path = "support/xvfb.rs"]
mod xvfb;
use core_sync::model::MessageStatus;
use core_sync::store::{Store, StoreOptions};
use xvfb::{LogFollower, Xvfb, field};

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

/// A running `atelier` and its window.
struct App {
    child: std::process::Child,
    window: String,
    log: LogFollower,
}

impl App {
    /// Starts `atelier` on the default embedded server with the fake
    /// providers, and waits until its window is mapped and shows the asset
    /// list.
    fn launch(x: &Xvfb, data: &std::path::Path, fakes: &fakes::RunningFakes, log: &str) -> App {
        let log_path = data.join(log);
        let log_file = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_atelier"))
            .arg("--data")
            .arg(data.join("store"))
            .arg("--json-logs")
            .env("DISPLAY", &x.display)
            .env("SLINT_BACKEND", "winit-software")
            .env("GEMINI_API_KEY", fakes::DEFAULT_API_KEY)
            .env("ATELIER_GEMINI_BASE_URL", fakes.base_url())
            .env("REPLICATE_API_TOKEN", fakes::DEFAULT_REPLICATE_TOKEN)
            .env("ATELIER_REPLICATE_BASE_URL", fakes.base_url())
            .env_remove("ATELIER_SERVER")
            .env_remove("ATELIER_DATA")
            .env("RUST_LOG", "info,atelier::ui=debug")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut app = App {
            child,
            window: String::new(),
            log: LogFollower::new(log_path),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        // Mapped (viewable) windows only: a window found before it is
        // mapped cannot take the focus.
        app.window = loop {
            let out = Command::new("xdotool")
                .args(["search", "--onlyvisible", "--name", "^Atelier$"])
                .env("DISPLAY", &x.display)
                .output()
                .unwrap();
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            assert!(ids.len() <= 1, "more than one Atelier window: {ids:?}");
            if let Some(id) = ids.into_iter().next() {
                break id;
            }
            assert!(app.alive(), "the app exited at start:\n{}", app.log_text());
            assert!(Instant::now() < deadline, "no window within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        app.wait_state("the asset list", |_| true);
        app
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// A point in the app's log: `wait_shown` after it sees later lines only.
    fn mark(&mut self) -> usize {
        self.log.mark()
    }

    /// Waits until what the window shows (its latest `ui state` line, now
    /// or later) satisfies `want`.
    fn wait_state(&mut self, what: &str, want: impl Fn(&serde_json::Value) -> bool) {
        let is_state = |l: &serde_json::Value| l["fields"]["message"] == "ui state";
        let since = self.log.last(is_state).unwrap_or(0);
        let child = &mut self.child;
        self.log.wait(
            what,
            since,
            || child.try_wait().unwrap().is_none(),
            |l| is_state(l) && want(l),
        );
    }

    /// Waits for the UI to say, after `since`, that it shows `what` (a
    /// sheet, the composer with the keyboard).
    fn wait_shown(&mut self, since: usize, what: &str) {
        let child = &mut self.child;
        self.log.wait(
            what,
            since,
            || child.try_wait().unwrap().is_none(),
            |l| field(l, "shown") == what,
        );
    }

    /// Waits until every row on screen has its image.
    fn wait_images(&mut self) {
        self.wait_state("every image drawn", |l| field(l, "images_waiting") == 0);
    }

    /// Presses `keys` in the app's window, as a user does: the window takes
    /// the focus and the keys go to the focused window. (`key --window`
    /// would send each event to our window id, and a key that closes the
    /// window, Ctrl+Q, had its release sent to a window already gone: in a
    /// fast release build, a BadWindow error.)
    fn key(&self, x: &Xvfb, keys: &str) {
        x.xdotool(&["windowfocus", "--sync", &self.window]);
        x.xdotool(&["key", keys]);
    }

    fn click(&self, x: &Xvfb, at: (u32, u32)) {
        let (px, py) = (at.0.to_string(), at.1.to_string());
        x.xdotool(&[
            "mousemove",
            "--window",
            &self.window,
            &px,
            &py,
            "click",
            "1",
        ]);
    }

    /// SIGKILL, and reap it.
    fn kill_9(mut self) {
        let status = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = self.child.wait();
    }
}

/// `version`'s row in the inspector is active, and its timeline settled.
fn active_is(label: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |l| field(l, "active_version") == label
}

#[test]
fn a_real_window_through_a_whole_flow() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fakes = rt.block_on(fakes::spawn(FakeConfig::default())).unwrap();
    let x = Xvfb::start();
    let data = tempfile::tempdir().unwrap();
    let mut app = App::launch(&x, data.path(), &fakes, "app.log");
    x.xdotool(&["windowfocus", "--sync", &app.window]);
    x.screenshot("01-start");

    let store = rt
        .block_on(Store::open(
            data.path().join("store"),
            StoreOptions::default(),
        ))
        .unwrap();

    // Ctrl+N, a prompt, Enter: a new asset generated by the (fake) Gemini.
    let before = app.mark();
    app.key(&x, "ctrl+n");
    app.wait_shown(before, "new-asset sheet");
    x.screenshot("02-new-sheet");
    x.xdotool(&["type", "--delay", "20", "a lighthouse at dusk"]);
    let before = app.mark();
    x.xdotool(&["key", "Return"]);
    let (id, versions) = rt.block_on(wait_store(
        &store,
        "the generated image",
        Finished { versions: 1 },
    ));
    app.wait_state("the generated version, drawn", |l| {
        field(l, "versions") == 1 && field(l, "last_status") == "succeeded"
    });
    app.wait_images();
    x.screenshot("03-generated");

    // The composer has the focus: type an edit, Enter.
    app.wait_shown(before, "composer");
    x.xdotool(&["type", "--delay", "20", "make it warmer"]);
    x.screenshot("04-typed");
    x.xdotool(&["key", "Return"]);
    let (_, versions2) = rt.block_on(wait_store(&store, "the edit", Finished { versions: 2 }));
    assert_eq!(versions2[0], versions[0]);
    app.wait_state("the edit, drawn", |l| {
        field(l, "versions") == 2 && field(l, "last_status") == "succeeded"
    });
    app.wait_images();
    x.screenshot("05-edited");

    // Roll back to v1 with the keyboard (Ctrl+R: the previous version).
    app.key(&x, "ctrl+r");
    rt.block_on(wait_store(
        &store,
        "the rollback",
        Active(id.clone(), versions[0].clone()),
    ));
    app.wait_state("v1 active on screen", active_is("v1"));
    app.wait_images();
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
    app.kill_9();
    let mut app = App::launch(&x, data.path(), &fakes, "app2.log");
    // Whether or not it reached the server before the kill, the request
    // runs: three versions.
    rt.block_on(wait_store(
        &store,
        "the request's result",
        Finished { versions: 3 },
    ));
    // The restarted app shows the asset as it is: open it from the list.
    x.xdotool(&["windowfocus", "--sync", &app.window]);
    app.click(&x, (140, 155));
    app.wait_state("the asset with its three versions", |l| {
        field(l, "versions") == 3 && field(l, "active_version") == "v3"
    });
    app.wait_images();
    x.screenshot("07-after-kill-9");

    // The composer's tool box, by keyboard: click to focus it (its list
    // opens), Escape closes the list, Down twice picks "Remove background";
    // then Send. The generated 296 KB image goes to Replicate's Files API.
    app.click(&x, (397, 741));
    x.screenshot("08-tool-box");
    app.key(&x, "Escape");
    app.key(&x, "Down");
    app.key(&x, "Down");
    x.screenshot("09-remove-background");
    app.click(&x, (1008, 781));
    rt.block_on(wait_store(
        &store,
        "the background removed",
        Finished { versions: 4 },
    ));
    app.wait_state("the background removed, drawn", |l| {
        field(l, "versions") == 4 && field(l, "last_status") == "succeeded"
    });
    app.wait_images();
    x.screenshot("10-background-removed");
    let asset = rt.block_on(store.load(&id)).unwrap();
    let last = asset
        .doc
        .messages()
        .unwrap()
        .into_iter()
        .rev()
        .find(|m| m.tool.is_some());
    assert_eq!(
        last.and_then(|m| m.tool).as_deref(),
        Some("remove-background")
    );
    // Compare the active version with the one before (Ctrl+Shift+D).
    app.key(&x, "ctrl+shift+d");
    app.wait_state("the comparison, drawn", |l| {
        field(l, "compare") == true && field(l, "images_waiting") == 0
    });
    x.screenshot("11-compare");
    app.key(&x, "Escape");
    app.wait_state("the comparison closed", |l| field(l, "compare") == false);

    // The command palette (Ctrl+K): "dash" finds the cost dashboard.
    let before = app.mark();
    app.key(&x, "ctrl+k");
    app.wait_shown(before, "palette");
    x.xdotool(&["type", "--delay", "20", "dash"]);
    app.wait_state("the palette's results", |l| {
        field(l, "palette_rows").as_u64().is_some_and(|n| n >= 1)
    });
    x.screenshot("12-palette");
    x.xdotool(&["key", "Return"]);
    // Four provider calls: the generation, two edits, the background removal.
    app.wait_state("the cost dashboard", |l| {
        field(l, "screen") == "dashboard" && field(l, "dashboard_events") == 4
    });
    x.screenshot("13-dashboard");

    // Back to the asset (Ctrl+D again): rename it in the header (F2, type,
    // Enter), move it to the Trash (Ctrl+Delete: the Undo bar shows), and
    // open the Trash (Ctrl+Shift+T).
    app.key(&x, "ctrl+d");
    app.wait_state("the asset again", |l| field(l, "screen") == "asset");
    let before = app.mark();
    app.key(&x, "F2");
    app.wait_shown(before, "renaming in the header");
    x.xdotool(&["type", "--delay", "20", "Lighthouse, final"]);
    x.xdotool(&["key", "Return"]);
    app.wait_state("the new title", |l| {
        field(l, "title") == "Lighthouse, final"
    });
    x.screenshot("14-renamed");
    app.key(&x, "ctrl+Delete");
    app.wait_state("the Undo bar", |l| {
        field(l, "assets") == 0 && field(l, "undo").as_str().is_some_and(|u| !u.is_empty())
    });
    x.screenshot("15-deleted-undo");
    let before = app.mark();
    app.key(&x, "ctrl+shift+t");
    app.wait_state("the trash", |l| {
        field(l, "trash_open") == true && field(l, "trash_rows") == 1
    });
    app.wait_shown(before, "trash");
    x.screenshot("16-trash");
    app.key(&x, "Escape");
    app.wait_state("the trash closed", |l| field(l, "trash_open") == false);

    // A second `atelier` on the same data directory brings this window
    // forward and exits instead of running beside it.
    let before = app.mark();
    let second = Command::new(env!("CARGO_BIN_EXE_atelier"))
        .arg("--data")
        .arg(data.path().join("store"))
        .env("DISPLAY", &x.display)
        .env("SLINT_BACKEND", "winit-software")
        .env_remove("ATELIER_SERVER")
        .env_remove("ATELIER_DATA")
        .output()
        .unwrap();
    assert!(second.status.success(), "{second:?}");
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains("already running") && said.contains("brought forward"),
        "{said}"
    );
    app.wait_shown(before, "raised");

    // Ctrl+Q quits cleanly.
    app.key(&x, "ctrl+q");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = app.child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = app.child.kill();
            panic!("the app did not quit on Ctrl+Q");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    for log in ["app.log", "app2.log"] {
        let text = std::fs::read_to_string(data.path().join(log)).unwrap();
        assert!(!text.contains("\"ERROR\""), "errors in {log}:\n{text}");
    }
    rt.block_on(store.close());
    drop(fakes);
}
