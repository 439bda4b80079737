//! The catalogue as the web UI reads it: project search and listing, one project's files with
//! what is cached, recent downloads, and the admin log.
//!
//! Every listing is ordered by an index (migration 0004), so a page of a 100,000-project
//! catalogue reads its rows in order and stops at its `LIMIT`; `search_plan` shows the plan so a
//! test can hold that true. Every method is blocking, like the rest of the catalogue.

use rusqlite::{OptionalExtension, params};

use super::StorageError;
use super::catalogue::{Catalogue, FileRecord};
use crate::ecosystem::Ecosystem;

/// How a project listing is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProjectSort {
    #[default]
    Name,
    /// Most recently read cached file first; projects with nothing cached last.
    LastAccess,
    /// Most cached bytes first.
    CachedSize,
}

impl ProjectSort {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "name" => Some(Self::Name),
            "last_access" => Some(Self::LastAccess),
            "size" => Some(Self::CachedSize),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::LastAccess => "last_access",
            Self::CachedSize => "size",
        }
    }

    fn order_by(self) -> &'static str {
        // Each matches an index on (ecosystem, ...) column for column, so no sort step is needed.
        match self {
            Self::Name => "ORDER BY name",
            Self::LastAccess => "ORDER BY last_access DESC, name",
            Self::CachedSize => "ORDER BY cached_bytes DESC, name",
        }
    }
}

/// One page of a project listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectQuery<'a> {
    pub ecosystem: Ecosystem,
    /// A normalized name fragment; empty lists every project.
    pub contains: &'a str,
    pub sort: ProjectSort,
    pub offset: u64,
    pub limit: u64,
}

/// A project as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProjectSummary {
    pub ecosystem: String,
    pub name: String,
    pub display_name: String,
    /// Unix seconds of the last successful refresh of its page.
    pub fetched_at: u64,
    pub files: u64,
    pub cached_files: u64,
    pub cached_bytes: u64,
    /// Unix seconds of the newest read of a cached file.
    pub last_access: Option<u64>,
    /// The hosted index its files come from, if they come from one.
    pub hosted: Option<String>,
}

/// Rows of one page and how many projects match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectListing {
    pub projects: Vec<ProjectSummary>,
    pub total: u64,
}

/// A listed file and whether its bytes are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDetail {
    pub file: FileRecord,
    pub cached: bool,
    /// Times the stored copy was served.
    pub hits: u64,
    /// Bytes of the stored copy (an index need not give sizes).
    pub stored_size: Option<u64>,
}

/// A project with every file its page lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectDetail {
    pub summary: ProjectSummary,
    pub status: Option<String>,
    pub files: Vec<FileDetail>,
}

/// A file stored lately, for the home page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentDownload {
    pub ecosystem: String,
    pub project: String,
    pub filename: String,
    pub size: u64,
    /// Unix seconds.
    pub stored_at: u64,
}

/// One action taken from the admin pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminLogEntry {
    pub at: u64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
}

/// The admin log keeps this many newest entries.
const ADMIN_LOG_KEEP: i64 = 10_000;

const SUMMARY_COLUMNS: &str = "ecosystem, name, display_name, fetched_at,
    (SELECT count(*) FROM files f WHERE f.project_id = projects.id),
    cached_files, cached_bytes, last_access,
    (SELECT substr(i.url, 8) FROM files f JOIN indexes i ON i.id = f.index_id
     WHERE f.project_id = projects.id AND i.url LIKE 'hosted:%' LIMIT 1)";

fn summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectSummary> {
    Ok(ProjectSummary {
        ecosystem: row.get(0)?,
        name: row.get(1)?,
        display_name: row.get(2)?,
        fetched_at: row.get::<_, i64>(3)?.max(0) as u64,
        files: row.get::<_, i64>(4)?.max(0) as u64,
        cached_files: row.get::<_, i64>(5)?.max(0) as u64,
        cached_bytes: row.get::<_, i64>(6)?.max(0) as u64,
        last_access: row.get::<_, Option<i64>>(7)?.map(|t| t.max(0) as u64),
        // The catalogue names a hosted index `hosted:{name}`.
        hosted: row.get(8)?,
    })
}

fn listing_sql(sort: ProjectSort) -> String {
    // instr() rather than LIKE: the fragment comes from a request, and instr has no wildcards
    // to escape. A substring match cannot seek, but it filters rows already read in index order.
    format!(
        "SELECT {SUMMARY_COLUMNS} FROM projects
         WHERE ecosystem = ?1 AND (?2 = '' OR instr(name, ?2) > 0)
         {} LIMIT ?3 OFFSET ?4",
        sort.order_by()
    )
}

impl Catalogue {
    /// One page of projects whose normalized name contains `query.contains`.
    pub fn search_projects(&self, query: &ProjectQuery<'_>) -> Result<ProjectListing, StorageError> {
        let conn = self.lock();
        let mut rows = conn.prepare_cached(&listing_sql(query.sort))?;
        let projects = rows
            .query_map(
                params![
                    query.ecosystem,
                    query.contains,
                    i64::try_from(query.limit).unwrap_or(i64::MAX),
                    i64::try_from(query.offset).unwrap_or(i64::MAX)
                ],
                summary,
            )?
            .collect::<Result<_, _>>()?;
        let total: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM projects WHERE ecosystem = ?1 AND (?2 = '' OR instr(name, ?2) > 0)",
            )?
            .query_row(params![query.ecosystem, query.contains], |row| row.get(0))?;
        Ok(ProjectListing {
            projects,
            total: total.max(0) as u64,
        })
    }

    /// SQLite's plan for [`Self::search_projects`]'s listing, one line per step.
    pub fn search_plan(&self, query: &ProjectQuery<'_>) -> Result<Vec<String>, StorageError> {
        let conn = self.lock();
        let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", listing_sql(query.sort)))?;
        let steps = plan
            .query_map(
                params![
                    query.ecosystem,
                    query.contains,
                    query.limit as i64,
                    query.offset as i64
                ],
                |row| row.get::<_, String>(3),
            )?
            .collect::<Result<_, _>>()?;
        Ok(steps)
    }

    /// A project (by normalized name) with its files in listing order, or `None` when unknown.
    pub fn project_detail(
        &self,
        ecosystem: Ecosystem,
        name: &str,
    ) -> Result<Option<ProjectDetail>, StorageError> {
        let found = {
            let conn = self.lock();
            conn.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS}, status FROM projects WHERE ecosystem = ?1 AND name = ?2"
            ))?
            .query_row(params![ecosystem, name], |row| Ok((summary(row)?, row.get(9)?)))
            .optional()?
        };
        let Some((summary, status)) = found else {
            return Ok(None);
        };
        let files = self.project_files(ecosystem, name)?;
        let conn = self.lock();
        let mut stored = conn.prepare_cached("SELECT hits, size FROM blobs WHERE sha256 = ?1")?;
        let mut details = Vec::with_capacity(files.len());
        for file in files {
            let blob: Option<(i64, i64)> = match &file.sha256 {
                Some(sha256) => stored
                    .query_row(params![sha256], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?,
                None => None,
            };
            details.push(FileDetail {
                file,
                cached: blob.is_some(),
                hits: blob.map_or(0, |(hits, _)| hits.max(0) as u64),
                stored_size: blob.map(|(_, size)| size.max(0) as u64),
            });
        }
        Ok(Some(ProjectDetail {
            summary,
            status,
            files: details,
        }))
    }

    /// The files stored most recently, newest first.
    pub fn recent_downloads(&self, limit: u64) -> Result<Vec<RecentDownload>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT p.ecosystem, p.name, f.filename, b.size, b.created_at
             FROM blobs b JOIN files f ON f.sha256 = b.sha256 JOIN projects p ON p.id = f.project_id
             ORDER BY b.created_at DESC, b.sha256 LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok(RecentDownload {
                ecosystem: row.get(0)?,
                project: row.get(1)?,
                filename: row.get(2)?,
                size: row.get::<_, i64>(3)?.max(0) as u64,
                stored_at: row.get::<_, i64>(4)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records an admin action, keeping the newest [`ADMIN_LOG_KEEP`] entries.
    pub fn record_admin_action(&self, entry: &AdminLogEntry) -> Result<(), StorageError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let id = tx.query_row(
            "INSERT INTO admin_log (at, actor, action, target, outcome) VALUES (?1, ?2, ?3, ?4, ?5)
             RETURNING id",
            params![
                entry.at as i64,
                entry.actor,
                entry.action,
                entry.target,
                entry.outcome
            ],
            |row| row.get::<_, i64>(0),
        )?;
        tx.execute(
            "DELETE FROM admin_log WHERE id <= ?1",
            params![id - ADMIN_LOG_KEEP],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The newest admin log entries, newest first.
    pub fn admin_log(&self, limit: u64) -> Result<Vec<AdminLogEntry>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT at, actor, action, target, outcome FROM admin_log ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok(AdminLogEntry {
                at: row.get::<_, i64>(0)?.max(0) as u64,
                actor: row.get(1)?,
                action: row.get(2)?,
                target: row.get(3)?,
                outcome: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::catalogue::ProjectRecord;

    fn file(index_id: i64, name: &str, sha: char) -> FileRecord {
        FileRecord {
            index_id,
            filename: name.into(),
            version: Some("1.0".into()),
            url: format!("http://upstream.invalid/{name}"),
            sha256: Some(sha.to_string().repeat(64)),
            size: Some(10),
            requires_python: None,
            yanked: None,
            upload_time: None,
            has_metadata: false,
            metadata_sha256: None,
            inner_checksum: None,
            first_seen: None,
            provenance: None,
        }
    }

    fn project(name: &str, files: Vec<FileRecord>) -> ProjectRecord {
        ProjectRecord {
            ecosystem: Ecosystem::Pypi,
            name: name.into(),
            display_name: name.to_uppercase(),
            last_serial: None,
            status: None,
            fetched_at: 100,
            files,
        }
    }

    fn names(listing: &ProjectListing) -> Vec<&str> {
        listing.projects.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn usage_follows_blobs_and_orders_listings() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open(&dir.path().join("c.sqlite3")).unwrap();
        let index = catalogue
            .ensure_index(Ecosystem::Pypi, "http://upstream.invalid/simple/", 60)
            .unwrap();
        catalogue
            .record_project(&project("alpha", vec![file(index, "alpha-1.0.tar.gz", 'a')]))
            .unwrap();
        catalogue
            .record_project(&project(
                "beta-tools",
                vec![file(index, "b-1.whl", 'b'), file(index, "b-2.whl", 'c')],
            ))
            .unwrap();
        catalogue.record_project(&project("gamma", vec![])).unwrap();

        // Stored blobs count for every project listing them, at once (triggers).
        catalogue
            .record_blob(&"b".repeat(64), 300, "local", 1_000)
            .unwrap();
        catalogue
            .record_blob(&"c".repeat(64), 200, "local", 1_001)
            .unwrap();
        catalogue
            .record_blob(&"a".repeat(64), 50, "local", 2_000)
            .unwrap();
        let query = |sort, contains| ProjectQuery {
            ecosystem: Ecosystem::Pypi,
            contains,
            sort,
            offset: 0,
            limit: 10,
        };
        let by_size = catalogue
            .search_projects(&query(ProjectSort::CachedSize, ""))
            .unwrap();
        assert_eq!(names(&by_size), ["beta-tools", "alpha", "gamma"]);
        assert_eq!(by_size.total, 3);
        assert_eq!(by_size.projects[0].cached_bytes, 500);
        assert_eq!(by_size.projects[0].cached_files, 2);
        assert_eq!(by_size.projects[0].files, 2);
        let by_access = catalogue
            .search_projects(&query(ProjectSort::LastAccess, ""))
            .unwrap();
        assert_eq!(names(&by_access), ["alpha", "beta-tools", "gamma"]);
        assert_eq!(by_access.projects[2].last_access, None);

        // A read moves last access forward; a removed blob is recounted.
        catalogue
            .touch_blobs(
                &[crate::storage::catalogue::BlobAccess {
                    sha256: "c".repeat(64),
                    at: 3_000,
                    hits: 2,
                    size: 200,
                }],
                None,
            )
            .unwrap();
        let by_access = catalogue
            .search_projects(&query(ProjectSort::LastAccess, ""))
            .unwrap();
        assert_eq!(names(&by_access), ["beta-tools", "alpha", "gamma"]);
        catalogue.delete_blob_rows(&["b".repeat(64)]).unwrap();
        let beta = catalogue
            .project_detail(Ecosystem::Pypi, "beta-tools")
            .unwrap()
            .unwrap();
        assert_eq!((beta.summary.cached_files, beta.summary.cached_bytes), (1, 200));
        assert_eq!(
            beta.files.iter().map(|f| (f.cached, f.hits)).collect::<Vec<_>>(),
            [(false, 0), (true, 2)]
        );

        // Search is a substring of the normalized name, paged.
        let found = catalogue
            .search_projects(&query(ProjectSort::Name, "ta-t"))
            .unwrap();
        assert_eq!((names(&found), found.total), (vec!["beta-tools"], 1));
        let second = catalogue
            .search_projects(&ProjectQuery {
                offset: 1,
                limit: 1,
                ..query(ProjectSort::Name, "a")
            })
            .unwrap();
        assert_eq!((names(&second), second.total), (vec!["beta-tools"], 3));
        assert!(
            catalogue
                .project_detail(Ecosystem::Pypi, "nope")
                .unwrap()
                .is_none()
        );

        let recent = catalogue.recent_downloads(5).unwrap();
        assert_eq!(
            recent.iter().map(|r| r.filename.as_str()).collect::<Vec<_>>(),
            ["alpha-1.0.tar.gz", "b-2.whl"]
        );

        // Replacing a project's files recounts it.
        catalogue.record_project(&project("alpha", vec![])).unwrap();
        let alpha = catalogue
            .project_detail(Ecosystem::Pypi, "alpha")
            .unwrap()
            .unwrap();
        assert_eq!((alpha.summary.cached_files, alpha.summary.last_access), (0, None));
    }

    #[test]
    fn every_listing_reads_an_index_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open(&dir.path().join("c.sqlite3")).unwrap();
        for (sort, index) in [
            (ProjectSort::Name, "sqlite_autoindex_projects_1"),
            (ProjectSort::LastAccess, "projects_by_last_access"),
            (ProjectSort::CachedSize, "projects_by_cached_bytes"),
        ] {
            for contains in ["", "req"] {
                let plan = catalogue
                    .search_plan(&ProjectQuery {
                        ecosystem: Ecosystem::Pypi,
                        contains,
                        sort,
                        offset: 0,
                        limit: 50,
                    })
                    .unwrap()
                    .join("; ");
                // The projects table itself, not just the file-count subquery, is read by the
                // sort's own index.
                assert!(
                    plan.contains(&format!("projects USING INDEX {index}")),
                    "{sort:?}: {plan}"
                );
                assert!(!plan.contains("TEMP B-TREE"), "{sort:?}: {plan}");
            }
        }
    }

    #[test]
    fn admin_log_lists_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::open(&dir.path().join("c.sqlite3")).unwrap();
        for (at, action) in [(1, "sign-in"), (2, "forget-project")] {
            catalogue
                .record_admin_action(&AdminLogEntry {
                    at,
                    actor: "127.0.0.1".into(),
                    action: action.into(),
                    target: Some("demo".into()),
                    outcome: "ok".into(),
                })
                .unwrap();
        }
        let log = catalogue.admin_log(10).unwrap();
        assert_eq!(
            log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["forget-project", "sign-in"]
        );
    }
}
