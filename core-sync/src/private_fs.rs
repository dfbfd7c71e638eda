//! Files and directories only their owner may read: a store, its blobs,
//! the embedded server's data and exports hold every prompt, title and
//! image a user made, so they are created owner-only (directories 0700,
//! files 0600, whatever the umask), and ones made looser (by an older
//! version, a copy, an umask) are tightened when they are opened. A file
//! inside an owner-only directory is out of other users' reach whatever
//! its own mode, so only a tree's top directories and its databases are
//! tightened on open, not every file below.
//!
//! SQLite creates a database's `-wal` and `-shm` files with the mode of
//! the database file, so creating the database file owner-only first
//! ([`create_file`]) covers them too.
//!
//! Tightening is best effort and never stops a store from opening: a
//! directory shared on purpose (sticky bit, as `/tmp`) is left alone, and
//! one that cannot be changed (another owner, a read-only file system) is
//! logged as a warning. Elsewhere than on Unix these are plain creations.

use std::fs;
use std::io;
use std::path::Path;

/// Owner-only directories.
pub const DIR_MODE: u32 = 0o700;
/// Owner-only files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents owner-only; an existing `dir` is
/// made owner-only (see [`tighten`]).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir)?;
    tighten(dir);
    Ok(())
}

/// Creates the empty file `path` owner-only unless it exists (then it is
/// tightened instead): a database before SQLite opens it.
pub fn create_file(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path).is_ok() {
        tighten(path);
        return Ok(());
    }
    match options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            tighten(path);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Options that create files owner-only.
pub fn options() -> fs::OpenOptions {
    #[allow(unused_mut)]
    let mut options = fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options
}

/// Makes `path` owner-only (0700 for a directory, 0600 for a file) if
/// others may read, write or enter it; nothing if it does not exist, is a
/// link, or is a directory shared on purpose (sticky bit). A change that
/// fails is logged, not returned.
pub fn tighten(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode();
        // A link is not followed: what it points to is not ours to change.
        if meta.file_type().is_symlink() || mode & 0o077 == 0 {
            return;
        }
        if mode & 0o1000 != 0 {
            tracing::warn!(path = %path.display(), "a shared directory (sticky bit) holds private data; left as it is");
            return;
        }
        let owner = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
        match fs::set_permissions(path, fs::Permissions::from_mode(mode & owner)) {
            Ok(()) => {
                tracing::info!(path = %path.display(), was = format!("{:o}", mode & 0o777), "made owner-only")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "others may read this; cannot make it owner-only")
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// [`tighten`] on `dir` and every directory directly in it (a blob
/// store's fan-out directories).
pub fn tighten_tree_top(dir: &Path) {
    tighten(dir);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            tighten(&entry.path());
        }
    }
}

/// A SQLite database `db` (with its `-wal` and `-shm` files) owner-only:
/// created empty so if absent, tightened if not.
pub fn database(db: &Path) -> io::Result<()> {
    create_file(db)?;
    let name = db.file_name().unwrap_or_default().to_string_lossy();
    for suffix in ["-wal", "-shm", "-journal"] {
        tighten(&db.with_file_name(format!("{name}{suffix}")));
    }
    Ok(())
}

/// The permission bits of `path` (tests and diagnostics), `None` where
/// there are none to read.
pub fn mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn created_owner_only_and_loose_ones_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let nested = tmp.path().join("a/b");
        create_dir(&nested).unwrap();
        assert_eq!(mode(&nested), Some(0o700));
        assert_eq!(mode(&tmp.path().join("a")), Some(0o700), "parents too");
        chmod(&nested, 0o755);
        create_dir(&nested).unwrap();
        assert_eq!(mode(&nested), Some(0o700), "an existing one is tightened");

        let db = nested.join("x.db");
        database(&db).unwrap();
        assert_eq!(mode(&db), Some(0o600));
        assert_eq!(fs::read(&db).unwrap(), b"", "created empty");
        // Existing loose files: tightened, contents kept; absent ones stay absent.
        fs::write(&db, b"data").unwrap();
        let wal = nested.join("x.db-wal");
        fs::write(&wal, b"wal").unwrap();
        chmod(&db, 0o644);
        chmod(&wal, 0o664);
        database(&db).unwrap();
        assert_eq!((mode(&db), mode(&wal)), (Some(0o600), Some(0o600)));
        assert_eq!(fs::read(&db).unwrap(), b"data");
        assert!(!nested.join("x.db-shm").exists());

        // Tighter than owner-only stays as it is.
        chmod(&db, 0o400);
        tighten(&db);
        assert_eq!(mode(&db), Some(0o400));
        // A directory shared on purpose is left alone.
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o1777);
        tighten(&shared);
        assert_eq!(
            fs::metadata(&shared).unwrap().permissions().mode() & 0o7777,
            0o1777
        );

        // One level of a tree.
        let deep = nested.join("ab/cd");
        fs::create_dir_all(&deep).unwrap();
        chmod(&nested.join("ab"), 0o755);
        chmod(&deep, 0o755);
        chmod(&nested, 0o755);
        tighten_tree_top(&nested);
        assert_eq!(mode(&nested), Some(0o700));
        assert_eq!(mode(&nested.join("ab")), Some(0o700));
        assert_eq!(
            mode(&deep),
            Some(0o755),
            "below the top: out of reach already"
        );

        let file = nested.join("f");
        options().write(true).create_new(true).open(&file).unwrap();
        assert_eq!(mode(&file), Some(0o600));
    }
}
