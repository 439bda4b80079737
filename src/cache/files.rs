//! The file flow: a listed distribution file (or its `.metadata`) is served from the blob store
//! when stored; otherwise one download per blob fetches it while every waiting client reads along.
//!
//! How a first download is shared: bytes go to the blob writer's spool file; each waiting client
//! reads that file with positioned reads up to the published `available` offset (so memory stays
//! bounded and a slow client never slows the others). The newest chunk is always held back:
//! `available` trails the bytes written by the last chunk until the writer has verified the
//! sha256 and committed, so no client ever receives a complete file with wrong bytes. On any
//! failure the waiting clients' streams end in an error, which cuts their connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::runtime::Handle;

use super::maintenance::Evictor;
use super::simple::{PageRef, SimplePages};
use super::spool::{Spool, SpoolStream};
use super::{CacheCounters, CacheError, CacheOutcome, blocking, unix_now};
use crate::ecosystem::Ecosystem;
use crate::pypi::negotiate::Format;
use crate::pypi::wheel::extract_metadata;
use crate::storage::Catalogue;
use crate::storage::blob::{BlobBody, BlobError, BlobStore, BlobWriter, RangeRequest};
use crate::storage::catalogue::{BlobAccess, FileRecord};
use crate::upstream::{FileClient, UrlOrigin, redact};

/// The ecosystem of the files looked up by project and filename (`/simple/{project}/{filename}`);
/// hex tarballs come in through `open_verified` with their checksum instead.
const LOOKUP_ECOSYSTEM: &str = Ecosystem::Pypi.as_str();
/// A file not on its project's page triggers at most one forced page refresh per this interval.
pub(crate) const UNLISTED_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// How often batched blob access times are written to the catalogue.
pub const ACCESS_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// A distribution file, or its PEP 658 core metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dist,
    Metadata,
}

/// What the HTTP layer sends.
pub enum FileAnswer {
    /// The blob is stored: serve it (zero-copy when it is a local file).
    Stored {
        body: BlobBody,
        sha256: String,
        outcome: CacheOutcome,
    },
    /// The blob is being downloaded: stream it as it arrives. `size` is known when the index gave it.
    Streaming {
        stream: SpoolStream,
        size: Option<u64>,
        sha256: Option<String>,
    },
}

/// Downloads under way, by blob (or URL, see [`Source::download_key`]).
type DownloadRegistry = Arc<Mutex<HashMap<String, Arc<Spool>>>>;

/// Where a file comes from and what it must hash to.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: String,
    pub origin: UrlOrigin,
    /// `None` only for metadata an index announced without a hash: then the bytes are trusted
    /// on first download and stored under their own hash.
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

pub struct FileCache {
    pages: Arc<SimplePages>,
    catalogue: Catalogue,
    store: Arc<dyn BlobStore>,
    client: FileClient,
    runtime: Handle,
    counters: Arc<CacheCounters>,
    downloads: DownloadRegistry,
    /// Projects whose page was refreshed for an unlisted file lately (names come from requests,
    /// so the set is bounded and entries expire).
    forced_refreshes: moka::future::Cache<String, ()>,
    /// Blob reads since the last flush, by sha256.
    accesses: Arc<Mutex<HashMap<String, BlobAccess>>>,
}

impl FileCache {
    pub fn new(
        pages: Arc<SimplePages>,
        catalogue: Catalogue,
        store: Arc<dyn BlobStore>,
        client: FileClient,
        counters: Arc<CacheCounters>,
        runtime: Handle,
    ) -> Self {
        Self {
            pages,
            catalogue,
            store,
            client,
            runtime,
            counters,
            downloads: Arc::default(),
            forced_refreshes: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(UNLISTED_REFRESH_INTERVAL)
                .build(),
            accesses: Arc::default(),
        }
    }

    /// Finds `filename` of `project` (normalized) and answers it. With `complete_first`, a file
    /// that is not stored yet is downloaded completely before the answer (for Range and HEAD).
    /// `range` reaches stores that stream (S3), so they send only the bytes asked for.
    pub async fn open(
        &self,
        project: &str,
        filename: &str,
        kind: FileKind,
        complete_first: bool,
        range: Option<RangeRequest>,
    ) -> Result<FileAnswer, CacheError> {
        let entry = self.listed_file(project, filename).await?;
        if kind == FileKind::Metadata && !entry.has_metadata {
            return self.extracted_metadata(project, &entry).await;
        }
        let source = source_of(&entry, kind);
        // A wheel whose index offers no metadata gets it extracted once stored (PEP 658).
        let extract_after =
            (kind == FileKind::Dist && !entry.has_metadata && entry.filename.ends_with(".whl"))
                .then(|| (project.to_owned(), entry.filename.clone()));
        self.open_source(&source, extract_after, complete_first, range)
            .await
    }

    /// Answers a file of another ecosystem (a hex tarball) whose source and sha256 its own flow
    /// established: the same store, single-flight download and hash gate as PyPI files.
    pub async fn open_verified(
        &self,
        source: &Source,
        complete_first: bool,
        range: Option<RangeRequest>,
    ) -> Result<FileAnswer, CacheError> {
        if source.sha256.is_none() {
            return Err(CacheError::Internal(format!(
                "{} has no sha256 to verify it against",
                redact(&source.url)
            )));
        }
        self.open_source(source, None, complete_first, range).await
    }

    /// The stored blob `sha256`, counted as a hit (a file another flow downloaded itself).
    pub async fn stored_blob(&self, sha256: &str) -> Result<Option<BlobBody>, CacheError> {
        self.stored(sha256, None).await
    }

    async fn open_source(
        &self,
        source: &Source,
        extract_after: Option<(String, String)>,
        complete_first: bool,
        range: Option<RangeRequest>,
    ) -> Result<FileAnswer, CacheError> {
        if let Some(sha256) = &source.sha256
            && let Some(body) = self.stored(sha256, range.zip(source.size)).await?
        {
            self.counters.count(CacheOutcome::Hit);
            return Ok(FileAnswer::Stored {
                body,
                sha256: sha256.clone(),
                outcome: CacheOutcome::Hit,
            });
        }
        let download = self
            .join_or_start(source.download_key(), source, extract_after)
            .await?;
        self.counters.count(CacheOutcome::Miss);
        if complete_first {
            let sha256 = download.finished().await.map_err(CacheError::UpstreamData)?;
            let body = self
                .stored(&sha256, range.zip(source.size))
                .await?
                .ok_or_else(|| {
                    CacheError::StorageUnavailable(format!(
                        "{} was downloaded but the blob store could not keep it (see /health), \
                     so this HEAD or Range request cannot be answered now; a plain GET streams the file",
                        redact(&source.url)
                    ))
                })?;
            return Ok(FileAnswer::Stored {
                body,
                sha256,
                outcome: CacheOutcome::Miss,
            });
        }
        // Answer only once the download has something to send: a failure before the first byte
        // (refused URL, upstream 404, connection error) becomes a clear 502, not a cut connection.
        download.started().await.map_err(CacheError::UpstreamData)?;
        Ok(FileAnswer::Streaming {
            stream: Spool::reader(&download),
            size: source.size,
            sha256: source.sha256.clone(),
        })
    }

    /// The catalogue row of a listed file. A file not listed gets the page refreshed once (the
    /// project may have released since the page was cached), at most every few seconds per project.
    async fn listed_file(&self, project: &str, filename: &str) -> Result<FileRecord, CacheError> {
        if let Some(entry) = self.lookup(project, filename).await? {
            return Ok(entry);
        }
        let recently_forced = self.forced_refreshes.contains_key(project);
        if !recently_forced {
            self.forced_refreshes.insert(project.to_owned(), ()).await;
            self.pages
                .revalidate(PageRef::Project(project.to_owned()), Format::Json)
                .await?;
            if let Some(entry) = self.lookup(project, filename).await? {
                return Ok(entry);
            }
        }
        Err(CacheError::NotFound(format!(
            "'{filename}' is not listed on the page of project '{project}'"
        )))
    }

    async fn lookup(&self, project: &str, filename: &str) -> Result<Option<FileRecord>, CacheError> {
        let catalogue = self.catalogue.clone();
        let (project, filename) = (project.to_owned(), filename.to_owned());
        blocking(move || catalogue.project_file(LOOKUP_ECOSYSTEM, &project, &filename)).await
    }

    /// The stored blob, counting the access; `range` (with the blob's size from the index)
    /// asks a streaming store for just those bytes. A store that cannot be reached counts as not
    /// having the blob: the file then comes from upstream, streamed without being kept.
    async fn stored(
        &self,
        sha256: &str,
        range: Option<(RangeRequest, u64)>,
    ) -> Result<Option<BlobBody>, CacheError> {
        let range = range.and_then(|(range, size)| range.resolve(size));
        let body = match self.store.get(sha256, range).await {
            Ok(body) => body,
            Err(BlobError::Unavailable(reason)) => {
                tracing::debug!(sha256, %reason, "blob store unavailable; going upstream");
                return Ok(None);
            }
            Err(e) => return Err(CacheError::Storage(e.to_string())),
        };
        if let Some(body) = &body {
            let mut accesses = self.accesses.lock().unwrap_or_else(|p| p.into_inner());
            let access = accesses.entry(sha256.to_owned()).or_insert_with(|| BlobAccess {
                sha256: sha256.to_owned(),
                at: 0,
                hits: 0,
                size: body.size(),
            });
            access.at = unix_now();
            access.hits += 1;
        }
        Ok(body)
    }

    /// Writes the batched access times and hit counts to the catalogue. A blob read without a
    /// row gets one: with several nodes on one bucket, this node serves what another stored.
    pub async fn flush_accesses(&self) -> Result<(), CacheError> {
        let batch: Vec<BlobAccess> = {
            let mut accesses = self.accesses.lock().unwrap_or_else(|p| p.into_inner());
            accesses.drain().map(|(_, access)| access).collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        // A local store's blobs all have rows (reconciled at start), so a missing row there
        // means eviction just took the blob: it must not come back.
        let record_as = Some(self.store.name()).filter(|name| *name != "local");
        let catalogue = self.catalogue.clone();
        blocking(move || catalogue.touch_blobs(&batch, record_as)).await
    }

    /// Metadata pkgmirror extracts from the cached wheel itself, for wheels whose index offers none.
    async fn extracted_metadata(&self, project: &str, entry: &FileRecord) -> Result<FileAnswer, CacheError> {
        let unavailable = || {
            CacheError::NotFound(format!(
                "the index offers no core metadata for '{}' and pkgmirror has no cached wheel to read it from",
                entry.filename
            ))
        };
        let Some(wheel) = entry.sha256.clone().filter(|_| entry.filename.ends_with(".whl")) else {
            return Err(unavailable());
        };
        let catalogue = self.catalogue.clone();
        let key = wheel.clone();
        let known = blocking(move || catalogue.wheel_metadata(&key)).await?;
        if let Some(metadata) = &known
            && let Some(body) = self.stored(metadata, None).await?
        {
            let metadata = metadata.clone();
            self.counters.count(CacheOutcome::Hit);
            return Ok(FileAnswer::Stored {
                body,
                sha256: metadata,
                outcome: CacheOutcome::Hit,
            });
        }
        // Pages advertise an extract once it exists; if its blob and the wheel were evicted since,
        // fetch the wheel again rather than answer 404 to a client that was promised the metadata.
        if known.is_some() && self.stored(&wheel, None).await?.is_none() {
            let source = source_of(entry, FileKind::Dist);
            let download = self.join_or_start(source.download_key(), &source, None).await?;
            download.finished().await.map_err(CacheError::UpstreamData)?;
        }
        let metadata = self
            .extractor()
            .extract(project, &wheel, &entry.filename)
            .await?
            .ok_or_else(unavailable)?;
        let body = self.stored(&metadata, None).await?.ok_or_else(unavailable)?;
        self.counters.count(CacheOutcome::Miss);
        Ok(FileAnswer::Stored {
            body,
            sha256: metadata,
            outcome: CacheOutcome::Miss,
        })
    }

    fn extractor(&self) -> MetadataExtractor {
        MetadataExtractor {
            store: Arc::clone(&self.store),
            catalogue: self.catalogue.clone(),
            pages: Arc::clone(&self.pages),
        }
    }

    async fn join_or_start(
        &self,
        key: String,
        source: &Source,
        extract_after: Option<(String, String)>,
    ) -> Result<Arc<Spool>, CacheError> {
        if let Some(download) = self.in_progress(&key) {
            return Ok(download);
        }
        let writer = self
            .store
            .put(source.sha256.as_deref())
            .await
            .map_err(|e| CacheError::Storage(e.to_string()))?;
        let spool_path = writer.spool_path().to_owned();
        let download = Arc::new(blocking(move || Ok(Spool::open(&spool_path)?)).await?);
        {
            let mut downloads = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(existing) = downloads.get(&key) {
                // Another request started the same download meanwhile: use it, drop ours
                // (dropping an uncommitted writer removes its spool).
                return Ok(Arc::clone(existing));
            }
            downloads.insert(key.clone(), Arc::clone(&download));
        }
        let task = Transfer {
            download: Arc::clone(&download),
            client: self.client.clone(),
            store_name: self.store.name(),
            catalogue: self.catalogue.clone(),
            counters: Arc::clone(&self.counters),
            url: source.url.clone(),
            origin: source.origin,
            sha256: source.sha256.clone(),
            size: source.size,
            extract_after: extract_after.map(|target| (self.extractor(), target)),
        };
        // On the background runtime: clients that leave do not stop the download for the others.
        self.runtime
            .spawn(task.run(writer, Arc::clone(&self.downloads), key));
        Ok(download)
    }

    fn in_progress(&self, key: &str) -> Option<Arc<Spool>> {
        self.downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Removes the stored bytes of one listed file (an admin evicting it); the next request
    /// downloads it again. A file being downloaded is left alone.
    pub async fn evict(&self, project: &str, filename: &str) -> Result<Eviction, CacheError> {
        // Only what the catalogue lists: evicting never asks an upstream.
        let entry = self.lookup(project, filename).await?.ok_or_else(|| {
            CacheError::NotFound(format!(
                "'{filename}' is not listed on the cached page of project '{project}'"
            ))
        })?;
        let Some(sha256) = entry.sha256 else {
            return Ok(Eviction::NotStored);
        };
        if self.downloading().contains(&sha256) {
            return Ok(Eviction::Downloading);
        }
        // A batched read would give the row back at the next flush (S3 and tiered stores).
        self.accesses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&sha256);
        let size = self
            .store
            .head(&sha256)
            .await
            .map_err(|e| CacheError::Storage(e.to_string()))?;
        self.store
            .delete(&sha256)
            .await
            .map_err(|e| CacheError::Storage(e.to_string()))?;
        let catalogue = self.catalogue.clone();
        let key = sha256.clone();
        let had_row = blocking(move || catalogue.delete_blob_rows(&[key])).await? > 0;
        tracing::info!(project, filename, %sha256, "evicted a file on request");
        Ok(match size {
            Some(size) => Eviction::Removed { size },
            None if had_row => Eviction::Removed { size: 0 },
            None => Eviction::NotStored,
        })
    }

    /// A garbage collection the server can run while serving: records batched reads, drops
    /// catalogue rows whose blob is gone, and (for a local store) evicts to `storage.max_size`.
    pub async fn collect_garbage(&self, evictor: Option<&Evictor>) -> Result<GcReport, CacheError> {
        self.flush_accesses().await?;
        // Rows first, then the listing: a download commits its blob before its row, so every row
        // read here whose blob is missing from the later listing really lost its blob.
        let catalogue = self.catalogue.clone();
        let rows = blocking(move || catalogue.blob_keys()).await?;
        let listed = self
            .store
            .list()
            .await
            .map_err(|e| CacheError::Storage(e.to_string()))?;
        let mut missing = rows;
        for entry in &listed {
            missing.remove(&entry.sha256);
        }
        let missing: Vec<String> = missing.into_iter().collect();
        let catalogue = self.catalogue.clone();
        let rows_dropped = blocking(move || catalogue.delete_blob_rows(&missing)).await? as u64;
        let evicted = match evictor {
            Some(evictor) => Some(evictor.run(&self.downloading()).await?),
            None => None,
        };
        Ok(GcReport {
            blobs: listed.len() as u64,
            rows_dropped,
            evicted: evicted.as_ref().map_or(0, |e| e.evicted.len() as u64),
            evicted_bytes: evicted.as_ref().map_or(0, |e| e.evicted_bytes),
        })
    }

    /// Downloads under way (for `/health`).
    pub fn downloads_in_progress(&self) -> usize {
        self.downloads.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Which blob store serves files, and whether it can be read and written now (`/health`).
    pub async fn storage_health(&self) -> (&'static str, Result<(), String>) {
        (
            self.store.name(),
            self.store.health().await.map_err(|e| e.to_string()),
        )
    }

    /// The local tier's budget and use, for a tiered store.
    pub fn tier_stats(&self) -> Option<crate::storage::blob::TierStats> {
        self.store.tier_stats()
    }

    /// The sha256 of every blob being downloaded now: eviction must leave these alone. (A blob
    /// being *served* needs no such guard: its reader holds an open file, which survives removal.)
    pub fn downloading(&self) -> std::collections::HashSet<String> {
        self.downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|key| !key.starts_with("url:"))
            .cloned()
            .collect()
    }
}

/// What [`FileCache::evict`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    Removed { size: u64 },
    NotStored,
    Downloading,
}

/// What [`FileCache::collect_garbage`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs the store holds.
    pub blobs: u64,
    pub rows_dropped: u64,
    pub evicted: u64,
    pub evicted_bytes: u64,
}

impl Source {
    /// Downloads are shared per blob; metadata without a hash is shared per URL.
    fn download_key(&self) -> String {
        self.sha256.clone().unwrap_or_else(|| format!("url:{}", self.url))
    }
}

/// Where a listed file (or its index-offered metadata) is fetched from.
fn source_of(entry: &FileRecord, kind: FileKind) -> Source {
    match kind {
        FileKind::Dist => Source {
            url: entry.url.clone(),
            origin: UrlOrigin::IndexPage,
            sha256: entry.sha256.clone(),
            size: entry.size,
        },
        // PEP 658: the metadata file lives next to the distribution, at `{url}.metadata`.
        FileKind::Metadata => Source {
            url: format!("{}.metadata", entry.url),
            origin: UrlOrigin::IndexPage,
            sha256: entry.metadata_sha256.clone(),
            size: None,
        },
    }
}

/// Reads `*.dist-info/METADATA` out of a stored wheel, stores it as a blob, records it, and has
/// the project's page rendered again so it advertises the metadata from then on.
#[derive(Clone)]
struct MetadataExtractor {
    store: Arc<dyn BlobStore>,
    catalogue: Catalogue,
    pages: Arc<SimplePages>,
}

impl MetadataExtractor {
    /// The metadata's sha256, or `None` when the wheel is not stored as a local file or has no
    /// metadata. (A wheel only in S3 is not fetched for this: new downloads are read while
    /// still staged, see [`Transfer::run`].)
    async fn extract(
        &self,
        project: &str,
        wheel: &str,
        filename: &str,
    ) -> Result<Option<String>, CacheError> {
        let storage = |e: BlobError| CacheError::Storage(e.to_string());
        let Some(BlobBody::File { path, .. }) = self.store.get(wheel, None).await.map_err(storage)? else {
            return Ok(None);
        };
        self.extract_from(project, wheel, filename, path).await
    }

    /// Like `extract`, from the wheel's bytes at `path` (verified to hash to `wheel`).
    async fn extract_from(
        &self,
        project: &str,
        wheel: &str,
        filename: &str,
        path: std::path::PathBuf,
    ) -> Result<Option<String>, CacheError> {
        let storage = |e: BlobError| CacheError::Storage(e.to_string());
        let name = filename.to_owned();
        let read = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            extract_metadata(std::io::BufReader::new(file), &name).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| CacheError::Internal(e.to_string()))?;
        let metadata = match read {
            Ok(metadata) => metadata,
            Err(reason) => {
                tracing::warn!(file = %filename, %reason, "no metadata can be extracted from this wheel");
                return Ok(None);
            }
        };
        let mut writer = self.store.put(None).await.map_err(storage)?;
        writer.write(&metadata).await.map_err(storage)?;
        let sha256 = writer.digest_so_far();
        let size = writer.commit(&sha256).await.map_err(storage)?;
        let catalogue = self.catalogue.clone();
        let (store, wheel_key, metadata_key) = (self.store.name(), wheel.to_owned(), sha256.clone());
        blocking(move || {
            catalogue.record_blob(&metadata_key, size, store, unix_now())?;
            catalogue.record_wheel_metadata(&wheel_key, &metadata_key, unix_now())
        })
        .await?;
        self.pages
            .forget_rendering(PageRef::Project(project.to_owned()))
            .await?;
        tracing::info!(file = %filename, metadata = %sha256, "extracted core metadata from the wheel");
        Ok(Some(sha256))
    }
}

/// The work of one download, run on the background runtime.
struct Transfer {
    download: Arc<Spool>,
    client: FileClient,
    store_name: &'static str,
    catalogue: Catalogue,
    counters: Arc<CacheCounters>,
    url: String,
    origin: UrlOrigin,
    sha256: Option<String>,
    size: Option<u64>,
    /// (project, filename) of a wheel whose metadata to extract once it is stored.
    extract_after: Option<(MetadataExtractor, (String, String))>,
}

impl Transfer {
    async fn run(self, mut writer: Box<dyn BlobWriter>, downloads: DownloadRegistry, key: String) {
        let outcome = match self.receive(writer.as_mut()).await {
            Ok(()) => self.keep(writer).await,
            Err(e) => {
                writer.abort().await;
                Err(e)
            }
        };
        let progress = match outcome {
            Ok((sha256, size, stored)) => {
                if stored {
                    let catalogue = self.catalogue.clone();
                    let (sha, store) = (sha256.clone(), self.store_name);
                    if let Err(e) =
                        blocking(move || catalogue.record_blob(&sha, size, store, unix_now())).await
                    {
                        // The blob is stored and verified; only its statistics row is missing.
                        tracing::warn!(sha256 = %sha256, error = %e, "could not record a stored blob");
                    }
                    tracing::info!(url = %redact(&self.url), sha256 = %sha256, size, "file stored");
                }
                Ok((size, sha256))
            }
            Err(message) => {
                self.counters.count_download_failure();
                tracing::warn!(url = %redact(&self.url), error = %message, "download failed; nothing stored");
                Err(message)
            }
        };
        // Leave the registry before publishing the end: a request that sees this download fail
        // and retries must start a new one, and after a commit the store already has the blob.
        downloads.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        match progress {
            Ok((size, sha256)) => self.download.finish(size, sha256),
            Err(message) => self.download.fail(message),
        }
    }

    /// Verifies and commits a complete download: (sha256, size, whether it is stored). Bytes that
    /// hash right still go to the waiting clients when the store fails to keep them (a full
    /// disk, S3 unreachable): they are counted as unstored, and the next request fetches again.
    async fn keep(&self, writer: Box<dyn BlobWriter>) -> Result<(String, u64, bool), String> {
        let sha256 = self.sha256.clone().unwrap_or_else(|| writer.digest_so_far());
        let size = writer.written();
        let verified = writer.digest_so_far() == sha256;
        // Read while the staged file is still there, whatever the store does with it at commit.
        if verified && let Some((extractor, (project, filename))) = &self.extract_after {
            let path = writer.spool_path().to_owned();
            if let Err(e) = extractor.extract_from(project, &sha256, filename, path).await {
                tracing::warn!(file = %filename, error = %e, "could not extract the wheel's metadata");
            }
        }
        match writer.commit(&sha256).await {
            Ok(size) => Ok((sha256, size, true)),
            Err(e @ BlobError::HashMismatch { .. }) => {
                self.counters.count_hash_mismatch();
                Err(e.to_string())
            }
            Err(e) if verified => {
                self.counters.count_unstored();
                tracing::warn!(url = %redact(&self.url), sha256 = %sha256, error = %e, "served without storing: the blob store could not keep the file");
                Ok((sha256, size, false))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Streams the upstream body into the writer, publishing all but the newest chunk.
    async fn receive(&self, writer: &mut dyn BlobWriter) -> Result<(), String> {
        let response = self
            .client
            .fetch(&self.url, self.origin)
            .await
            .map_err(|e| e.to_string())?;
        if let (Some(expected), Some(announced)) = (self.size, response.content_length())
            && expected != announced
        {
            return Err(format!(
                "the upstream announces {announced} bytes but the index says {expected}"
            ));
        }
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| format!("the upstream connection broke: {}", e.without_url()))?;
            if let Some(expected) = self.size
                && writer.written() + chunk.len() as u64 > expected
            {
                return Err(format!(
                    "the upstream sent more than the {expected} bytes the index says"
                ));
            }
            writer.write(&chunk).await.map_err(|e| e.to_string())?;
            let available = writer.written() - chunk.len() as u64;
            self.download.publish(available);
        }
        if let Some(expected) = self.size
            && writer.written() != expected
        {
            return Err(format!(
                "the upstream sent {} bytes but the index says {expected}",
                writer.written()
            ));
        }
        Ok(())
    }
}
