//! A private X server for tests and benchmarks that open real windows, and
//! a follower of the app's JSON log, to wait on what the window shows.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    /// Starts `Xvfb` on the first free display from :90, 1440×900×24.
    ///
    /// `-noreset`: by default an X server *resets* when its last client
    /// disconnects, and a client connecting during the reset is refused
    /// ("Failed to open connection to X server"). A test's app is often
    /// the only client, and the short-lived `xdotool` calls that look for
    /// its window are clients too: each one leaving an empty server set off
    /// a reset, and an app starting at that moment could not open its
    /// window (seen with `-audit 4`: the app's connection dropped right
    /// after the last `xdotool` disconnected, about one run in three).
    pub fn start() -> Xvfb {
        for n in 90..200 {
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                || Path::new(&format!("/tmp/.X{n}-lock")).exists()
            {
                continue;
            }
            let mut child = Command::new("Xvfb")
                .arg(format!(":{n}"))
                .args([
                    "-screen",
                    "0",
                    "1440x900x24",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ])
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
            let _ = child.kill();
            let _ = child.wait();
            panic!("Xvfb :{n} did not start");
        }
        panic!("no free X display number");
    }

    pub fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .expect("xdotool is installed (.ci/run installs it)");
        assert!(out.status.success(), "xdotool {args:?}: {:?}", out);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Saves the whole screen to `target/tmp/xvfb-window/NAME.png` once
    /// it has settled (two grabs in a row differ in almost no pixel: the
    /// window drew what it was told, only a text cursor may blink), and
    /// checks it is not blank.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xvfb-window");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut previous = self.grab(&path);
        loop {
            let current = self.grab(&path);
            let changed = previous
                .pixels()
                .zip(current.pixels())
                .filter(|(a, b)| a != b)
                .count();
            previous = current;
            // A blinking text cursor is a few hundred pixels at most.
            if changed < 600 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: the screen never settled ({changed} pixels changed between grabs)"
            );
        }
        let distinct: std::collections::HashSet<[u8; 3]> =
            previous.pixels().step_by(97).map(|p| p.0).collect();
        assert!(distinct.len() > 20, "{name}: the screen is nearly blank");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// One grab of the whole screen, saved to `path`.
    fn grab(&self, path: &Path) -> image::RgbImage {
        let status = Command::new("import")
            .args(["-window", "root"])
            .arg(path)
            .env("DISPLAY", &self.display)
            .status()
            .expect("ImageMagick's import is installed (.ci/run installs it)");
        assert!(status.success());
        image::open(path).unwrap().to_rgb8()
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM: Xvfb then removes its socket and lock file (SIGKILL
        // would leave them, using up display numbers).
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a JSON log file (`atelier --json-logs`) as it grows.
pub struct LogFollower {
    path: PathBuf,
    read: usize,
    lines: Vec<serde_json::Value>,
}

impl LogFollower {
    pub fn new(path: impl Into<PathBuf>) -> LogFollower {
        LogFollower {
            path: path.into(),
            read: 0,
            lines: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Parses the whole lines written since the last call.
    fn refresh(&mut self) {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        // Only whole lines: the writer may be half-way through one.
        let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if end > self.read {
            let new = String::from_utf8_lossy(&bytes[self.read..end]).into_owned();
            self.lines.extend(
                new.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()),
            );
            self.read = end;
        }
    }

    /// A point in the log: waits `since` it see only later lines.
    pub fn mark(&mut self) -> usize {
        self.refresh();
        self.lines.len()
    }

    /// Waits (60 s at most) for a line at or after index `since` that
    /// matches `want`, and returns its index. `alive` says whether the
    /// writer still runs (a dead writer fails at once, with the log).
    pub fn wait(
        &mut self,
        what: &str,
        since: usize,
        mut alive: impl FnMut() -> bool,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut next = since;
        loop {
            self.refresh();
            if let Some(i) = (next..self.lines.len()).find(|&i| want(&self.lines[i])) {
                return i;
            }
            next = self.lines.len().max(since);
            let text = || std::fs::read_to_string(&self.path).unwrap_or_default();
            assert!(
                alive(),
                "the app exited while waiting for {what}:\n{}",
                text()
            );
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the log:\n{}",
                text()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The index of the last line matching `want`, if any.
    pub fn last(&mut self, want: impl Fn(&serde_json::Value) -> bool) -> Option<usize> {
        self.refresh();
        self.lines.iter().rposition(want)
    }
}

/// A field of a `tracing` JSON log line.
pub fn field<'a>(line: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &line["fields"][name]
}
