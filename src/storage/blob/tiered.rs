//! A local directory in front of S3: the bucket is authoritative, the directory (L1) is a cache
//! of it kept within `storage.max_size` by least-recent use.
//!
//! New blobs go to both tiers: parts go up to S3 while the download runs, and at commit the
//! staged file moves into L1 once S3 has the object (so L1 never holds what S3 lacks). A read
//! that misses L1 streams from S3 to the client and fills L1 in the background, at most
//! [`FILL_WORKERS`] fills at a time. Evicting from L1 never touches S3.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use super::local::LocalBlobStore;
use super::s3::{S3BlobStore, S3BlobWriter};
use super::{BlobBody, BlobEntry, BlobError, BlobStore, BlobWriter, ByteRange, TierStats};

/// L1 fills running at once; a read that finds every worker busy is served from S3 unfilled.
pub const FILL_WORKERS: usize = 4;

#[derive(Clone)]
pub struct TieredBlobStore {
    l1: Arc<LocalBlobStore>,
    s3: S3BlobStore,
    shared: Arc<Shared>,
}

struct Shared {
    lru: Mutex<Lru>,
    max_bytes: u64,
    fill_workers: Arc<Semaphore>,
    /// Blobs being copied into L1 now, so one read starts one fill.
    filling: Mutex<HashSet<String>>,
    /// Fills run here (the server's background runtime), not on the request's worker.
    runtime: Handle,
    fills: AtomicU64,
    fill_failures: AtomicU64,
    evicted: AtomicU64,
}

/// What L1 holds, least recently used first.
#[derive(Default)]
struct Lru {
    /// (last access in unix seconds, tie-breaking sequence, sha256)
    order: BTreeSet<(u64, u64, String)>,
    /// sha256 → (last access, sequence, size)
    entries: HashMap<String, (u64, u64, u64)>,
    bytes: u64,
    sequence: u64,
}

impl Lru {
    fn insert(&mut self, sha256: &str, size: u64, at: u64) {
        self.remove(sha256);
        self.sequence += 1;
        self.order.insert((at, self.sequence, sha256.to_owned()));
        self.entries.insert(sha256.to_owned(), (at, self.sequence, size));
        self.bytes += size;
    }

    fn touch(&mut self, sha256: &str, size: u64) {
        self.insert(sha256, size, unix_now());
    }

    fn remove(&mut self, sha256: &str) -> bool {
        match self.entries.remove(sha256) {
            Some((at, sequence, size)) => {
                self.order.remove(&(at, sequence, sha256.to_owned()));
                self.bytes -= size;
                true
            }
            None => false,
        }
    }

    /// Takes least recently used blobs out until at most `max_bytes` remain.
    fn over_budget(&mut self, max_bytes: u64) -> Vec<String> {
        let mut out = Vec::new();
        while self.bytes > max_bytes {
            let Some((_, _, sha256)) = self.order.first().cloned() else {
                break;
            };
            self.remove(&sha256);
            out.push(sha256);
        }
        out
    }
}

impl TieredBlobStore {
    /// `last_access` (sha256 → unix seconds, from the catalogue) orders what L1 already holds,
    /// so least-recent use survives restarts; blobs it does not name count as oldest.
    pub async fn open(
        l1: LocalBlobStore,
        s3: S3BlobStore,
        max_bytes: u64,
        last_access: &HashMap<String, u64>,
        runtime: Handle,
    ) -> Result<Self, BlobError> {
        let mut lru = Lru::default();
        for entry in l1.list().await? {
            let at = last_access.get(&entry.sha256).copied().unwrap_or(0);
            lru.insert(&entry.sha256, entry.size, at);
        }
        let store = Self {
            l1: Arc::new(l1),
            s3,
            shared: Arc::new(Shared {
                lru: Mutex::new(lru),
                max_bytes,
                fill_workers: Arc::new(Semaphore::new(FILL_WORKERS)),
                filling: Mutex::default(),
                runtime,
                fills: AtomicU64::new(0),
                fill_failures: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            }),
        };
        store.evict_to_budget().await;
        Ok(store)
    }

    pub fn s3(&self) -> &S3BlobStore {
        &self.s3
    }

    pub fn l1(&self) -> &LocalBlobStore {
        &self.l1
    }

    /// Removes least recently used L1 copies until L1 fits `storage.max_size`; S3 keeps them.
    /// Returns the blobs evicted.
    pub async fn evict_to_budget(&self) -> Vec<String> {
        let victims = self.lru().over_budget(self.shared.max_bytes);
        for sha256 in &victims {
            // A reader holding the file keeps its bytes until it is done (Unix semantics).
            match self.l1.delete(sha256).await {
                Ok(_) => tracing::debug!(sha256, "evicted from the local tier"),
                Err(e) => tracing::warn!(sha256, error = %e, "could not evict from the local tier"),
            }
        }
        self.shared
            .evicted
            .fetch_add(victims.len() as u64, Ordering::Relaxed);
        victims
    }

    fn lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.shared.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Copies `sha256` from S3 into L1 in the background, unless it is being copied already or
    /// every fill worker is busy (the next read tries again).
    fn fill_later(&self, sha256: &str) {
        if !self
            .shared
            .filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha256.to_owned())
        {
            return;
        }
        let Ok(permit) = Arc::clone(&self.shared.fill_workers).try_acquire_owned() else {
            self.done_filling(sha256);
            tracing::debug!(
                sha256,
                "every fill worker is busy; served from S3 without filling"
            );
            return;
        };
        let (store, sha256) = (self.clone(), sha256.to_owned());
        self.shared.runtime.spawn(async move {
            match store.fill(&sha256).await {
                Ok(size) => {
                    store.shared.fills.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(sha256 = %sha256, size, "filled the local tier from S3");
                    store.evict_to_budget().await;
                }
                Err(e) => {
                    store.shared.fill_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(sha256 = %sha256, error = %e, "could not fill the local tier from S3");
                }
            }
            store.done_filling(&sha256);
            drop(permit);
        });
    }

    fn done_filling(&self, sha256: &str) {
        self.shared
            .filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sha256);
    }

    /// Streams the whole object into L1, where it lands only if it hashes to its name.
    async fn fill(&self, sha256: &str) -> Result<u64, BlobError> {
        let Some(BlobBody::Stream { mut stream, .. }) = self.s3.get(sha256, None).await? else {
            return Err(BlobError::Remote(format!(
                "{sha256} left S3 before it could be copied"
            )));
        };
        let mut writer = self.l1.put(Some(sha256)).await?;
        while let Some(chunk) = stream.next().await {
            writer.write(&chunk?).await?;
        }
        let size = writer.commit(sha256).await?;
        self.lru().touch(sha256, size);
        Ok(size)
    }
}

#[async_trait::async_trait]
impl BlobStore for TieredBlobStore {
    fn name(&self) -> &'static str {
        "tiered"
    }

    async fn put(&self, expected_sha256: Option<&str>) -> Result<Box<dyn BlobWriter>, BlobError> {
        let inner = self
            .s3
            .put_keeping_in(expected_sha256, Some(Arc::clone(&self.l1)))
            .await?;
        Ok(Box::new(TieredWriter {
            inner,
            store: self.clone(),
        }))
    }

    async fn get(&self, sha256: &str, range: Option<ByteRange>) -> Result<Option<BlobBody>, BlobError> {
        if let Some(body) = self.l1.get(sha256, range).await? {
            self.lru().touch(sha256, body.size());
            return Ok(Some(body));
        }
        let body = self.s3.get(sha256, range).await?;
        if body.is_some() {
            self.fill_later(sha256);
        }
        Ok(body)
    }

    async fn head(&self, sha256: &str) -> Result<Option<u64>, BlobError> {
        match self.l1.head(sha256).await? {
            Some(size) => Ok(Some(size)),
            None => self.s3.head(sha256).await,
        }
    }

    async fn delete(&self, sha256: &str) -> Result<bool, BlobError> {
        self.lru().remove(sha256);
        let local = self.l1.delete(sha256).await?;
        Ok(self.s3.delete(sha256).await? || local)
    }

    /// What S3 holds: the authoritative tier.
    async fn list(&self) -> Result<Vec<BlobEntry>, BlobError> {
        self.s3.list().await
    }

    async fn quarantine(&self, sha256: &str) -> Result<bool, BlobError> {
        self.lru().remove(sha256);
        let local = self.l1.quarantine(sha256).await?;
        Ok(self.s3.quarantine(sha256).await? || local)
    }

    async fn health(&self) -> Result<(), BlobError> {
        self.l1.health().await?;
        self.s3.health().await
    }

    fn layers(&self) -> Vec<&dyn BlobStore> {
        vec![self.l1.as_ref(), &self.s3]
    }

    fn tier_stats(&self) -> Option<TierStats> {
        let lru = self.lru();
        Some(TierStats {
            blobs: lru.entries.len() as u64,
            bytes: lru.bytes,
            max_bytes: self.shared.max_bytes,
            fills: self.shared.fills.load(Ordering::Relaxed),
            fill_failures: self.shared.fill_failures.load(Ordering::Relaxed),
            evicted: self.shared.evicted.load(Ordering::Relaxed),
        })
    }
}

/// The S3 writer, plus L1's bookkeeping once the staged file has moved into L1.
struct TieredWriter {
    inner: S3BlobWriter,
    store: TieredBlobStore,
}

#[async_trait::async_trait]
impl BlobWriter for TieredWriter {
    fn spool_path(&self) -> &Path {
        self.inner.spool_path()
    }

    fn written(&self) -> u64 {
        self.inner.written()
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.inner.write(chunk).await
    }

    fn digest_so_far(&self) -> String {
        self.inner.digest_so_far()
    }

    async fn commit(self: Box<Self>, expected_sha256: &str) -> Result<u64, BlobError> {
        let size = Box::new(self.inner).commit(expected_sha256).await?;
        self.store.lru().touch(expected_sha256, size);
        self.store.evict_to_budget().await;
        Ok(size)
    }

    async fn abort(self: Box<Self>) {
        Box::new(self.inner).abort().await;
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn lru_evicts_least_recently_used_first() {
        let mut lru = Lru::default();
        lru.insert(&key('a'), 100, 10);
        lru.insert(&key('b'), 100, 20);
        lru.insert(&key('c'), 100, 30);
        // A read makes `a` the most recently used.
        lru.touch(&key('a'), 100);
        assert_eq!(lru.bytes, 300);
        assert_eq!(lru.over_budget(150), vec![key('b'), key('c')]);
        assert_eq!(lru.bytes, 100);
        assert!(lru.over_budget(150).is_empty());
    }

    #[test]
    fn lru_ties_on_time_go_by_insertion() {
        let mut lru = Lru::default();
        lru.insert(&key('b'), 10, 5);
        lru.insert(&key('a'), 10, 5);
        assert_eq!(lru.over_budget(10), vec![key('b')]);
    }

    #[test]
    fn lru_reinsert_replaces_the_size() {
        let mut lru = Lru::default();
        lru.insert(&key('a'), 10, 5);
        lru.insert(&key('a'), 30, 6);
        assert_eq!(lru.bytes, 30);
        assert!(lru.remove(&key('a')));
        assert!(!lru.remove(&key('a')));
        assert_eq!(lru.bytes, 0);
    }
}
