//! The page store (`pages.redb`): the response cache. It keeps two things per page:
//! - one *snapshot* per upstream index: what that index last said, with its ETag and fetch time,
//!   so each index is revalidated on its own TTL;
//! - the *rendered* page per format, with its gzip and zstd forms compressed once when stored.
//!
//! Values over 64 KiB (a big project's snapshot or page) live in files of their own under
//! `page-bodies/`, named by the row; the tables hold only small values.
//!
//! Losing these costs a refetch, never data. Every method is blocking (redb commits fsync):
//! call them from `spawn_blocking`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redb::{Builder, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::StorageError;
use super::bundle::{PageEntry, PageEntryKind};
use crate::ecosystem::Ecosystem;

/// (ecosystem, page, index key) → stored snapshot (the cache layer's encoding).
const SNAPSHOTS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("snapshots_v2");
/// (ecosystem, page, form) → stored, encoded [`StoredPage`].
const PAGES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("pages_v2");
/// The body files rows name, so the sweep at open reads this list rather than every row.
const BODIES: TableDefinition<&str, ()> = TableDefinition::new("page_bodies");
/// The tables of the layout that kept every value inline; dropped at open.
const OLD_SNAPSHOTS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("snapshots");
const OLD_PAGES: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("pages");
/// A body file being written; removed at open if a process died before renaming it.
const TEMP_SUFFIX: &str = ".tmp";

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
    // The identity body is the zstd body decompressed, so when there is a zstd body only its length
    // is written (the header length's top bit says so): that keeps the store at about half the
    // bytes it serves instead of 1.6x, for a decompression (a few ms for the biggest page) when a
    // page is read back from disk, which happens once per page per process.
    fn header_json(&self) -> std::io::Result<Vec<u8>> {
        serde_json::to_vec(&self.header).map_err(std::io::Error::other)
    }

    fn identity_from_zstd(&self) -> bool {
        !self.zstd.is_empty() && !self.identity.is_empty()
    }

    fn encoded_len(&self) -> Result<usize, StorageError> {
        let identity = if self.identity_from_zstd() {
            0
        } else {
            self.identity.len()
        };
        let bodies = identity + self.gzip.len() + self.zstd.len();
        Ok(4 + self.header_json()?.len() + 3 * 8 + bodies)
    }

    /// Writes the encoded page without first gathering it in memory (a big page goes to a file).
    fn encode_into(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let header = self.header_json()?;
        let elided = self.identity_from_zstd();
        let header_len = u32::try_from(header.len())
            .ok()
            .filter(|len| len & IDENTITY_FROM_ZSTD == 0)
            .ok_or_else(|| std::io::Error::other("a page header is over 2 GiB"))?;
        out.write_all(&(header_len | if elided { IDENTITY_FROM_ZSTD } else { 0 }).to_le_bytes())?;
        out.write_all(&header)?;
        for (body, written) in [(&self.identity, !elided), (&self.gzip, true), (&self.zstd, true)] {
            out.write_all(&(body.len() as u64).to_le_bytes())?;
            if written {
                out.write_all(body)?;
            }
        }
        Ok(())
    }

    /// The page encoded in `bytes`; its bodies are slices of them, not copies.
    pub fn decode(bytes: Bytes) -> Result<Self, StorageError> {
        let corrupt = || StorageError::Corrupt("a stored page is truncated".into());
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<Bytes, StorageError> {
            let end = at
                .checked_add(n)
                .filter(|end| *end <= bytes.len())
                .ok_or_else(corrupt)?;
            let part = bytes.slice(at..end);
            at = end;
            Ok(part)
        };
        let take_len = |take: &mut dyn FnMut(usize) -> Result<Bytes, StorageError>| {
            let len = u64::from_le_bytes(take(8)?.as_ref().try_into().map_err(|_| corrupt())?);
            usize::try_from(len).map_err(|_| corrupt())
        };
        let first = u32::from_le_bytes(take(4)?.as_ref().try_into().map_err(|_| corrupt())?);
        let elided = first & IDENTITY_FROM_ZSTD != 0;
        let header: PageHeader = serde_json::from_slice(&take((first & !IDENTITY_FROM_ZSTD) as usize)?)
            .map_err(|e| StorageError::Corrupt(format!("page header: {e}")))?;
        let identity_len = take_len(&mut take)?;
        let identity = if elided { Bytes::new() } else { take(identity_len)? };
        let gzip_len = take_len(&mut take)?;
        let gzip = take(gzip_len)?;
        let zstd_len = take_len(&mut take)?;
        let zstd = take(zstd_len)?;
        let identity = if elided {
            let bad = |what: &str| StorageError::Corrupt(format!("a stored page's zstd form {what}"));
            // The frame names its size: checked before allocating what the row claims.
            let framed = zstd::zstd_safe::get_frame_content_size(&zstd).ok().flatten();
            if framed != Some(identity_len as u64) {
                return Err(bad("does not match the page's length"));
            }
            let identity = zstd::bulk::decompress(&zstd, identity_len).map_err(|e| bad(&e.to_string()))?;
            if identity.len() != identity_len {
                return Err(bad("is shorter than the page"));
            }
            Bytes::from(identity)
        } else {
            identity
        };
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

/// Values larger than this live in files of their own under the bodies directory: the B-tree then
/// holds only small values, so a lookup never reads a neighbour's huge one, and a huge page is
/// written and read without redb copying it through its pages and cache.
const INLINE_MAX: usize = 64 * 1024;
/// redb's own page cache. Its default (1 GiB) fills with the pages a few big writes touched and
/// is never given back; the tables are small now that big values live in files.
const REDB_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Below this size the page store's file is never compacted: there is too little to win.
const COMPACT_MIN_BYTES: u64 = 16 * 1024 * 1024;
/// The first byte of a stored value: the value follows, or the name of the file holding it.
const INLINE: u8 = 0;
const IN_FILE: u8 = 1;
/// Set in a stored page's header length when its identity body is left out (see
/// [`StoredPage::encode_into`]).
const IDENTITY_FROM_ZSTD: u32 = 1 << 31;

/// Names each body file once: the process id, the time and a counter.
static NEXT_BODY: AtomicU64 = AtomicU64::new(0);

/// A row as committed: its key (ecosystem, page, index or form) and its stored value.
type StoredRow<'a> = ((&'a str, &'a str, &'a str), Vec<u8>);

/// A handle to `pages.redb` and its bodies directory; cheap to clone.
#[derive(Clone)]
pub struct PageStore {
    db: Arc<Database>,
    bodies: Arc<PathBuf>,
}

impl PageStore {
    /// Opens the store at `path` with big values under `bodies` (created if missing), and
    /// removes body files no row names (left by a process killed between writing a body and
    /// committing it, or between committing a replacement and removing the old body).
    pub fn open(path: &Path, bodies: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(bodies)?;
        let mut db = Builder::new().set_cache_size(REDB_CACHE_BYTES).create(path)?;
        compact_if_sparse(&mut db, path)?;
        // Create the tables up front so readers never meet a missing table; drop those of the
        // layout before bodies moved out (a cache: their pages are simply fetched again).
        let tx = db.begin_write()?;
        for old in [OLD_SNAPSHOTS, OLD_PAGES] {
            tx.delete_table(old)?;
        }
        tx.open_table(SNAPSHOTS)?;
        tx.open_table(PAGES)?;
        tx.open_table(BODIES)?;
        tx.commit()?;
        let store = Self {
            db: Arc::new(db),
            bodies: Arc::new(bodies.to_path_buf()),
        };
        store.remove_unnamed_bodies()?;
        Ok(store)
    }

    pub fn page(&self, key: PageKey<'_>) -> Result<Option<StoredPage>, StorageError> {
        let stored = {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(PAGES)?;
            table.get(key.tuple())?.map(|value| value.value().to_vec())
        };
        let Some(stored) = stored else {
            return Ok(None);
        };
        match self.load(stored)? {
            Some(bytes) => StoredPage::decode(bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every index's snapshot of a page, keyed by index key.
    pub fn snapshots(
        &self,
        ecosystem: Ecosystem,
        page: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let ecosystem = ecosystem.as_str();
        let mut stored = Vec::new();
        {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(SNAPSHOTS)?;
            for entry in table.range((ecosystem, page, "")..)? {
                let (key, value) = entry?;
                let (eco, pg, index) = key.value();
                if eco != ecosystem || pg != page {
                    break;
                }
                stored.push((index.to_owned(), value.value().to_vec()));
            }
        }
        let mut out = Vec::with_capacity(stored.len());
        for (index, value) in stored {
            if let Some(bytes) = self.load(value)? {
                out.push((index, bytes.to_vec()));
            }
        }
        Ok(out)
    }

    pub fn write(&self, write: &PageWrite<'_>) -> Result<(), StorageError> {
        // Big values go to their files before the rows naming them are committed.
        let mut written = Vec::new();
        let result = self.write_rows(write, &mut written);
        self.settle(result, &written)
    }

    /// After a write: the body files its rows replaced go once committed; the ones it wrote go
    /// if it failed.
    fn settle(
        &self,
        result: Result<Vec<String>, StorageError>,
        written: &[String],
    ) -> Result<(), StorageError> {
        match result {
            Ok(replaced) => {
                self.remove_bodies(&replaced);
                Ok(())
            }
            Err(e) => {
                self.remove_bodies(written);
                Err(e)
            }
        }
    }

    /// Writes the rows (and the files of big values, named into `written`); returns the files
    /// of the values they replaced.
    fn write_rows(
        &self,
        write: &PageWrite<'_>,
        written: &mut Vec<String>,
    ) -> Result<Vec<String>, StorageError> {
        let mut snapshot_rows = Vec::with_capacity(write.snapshots.len());
        for (key, bytes) in &write.snapshots {
            let value = self.store_value(bytes.len(), |out| out.write_all(bytes), written)?;
            snapshot_rows.push((key.tuple(), value));
        }
        let mut page_rows = Vec::with_capacity(write.pages.len());
        for (key, page) in &write.pages {
            let value = self.store_value(page.encoded_len()?, |out| page.encode_into(out), written)?;
            page_rows.push((key.tuple(), value));
        }
        self.commit_rows(&snapshot_rows, &page_rows, written)
    }

    /// Commits stored values under their keys in one transaction; returns the files of the
    /// values they replaced.
    fn commit_rows(
        &self,
        snapshot_rows: &[StoredRow<'_>],
        page_rows: &[StoredRow<'_>],
        written: &[String],
    ) -> Result<Vec<String>, StorageError> {
        let mut replaced = Vec::new();
        let tx = self.db.begin_write()?;
        {
            let mut snapshots = tx.open_table(SNAPSHOTS)?;
            for (key, value) in snapshot_rows {
                if let Some(old) = snapshots.insert(*key, value.as_slice())? {
                    replaced.extend(body_file(old.value()));
                }
            }
            let mut pages = tx.open_table(PAGES)?;
            for (key, value) in page_rows {
                if let Some(old) = pages.insert(*key, value.as_slice())? {
                    replaced.extend(body_file(old.value()));
                }
            }
            let mut bodies = tx.open_table(BODIES)?;
            for name in written.iter() {
                bodies.insert(name.as_str(), ())?;
            }
            for name in &replaced {
                bodies.remove(name.as_str())?;
            }
        }
        tx.commit()?;
        Ok(replaced)
    }

    /// Every snapshot and rendering of the pages `wanted` accepts (by ecosystem and page), to
    /// `each` up to `batch` at a time, for an export bundle. Returns how many there were.
    pub fn export_entries(
        &self,
        wanted: impl Fn(&str, &str) -> bool,
        batch: usize,
        mut each: impl FnMut(Vec<PageEntry>) -> Result<(), StorageError>,
    ) -> Result<u64, StorageError> {
        // Keys first, in one read; values a batch at a time, so a big store is never all in memory.
        let mut keys = Vec::new();
        {
            let tx = self.db.begin_read()?;
            for (kind, table) in [(PageEntryKind::Snapshot, SNAPSHOTS), (PageEntryKind::Page, PAGES)] {
                for entry in tx.open_table(table)?.iter()? {
                    let (key, _) = entry?;
                    let (ecosystem, page, third) = key.value();
                    if wanted(ecosystem, page) {
                        keys.push((kind, ecosystem.to_owned(), page.to_owned(), third.to_owned()));
                    }
                }
            }
        }
        let mut count = 0;
        for chunk in keys.chunks(batch.max(1)) {
            let mut stored = Vec::with_capacity(chunk.len());
            {
                let tx = self.db.begin_read()?;
                let (snapshots, pages) = (tx.open_table(SNAPSHOTS)?, tx.open_table(PAGES)?);
                for (kind, ecosystem, page, third) in chunk {
                    let table = match kind {
                        PageEntryKind::Snapshot => &snapshots,
                        PageEntryKind::Page => &pages,
                    };
                    if let Some(value) = table.get((ecosystem.as_str(), page.as_str(), third.as_str()))? {
                        stored.push(((*kind, ecosystem, page, third), value.value().to_vec()));
                    }
                }
            }
            let mut entries = Vec::with_capacity(stored.len());
            for ((kind, ecosystem, page, key), value) in stored {
                if let Some(value) = self.load(value)? {
                    entries.push(PageEntry {
                        kind,
                        ecosystem: ecosystem.clone(),
                        page: page.clone(),
                        key: key.clone(),
                        value: value.to_vec(),
                    });
                }
            }
            count += entries.len() as u64;
            each(entries)?;
        }
        Ok(count)
    }

    /// Stores entries as an export bundle carries them, in one transaction; a rendering that
    /// does not decode is refused.
    pub fn import_entries(&self, entries: &[PageEntry]) -> Result<(), StorageError> {
        let mut written = Vec::new();
        let result = (|| {
            let (mut snapshot_rows, mut page_rows) = (Vec::new(), Vec::new());
            for e in entries {
                if e.kind == PageEntryKind::Page {
                    StoredPage::decode(Bytes::from(e.value.clone()))?;
                }
                let value = self.store_value(e.value.len(), |out| out.write_all(&e.value), &mut written)?;
                let key = (e.ecosystem.as_str(), e.page.as_str(), e.key.as_str());
                match e.kind {
                    PageEntryKind::Snapshot => snapshot_rows.push((key, value)),
                    PageEntryKind::Page => page_rows.push((key, value)),
                }
            }
            self.commit_rows(&snapshot_rows, &page_rows, &written)
        })();
        self.settle(result, &written)
    }

    /// The stored form of a value of `len` bytes that `encode` writes: inline, or in a new file.
    fn store_value(
        &self,
        len: usize,
        encode: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
        written: &mut Vec<String>,
    ) -> Result<Vec<u8>, StorageError> {
        if len <= INLINE_MAX {
            let mut value = Vec::with_capacity(1 + len);
            value.push(INLINE);
            encode(&mut value)?;
            return Ok(value);
        }
        let name = format!(
            "{}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            NEXT_BODY.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.bodies.join(&name);
        let temp = self.bodies.join(format!("{name}{TEMP_SUFFIX}"));
        let write = || -> std::io::Result<()> {
            let mut out = BufWriter::new(File::create(&temp)?);
            encode(&mut out)?;
            out.into_inner().map_err(|e| e.into_error())?;
            std::fs::rename(&temp, &path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&temp);
            return Err(e.into());
        }
        written.push(name.clone());
        let mut value = Vec::with_capacity(1 + name.len());
        value.push(IN_FILE);
        value.extend_from_slice(name.as_bytes());
        Ok(value)
    }

    /// A stored value's bytes; `None` when its file is gone (a cache: the page is fetched again).
    fn load(&self, stored: Vec<u8>) -> Result<Option<Bytes>, StorageError> {
        match stored.first() {
            Some(&INLINE) => Ok(Some(Bytes::from(stored).slice(1..))),
            Some(&IN_FILE) => {
                let name = std::str::from_utf8(&stored[1..])
                    .map_err(|_| StorageError::Corrupt("a body file name is not UTF-8".into()))?;
                match std::fs::read(self.bodies.join(name)) {
                    Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        tracing::warn!(
                            file = name,
                            "a stored page's body file is missing; it will be fetched again"
                        );
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            _ => Err(StorageError::Corrupt("a stored value has an unknown form".into())),
        }
    }

    fn remove_bodies(&self, names: &[String]) {
        for name in names {
            if let Err(e) = std::fs::remove_file(self.bodies.join(name))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %name, error = %e, "could not remove a page body file");
            }
        }
    }

    fn remove_unnamed_bodies(&self) -> Result<(), StorageError> {
        let mut named = std::collections::HashSet::new();
        {
            let tx = self.db.begin_read()?;
            for entry in tx.open_table(BODIES)?.iter()? {
                named.insert(entry?.0.value().to_owned());
            }
        }
        for entry in std::fs::read_dir(&*self.bodies)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !named.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Forgets pages' rendered forms and, unless `keep_snapshots`, every index's snapshot (then
    /// the next request refetches; with the snapshots kept it only re-renders), in one
    /// transaction. Returns whether anything was stored.
    pub fn forget(
        &self,
        ecosystem: Ecosystem,
        pages: &[&str],
        keep_snapshots: bool,
    ) -> Result<bool, StorageError> {
        let ecosystem = ecosystem.as_str();
        let tx = self.db.begin_write()?;
        let mut removed = Vec::new();
        let mut any = false;
        {
            let mut forms = tx.open_table(PAGES)?;
            let mut snapshots = tx.open_table(SNAPSHOTS)?;
            for &page in pages {
                let range = (ecosystem, page, "")..=(ecosystem, page, "\u{10FFFF}");
                forms.retain_in(range.clone(), |_, value| {
                    any = true;
                    removed.extend(body_file(value));
                    false
                })?;
                if !keep_snapshots {
                    snapshots.retain_in(range, |_, value| {
                        any = true;
                        removed.extend(body_file(value));
                        false
                    })?;
                }
            }
            forget_bodies(&tx, &removed)?;
        }
        tx.commit()?;
        self.remove_bodies(&removed);
        Ok(any)
    }

    /// Forgets every page of an ecosystem, its renderings and, unless `keep_snapshots`, what the
    /// upstreams said; returns how many pages had anything stored.
    pub fn forget_all(&self, ecosystem: Ecosystem, keep_snapshots: bool) -> Result<u64, StorageError> {
        let ecosystem = ecosystem.as_str();
        let tx = self.db.begin_write()?;
        let mut forgotten = std::collections::HashSet::new();
        let mut removed = Vec::new();
        {
            let range = (ecosystem, "", "")..=(ecosystem, "\u{10FFFF}", "\u{10FFFF}");
            let tables: &[_] = if keep_snapshots {
                &[PAGES]
            } else {
                &[PAGES, SNAPSHOTS]
            };
            for &table in tables {
                tx.open_table(table)?
                    .retain_in(range.clone(), |(_, page, _), value| {
                        forgotten.insert(page.to_owned());
                        removed.extend(body_file(value));
                        false
                    })?;
            }
            forget_bodies(&tx, &removed)?;
        }
        tx.commit()?;
        self.remove_bodies(&removed);
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

/// A redb file never shrinks by itself: the space of replaced and forgotten values is reused,
/// never given back. At open (the only time nothing else holds the database), a file past
/// [`COMPACT_MIN_BYTES`] with over a quarter of it unused is compacted.
fn compact_if_sparse(db: &mut Database, path: &Path) -> Result<(), StorageError> {
    let file_len = std::fs::metadata(path)?.len();
    if file_len < COMPACT_MIN_BYTES {
        return Ok(());
    }
    let tx = db.begin_write()?;
    let stats = tx.stats()?;
    tx.abort()?;
    let used = stats.allocated_pages() * stats.page_size() as u64;
    if file_len.saturating_sub(used) < file_len / 4 {
        return Ok(());
    }
    db.compact()?;
    let after = std::fs::metadata(path)?.len();
    tracing::info!(before = file_len, after, "compacted the page store");
    Ok(())
}

/// Takes body files out of the list of named ones, in the transaction that drops their rows.
fn forget_bodies(tx: &redb::WriteTransaction, names: &[String]) -> Result<(), StorageError> {
    let mut bodies = tx.open_table(BODIES)?;
    for name in names {
        bodies.remove(name.as_str())?;
    }
    Ok(())
}

/// The body file a stored value names, if it lives in one.
fn body_file(stored: &[u8]) -> Option<String> {
    match stored.split_first() {
        Some((&IN_FILE, name)) => std::str::from_utf8(name).ok().map(str::to_owned),
        _ => None,
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
            let store = PageStore::open(&path, &dir.path().join("bodies")).unwrap();
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
        let store = PageStore::open(&path, &dir.path().join("bodies")).unwrap();
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
        assert!(store.forget(Ecosystem::Pypi, &["demo2"], true).unwrap());
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
        assert!(store.forget(Ecosystem::Pypi, &["demo"], false).unwrap());
        assert!(!store.forget(Ecosystem::Pypi, &["demo"], false).unwrap());
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
        let mut encoded = Vec::new();
        page("hello").encode_into(&mut encoded).unwrap();
        assert_eq!(encoded.len(), page("hello").encoded_len().unwrap());
        let encoded = Bytes::from(encoded);
        assert_eq!(StoredPage::decode(encoded.clone()).unwrap(), *page("hello"));
        for cut in [0, 3, 10, encoded.len() - 1] {
            assert!(StoredPage::decode(encoded.slice(..cut)).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_page_with_a_zstd_form_is_stored_without_its_identity_and_read_back_whole() {
        let identity = Bytes::from("<a href=\"x\">x</a>\n".repeat(5_000));
        let zstd = Bytes::from(zstd::bulk::compress(&identity, 3).unwrap());
        let stored = StoredPage {
            identity: identity.clone(),
            zstd: zstd.clone(),
            ..(*page("unused")).clone()
        };
        let mut encoded = Vec::new();
        stored.encode_into(&mut encoded).unwrap();
        assert_eq!(encoded.len(), stored.encoded_len().unwrap());
        assert!(
            encoded.len() < zstd.len() + 200,
            "{} bytes stored for a {}-byte zstd form",
            encoded.len(),
            zstd.len()
        );
        assert_eq!(StoredPage::decode(Bytes::from(encoded.clone())).unwrap(), stored);

        // A zstd form that does not decompress to the recorded length is corruption, not a page.
        let other = zstd::bulk::compress(b"something else entirely", 3).unwrap();
        let tampered = StoredPage {
            zstd: Bytes::from(other),
            ..stored.clone()
        };
        let mut bad = Vec::new();
        tampered.encode_into(&mut bad).unwrap();
        assert!(matches!(
            StoredPage::decode(Bytes::from(bad)),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn a_file_mostly_freed_is_compacted_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bodies) = (dir.path().join("pages.redb"), dir.path().join("bodies"));
        let store = PageStore::open(&path, &bodies).unwrap();
        // Inline values (no zstd form, under INLINE_MAX) filling the file past COMPACT_MIN_BYTES.
        let names: Vec<String> = (0..400).map(|i| format!("p{i}")).collect();
        let value = Arc::new(StoredPage {
            identity: Bytes::from(vec![b'x'; INLINE_MAX - 1024]),
            ..(*page("x")).clone()
        });
        store
            .write(&PageWrite {
                snapshots: Vec::new(),
                pages: names
                    .iter()
                    .map(|name| (PageKey::new(Ecosystem::Pypi, name, PageForm::Html), value.clone()))
                    .collect(),
            })
            .unwrap();
        let full = std::fs::metadata(&path).unwrap().len();
        assert!(full > COMPACT_MIN_BYTES, "{full} bytes");
        for name in names.iter().skip(1) {
            store.forget(Ecosystem::Pypi, &[name], false).unwrap();
        }
        assert!(
            std::fs::metadata(&path).unwrap().len() >= full / 2,
            "redb gives nothing back itself"
        );
        drop(store);

        let store = PageStore::open(&path, &bodies).unwrap();
        let compacted = std::fs::metadata(&path).unwrap().len();
        assert!(compacted < full / 4, "{full} -> {compacted} bytes");
        assert_eq!(
            store
                .page(PageKey::new(Ecosystem::Pypi, "p0", PageForm::Html))
                .unwrap(),
            Some((*value).clone()),
            "what was kept survives compaction"
        );
    }

    fn big_page(fill: u8) -> Arc<StoredPage> {
        Arc::new(StoredPage {
            identity: Bytes::from(vec![fill; INLINE_MAX + 1]),
            ..(*page("x")).clone()
        })
    }

    fn body_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn big_values_live_in_files_of_their_own_and_leave_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bodies) = (dir.path().join("pages.redb"), dir.path().join("bodies"));
        let store = PageStore::open(&path, &bodies).unwrap();
        let key = PageKey::new(Ecosystem::Pypi, "huge", PageForm::Json);
        let snapshot = vec![7u8; INLINE_MAX * 2];
        store
            .write(&PageWrite {
                snapshots: vec![(
                    SnapshotKey::new(Ecosystem::Pypi, "huge", "https://a.example/"),
                    &snapshot,
                )],
                pages: vec![
                    (key, big_page(1)),
                    (PageKey::new(Ecosystem::Pypi, "small", PageForm::Json), page("{}")),
                ],
            })
            .unwrap();
        assert_eq!(
            body_files(&bodies).len(),
            2,
            "the big page and the big snapshot; the small page inline"
        );
        assert_eq!(store.page(key).unwrap(), Some((*big_page(1)).clone()));
        assert_eq!(store.snapshots(Ecosystem::Pypi, "huge").unwrap()[0].1, snapshot);

        // A replaced value's file goes once the replacement is committed.
        let before = body_files(&bodies);
        store
            .write(&PageWrite {
                snapshots: Vec::new(),
                pages: vec![(key, big_page(2))],
            })
            .unwrap();
        let after = body_files(&bodies);
        assert_eq!(after.len(), 2);
        assert_ne!(before, after);
        assert_eq!(store.page(key).unwrap(), Some((*big_page(2)).clone()));

        // A file no row names (a process killed between the two) is removed at the next open.
        std::fs::write(bodies.join("123-456-7"), b"orphan").unwrap();
        std::fs::write(bodies.join("123-456-8.tmp"), b"half written").unwrap();
        drop(store);
        let store = PageStore::open(&path, &bodies).unwrap();
        assert_eq!(body_files(&bodies), after);

        assert!(store.forget(Ecosystem::Pypi, &["huge"], false).unwrap());
        assert!(body_files(&bodies).is_empty());
        assert_eq!(
            store
                .page(PageKey::new(Ecosystem::Pypi, "small", PageForm::Json))
                .unwrap(),
            Some((*page("{}")).clone())
        );
    }

    #[test]
    fn a_missing_body_file_is_a_missing_page() {
        let dir = tempfile::tempdir().unwrap();
        let bodies = dir.path().join("bodies");
        let store = PageStore::open(&dir.path().join("pages.redb"), &bodies).unwrap();
        let key = PageKey::new(Ecosystem::Hex, "/names", PageForm::Raw);
        store
            .write(&PageWrite {
                snapshots: Vec::new(),
                pages: vec![(key, big_page(3))],
            })
            .unwrap();
        for name in body_files(&bodies) {
            std::fs::remove_file(bodies.join(name)).unwrap();
        }
        assert_eq!(store.page(key).unwrap(), None);
    }
}
