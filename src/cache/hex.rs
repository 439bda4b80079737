//! The hex repository flow behind `/hex/...`.
//!
//! - **Registry files** (`/names`, `/versions`, `/packages/{name}`) are kept in the page store
//!   exactly as the upstream sent them, with the upstream's ETag for revalidation, and held in
//!   memory. A fetched file is verified first (gzip, RSA-SHA512 signature with the pinned key,
//!   repository and package name): one that fails is answered 502 and never stored. A verified
//!   `/packages/{name}` is also recorded in the catalogue, one file row per release.
//! - **Tarballs** are files like PyPI's: the release's catalogue row gives the outer checksum,
//!   and the file cache downloads (single-flight, hold-back), verifies and stores them.
//! - **Other files** (docs, `/public_key`, `/installs/...`) are stored as blobs under their own
//!   sha256; the path's blob and upstream ETag live in the page store, revalidated after a TTL
//!   that depends on the kind of file.
//!
//! Upstream answers of "no such file" (404, 403, 410) are remembered for a minute, so a missing
//! package does not cost an upstream request per client request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use moka::future::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use super::files::{FileAnswer, FileCache, Source, UNLISTED_REFRESH_INTERVAL};
use super::simple::Served;
use super::singleflight::SingleFlight;
use super::{CacheCounters, CacheError, CacheOutcome, blocking, unix_now};
use crate::ecosystem::Ecosystem;
use crate::hex::{Package, RegistryFile, RegistryVerifier, RepoPath, Verified, tarball_name};
use crate::storage::blob::{BlobStore, RangeRequest};
use crate::storage::catalogue::{FileRecord, ProjectRecord};
use crate::storage::pages::{PageHeader, PageKey, PageWrite, StoredPage};
use crate::storage::{Catalogue, PageStore};
use crate::upstream::{
    FailureKind, HexClient, HexFetched, IndexHealth, IndexHealthReport, UpstreamError, UrlOrigin,
};

const ECOSYSTEM: Ecosystem = Ecosystem::Hex;
/// The page-store format key of a registry file (stored as sent, one form only).
const REGISTRY_FORMAT: &str = "raw";
/// The page-store snapshot key of a blob-backed file's [`ObjectEntry`].
const OBJECT_KEY: &str = "object";
/// How long an upstream "no such file" is believed.
const MISSING_TTL: Duration = Duration::from_secs(60);
/// The largest registry file read from the upstream. hex.pm's `/names` is a few MB; this
/// leaves room while refusing a runaway body.
const MAX_REGISTRY_BYTES: usize = 64 * 1024 * 1024;
/// The largest docs or installer file stored.
const MAX_OBJECT_BYTES: u64 = 1024 * 1024 * 1024;
/// How long docs and the public key are kept before being revalidated (hex.pm says one day).
const DOCS_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Installer archives (`.ez`) never change under their name.
const IMMUTABLE_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A file stored as a blob and where the answer came from.
#[derive(Debug, Clone)]
struct StoredObject {
    sha256: String,
    outcome: CacheOutcome,
}

/// What the page store keeps for a blob-backed file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ObjectEntry {
    fetched_at: u64,
    upstream_etag: Option<String>,
    sha256: String,
    /// Identifies the upstream it came from (see [`Inner::sources`]).
    sources: String,
}

/// A package's release rows by tarball name.
type Releases = HashMap<String, FileRecord>;

/// The hex mirror's settings, from `[hex]`.
pub struct HexSettings {
    pub client: HexClient,
    pub verifier: RegistryVerifier,
    pub ttl: Duration,
    /// Catalogue id of the upstream repository.
    pub index_id: i64,
    /// Bytes of registry files held in memory.
    pub l1_bytes: u64,
}

pub struct HexMirror {
    inner: Arc<Inner>,
    files: Arc<FileCache>,
    registry_flights: SingleFlight<String, Result<Served, CacheError>>,
    object_flights: SingleFlight<String, Result<StoredObject, CacheError>>,
}

struct Inner {
    client: HexClient,
    verifier: RegistryVerifier,
    ttl: Duration,
    /// The upstream and TTL the stored files were fetched under: a config change makes stored
    /// files stale (and their upstream ETags meaningless).
    sources: String,
    index_id: i64,
    pages: PageStore,
    catalogue: Catalogue,
    store: Arc<dyn BlobStore>,
    l1: Cache<String, Arc<StoredPage>>,
    /// Paths the upstream said it does not have: path → message.
    missing: Cache<String, String>,
    /// The catalogue's release rows of recently asked packages (package → tarball name → row),
    /// so serving a cached tarball does not wait on SQLite. Replaced whenever a package's
    /// registry file is recorded.
    releases: Cache<String, Arc<Releases>>,
    /// Packages whose registry file was refreshed for an unknown release lately.
    forced_refreshes: Cache<String, ()>,
    health: IndexHealth,
    counters: Arc<CacheCounters>,
}

impl HexMirror {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: HexSettings,
        pages: PageStore,
        catalogue: Catalogue,
        store: Arc<dyn BlobStore>,
        files: Arc<FileCache>,
        counters: Arc<CacheCounters>,
        runtime: Handle,
    ) -> Self {
        let sources = format!(
            "{}@{}",
            settings.client.upstream().cache_key(),
            settings.ttl.as_secs()
        );
        let l1 = Cache::builder()
            .max_capacity(settings.l1_bytes)
            .weigher(|_, page: &Arc<StoredPage>| u32::try_from(page.weight()).unwrap_or(u32::MAX))
            .build();
        Self {
            inner: Arc::new(Inner {
                client: settings.client,
                verifier: settings.verifier,
                ttl: settings.ttl,
                sources,
                index_id: settings.index_id,
                pages,
                catalogue,
                store,
                l1,
                missing: Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(MISSING_TTL)
                    .build(),
                releases: Cache::builder().max_capacity(10_000).build(),
                forced_refreshes: Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(UNLISTED_REFRESH_INTERVAL)
                    .build(),
                health: IndexHealth::default(),
                counters,
            }),
            files,
            registry_flights: SingleFlight::new(runtime.clone()),
            object_flights: SingleFlight::new(runtime),
        }
    }

    /// The upstream's health, for `/health` and the UI: (redacted URL, report).
    pub fn health_report(&self) -> (String, IndexHealthReport) {
        (
            self.inner.client.upstream().redacted(),
            self.inner.health.report(),
        )
    }

    /// A registry file as the upstream sent it: from memory or disk while fresh, else
    /// revalidated (one upstream request however many clients wait), else stale, else an error.
    pub async fn registry(&self, file: RegistryFile) -> Result<Served, CacheError> {
        let inner = &self.inner;
        let path = file.path();
        inner.check_missing(&path).await?;
        if let Some(stored) = inner.stored_page(&path).await? {
            let outcome = if inner.is_fresh(&stored.header) {
                Some(CacheOutcome::Hit)
            } else if inner.health.backing_off() {
                // The upstream failed moments ago: do not make this client wait for it again.
                Some(CacheOutcome::Stale)
            } else {
                None
            };
            if let Some(outcome) = outcome {
                inner.counters.count(outcome);
                return Ok(Served {
                    page: stored,
                    outcome,
                });
            }
        }
        self.refresh_registry(file, false).await
    }

    async fn refresh_registry(&self, file: RegistryFile, force: bool) -> Result<Served, CacheError> {
        let inner = Arc::clone(&self.inner);
        let served = self
            .registry_flights
            .run(file.path(), move || async move {
                inner.refresh_registry(file, force).await
            })
            .await??;
        self.inner.counters.count(served.outcome);
        Ok(served)
    }

    /// A release tarball, verified against the outer checksum of the package's verified registry
    /// file before it is stored (see [`FileCache::open_verified`]).
    pub async fn tarball(
        &self,
        name: &str,
        version: &str,
        complete_first: bool,
        range: Option<RangeRequest>,
    ) -> Result<FileAnswer, CacheError> {
        let release = self.release(name, version).await?;
        let sha256 = release.sha256.clone().ok_or_else(|| {
            CacheError::UpstreamData(format!(
                "the registry gives no outer checksum for '{}', so pkgmirror cannot verify it and does not serve it",
                release.filename
            ))
        })?;
        let url = self
            .inner
            .client
            .url(&format!("tarballs/{}", release.filename))
            .map_err(CacheError::Upstream)?;
        let source = Source {
            url: url.into(),
            origin: UrlOrigin::Configured,
            sha256: Some(sha256),
            size: release.size,
        };
        self.files.open_verified(&source, complete_first, range).await
    }

    /// The catalogue row of a release. A release the stored registry file does not list gets
    /// the file refreshed once (it may have been published since), at most every few seconds.
    async fn release(&self, name: &str, version: &str) -> Result<FileRecord, CacheError> {
        let filename = tarball_name(name, version);
        if let Some(found) = self.inner.release_row(name, &filename).await? {
            return Ok(found);
        }
        self.registry(RegistryFile::Package(name.to_owned())).await?;
        if let Some(found) = self.inner.release_row(name, &filename).await? {
            return Ok(found);
        }
        if !self.inner.forced_refreshes.contains_key(name) {
            self.inner.forced_refreshes.insert(name.to_owned(), ()).await;
            self.refresh_registry(RegistryFile::Package(name.to_owned()), true)
                .await?;
            if let Some(found) = self.inner.release_row(name, &filename).await? {
                return Ok(found);
            }
        }
        Err(CacheError::NotFound(format!(
            "package '{name}' has no release '{version}' in the registry"
        )))
    }

    /// Docs, the public key or an installer file, stored as a blob.
    pub async fn other_file(&self, path: &RepoPath) -> Result<FileAnswer, CacheError> {
        let key = path.path();
        let ttl = self.ttl_of(path);
        let inner = &self.inner;
        inner.check_missing(&key).await?;
        let entry = inner.object_entry(&key).await?;
        let fresh = entry.as_ref().filter(|e| {
            e.sources == inner.sources && e.fetched_at.saturating_add(ttl.as_secs()) > unix_now()
        });
        let object = match (fresh, &entry) {
            (Some(entry), _) => StoredObject {
                sha256: entry.sha256.clone(),
                outcome: CacheOutcome::Hit,
            },
            (None, Some(entry)) if inner.health.backing_off() => StoredObject {
                sha256: entry.sha256.clone(),
                outcome: CacheOutcome::Stale,
            },
            _ => self.refresh_object(&key, ttl, false).await?,
        };
        if let Some(body) = self.files.stored_blob(&object.sha256).await? {
            self.inner.counters.count(object.outcome);
            return Ok(FileAnswer::Stored {
                body,
                sha256: object.sha256,
                outcome: object.outcome,
            });
        }
        // The blob was evicted: fetch the file again, whatever its ETag says.
        let object = self.refresh_object(&key, ttl, true).await?;
        let body = self.files.stored_blob(&object.sha256).await?.ok_or_else(|| {
            CacheError::StorageUnavailable(format!(
                "{key} was downloaded but the blob store could not keep it (see /health)"
            ))
        })?;
        self.inner.counters.count(object.outcome);
        Ok(FileAnswer::Stored {
            body,
            sha256: object.sha256,
            outcome: object.outcome,
        })
    }

    async fn refresh_object(
        &self,
        key: &str,
        ttl: Duration,
        refetch: bool,
    ) -> Result<StoredObject, CacheError> {
        let inner = Arc::clone(&self.inner);
        let path = key.to_owned();
        self.object_flights
            .run(key.to_owned(), move || async move {
                inner.refresh_object(path, ttl, refetch).await
            })
            .await?
    }

    /// How long a blob-backed file is kept before it is revalidated.
    fn ttl_of(&self, path: &RepoPath) -> Duration {
        match path {
            RepoPath::Installs { path } if path.ends_with(".ez") => IMMUTABLE_TTL,
            RepoPath::Docs { .. } | RepoPath::PublicKey => DOCS_TTL,
            _ => self.inner.ttl,
        }
    }

    /// Forgets a package's registry file (memory, disk, and a remembered "missing"), so the
    /// next request fetches it. Returns whether anything was stored.
    pub async fn forget_package(&self, name: &str) -> Result<bool, CacheError> {
        let path = RegistryFile::Package(name.to_owned()).path();
        self.inner.l1.invalidate(&path).await;
        self.inner.missing.invalidate(&path).await;
        let pages = self.inner.pages.clone();
        blocking(move || pages.forget(ECOSYSTEM, &path, false)).await
    }

    /// When a package's registry file was fetched and when it expires, if it is stored.
    pub async fn package_times(&self, name: &str) -> Result<Option<(u64, u64)>, CacheError> {
        let path = RegistryFile::Package(name.to_owned()).path();
        let page = self.inner.stored_page(&path).await?;
        Ok(page.map(|p| (p.header.fetched_at, p.header.expires_at)))
    }
}

impl Inner {
    fn is_fresh(&self, header: &PageHeader) -> bool {
        header.sources == self.sources && header.expires_at > unix_now()
    }

    async fn check_missing(&self, path: &str) -> Result<(), CacheError> {
        match self.missing.get(path).await {
            Some(message) => Err(CacheError::NotFound(message)),
            None => Ok(()),
        }
    }

    async fn remember_missing(&self, path: &str, status: u16) -> CacheError {
        let message = format!(
            "{} has no {path} (HTTP {status})",
            self.client.upstream().redacted()
        );
        self.missing.insert(path.to_owned(), message.clone()).await;
        CacheError::NotFound(message)
    }

    /// A registry file from memory, else from disk (promoted to memory).
    async fn stored_page(&self, path: &str) -> Result<Option<Arc<StoredPage>>, CacheError> {
        if let Some(hit) = self.l1.get(path).await {
            return Ok(Some(hit));
        }
        let pages = self.pages.clone();
        let key = path.to_owned();
        let Some(page) = blocking(move || pages.page(PageKey::new(ECOSYSTEM, &key, REGISTRY_FORMAT))).await?
        else {
            return Ok(None);
        };
        let page = Arc::new(page);
        self.l1.insert(path.to_owned(), Arc::clone(&page)).await;
        Ok(Some(page))
    }

    fn header(&self, etag: String, now: u64, upstream_etag: Option<String>) -> PageHeader {
        PageHeader {
            etag,
            fetched_at: now,
            expires_at: now.saturating_add(self.ttl.as_secs()),
            sources: self.sources.clone(),
            upstream_etag,
        }
    }

    async fn refresh_registry(
        self: Arc<Self>,
        file: RegistryFile,
        force: bool,
    ) -> Result<Served, CacheError> {
        let path = file.path();
        let now = unix_now();
        let stored = self.stored_page(&path).await?;
        if let Some(page) = &stored
            && !force
            && self.is_fresh(&page.header)
        {
            // Refreshed by the flight that ended just before this one started.
            return Ok(Served {
                page: Arc::clone(page),
                outcome: CacheOutcome::Hit,
            });
        }
        // An ETag means something only to the upstream that sent it.
        let etag = stored
            .as_ref()
            .filter(|page| page.header.sources == self.sources)
            .and_then(|page| page.header.upstream_etag.clone());
        let (body, upstream_etag) = match self.client.fetch(&path, etag.as_deref()).await {
            Ok(HexFetched::NotModified) => {
                let Some(page) = stored.filter(|_| etag.is_some()) else {
                    return Err(CacheError::UpstreamData(format!(
                        "{} answered 304 Not Modified to an unconditional request for {path}",
                        self.client.upstream().redacted()
                    )));
                };
                self.health.record_success();
                let page = Arc::new(StoredPage {
                    header: self.header(page.header.etag.clone(), now, page.header.upstream_etag.clone()),
                    ..(*page).clone()
                });
                self.keep_page(&path, &page, None).await;
                return Ok(Served {
                    page,
                    outcome: CacheOutcome::Hit,
                });
            }
            Ok(HexFetched::Missing { status }) => {
                self.health.record_success();
                self.l1.invalidate(&path).await;
                let pages = self.pages.clone();
                let key = path.clone();
                blocking(move || pages.forget(ECOSYSTEM, &key, false)).await?;
                return Err(self.remember_missing(&path, status).await);
            }
            Ok(HexFetched::Found { response, etag }) => {
                match self.client.read_body(&path, response, MAX_REGISTRY_BYTES).await {
                    Ok(body) => (body, etag),
                    Err(e) => return self.upstream_failed(&path, e, stored),
                }
            }
            Err(e) => return self.upstream_failed(&path, e, stored),
        };
        self.health.record_success();
        let verifier = Arc::clone(&self);
        let (checked, bytes) = (file.clone(), body.clone());
        let verified = tokio::task::spawn_blocking(move || verifier.verifier.verify(&checked, &bytes))
            .await
            .map_err(|e| CacheError::Internal(format!("a verification task failed: {e}")))?
            .map_err(|e| {
                tracing::warn!(path = %path, error = %e, "a registry file failed verification; not cached");
                CacheError::UpstreamData(format!(
                    "{} sent a registry file that fails verification, so pkgmirror did not cache or serve it: {e}",
                    self.client.upstream().redacted()
                ))
            })?;
        let record = match &verified {
            Verified::Package(package) => Some(self.project_record(package, now)),
            Verified::Names(_) | Verified::Versions(_) => None,
        };
        let page = Arc::new(StoredPage {
            header: self.header(etag_of(&body), now, upstream_etag),
            identity: body,
            gzip: Bytes::new(),
            zstd: Bytes::new(),
        });
        self.keep_page(&path, &page, record).await;
        Ok(Served {
            page,
            outcome: CacheOutcome::Miss,
        })
    }

    /// An upstream failure: the stored copy if there is one (stale), else the error.
    fn upstream_failed(
        &self,
        path: &str,
        error: UpstreamError,
        stored: Option<Arc<StoredPage>>,
    ) -> Result<Served, CacheError> {
        self.health
            .record_failure(FailureKind::Unreachable, &error.to_string());
        self.counters.count_upstream_error();
        match stored {
            Some(page) => {
                tracing::warn!(path, error = %error, "hex upstream failed; serving the stored copy");
                Ok(Served {
                    page,
                    outcome: CacheOutcome::Stale,
                })
            }
            None => Err(CacheError::Upstream(error)),
        }
    }

    /// Stores a registry file (and its package's releases) and holds it in memory. A failed
    /// write costs a refetch later, not this client's answer.
    async fn keep_page(&self, path: &str, page: &Arc<StoredPage>, record: Option<ProjectRecord>) {
        let (pages, catalogue) = (self.pages.clone(), self.catalogue.clone());
        let (key, stored) = (path.to_owned(), Arc::clone(page));
        let releases = record
            .as_ref()
            .map(|r| (r.name.clone(), Arc::new(by_filename(r.files.clone()))));
        let written = blocking(move || {
            if let Some(record) = &record {
                catalogue.record_project(record)?;
            }
            pages.write(&PageWrite {
                snapshots: Vec::new(),
                pages: vec![(PageKey::new(ECOSYSTEM, &key, REGISTRY_FORMAT), stored)],
            })
        })
        .await;
        if let Err(e) = written {
            tracing::error!(path, error = %e, "could not store a hex registry file; serving it anyway");
        }
        // What the verified file lists is what tarballs are checked against from now on, even
        // when the catalogue could not record it.
        if let Some((name, releases)) = releases {
            self.releases.insert(name, releases).await;
        }
        self.l1.insert(path.to_owned(), Arc::clone(page)).await;
    }

    /// A verified package as the catalogue records it: one file row per release.
    fn project_record(&self, package: &Package, now: u64) -> ProjectRecord {
        let base = self.client.upstream().cache_key();
        let files = package
            .release_infos()
            .into_iter()
            .map(|release| {
                let filename = tarball_name(&package.name, &release.version);
                FileRecord {
                    index_id: self.index_id,
                    url: format!("{base}tarballs/{filename}"),
                    filename,
                    version: Some(release.version),
                    sha256: release.outer_checksum,
                    size: None,
                    requires_python: None,
                    yanked: release
                        .retired
                        .map(|r| match r.message.filter(|m| !m.is_empty()) {
                            Some(message) => format!("{}: {message}", r.reason.as_str()),
                            None => r.reason.as_str().to_owned(),
                        }),
                    upload_time: release
                        .published_at
                        .and_then(|secs| u64::try_from(secs).ok())
                        .map(|secs| {
                            humantime::format_rfc3339_seconds(
                                std::time::UNIX_EPOCH + Duration::from_secs(secs),
                            )
                            .to_string()
                        }),
                    has_metadata: false,
                    metadata_sha256: None,
                    inner_checksum: Some(release.inner_checksum),
                }
            })
            .collect();
        ProjectRecord {
            ecosystem: ECOSYSTEM.as_str(),
            name: package.name.clone(),
            display_name: package.name.clone(),
            last_serial: None,
            status: None,
            fetched_at: now,
            files,
        }
    }

    async fn release_row(&self, name: &str, filename: &str) -> Result<Option<FileRecord>, CacheError> {
        if let Some(releases) = self.releases.get(name).await {
            return Ok(releases.get(filename).cloned());
        }
        let catalogue = self.catalogue.clone();
        let package = name.to_owned();
        let rows = blocking(move || catalogue.project_files(ECOSYSTEM.as_str(), &package)).await?;
        let releases = Arc::new(by_filename(rows));
        let found = releases.get(filename).cloned();
        self.releases.insert(name.to_owned(), releases).await;
        Ok(found)
    }

    async fn object_entry(&self, path: &str) -> Result<Option<ObjectEntry>, CacheError> {
        let pages = self.pages.clone();
        let key = path.to_owned();
        let snapshots = blocking(move || pages.snapshots(ECOSYSTEM, &key)).await?;
        // An unreadable entry (from another pkgmirror version) is a missing one.
        Ok(snapshots
            .into_iter()
            .find(|(index, _)| index == OBJECT_KEY)
            .and_then(|(_, bytes)| serde_json::from_slice(&bytes).ok()))
    }

    async fn write_object_entry(&self, path: &str, entry: &ObjectEntry) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| CacheError::Internal(e.to_string()))?;
        let pages = self.pages.clone();
        let key = path.to_owned();
        blocking(move || {
            pages.write(&PageWrite {
                snapshots: vec![(PageKey::new(ECOSYSTEM, &key, OBJECT_KEY), &bytes)],
                pages: Vec::new(),
            })
        })
        .await
    }

    /// Revalidates (or, with `refetch`, fetches anew) a blob-backed file.
    async fn refresh_object(
        self: Arc<Self>,
        path: String,
        ttl: Duration,
        refetch: bool,
    ) -> Result<StoredObject, CacheError> {
        let now = unix_now();
        let entry = self
            .object_entry(&path)
            .await?
            .filter(|e| e.sources == self.sources);
        if let Some(entry) = &entry
            && !refetch
            && entry.fetched_at.saturating_add(ttl.as_secs()) > now
        {
            return Ok(StoredObject {
                sha256: entry.sha256.clone(),
                outcome: CacheOutcome::Hit,
            });
        }
        let etag = entry
            .as_ref()
            .filter(|_| !refetch)
            .and_then(|e| e.upstream_etag.clone());
        let failed = |error: UpstreamError, entry: Option<ObjectEntry>| {
            self.health
                .record_failure(FailureKind::Unreachable, &error.to_string());
            self.counters.count_upstream_error();
            match entry {
                Some(entry) if !refetch => Ok(StoredObject {
                    sha256: entry.sha256,
                    outcome: CacheOutcome::Stale,
                }),
                _ => Err(CacheError::Upstream(error)),
            }
        };
        match self.client.fetch(&path, etag.as_deref()).await {
            Ok(HexFetched::NotModified) => {
                let Some(entry) = entry.filter(|_| etag.is_some()) else {
                    return Err(CacheError::UpstreamData(format!(
                        "{} answered 304 Not Modified to an unconditional request for {path}",
                        self.client.upstream().redacted()
                    )));
                };
                self.health.record_success();
                let entry = ObjectEntry {
                    fetched_at: now,
                    ..entry
                };
                self.write_object_entry(&path, &entry).await?;
                Ok(StoredObject {
                    sha256: entry.sha256,
                    outcome: CacheOutcome::Hit,
                })
            }
            Ok(HexFetched::Missing { status }) => {
                self.health.record_success();
                let pages = self.pages.clone();
                let key = path.clone();
                blocking(move || pages.forget(ECOSYSTEM, &key, false)).await?;
                Err(self.remember_missing(&path, status).await)
            }
            Ok(HexFetched::Found { response, etag }) => {
                let sha256 = match self.store_body(&path, response).await {
                    Ok(sha256) => sha256,
                    Err(StoreBodyError::Upstream(e)) => return failed(e, entry),
                    Err(StoreBodyError::Cache(e)) => return Err(e),
                };
                self.health.record_success();
                let entry = ObjectEntry {
                    fetched_at: now,
                    upstream_etag: etag,
                    sha256: sha256.clone(),
                    sources: self.sources.clone(),
                };
                self.write_object_entry(&path, &entry).await?;
                Ok(StoredObject {
                    sha256,
                    outcome: CacheOutcome::Miss,
                })
            }
            Err(e) => failed(e, entry),
        }
    }

    /// Streams a body into the blob store under its own sha256 and records the blob.
    async fn store_body(&self, path: &str, response: reqwest::Response) -> Result<String, StoreBodyError> {
        let storage =
            |e: crate::storage::blob::BlobError| StoreBodyError::Cache(CacheError::Storage(e.to_string()));
        let broken = |detail: String| {
            StoreBodyError::Upstream(UpstreamError::Body {
                index: self.client.upstream().redacted(),
                path: path.to_owned(),
                detail,
            })
        };
        let mut writer = self.store.put(None).await.map_err(storage)?;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    writer.abort().await;
                    return Err(broken(format!("the connection broke: {}", e.without_url())));
                }
            };
            if writer.written() + chunk.len() as u64 > MAX_OBJECT_BYTES {
                writer.abort().await;
                return Err(broken(format!(
                    "the file is larger than {MAX_OBJECT_BYTES} bytes"
                )));
            }
            if let Err(e) = writer.write(&chunk).await {
                writer.abort().await;
                return Err(storage(e));
            }
        }
        let sha256 = writer.digest_so_far();
        let size = writer.commit(&sha256).await.map_err(storage)?;
        let (catalogue, store, key) = (self.catalogue.clone(), self.store.name(), sha256.clone());
        blocking(move || catalogue.record_blob(&key, size, store, unix_now()))
            .await
            .map_err(StoreBodyError::Cache)?;
        tracing::info!(path, sha256 = %sha256, size, "hex file stored");
        Ok(sha256)
    }
}

enum StoreBodyError {
    /// The upstream's fault: a stale copy may stand in.
    Upstream(UpstreamError),
    Cache(CacheError),
}

fn by_filename(rows: Vec<FileRecord>) -> Releases {
    rows.into_iter().map(|row| (row.filename.clone(), row)).collect()
}

/// A strong ETag for bytes served as they are.
fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", ::hex::encode(&Sha256::digest(body)[..16]))
}
