//! The download engine every ecosystem's files go through: a file with a known source (and,
//! usually, sha256) is served from the blob store when stored; otherwise one download per blob
//! fetches it while every waiting client reads along.
//!
//! How a first download is shared: bytes go to the blob writer's spool file; each waiting client
//! reads that file with positioned reads up to the published `available` offset (so memory stays
//! bounded and a slow client never slows the others). The newest chunk is always held back:
//! `available` trails the bytes written by the last chunk until the writer has verified the
//! sha256 and committed, so no client ever receives a complete file with wrong bytes. On any
//! failure the waiting clients' streams end in an error, which cuts their connections.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::runtime::Handle;

use super::ingest::{Ingest, IngestError, Kept, SizeLimit, Staged};
use super::maintenance::Evictor;
use super::spool::{Spool, SpoolStream};
use super::{CacheCounters, CacheError, CacheOutcome, blocking, unix_now};
use crate::metrics::{Flight, METRICS};
use crate::storage::Catalogue;
use crate::storage::blob::{BlobBody, BlobError, BlobStore, RangeRequest};
use crate::storage::catalogue::BlobAccess;
use crate::upstream::{FileClient, UpstreamError, UrlOrigin, redact};

/// How often batched blob access times are written to the catalogue.
pub const ACCESS_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// The largest file fetched when nothing says how big it is.
pub const MAX_UNSIZED_BYTES: u64 = 1024 * 1024 * 1024;

/// What the HTTP layer sends.
pub enum FileAnswer {
    /// The blob is stored: serve it (an open file when the store is local).
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

/// Work on a download's verified bytes before they are committed, given their sha256 and the
/// staged file (a wheel's metadata is read from it, whatever the store then does with the file).
pub type AfterVerify = Box<dyn FnOnce(String, PathBuf) -> BoxFuture<'static, ()> + Send + Sync>;

/// Where a file comes from and what it must hash to.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: String,
    pub origin: UrlOrigin,
    /// `None` for metadata an index announced without a hash and for provenance objects: then
    /// the bytes are trusted on first download and stored under their own hash.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    /// The most bytes taken when `size` is unknown: [`MAX_UNSIZED_BYTES`] for a file, less for a
    /// small document.
    pub max_size: u64,
}

/// The blob store, the downloads into it, and the record of what is read from it.
pub struct Downloads {
    catalogue: Catalogue,
    store: Arc<dyn BlobStore>,
    ingest: Ingest,
    client: FileClient,
    runtime: Handle,
    counters: Arc<CacheCounters>,
    downloads: DownloadRegistry,
    /// Blob reads since the last flush, by sha256.
    accesses: Arc<Mutex<HashMap<String, BlobAccess>>>,
}

impl Downloads {
    pub fn new(
        catalogue: Catalogue,
        store: Arc<dyn BlobStore>,
        client: FileClient,
        counters: Arc<CacheCounters>,
        runtime: Handle,
    ) -> Self {
        Self {
            ingest: Ingest::new(Arc::clone(&store), catalogue.clone(), Arc::clone(&counters)),
            catalogue,
            store,
            client,
            runtime,
            counters,
            downloads: Arc::default(),
            accesses: Arc::default(),
        }
    }

    /// How blobs are made in this store.
    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// Answers the file `source` names: the stored blob, else a download. With `complete_first`,
    /// a file that is not stored yet is downloaded completely before the answer (for Range and
    /// HEAD). `range` reaches stores that stream (S3), so they send only the bytes asked for.
    pub async fn open(
        &self,
        source: &Source,
        after_verify: Option<AfterVerify>,
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
            .join_or_start(source.download_key(), source, after_verify)
            .await?;
        self.counters.count(CacheOutcome::Miss);
        if complete_first {
            let sha256 = download.finished().await?;
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
        download.started().await?;
        Ok(FileAnswer::Streaming {
            stream: Spool::reader(&download),
            size: source.size,
            sha256: source.sha256.clone(),
        })
    }

    /// Downloads `source` completely (joining a download under way) and returns its sha256.
    pub async fn fetch(&self, source: &Source) -> Result<String, CacheError> {
        let download = self.join_or_start(source.download_key(), source, None).await?;
        download.finished().await
    }

    /// The local file of a stored blob, if the store keeps it as one; not counted as a read.
    pub async fn local_file(&self, sha256: &str) -> Result<Option<PathBuf>, CacheError> {
        match self.store.get(sha256, None).await {
            Ok(Some(BlobBody::File { path, .. })) => Ok(Some(path)),
            Ok(_) => Ok(None),
            Err(e) => Err(CacheError::Storage(e.to_string())),
        }
    }

    /// The stored blob `sha256`, counting the access.
    pub async fn stored_blob(&self, sha256: &str) -> Result<Option<BlobBody>, CacheError> {
        self.stored(sha256, None).await
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

    async fn join_or_start(
        &self,
        key: String,
        source: &Source,
        after_verify: Option<AfterVerify>,
    ) -> Result<Arc<Spool>, CacheError> {
        if let Some(download) = self.in_progress(&key) {
            METRICS.joined(Flight::Download);
            return Ok(download);
        }
        let limit = source
            .size
            .map_or(SizeLimit::AtMost(source.max_size), SizeLimit::Exact);
        let staged = self
            .ingest
            .stage(source.sha256.as_deref(), limit)
            .await
            .map_err(|e| CacheError::Storage(e.to_string()))?;
        let spool_path = staged.spool_path().to_owned();
        let download = Arc::new(blocking(move || Ok(Spool::open(&spool_path)?)).await?);
        {
            let mut downloads = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(existing) = downloads.get(&key) {
                // Another request started the same download meanwhile: use it, drop ours
                // (dropping an uncommitted blob removes its spool).
                METRICS.joined(Flight::Download);
                return Ok(Arc::clone(existing));
            }
            downloads.insert(key.clone(), Arc::clone(&download));
        }
        let task = Transfer {
            download: Arc::clone(&download),
            client: self.client.clone(),
            counters: Arc::clone(&self.counters),
            url: source.url.clone(),
            origin: source.origin,
            after_verify,
        };
        // On the background runtime: clients that leave do not stop the download for the others.
        self.runtime
            .spawn(task.run(staged, Arc::clone(&self.downloads), key));
        Ok(download)
    }

    fn in_progress(&self, key: &str) -> Option<Arc<Spool>> {
        self.downloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Removes a stored blob (an admin evicting a file); the next request downloads it again. A
    /// blob being downloaded is left alone.
    pub async fn evict(&self, sha256: String) -> Result<Eviction, CacheError> {
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
        tracing::info!(%sha256, "evicted a blob on request");
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

/// What [`Downloads::evict`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    Removed { size: u64 },
    NotStored,
    Downloading,
}

/// What [`Downloads::collect_garbage`] did.
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

/// The work of one download, run on the background runtime.
struct Transfer {
    download: Arc<Spool>,
    client: FileClient,
    counters: Arc<CacheCounters>,
    url: String,
    origin: UrlOrigin,
    after_verify: Option<AfterVerify>,
}

impl Transfer {
    async fn run(mut self, mut staged: Staged, downloads: DownloadRegistry, key: String) {
        let outcome = match self.receive(&mut staged).await {
            Ok(()) => self.keep(staged).await,
            Err(e) => {
                staged.abort().await;
                Err(e)
            }
        };
        let progress = match outcome {
            Ok(Kept::Stored { sha256, size }) => {
                tracing::info!(url = %redact(&self.url), sha256 = %sha256, size, "file stored");
                Ok((size, sha256))
            }
            // Bytes that hash right still go to the waiting clients; the next request fetches again.
            Ok(Kept::Unstored { sha256, size }) => {
                tracing::warn!(url = %redact(&self.url), sha256 = %sha256, "served without storing: the blob store could not keep the file");
                Ok((size, sha256))
            }
            Err(error) => {
                self.counters.count_download_failure();
                tracing::warn!(url = %redact(&self.url), error = %error, "download failed; nothing stored");
                Err(error)
            }
        };
        // Leave the registry before publishing the end: a request that sees this download fail
        // and retries must start a new one, and after a commit the store already has the blob.
        downloads.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        match progress {
            Ok((size, sha256)) => self.download.finish(size, sha256),
            Err(error) => self.download.fail(error),
        }
    }

    /// Runs the after-verify work on verified bytes (while the staged file is still there),
    /// then commits them.
    async fn keep(&mut self, staged: Staged) -> Result<Kept, CacheError> {
        if let Some(sha256) = staged.verified()
            && let Some(after_verify) = self.after_verify.take()
        {
            after_verify(sha256, staged.spool_path().to_owned()).await;
        }
        staged.commit().await.map_err(|e| self.failed(e))
    }

    /// What a download failure means to the clients waiting on it: a timeout stays a timeout
    /// (504), the upstream's other faults are 502.
    fn failed(&self, error: IngestError) -> CacheError {
        match error {
            IngestError::TimedOut(detail) => CacheError::Upstream(UpstreamError::Timeout {
                index: redact(&self.url),
                detail,
            }),
            other => CacheError::UpstreamData(other.to_string()),
        }
    }

    /// Streams the upstream body in, publishing all but the newest chunk.
    async fn receive(&self, staged: &mut Staged) -> Result<(), CacheError> {
        let response = self
            .client
            .fetch(&self.url, self.origin)
            .await
            .map_err(|e| match e.is_timeout() {
                true => CacheError::Upstream(e),
                false => CacheError::UpstreamData(e.to_string()),
            })?;
        staged
            .receive(response, |available| self.download.publish(available))
            .await
            .map_err(|e| self.failed(e))
    }
}
