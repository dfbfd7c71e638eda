//! Process helpers for the end-to-end tests (`tests/sync_e2e.rs`,
//! `tests/faults.rs`): finding the workspace binaries, running them with a
//! deadline, a cloud server process that can be stopped gracefully, killed
//! and restarted on the same port and data directory, and a small real PNG.
//!
//! The binaries of other packages (`atelier-cloud`, `atelier-sync`,
//! `atelier-local`) are not exposed to this package through
//! `CARGO_BIN_EXE_*`; [`bin`] finds them in the target directory next to
//! the test executable and fails with a clear message when they were not
//! built (`cargo build --workspace --bins`).
//!
//! Everything listens on and talks to 127.0.0.1 only; ports come from
//! binding port 0 ([`free_port`]).

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long any one short-lived command may run before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to start answering `/healthz`.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the server is killed.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The path of a workspace binary, found in the target directory that holds
/// the running test executable (`target/debug/deps/<test>` ->
/// `target/debug/<name>`). Panics if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test executable");
    let mut candidates = Vec::new();
    // target/debug/deps/<test>: the binaries sit one level up. Also accept
    // the executable's own directory (a test binary copied elsewhere).
    if let Some(dir) = exe.parent() {
        if let Some(up) = dir.parent() {
            candidates.push(up.join(name));
        }
        candidates.push(dir.join(name));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "binary `{name}` not found (looked at {candidates:?}); \
                 run `cargo build --workspace --bins` first"
            )
        })
}

/// A port on 127.0.0.1 that was free a moment ago (bind port 0, read it,
/// release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Runs `cmd` to completion with piped output, killing it and failing the
/// test if it runs longer than `timeout`.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let stdout = read_in_background(child.stdout.take().expect("piped stdout"));
    let stderr = read_in_background(child.stderr.take().expect("piped stderr"));
    let status = wait_within(&mut child, timeout);
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{what} did not finish within {timeout:?}; stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Runs `cmd` (with [`COMMAND_TIMEOUT`]) and returns its stdout; fails the
/// test, showing stderr, if it exits non-zero.
pub fn run_ok(cmd: &mut Command) -> String {
    let what = describe(cmd);
    let out = output_within(cmd, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "{what} failed ({}); stdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{what} printed non-UTF-8: {e}"))
}

/// Waits for `child` up to `timeout`; on timeout kills it and returns `None`.
pub fn wait_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends SIGINT (what Ctrl-C sends) to a child process.
pub fn interrupt(child: &Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
    let rc = unsafe { libc::kill(pid, libc::SIGINT) };
    assert_eq!(
        rc,
        0,
        "SIGINT to {pid}: {}",
        std::io::Error::last_os_error()
    );
}

/// Polls `check` every 50 ms until it returns `Some`, or fails the test
/// after `timeout` naming `what`.
pub fn poll_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn read_in_background(mut from: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf);
        buf
    })
}

fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(OsStr::new("?"))
        .to_string_lossy()
        .into_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    format!("`{program} {}`", args.join(" "))
}

// ---------------------------------------------------------------- server

/// An `atelier-cloud serve` process on 127.0.0.1, logging (stdout and
/// stderr) to `DATA.log`. Killed (SIGKILL) on drop.
pub struct Server {
    child: Option<Child>,
    port: u16,
    data: PathBuf,
    /// Extra `serve` arguments (e.g. `--backend aws …`), kept for restarts.
    args: Vec<String>,
    /// Extra environment (provider keys, `RUST_LOG`), kept for restarts.
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Server {
    /// Starts a server on a free port and waits until it answers.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// [`Server::start`] with extra `serve` arguments.
    pub fn start_with(data: &Path, args: &[String]) -> Server {
        Server::start_with_env(data, args, &[])
    }

    /// [`Server::start_with`] with extra environment variables (they win
    /// over the default `RUST_LOG=warn`).
    pub fn start_with_env(data: &Path, args: &[String], env: &[(String, String)]) -> Server {
        // Another process may grab the port between `free_port` and the
        // server's bind: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            match Server::try_start_on(data, free_port(), args, env) {
                Ok(server) => return server,
                Err(why) => last = why,
            }
        }
        panic!("atelier-cloud did not start: {last}");
    }

    /// Starts a server on `port` (a restart: same port, same data) and waits
    /// until it answers.
    pub fn start_on(data: &Path, port: u16) -> Server {
        Server::try_start_on(data, port, &[], &[])
            .unwrap_or_else(|why| panic!("atelier-cloud did not start on port {port}: {why}"))
    }

    /// Starts a server on `port` with extra `serve` arguments and
    /// environment (see [`Server::start_with_env`]): for a server that must
    /// know its own address (`--public-url`).
    pub fn start_on_with_env(
        data: &Path,
        port: u16,
        args: &[String],
        env: &[(String, String)],
    ) -> Server {
        Server::try_start_on(data, port, args, env)
            .unwrap_or_else(|why| panic!("atelier-cloud did not start on port {port}: {why}"))
    }

    fn try_start_on(
        data: &Path,
        port: u16,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<Server, String> {
        let log = data.with_extension("log");
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let out_file = log_file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(bin("atelier-cloud"))
            .arg("serve")
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(data)
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("spawn atelier-cloud: {e}"))?;
        let mut server = Server {
            child: Some(child),
            port,
            data: data.to_owned(),
            args: args.to_vec(),
            env: env.to_vec(),
            log,
        };
        let deadline = Instant::now() + SERVER_READY_TIMEOUT;
        loop {
            if server.healthy() {
                return Ok(server);
            }
            let child = server.child.as_mut().expect("just spawned");
            if let Some(status) = child.try_wait().expect("poll atelier-cloud") {
                server.child = None;
                return Err(format!("it exited ({status}); log:\n{}", server.log_tail()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no answer within {SERVER_READY_TIMEOUT:?}; log:\n{}",
                    server.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `GET /healthz` answers 200.
    fn healthy(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        answer.starts_with(b"HTTP/1.1 200")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn data(&self) -> &Path {
        &self.data
    }

    /// Stops the server gracefully (SIGINT) and waits for it to exit;
    /// fails the test if it does not exit cleanly in time.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        interrupt(&child);
        match wait_within(&mut child, SERVER_STOP_TIMEOUT) {
            Some(status) => assert!(
                status.success(),
                "atelier-cloud exited with {status} on SIGINT; log:\n{}",
                self.log_tail()
            ),
            None => panic!(
                "atelier-cloud did not stop within {SERVER_STOP_TIMEOUT:?} of SIGINT; log:\n{}",
                self.log_tail()
            ),
        }
    }

    /// SIGKILLs the server and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        let again = Server::try_start_on(&self.data, self.port, &self.args, &self.env)
            .unwrap_or_else(|why| {
                panic!("atelier-cloud did not restart on port {}: {why}", self.port)
            });
        *self = again;
    }

    /// The server's resident set size now and its peak, in KiB (Linux
    /// `/proc/{pid}/status`: `VmRSS`, `VmHWM`).
    pub fn rss_kib(&self) -> (u64, u64) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Everything the server wrote (stdout and stderr, over all restarts).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the server's log (stdout and stderr over all
    /// restarts).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Mints a token for `user` with the server's key and writes it to
    /// `file`.
    pub fn token_file(&self, user: &str, file: &Path) -> String {
        let token = dev_token(&self.data, user);
        fs::write(file, &token).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        token
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if thread::panicking() && self.child.is_some() {
            eprintln!("atelier-cloud log (tail):\n{}", self.log_tail());
        }
        self.kill();
        // A restarted server appends to the same log: leave a marker.
        if let Ok(mut f) = OpenOptions::new().append(true).open(&self.log) {
            let _ = writeln!(f, "-- server process ended --");
        }
    }
}

/// A bearer token for `user`, signed by the key in the server's data
/// directory (created if missing).
pub fn dev_token(data: &Path, user: &str) -> String {
    run_ok(
        Command::new(bin("atelier-cloud"))
            .arg("dev-token")
            .arg("--data")
            .arg(data)
            .args(["--user", user]),
    )
    .trim()
    .to_owned()
}

// --------------------------------------------------------------- replica

/// One device's replica directory plus how to reach the server, with
/// shorthands for `atelier-local` and `atelier-sync` against it.
pub struct Replica {
    pub data: PathBuf,
    pub server: String,
    pub token_file: PathBuf,
}

impl Replica {
    pub fn new(data: PathBuf, server: String, token_file: PathBuf) -> Self {
        Replica {
            data,
            server,
            token_file,
        }
    }

    /// `atelier-local --data DIR <args>`, not yet run.
    pub fn local_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(bin("atelier-local"));
        cmd.arg("--data").arg(&self.data).args(args);
        cmd.env_remove("ATELIER_DATA");
        cmd
    }

    /// Runs `atelier-local` and returns its stdout (fails the test on error).
    pub fn local<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_ok(&mut self.local_cmd(args))
    }

    /// `atelier-sync --server URL --token-file F --data DIR <args>`, not
    /// yet run.
    pub fn sync_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(bin("atelier-sync"));
        cmd.arg("--server")
            .arg(&self.server)
            .arg("--token-file")
            .arg(&self.token_file)
            .arg("--data")
            .arg(&self.data)
            .args(args);
        for var in ["ATELIER_SERVER", "ATELIER_TOKEN_FILE", "ATELIER_DATA"] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `atelier-sync` and returns its stdout (fails the test on error).
    pub fn sync<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_ok(&mut self.sync_cmd(args))
    }

    /// The asset ids `atelier-local list` prints, sorted.
    pub fn asset_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .local(["list"])
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    }

    /// The `pending push:` number `atelier-sync status` prints.
    pub fn pending_push(&self) -> u64 {
        status_field(&self.sync(["status"]), "pending push")
    }

    /// The `documents:` number `atelier-sync status` prints.
    pub fn document_count(&self) -> u64 {
        status_field(&self.sync(["status"]), "documents")
    }
}

/// A `name: number` line of `atelier-sync status`.
pub fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no `{name}:` line in status output:\n{status}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("`{name}:` is not a number ({e}) in:\n{status}"))
}

/// Creates `path`'s parent directories and writes `bytes` to it.
pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    File::create(path)
        .and_then(|mut f| f.write_all(bytes))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

// -------------------------------------------------------------------- png

/// A valid `width` x `height` 8-bit RGB PNG with a gradient: signature,
/// IHDR, one IDAT (zlib with stored deflate blocks), IEND, each chunk with
/// its CRC.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::with_capacity(((width * 3 + 1) * height) as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&[
                (x * 255 / width.max(1)) as u8,
                (y * 255 / height.max(1)) as u8,
                0x80,
            ]);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if raw.is_empty() {
        vec![&[]]
    } else {
        raw.chunks(65_535).collect()
    };
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB, deflate, no filter, no interlace

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", &ihdr[..]),
        (b"IDAT", &zlib[..]),
        (b"IEND", &[][..]),
    ] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_adler_match_known_values() {
        // The CRC-32 check value and the PNG IEND chunk's well-known CRC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn png_has_signature_and_end() {
        let p = png(4, 3);
        assert!(p.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(p.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
    }

    #[test]
    fn status_fields_parse() {
        let s = "documents: 3\npending push: 0\nfeed cursor: 12\n";
        assert_eq!(status_field(s, "documents"), 3);
        assert_eq!(status_field(s, "pending push"), 0);
        assert_eq!(status_field(s, "feed cursor"), 12);
    }
}
