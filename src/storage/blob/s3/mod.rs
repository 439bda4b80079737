//! Blobs in an S3-compatible bucket: `{prefix}sha256/ab/cd/<sha256>`, the local layout's keys.
//!
//! Bytes are staged in a local file first (the download flow serves waiting clients from it) and
//! uploaded as they arrive: once `part_size` bytes are staged a multipart upload starts, and each
//! full part goes up while the download goes on. The object appears only at commit, after the
//! sha256 is checked: a small blob is then sent with one `PutObject` carrying its sha256 (which S3
//! checks again), a large one's multipart upload is completed, or aborted on a mismatch, so a
//! failed or wrong download never leaves an object behind.
//!
//! A bucket that cannot be reached opens a breaker for [`RETRY_AFTER`]: meanwhile operations fail
//! at once with [`BlobError::Unavailable`] instead of each waiting for a timeout, and the first
//! one after it tries the bucket again, so recovery needs nobody.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream as S3Body, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::local::LocalBlobStore;
use super::staging::{StagedFile, unique_name};
use super::{BlobBody, BlobEntry, BlobError, BlobStore, BlobWriter, ByteRange, ByteStream, validate_key};
use crate::config::S3Config;

/// How long a bucket that could not be reached is left alone before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const HEALTH_PROBE: &[u8] = b"pkgmirror blob store health probe\n";

/// An upload `gc --s3-orphans` finds still open after this long was left by a process that died.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Clone)]
pub struct S3BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    bucket: String,
    /// Empty, or ending in `/`.
    prefix: String,
    part_size: u64,
    /// Where blobs are staged before upload.
    staging: PathBuf,
    /// "s3://bucket/prefix at endpoint", for messages.
    location: String,
    breaker: Mutex<Option<(Instant, String)>>,
}

/// An incomplete multipart upload (see `cache gc --s3-orphans`).
#[derive(Debug, Clone)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

impl S3BlobStore {
    /// Builds the client (credentials from the AWS SDK's standard chain: the `AWS_*` variables,
    /// profiles, instance roles) and prepares `staging`, removing spools an earlier run left.
    /// Does not touch the bucket: [`BlobStore::health`] is the start-up check.
    pub async fn connect(config: &S3Config, staging: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(staging).map_err(|e| BlobError::io("creating directory", staging, e))?;
        super::local::remove_leftover_spools(staging)?;
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(config.region.clone()));
        if !config.endpoint.is_empty() {
            loader = loader.endpoint_url(&config.endpoint);
        }
        let shared = loader.load().await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style)
            // Checksums only where the API needs them: S3-compatible servers differ in which of
            // the newer checksum headers they know, and pkgmirror checks sha256 itself.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // A download to a slow client pauses reading on purpose; that is not a stall.
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .download_enabled(false)
                    .build(),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .build();
        let mut prefix = config.prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let endpoint = if config.endpoint.is_empty() {
            "the default AWS endpoint".to_owned()
        } else {
            config.endpoint.clone()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client: Client::from_conf(s3_config),
                location: format!("bucket '{}' (prefix '{prefix}') at {endpoint}", config.bucket),
                bucket: config.bucket.clone(),
                prefix,
                part_size: config.part_size,
                staging: std::path::absolute(staging).unwrap_or_else(|_| staging.to_path_buf()),
                breaker: Mutex::new(None),
            }),
        })
    }

    /// "bucket 'b' (prefix 'p/') at http://…": where this store keeps its blobs.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// Starts a writer that, after its upload, moves the staged file into `local` instead of
    /// removing it (the tiered store's write to both tiers).
    pub(super) async fn put_keeping_in(
        &self,
        expected_sha256: Option<&str>,
        local: Option<Arc<LocalBlobStore>>,
    ) -> Result<S3BlobWriter, BlobError> {
        // Known up front, the key lets parts go up while the download runs.
        let target = expected_sha256.and_then(|sha256| self.inner.blob_key(sha256).ok());
        let staged = match &local {
            Some(local) => local.stage().await?,
            None => StagedFile::create(&self.inner.staging, "part").await?,
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

    /// Multipart uploads under the prefix that were never completed.
    pub async fn open_uploads(&self) -> Result<Vec<OpenUpload>, BlobError> {
        let inner = &self.inner;
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = inner
                .client
                .list_multipart_uploads()
                .bucket(&inner.bucket)
                .prefix(&inner.prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| inner.failed("listing uploads in", &inner.prefix, e))?;
            for upload in page.uploads() {
                if let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) {
                    found.push(OpenUpload {
                        key: key.to_owned(),
                        upload_id: upload_id.to_owned(),
                        initiated: upload.initiated().and_then(|t| SystemTime::try_from(*t).ok()),
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(found);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(found);
            }
        }
    }

    pub async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), BlobError> {
        let inner = &self.inner;
        inner
            .client
            .abort_multipart_upload()
            .bucket(&inner.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await
            .map_err(|e| inner.failed("aborting the upload of", &upload.key, e))?;
        Ok(())
    }

    /// Objects under `{prefix}tmp/` (health probes a killed process left), with their age.
    pub async fn temporary_objects(&self) -> Result<Vec<(String, Option<SystemTime>)>, BlobError> {
        let inner = &self.inner;
        let mut pages = inner
            .client
            .list_objects_v2()
            .bucket(&inner.bucket)
            .prefix(format!("{}tmp/", inner.prefix))
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| inner.failed("listing", &format!("{}tmp/", inner.prefix), e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    found.push((
                        key.to_owned(),
                        object.last_modified().and_then(|t| SystemTime::try_from(*t).ok()),
                    ));
                }
            }
        }
        Ok(found)
    }

    /// Deletes an object by its full key (temporary objects only; blobs go through `delete`).
    pub async fn delete_temporary(&self, key: &str) -> Result<(), BlobError> {
        if !key.starts_with(&format!("{}tmp/", self.inner.prefix)) {
            return Err(BlobError::Remote(format!(
                "refusing to delete {key}: not a temporary object"
            )));
        }
        self.inner.delete_key(key).await
    }
}

impl Inner {
    fn blob_key(&self, sha256: &str) -> Result<String, BlobError> {
        validate_key(sha256)?;
        Ok(format!(
            "{}sha256/{}/{}/{sha256}",
            self.prefix,
            &sha256[..2],
            &sha256[2..4]
        ))
    }

    /// Fails at once while the breaker is open.
    fn check(&self) -> Result<(), BlobError> {
        let breaker = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        match &*breaker {
            Some((since, why)) if since.elapsed() < RETRY_AFTER => Err(BlobError::Unavailable(format!(
                "{} is unavailable (retrying {}s after the last failure): {why}",
                self.location,
                RETRY_AFTER.as_secs()
            ))),
            _ => Ok(()),
        }
    }

    fn succeeded(&self) {
        let mut breaker = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        if breaker.take().is_some() {
            tracing::info!(location = %self.location, "S3 is reachable again");
        }
    }

    /// Maps an SDK error to a [`BlobError`]; one that says the bucket cannot be reached (no
    /// connection, a timeout, a 5xx) opens the breaker.
    fn failed<E, R>(&self, action: &str, key: &str, err: SdkError<E, R>) -> BlobError
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
        R: std::fmt::Debug + HasStatus + Send + Sync + 'static,
    {
        let unreachable = match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(e) => e.raw().status() >= 500,
            _ => false,
        };
        let detail = match err.code() {
            Some(code) => format!("{code}: {}", err.message().unwrap_or("no message")),
            None => DisplayErrorContext(&err).to_string(),
        };
        let message = format!("{action} {key} in {}: {detail}", self.location);
        if unreachable {
            let mut breaker = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
            if breaker.is_none() {
                tracing::warn!(location = %self.location, error = %detail, "S3 cannot be reached; serving without it");
            }
            *breaker = Some((Instant::now(), detail));
            BlobError::Unavailable(message)
        } else {
            BlobError::Remote(message)
        }
    }

    async fn head_key(&self, key: &str) -> Result<Option<u64>, BlobError> {
        self.check()?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                self.succeeded();
                Ok(Some(out.content_length().unwrap_or(0).max(0) as u64))
            }
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => {
                self.succeeded();
                Ok(None)
            }
            Err(e) => Err(self.failed("reading", key, e)),
        }
    }

    async fn delete_key(&self, key: &str) -> Result<(), BlobError> {
        self.check()?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.failed("deleting", key, e))?;
        self.succeeded();
        Ok(())
    }

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

/// The status of a raw response, for telling "S3 is down" (5xx) from "S3 said no".
pub trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    fn name(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, expected_sha256: Option<&str>) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(self.put_keeping_in(expected_sha256, None).await?))
    }

    async fn get(&self, sha256: &str, range: Option<ByteRange>) -> Result<Option<BlobBody>, BlobError> {
        let inner = &self.inner;
        let key = inner.blob_key(sha256)?;
        inner.check()?;
        let mut request = inner.client.get_object().bucket(&inner.bucket).key(&key);
        if let Some(range) = range {
            request = request.range(format!("bytes={}-{}", range.start, range.end));
        }
        let out = match request.send().await {
            Ok(out) => out,
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => {
                inner.succeeded();
                return Ok(None);
            }
            Err(e) => return Err(inner.failed("reading", &key, e)),
        };
        inner.succeeded();
        let length = out.content_length().unwrap_or(0).max(0) as u64;
        let size = match (range, out.content_range()) {
            (Some(_), Some(content_range)) => total_of(content_range).ok_or_else(|| {
                BlobError::Remote(format!(
                    "reading {key}: unexpected Content-Range {content_range:?}"
                ))
            })?,
            _ => length,
        };
        Ok(Some(BlobBody::Stream {
            size,
            range,
            stream: body_stream(out.body, key),
        }))
    }

    async fn head(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        let key = self.inner.blob_key(sha256)?;
        self.inner.head_key(&key).await
    }

    async fn delete(&self, sha256: &str) -> Result<bool, BlobError> {
        let key = self.inner.blob_key(sha256)?;
        // DeleteObject succeeds whether or not the key exists; the caller wants to know.
        if self.inner.head_key(&key).await?.is_none() {
            return Ok(false);
        }
        self.inner.delete_key(&key).await?;
        Ok(true)
    }

    async fn list(&self) -> Result<Vec<BlobEntry>, BlobError> {
        let inner = &self.inner;
        inner.check()?;
        let root = format!("{}sha256/", inner.prefix);
        let mut pages = inner
            .client
            .list_objects_v2()
            .bucket(&inner.bucket)
            .prefix(&root)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| inner.failed("listing", &root, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                // Only keys where `get` would look: `ab/cd/<sha256>` with matching pairs.
                let Some(sha256) = key.strip_prefix(&root).and_then(|rest| rest.rsplit('/').next()) else {
                    continue;
                };
                if inner.blob_key(sha256).is_ok_and(|expected| expected == key) {
                    found.push(BlobEntry {
                        sha256: sha256.to_owned(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        }
        inner.succeeded();
        Ok(found)
    }

    async fn quarantine(&self, sha256: &str) -> Result<bool, BlobError> {
        let inner = &self.inner;
        let key = inner.blob_key(sha256)?;
        if inner.head_key(&key).await?.is_none() {
            return Ok(false);
        }
        let dest = format!("{}quarantine/{sha256}", inner.prefix);
        inner
            .client
            .copy_object()
            .bucket(&inner.bucket)
            .key(&dest)
            .copy_source(copy_source(&inner.bucket, &key))
            .send()
            .await
            .map_err(|e| inner.failed("copying to quarantine", &key, e))?;
        inner.delete_key(&key).await?;
        tracing::warn!(sha256, dest = %dest, "blob quarantined");
        Ok(true)
    }

    fn layers(&self) -> Vec<&dyn BlobStore> {
        vec![self]
    }

    /// Writes, reads back and deletes a small object: reachable, writable and readable. Runs
    /// even while the breaker is open (it is how `/health` sees the bucket come back).
    async fn health(&self) -> Result<(), BlobError> {
        let inner = &self.inner;
        let key = format!("{}tmp/{}", inner.prefix, unique_name("probe"));
        let written = inner
            .client
            .put_object()
            .bucket(&inner.bucket)
            .key(&key)
            .body(S3Body::from_static(HEALTH_PROBE))
            .send()
            .await;
        written.map_err(|e| inner.failed("writing the health probe", &key, e))?;
        let read = inner
            .client
            .get_object()
            .bucket(&inner.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| inner.failed("reading the health probe", &key, e))?
            .body
            .collect()
            .await
            .map_err(|e| {
                BlobError::Unavailable(format!(
                    "reading the health probe {key} in {}: {e}",
                    inner.location
                ))
            })?
            .into_bytes();
        let deleted = inner
            .client
            .delete_object()
            .bucket(&inner.bucket)
            .key(&key)
            .send()
            .await;
        deleted.map_err(|e| inner.failed("deleting the health probe", &key, e))?;
        if read.as_ref() != HEALTH_PROBE {
            return Err(BlobError::Remote(format!(
                "the health probe {key} in {} read back other bytes",
                inner.location
            )));
        }
        inner.succeeded();
        Ok(())
    }
}

/// CopyObject's source, `bucket/key`, URL-encoded as S3 wants it (a prefix may hold any character).
fn copy_source(bucket: &str, key: &str) -> String {
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(&format!("{bucket}/{key}"), KEEP).to_string()
}

/// `bytes 0-99/1234` → 1234.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit('/').next()?.trim().parse().ok()
}

fn body_stream(body: S3Body, key: String) -> ByteStream {
    Box::pin(futures::stream::unfold(
        (body, key),
        |(mut body, key)| async move {
            match body.next().await {
                Some(Ok(bytes)) => Some((Ok(bytes), (body, key))),
                Some(Err(e)) => Some((
                    Err(BlobError::Unavailable(format!(
                        "reading {key}: the S3 connection broke: {e}"
                    ))),
                    (body, key),
                )),
                None => None,
            }
        },
    ))
}

/// Where a writer's multipart upload stands.
enum Upload {
    /// Fewer than `part_size` bytes staged so far.
    NotStarted,
    Running(PartUploader),
    /// The bucket could not be reached; the writer stages on but will not commit.
    Failed(String),
}

pub(super) struct S3BlobWriter {
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
        let key = self.inner.blob_key(expected_sha256)?;
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

/// Uploads a growing staged file part by part, on its own task, while the writer goes on.
struct PartUploader {
    /// (bytes staged, whether that is all): the task uploads every full part as it is staged
    /// and the last one once told the end. Dropping the sender tells it to abort.
    progress: watch::Sender<(u64, bool)>,
    task: JoinHandle<Result<SentParts, BlobError>>,
    inner: Arc<Inner>,
    /// The object the upload becomes.
    key: String,
}

impl PartUploader {
    fn start(inner: Arc<Inner>, key: String, path: PathBuf, staged: u64) -> Self {
        let (progress, updates) = watch::channel((staged, false));
        let task = tokio::spawn(upload_parts(Arc::clone(&inner), key.clone(), path, updates));
        Self {
            progress,
            task,
            inner,
            key,
        }
    }

    fn staged(&self, written: u64) {
        self.progress.send_replace((written, false));
    }

    /// Uploads what is left and completes the upload, making the object visible.
    async fn complete(self, size: u64) -> Result<(), BlobError> {
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
    async fn cancel(self) {
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
