//! The one way bytes become a blob, whatever they are (a PyPI file, a hex tarball, docs, an
//! installer, extracted metadata): stage them in a blob writer, hashing as they arrive, within a
//! size limit; verify the hash; commit or abort; record the blob in the catalogue.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;

use super::{CacheCounters, blocking, unix_now};
use crate::storage::Catalogue;
use crate::storage::blob::{BlobError, BlobStore, BlobWriter};

/// Why bytes did not become a blob.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The upstream's fault: a broken connection or a body of the wrong size. A stored copy may
    /// stand in.
    #[error("{0}")]
    Upstream(String),
    /// The upstream stopped sending for longer than `pypi.read_timeout`.
    #[error("{0}")]
    TimedOut(String),
    /// The bytes do not hash to what the index promised.
    #[error("{0}")]
    HashMismatch(String),
    #[error("{0}")]
    Storage(#[from] BlobError),
}

/// How many bytes a body may have.
#[derive(Debug, Clone, Copy)]
pub enum SizeLimit {
    /// Exactly this many: the index said so.
    Exact(u64),
    /// At most this many: nothing said how big it is.
    AtMost(u64),
}

/// Where verified bytes ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    Stored {
        sha256: String,
        size: u64,
    },
    /// The bytes hash right but the blob store could not keep them (a full disk, S3
    /// unreachable): they can still be served from the spool, and the next request fetches again.
    Unstored {
        sha256: String,
        size: u64,
    },
}

impl Kept {
    pub fn sha256(&self) -> &str {
        match self {
            Self::Stored { sha256, .. } | Self::Unstored { sha256, .. } => sha256,
        }
    }
}

/// Makes blobs in one store; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    store: Arc<dyn BlobStore>,
    catalogue: Catalogue,
    counters: Arc<CacheCounters>,
}

impl Ingest {
    pub fn new(store: Arc<dyn BlobStore>, catalogue: Catalogue, counters: Arc<CacheCounters>) -> Self {
        Self {
            store,
            catalogue,
            counters,
        }
    }

    /// Starts a blob. `expected_sha256` is what the bytes must hash to (without one they are
    /// stored under their own hash).
    pub async fn stage(&self, expected_sha256: Option<&str>, limit: SizeLimit) -> Result<Staged, BlobError> {
        Ok(Staged {
            writer: self.store.put(expected_sha256).await?,
            expected: expected_sha256.map(str::to_owned),
            limit,
            ingest: self.clone(),
        })
    }

    /// Stores bytes already in memory (small ones: extracted metadata) under their own hash.
    pub async fn bytes(&self, bytes: &[u8]) -> Result<Kept, IngestError> {
        let mut staged = self.stage(None, SizeLimit::Exact(bytes.len() as u64)).await?;
        if let Err(e) = staged.writer.write(bytes).await {
            staged.abort().await;
            return Err(e.into());
        }
        staged.commit().await
    }
}

/// A blob being written.
pub struct Staged {
    writer: Box<dyn BlobWriter>,
    expected: Option<String>,
    limit: SizeLimit,
    ingest: Ingest,
}

impl Staged {
    /// The local file the bytes go to; others may read it while it grows.
    pub fn spool_path(&self) -> &Path {
        self.writer.spool_path()
    }

    /// The sha256 the blob will be stored under, if the bytes so far are it.
    pub fn verified(&self) -> Option<String> {
        let digest = self.writer.digest_so_far();
        match &self.expected {
            Some(expected) if *expected != digest => None,
            _ => Some(digest),
        }
    }

    /// Streams an upstream body in. After each chunk, `published` learns how many bytes may be
    /// read by others: all but the newest chunk, which is held back until the hash is checked.
    pub async fn receive(
        &mut self,
        response: reqwest::Response,
        published: impl FnMut(u64),
    ) -> Result<(), IngestError> {
        if let (SizeLimit::Exact(expected), Some(announced)) = (self.limit, response.content_length())
            && expected != announced
        {
            return Err(IngestError::Upstream(format!(
                "the upstream announces {announced} bytes but the index says {expected}"
            )));
        }
        let body = crate::upstream::body_stream(response).map(|chunk| {
            chunk.map_err(|e| match e.is_timeout() {
                true => IngestError::TimedOut(format!("the upstream stopped sending: {}", e.without_url())),
                false => IngestError::Upstream(format!("the upstream connection broke: {}", e.without_url())),
            })
        });
        self.receive_chunks(body, published).await
    }

    /// Streams chunks in (an upstream body, an upload), within the size limit; `published` as
    /// for [`Self::receive`].
    pub async fn receive_chunks(
        &mut self,
        body: impl futures::Stream<Item = Result<bytes::Bytes, IngestError>>,
        mut published: impl FnMut(u64),
    ) -> Result<(), IngestError> {
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            let total = self.writer.written() + chunk.len() as u64;
            match self.limit {
                SizeLimit::Exact(expected) if total > expected => {
                    return Err(IngestError::Upstream(format!(
                        "the upstream sent more than the {expected} bytes the index says"
                    )));
                }
                SizeLimit::AtMost(max) if total > max => {
                    return Err(IngestError::Upstream(format!(
                        "the file is larger than {max} bytes"
                    )));
                }
                _ => {}
            }
            self.writer.write(&chunk).await?;
            published(self.writer.written() - chunk.len() as u64);
        }
        if let SizeLimit::Exact(expected) = self.limit
            && self.writer.written() != expected
        {
            return Err(IngestError::Upstream(format!(
                "the upstream sent {} bytes but the index says {expected}",
                self.writer.written()
            )));
        }
        Ok(())
    }

    /// Verifies the bytes and makes them a blob, recorded in the catalogue. Bytes that hash
    /// right but cannot be kept come back as [`Kept::Unstored`].
    pub async fn commit(self) -> Result<Kept, IngestError> {
        let Self {
            writer,
            expected,
            ingest,
            ..
        } = self;
        let digest = writer.digest_so_far();
        let sha256 = expected.unwrap_or_else(|| digest.clone());
        let size = writer.written();
        let verified = digest == sha256;
        match writer.commit(&sha256).await {
            Ok(size) => {
                ingest.counters.count_stored(size);
                let (catalogue, store) = (ingest.catalogue.clone(), ingest.store.name());
                let key = sha256.clone();
                if let Err(e) = blocking(move || catalogue.record_blob(&key, size, store, unix_now())).await {
                    // The blob is stored and verified; only its statistics row is missing.
                    tracing::warn!(sha256 = %sha256, error = %e, "could not record a stored blob");
                }
                Ok(Kept::Stored { sha256, size })
            }
            Err(e @ BlobError::HashMismatch { .. }) => {
                ingest.counters.count_hash_mismatch();
                Err(IngestError::HashMismatch(e.to_string()))
            }
            Err(e) if verified => {
                ingest.counters.count_unstored();
                tracing::debug!(sha256 = %sha256, error = %e, "the blob store could not keep verified bytes");
                Ok(Kept::Unstored { sha256, size })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Drops what was written; nothing is stored.
    pub async fn abort(self) {
        self.writer.abort().await;
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::storage::blob::LocalBlobStore;

    fn ingest(dir: &Path) -> (Ingest, Arc<CacheCounters>) {
        let store = Arc::new(LocalBlobStore::open(&dir.join("blobs")).unwrap());
        let counters = Arc::new(CacheCounters::default());
        let catalogue = Catalogue::open(&dir.join("catalogue.db")).unwrap();
        (Ingest::new(store, catalogue, Arc::clone(&counters)), counters)
    }

    /// Serves `body` once on a loopback port and returns the response to a GET of it.
    async fn response(body: &'static [u8]) -> reqwest::Response {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(body).await.unwrap();
        });
        reqwest::get(format!("http://{addr}/")).await.unwrap()
    }

    fn sha256(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[tokio::test]
    async fn a_body_that_hashes_right_is_stored_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (ingest, _) = ingest(dir.path());
        let expected = sha256(b"hello wheel");
        let mut staged = ingest.stage(Some(&expected), SizeLimit::Exact(11)).await.unwrap();
        let mut published = Vec::new();
        staged
            .receive(response(b"hello wheel").await, |n| published.push(n))
            .await
            .unwrap();
        assert!(
            published.iter().all(|n| *n < 11),
            "the newest chunk is held back: {published:?}"
        );
        assert_eq!(staged.verified(), Some(expected.clone()));
        let kept = staged.commit().await.unwrap();
        assert_eq!(
            kept,
            Kept::Stored {
                sha256: expected.clone(),
                size: 11
            }
        );
        assert!(ingest.store.head(&expected).await.unwrap().is_some());
        assert_eq!(
            ingest
                .catalogue
                .blob_keys()
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![expected]
        );
    }

    #[tokio::test]
    async fn wrong_bytes_and_wrong_sizes_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (ingest, counters) = ingest(dir.path());
        let promised = sha256(b"the real file");
        let staged = {
            let mut staged = ingest.stage(Some(&promised), SizeLimit::Exact(13)).await.unwrap();
            staged
                .receive(response(b"a forged file").await, |_| {})
                .await
                .unwrap();
            assert_eq!(staged.verified(), None);
            staged
        };
        let mismatch = staged.commit().await.unwrap_err();
        assert!(matches!(mismatch, IngestError::HashMismatch(_)), "{mismatch}");
        assert_eq!(counters.snapshot().hash_mismatches, 1);

        for (limit, body, says) in [
            (
                SizeLimit::Exact(5),
                b"longer than five".as_slice(),
                "announces 16 bytes but the index says 5",
            ),
            (SizeLimit::AtMost(4), b"too big".as_slice(), "larger than 4 bytes"),
        ] {
            let mut staged = ingest.stage(None, limit).await.unwrap();
            let err = staged.receive(response(body).await, |_| {}).await.unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
            staged.abort().await;
        }
        assert!(ingest.store.list().await.unwrap().is_empty());
        assert!(ingest.catalogue.blob_keys().unwrap().is_empty());
    }
}
