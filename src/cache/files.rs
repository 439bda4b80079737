//! PyPI distribution files (`/simple/{project}/{filename}`) and their PEP 658 core metadata:
//! found on the project's page (refreshed once when a file is not listed yet), then answered by
//! the download engine. Wheels whose index offers no metadata get it extracted once stored.

use std::sync::Arc;

use super::downloads::{AfterVerify, Downloads, FileAnswer, Source};
use super::ingest::Kept;
use super::simple::{PageRef, SimplePages, View, ViewPage};
use super::{
    CacheCounters, CacheError, CacheOutcome, UNLISTED_REFRESH_INTERVAL, blocking, check_release, unix_now,
};
use crate::ecosystem::Ecosystem;
use crate::policy::SharedPolicy;
use crate::pypi::negotiate::Format;
use crate::pypi::wheel::extract_metadata;
use crate::storage::Catalogue;
use crate::storage::blob::RangeRequest;
use crate::storage::catalogue::FileRecord;
use crate::upstream::UrlOrigin;

pub use super::downloads::Eviction;

const ECOSYSTEM: Ecosystem = Ecosystem::Pypi;

/// A distribution file, or its PEP 658 core metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dist,
    Metadata,
}

/// The files of the projects on the Simple API pages.
pub struct PypiFiles {
    pages: Arc<SimplePages>,
    counters: Arc<CacheCounters>,
    catalogue: Catalogue,
    downloads: Arc<Downloads>,
    /// Which files may be served (`[policy]`).
    policy: Arc<SharedPolicy>,
    /// Projects whose page was refreshed for an unlisted file lately (names come from requests,
    /// so the set is bounded and entries expire).
    forced_refreshes: moka::future::Cache<String, ()>,
}

impl PypiFiles {
    pub fn new(
        pages: Arc<SimplePages>,
        catalogue: Catalogue,
        downloads: Arc<Downloads>,
        counters: Arc<CacheCounters>,
        policy: Arc<SharedPolicy>,
    ) -> Self {
        Self {
            pages,
            counters,
            catalogue,
            downloads,
            policy,
            forced_refreshes: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(UNLISTED_REFRESH_INTERVAL)
                .build(),
        }
    }

    /// Finds `filename` of `project` (normalized) on the view's page and answers it (see
    /// [`Downloads::open`]).
    pub async fn open(
        &self,
        view: &View,
        project: &str,
        filename: &str,
        kind: FileKind,
        complete_first: bool,
        range: Option<RangeRequest>,
    ) -> Result<FileAnswer, CacheError> {
        let entry = self.listed_file(view, project, filename).await?;
        check_release(&self.policy.current(), &self.counters, ECOSYSTEM, project, &entry)?;
        if kind == FileKind::Metadata && !entry.has_metadata {
            return self.extracted_metadata(project, &entry).await;
        }
        let source = source_of(&entry, kind);
        // A wheel whose index offers no metadata gets it extracted once stored (PEP 658).
        let after_verify =
            (kind == FileKind::Dist && !entry.has_metadata && entry.filename.ends_with(".whl")).then(|| {
                self.extractor()
                    .after_verify(project.to_owned(), entry.filename.clone())
            });
        self.downloads
            .open(&source, after_verify, complete_first, range)
            .await
    }

    /// Removes the stored bytes of one listed file (an admin evicting it); the next request
    /// downloads it again. A file being downloaded is left alone.
    pub async fn evict(&self, project: &str, filename: &str) -> Result<Eviction, CacheError> {
        // Only what the catalogue lists: evicting never asks an upstream.
        let entry = self.lookup(&View::All, project, filename).await?.ok_or_else(|| {
            CacheError::NotFound(format!(
                "'{filename}' is not listed on the cached page of project '{project}'"
            ))
        })?;
        let Some(sha256) = entry.sha256 else {
            return Ok(Eviction::NotStored);
        };
        self.downloads.evict(sha256).await
    }

    /// The catalogue row of a listed file. A file not listed gets the page refreshed once (the
    /// project may have released since the page was cached), at most every few seconds per project.
    async fn listed_file(
        &self,
        view: &View,
        project: &str,
        filename: &str,
    ) -> Result<FileRecord, CacheError> {
        if let Some(entry) = self.lookup(view, project, filename).await? {
            return Ok(entry);
        }
        let page = ViewPage {
            view: view.clone(),
            page: PageRef::Project(project.to_owned()),
        };
        let forced = page.store_key();
        if !self.forced_refreshes.contains_key(&forced) {
            self.forced_refreshes.insert(forced, ()).await;
            self.pages.revalidate(view, page.page, Format::Json).await?;
            if let Some(entry) = self.lookup(view, project, filename).await? {
                return Ok(entry);
            }
        }
        Err(CacheError::NotFound(format!(
            "'{filename}' is not listed on the page of project '{project}'"
        )))
    }

    async fn lookup(
        &self,
        view: &View,
        project: &str,
        filename: &str,
    ) -> Result<Option<FileRecord>, CacheError> {
        if let View::Index(index) = view {
            return self.pages.listed_in_view(index, project, filename).await;
        }
        // A file requested lately is found in memory, without a trip to the blocking pool.
        if let Some(row) = self.catalogue.hot_file(ECOSYSTEM, project, filename) {
            return Ok(Some(row));
        }
        let catalogue = self.catalogue.clone();
        let (project, filename) = (project.to_owned(), filename.to_owned());
        blocking(move || catalogue.project_file(ECOSYSTEM, &project, &filename)).await
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
        let known = match self.catalogue.hot_wheel_metadata(&wheel) {
            Some(metadata) => Some(metadata),
            None => {
                let catalogue = self.catalogue.clone();
                let key = wheel.clone();
                blocking(move || catalogue.wheel_metadata(&key)).await?
            }
        };
        if let Some(metadata) = &known
            && let Some(body) = self.downloads.stored_blob(metadata).await?
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
        if known.is_some() && self.downloads.stored_blob(&wheel).await?.is_none() {
            self.downloads.fetch(&source_of(entry, FileKind::Dist)).await?;
        }
        let metadata = self
            .extractor()
            .extract(project, &wheel, &entry.filename)
            .await?
            .ok_or_else(unavailable)?;
        let body = self
            .downloads
            .stored_blob(&metadata)
            .await?
            .ok_or_else(unavailable)?;
        self.counters.count(CacheOutcome::Miss);
        Ok(FileAnswer::Stored {
            body,
            sha256: metadata,
            outcome: CacheOutcome::Miss,
        })
    }

    fn extractor(&self) -> MetadataExtractor {
        MetadataExtractor {
            downloads: Arc::clone(&self.downloads),
            catalogue: self.catalogue.clone(),
            pages: Arc::clone(&self.pages),
        }
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
    downloads: Arc<Downloads>,
    catalogue: Catalogue,
    pages: Arc<SimplePages>,
}

impl MetadataExtractor {
    /// The metadata's sha256, or `None` when the wheel is not stored as a local file or has no
    /// metadata. (A wheel only in S3 is not fetched for this: new downloads are read while
    /// still staged, see [`Self::after_verify`].)
    async fn extract(
        &self,
        project: &str,
        wheel: &str,
        filename: &str,
    ) -> Result<Option<String>, CacheError> {
        let Some(path) = self.downloads.local_file(wheel).await? else {
            return Ok(None);
        };
        self.extract_from(project, wheel, filename, path).await
    }

    /// Extraction from a download's verified bytes, before they are committed.
    fn after_verify(self, project: String, filename: String) -> AfterVerify {
        Box::new(move |sha256, path| {
            Box::pin(async move {
                if let Err(e) = self.extract_from(&project, &sha256, &filename, path).await {
                    tracing::warn!(file = %filename, error = %e, "could not extract the wheel's metadata");
                }
            })
        })
    }

    /// Like `extract`, from the wheel's bytes at `path` (verified to hash to `wheel`).
    async fn extract_from(
        &self,
        project: &str,
        wheel: &str,
        filename: &str,
        path: std::path::PathBuf,
    ) -> Result<Option<String>, CacheError> {
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
        let sha256 = match self.downloads.ingest().bytes(&metadata).await {
            Ok(Kept::Stored { sha256, .. }) => sha256,
            Ok(Kept::Unstored { .. }) => {
                return Err(CacheError::StorageUnavailable(format!(
                    "the metadata extracted from {filename} could not be stored"
                )));
            }
            Err(e) => return Err(CacheError::Storage(e.to_string())),
        };
        let catalogue = self.catalogue.clone();
        let (wheel_key, metadata_key) = (wheel.to_owned(), sha256.clone());
        blocking(move || catalogue.record_wheel_metadata(&wheel_key, &metadata_key, unix_now())).await?;
        self.pages
            .forget_rendering(PageRef::Project(project.to_owned()))
            .await?;
        tracing::info!(file = %filename, metadata = %sha256, "extracted core metadata from the wheel");
        Ok(Some(sha256))
    }
}
