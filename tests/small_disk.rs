//! A small file system for the disk-full tests (`tests/disk_full.rs`): a
//! size-limited tmpfs that fills up for real (`ENOSPC` from the kernel,
//! `SQLITE_FULL` from SQLite), gets its space back, and turns read-only.
//!
//! No root needed. [`SmallDisk::enter`] runs the calling test again, alone,
//! in a user and mount namespace of its own (`unshare --user
//! --map-root-user --mount`, util-linux) where the tmpfs is mounted over a
//! fresh temporary directory; everything the test starts there (the
//! servers and CLIs it spawns) sees the same mount. In the outer process
//! `enter` returns `None` once that inner run passed (and fails the test
//! with its output if it did not); in the inner run it returns the disk.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::procs::wait_within;

/// Set in the inner run: the mount point.
const INSIDE: &str = "ATELIER_SMALL_DISK";
/// The file [`SmallDisk::fill`] writes.
const FILLER: &str = "filler";
/// How long the inner run of one test may take.
const TIMEOUT: Duration = Duration::from_secs(300);

/// A mounted tmpfs (only in the inner run).
pub struct SmallDisk {
    mount: PathBuf,
}

impl SmallDisk {
    /// Runs the test `name` (this test's function name) again inside a new
    /// namespace with a tmpfs of `size` (`mount`'s syntax: `8M`). Returns
    /// the disk in that inner run, `None` in the outer one.
    pub fn enter(name: &str, size: &str) -> Option<SmallDisk> {
        if let Some(mount) = std::env::var_os(INSIDE) {
            return Some(SmallDisk {
                mount: PathBuf::from(mount),
            });
        }
        let host = tempfile::tempdir().expect("a temporary directory");
        let exe = std::env::current_exe().expect("the test executable");
        let script = r#"mount -t tmpfs -o "size=$1,mode=0700" atelier-small-disk "$2" || exit 97
            exec "$3" --exact "$4" --nocapture --test-threads=1"#;
        let mut child = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", script, "small-disk", size])
            .arg(host.path())
            .arg(&exe)
            .arg(name)
            .env(INSIDE, host.path())
            .spawn()
            .expect("unshare (util-linux) runs");
        let status = wait_within(&mut child, TIMEOUT).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("{name} on a small disk took more than {TIMEOUT:?}")
        });
        assert_ne!(
            status.code(),
            Some(97),
            "could not mount a tmpfs in a user namespace (unprivileged user namespaces off?)"
        );
        assert!(
            status.success(),
            "{name} on a small disk failed (its output is above)"
        );
        None
    }

    /// The file system's root.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Fills every free byte with a filler file; returns how many it took.
    pub fn fill(&self) -> u64 {
        let path = self.mount.join(FILLER);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let block = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        let mut size = block.len();
        loop {
            match file.write(&block[..size]) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) && size > 1 => size /= 2,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        written
    }

    /// Fills all but about `room` bytes.
    pub fn fill_leaving(&self, room: u64) {
        let filled = self.fill();
        self.free();
        let path = self.mount.join(FILLER);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Written, not just sized: tmpfs allocates on write.
        let block = vec![0u8; 64 * 1024];
        let mut left = filled.saturating_sub(room);
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            file.write_all(&block[..n])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            left -= n as u64;
        }
    }

    /// Removes the filler: the space comes back.
    pub fn free(&self) {
        let path = self.mount.join(FILLER);
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Makes the file system read-only (no file may be open for writing on
    /// it, or the kernel refuses: `EBUSY`) or writable again.
    pub fn set_read_only(&self, read_only: bool) {
        let mode = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let out = Command::new("mount")
            .args(["-o", mode])
            .arg(&self.mount)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mount -o {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
