//! A staged blob: a local temp file that bytes are appended to and hashed as they arrive. Every
//! store writes through one (the download flow serves waiting clients from it while it grows);
//! what a store does at commit differs: rename it into the local tree, upload it, or both.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::BlobError;

pub struct StagedFile {
    path: PathBuf,
    /// `None` once closed: after a failed write (see `BlobError::WriterFailed`) or `sync`.
    file: Option<tokio::fs::File>,
    hasher: Sha256,
    written: u64,
    /// Whether the last write failed: the file and the hash may have parted ways.
    broken: bool,
    /// Set once the file was moved into place or removed, so `Drop` leaves it alone.
    settled: bool,
}

impl StagedFile {
    /// Creates a new, empty staged file in `dir`.
    pub async fn create(dir: &Path, extension: &str) -> Result<Self, BlobError> {
        let path = dir.join(unique_name(extension));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| BlobError::io("creating spool", &path, e))?;
        Ok(Self::with_file(path, file))
    }

    /// A staged file at `path` writing to the already open `file` (tests pass /dev/full).
    pub(super) fn with_file(path: PathBuf, file: tokio::fs::File) -> Self {
        Self {
            path,
            file: Some(file),
            hasher: Sha256::new(),
            written: 0,
            broken: false,
            settled: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn failed(&self) -> BlobError {
        BlobError::WriterFailed {
            path: self.path.clone(),
        }
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        let Some(file) = self.file.as_mut().filter(|_| !self.broken) else {
            return Err(self.failed());
        };
        // tokio's `write_all` hands the bytes to a blocking thread and returns; hashing meanwhile
        // overlaps the two, and `flush` waits for the write(2) so that everything `written()`
        // counts is visible to readers of the file.
        let outcome = match file.write_all(chunk).await {
            Ok(()) => {
                self.hasher.update(chunk);
                file.flush().await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                self.written += chunk.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Part of the chunk may be on disk: the file and the hash have parted ways.
                self.broken = true;
                self.file = None;
                Err(BlobError::io("writing", &self.path, e))
            }
        }
    }

    /// sha256 of everything written so far (lower-case hex).
    pub fn digest(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// Checks that the bytes written hash to `expected` (already validated as a key) and makes
    /// them durable. On a mismatch or a failed write the file is removed.
    pub async fn seal(&mut self, expected: &str) -> Result<u64, BlobError> {
        let file = match self.file.take() {
            Some(file) if !self.broken => file,
            _ => {
                self.discard().await;
                return Err(self.failed());
            }
        };
        let actual = self.digest();
        if actual != expected {
            drop(file);
            self.discard().await;
            return Err(BlobError::HashMismatch {
                expected: expected.to_owned(),
                actual,
            });
        }
        file.sync_all()
            .await
            .map_err(|e| BlobError::io("syncing", &self.path, e))?;
        Ok(self.written)
    }

    /// The file was renamed away: nothing is left to clean up.
    pub fn moved(&mut self) {
        self.settled = true;
    }

    /// Removes the file.
    pub async fn discard(&mut self) {
        self.file = None;
        self.settled = true;
        if let Err(e) = tokio::fs::remove_file(&self.path).await
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove spool");
        }
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.settled
            && let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove spool");
        }
    }
}

/// A name no other spool has. No `rand` in this crate: the pid separates processes, the counter
/// separates names within one, the clock separates runs that reuse a pid; `create_new` turns any
/// collision left into an error, never into two writers sharing a file.
pub fn unique_name(extension: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{n}-{nanos}.{extension}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        let a = unique_name("part");
        let b = unique_name("part");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}-", std::process::id())));
        assert!(a.ends_with(".part"));
    }
}
