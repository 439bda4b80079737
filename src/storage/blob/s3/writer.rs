//! Writing a blob: bytes are staged in a local file first (the download flow serves waiting
//! clients from it) and uploaded as they arrive: once `part_size` bytes are staged a multipart
//! upload starts (see [`PartUploader`]). The object appears only at commit, after the sha256 is
//! checked: a small blob is then sent with one `PutObject` carrying its sha256 (which S3 checks
//! again), a large one's multipart upload is completed, or aborted on a mismatch, so a failed or
//! wrong download never leaves an object behind.

use std::path::Path;
use std::sync::Arc;

use aws_sdk_s3::primitives::{ByteStream as S3Body, Length};
use base64::Engine as _;

use super::multipart::PartUploader;
use super::{Inner, S3BlobStore};
use crate::storage::blob::local::LocalBlobStore;
use crate::storage::blob::staging::StagedFile;
use crate::storage::blob::{BlobError, BlobWriter};

impl S3BlobStore {
    /// Starts a writer that, after its upload, moves the staged file into `local` instead of
    /// removing it (the tiered store's write to both tiers).
    pub(in crate::storage::blob) async fn put_keeping_in(
        &self,
        expected_sha256: Option<&str>,
        local: Option<Arc<LocalBlobStore>>,
    ) -> Result<S3BlobWriter, BlobError> {
        // Known up front, the key lets parts go up while the download runs.
        let target = expected_sha256.and_then(|sha256| self.inner.keys.blob(sha256).ok());
        let staged = match &local {
            Some(local) => local.stage().await?,
            None => {
                let staging =
                    self.inner.staging.as_deref().ok_or_else(|| {
                        BlobError::Remote("this S3 store was opened for records only".into())
                    })?;
                StagedFile::create(staging, "part").await?
            }
        };
        // With the bucket unreachable the bytes still stage (the client still gets them); only
        // the commit fails.
        let upload = match self.inner.check() {
            Ok(()) => Upload::NotStarted,
            Err(e) => Upload::Failed(e.to_string()),
        };
        Ok(S3BlobWriter {
            staged,
            inner: Arc::clone(&self.inner),
            target,
            upload,
            keep_in: local,
        })
    }
}

impl Inner {
    /// Uploads the file at `path` as the object `key` with one `PutObject`.
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        sha256: Option<&str>,
    ) -> Result<(), BlobError> {
        self.check()?;
        let body = S3Body::read_from()
            .path(path)
            .length(Length::Exact(size))
            .build()
            .await
            .map_err(|e| BlobError::Remote(format!("reading {} for upload: {e}", path.display())))?;
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(size as i64)
            .body(body);
        if let Some(sha256) = sha256 {
            // S3 recomputes it and refuses the object if the bytes it received differ.
            let digest = hex::decode(sha256).unwrap_or_default();
            request = request.checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest));
        }
        request
            .send()
            .await
            .map_err(|e| self.failed("uploading", key, e))?;
        self.succeeded();
        Ok(())
    }
}

/// Where a writer's multipart upload stands.
enum Upload {
    /// Fewer than `part_size` bytes staged so far.
    NotStarted,
    Running(PartUploader),
    /// The bucket could not be reached; the writer stages on but will not commit.
    Failed(String),
}

pub(in crate::storage::blob) struct S3BlobWriter {
    staged: StagedFile,
    inner: Arc<Inner>,
    /// The key the blob is expected to be committed under, when `put` was told.
    target: Option<String>,
    upload: Upload,
    /// The tiered store's local tier, where the staged file goes after the upload.
    keep_in: Option<Arc<LocalBlobStore>>,
}

impl S3BlobWriter {
    /// Uploads the whole sealed staged file at once: one `PutObject` if it fits a part, else a
    /// multipart upload of the file.
    async fn upload_whole(&self, key: &str, size: u64, sha256: &str) -> Result<(), BlobError> {
        if size <= self.inner.part_size {
            self.inner
                .put_file(key, self.staged.path(), size, Some(sha256))
                .await
        } else {
            let path = self.staged.path().to_owned();
            PartUploader::start(Arc::clone(&self.inner), key.to_owned(), path, size)
                .complete(size)
                .await
        }
    }

    /// Stops the upload, aborting the multipart upload, and waits for that.
    async fn cancel_upload(&mut self) {
        if let Upload::Running(uploader) = std::mem::replace(&mut self.upload, Upload::NotStarted) {
            uploader.cancel().await;
        }
    }
}

#[async_trait::async_trait]
impl BlobWriter for S3BlobWriter {
    fn spool_path(&self) -> &Path {
        self.staged.path()
    }

    fn written(&self) -> u64 {
        self.staged.written()
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.staged.write(chunk).await?;
        let written = self.staged.written();
        match (&self.upload, &self.target) {
            (Upload::NotStarted, Some(target)) if written >= self.inner.part_size => {
                self.upload = Upload::Running(PartUploader::start(
                    Arc::clone(&self.inner),
                    target.clone(),
                    self.staged.path().to_owned(),
                    written,
                ));
            }
            (Upload::Running(uploader), _) => uploader.staged(written),
            _ => {}
        }
        Ok(())
    }

    fn digest_so_far(&self) -> String {
        self.staged.digest()
    }

    async fn commit(mut self: Box<Self>, expected_sha256: &str) -> Result<u64, BlobError> {
        let key = self.inner.keys.blob(expected_sha256)?;
        let size = match self.staged.seal(expected_sha256).await {
            Ok(size) => size,
            Err(e) => {
                self.cancel_upload().await;
                return Err(e);
            }
        };
        let uploaded = match std::mem::replace(&mut self.upload, Upload::NotStarted) {
            Upload::Failed(why) => Err(BlobError::Unavailable(why)),
            Upload::Running(uploader) if uploader.key == key => uploader.complete(size).await,
            other => {
                if let Upload::Running(stray) = other {
                    // Committed under another key than announced: that upload is of no use.
                    stray.cancel().await;
                }
                self.upload_whole(&key, size, expected_sha256).await
            }
        };
        let uploaded = match uploaded {
            // The bucket was down when this writer started or mid-way, and has been back for a
            // while (the breaker is closed again): a long download still gets stored.
            Err(BlobError::Unavailable(_)) if self.inner.check().is_ok() => {
                self.upload_whole(&key, size, expected_sha256).await
            }
            other => other,
        };
        if let Err(e) = uploaded {
            self.staged.discard().await;
            return Err(e);
        }
        match &self.keep_in {
            Some(local) => {
                let local = Arc::clone(local);
                local.adopt(&mut self.staged, expected_sha256).await
            }
            None => {
                self.staged.discard().await;
                Ok(size)
            }
        }
    }

    async fn abort(mut self: Box<Self>) {
        self.cancel_upload().await;
        self.staged.discard().await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, PART_SIZE, read_body, sha256, some_bytes, unreachable_store};
    use super::*;
    use crate::storage::blob::BlobStore;

    const CHUNK: usize = 256 * 1024;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blob_written_in_chunks_reads_back_whole() {
        let Some(f) = Fixture::start("mirror").await else {
            return;
        };
        // Two full parts and a bit, announced: the upload starts once a full part is staged.
        let data = some_bytes(2 * PART_SIZE as usize + 1000, 1);
        let sha = sha256(&data);
        let key = f.store.inner.keys.blob(&sha).unwrap();
        let mut writer = f.store.put_keeping_in(Some(&sha), None).await.unwrap();
        for chunk in data.chunks(CHUNK) {
            writer.write(chunk).await.unwrap();
            let running = matches!(writer.upload, Upload::Running(_));
            assert_eq!(running, writer.written() >= PART_SIZE, "at {}", writer.written());
        }
        assert_eq!(writer.digest_so_far(), sha);
        assert!(f.object(&key).await.is_none(), "visible before commit");
        assert_eq!(Box::new(writer).commit(&sha).await.unwrap(), data.len() as u64);

        let (bytes, etag) = f.object(&key).await.unwrap();
        assert!(bytes == data, "the object differs");
        assert!(etag.ends_with("-3"), "not a 3-part upload: ETag {etag}");
        let (size, _, bytes) = read_body(f.store.get(&sha, None).await.unwrap().unwrap()).await;
        assert_eq!(size, data.len() as u64);
        assert!(bytes == data, "the blob reads back other bytes");
        assert!(f.open_uploads().await.is_empty());
        assert!(f.staged().is_empty(), "staged files left: {:?}", f.staged());

        // Small and not announced: staged, then one PutObject at commit.
        let data = some_bytes(3 * 1000, 2);
        let sha = sha256(&data);
        let mut writer = f.store.put_keeping_in(None, None).await.unwrap();
        for chunk in data.chunks(1000) {
            writer.write(chunk).await.unwrap();
        }
        assert!(matches!(writer.upload, Upload::NotStarted));
        assert_eq!(Box::new(writer).commit(&sha).await.unwrap(), 3000);
        let (bytes, etag) = f.object(&f.store.inner.keys.blob(&sha).unwrap()).await.unwrap();
        assert!(bytes == data, "the object differs");
        assert!(!etag.contains('-'), "not a single PutObject: ETag {etag}");
        assert!(f.staged().is_empty(), "staged files left: {:?}", f.staged());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_aborted_midway_leaves_nothing_under_its_key() {
        let Some(f) = Fixture::start("mirror").await else {
            return;
        };
        let data = some_bytes(2 * PART_SIZE as usize, 3);
        let sha = sha256(&data);
        let key = f.store.inner.keys.blob(&sha).unwrap();
        let mut writer = f.store.put_keeping_in(Some(&sha), None).await.unwrap();
        // Half the blob: a full part, already in the bucket under an upload to the final key.
        for chunk in data[..PART_SIZE as usize].chunks(CHUNK) {
            writer.write(chunk).await.unwrap();
        }
        assert_eq!(f.wait_for_parts(&key, 1).await, [1]);
        let open: Vec<String> = f.open_uploads().await.into_iter().map(|(key, _)| key).collect();
        assert_eq!(open, std::slice::from_ref(&key));
        let spool = writer.spool_path().to_owned();
        assert!(spool.is_file());

        Box::new(writer).abort().await;
        assert!(f.object(&key).await.is_none(), "an object under the final key");
        assert!(f.open_uploads().await.is_empty(), "abort left the upload open");
        assert!(f.keys().await.is_empty(), "objects left: {:?}", f.keys().await);
        assert!(!spool.exists());
        assert!(f.staged().is_empty(), "staged files left: {:?}", f.staged());
        assert_eq!(f.store.head(&sha).await.unwrap(), None);
    }

    #[tokio::test]
    async fn while_the_bucket_is_unreachable_bytes_stage_but_do_not_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = unreachable_store(dir.path()).await;
        let data = b"bytes the waiting client still gets";
        let sha = sha256(data);
        // Any call that cannot connect opens the breaker.
        assert!(matches!(store.head(&sha).await, Err(BlobError::Unavailable(_))));

        let mut writer = store.put_keeping_in(Some(&sha), None).await.unwrap();
        assert!(matches!(writer.upload, Upload::Failed(_)));
        writer.write(&data[..10]).await.unwrap();
        writer.write(&data[10..]).await.unwrap();
        let spool = writer.spool_path().to_owned();
        assert_eq!(std::fs::read(&spool).unwrap(), data);
        assert_eq!(writer.digest_so_far(), sha);

        let err = Box::new(writer).commit(&sha).await.unwrap_err();
        let BlobError::Unavailable(message) = &err else {
            panic!("{err:?}");
        };
        assert!(
            message.contains(" is unavailable (retrying 10s after the last failure): "),
            "{message}"
        );
        assert!(!spool.exists(), "the failed commit left its spool");
    }
}
