//! Keeping the blob store and the catalogue in step, and the store within `storage.max_size`:
//! start-up reconciliation, least-recently-used eviction and `cache verify`. The server and the
//! `cache` commands share these; they work through the `BlobStore` trait and the catalogue only.

use std::collections::HashSet;
use std::io::Read as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::{CacheError, blocking, unix_now};
use crate::storage::Catalogue;
use crate::storage::blob::{ABANDONED_AFTER, BlobBody, BlobError, BlobStore, S3BlobStore};
use crate::storage::catalogue::BlobUse;

/// Catalogue rows read per query while looking for blobs to evict.
const EVICTION_BATCH: usize = 256;
/// Bytes read at a time while re-hashing a blob.
const HASH_CHUNK: usize = 1024 * 1024;

/// What [`reconcile`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Blobs found in the store (before any was removed).
    pub blobs: u64,
    /// Blobs without a catalogue row whose bytes hash to their name: now recorded.
    pub adopted: u64,
    pub adopted_bytes: u64,
    /// Blobs without a catalogue row whose bytes do not hash to their name: removed.
    pub removed: u64,
    /// Catalogue rows whose blob is not in the store: dropped.
    pub rows_dropped: u64,
}

/// What [`evict_to_budget`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvictReport {
    pub max_bytes: u64,
    /// Recorded bytes before and after the pass.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// The blobs evicted, least recently used first.
    pub evicted: Vec<String>,
    pub evicted_bytes: u64,
    /// Candidates left alone because they are being downloaded.
    pub skipped_in_use: u64,
}

/// What [`verify`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs re-hashed, and their bytes.
    pub checked: u64,
    pub checked_bytes: u64,
    /// Blobs whose bytes do not hash to their name: moved to quarantine, their rows dropped.
    pub quarantined: Vec<String>,
    /// Good blobs without a catalogue row (`cache gc`, or the server's next start, adopts them).
    pub unrecorded: u64,
    /// Catalogue rows without a blob (`cache gc`, or the server's next start, drops them).
    pub missing: u64,
}

fn store_error(err: BlobError) -> CacheError {
    CacheError::Storage(err.to_string())
}

/// Brings the catalogue in line with the store: a blob without a row is re-hashed and adopted
/// when its bytes match its name, removed when they do not; a row without a blob is dropped.
///
/// Only safe while nothing writes to the store (server start-up, `cache gc`): a download that
/// commits meanwhile has a blob a moment before its row.
pub async fn reconcile(store: &dyn BlobStore, catalogue: &Catalogue) -> Result<ReconcileReport, CacheError> {
    let listed = store.list().await.map_err(store_error)?;
    let reader = catalogue.clone();
    let mut unseen = blocking(move || reader.blob_keys()).await?;
    let mut report = ReconcileReport {
        blobs: listed.len() as u64,
        ..ReconcileReport::default()
    };
    for entry in listed {
        if unseen.remove(&entry.sha256) {
            continue;
        }
        match hash_blob(store, &entry.sha256).await? {
            Some(actual) if actual == entry.sha256 => {
                let (writer, key, size, name) =
                    (catalogue.clone(), entry.sha256.clone(), entry.size, store.name());
                blocking(move || writer.record_blob(&key, size, name, unix_now())).await?;
                tracing::info!(sha256 = %entry.sha256, size = entry.size, "adopted a blob the catalogue did not record");
                report.adopted += 1;
                report.adopted_bytes += entry.size;
            }
            Some(actual) => {
                store.delete(&entry.sha256).await.map_err(store_error)?;
                tracing::warn!(
                    sha256 = %entry.sha256,
                    actual = %actual,
                    "removed an unrecorded blob whose bytes do not match its name"
                );
                report.removed += 1;
            }
            // Removed while we looked: nothing to reconcile.
            None => report.blobs -= 1,
        }
    }
    if !unseen.is_empty() {
        let missing: Vec<String> = unseen.into_iter().collect();
        let writer = catalogue.clone();
        report.rows_dropped = blocking(move || writer.delete_blob_rows(&missing)).await? as u64;
    }
    Ok(report)
}

/// Evicts recorded blobs, least recently used first, until their total is at most `max_bytes`.
/// Blobs in `keep` (downloads under way) are left alone. A blob being served needs no such
/// guard on local disk: its reader holds an open file, which outlives the removal.
pub async fn evict_to_budget(
    store: &dyn BlobStore,
    catalogue: &Catalogue,
    max_bytes: u64,
    keep: &HashSet<String>,
) -> Result<EvictReport, CacheError> {
    let reader = catalogue.clone();
    let mut total = blocking(move || reader.blob_total_bytes()).await?;
    let mut report = EvictReport {
        max_bytes,
        bytes_before: total,
        ..EvictReport::default()
    };
    let mut after: Option<BlobUse> = None;
    while total > max_bytes {
        let reader = catalogue.clone();
        let cursor = after.clone();
        let batch = blocking(move || reader.blobs_by_last_access(cursor.as_ref(), EVICTION_BATCH)).await?;
        let Some(last) = batch.last() else {
            break;
        };
        after = Some(last.clone());
        let mut evicted = Vec::new();
        let mut failure = None;
        for blob in batch {
            if total <= max_bytes {
                break;
            }
            if keep.contains(&blob.sha256) {
                report.skipped_in_use += 1;
                continue;
            }
            // A blob already gone from the store (`Ok(false)`) only needs its row dropped.
            if let Err(e) = store.delete(&blob.sha256).await {
                failure = Some(store_error(e));
                break;
            }
            tracing::info!(sha256 = %blob.sha256, size = blob.size, last_access = blob.last_access, "evicted a blob");
            total = total.saturating_sub(blob.size);
            report.evicted_bytes += blob.size;
            evicted.push(blob.sha256);
        }
        // The rows of blobs already deleted go even when a later delete failed.
        let (writer, keys) = (catalogue.clone(), evicted.clone());
        blocking(move || writer.delete_blob_rows(&keys)).await?;
        report.evicted.extend(evicted);
        if let Some(e) = failure {
            return Err(e);
        }
    }
    report.bytes_after = total;
    Ok(report)
}

/// Re-hashes every blob in every layer of the store (a tiered store: the local tier, then S3).
/// One whose bytes do not hash to its name is quarantined in its layer (moved aside, never
/// served again); when that layer is the authoritative (last) one, its catalogue row is dropped
/// too, so the next request downloads it afresh.
pub async fn verify(store: &dyn BlobStore, catalogue: &Catalogue) -> Result<VerifyReport, CacheError> {
    let reader = catalogue.clone();
    let mut unseen = blocking(move || reader.blob_keys()).await?;
    let mut report = VerifyReport::default();
    let layers = store.layers();
    let mut dropped_rows = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let authoritative = i + 1 == layers.len();
        for entry in layer.list().await.map_err(store_error)? {
            let recorded = authoritative && unseen.remove(&entry.sha256);
            match hash_blob(*layer, &entry.sha256).await? {
                Some(actual) => {
                    report.checked += 1;
                    report.checked_bytes += entry.size;
                    if actual != entry.sha256 {
                        layer.quarantine(&entry.sha256).await.map_err(store_error)?;
                        tracing::warn!(sha256 = %entry.sha256, actual = %actual, store = layer.name(), "blob bytes do not match its name; quarantined");
                        if !report.quarantined.contains(&entry.sha256) {
                            report.quarantined.push(entry.sha256.clone());
                        }
                        if authoritative {
                            dropped_rows.push(entry.sha256);
                        }
                    } else if authoritative && !recorded {
                        report.unrecorded += 1;
                    }
                }
                // Removed while we looked: its row, if any, now has no blob.
                None => {
                    if recorded {
                        unseen.insert(entry.sha256);
                    }
                }
            }
        }
    }
    report.missing = unseen.len() as u64;
    if !dropped_rows.is_empty() {
        let writer = catalogue.clone();
        blocking(move || writer.delete_blob_rows(&dropped_rows)).await?;
    }
    Ok(report)
}

/// What [`collect_bucket_garbage`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketGcReport {
    /// Blobs in the bucket (under the prefix).
    pub blobs: u64,
    /// Catalogue rows whose blob is not in the bucket: dropped.
    pub rows_dropped: u64,
    /// Blobs no row of this catalogue knows, and how many of them were deleted.
    pub orphans: u64,
    pub orphans_removed: u64,
    /// Multipart uploads and temporary objects left by processes that died, removed.
    pub uploads_aborted: u64,
    pub temporaries_removed: u64,
}

/// Brings the catalogue in line with a bucket: rows without a blob are dropped. With
/// `remove_orphans`, blobs no catalogue row knows are deleted, and multipart uploads and
/// temporary objects older than [`ABANDONED_AFTER`] are removed; without it they are counted.
///
/// A bucket shared by several nodes holds blobs only the others know: `remove_orphans` is for a
/// bucket this node alone uses (docs/DEPLOYMENT.md).
pub async fn collect_bucket_garbage(
    s3: &S3BlobStore,
    catalogue: &Catalogue,
    remove_orphans: bool,
) -> Result<BucketGcReport, CacheError> {
    let listed = s3.list().await.map_err(store_error)?;
    let reader = catalogue.clone();
    let mut unseen = blocking(move || reader.blob_keys()).await?;
    let mut report = BucketGcReport {
        blobs: listed.len() as u64,
        ..BucketGcReport::default()
    };
    for entry in listed {
        if unseen.remove(&entry.sha256) {
            continue;
        }
        report.orphans += 1;
        if remove_orphans && s3.delete(&entry.sha256).await.map_err(store_error)? {
            tracing::info!(sha256 = %entry.sha256, "deleted a blob no catalogue row knows");
            report.orphans_removed += 1;
        }
    }
    if !unseen.is_empty() {
        let missing: Vec<String> = unseen.into_iter().collect();
        let writer = catalogue.clone();
        report.rows_dropped = blocking(move || writer.delete_blob_rows(&missing)).await? as u64;
    }
    if remove_orphans {
        let abandoned = |at: Option<SystemTime>| {
            at.and_then(|at| at.elapsed().ok())
                .is_some_and(|age| age >= ABANDONED_AFTER)
        };
        for upload in s3.open_uploads().await.map_err(store_error)? {
            if abandoned(upload.initiated) {
                s3.abort_upload(&upload).await.map_err(store_error)?;
                tracing::info!(key = %upload.key, "aborted an abandoned multipart upload");
                report.uploads_aborted += 1;
            }
        }
        for (key, modified) in s3.temporary_objects().await.map_err(store_error)? {
            if abandoned(modified) {
                s3.delete_temporary(&key).await.map_err(store_error)?;
                report.temporaries_removed += 1;
            }
        }
    }
    Ok(report)
}

/// The sha256 of a stored blob's bytes, read in chunks; `None` if the blob is not there.
async fn hash_blob(store: &dyn BlobStore, sha256: &str) -> Result<Option<String>, CacheError> {
    match store.get(sha256, None).await.map_err(store_error)? {
        None => Ok(None),
        Some(BlobBody::File { path, .. }) => tokio::task::spawn_blocking(move || hash_file(&path))
            .await
            .map_err(|e| CacheError::Internal(format!("a hashing task failed: {e}")))?,
        Some(BlobBody::Stream { mut stream, .. }) => {
            let mut hasher = Sha256::new();
            while let Some(chunk) = stream.next().await {
                hasher.update(chunk.map_err(store_error)?);
            }
            Ok(Some(hex::encode(hasher.finalize())))
        }
    }
}

fn hash_file(path: &Path) -> Result<Option<String>, CacheError> {
    let failed = |e: std::io::Error| CacheError::Storage(format!("reading {}: {e}", path.display()));
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

/// Free catalogue pages worth giving back after an eviction pass (4 MiB of 4 KiB pages): fewer
/// are reused by the next rows anyway.
const RECLAIM_MIN_PAGES: u64 = 1024;

/// The server's side of the budget: runs eviction passes and remembers, for `/health`, when one
/// last evicted something.
pub struct Evictor {
    store: Arc<dyn BlobStore>,
    catalogue: Catalogue,
    max_bytes: u64,
    last_eviction: Mutex<Option<SystemTime>>,
    evicted_blobs: AtomicU64,
}

impl Evictor {
    pub fn new(store: Arc<dyn BlobStore>, catalogue: Catalogue, max_bytes: u64) -> Self {
        Self {
            store,
            catalogue,
            max_bytes,
            last_eviction: Mutex::new(None),
            evicted_blobs: AtomicU64::new(0),
        }
    }

    /// `storage.max_size`.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// When a pass last evicted a blob, since start.
    pub fn last_eviction(&self) -> Option<SystemTime> {
        *self.last_eviction.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blobs evicted since start.
    pub fn evicted_blobs(&self) -> u64 {
        self.evicted_blobs.load(Ordering::Relaxed)
    }

    /// One eviction pass, leaving `keep` (downloads under way) alone; logs what it did.
    pub async fn run(&self, keep: &HashSet<String>) -> Result<EvictReport, CacheError> {
        let report = evict_to_budget(self.store.as_ref(), &self.catalogue, self.max_bytes, keep).await?;
        if !report.evicted.is_empty() {
            *self.last_eviction.lock().unwrap_or_else(|p| p.into_inner()) = Some(SystemTime::now());
            self.evicted_blobs
                .fetch_add(report.evicted.len() as u64, Ordering::Relaxed);
            tracing::info!(
                evicted = report.evicted.len(),
                freed = report.evicted_bytes,
                bytes = report.bytes_after,
                max_bytes = report.max_bytes,
                "evicted least recently used blobs to stay within storage.max_size"
            );
            let catalogue = self.catalogue.clone();
            if let Err(e) = blocking(move || catalogue.reclaim_free_pages(RECLAIM_MIN_PAGES)).await {
                tracing::warn!(error = %e, "could not give the catalogue's free pages back");
            }
        }
        if report.bytes_after > report.max_bytes {
            tracing::warn!(
                bytes = report.bytes_after,
                max_bytes = report.max_bytes,
                in_use = report.skipped_in_use,
                "the blob store stays over storage.max_size: what is left is being downloaded"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::blob::LocalBlobStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: LocalBlobStore,
        catalogue: Catalogue,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(&dir.path().join("blobs")).unwrap();
        let catalogue = Catalogue::open(&dir.path().join("catalogue.sqlite3")).unwrap();
        Fixture {
            _dir: dir,
            store,
            catalogue,
        }
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// Commits `data` to the store without recording it.
    async fn put(store: &LocalBlobStore, data: &[u8]) -> String {
        let mut writer = store.put(None).await.unwrap();
        writer.write(data).await.unwrap();
        let key = sha(data);
        writer.commit(&key).await.unwrap();
        key
    }

    /// Commits and records `data`, last accessed at `at`.
    async fn stored(f: &Fixture, data: &[u8], at: u64) -> String {
        let key = put(&f.store, data).await;
        f.catalogue
            .record_blob(&key, data.len() as u64, "local", at)
            .unwrap();
        key
    }

    /// Writes `data` under the name `key`, as a stray file or a tampered blob would be.
    fn plant(f: &Fixture, key: &str, data: &[u8]) {
        let path = f.store.blob_path(key).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    fn keys(f: &Fixture) -> HashSet<String> {
        f.catalogue.blob_keys().unwrap()
    }

    #[tokio::test]
    async fn reconcile_adopts_removes_and_drops() {
        let f = fixture();
        let kept = stored(&f, b"recorded and present", 100).await;
        let stray = put(&f.store, b"present, not recorded").await;
        let wrong = sha(b"what the name promises");
        plant(&f, &wrong, b"other bytes");
        let gone = stored(&f, b"recorded, then lost", 100).await;
        f.store.delete(&gone).await.unwrap();

        let report = reconcile(&f.store, &f.catalogue).await.unwrap();
        assert_eq!(
            report,
            ReconcileReport {
                blobs: 3,
                adopted: 1,
                adopted_bytes: b"present, not recorded".len() as u64,
                removed: 1,
                rows_dropped: 1,
            }
        );
        assert_eq!(keys(&f), HashSet::from([kept.clone(), stray.clone()]));
        assert_eq!(f.store.head(&wrong).await.unwrap(), None);
        assert!(f.store.head(&stray).await.unwrap().is_some());

        // A second run finds nothing to do.
        let again = reconcile(&f.store, &f.catalogue).await.unwrap();
        assert_eq!(
            again,
            ReconcileReport {
                blobs: 2,
                ..ReconcileReport::default()
            }
        );
    }

    #[tokio::test]
    async fn eviction_goes_least_recently_used_first_until_under_budget() {
        let f = fixture();
        let oldest = stored(&f, &[1; 100], 10).await;
        let middle = stored(&f, &[2; 100], 20).await;
        let newest = stored(&f, &[3; 100], 30).await;
        // A hit makes the oldest the most recently used.
        f.catalogue
            .touch_blobs(
                &[crate::storage::catalogue::BlobAccess {
                    sha256: oldest.clone(),
                    at: 40,
                    hits: 1,
                    size: 100,
                }],
                None,
            )
            .unwrap();

        let report = evict_to_budget(&f.store, &f.catalogue, 250, &HashSet::new())
            .await
            .unwrap();
        assert_eq!(report.evicted, vec![middle.clone()]);
        assert_eq!((report.bytes_before, report.bytes_after), (300, 200));
        assert_eq!(report.evicted_bytes, 100);
        assert_eq!(keys(&f), HashSet::from([oldest.clone(), newest.clone()]));
        assert_eq!(f.store.head(&middle).await.unwrap(), None);

        // Under budget: nothing to do.
        let idle = evict_to_budget(&f.store, &f.catalogue, 250, &HashSet::new())
            .await
            .unwrap();
        assert!(idle.evicted.is_empty());
        assert_eq!(idle.bytes_after, 200);
    }

    #[tokio::test]
    async fn eviction_never_takes_a_blob_being_downloaded() {
        let f = fixture();
        let downloading = stored(&f, &[1; 100], 10).await;
        let other = stored(&f, &[2; 100], 20).await;
        let keep = HashSet::from([downloading.clone()]);

        let report = evict_to_budget(&f.store, &f.catalogue, 0, &keep).await.unwrap();
        assert_eq!(report.evicted, vec![other]);
        assert_eq!(report.skipped_in_use, 1);
        assert_eq!(report.bytes_after, 100, "still over: the rest is in use");
        assert_eq!(keys(&f), keep);
        assert!(f.store.head(&downloading).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn eviction_walks_past_one_batch_and_drops_rows_of_lost_blobs() {
        let f = fixture();
        let mut order = Vec::new();
        for i in 0..(EVICTION_BATCH + 10) {
            // Several blobs share each access second: the walk must neither skip nor repeat ties.
            let at = (i / 3) as u64;
            order.push((at, stored(&f, &(i as u32).to_le_bytes(), at).await));
        }
        order.sort();
        let order: Vec<String> = order.into_iter().map(|(_, key)| key).collect();
        f.store.delete(&order[0]).await.unwrap();
        // The whole first batch but its lost blob is in use.
        let keep: HashSet<String> = order[1..EVICTION_BATCH].iter().cloned().collect();

        let report = evict_to_budget(&f.store, &f.catalogue, 0, &keep).await.unwrap();
        let mut expected = vec![order[0].clone()];
        expected.extend(order[EVICTION_BATCH..].iter().cloned());
        assert_eq!(report.evicted, expected);
        assert_eq!(report.skipped_in_use, (EVICTION_BATCH - 1) as u64);
        assert_eq!(keys(&f), keep);
    }

    #[tokio::test]
    async fn verify_quarantines_mismatches_and_reports_orphans() {
        let f = fixture();
        let good = stored(&f, b"good bytes", 10).await;
        let tampered = stored(&f, b"original bytes", 10).await;
        plant(&f, &tampered, b"tampered bytes");
        let unrecorded = put(&f.store, b"no row").await;
        let lost = stored(&f, b"no blob", 10).await;
        f.store.delete(&lost).await.unwrap();

        let report = verify(&f.store, &f.catalogue).await.unwrap();
        assert_eq!(report.checked, 3);
        assert_eq!(
            report.checked_bytes,
            (b"good bytes".len() + b"tampered bytes".len() + b"no row".len()) as u64
        );
        assert_eq!(report.quarantined, vec![tampered.clone()]);
        assert_eq!((report.unrecorded, report.missing), (1, 1));
        assert_eq!(f.store.head(&tampered).await.unwrap(), None);
        assert!(!keys(&f).contains(&tampered));
        assert!(keys(&f).contains(&good));
        assert!(f.store.head(&unrecorded).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn hashing_reads_big_blobs_in_chunks() {
        let f = fixture();
        let data: Vec<u8> = (0..(3 * HASH_CHUNK + 7)).map(|i| (i % 251) as u8).collect();
        let key = put(&f.store, &data).await;
        assert_eq!(hash_blob(&f.store, &key).await.unwrap(), Some(key));
        assert_eq!(hash_blob(&f.store, &sha(b"absent")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_evictor_remembers_its_last_eviction() {
        let f = fixture();
        stored(&f, &[1; 100], 10).await;
        let catalogue = f.catalogue.clone();
        let evictor = Evictor::new(Arc::new(f.store), catalogue, 50);
        assert_eq!(evictor.max_bytes(), 50);
        assert_eq!(evictor.last_eviction(), None);
        let report = evictor.run(&HashSet::new()).await.unwrap();
        assert_eq!(report.evicted.len(), 1);
        assert!(evictor.last_eviction().is_some());
        assert_eq!(evictor.evicted_blobs(), 1);
    }
}
