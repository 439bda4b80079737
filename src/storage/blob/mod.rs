//! Content-addressed storage for package file bytes, keyed by their sha256.
//!
//! A blob becomes visible only through [`BlobWriter::commit`], which checks the hash first, so
//! whatever `get` returns has been verified (see docs/ARCHITECTURE.md: "a blob is visible only
//! after its hash is verified").

mod local;
mod s3;
mod staging;
mod tiered;

pub use local::LocalBlobStore;
pub use s3::{ABANDONED_AFTER, OpenUpload, S3BlobStore};
pub use tiered::TieredBlobStore;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

use crate::config::{StorageBackend, StorageConfig};

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BlobError>> + Send>>;

/// An inclusive byte range already resolved against the blob's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// A single `Range: bytes=…` request, not yet resolved against a size (RFC 9110, 14.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// `bytes=first-` or `bytes=first-last`
    From { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last n bytes
    Suffix(u64),
}

impl RangeRequest {
    /// Parses a `Range` header holding one byte range; anything else (several ranges, another
    /// unit, bad syntax) is `None`, which the server may answer with the whole file.
    pub fn parse(header: &str) -> Option<Self> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let number = |s: &str| -> Option<u64> {
            let s = s.trim();
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        if first.trim().is_empty() {
            return number(last).map(RangeRequest::Suffix);
        }
        let first = number(first)?;
        let last = if last.trim().is_empty() {
            None
        } else {
            Some(number(last)?)
        };
        if last.is_some_and(|last| last < first) {
            return None;
        }
        Some(RangeRequest::From { first, last })
    }

    /// The bytes this asks of a blob of `size` bytes; `None` when none of them exist (416).
    pub fn resolve(self, size: u64) -> Option<ByteRange> {
        if size == 0 {
            return None;
        }
        match self {
            RangeRequest::From { first, .. } if first >= size => None,
            RangeRequest::From { first, last } => Some(ByteRange {
                start: first,
                end: last.map_or(size - 1, |last| last.min(size - 1)),
            }),
            RangeRequest::Suffix(0) => None,
            RangeRequest::Suffix(n) => Some(ByteRange {
                start: size.saturating_sub(n),
                end: size - 1,
            }),
        }
    }
}

/// How a stored blob is read.
pub enum BlobBody {
    /// A file on local disk, open (so eviction removing it meanwhile cannot cut a response).
    File {
        file: std::fs::File,
        path: PathBuf,
        size: u64,
    },
    /// Bytes from elsewhere (an S3 bucket), already cut to the range asked for.
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
    /// The store cannot be reached now (no connection, a timeout, a server error): callers
    /// serve without it and try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The store answered, but with an error (denied, a missing bucket, a malformed answer).
    #[error("{0}")]
    Remote(String),
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

/// The blob store `storage.backend` names, opened and checked.
#[derive(Clone)]
pub enum ConfiguredStore {
    Local(Arc<LocalBlobStore>),
    S3(S3BlobStore),
    Tiered(TieredBlobStore),
}

impl ConfiguredStore {
    /// Opens the configured store under `blob_dir` (the local tier, or S3's staging area). S3
    /// must answer a write, a read and a delete, or this fails naming the endpoint and bucket.
    /// `last_access` (from the catalogue) orders a tiered store's local tier; `runtime` runs its
    /// background fills.
    pub async fn open(
        storage: &StorageConfig,
        blob_dir: &Path,
        last_access: impl FnOnce() -> HashMap<String, u64>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, BlobError> {
        let checked = |s3: S3BlobStore| async move {
            match s3.health().await {
                Ok(()) => Ok(s3),
                Err(e) => Err(BlobError::Remote(format!("S3 is not usable: {e}"))),
            }
        };
        Ok(match storage.backend {
            StorageBackend::Local => Self::Local(Arc::new(LocalBlobStore::open(blob_dir)?)),
            StorageBackend::S3 => {
                let s3 = S3BlobStore::connect(&storage.s3, &blob_dir.join(local::TMP_DIR)).await?;
                Self::S3(checked(s3).await?)
            }
            StorageBackend::Tiered => {
                let l1 = LocalBlobStore::open(blob_dir)?;
                let s3 = S3BlobStore::connect(&storage.s3, &blob_dir.join(local::TMP_DIR)).await?;
                let s3 = checked(s3).await?;
                Self::Tiered(TieredBlobStore::open(l1, s3, storage.max_size, &last_access(), runtime).await?)
            }
        })
    }

    pub fn store(&self) -> Arc<dyn BlobStore> {
        match self {
            Self::Local(local) => Arc::clone(local) as Arc<dyn BlobStore>,
            Self::S3(s3) => Arc::new(s3.clone()),
            Self::Tiered(tiered) => Arc::new(tiered.clone()),
        }
    }

    /// The S3 part, if any.
    pub fn s3(&self) -> Option<&S3BlobStore> {
        match self {
            Self::Local(_) => None,
            Self::S3(s3) => Some(s3),
            Self::Tiered(tiered) => Some(tiered.s3()),
        }
    }
}

#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// "local", "s3" or "tiered": recorded per blob in the catalogue.
    fn name(&self) -> &'static str;
    /// Starts a new blob. Bytes are invisible to `get`/`head`/`list` until `commit`.
    /// `expected_sha256`, when the caller knows what it will commit under, lets a remote store
    /// upload while bytes arrive instead of after.
    async fn put(&self, expected_sha256: Option<&str>) -> Result<Box<dyn BlobWriter>, BlobError>;
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
    /// The stores this one is made of, nearest first (`cache verify` checks each); a simple
    /// store is its own only layer.
    fn layers(&self) -> Vec<&dyn BlobStore>;
    /// The local tier's budget and use, for a store that has one in front of another.
    fn tier_stats(&self) -> Option<TierStats> {
        None
    }
}

/// The local tier of a tiered store (for `/health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierStats {
    pub blobs: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Blobs copied from S3 into the local tier, and copies that failed, since start.
    pub fills: u64,
    pub fill_failures: u64,
    /// Local copies evicted since start (S3 keeps them).
    pub evicted: u64,
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
    fn range_requests_parse_and_resolve() {
        let from = |first, last| Some(RangeRequest::From { first, last });
        assert_eq!(RangeRequest::parse("bytes=0-99"), from(0, Some(99)));
        assert_eq!(RangeRequest::parse("bytes=100-"), from(100, None));
        assert_eq!(RangeRequest::parse("bytes=-5"), Some(RangeRequest::Suffix(5)));
        for unsupported in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "0-1",
        ] {
            assert_eq!(RangeRequest::parse(unsupported), None, "{unsupported}");
        }
        let range = |start, end| Some(ByteRange { start, end });
        assert_eq!(from(0, Some(99)).unwrap().resolve(50), range(0, 49));
        assert_eq!(from(10, None).unwrap().resolve(50), range(10, 49));
        assert_eq!(from(50, None).unwrap().resolve(50), None);
        assert_eq!(RangeRequest::Suffix(5).resolve(50), range(45, 49));
        assert_eq!(RangeRequest::Suffix(500).resolve(50), range(0, 49));
        assert_eq!(RangeRequest::Suffix(0).resolve(50), None);
        assert_eq!(from(0, None).unwrap().resolve(0), None);
    }

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
