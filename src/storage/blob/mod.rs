//! Content-addressed storage for package file bytes, keyed by their sha256.
//!
//! A blob becomes visible only through [`BlobWriter::commit`], which checks the hash first, so
//! whatever `get` returns has been verified (see docs/ARCHITECTURE.md: "a blob is visible only
//! after its hash is verified").

mod local;

pub use local::LocalBlobStore;

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BlobError>> + Send>>;

/// An inclusive byte range already resolved against the blob's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// How a stored blob is read.
pub enum BlobBody {
    /// A file on local disk: the HTTP layer serves it zero-copy, ranges included.
    File { path: PathBuf, size: u64 },
    /// Bytes from elsewhere (S3 later), already cut to the range asked for.
    Stream {
        size: u64,
        range: Option<ByteRange>,
        stream: ByteStream,
    },
}

impl BlobBody {
    /// Size of the whole blob, whatever range the body carries.
    pub fn size(&self) -> u64 {
        match self {
            BlobBody::File { size, .. } | BlobBody::Stream { size, .. } => *size,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid blob key {0:?}: expected a sha256 as 64 lower-case hex characters")]
    InvalidKey(String),
    #[error("hash mismatch: expected sha256 {expected}, got {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error("no space left on device while writing {}", path.display())]
    NoSpace { path: PathBuf },
    /// A write failed part-way, so the spool no longer matches the running hash; the writer
    /// refuses further writes and commits rather than risk storing bytes it did not hash.
    #[error("an earlier write to {} failed; the blob writer can only be aborted", path.display())]
    WriterFailed { path: PathBuf },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl BlobError {
    /// Wraps an I/O error as "`action` `path`: cause"; a full disk becomes [`BlobError::NoSpace`]
    /// so callers can react to it (evict, stop fetching) without matching on OS error codes.
    pub fn io(action: &str, path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::StorageFull {
            return BlobError::NoSpace {
                path: path.to_path_buf(),
            };
        }
        BlobError::Io {
            context: format!("{action} {}", path.display()),
            source,
        }
    }
}

/// Longest part of a rejected key kept in [`BlobError::InvalidKey`]: keys can come from upstream
/// index pages, and an error message should not carry megabytes of someone else's text.
const MAX_KEY_IN_ERROR: usize = 80;

/// Accepts exactly 64 lower-case hex characters. Every store checks keys with this before any
/// filesystem or network access, which is what makes path traversal through a key impossible.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    let ok = key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidKey(
            key.chars().take(MAX_KEY_IN_ERROR).collect(),
        ))
    }
}

#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// "local", "s3" or "tiered": recorded per blob in the catalogue.
    fn name(&self) -> &'static str;
    /// Starts a new blob. Bytes are invisible to `get`/`head`/`list` until `commit`.
    async fn put(&self) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// `range` is a hint for stores that stream; a store that returns `File` ignores it.
    async fn get(&self, sha256: &str, range: Option<ByteRange>) -> Result<Option<BlobBody>, BlobError>;
    async fn head(&self, sha256: &str) -> Result<Option<u64>, BlobError>;
    async fn delete(&self, sha256: &str) -> Result<bool, BlobError>;
    /// Every committed blob (not temp files).
    async fn list(&self) -> Result<Vec<BlobEntry>, BlobError>;
    /// Moves a blob aside (for `cache verify` mismatches) so it is no longer served; returns
    /// whether it existed.
    async fn quarantine(&self, sha256: &str) -> Result<bool, BlobError>;
    /// Can the store be read and written right now?
    async fn health(&self) -> Result<(), BlobError>;
}

#[async_trait::async_trait]
pub trait BlobWriter: Send {
    /// The local file bytes are spooled to. Other tasks may open and read it while it grows (the
    /// download flow serves waiting clients from it), and keep reading after commit renames it.
    fn spool_path(&self) -> &Path;
    /// Bytes written so far.
    fn written(&self) -> u64;
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError>;
    /// sha256 of everything written so far (lower-case hex), without finishing the writer.
    fn digest_so_far(&self) -> String;
    /// fsync, verify sha256(all bytes) == expected (lower-case hex; anything not 64 hex chars is
    /// InvalidKey), then make it visible under that key (local: rename into place, then fsync the
    /// directory). On mismatch the spool is removed and HashMismatch returned. Committing a key
    /// that already exists is fine (content-addressed: same bytes), the spool is just removed.
    /// Returns the size.
    async fn commit(self: Box<Self>, expected_sha256: &str) -> Result<u64, BlobError>;
    /// Removes the spool.
    async fn abort(self: Box<Self>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_full_maps_to_no_space() {
        let path = Path::new("/data/blobs/tmp/1-2-3.part");
        let err = BlobError::io("writing", path, io::Error::from(io::ErrorKind::StorageFull));
        assert!(matches!(&err, BlobError::NoSpace { path: p } if p == path));
        assert_eq!(
            err.to_string(),
            "no space left on device while writing /data/blobs/tmp/1-2-3.part"
        );
    }

    #[test]
    fn other_io_errors_keep_action_path_and_cause() {
        let path = Path::new("/data/blobs/tmp/x.part");
        let source = io::Error::new(io::ErrorKind::PermissionDenied, "denied");
        let err = BlobError::io("creating spool", path, source);
        assert!(
            matches!(&err, BlobError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
        );
        assert_eq!(err.to_string(), "creating spool /data/blobs/tmp/x.part: denied");
    }

    #[test]
    fn hash_mismatch_message_names_both_hashes() {
        let err = BlobError::HashMismatch {
            expected: "ab".into(),
            actual: "cd".into(),
        };
        assert_eq!(err.to_string(), "hash mismatch: expected sha256 ab, got cd");
    }

    #[test]
    fn validate_key_accepts_only_lower_hex_64() {
        assert!(validate_key(&"0123456789abcdef".repeat(4)).is_ok());
        for bad in [
            "",
            "../x",
            "/etc/passwd",
            &"a".repeat(63),
            &"a".repeat(65),
            &"A".repeat(64),
            &"g".repeat(64),
            // 64 bytes, but not 64 hex characters.
            &format!("é{}", "a".repeat(62)),
        ] {
            assert!(
                matches!(validate_key(bad), Err(BlobError::InvalidKey(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn invalid_key_error_is_bounded() {
        let huge = "x".repeat(10_000);
        let Err(BlobError::InvalidKey(kept)) = validate_key(&huge) else {
            panic!("accepted");
        };
        assert_eq!(kept.len(), MAX_KEY_IN_ERROR);
    }
}
