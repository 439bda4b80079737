//! The SQLite catalogue: what pkgmirror knows about indexes, projects and files. It is the durable
//! truth behind stats and the UI; page bytes live in the page store, file bytes in the blob store.
//!
//! Every method is blocking: call them from `spawn_blocking` (see `cache/`), never on a worker thread.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, params};

use super::StorageError;

/// Migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_catalogue.sql"),
    include_str!("../../migrations/0002_blobs.sql"),
    include_str!("../../migrations/0003_wheel_metadata.sql"),
];

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
}

/// A project as the refresh flow records it, with all of its files (they replace the old rows).
#[derive(Debug, Clone)]
pub struct ProjectRecord {
    pub ecosystem: &'static str,
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

/// A handle to the catalogue database; cheap to clone.
#[derive(Clone)]
pub struct Catalogue {
    conn: Arc<Mutex<Connection>>,
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
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (transactions roll back),
        // so a poisoned mutex is safe to keep using.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers an upstream index (by its credential-free URL) and returns its id.
    pub fn ensure_index(&self, ecosystem: &str, url: &str, ttl_secs: u64) -> Result<i64, StorageError> {
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
        let mut conn = self.lock();
        let tx = conn.transaction()?;
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
        tx.execute("DELETE FROM files WHERE project_id = ?1", params![project_id])?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO files (project_id, index_id, filename, version, url, sha256, size,
                    requires_python, yanked, yanked_reason, upload_time, has_metadata, metadata_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The recorded files of a project, in the order they were listed.
    pub fn project_files(&self, ecosystem: &str, name: &str) -> Result<Vec<FileRecord>, StorageError> {
        self.project_files_where(ecosystem, name, None)
    }

    fn project_files_where(
        &self,
        ecosystem: &str,
        name: &str,
        filename: Option<&str>,
    ) -> Result<Vec<FileRecord>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT f.index_id, f.filename, f.version, f.url, f.sha256, f.size, f.requires_python,
                    f.yanked, f.yanked_reason, f.upload_time, f.has_metadata, f.metadata_sha256
             FROM files f JOIN projects p ON p.id = f.project_id
             WHERE p.ecosystem = ?1 AND p.name = ?2 AND (?3 IS NULL OR f.filename = ?3)
             ORDER BY f.id",
        )?;
        let rows = stmt.query_map(params![ecosystem, name, filename], |row| {
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
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One listed file of a project, if the project's page lists it.
    pub fn project_file(
        &self,
        ecosystem: &str,
        name: &str,
        filename: &str,
    ) -> Result<Option<FileRecord>, StorageError> {
        Ok(self
            .project_files_where(ecosystem, name, Some(filename))?
            .into_iter()
            .next())
    }

    /// Records a committed blob (or, if it is known, leaves its access statistics alone).
    pub fn record_blob(&self, sha256: &str, size: u64, store: &str, now: u64) -> Result<(), StorageError> {
        self.lock().execute(
            "INSERT INTO blobs (sha256, size, store, created_at, last_access, hits)
             VALUES (?1, ?2, ?3, ?4, ?4, 0)
             ON CONFLICT (sha256) DO UPDATE SET size = excluded.size, store = excluded.store",
            params![sha256, size as i64, store, now as i64],
        )?;
        Ok(())
    }

    /// Records the core metadata extracted from a cached wheel.
    pub fn record_wheel_metadata(
        &self,
        wheel_sha256: &str,
        metadata_sha256: &str,
        now: u64,
    ) -> Result<(), StorageError> {
        self.lock().execute(
            "INSERT INTO wheel_metadata (wheel_sha256, metadata_sha256, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (wheel_sha256) DO UPDATE SET metadata_sha256 = excluded.metadata_sha256",
            params![wheel_sha256, metadata_sha256, now as i64],
        )?;
        Ok(())
    }

    /// The metadata extracted from the wheel with this sha256, if any.
    pub fn wheel_metadata(&self, wheel_sha256: &str) -> Result<Option<String>, StorageError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT metadata_sha256 FROM wheel_metadata WHERE wheel_sha256 = ?1")?;
        let mut rows = stmt.query(params![wheel_sha256])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }

    /// Extracted metadata for the wheels a project lists: wheel sha256 → metadata sha256.
    pub fn project_wheel_metadata(
        &self,
        ecosystem: &str,
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

    /// Applies batched accesses: (sha256, last access, hits since the last batch).
    pub fn touch_blobs(&self, accesses: &[(String, u64, u64)]) -> Result<(), StorageError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE blobs SET last_access = max(last_access, ?2), hits = hits + ?3 WHERE sha256 = ?1",
            )?;
            for (sha256, at, hits) in accesses {
                update.execute(params![sha256, *at as i64, *hits as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
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

    /// Folds the WAL back into the main file; called at shutdown so the data dir is compact.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        self.lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
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
mod tests {
    use super::*;

    fn file(index_id: i64, name: &str) -> FileRecord {
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
        }
    }

    #[test]
    fn records_replace_files_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalogue.sqlite3");
        {
            let cat = Catalogue::open(&path).unwrap();
            let index = cat
                .ensure_index("pypi", "https://index.example/simple/", 60)
                .unwrap();
            assert_eq!(
                cat.ensure_index("pypi", "https://index.example/simple/", 90)
                    .unwrap(),
                index
            );
            let mut project = ProjectRecord {
                ecosystem: "pypi",
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
            cat.record_project(&project).unwrap();
        }
        let cat = Catalogue::open(&path).unwrap();
        let files = cat.project_files("pypi", "demo").unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].yanked.as_deref(), Some(""));
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
}
