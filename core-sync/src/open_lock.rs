//! Opening a SQLite database that several processes may open at once: two
//! servers on one data directory, Lambda instances started together on one
//! disk, two desktop windows on one store. Two steps of opening are not
//! safe to run side by side: switching a new database to WAL answers
//! "database is locked" at once (no busy wait) to the other opener, and
//! SQLite holds no lock between sqlx's look at which migrations are
//! applied and applying them, so two openers both run a migration and the
//! later one fails ("table … already exists"). Either way a process cannot
//! start. An exclusive advisory lock on a file beside the database
//! (`<db>.open-lock`, owner-only), held from connecting through the
//! migrations, makes openers take turns; the later one finds the database
//! ready. The lock is the kernel's (`flock`), so a process killed while
//! holding it lets go at once.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The database's open lock, held until dropped.
#[must_use = "the lock is released when dropped"]
pub struct OpenLock(#[allow(dead_code)] File);

/// Waits for and takes the open lock of the database file `db`.
pub async fn take(db: &Path) -> io::Result<OpenLock> {
    let path = lock_path(db);
    tokio::task::spawn_blocking(move || {
        let file = crate::private_fs::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(OpenLock(file))
    })
    .await
    .map_err(io::Error::other)?
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push(".open-lock");
    db.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreOptions};

    /// Openers of a new store at the same moment (as two windows, or two
    /// Lambda instances, would be): every one opens it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_openers_of_a_new_store_all_open_it() {
        for _round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let opens: Vec<_> = (0..8)
                .map(|_| {
                    let dir = dir.path().to_owned();
                    tokio::spawn(async move { Store::open(dir, StoreOptions::default()).await })
                })
                .collect();
            for open in opens {
                if let Err(e) = open.await.unwrap() {
                    panic!("a concurrent opener failed: {e}");
                }
            }
        }
    }
}
