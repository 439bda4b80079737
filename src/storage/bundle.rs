//! The catalogue side of export bundles: a bundle carries a SQLite file with the same schema as
//! the catalogue (made by [`Catalogue::open`], so an older bundle is migrated forward when it is
//! opened and a newer one refused), holding the chosen projects' rows, the rows of the blobs it
//! carries, and the page store's entries for those projects.
//!
//! Rows are copied with SQL between the two files (`ATTACH`), column lists read from the schema,
//! so a column a later migration adds travels without a change here. Ids are not carried over:
//! indexes and projects are matched by their natural keys, file rows remapped to them.

use std::path::Path;

use rusqlite::{OptionalExtension as _, params};

use super::{Catalogue, StorageError};

/// What to export: projects named (normalized PyPI names or hex names; empty: all) and recorded
/// or stored since a time (unix seconds).
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub projects: Vec<String>,
    pub since: Option<u64>,
}

/// A page-store entry as a bundle carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageEntry {
    pub kind: PageEntryKind,
    pub ecosystem: String,
    pub page: String,
    /// The snapshot's index key, or the rendering's form.
    pub key: String,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageEntryKind {
    Snapshot,
    Page,
}

impl PageEntryKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Page => "page",
        }
    }
}

const PAGE_ENTRIES: &str = "CREATE TABLE IF NOT EXISTS bundle_pages (
    kind TEXT NOT NULL, ecosystem TEXT NOT NULL, page TEXT NOT NULL, key TEXT NOT NULL,
    value BLOB NOT NULL, PRIMARY KEY (kind, ecosystem, page, key))";

/// A bundle's catalogue file.
pub struct BundleCatalogue {
    catalogue: Catalogue,
}

impl BundleCatalogue {
    /// Creates (export) or opens (import) the file at `path`, migrated to this schema.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let catalogue = Catalogue::open(path)?;
        catalogue.lock().execute_batch(PAGE_ENTRIES)?;
        Ok(Self { catalogue })
    }

    /// The projects it carries, as (ecosystem, name).
    pub fn projects(&self) -> Result<Vec<(String, String)>, StorageError> {
        let conn = self.catalogue.lock();
        let mut stmt = conn.prepare("SELECT ecosystem, name FROM projects ORDER BY ecosystem, name")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What a blob is, for a message about it: the file names whose rows name it.
    pub fn names_of_blob(&self, sha256: &str) -> Result<Vec<String>, StorageError> {
        let conn = self.catalogue.lock();
        let mut stmt = conn.prepare(
            "SELECT filename FROM files WHERE sha256 = ?1
             UNION SELECT filename || '.metadata' FROM files WHERE metadata_sha256 = ?1
             UNION SELECT f.filename || '.metadata' FROM files f JOIN wheel_metadata w
                 ON w.wheel_sha256 = f.sha256 WHERE w.metadata_sha256 = ?1
             UNION SELECT f.filename || '.provenance' FROM files f JOIN provenance p
                 ON p.url = f.provenance_url WHERE p.sha256 = ?1
             ORDER BY 1",
        )?;
        let rows = stmt.query_map(params![sha256], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn add_page_entries(&self, entries: &[PageEntry]) -> Result<(), StorageError> {
        let mut conn = self.catalogue.lock();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT OR REPLACE INTO bundle_pages (kind, ecosystem, page, key, value)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for e in entries {
                insert.execute(params![e.kind.as_str(), e.ecosystem, e.page, e.key, e.value])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every page entry, `batch` at a time, to `each`.
    pub fn page_entries(
        &self,
        batch: usize,
        mut each: impl FnMut(Vec<PageEntry>) -> Result<(), StorageError>,
    ) -> Result<u64, StorageError> {
        let conn = self.catalogue.lock();
        let mut stmt =
            conn.prepare("SELECT kind, ecosystem, page, key, value FROM bundle_pages ORDER BY 1, 2, 3, 4")?;
        let mut rows = stmt.query([])?;
        let mut pending = Vec::new();
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let kind: String = row.get(0)?;
            let kind = match kind.as_str() {
                "snapshot" => PageEntryKind::Snapshot,
                "page" => PageEntryKind::Page,
                other => {
                    return Err(StorageError::Corrupt(format!(
                        "a bundle page entry of kind {other:?}"
                    )));
                }
            };
            pending.push(PageEntry {
                kind,
                ecosystem: row.get(1)?,
                page: row.get(2)?,
                key: row.get(3)?,
                value: row.get(4)?,
            });
            count += 1;
            if pending.len() >= batch {
                each(std::mem::take(&mut pending))?;
            }
        }
        if !pending.is_empty() {
            each(pending)?;
        }
        Ok(count)
    }

    /// Makes the file self-contained (no WAL beside it) before it is packed.
    pub fn close(self) -> Result<(), StorageError> {
        self.catalogue
            .lock()
            .pragma_update(None, "journal_mode", "DELETE")?;
        Ok(())
    }
}

/// The rows an export chose.
#[derive(Debug, Default)]
pub struct Chosen {
    /// (ecosystem, name) of every project carried.
    pub projects: Vec<(String, String)>,
    /// (sha256, size) of every stored blob their rows name, stored since the filter's time.
    pub blobs: Vec<(String, u64)>,
}

/// Columns of `table` in `schema` other than `skip`, as a SQL list.
fn columns(
    conn: &rusqlite::Connection,
    schema: &str,
    table: &str,
    skip: &[&str],
) -> Result<String, StorageError> {
    let mut stmt = conn.prepare(&format!("PRAGMA {schema}.table_info({table})"))?;
    let names: Vec<String> = stmt
        .query_map([], |row| row.get::<_, String>(1))?
        .collect::<Result<_, _>>()?;
    Ok(names
        .into_iter()
        .filter(|n| !skip.contains(&n.as_str()))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Attaches the bundle file while `f` runs.
fn attached<T>(
    conn: &mut rusqlite::Connection,
    bundle: &Path,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let path = bundle
        .to_str()
        .ok_or_else(|| StorageError::Corrupt(format!("{} is not a UTF-8 path", bundle.display())))?;
    conn.execute("ATTACH DATABASE ?1 AS bundle", params![path])?;
    let result = (|| -> Result<T, StorageError> {
        let tx = conn.transaction()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    })();
    let detached = conn.execute("DETACH DATABASE bundle", []);
    let value = result?;
    detached?;
    Ok(value)
}

impl Catalogue {
    /// Copies the rows `filter` chooses into the bundle file at `bundle` (opened with
    /// [`BundleCatalogue::open`] and closed again), and says what it chose.
    pub fn export_rows(&self, bundle: &Path, filter: &ExportFilter) -> Result<Chosen, StorageError> {
        let mut conn = self.lock();
        attached(&mut conn, bundle, |tx| {
            tx.execute_batch(
                "DROP TABLE IF EXISTS temp.chosen; CREATE TEMP TABLE chosen (id INTEGER PRIMARY KEY)",
            )?;
            {
                let mut choose = tx.prepare(
                    "INSERT INTO temp.chosen SELECT p.id FROM projects p
                     WHERE (?1 IS NULL OR p.fetched_at >= ?1 OR EXISTS (
                         SELECT 1 FROM files f JOIN blobs b ON b.sha256 IN (f.sha256, f.metadata_sha256)
                         WHERE f.project_id = p.id AND b.created_at >= ?1))
                       AND (?2 IS NULL OR p.name = ?2)",
                )?;
                let since = filter.since.map(|s| s as i64);
                if filter.projects.is_empty() {
                    choose.execute(params![since, None::<String>])?;
                }
                for name in &filter.projects {
                    choose.execute(params![since, name])?;
                }
            }
            let all = |table: &str| columns(tx, "main", table, &[]);
            tx.execute_batch(&format!(
                "INSERT INTO bundle.indexes ({c}) SELECT {c} FROM main.indexes;",
                c = all("indexes")?
            ))?;
            tx.execute_batch(&format!(
                "INSERT INTO bundle.projects ({c}) SELECT {c} FROM main.projects WHERE id IN temp.chosen;",
                c = all("projects")?
            ))?;
            tx.execute_batch(&format!(
                "INSERT INTO bundle.files ({c}) SELECT {c} FROM main.files WHERE project_id IN temp.chosen;",
                c = all("files")?
            ))?;
            // What was made from the files travels with them: metadata extracted from wheels
            // and the provenance objects fetched for them.
            tx.execute_batch(&format!(
                "INSERT INTO bundle.wheel_metadata ({w}) SELECT {w} FROM main.wheel_metadata
                 WHERE wheel_sha256 IN (SELECT sha256 FROM bundle.files);
                 INSERT INTO bundle.provenance ({p}) SELECT {p} FROM main.provenance
                 WHERE url IN (SELECT provenance_url FROM bundle.files);",
                w = all("wheel_metadata")?,
                p = all("provenance")?
            ))?;
            tx.execute(
                &format!(
                    "INSERT INTO bundle.blobs ({c}) SELECT {c} FROM main.blobs
                     WHERE sha256 IN (SELECT sha256 FROM bundle.files UNION SELECT metadata_sha256 FROM bundle.files
                                      UNION SELECT metadata_sha256 FROM bundle.wheel_metadata
                                      UNION SELECT sha256 FROM bundle.provenance)
                       AND (?1 IS NULL OR created_at >= ?1)",
                    c = all("blobs")?
                ),
                params![filter.since.map(|s| s as i64)],
            )?;
            let projects = {
                let mut stmt = tx.prepare("SELECT ecosystem, name FROM bundle.projects ORDER BY 1, 2")?;
                stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<_, _>>()?
            };
            let blobs = {
                let mut stmt = tx.prepare("SELECT sha256, size FROM bundle.blobs ORDER BY 1")?;
                stmt.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?
                    .collect::<Result<_, _>>()?
            };
            tx.execute_batch("DROP TABLE temp.chosen")?;
            Ok(Chosen { projects, blobs })
        })
    }

    /// The row of one stored blob, to carry a blob a page points at: (sha256, size).
    pub fn stored_blob(&self, sha256: &str) -> Result<Option<(String, u64)>, StorageError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT sha256, size FROM blobs WHERE sha256 = ?1",
                params![sha256],
                |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)),
            )
            .optional()?)
    }

    /// Merges the rows of the bundle file at `bundle` (its blobs already stored and recorded):
    /// a project the bundle saw at least as lately as this catalogue replaces its rows here;
    /// indexes and extracted-metadata rows are added where missing. Returns how many projects
    /// were taken.
    pub fn import_rows(&self, bundle: &Path) -> Result<u64, StorageError> {
        let mut conn = self.lock();
        let taken = attached(&mut conn, bundle, |tx| {
            tx.execute_batch(
                "INSERT INTO main.indexes (ecosystem, url, ttl_secs)
                 SELECT ecosystem, url, ttl_secs FROM bundle.indexes WHERE true
                 ON CONFLICT (ecosystem, url) DO NOTHING;
                 DROP TABLE IF EXISTS temp.taken;
                 CREATE TEMP TABLE taken AS SELECT b.id AS bundle_id, b.ecosystem, b.name FROM bundle.projects b
                 LEFT JOIN main.projects m ON m.ecosystem = b.ecosystem AND m.name = b.name
                 WHERE m.id IS NULL OR b.fetched_at >= m.fetched_at;",
            )?;
            let project_columns = columns(
                tx,
                "bundle",
                "projects",
                &["id", "cached_files", "cached_bytes", "last_access"],
            )?;
            let updates: Vec<String> = project_columns
                .split(", ")
                .filter(|c| !matches!(*c, "ecosystem" | "name"))
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            tx.execute_batch(&format!(
                "INSERT INTO main.projects ({c}) SELECT {c} FROM bundle.projects
                 WHERE id IN (SELECT bundle_id FROM temp.taken) AND true
                 ON CONFLICT (ecosystem, name) DO UPDATE SET {u};
                 DELETE FROM main.files WHERE project_id IN (
                     SELECT m.id FROM main.projects m JOIN temp.taken t ON t.ecosystem = m.ecosystem AND t.name = m.name);",
                c = project_columns,
                u = updates.join(", ")
            ))?;
            let file_columns = columns(tx, "bundle", "files", &["id", "project_id", "index_id"])?;
            let from_bundle: Vec<String> = file_columns.split(", ").map(|c| format!("f.{c}")).collect();
            tx.execute_batch(&format!(
                "INSERT INTO main.files (project_id, index_id, {c})
                 SELECT mp.id, mi.id, {fc} FROM bundle.files f
                 JOIN temp.taken t ON t.bundle_id = f.project_id
                 JOIN main.projects mp ON mp.ecosystem = t.ecosystem AND mp.name = t.name
                 JOIN bundle.indexes bi ON bi.id = f.index_id
                 JOIN main.indexes mi ON mi.ecosystem = bi.ecosystem AND mi.url = bi.url;
                 INSERT OR IGNORE INTO main.wheel_metadata ({w}) SELECT {w} FROM bundle.wheel_metadata;
                 INSERT OR IGNORE INTO main.provenance ({p}) SELECT {p} FROM bundle.provenance;",
                c = file_columns,
                fc = from_bundle.join(", "),
                w = columns(tx, "bundle", "wheel_metadata", &[])?,
                p = columns(tx, "bundle", "provenance", &[])?
            ))?;
            let ids: Vec<i64> = {
                let mut stmt = tx.prepare(
                    "SELECT m.id FROM main.projects m JOIN temp.taken t ON t.ecosystem = m.ecosystem AND t.name = m.name",
                )?;
                stmt.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?
            };
            for id in ids {
                tx.execute(super::catalogue::RECOUNT_PROJECT_USAGE, params![id])?;
            }
            let taken: i64 = tx.query_row("SELECT count(*) FROM temp.taken", [], |row| row.get(0))?;
            tx.execute_batch("DROP TABLE temp.taken")?;
            Ok(taken as u64)
        })?;
        drop(conn);
        // Rows were replaced behind the lookups' backs.
        self.forget_hot_rows();
        Ok(taken)
    }
}
