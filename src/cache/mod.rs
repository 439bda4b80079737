//! The flows between the HTTP edge, the stores and the upstreams: lookup, single-flight refresh,
//! stale serving. Handlers reach upstreams and storage only through this module.

pub mod bundle;
pub mod downloads;
pub mod explorer;
pub mod files;
pub mod hex;
pub mod hex_hosted;
pub mod hosted;
pub mod ingest;
pub mod maintenance;
mod page_writer;
pub mod pages;
pub mod policy;
pub mod simple;
pub mod singleflight;
mod snapshot;
pub mod spool;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::storage::StorageError;
use crate::upstream::UpstreamError;

/// A file (or release) its page does not list triggers at most one forced refresh of the page
/// per this interval: the package may have released since, but a client asking for a name that
/// does not exist must not cost an upstream request each time.
pub(crate) const UNLISTED_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Where an answer came from, sent as `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from memory or disk without asking an upstream for new content.
    Hit,
    /// Fetched (or refetched) from an upstream for this request.
    Miss,
    /// Past its TTL, served because an upstream failed.
    Stale,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
        }
    }
}

/// Why the cache could not produce an answer. Clone because one failure is shared by every
/// request waiting on the same single-flight run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    #[error("{0}")]
    NotFound(String),
    /// The release policy holds the file back.
    #[error("{}", .0.message)]
    HeldBack(crate::policy::Hold),
    #[error("{0}")]
    Upstream(UpstreamError),
    #[error("{0}")]
    UpstreamData(String),
    #[error("storage failed: {0}")]
    Storage(String),
    /// The blob store cannot be reached now; what needs it waits for it to come back.
    #[error("{0}")]
    StorageUnavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StorageError> for CacheError {
    fn from(err: StorageError) -> Self {
        Self::Storage(err.to_string())
    }
}

impl From<singleflight::FlightFailed> for CacheError {
    fn from(err: singleflight::FlightFailed) -> Self {
        Self::Internal(err.to_string())
    }
}

/// Counters since start, for `/health` and the UI.
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    upstream_errors: AtomicU64,
    download_failures: AtomicU64,
    hash_mismatches: AtomicU64,
    unstored: AtomicU64,
    stored_blobs: AtomicU64,
    stored_bytes: AtomicU64,
    held_back: HeldBack,
}

/// At most this many distinct held-back files are told apart; past it, the counts stop growing.
const HELD_TRACKED: usize = 100_000;

/// Distinct files the release policy held back since start (left off a page or refused), by the
/// check that held them.
#[derive(Debug, Default)]
struct HeldBack(std::sync::Mutex<std::collections::HashMap<String, crate::policy::Check>>);

/// How many distinct files each check held back since start.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HeldCounts {
    pub age: u64,
    pub date: u64,
    pub rule: u64,
    pub unknown_upload_time: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CounterSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub upstream_errors: u64,
    pub download_failures: u64,
    pub hash_mismatches: u64,
    /// Downloads served to their clients but not kept: the blob store failed at commit.
    pub unstored: u64,
    /// Blobs written to the blob store since start (downloads and uploads), and their bytes.
    pub stored_blobs: u64,
    pub stored_bytes: u64,
    pub held_back: HeldCounts,
}

impl CacheCounters {
    pub fn count(&self, outcome: CacheOutcome) {
        let counter = match outcome {
            CacheOutcome::Hit => &self.hits,
            CacheOutcome::Miss => &self.misses,
            CacheOutcome::Stale => &self.stale,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_download_failure(&self) {
        self.download_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Also counted as a download failure.
    pub fn count_hash_mismatch(&self) {
        self.hash_mismatches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_unstored(&self) {
        self.unstored.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_stored(&self, bytes: u64) {
        self.stored_blobs.fetch_add(1, Ordering::Relaxed);
        self.stored_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A file (`ecosystem/project/filename`) the release policy held back.
    pub fn count_held_back(&self, file: String, check: crate::policy::Check) {
        let mut held = self
            .held_back
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.len() < HELD_TRACKED || held.contains_key(&file) {
            held.insert(file, check);
        }
    }

    fn held_counts(&self) -> HeldCounts {
        use crate::policy::Check;
        let held = self
            .held_back
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut counts = HeldCounts::default();
        for check in held.values() {
            *match check {
                Check::Age => &mut counts.age,
                Check::Date => &mut counts.date,
                Check::Rule => &mut counts.rule,
                Check::UnknownTime => &mut counts.unknown_upload_time,
            } += 1;
        }
        counts
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            upstream_errors: self.upstream_errors.load(Ordering::Relaxed),
            download_failures: self.download_failures.load(Ordering::Relaxed),
            hash_mismatches: self.hash_mismatches.load(Ordering::Relaxed),
            unstored: self.unstored.load(Ordering::Relaxed),
            stored_blobs: self.stored_blobs.load(Ordering::Relaxed),
            stored_bytes: self.stored_bytes.load(Ordering::Relaxed),
            held_back: self.held_counts(),
        }
    }
}

/// Why the release policy holds a recorded file (a PyPI file, a hex tarball) back at `now`, if
/// it does. Hosted files (the team's own uploads) are never held back.
pub fn held_back(
    policy: &crate::policy::Policy,
    ecosystem: crate::ecosystem::Ecosystem,
    project: &str,
    entry: &crate::storage::catalogue::FileRecord,
    now: u64,
) -> Option<crate::policy::Hold> {
    if !policy.is_active() || hosted::is_hosted_url(&entry.url) {
        return None;
    }
    policy
        .judge(&crate::policy::Release::of(ecosystem, project, entry, now), now)
        .err()
}

/// Whether the release policy lets a recorded file out now (see [`held_back`]); a refusal is
/// logged and counted, since clients show the 403 and rarely its body.
pub(crate) fn check_release(
    policy: &crate::policy::Policy,
    counters: &CacheCounters,
    ecosystem: crate::ecosystem::Ecosystem,
    project: &str,
    entry: &crate::storage::catalogue::FileRecord,
) -> Result<(), CacheError> {
    match held_back(policy, ecosystem, project, entry, unix_now()) {
        None => Ok(()),
        Some(hold) => {
            tracing::info!(file = %entry.filename, reason = %hold.message, "held back by the release policy");
            counters.count_held_back(
                format!("{}/{project}/{}", ecosystem.as_str(), entry.filename),
                hold.check,
            );
            Err(CacheError::HeldBack(hold))
        }
    }
}

/// Runs blocking storage work on the blocking pool.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, CacheError>
where
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CacheError::Internal(format!("a storage task failed: {e}")))?
        .map_err(CacheError::from)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
