//! A multipart upload of a staged file that is still growing: every full part goes up as soon
//! as it is staged, on a task of its own, while the download goes on; the rest when the writer
//! says the file is complete.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::{ByteStream as S3Body, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Inner;
use crate::storage::blob::BlobError;

/// Uploads a growing staged file part by part, on its own task, while the writer goes on.
pub(super) struct PartUploader {
    /// (bytes staged, whether that is all): the task uploads every full part as it is staged
    /// and the last one once told the end. Dropping the sender tells it to abort.
    progress: watch::Sender<(u64, bool)>,
    task: JoinHandle<Result<SentParts, BlobError>>,
    inner: Arc<Inner>,
    /// The object the upload becomes.
    pub(super) key: String,
}

impl PartUploader {
    pub(super) fn start(inner: Arc<Inner>, key: String, path: PathBuf, staged: u64) -> Self {
        let (progress, updates) = watch::channel((staged, false));
        let task = tokio::spawn(upload_parts(Arc::clone(&inner), key.clone(), path, updates));
        Self {
            progress,
            task,
            inner,
            key,
        }
    }

    pub(super) fn staged(&self, written: u64) {
        self.progress.send_replace((written, false));
    }

    /// Uploads what is left and completes the upload, making the object visible.
    pub(super) async fn complete(self, size: u64) -> Result<(), BlobError> {
        self.progress.send_replace((size, true));
        let SentParts { upload_id, parts } = self
            .task
            .await
            .map_err(|e| BlobError::Remote(format!("the upload task failed: {e}")))??;
        let (inner, key) = (&self.inner, &self.key);
        let completed = inner
            .client
            .complete_multipart_upload()
            .bucket(&inner.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await;
        if let Err(e) = completed {
            let err = inner.failed("completing the upload of", key, e);
            abort_quietly(inner, key, &upload_id).await;
            return Err(err);
        }
        inner.succeeded();
        Ok(())
    }

    /// Aborts the multipart upload and waits until it is gone.
    pub(super) async fn cancel(self) {
        drop(self.progress);
        // The task aborts the upload when it sees the sender gone; its error is the expected one.
        let _ = self.task.await;
    }
}

/// A multipart upload whose parts are all sent, ready to complete.
struct SentParts {
    upload_id: String,
    parts: Vec<CompletedPart>,
}

/// The uploader task: creates the multipart upload, sends every full part once staged, and the
/// rest when told the end. On a failure, or when the writer goes away first, it aborts the
/// upload, so nothing half-written stays in the bucket.
async fn upload_parts(
    inner: Arc<Inner>,
    key: String,
    path: PathBuf,
    mut progress: watch::Receiver<(u64, bool)>,
) -> Result<SentParts, BlobError> {
    inner.check()?;
    let created = inner
        .client
        .create_multipart_upload()
        .bucket(&inner.bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| inner.failed("starting the upload of", &key, e))?;
    let Some(upload_id) = created.upload_id().map(str::to_owned) else {
        return Err(BlobError::Remote(format!(
            "starting the upload of {key} in {}: no upload id in the answer",
            inner.location
        )));
    };
    match send_parts(&inner, &key, &upload_id, &path, &mut progress).await {
        Ok(parts) => Ok(SentParts { upload_id, parts }),
        Err(e) => {
            abort_quietly(&inner, &key, &upload_id).await;
            Err(e)
        }
    }
}

async fn send_parts(
    inner: &Inner,
    key: &str,
    upload_id: &str,
    path: &Path,
    progress: &mut watch::Receiver<(u64, bool)>,
) -> Result<Vec<CompletedPart>, BlobError> {
    let part_size = inner.part_size;
    let mut parts: Vec<CompletedPart> = Vec::new();
    let mut sent = 0u64;
    loop {
        let (staged, done) = *progress.borrow_and_update();
        // Full parts as soon as they are staged; at the end, the rest (at least one part: an
        // upload needs one, even for an empty file).
        while staged - sent >= part_size || (done && (staged > sent || parts.is_empty())) {
            let length = (staged - sent).min(part_size);
            let number = parts.len() as i32 + 1;
            let body = S3Body::read_from()
                .path(path)
                .offset(sent)
                .length(Length::Exact(length))
                .build()
                .await
                .map_err(|e| BlobError::Remote(format!("reading {} for upload: {e}", path.display())))?;
            let part = inner
                .client
                .upload_part()
                .bucket(&inner.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(length as i64)
                .body(body)
                .send()
                .await
                .map_err(|e| inner.failed("uploading a part of", key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .build(),
            );
            sent += length;
            if length == 0 {
                break;
            }
        }
        if done {
            return Ok(parts);
        }
        if progress.changed().await.is_err() {
            return Err(BlobError::Remote(format!("the upload of {key} was cancelled")));
        }
    }
}

async fn abort_quietly(inner: &Inner, key: &str, upload_id: &str) {
    let aborted = inner
        .client
        .abort_multipart_upload()
        .bucket(&inner.bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    if let Err(e) = aborted {
        tracing::warn!(key, error = %DisplayErrorContext(&e), "could not abort a multipart upload; cache gc --s3-orphans removes it");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::testing::{Fixture, PART_SIZE, some_bytes};
    use super::*;

    fn append(path: &Path, data: &[u8]) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(data).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_full_part_goes_up_once_staged_and_complete_joins_them() {
        let Some(f) = Fixture::start("").await else {
            return;
        };
        let data = some_bytes(2 * PART_SIZE as usize + 3, 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grows.part");
        let first = PART_SIZE as usize + 100;
        append(&path, &data[..first]);
        let uploader = PartUploader::start(
            Arc::clone(&f.store.inner),
            "grows".to_owned(),
            path.clone(),
            first as u64,
        );
        // One full part staged: it goes up while the file is still growing.
        assert_eq!(f.wait_for_parts("grows", 1).await, [1]);
        append(&path, &data[first..]);
        uploader.staged(data.len() as u64);
        assert_eq!(f.wait_for_parts("grows", 2).await, [1, 2]);
        assert!(f.object("grows").await.is_none(), "visible before complete");

        uploader.complete(data.len() as u64).await.unwrap();
        let (bytes, etag) = f.object("grows").await.unwrap();
        assert!(bytes == data, "the parts were joined into other bytes");
        assert!(etag.ends_with("-3"), "not a 3-part upload: ETag {etag}");
        assert!(f.open_uploads().await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_aborts_the_open_upload() {
        let Some(f) = Fixture::start("").await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cancelled.part");
        append(&path, &some_bytes(PART_SIZE as usize + 1, 2));
        let uploader = PartUploader::start(
            Arc::clone(&f.store.inner),
            "cancelled".to_owned(),
            path,
            PART_SIZE + 1,
        );
        assert_eq!(f.wait_for_parts("cancelled", 1).await, [1]);
        uploader.cancel().await;
        assert!(f.open_uploads().await.is_empty(), "the upload is still open");
        assert!(f.keys().await.is_empty(), "objects left: {:?}", f.keys().await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_upload_is_a_remote_error_and_keeps_the_breaker_closed() {
        let Some(f) = Fixture::start("").await else {
            return;
        };
        let store = f.store_for("no-such-bucket").await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refused.part");
        append(&path, b"ten bytes!");
        let uploader = PartUploader::start(Arc::clone(&store.inner), "refused".to_owned(), path, 10);
        let err = uploader.complete(10).await.unwrap_err();
        let BlobError::Remote(message) = &err else {
            panic!("a missing bucket is {err:?}");
        };
        assert!(
            message.starts_with(&format!(
                "starting the upload of refused in {}: NoSuchBucket",
                store.location()
            )),
            "{message}"
        );
        // S3 answered: the bucket's server is reachable, only this bucket is not there.
        store.inner.check().unwrap();
    }
}
