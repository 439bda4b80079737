//! The SQLite catalogue: what pkgmirror knows about indexes, projects and files. It is the durable
//! truth behind stats and the UI; page bytes live in the page store, file bytes in the blob store.
//!
//! Every method is blocking: call them from `spawn_blocking` (see `cache/`), never on a worker
//! thread; [`Catalogue::hot_file`] alone only reads memory.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, params};

use super::StorageError;
use crate::ecosystem::Ecosystem;

/// The catalogue stores an ecosystem by its name (`pypi`, `hex`).
impl rusqlite::ToSql for Ecosystem {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// Migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_catalogue.sql"),
    include_str!("../../migrations/0002_blobs.sql"),
    include_str!("../../migrations/0003_wheel_metadata.sql"),
    include_str!("../../migrations/0004_web_ui.sql"),
    include_str!("../../migrations/0005_hex.sql"),
    include_str!("../../migrations/0006_pinned_blobs.sql"),
    include_str!("../../migrations/0007_first_seen.sql"),
    include_str!("../../migrations/0008_policy_rules.sql"),
    include_str!("../../migrations/0009_provenance.sql"),
];

/// Recounts one project's cached files, bytes and last access (the triggers of migration 0004
/// keep them current as blobs come and go; this covers a project whose file rows were replaced).
pub(super) const RECOUNT_PROJECT_USAGE: &str =
    "UPDATE projects SET (cached_files, cached_bytes, last_access) = (
        SELECT count(b.sha256), coalesce(sum(b.size), 0), max(b.last_access)
        FROM files f JOIN blobs b ON b.sha256 = f.sha256
        WHERE f.project_id = projects.id)
    WHERE id = ?1";

/// The columns [`file_record`] reads, of `files f` joined with their `projects p` (a macro, so
/// queries `concat!` it with their conditions).
macro_rules! select_files {
    () => {
        "SELECT f.index_id, f.filename, f.version, f.url, f.sha256, f.size, f.requires_python,
            f.yanked, f.yanked_reason, f.upload_time, f.has_metadata, f.metadata_sha256,
            f.inner_checksum, f.first_seen, f.provenance_url
         FROM files f JOIN projects p ON p.id = f.project_id"
    };
}

fn file_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    let yanked: bool = row.get(7)?;
    let reason: Option<String> = row.get(8)?;
    Ok(FileRecord {
        index_id: row.get(0)?,
        filename: row.get(1)?,
        version: row.get(2)?,
        url: row.get(3)?,
        sha256: row.get(4)?,
        size: row.get::<_, Option<i64>>(5)?.map(|s| s as u64),
        requires_python: row.get(6)?,
        yanked: yanked.then(|| reason.unwrap_or_default()),
        upload_time: row.get(9)?,
        has_metadata: row.get(10)?,
        metadata_sha256: row.get(11)?,
        inner_checksum: row.get(12)?,
        first_seen: row.get::<_, Option<i64>>(13)?.map(|t| t.max(0) as u64),
        provenance: row.get(14)?,
    })
}

/// Writes one project and replaces its file rows in `tx` (each keeping when it was first seen;
/// a new one is first seen now); returns the filenames it replaced.
fn record_in(tx: &rusqlite::Transaction<'_>, project: &ProjectRecord) -> Result<Vec<String>, StorageError> {
    let project_id: i64 = tx.query_row(
        "INSERT INTO projects (ecosystem, name, display_name, last_serial, status, fetched_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (ecosystem, name) DO UPDATE SET
            display_name = excluded.display_name, last_serial = excluded.last_serial,
            status = excluded.status, fetched_at = excluded.fetched_at
         RETURNING id",
        params![
            project.ecosystem,
            project.name,
            project.display_name,
            project.last_serial.map(|s| s as i64),
            project.status,
            project.fetched_at as i64
        ],
        |row| row.get(0),
    )?;
    let first_seen: HashMap<String, Option<i64>> = tx
        .prepare_cached("SELECT filename, first_seen FROM files WHERE project_id = ?1")?
        .query_map(params![project_id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    tx.execute("DELETE FROM files WHERE project_id = ?1", params![project_id])?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO files (project_id, index_id, filename, version, url, sha256, size,
                requires_python, yanked, yanked_reason, upload_time, has_metadata, metadata_sha256,
                inner_checksum, first_seen, provenance_url)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?;
        for file in &project.files {
            insert.execute(params![
                project_id,
                file.index_id,
                file.filename,
                file.version,
                file.url,
                file.sha256,
                file.size.map(|s| s as i64),
                file.requires_python,
                file.yanked.is_some(),
                file.yanked.as_deref().filter(|r| !r.is_empty()),
                file.upload_time,
                file.has_metadata,
                file.metadata_sha256,
                file.inner_checksum,
                first_seen
                    .get(&file.filename)
                    .copied()
                    .flatten()
                    .unwrap_or(project.fetched_at as i64),
                file.provenance,
            ])?;
        }
    }
    // The new file rows may list blobs already stored (or stop listing some).
    tx.execute(RECOUNT_PROJECT_USAGE, params![project_id])?;
    Ok(first_seen.into_keys().collect())
}

/// The key of a file row in [`Catalogue::hot_files`] (`\0` appears in no name).
fn hot_file_key(ecosystem: Ecosystem, project: &str, filename: &str) -> String {
    format!("{}\0{project}\0{filename}", ecosystem.as_str())
}

/// One file row as the refresh flow records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub index_id: i64,
    pub filename: String,
    pub version: Option<String>,
    pub url: String,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub requires_python: Option<String>,
    pub yanked: Option<String>,
    pub upload_time: Option<String>,
    pub has_metadata: bool,
    pub metadata_sha256: Option<String>,
    /// hex only: the tarball's inner checksum (lower-case hex).
    pub inner_checksum: Option<String>,
    /// Unix seconds when this mirror first listed the file, as the catalogue read it (it keeps
    /// this itself: what a record write carries here is ignored).
    pub first_seen: Option<u64>,
    /// PEP 740: where the index serves the file's provenance object, if it offers one.
    pub provenance: Option<String>,
}

impl FileRecord {
    /// Bytes its strings hold, for weighing it in memory.
    fn heap_bytes(&self) -> usize {
        let optional = [
            &self.version,
            &self.sha256,
            &self.requires_python,
            &self.yanked,
            &self.upload_time,
            &self.metadata_sha256,
            &self.inner_checksum,
            &self.provenance,
        ];
        self.filename.len()
            + self.url.len()
            + optional
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>()
    }
}

/// A project as the refresh flow records it, with all of its files (they replace the old rows).
#[derive(Debug, Clone)]
pub struct ProjectRecord {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub display_name: String,
    pub last_serial: Option<u64>,
    pub status: Option<String>,
    pub fetched_at: u64,
    pub files: Vec<FileRecord>,
}

/// Counts for `/health` and `cache stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CatalogueCounts {
    pub projects: u64,
    pub files: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// Reads of one blob since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobAccess {
    pub sha256: String,
    /// Unix seconds of the last read.
    pub at: u64,
    pub hits: u64,
    pub size: u64,
}

/// A stored blob as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUse {
    pub sha256: String,
    pub size: u64,
    /// Unix seconds.
    pub last_access: u64,
}

/// What `cache stats` shows of one ecosystem. A blob counts in an ecosystem when one of its
/// recorded files (or their core metadata, or their provenance) has that sha256.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EcosystemStats {
    pub ecosystem: String,
    pub projects: u64,
    pub files: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// Figures of the blob store as the catalogue records them, for `cache stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlobStats {
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Times stored blobs were served from the store.
    pub hits: u64,
    pub ecosystems: Vec<EcosystemStats>,
    /// Stored blobs that no recorded file lists: files since removed from their project's page,
    /// or metadata pkgmirror extracted itself (a provenance object counts with its file).
    pub unlisted_blobs: u64,
    pub unlisted_bytes: u64,
}

/// Memory for the file rows of recent file requests (about 20,000 rows).
const HOT_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Entries of [`Derived`] blobs kept in memory (a sha256 or a URL, and a sha256).
const HOT_DERIVED: u64 = 20_000;

/// A blob pkgmirror made from something it has, remembered by what it was made from, so a later
/// request finds it with no work and no upstream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Derived {
    /// Core metadata extracted from a cached wheel, by the wheel's sha256 (`wheel_metadata`).
    WheelMetadata,
    /// A PEP 740 provenance object fetched from the index, by its upstream URL (`provenance`).
    Provenance,
}

impl Derived {
    /// Records (from, sha256, now).
    fn upsert(self) -> &'static str {
        match self {
            Self::WheelMetadata => {
                "INSERT INTO wheel_metadata (wheel_sha256, metadata_sha256, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (wheel_sha256) DO UPDATE SET metadata_sha256 = excluded.metadata_sha256"
            }
            Self::Provenance => {
                "INSERT INTO provenance (url, sha256, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (url) DO UPDATE SET sha256 = excluded.sha256"
            }
        }
    }

    /// Reads the sha256 made of ?1.
    fn select(self) -> &'static str {
        match self {
            Self::WheelMetadata => "SELECT metadata_sha256 FROM wheel_metadata WHERE wheel_sha256 = ?1",
            Self::Provenance => "SELECT sha256 FROM provenance WHERE url = ?1",
        }
    }
}

/// A handle to the catalogue database; cheap to clone.
#[derive(Clone)]
pub struct Catalogue {
    conn: Arc<Mutex<Connection>>,
    /// File rows looked up lately, so a cached file's next request reads no SQLite. A file
    /// row only changes when its project is recorded again, which drops the project's entries;
    /// both happen under the connection's lock, so an entry is never older than the table.
    hot_files: moka::sync::Cache<String, FileRecord>,
    /// [`Derived`] blobs looked up lately (the same idea; their rows are only ever replaced
    /// through [`Catalogue::record_derived`], which updates this too).
    hot_derived: moka::sync::Cache<(Derived, String), String>,
}

impl Catalogue {
    /// Opens (creating if needed) the catalogue and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL is durable across process crashes in WAL mode; only an OS crash may lose the
        // last transactions, which costs a refetch, never a corrupt catalogue.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        use_incremental_vacuum(&conn)?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            hot_files: moka::sync::Cache::builder()
                .max_capacity(HOT_FILE_BYTES)
                .weigher(|key: &String, row: &FileRecord| {
                    u32::try_from(key.len() + row.heap_bytes() + size_of::<FileRecord>()).unwrap_or(u32::MAX)
                })
                .build(),
            hot_derived: moka::sync::Cache::new(HOT_DERIVED),
        })
    }

    /// Drops every row looked up lately (rows were replaced wholesale, by an import).
    pub(super) fn forget_hot_rows(&self) {
        self.hot_files.invalidate_all();
        self.hot_derived.invalidate_all();
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (transactions roll back),
        // so a poisoned mutex is safe to keep using.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers an upstream index (by its credential-free URL) and returns its id.
    pub fn ensure_index(&self, ecosystem: Ecosystem, url: &str, ttl_secs: u64) -> Result<i64, StorageError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO indexes (ecosystem, url, ttl_secs) VALUES (?1, ?2, ?3)
             ON CONFLICT (ecosystem, url) DO UPDATE SET ttl_secs = excluded.ttl_secs",
            params![ecosystem, url, ttl_secs as i64],
        )?;
        let id = conn.query_row(
            "SELECT id FROM indexes WHERE ecosystem = ?1 AND url = ?2",
            params![ecosystem, url],
            |row| row.get(0),
        )?;
        Ok(id)
    }

    /// Records a refreshed project and replaces its file rows, in one transaction.
    pub fn record_project(&self, project: &ProjectRecord) -> Result<(), StorageError> {
        self.record_projects(&[project])
    }

    /// Records refreshed projects and replaces their file rows, all in one transaction.
    pub fn record_projects(&self, projects: &[&ProjectRecord]) -> Result<(), StorageError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut replaced = Vec::new();
        for project in projects {
            replaced.extend(
                record_in(&tx, project)?
                    .into_iter()
                    .map(|filename| hot_file_key(project.ecosystem, &project.name, &filename)),
            );
        }
        tx.commit()?;
        // Still under the lock: no lookup can put a replaced row back in between.
        for key in &replaced {
            self.hot_files.invalidate(key);
        }
        Ok(())
    }

    /// The recorded files of a project, in the order they were listed.
    pub fn project_files(&self, ecosystem: Ecosystem, name: &str) -> Result<Vec<FileRecord>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(concat!(
            select_files!(),
            " WHERE p.ecosystem = ?1 AND p.name = ?2 ORDER BY f.id"
        ))?;
        let rows = stmt.query_map(params![ecosystem, name], file_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One listed file of a project, if the project's page lists it.
    pub fn project_file(
        &self,
        ecosystem: Ecosystem,
        name: &str,
        filename: &str,
    ) -> Result<Option<FileRecord>, StorageError> {
        let key = hot_file_key(ecosystem, name, filename);
        if let Some(row) = self.hot_files.get(&key) {
            return Ok(Some(row));
        }
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(concat!(
            select_files!(),
            " WHERE p.ecosystem = ?1 AND p.name = ?2 AND f.filename = ?3 ORDER BY f.id LIMIT 1"
        ))?;
        let row = stmt
            .query_map(params![ecosystem, name, filename], file_record)?
            .next()
            .transpose()?;
        if let Some(row) = &row {
            self.hot_files.insert(key, row.clone());
        }
        Ok(row)
    }

    /// The row [`Self::project_file`] found lately, from memory (no I/O, so callers on a worker
    /// thread may ask it first).
    pub fn hot_file(&self, ecosystem: Ecosystem, name: &str, filename: &str) -> Option<FileRecord> {
        self.hot_files.get(&hot_file_key(ecosystem, name, filename))
    }

    /// Records a committed blob; a blob stored again counts as just used (its hits stay).
    pub fn record_blob(&self, sha256: &str, size: u64, store: &str, now: u64) -> Result<(), StorageError> {
        self.lock().execute(
            "INSERT INTO blobs (sha256, size, store, created_at, last_access, hits)
             VALUES (?1, ?2, ?3, ?4, ?4, 0)
             ON CONFLICT (sha256) DO UPDATE SET size = excluded.size, store = excluded.store,
                last_access = excluded.last_access",
            params![sha256, size as i64, store, now as i64],
        )?;
        Ok(())
    }

    /// Marks a stored blob as one eviction must never take (a hosted file), or, with `pinned`
    /// false, as an ordinary one again (a deleted hosted file).
    pub fn pin_blob(&self, sha256: &str, pinned: bool) -> Result<(), StorageError> {
        self.lock().execute(
            "UPDATE blobs SET pinned = ?2 WHERE sha256 = ?1",
            params![sha256, pinned],
        )?;
        Ok(())
    }

    /// Records the blob pkgmirror made of `from` (see [`Derived`]).
    pub fn record_derived(
        &self,
        kind: Derived,
        from: &str,
        sha256: &str,
        now: u64,
    ) -> Result<(), StorageError> {
        let conn = self.lock();
        conn.execute(kind.upsert(), params![from, sha256, now as i64])?;
        self.hot_derived
            .insert((kind, from.to_owned()), sha256.to_owned());
        Ok(())
    }

    /// The sha256 of the blob pkgmirror made of `from`, if it made one.
    pub fn derived(&self, kind: Derived, from: &str) -> Result<Option<String>, StorageError> {
        let key = (kind, from.to_owned());
        if let Some(sha256) = self.hot_derived.get(&key) {
            return Ok(Some(sha256));
        }
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(kind.select())?;
        let mut rows = stmt.query(params![from])?;
        let found: Option<String> = match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        };
        if let Some(sha256) = &found {
            self.hot_derived.insert(key, sha256.clone());
        }
        Ok(found)
    }

    /// What [`Self::derived`] found lately, from memory (no I/O).
    pub fn hot_derived(&self, kind: Derived, from: &str) -> Option<String> {
        self.hot_derived.get(&(kind, from.to_owned()))
    }

    /// When this mirror first listed each file of a project: filename → unix seconds.
    pub fn first_seen(&self, ecosystem: Ecosystem, name: &str) -> Result<HashMap<String, u64>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT f.filename, f.first_seen FROM files f JOIN projects p ON p.id = f.project_id
             WHERE p.ecosystem = ?1 AND p.name = ?2 AND f.first_seen IS NOT NULL",
        )?;
        let rows = stmt.query_map(params![ecosystem, name], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)?.max(0) as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every file of an ecosystem with its upload time and when it was first seen:
    /// (project, filename) → (upload time as the index wrote it, unix seconds).
    #[allow(clippy::type_complexity)]
    pub fn release_times(
        &self,
        ecosystem: Ecosystem,
    ) -> Result<HashMap<(String, String), (Option<String>, Option<u64>)>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT p.name, f.filename, f.upload_time, f.first_seen
             FROM files f JOIN projects p ON p.id = f.project_id WHERE p.ecosystem = ?1",
        )?;
        let rows = stmt.query_map(params![ecosystem], |row| {
            Ok((
                (row.get(0)?, row.get(1)?),
                (
                    row.get(2)?,
                    row.get::<_, Option<i64>>(3)?.map(|t| t.max(0) as u64),
                ),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Extracted metadata for the wheels a project lists: wheel sha256 → metadata sha256.
    pub fn project_wheel_metadata(
        &self,
        ecosystem: Ecosystem,
        name: &str,
    ) -> Result<HashMap<String, String>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT w.wheel_sha256, w.metadata_sha256
             FROM wheel_metadata w
             JOIN files f ON f.sha256 = w.wheel_sha256
             JOIN projects p ON p.id = f.project_id
             WHERE p.ecosystem = ?1 AND p.name = ?2",
        )?;
        let rows = stmt.query_map(params![ecosystem, name], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Applies batched accesses. A blob without a row gets one recorded as in `store` when that
    /// is given (a blob this node found in a shared bucket); otherwise it is skipped.
    pub fn touch_blobs(&self, accesses: &[BlobAccess], store: Option<&str>) -> Result<(), StorageError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE blobs SET last_access = max(last_access, ?2), hits = hits + ?3 WHERE sha256 = ?1",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO blobs (sha256, size, store, created_at, last_access, hits)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            )?;
            for access in accesses {
                let (at, hits) = (access.at as i64, access.hits as i64);
                let updated = update.execute(params![access.sha256, at, hits])?;
                if updated == 0
                    && let Some(store) = store
                {
                    insert.execute(params![access.sha256, access.size as i64, store, at, hits])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every recorded blob's last access (unix seconds), to order a local tier after a restart.
    pub fn blob_last_access(&self) -> Result<HashMap<String, u64>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT sha256, last_access FROM blobs")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?.max(0) as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The sha256 of every recorded blob.
    pub fn blob_keys(&self) -> Result<HashSet<String>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT sha256 FROM blobs")?;
        let keys = stmt.query_map([], |row| row.get(0))?;
        Ok(keys.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` evictable (not pinned) blobs, least recently used first, starting after
    /// `after` (the last row of the previous batch), so a caller can walk them all in bounded
    /// batches.
    pub fn blobs_by_last_access(
        &self,
        after: Option<&BlobUse>,
        limit: usize,
    ) -> Result<Vec<BlobUse>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT sha256, size, last_access FROM blobs
             WHERE pinned = 0 AND (?1 IS NULL OR last_access > ?1 OR (last_access = ?1 AND sha256 > ?2))
             ORDER BY last_access, sha256
             LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                after.map(|b| b.last_access as i64),
                after.map(|b| b.sha256.as_str()),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |row| {
                Ok(BlobUse {
                    sha256: row.get(0)?,
                    size: row.get::<_, i64>(1)? as u64,
                    last_access: row.get::<_, i64>(2)? as u64,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets these blobs (evicted, quarantined or gone from the store), in one transaction;
    /// returns how many rows there were.
    pub fn delete_blob_rows(&self, keys: &[String]) -> Result<usize, StorageError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut deleted = 0;
        {
            let mut delete = tx.prepare_cached("DELETE FROM blobs WHERE sha256 = ?1")?;
            for key in keys {
                deleted += delete.execute(params![key])?;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Bytes of every recorded blob: what the size budget is checked against.
    pub fn blob_total_bytes(&self) -> Result<u64, StorageError> {
        let total: i64 = self
            .lock()
            .query_row("SELECT coalesce(sum(size), 0) FROM blobs", [], |row| row.get(0))?;
        Ok(total as u64)
    }

    /// Counts and bytes in total and per ecosystem, for `cache stats`.
    pub fn blob_stats(&self) -> Result<BlobStats, StorageError> {
        let conn = self.lock();
        let mut stats = conn.query_row(
            "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(hits), 0) FROM blobs",
            [],
            |row| {
                Ok(BlobStats {
                    blobs: row.get::<_, i64>(0)? as u64,
                    blob_bytes: row.get::<_, i64>(1)? as u64,
                    hits: row.get::<_, i64>(2)? as u64,
                    ..BlobStats::default()
                })
            },
        )?;
        let mut per_ecosystem = conn.prepare(
            "SELECT p.ecosystem, count(DISTINCT p.id), count(f.id)
             FROM projects p LEFT JOIN files f ON f.project_id = p.id
             GROUP BY p.ecosystem ORDER BY p.ecosystem",
        )?;
        stats.ecosystems = per_ecosystem
            .query_map([], |row| {
                Ok(EcosystemStats {
                    ecosystem: row.get(0)?,
                    projects: row.get::<_, i64>(1)? as u64,
                    files: row.get::<_, i64>(2)? as u64,
                    ..EcosystemStats::default()
                })
            })?
            .collect::<Result<_, _>>()?;
        // UNION, not UNION ALL: a blob listed twice in an ecosystem (the same bytes under two
        // names) counts once there.
        let mut blobs_per_ecosystem = conn.prepare(
            "SELECT ecosystem, count(*), coalesce(sum(size), 0) FROM (
                SELECT p.ecosystem, b.sha256, b.size FROM blobs b
                JOIN files f ON f.sha256 = b.sha256 JOIN projects p ON p.id = f.project_id
                UNION
                SELECT p.ecosystem, b.sha256, b.size FROM blobs b
                JOIN files f ON f.metadata_sha256 = b.sha256 JOIN projects p ON p.id = f.project_id
                UNION
                SELECT p.ecosystem, b.sha256, b.size FROM blobs b JOIN provenance v ON v.sha256 = b.sha256
                JOIN files f ON f.provenance_url = v.url JOIN projects p ON p.id = f.project_id
             ) GROUP BY ecosystem",
        )?;
        let rows = blobs_per_ecosystem.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)? as u64,
                row.get::<_, i64>(2)? as u64,
            ))
        })?;
        for row in rows {
            let (ecosystem, blobs, bytes) = row?;
            if let Some(entry) = stats.ecosystems.iter_mut().find(|e| e.ecosystem == ecosystem) {
                entry.blobs = blobs;
                entry.blob_bytes = bytes;
            }
        }
        // NOT IN over a subquery is evaluated once into a temporary index, so this stays one pass
        // over the blobs even though nothing indexes files.metadata_sha256.
        (stats.unlisted_blobs, stats.unlisted_bytes) = conn.query_row(
            "SELECT count(*), coalesce(sum(size), 0) FROM blobs
             WHERE sha256 NOT IN (SELECT sha256 FROM files WHERE sha256 IS NOT NULL)
               AND sha256 NOT IN (SELECT metadata_sha256 FROM files WHERE metadata_sha256 IS NOT NULL)
               AND sha256 NOT IN (SELECT v.sha256 FROM provenance v JOIN files f ON f.provenance_url = v.url)",
            [],
            |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
        )?;
        Ok(stats)
    }

    pub fn counts(&self) -> Result<CatalogueCounts, StorageError> {
        let conn = self.lock();
        let counts = conn.query_row(
            "SELECT (SELECT count(*) FROM projects), (SELECT count(*) FROM files),
                    (SELECT count(*) FROM blobs), (SELECT coalesce(sum(size), 0) FROM blobs)",
            [],
            |row| {
                Ok(CatalogueCounts {
                    projects: row.get::<_, i64>(0)? as u64,
                    files: row.get::<_, i64>(1)? as u64,
                    blobs: row.get::<_, i64>(2)? as u64,
                    blob_bytes: row.get::<_, i64>(3)? as u64,
                })
            },
        )?;
        Ok(counts)
    }

    /// Gives the pages that deleted rows left free back to the file system, once there are at
    /// least `min_pages` of them; returns how many were given back.
    pub fn reclaim_free_pages(&self, min_pages: u64) -> Result<u64, StorageError> {
        let conn = self.lock();
        let free: i64 = conn.pragma_query_value(None, "freelist_count", |row| row.get(0))?;
        let free = u64::try_from(free).unwrap_or(0);
        if free == 0 || free < min_pages {
            return Ok(0);
        }
        // The pragma frees one page per step: step it to the end.
        let mut vacuum = conn.prepare("PRAGMA incremental_vacuum")?;
        let mut steps = vacuum.query([])?;
        while steps.next()?.is_some() {}
        Ok(free)
    }

    /// Gives free pages back and folds the WAL into the main file; called at shutdown so the
    /// data dir is compact.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        self.reclaim_free_pages(0)?;
        self.lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// Deleted rows leave free pages that SQLite reuses but never returns; in incremental mode
/// [`Catalogue::reclaim_free_pages`] returns them without rewriting the whole file. A catalogue
/// made before this mode existed switches with one `VACUUM` (a new, empty one at no cost).
fn use_incremental_vacuum(conn: &Connection) -> Result<(), StorageError> {
    const INCREMENTAL: i64 = 2;
    let mode: i64 = conn.pragma_query_value(None, "auto_vacuum", |row| row.get(0))?;
    if mode != INCREMENTAL {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.execute_batch("VACUUM")?;
    }
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(StorageError::Corrupt(format!(
            "the catalogue has schema version {applied}, newer than this pkgmirror knows ({}); \
             upgrade pkgmirror or use another data dir",
            MIGRATIONS.len()
        )));
    }
    for (number, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (number + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A listed file row, for tests.
    pub(crate) fn file(index_id: i64, name: &str) -> FileRecord {
        FileRecord {
            index_id,
            filename: name.into(),
            version: Some("1.0".into()),
            url: format!("https://files.example/{name}"),
            sha256: Some("ab".repeat(32)),
            size: Some(10),
            requires_python: Some(">=3.8".into()),
            yanked: Some(String::new()),
            upload_time: None,
            has_metadata: true,
            metadata_sha256: None,
            inner_checksum: None,
            first_seen: None,
            provenance: None,
        }
    }

    #[test]
    fn free_pages_go_back_to_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalogue.sqlite3");
        let cat = Catalogue::open(&path).unwrap();
        let index = cat
            .ensure_index(Ecosystem::Pypi, "https://index.example/simple/", 60)
            .unwrap();
        let mut project = ProjectRecord {
            ecosystem: Ecosystem::Pypi,
            name: "big".into(),
            display_name: "big".into(),
            last_serial: None,
            status: None,
            fetched_at: 1,
            files: (0..5_000)
                .map(|i| file(index, &format!("big-{i}.tar.gz")))
                .collect(),
        };
        cat.record_project(&project).unwrap();
        let pages = |cat: &Catalogue| -> i64 {
            cat.lock()
                .pragma_query_value(None, "page_count", |r| r.get(0))
                .unwrap()
        };
        let full = pages(&cat);
        project.files.clear();
        cat.record_project(&project).unwrap();
        assert_eq!(
            pages(&cat),
            full,
            "deleting rows frees pages without returning them"
        );
        assert_eq!(
            cat.reclaim_free_pages(u64::MAX).unwrap(),
            0,
            "fewer free pages than asked for"
        );
        let freed = cat.reclaim_free_pages(16).unwrap();
        assert!(freed > 100, "{freed} pages");
        // The pointer-map pages that tracked them go too.
        assert!(
            pages(&cat) <= full - freed as i64,
            "{full} - {freed} -> {}",
            pages(&cat)
        );
    }

    #[test]
    fn records_replace_files_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalogue.sqlite3");
        {
            let cat = Catalogue::open(&path).unwrap();
            let index = cat
                .ensure_index(Ecosystem::Pypi, "https://index.example/simple/", 60)
                .unwrap();
            assert_eq!(
                cat.ensure_index(Ecosystem::Pypi, "https://index.example/simple/", 90)
                    .unwrap(),
                index
            );
            let mut project = ProjectRecord {
                ecosystem: Ecosystem::Pypi,
                name: "demo".into(),
                display_name: "Demo".into(),
                last_serial: Some(7),
                status: None,
                fetched_at: 100,
                files: vec![
                    file(index, "demo-1.0.tar.gz"),
                    file(index, "demo-1.0-py3-none-any.whl"),
                ],
            };
            cat.record_project(&project).unwrap();
            project.files.truncate(1);
            project.files[0].provenance = Some("https://index.example/provenance/demo-1.0".into());
            cat.record_project(&project).unwrap();
        }
        let cat = Catalogue::open(&path).unwrap();
        let files = cat.project_files(Ecosystem::Pypi, "demo").unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].yanked.as_deref(), Some(""));
        assert_eq!(
            files[0].provenance.as_deref(),
            Some("https://index.example/provenance/demo-1.0")
        );
        assert_eq!(
            cat.counts().unwrap(),
            CatalogueCounts {
                projects: 1,
                files: 1,
                blobs: 0,
                blob_bytes: 0
            }
        );
    }

    /// A file row read once is served from memory; recording the project again (here without
    /// that file, then with it changed) drops it, so memory never answers an older row.
    #[test]
    fn hot_file_rows_follow_the_recorded_project() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalogue::open(&dir.path().join("catalogue.sqlite3")).unwrap();
        let index = cat
            .ensure_index(Ecosystem::Pypi, "https://index.example/simple/", 60)
            .unwrap();
        let mut project = ProjectRecord {
            ecosystem: Ecosystem::Pypi,
            name: "demo".into(),
            display_name: "Demo".into(),
            last_serial: None,
            status: None,
            fetched_at: 100,
            files: vec![file(index, "demo-1.0.tar.gz"), file(index, "demo-2.0.tar.gz")],
        };
        cat.record_project(&project).unwrap();
        let name = "demo-1.0.tar.gz";
        assert_eq!(cat.hot_file(Ecosystem::Pypi, "demo", name), None, "not read yet");
        let row = cat.project_file(Ecosystem::Pypi, "demo", name).unwrap();
        assert_eq!(row.as_ref().map(|r| r.filename.as_str()), Some(name));
        assert_eq!(cat.hot_file(Ecosystem::Pypi, "demo", name), row);
        assert_eq!(cat.hot_file(Ecosystem::Hex, "demo", name), None, "per ecosystem");

        project.files.remove(0);
        cat.record_project(&project).unwrap();
        assert_eq!(cat.hot_file(Ecosystem::Pypi, "demo", name), None);
        assert_eq!(cat.project_file(Ecosystem::Pypi, "demo", name).unwrap(), None);

        let mut changed = file(index, name);
        changed.sha256 = Some("cd".repeat(32));
        project.files.push(changed.clone());
        cat.record_project(&project).unwrap();
        assert_eq!(
            cat.project_file(Ecosystem::Pypi, "demo", name).unwrap(),
            Some(FileRecord {
                first_seen: Some(100),
                ..changed.clone()
            })
        );
        // A file keeps when it was first seen across refreshes; a new one is seen at its refresh.
        project.fetched_at = 200;
        project.files.push(file(index, "demo-3.0.tar.gz"));
        cat.record_project(&project).unwrap();
        let seen = cat.first_seen(Ecosystem::Pypi, "demo").unwrap();
        assert_eq!((seen["demo-2.0.tar.gz"], seen["demo-3.0.tar.gz"]), (100, 200));
        project.files.pop();
        project.files.last_mut().unwrap().sha256 = Some("ef".repeat(32));
        cat.record_project(&project).unwrap();
        assert_eq!(
            cat.project_file(Ecosystem::Pypi, "demo", name)
                .unwrap()
                .and_then(|r| r.sha256),
            Some("ef".repeat(32))
        );
    }

    #[test]
    fn blob_rows_page_by_last_access_and_go_away() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalogue::open(&dir.path().join("c.sqlite3")).unwrap();
        let key = |c: char| c.to_string().repeat(64);
        for (c, at) in [('c', 10), ('a', 20), ('b', 10), ('d', 5)] {
            cat.record_blob(&key(c), 100, "local", at).unwrap();
        }
        cat.touch_blobs(
            &[BlobAccess {
                sha256: key('d'),
                at: 30,
                hits: 2,
                size: 100,
            }],
            None,
        )
        .unwrap();
        assert_eq!(cat.blob_total_bytes().unwrap(), 400);

        let first = cat.blobs_by_last_access(None, 2).unwrap();
        let order = |rows: &[BlobUse]| rows.iter().map(|b| b.sha256.clone()).collect::<Vec<_>>();
        // Ties on the access time go by sha256, so the walk is total.
        assert_eq!(order(&first), [key('b'), key('c')]);
        assert_eq!(first[0].last_access, 10);
        let rest = cat.blobs_by_last_access(first.last(), 10).unwrap();
        assert_eq!(order(&rest), [key('a'), key('d')]);
        assert!(cat.blobs_by_last_access(rest.last(), 10).unwrap().is_empty());
        // A pinned blob (a hosted file) is never offered for eviction.
        cat.pin_blob(&key('b'), true).unwrap();
        assert_eq!(
            order(&cat.blobs_by_last_access(None, 2).unwrap()),
            [key('c'), key('a')]
        );

        let gone = [key('a'), key('z')];
        assert_eq!(cat.delete_blob_rows(&gone).unwrap(), 1);
        assert_eq!(
            cat.blob_keys().unwrap(),
            HashSet::from([key('b'), key('c'), key('d')])
        );
        assert_eq!(cat.blob_total_bytes().unwrap(), 300);
    }

    #[test]
    fn blob_stats_count_per_ecosystem_and_unlisted() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalogue::open(&dir.path().join("c.sqlite3")).unwrap();
        let index = cat
            .ensure_index(Ecosystem::Pypi, "https://index.example/simple/", 60)
            .unwrap();
        let (wheel, metadata, copy, unlisted, provenance) = (
            "1".repeat(64),
            "2".repeat(64),
            "3".repeat(64),
            "4".repeat(64),
            "5".repeat(64),
        );
        let mut listed = file(index, "demo-1.0-py3-none-any.whl");
        listed.sha256 = Some(wheel.clone());
        listed.metadata_sha256 = Some(metadata.clone());
        // Its provenance object counts with it.
        listed.provenance = Some("https://index.example/provenance/demo-1.0".into());
        cat.record_derived(
            Derived::Provenance,
            "https://index.example/provenance/demo-1.0",
            &provenance,
            1,
        )
        .unwrap();
        // The same bytes under two names count once.
        let mut twin = file(index, "demo-1.0.tar.gz");
        twin.sha256 = Some(copy.clone());
        let mut twin_again = file(index, "demo_copy-1.0.tar.gz");
        twin_again.sha256 = Some(copy.clone());
        let not_stored = file(index, "demo-0.9.tar.gz");
        cat.record_project(&ProjectRecord {
            ecosystem: Ecosystem::Pypi,
            name: "demo".into(),
            display_name: "demo".into(),
            last_serial: None,
            status: None,
            fetched_at: 1,
            files: vec![listed, twin, twin_again, not_stored],
        })
        .unwrap();
        cat.record_project(&ProjectRecord {
            ecosystem: Ecosystem::Pypi,
            name: "empty".into(),
            display_name: "empty".into(),
            last_serial: None,
            status: None,
            fetched_at: 1,
            files: vec![],
        })
        .unwrap();
        for (key, size) in [
            (&wheel, 1000),
            (&metadata, 10),
            (&copy, 500),
            (&unlisted, 7),
            (&provenance, 3),
        ] {
            cat.record_blob(key, size, "local", 1).unwrap();
        }
        cat.touch_blobs(
            &[
                BlobAccess {
                    sha256: wheel.clone(),
                    at: 2,
                    hits: 3,
                    size: 0,
                },
                BlobAccess {
                    sha256: unlisted.clone(),
                    at: 2,
                    hits: 1,
                    size: 0,
                },
            ],
            None,
        )
        .unwrap();

        assert_eq!(
            cat.blob_stats().unwrap(),
            BlobStats {
                blobs: 5,
                blob_bytes: 1520,
                hits: 4,
                ecosystems: vec![EcosystemStats {
                    ecosystem: "pypi".into(),
                    projects: 2,
                    files: 4,
                    blobs: 4,
                    blob_bytes: 1513,
                }],
                unlisted_blobs: 1,
                unlisted_bytes: 7,
            }
        );
    }

    /// What pkgmirror made of a wheel or a provenance URL is found again, from memory once read
    /// (also by another handle on the same file, which starts with nothing in memory).
    #[test]
    fn derived_blobs_are_remembered_by_what_they_were_made_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite3");
        let cat = Catalogue::open(&path).unwrap();
        let url = "https://index.example/integrity/demo/1.0/demo-1.0.tar.gz/provenance";
        let wheel = "a".repeat(64);
        assert_eq!(cat.derived(Derived::Provenance, url).unwrap(), None);
        cat.record_derived(Derived::Provenance, url, &"b".repeat(64), 1)
            .unwrap();
        cat.record_derived(Derived::WheelMetadata, &wheel, &"c".repeat(64), 1)
            .unwrap();
        assert_eq!(cat.hot_derived(Derived::Provenance, url), Some("b".repeat(64)));
        assert_eq!(cat.hot_derived(Derived::WheelMetadata, url), None, "per kind");

        let other = Catalogue::open(&path).unwrap();
        assert_eq!(other.hot_derived(Derived::Provenance, url), None);
        assert_eq!(
            other.derived(Derived::Provenance, url).unwrap(),
            Some("b".repeat(64))
        );
        assert_eq!(other.hot_derived(Derived::Provenance, url), Some("b".repeat(64)));
        assert_eq!(
            other.derived(Derived::WheelMetadata, &wheel).unwrap(),
            Some("c".repeat(64))
        );
        // Fetched again (its blob was evicted): the new blob replaces the old.
        other
            .record_derived(Derived::Provenance, url, &"d".repeat(64), 2)
            .unwrap();
        assert_eq!(
            Catalogue::open(&path)
                .unwrap()
                .derived(Derived::Provenance, url)
                .unwrap(),
            Some("d".repeat(64))
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalogue.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Catalogue::open(&path).err().unwrap();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[test]
    fn upgrading_counts_what_older_versions_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalogue.sqlite3");
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO indexes (id, ecosystem, url, ttl_secs) VALUES (1, 'pypi', 'http://i.invalid/', 60);
             INSERT INTO projects (id, ecosystem, name, display_name, fetched_at) VALUES (1, 'pypi', 'old', 'Old', 5);
             INSERT INTO files (project_id, index_id, filename, url, sha256) VALUES
                 (1, 1, 'old-1.tar.gz', 'http://i.invalid/a', 'aa'), (1, 1, 'old-2.tar.gz', 'http://i.invalid/b', 'bb');
             INSERT INTO blobs (sha256, size, store, created_at, last_access) VALUES ('aa', 7, 'local', 1, 40);",
        )
        .unwrap();
        drop(conn);
        let catalogue = Catalogue::open(&path).unwrap();
        let old = catalogue
            .project_detail(Ecosystem::Pypi, "old")
            .unwrap()
            .unwrap()
            .summary;
        assert_eq!(
            (old.files, old.cached_files, old.cached_bytes, old.last_access),
            (2, 1, 7, Some(40))
        );
    }
}
