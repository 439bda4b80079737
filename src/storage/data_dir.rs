//! The layout of `storage.data_dir`, and the lock that keeps two processes from managing it at
//! once.
//!
//! `pkgmirror serve` holds the lock for its lifetime, `cache gc` and `cache verify` while they
//! run: each of them removes files another would still use (the blob store's start-up cleanup
//! deletes the spools of downloads under way, gc deletes blobs). `cache stats` only reads and
//! takes no lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

pub const CATALOGUE_FILE: &str = "catalogue.sqlite3";
pub const PAGES_FILE: &str = "pages.redb";
/// The page store's big values, a file each.
pub const PAGE_BODIES_DIR: &str = "page-bodies";
pub const BLOBS_DIR: &str = "blobs";
const LOCK_FILE: &str = "pkgmirror.lock";

/// Longest holder description read back from the lock file: it is only ever one short line.
const MAX_HOLDER_LEN: u64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock; `holder` is what it wrote there ("serve (pid 12)"), if
    /// it got that far.
    #[error("{} is running on the data dir {}", holder.as_deref().unwrap_or("another pkgmirror process"), dir.display())]
    Held { holder: Option<String>, dir: PathBuf },
    #[error("cannot lock {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// An exclusive advisory lock on a data dir, released when dropped (or when the process dies,
/// so a killed server never leaves a stale lock behind).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (which must exist) for `command` ("serve", "cache gc", ...),
    /// without waiting.
    pub fn acquire(data_dir: &Path, command: &str) -> Result<Self, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io_error = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // Not truncated on open: the holder's description must survive until the lock is ours.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    holder: read_holder(&mut file),
                    dir: data_dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        let holder = format!("pkgmirror {command} (pid {})\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.write_all(holder.as_bytes()))
            .map_err(io_error)?;
        Ok(Self { _file: file })
    }
}

/// What the lock's holder wrote about itself; `None` when it cannot be read (it may not have
/// written it yet).
fn read_holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(MAX_HOLDER_LEN).read_to_string(&mut text).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DataDirLock::acquire(dir.path(), "serve").unwrap();
        let err = DataDirLock::acquire(dir.path(), "cache gc").unwrap_err();
        let LockError::Held { holder, .. } = &err else {
            panic!("expected Held, got {err:?}");
        };
        let want = format!("pkgmirror serve (pid {})", std::process::id());
        assert_eq!(holder.as_deref(), Some(want.as_str()));
        assert_eq!(
            err.to_string(),
            format!("{want} is running on the data dir {}", dir.path().display())
        );
        drop(lock);
        // Released: the next one gets it and replaces the description.
        let _gc = DataDirLock::acquire(dir.path(), "cache gc").unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("pkgmirror cache gc (pid {})\n", std::process::id()));
    }

    #[test]
    fn a_missing_data_dir_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = DataDirLock::acquire(&dir.path().join("absent"), "serve").unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(LOCK_FILE), "{err}");
    }
}
