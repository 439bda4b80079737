//! PyPI distribution files (`/simple/{project}/{filename}`), their PEP 658 core metadata and
//! PEP 740 provenance: found on the project's page (refreshed once when a file is not listed
//! yet), then answered by the download engine. Wheels whose index offers no metadata get it
//! extracted once stored; a provenance object is fetched once and then served from the store.

use std::sync::Arc;

use super::downloads::{AfterVerify, Downloads, FileAnswer, MAX_UNSIZED_BYTES, Source};
use super::ingest::Kept;
use super::simple::{PageRef, SimplePages, View, ViewPage};
use super::{
    CacheCounters, CacheError, CacheOutcome, UNLISTED_REFRESH_INTERVAL, blocking, check_release, unix_now,
};
use crate::ecosystem::Ecosystem;
use crate::policy::SharedPolicy;
use crate::pypi::negotiate::Format;
use crate::pypi::provenance;
use crate::pypi::wheel::extract_metadata;
use crate::storage::Catalogue;
use crate::storage::blob::{BlobBody, RangeRequest};
use crate::storage::catalogue::{Derived, FileRecord};
use crate::upstream::UrlOrigin;

pub use super::downloads::Eviction;

const ECOSYSTEM: Ecosystem = Ecosystem::Pypi;

/// The most bytes of a provenance object (nothing says how big it is; a real one is a few KB).
const MAX_PROVENANCE_BYTES: u64 = 1024 * 1024;

/// A distribution file, its PEP 658 core metadata, or its PEP 740 provenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dist,
    Metadata,
    Provenance,
}

impl FileKind {
    /// What a requested name asks for, and of which file: `{filename}.metadata`,
    /// `{filename}.provenance`, else the file itself.
    pub fn of(requested: &str) -> (&str, Self) {
        [
            (".metadata", Self::Metadata),
            (provenance::SUFFIX, Self::Provenance),
        ]
        .into_iter()
        .find_map(|(suffix, kind)| Some((requested.strip_suffix(suffix)?, kind)))
        .unwrap_or((requested, Self::Dist))
    }
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
        let source = match kind {
            FileKind::Dist => dist_source(&entry),
            FileKind::Metadata if entry.has_metadata => metadata_source(&entry),
            FileKind::Metadata => return self.extracted_metadata(project, &entry).await,
            FileKind::Provenance => return self.provenance(&entry).await,
        };
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
        let known = self.derived(Derived::WheelMetadata, &wheel).await?;
        if let Some(metadata) = &known
            && let Some(body) = self.downloads.stored_blob(metadata).await?
        {
            return Ok(self.stored(body, metadata.clone(), CacheOutcome::Hit));
        }
        // Pages advertise an extract once it exists; if its blob and the wheel were evicted since,
        // fetch the wheel again rather than answer 404 to a client that was promised the metadata.
        if known.is_some() && self.downloads.stored_blob(&wheel).await?.is_none() {
            self.downloads.fetch(&dist_source(entry)).await?;
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
        Ok(self.stored(body, metadata, CacheOutcome::Miss))
    }

    /// The file's PEP 740 provenance object: fetched from the index once, recorded by its URL,
    /// and from then on served from the blob store without asking the index (also while it is
    /// down). Fetched again only if its blob was evicted.
    async fn provenance(&self, entry: &FileRecord) -> Result<FileAnswer, CacheError> {
        let Some(url) = &entry.provenance else {
            return Err(CacheError::NotFound(format!(
                "the index offers no provenance for '{}'",
                entry.filename
            )));
        };
        if let Some(sha256) = self.derived(Derived::Provenance, url).await?
            && let Some(body) = self.downloads.stored_blob(&sha256).await?
        {
            return Ok(self.stored(body, sha256, CacheOutcome::Hit));
        }
        let sha256 = self
            .downloads
            .fetch(&Source {
                url: url.clone(),
                origin: UrlOrigin::IndexPage,
                sha256: None,
                size: None,
                max_size: MAX_PROVENANCE_BYTES,
            })
            .await?;
        let body = self.downloads.stored_blob(&sha256).await?.ok_or_else(|| {
            CacheError::StorageUnavailable(format!(
                "the provenance of '{}' was fetched but the blob store could not keep it (see /health)",
                entry.filename
            ))
        })?;
        let catalogue = self.catalogue.clone();
        let (key, blob) = (url.clone(), sha256.clone());
        blocking(move || catalogue.record_derived(Derived::Provenance, &key, &blob, unix_now())).await?;
        Ok(self.stored(body, sha256, CacheOutcome::Miss))
    }

    /// The sha256 of the blob pkgmirror made of `from` before, if it did (memory first).
    async fn derived(&self, kind: Derived, from: &str) -> Result<Option<String>, CacheError> {
        if let Some(sha256) = self.catalogue.hot_derived(kind, from) {
            return Ok(Some(sha256));
        }
        let catalogue = self.catalogue.clone();
        let from = from.to_owned();
        blocking(move || catalogue.derived(kind, &from)).await
    }

    /// A stored blob as the answer, counted as `outcome`.
    fn stored(&self, body: BlobBody, sha256: String, outcome: CacheOutcome) -> FileAnswer {
        self.counters.count(outcome);
        FileAnswer::Stored {
            body,
            sha256,
            outcome,
        }
    }

    fn extractor(&self) -> MetadataExtractor {
        MetadataExtractor {
            downloads: Arc::clone(&self.downloads),
            catalogue: self.catalogue.clone(),
            pages: Arc::clone(&self.pages),
        }
    }
}

/// Where a listed file is fetched from.
fn dist_source(entry: &FileRecord) -> Source {
    Source {
        url: entry.url.clone(),
        origin: UrlOrigin::IndexPage,
        sha256: entry.sha256.clone(),
        size: entry.size,
        max_size: MAX_UNSIZED_BYTES,
    }
}

/// Where the metadata an index offers for a listed file is fetched from (PEP 658: next to the
/// distribution, at `{url}.metadata`).
fn metadata_source(entry: &FileRecord) -> Source {
    Source {
        url: format!("{}.metadata", entry.url),
        origin: UrlOrigin::IndexPage,
        sha256: entry.metadata_sha256.clone(),
        size: None,
        max_size: MAX_UNSIZED_BYTES,
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
        blocking(move || {
            catalogue.record_derived(Derived::WheelMetadata, &wheel_key, &metadata_key, unix_now())
        })
        .await?;
        self.pages
            .forget_rendering(PageRef::Project(project.to_owned()))
            .await?;
        tracing::info!(file = %filename, metadata = %sha256, "extracted core metadata from the wheel");
        Ok(Some(sha256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_name_says_which_file_and_what_of_it() {
        let of = FileKind::of;
        assert_eq!(of("demo-1.0.tar.gz"), ("demo-1.0.tar.gz", FileKind::Dist));
        assert_eq!(
            of("demo-1.0-py3-none-any.whl.metadata"),
            ("demo-1.0-py3-none-any.whl", FileKind::Metadata)
        );
        assert_eq!(
            of("demo-1.0.tar.gz.provenance"),
            ("demo-1.0.tar.gz", FileKind::Provenance)
        );
        // Only the last suffix counts: the provenance of a file named `….metadata`.
        assert_eq!(
            of("odd.metadata.provenance"),
            ("odd.metadata", FileKind::Provenance)
        );
    }
}
