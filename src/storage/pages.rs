//! The page store (`pages.redb`): the response cache. It keeps two things per page:
//! - one *snapshot* per upstream index: what that index last said, with its ETag and fetch time,
//!   so each index is revalidated on its own TTL;
//! - the *rendered* page per format, with its gzip and zstd forms compressed once when stored.
//!
//! Losing this file costs a refetch, never data. Every method is blocking (redb commits fsync):
//! call them from `spawn_blocking`.

use crate::ecosystem::Ecosystem;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::StorageError;

/// (ecosystem, page, index key) → snapshot bytes (the cache layer's encoding).
const SNAPSHOTS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("snapshots");
/// (ecosystem, page, form) → encoded [`StoredPage`].
const PAGES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("pages");

/// A rendered page as served: the exact bytes in every encoding, and its validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPage {
    pub header: PageHeader,
    pub identity: Bytes,
    pub gzip: Bytes,
    pub zstd: Bytes,
}

/// The small, self-describing part of a [`StoredPage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageHeader {
    /// A strong ETag, quoted, identifying the identity bytes.
    pub etag: String,
    /// Unix seconds when the newest upstream data in this page was fetched.
    pub fetched_at: u64,
    /// Unix seconds after which the page must be revalidated upstream.
    pub expires_at: u64,
    /// Identifies the set of upstream indexes the page was built from; a config change makes it
    /// differ, so the page is rebuilt rather than served from the old set.
    pub sources: String,
    /// The upstream's own ETag, for a page stored as the upstream sent it (a hex registry
    /// file): revalidation sends it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_etag: Option<String>,
}

impl StoredPage {
    /// Total bytes held, for weighing the in-memory cache.
    pub fn weight(&self) -> usize {
        self.identity.len() + self.gzip.len() + self.zstd.len() + self.header.etag.len() + 64
    }

    // Layout: u32 header length, header JSON, then three (u64 length, bytes) bodies. Hand-rolled
    // because serde formats would either inflate the bodies (JSON) or add a dependency for 20 lines.
    fn encode(&self) -> Result<Vec<u8>, StorageError> {
        let header = serde_json::to_vec(&self.header)
            .map_err(|e| StorageError::Corrupt(format!("page header: {e}")))?;
        let mut out = Vec::with_capacity(4 + header.len() + 24 + self.weight());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for body in [&self.identity, &self.gzip, &self.zstd] {
            out.extend_from_slice(&(body.len() as u64).to_le_bytes());
            out.extend_from_slice(body);
        }
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        let corrupt = || StorageError::Corrupt("a stored page is truncated".into());
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8], StorageError> {
            if rest.len() < n {
                return Err(corrupt());
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let header_len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt())?) as usize;
        let header: PageHeader = serde_json::from_slice(take(header_len)?)
            .map_err(|e| StorageError::Corrupt(format!("page header: {e}")))?;
        let mut bodies = [Bytes::new(), Bytes::new(), Bytes::new()];
        for body in &mut bodies {
            let len = u64::from_le_bytes(take(8)?.try_into().map_err(|_| corrupt())?);
            let len = usize::try_from(len).map_err(|_| corrupt())?;
            *body = Bytes::copy_from_slice(take(len)?);
        }
        let [identity, gzip, zstd] = bodies;
        Ok(Self {
            header,
            identity,
            gzip,
            zstd,
        })
    }
}

/// Which form of a page a stored rendering is. The names are what the store keys hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageForm {
    /// A Simple API page rendered as HTML (PEP 503).
    Html,
    /// A Simple API page rendered as JSON (PEP 691).
    Json,
    /// A file kept exactly as the upstream sent it (a hex registry file).
    Raw,
    /// A pointer to a blob: the body is the sha256 of a file kept in the blob store (hex docs
    /// and installers), the header its freshness and upstream ETag.
    Blob,
}

impl PageForm {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Html => "html",
            Self::Json => "json",
            Self::Raw => "raw",
            Self::Blob => "blob",
        }
    }
}

/// Where a rendering lives in the store: an ecosystem's page (a project, a registry path) and
/// its form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageKey<'a> {
    pub ecosystem: Ecosystem,
    pub page: &'a str,
    pub form: PageForm,
}

impl<'a> PageKey<'a> {
    pub fn new(ecosystem: Ecosystem, page: &'a str, form: PageForm) -> Self {
        Self {
            ecosystem,
            page,
            form,
        }
    }

    fn tuple(self) -> (&'static str, &'a str, &'static str) {
        (self.ecosystem.as_str(), self.page, self.form.as_str())
    }
}

/// Where a snapshot lives in the store: an ecosystem's page and the index it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotKey<'a> {
    pub ecosystem: Ecosystem,
    pub page: &'a str,
    /// The index's cache key (its URL without credentials).
    pub index: &'a str,
}

impl<'a> SnapshotKey<'a> {
    pub fn new(ecosystem: Ecosystem, page: &'a str, index: &'a str) -> Self {
        Self {
            ecosystem,
            page,
            index,
        }
    }

    fn tuple(self) -> (&'static str, &'a str, &'a str) {
        (self.ecosystem.as_str(), self.page, self.index)
    }
}

/// One write to the page store: snapshots and rendered pages land together or not at all.
#[derive(Debug, Default)]
pub struct PageWrite<'a> {
    /// Snapshots, keyed by the index they came from.
    pub snapshots: Vec<(SnapshotKey<'a>, &'a [u8])>,
    /// Rendered pages, keyed by their form.
    pub pages: Vec<(PageKey<'a>, Arc<StoredPage>)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PageCounts {
    pub snapshots: u64,
    pub rendered: u64,
}

/// A handle to `pages.redb`; cheap to clone.
#[derive(Clone)]
pub struct PageStore {
    db: Arc<Database>,
}

impl PageStore {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = Database::create(path)?;
        // Create the tables up front so readers never meet a missing table.
        let tx = db.begin_write()?;
        tx.open_table(SNAPSHOTS)?;
        tx.open_table(PAGES)?;
        tx.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    pub fn page(&self, key: PageKey<'_>) -> Result<Option<StoredPage>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(PAGES)?;
        table
            .get(key.tuple())?
            .map(|value| StoredPage::decode(value.value()))
            .transpose()
    }

    /// Every index's snapshot of a page, keyed by index key.
    pub fn snapshots(
        &self,
        ecosystem: Ecosystem,
        page: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let ecosystem = ecosystem.as_str();
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SNAPSHOTS)?;
        let mut out = Vec::new();
        for entry in table.range((ecosystem, page, "")..)? {
            let (key, value) = entry?;
            let (eco, pg, index) = key.value();
            if eco != ecosystem || pg != page {
                break;
            }
            out.push((index.to_owned(), value.value().to_vec()));
        }
        Ok(out)
    }

    pub fn write(&self, write: &PageWrite<'_>) -> Result<(), StorageError> {
        let tx = self.db.begin_write()?;
        {
            let mut snapshots = tx.open_table(SNAPSHOTS)?;
            for (key, bytes) in &write.snapshots {
                snapshots.insert(key.tuple(), *bytes)?;
            }
            let mut pages = tx.open_table(PAGES)?;
            for (key, stored) in &write.pages {
                pages.insert(key.tuple(), stored.encode()?.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets a page's rendered forms and, unless `keep_snapshots`, every index's snapshot (then
    /// the next request refetches; with the snapshots kept it only re-renders). Returns whether
    /// anything was stored.
    pub fn forget(
        &self,
        ecosystem: Ecosystem,
        page: &str,
        keep_snapshots: bool,
    ) -> Result<bool, StorageError> {
        let ecosystem = ecosystem.as_str();
        let tx = self.db.begin_write()?;
        let mut removed = false;
        {
            let mut pages = tx.open_table(PAGES)?;
            pages.retain_in((ecosystem, page, "")..=(ecosystem, page, "\u{10FFFF}"), |_, _| {
                removed = true;
                false
            })?;
            if !keep_snapshots {
                let mut snapshots = tx.open_table(SNAPSHOTS)?;
                snapshots.retain_in((ecosystem, page, "")..=(ecosystem, page, "\u{10FFFF}"), |_, _| {
                    removed = true;
                    false
                })?;
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Forgets every page (renderings and snapshots) of an ecosystem; returns how many pages
    /// had anything stored.
    pub fn forget_all(&self, ecosystem: Ecosystem) -> Result<u64, StorageError> {
        let ecosystem = ecosystem.as_str();
        let tx = self.db.begin_write()?;
        let mut forgotten = std::collections::HashSet::new();
        {
            let range = (ecosystem, "", "")..=(ecosystem, "\u{10FFFF}", "\u{10FFFF}");
            let mut pages = tx.open_table(PAGES)?;
            pages.retain_in(range.clone(), |(_, page, _), _| {
                forgotten.insert(page.to_owned());
                false
            })?;
            let mut snapshots = tx.open_table(SNAPSHOTS)?;
            snapshots.retain_in(range, |(_, page, _), _| {
                forgotten.insert(page.to_owned());
                false
            })?;
        }
        tx.commit()?;
        Ok(forgotten.len() as u64)
    }

    pub fn counts(&self) -> Result<PageCounts, StorageError> {
        let tx = self.db.begin_read()?;
        Ok(PageCounts {
            snapshots: tx.open_table(SNAPSHOTS)?.len()?,
            rendered: tx.open_table(PAGES)?.len()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &str) -> Arc<StoredPage> {
        Arc::new(StoredPage {
            header: PageHeader {
                etag: "\"e\"".into(),
                fetched_at: 1,
                expires_at: 2,
                sources: "s".into(),
                upstream_etag: None,
            },
            identity: Bytes::from(body.to_owned()),
            gzip: Bytes::from_static(b"gz"),
            zstd: Bytes::new(),
        })
    }

    #[test]
    fn write_read_forget_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages.redb");
        {
            let store = PageStore::open(&path).unwrap();
            store
                .write(&PageWrite {
                    snapshots: vec![
                        (
                            SnapshotKey::new(Ecosystem::Pypi, "demo", "https://a.example/"),
                            b"A".as_slice(),
                        ),
                        (
                            SnapshotKey::new(Ecosystem::Pypi, "demo", "https://b.example/"),
                            b"B".as_slice(),
                        ),
                        (
                            SnapshotKey::new(Ecosystem::Pypi, "demo2", "https://a.example/"),
                            b"C".as_slice(),
                        ),
                    ],
                    pages: vec![
                        (PageKey::new(Ecosystem::Pypi, "demo", PageForm::Json), page("{}")),
                        (PageKey::new(Ecosystem::Pypi, "demo2", PageForm::Json), page("[]")),
                    ],
                })
                .unwrap();
        }
        let store = PageStore::open(&path).unwrap();
        assert_eq!(
            store
                .page(PageKey::new(Ecosystem::Pypi, "demo", PageForm::Json))
                .unwrap(),
            Some((*page("{}")).clone())
        );
        assert_eq!(
            store
                .page(PageKey::new(Ecosystem::Pypi, "demo", PageForm::Html))
                .unwrap(),
            None
        );
        let snaps = store.snapshots(Ecosystem::Pypi, "demo").unwrap();
        assert_eq!(snaps.len(), 2);
        assert_eq!(snaps[1], ("https://b.example/".to_owned(), b"B".to_vec()));
        assert!(store.forget(Ecosystem::Pypi, "demo2", true).unwrap());
        assert_eq!(
            store
                .page(PageKey::new(Ecosystem::Pypi, "demo2", PageForm::Json))
                .unwrap(),
            None
        );
        assert_eq!(
            store.snapshots(Ecosystem::Pypi, "demo2").unwrap().len(),
            1,
            "snapshots kept"
        );
        assert!(store.forget(Ecosystem::Pypi, "demo", false).unwrap());
        assert!(!store.forget(Ecosystem::Pypi, "demo", false).unwrap());
        assert_eq!(
            store
                .page(PageKey::new(Ecosystem::Pypi, "demo", PageForm::Json))
                .unwrap(),
            None
        );
        assert!(store.snapshots(Ecosystem::Pypi, "demo").unwrap().is_empty());
        assert_eq!(store.snapshots(Ecosystem::Pypi, "demo2").unwrap().len(), 1);
        assert_eq!(
            store.counts().unwrap(),
            PageCounts {
                snapshots: 1,
                rendered: 0
            }
        );
    }

    #[test]
    fn truncated_page_is_an_error_not_a_panic() {
        let encoded = page("hello").encode().unwrap();
        for cut in [0, 3, 10, encoded.len() - 1] {
            assert!(StoredPage::decode(&encoded[..cut]).is_err(), "cut at {cut}");
        }
    }
}
