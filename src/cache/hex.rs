//! The hex repository flow behind `/hex/...`.
//!
//! - **Registry files** (`/names`, `/versions`, `/packages/{name}`) are pages of the shared page
//!   cache, kept exactly as the upstream sent them, with the upstream's ETag for revalidation. A
//!   fetched file is verified first (gzip, RSA-SHA512 signature with the pinned key, repository
//!   and package name): one that fails is answered 502 and never stored. A verified
//!   `/packages/{name}` is also recorded in the catalogue, one file row per release.
//! - **Tarballs** are files like PyPI's: the release's catalogue row gives the outer checksum,
//!   and the download engine downloads (single-flight, hold-back), verifies and stores them.
//! - **Other files** (docs, `/public_key`, `/installs/...`) are stored as blobs under their own
//!   sha256; the page cache keeps a pointer to the blob with the upstream's ETag, revalidated
//!   after a TTL that depends on the kind of file.
//!
//! Upstream answers of "no such file" (404, 403, 410) are remembered for a minute, so a missing
//! package does not cost an upstream request per client request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use super::downloads::{Downloads, FileAnswer, MAX_UNSIZED_BYTES, Source};
use super::ingest::{Ingest, IngestError, Kept, SizeLimit};
use super::pages::{Keep, PageCache, PageCacheSettings, PageSource, Refresh, Refreshed, Served, Upstreams};
use super::{
    CacheCounters, CacheError, CacheOutcome, UNLISTED_REFRESH_INTERVAL, blocking, check_release, unix_now,
};
use crate::ecosystem::Ecosystem;
use crate::hex::hosted::signed;
use crate::hex::resign::{ReleaseRef, filter_payload};
use crate::hex::{HexSigningKey, Package, RegistryFile, RegistryVerifier, RepoPath, Verified, tarball_name};
use crate::policy::Release;
use crate::policy::SharedPolicy;
use crate::storage::blob::RangeRequest;
use crate::storage::catalogue::{FileRecord, ProjectRecord};
use crate::storage::pages::{PageForm, PageHeader, StoredPage};
use crate::storage::{Catalogue, PageStore};
use crate::upstream::{
    FailureKind, HexClient, HexFetched, IndexHealth, IndexHealthReport, UpstreamError, UrlOrigin,
};

const ECOSYSTEM: Ecosystem = Ecosystem::Hex;
/// How long an upstream "no such file" is believed.
const MISSING_TTL: Duration = Duration::from_secs(60);
/// How long a re-signed registry file is served before it is made again (a cooldown that ends
/// shows within this).
const RESIGNED_TTL: Duration = Duration::from_secs(60);
/// The largest docs or installer file stored.
const MAX_OBJECT_BYTES: u64 = 1024 * 1024 * 1024;
/// How long docs and the public key are kept before being revalidated (hex.pm says one day).
const DOCS_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Installer archives (`.ez`) never change under their name.
const IMMUTABLE_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A page of the hex repository in the page cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HexPage {
    Registry(RegistryFile),
    /// A file kept as a blob: its repository path, and how long it stays fresh.
    Object {
        path: String,
        ttl: Duration,
    },
}

impl HexPage {
    fn path(&self) -> String {
        match self {
            Self::Registry(file) => file.path(),
            Self::Object { path, .. } => path.clone(),
        }
    }
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
    /// How the page cache of registry files holds and refreshes them.
    pub cache: PageCacheSettings,
    /// Which releases' tarballs may be served (`[policy]`).
    pub policy: Arc<SharedPolicy>,
    /// `hex.resign_key`: registry files go out without the releases the policy holds back,
    /// signed with it.
    pub resign: Option<HexSigningKey>,
}

pub struct HexMirror {
    cache: PageCache<HexSource>,
    downloads: Arc<Downloads>,
    policy: Arc<SharedPolicy>,
    resign: Option<HexSigningKey>,
    /// Re-signed registry files: (path, upstream file's ETag, policy in force) → the file. They
    /// expire after a minute, so a release whose cooldown ends shows up within one.
    resigned: Cache<(String, String, usize), Arc<StoredPage>>,
    /// Packages whose registry file was refreshed for an unknown release lately.
    forced_refreshes: Cache<String, ()>,
}

/// How hex pages are fetched, checked and recorded.
struct HexSource {
    client: HexClient,
    verifier: RegistryVerifier,
    /// `hex.ttl`, replaced by a reload.
    ttl: crate::live::Live<Duration>,
    /// The upstream and TTL the stored files were fetched under: a config change makes stored
    /// files stale (and their upstream ETags meaningless).
    sources: String,
    index_id: i64,
    catalogue: Catalogue,
    ingest: Ingest,
    /// Paths the upstream said it does not have: path → message.
    missing: Cache<String, String>,
    /// The catalogue's release rows of recently asked packages (package → tarball name → row),
    /// so serving a cached tarball does not wait on SQLite. Replaced whenever a package's
    /// registry file is recorded.
    releases: Cache<String, Arc<Releases>>,
    health: IndexHealth,
    counters: Arc<CacheCounters>,
}

impl HexMirror {
    pub fn new(
        settings: HexSettings,
        pages: PageStore,
        catalogue: Catalogue,
        downloads: Arc<Downloads>,
        counters: Arc<CacheCounters>,
        runtime: Handle,
    ) -> Self {
        let sources = format!(
            "{}@{}",
            settings.client.upstream().cache_key(),
            settings.ttl.as_secs()
        );
        let source = HexSource {
            client: settings.client,
            verifier: settings.verifier,
            ttl: crate::live::Live::new(settings.ttl),
            sources: sources.clone(),
            index_id: settings.index_id,
            catalogue: catalogue.clone(),
            ingest: downloads.ingest().clone(),
            missing: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(MISSING_TTL)
                .build(),
            releases: Cache::builder().max_capacity(10_000).build(),
            health: IndexHealth::default(),
            counters: Arc::clone(&counters),
        };
        Self {
            cache: PageCache::new(
                Arc::new(source),
                sources,
                pages,
                catalogue,
                settings.cache,
                counters,
                runtime,
            ),
            downloads,
            policy: settings.policy,
            resign: settings.resign,
            resigned: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(RESIGNED_TTL)
                .build(),
            forced_refreshes: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(UNLISTED_REFRESH_INTERVAL)
                .build(),
        }
    }

    fn source(&self) -> &HexSource {
        self.cache.source()
    }

    /// The upstream's health, for `/health` and the UI: (redacted URL, report).
    /// Puts a reloaded `hex.upstream_url` (its members) and `hex.ttl` in force. The first URL
    /// at start stays the repository's identity until a restart.
    pub fn replace_upstream(&self, config: &crate::config::HexConfig) {
        let source = self.source();
        source.client.pool().replace(config.upstream_url.members());
        source.ttl.replace(config.ttl);
    }

    /// Probes the repository's members left out after a failure, putting back those that answer.
    pub async fn probe_left_out(&self) {
        let client = &self.source().client;
        for member in client.pool().left_out() {
            let outcome = client.probe(&member.url).await;
            client.pool().probed(&member, outcome);
        }
    }

    pub fn health_report(&self) -> (String, IndexHealthReport, Vec<crate::upstream::MemberReport>) {
        let source = self.source();
        (
            source.client.upstream().redacted(),
            source.health.report(),
            source.client.pool().reports(),
        )
    }

    /// A registry file as the upstream sent it (see [`PageCache::get`]), or, with
    /// `hex.resign_key`, without the releases the policy holds back, signed by the mirror.
    pub async fn registry(&self, file: RegistryFile) -> Result<Served, CacheError> {
        let served = self.upstream_registry(&file).await?;
        let Some(key) = &self.resign else {
            return Ok(served);
        };
        let cache_key = (
            file.path(),
            served.page.header.etag.clone(),
            self.policy_generation(),
        );
        if let Some(page) = self.resigned.get(&cache_key).await {
            return Ok(Served {
                page,
                outcome: served.outcome,
            });
        }
        let payload = self.policy_payload(&file, &served).await?;
        let page = signed_page(payload, key, &served.page.header).await?;
        self.resigned.insert(cache_key, Arc::clone(&page)).await;
        Ok(Served {
            page,
            outcome: served.outcome,
        })
    }

    /// A registry file as the upstream sent it and the mirror verified it.
    pub async fn upstream_registry(&self, file: &RegistryFile) -> Result<Served, CacheError> {
        self.source().check_missing(&file.path()).await?;
        self.cache
            .get(HexPage::Registry(file.clone()), PageForm::Raw)
            .await
    }

    /// Which release policy is in force: part of the key of anything made with it.
    pub fn policy_generation(&self) -> usize {
        Arc::as_ptr(&self.policy.current()) as usize
    }

    /// The mirror's public key, when it signs the registry files it serves.
    pub fn own_public_key(&self) -> Option<&str> {
        self.resign.as_ref().map(HexSigningKey::public_pem)
    }

    /// The upstream repository's name, which its files carry.
    pub fn upstream_repository(&self) -> &str {
        self.source().verifier.repository()
    }

    /// The payload of `served` (an upstream registry file) without the releases the release
    /// policy holds back.
    pub async fn policy_payload(&self, file: &RegistryFile, served: &Served) -> Result<Vec<u8>, CacheError> {
        let policy = self.policy.current();
        let catalogue = self.source().catalogue.clone();
        let times = match file {
            RegistryFile::Names => HashMap::new(),
            RegistryFile::Package(name) => {
                let name = name.clone();
                blocking(move || {
                    let seen = catalogue.first_seen(ECOSYSTEM, &name)?;
                    Ok(seen
                        .into_iter()
                        .map(|(filename, at)| ((name.clone(), filename), (None, Some(at))))
                        .collect())
                })
                .await?
            }
            RegistryFile::Versions => blocking(move || catalogue.release_times(ECOSYSTEM)).await?,
        };
        let payload = self
            .source()
            .verifier
            .payload(file, &served.page.identity)
            .map_err(|e| CacheError::UpstreamData(e.to_string()))?;
        let which = file.clone();
        tokio::task::spawn_blocking(move || {
            let now = unix_now();
            let keep_package = |name: &str| policy.denied_project(ECOSYSTEM, name).is_none();
            let keep = |release: &ReleaseRef<'_>| {
                let filename = tarball_name(release.package, release.version);
                let known = times.get(&(release.package.to_owned(), filename));
                let uploaded_at = release.published_at.or_else(|| {
                    known
                        .and_then(|(time, _)| time.as_deref())
                        .and_then(crate::policy::parse_time)
                });
                let asked = Release {
                    ecosystem: ECOSYSTEM,
                    project: release.package,
                    version: Some(release.version),
                    uploaded_at,
                    first_seen: known.and_then(|(_, seen)| *seen).unwrap_or(now),
                };
                match (&which, known) {
                    // `/versions` gives no times: a release whose registry file the mirror has
                    // not read is judged by the rules alone.
                    (RegistryFile::Versions, None) => !policy.rule_denies(&asked),
                    _ => policy.judge(&asked, now).is_ok(),
                }
            };
            filter_payload(&which, &payload, &keep_package, &keep)
        })
        .await
        .map_err(|e| CacheError::Internal(e.to_string()))?
        .map_err(CacheError::UpstreamData)
    }

    async fn refresh_registry(&self, file: RegistryFile) -> Result<Served, CacheError> {
        self.cache
            .refresh(HexPage::Registry(file), PageForm::Raw, Refresh::Revalidate)
            .await
    }

    /// A release tarball, verified against the outer checksum of the package's verified registry
    /// file before it is stored (see [`Downloads::open`]).
    pub async fn tarball(
        &self,
        name: &str,
        version: &str,
        complete_first: bool,
        range: Option<RangeRequest>,
    ) -> Result<FileAnswer, CacheError> {
        let release = self.release(name, version).await?;
        // The registry file passes through as signed; the release's tarball is what is refused.
        check_release(
            &self.policy.current(),
            &self.source().counters,
            ECOSYSTEM,
            name,
            &release,
        )?;
        let sha256 = release.sha256.clone().ok_or_else(|| {
            CacheError::UpstreamData(format!(
                "the registry gives no outer checksum for '{}', so pkgmirror cannot verify it and does not serve it",
                release.filename
            ))
        })?;
        let url = self
            .source()
            .client
            .url(&format!("tarballs/{}", release.filename))
            .map_err(CacheError::Upstream)?;
        let source = Source {
            url: url.into(),
            origin: UrlOrigin::Configured,
            sha256: Some(sha256),
            size: release.size,
            max_size: MAX_UNSIZED_BYTES,
        };
        self.downloads.open(&source, None, complete_first, range).await
    }

    /// The catalogue row of a release. A release the stored registry file does not list gets
    /// the file refreshed once (it may have been published since), at most every few seconds.
    async fn release(&self, name: &str, version: &str) -> Result<FileRecord, CacheError> {
        let filename = tarball_name(name, version);
        if let Some(found) = self.source().release_row(name, &filename).await? {
            return Ok(found);
        }
        self.registry(RegistryFile::Package(name.to_owned())).await?;
        if let Some(found) = self.source().release_row(name, &filename).await? {
            return Ok(found);
        }
        if !self.forced_refreshes.contains_key(name) {
            self.forced_refreshes.insert(name.to_owned(), ()).await;
            self.refresh_registry(RegistryFile::Package(name.to_owned()))
                .await?;
            if let Some(found) = self.source().release_row(name, &filename).await? {
                return Ok(found);
            }
        }
        Err(CacheError::NotFound(format!(
            "package '{name}' has no release '{version}' in the registry"
        )))
    }

    /// Docs, the public key or an installer file, stored as a blob.
    pub async fn other_file(&self, path: &RepoPath) -> Result<FileAnswer, CacheError> {
        let key = HexPage::Object {
            path: path.path(),
            ttl: self.ttl_of(path),
        };
        self.source().check_missing(&key.path()).await?;
        let Served { page, outcome } = self.cache.get(key.clone(), PageForm::Blob).await?;
        let sha256 = blob_of(&page)?;
        if let Some(body) = self.downloads.stored_blob(&sha256).await? {
            return Ok(FileAnswer::Stored {
                body,
                sha256,
                outcome,
            });
        }
        // The blob was evicted: fetch the file again, whatever its ETag says.
        let Served { page, outcome } = self
            .cache
            .refresh(key.clone(), PageForm::Blob, Refresh::Refetch)
            .await?;
        let sha256 = blob_of(&page)?;
        let body = self.downloads.stored_blob(&sha256).await?.ok_or_else(|| {
            CacheError::StorageUnavailable(format!(
                "{} was downloaded but the blob store could not keep it (see /health)",
                key.path()
            ))
        })?;
        Ok(FileAnswer::Stored {
            body,
            sha256,
            outcome,
        })
    }

    /// How long a blob-backed file is kept before it is revalidated.
    fn ttl_of(&self, path: &RepoPath) -> Duration {
        match path {
            RepoPath::Installs { path } if path.ends_with(".ez") => IMMUTABLE_TTL,
            RepoPath::Docs { .. } | RepoPath::PublicKey => DOCS_TTL,
            _ => *self.source().ttl.current(),
        }
    }

    /// Forgets a package's registry file (memory, disk, and a remembered "missing"), so the
    /// next request fetches it. Returns whether anything was stored.
    pub async fn forget_package(&self, name: &str) -> Result<bool, CacheError> {
        let file = RegistryFile::Package(name.to_owned());
        self.source().missing.invalidate(&file.path()).await;
        self.cache.forget(&[HexPage::Registry(file)], false).await
    }

    /// When a package's registry file was fetched and when it expires, if it is stored.
    pub async fn package_times(&self, name: &str) -> Result<Option<(u64, u64)>, CacheError> {
        let key = HexPage::Registry(RegistryFile::Package(name.to_owned()));
        let page = self.cache.stored(&key, PageForm::Raw).await?;
        Ok(page.map(|p| (p.header.fetched_at, p.header.expires_at)))
    }
}

/// `payload` signed with `key` and gzipped, as a page whose ETag is its digest; the other
/// header fields (times, sources) are `header`'s.
pub(crate) async fn signed_page(
    payload: Vec<u8>,
    key: &HexSigningKey,
    header: &PageHeader,
) -> Result<Arc<StoredPage>, CacheError> {
    let key = key.clone();
    let gz = tokio::task::spawn_blocking(move || signed(payload, &key))
        .await
        .map_err(|e| CacheError::Internal(e.to_string()))?
        .map_err(CacheError::Internal)?;
    Ok(Arc::new(StoredPage {
        header: PageHeader {
            etag: etag_of(&gz),
            ..header.clone()
        },
        identity: Bytes::from(gz),
        gzip: Bytes::new(),
        zstd: Bytes::new(),
    }))
}

/// The sha256 a blob pointer names.
fn blob_of(page: &StoredPage) -> Result<String, CacheError> {
    std::str::from_utf8(&page.identity)
        .ok()
        .filter(|sha| sha.len() == 64)
        .map(str::to_owned)
        .ok_or_else(|| CacheError::Internal("a stored blob pointer is not a sha256".into()))
}

impl PageSource for HexSource {
    type Key = HexPage;
    const ECOSYSTEM: Ecosystem = ECOSYSTEM;

    fn forms(key: &HexPage) -> &'static [PageForm] {
        match key {
            HexPage::Registry(_) => &[PageForm::Raw],
            HexPage::Object { .. } => &[PageForm::Blob],
        }
    }

    fn store_key(key: &HexPage) -> String {
        key.path()
    }

    fn upstreams(&self) -> Upstreams {
        if self.health.backing_off() {
            Upstreams::BackingOff
        } else {
            Upstreams::Available
        }
    }

    async fn refresh(
        self: Arc<Self>,
        key: HexPage,
        stored: Option<Arc<StoredPage>>,
        _mode: Refresh,
    ) -> Result<Refreshed, CacheError> {
        let path = key.path();
        let now = unix_now();
        // An ETag means something only to the upstream that sent it.
        let stored = stored.filter(|page| page.header.sources == self.sources);
        let etag = stored.as_ref().and_then(|page| page.header.upstream_etag.clone());
        let ttl = match &key {
            HexPage::Registry(_) => *self.ttl.current(),
            HexPage::Object { ttl, .. } => *ttl,
        };
        let fetched = match &key {
            HexPage::Registry(_) => self.client.fetch_registry(&path, etag.as_deref()).await,
            HexPage::Object { .. } => self.client.fetch(&path, etag.as_deref()).await,
        };
        let (response, upstream_etag) = match fetched {
            Ok(HexFetched::NotModified) => {
                let Some(page) = stored.filter(|_| etag.is_some()) else {
                    return Err(CacheError::UpstreamData(format!(
                        "{} answered 304 Not Modified to an unconditional request for {path}",
                        self.client.upstream().redacted()
                    )));
                };
                self.health.record_success();
                let page = StoredPage {
                    header: self.header(
                        page.header.etag.clone(),
                        now,
                        ttl,
                        page.header.upstream_etag.clone(),
                    ),
                    ..(*page).clone()
                };
                return Ok(self.page(&key, page, CacheOutcome::Hit, Keep::forms()));
            }
            Ok(HexFetched::Missing { status }) => {
                self.health.record_success();
                return Ok(Refreshed::Gone(self.remember_missing(&path, status).await));
            }
            Ok(HexFetched::Found { response, etag }) => (response, etag),
            Err(e) => return Err(self.upstream_failed(e)),
        };
        let (body, keep) = match &key {
            HexPage::Registry(file) => {
                let body = self
                    .client
                    .read_body(&path, response)
                    .await
                    .map_err(|e| self.upstream_failed(e))?;
                self.health.record_success();
                let record = self.verify(file, &body, now).await?;
                (
                    body,
                    Keep {
                        record,
                        ..Keep::forms()
                    },
                )
            }
            HexPage::Object { .. } => {
                let sha256 = self.store_body(&path, response).await?;
                self.health.record_success();
                (Bytes::from(sha256), Keep::forms())
            }
        };
        let page = StoredPage {
            header: self.header(etag_of(&body), now, ttl, upstream_etag),
            identity: body,
            gzip: Bytes::new(),
            zstd: Bytes::new(),
        };
        Ok(self.page(&key, page, CacheOutcome::Miss, keep))
    }
}

impl HexSource {
    fn page(&self, key: &HexPage, page: StoredPage, outcome: CacheOutcome, keep: Keep) -> Refreshed {
        Refreshed::Page {
            forms: vec![(HexSource::forms(key)[0], Arc::new(page))],
            outcome,
            keep,
        }
    }

    fn header(&self, etag: String, now: u64, ttl: Duration, upstream_etag: Option<String>) -> PageHeader {
        PageHeader {
            etag,
            fetched_at: now,
            expires_at: now.saturating_add(ttl.as_secs()),
            sources: self.sources.clone(),
            upstream_etag,
        }
    }

    /// Counts an upstream failure; the page cache serves the stored copy if there is one.
    fn upstream_failed(&self, error: UpstreamError) -> CacheError {
        self.health
            .record_failure(FailureKind::Unreachable, &error.to_string());
        self.counters.count_upstream_error();
        CacheError::Upstream(error)
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

    /// Checks a registry file against the pinned key; a verified package's releases become what
    /// its tarballs are checked against, and the record the catalogue keeps.
    async fn verify(
        &self,
        file: &RegistryFile,
        body: &Bytes,
        now: u64,
    ) -> Result<Option<ProjectRecord>, CacheError> {
        let verifier = self.verifier.clone();
        let (checked, bytes) = (file.clone(), body.clone());
        let verified = tokio::task::spawn_blocking(move || verifier.verify(&checked, &bytes))
            .await
            .map_err(|e| CacheError::Internal(format!("a verification task failed: {e}")))?
            .map_err(|e| {
                tracing::warn!(path = %file.path(), error = %e, "a registry file failed verification; not cached");
                CacheError::UpstreamData(format!(
                    "{} sent a registry file that fails verification, so pkgmirror did not cache or serve it: {e}",
                    self.client.upstream().redacted()
                ))
            })?;
        let Verified::Package(package) = &verified else {
            return Ok(None);
        };
        let record = self.project_record(package, now);
        // What the verified file lists is what tarballs are checked against from now on, even
        // when the catalogue cannot record it.
        self.releases
            .insert(record.name.clone(), Arc::new(by_filename(record.files.clone())))
            .await;
        Ok(Some(record))
    }

    /// Streams a docs or installer file into the blob store; returns its sha256.
    async fn store_body(&self, path: &str, response: reqwest::Response) -> Result<String, CacheError> {
        let storage = |e: String| CacheError::Storage(e);
        let mut staged = self
            .ingest
            .stage(None, SizeLimit::AtMost(MAX_OBJECT_BYTES))
            .await
            .map_err(|e| storage(e.to_string()))?;
        if let Err(e) = staged.receive(response, |_| {}).await {
            staged.abort().await;
            return Err(match e {
                IngestError::Upstream(detail) => self.upstream_failed(UpstreamError::Body {
                    index: self.client.upstream().redacted(),
                    path: path.to_owned(),
                    detail,
                }),
                other => storage(other.to_string()),
            });
        }
        match staged.commit().await {
            Ok(Kept::Stored { sha256, size }) => {
                tracing::info!(path, sha256 = %sha256, size, "hex file stored");
                Ok(sha256)
            }
            Ok(Kept::Unstored { .. }) => Err(CacheError::StorageUnavailable(format!(
                "{path} was downloaded but the blob store could not keep it (see /health)"
            ))),
            Err(e) => Err(storage(e.to_string())),
        }
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
                    first_seen: None,
                    provenance: None,
                }
            })
            .collect();
        ProjectRecord {
            ecosystem: ECOSYSTEM,
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
        let rows = blocking(move || catalogue.project_files(ECOSYSTEM, &package)).await?;
        let releases = Arc::new(by_filename(rows));
        let found = releases.get(filename).cloned();
        self.releases.insert(name.to_owned(), releases).await;
        Ok(found)
    }
}

fn by_filename(rows: Vec<FileRecord>) -> Releases {
    rows.into_iter().map(|row| (row.filename.clone(), row)).collect()
}

/// A strong ETag for bytes served as they are.
fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", ::hex::encode(&Sha256::digest(body)[..16]))
}
