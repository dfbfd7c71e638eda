//! Migrating a SQLite database that several processes may open at once:
//! two servers on one data directory, Lambda instances started together on
//! one disk, two desktop windows on one store. SQLite holds no lock between
//! sqlx's look at what is applied and the migration itself, so two openers
//! of a database that lacks a migration both run it, and the second fails
//! ("table … already exists") and its process cannot start. An exclusive
//! advisory lock on a file beside the database (`<db>.migrate-lock`,
//! owner-only) makes openers take turns; the later one then finds every
//! migration applied. The lock is the kernel's (`flock`), so a process
//! killed while holding it lets go at once.

use std::path::{Path, PathBuf};

use sqlx::SqlitePool;
use sqlx::migrate::{MigrateError, Migrator};

/// Runs `migrator` over `pool` (a pool on `db`) while holding the
/// database's migration lock.
pub async fn run(db: &Path, pool: &SqlitePool, migrator: &Migrator) -> Result<(), MigrateError> {
    let lock = lock_path(db);
    let held = tokio::task::spawn_blocking(move || {
        let file = crate::private_fs::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(|e| MigrateError::Execute(sqlx::Error::Io(e)))?;
    let result = migrator.run(pool).await;
    // Dropping the file releases the lock.
    drop(held);
    result
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push(".migrate-lock");
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
