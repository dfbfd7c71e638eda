//! One app per data directory. The first `atelier` on a directory holds an
//! exclusive lock on `DATA/atelier.lock` (with its process id in it) and
//! listens on `DATA/atelier.sock`; a second one finds the lock taken, asks
//! the first (through the socket) to bring its window forward, says so,
//! and exits. Two apps would otherwise each run an embedded server over
//! the same files.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

const LOCK: &str = "atelier.lock";
#[cfg(unix)]
const SOCKET: &str = "atelier.sock";

/// The lock, held while the app runs (released when dropped or the
/// process ends, however it ends).
pub struct Instance {
    _file: File,
    #[cfg(unix)]
    socket: PathBuf,
}

/// Why this app cannot run on the directory.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("Atelier is already running on {dir} (process {pid}); its window was brought forward.")]
    Raised { dir: PathBuf, pid: String },
    #[error(
        "Atelier (process {pid}) already uses {dir}: close it first, or start with another --data."
    )]
    Busy { dir: PathBuf, pid: String },
    #[error("cannot use {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl Instance {
    /// Takes the directory, or tells the app holding it to come forward.
    pub fn acquire(dir: &Path) -> Result<Instance, InstanceError> {
        let io = |source| InstanceError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim().to_owned();
                let pid = if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid
                };
                return Err(if raise(dir) {
                    InstanceError::Raised {
                        dir: dir.to_owned(),
                        pid,
                    }
                } else {
                    InstanceError::Busy {
                        dir: dir.to_owned(),
                        pid,
                    }
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Instance {
            _file: file,
            #[cfg(unix)]
            socket: dir.join(SOCKET),
        })
    }

    /// Calls `raise` (on a thread of its own) whenever a second app asks
    /// this one to come forward.
    pub fn listen(&self, raise: impl Fn() + Send + 'static) {
        #[cfg(unix)]
        {
            use std::os::unix::net::UnixListener;
            let _ = std::fs::remove_file(&self.socket);
            let listener = match UnixListener::bind(&self.socket) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for a second Atelier");
                    return;
                }
            };
            std::thread::Builder::new()
                .name("atelier-instance".into())
                .spawn(move || {
                    for conn in listener.incoming().flatten() {
                        let mut conn = conn;
                        let mut buf = [0u8; 16];
                        let n = conn.read(&mut buf).unwrap_or(0);
                        if &buf[..n] == b"raise\n" {
                            raise();
                            let _ = conn.write_all(b"ok\n");
                        }
                    }
                })
                .expect("a thread starts");
        }
        #[cfg(not(unix))]
        let _ = raise;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        #[cfg(unix)]
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Asks the app holding `dir` to bring its window forward.
fn raise(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::net::UnixStream;
        use std::time::Duration;
        let Ok(mut s) = UnixStream::connect(dir.join(SOCKET)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        if s.write_all(b"raise\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 3];
        matches!(s.read(&mut buf), Ok(3) if &buf == b"ok\n")
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, mpsc};

    #[test]
    fn a_second_app_on_the_same_directory_raises_the_first_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let first = Instance::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(dir.path().join(LOCK)).unwrap();
        assert_eq!(pid, std::process::id().to_string());

        // Not listening yet: the second one says who holds the directory.
        let e = Instance::acquire(dir.path()).err().unwrap();
        assert!(matches!(e, InstanceError::Busy { .. }), "{e}");
        assert!(e.to_string().contains(&format!("process {pid}")));

        let raised = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let r = raised.clone();
        first.listen(move || {
            r.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
        });
        let e = Instance::acquire(dir.path()).err().unwrap();
        assert!(matches!(e, InstanceError::Raised { .. }), "{e}");
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(raised.load(Ordering::SeqCst), 1);

        // Gone: the directory is free again.
        drop(first);
        let again = Instance::acquire(dir.path()).unwrap();
        drop(again);
    }
}
