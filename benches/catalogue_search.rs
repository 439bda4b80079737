//! One page of the web UI's package list over a 100,000-project catalogue: `search_projects` as
//! `/packages` calls it (the page's rows and the total count), for each sort and for fragments
//! matching 1 % of the projects and none (the worst case: every row is read and filtered).
//!
//! The catalogue is seeded with one recursive-CTE insert, so a run in test mode
//! (`cargo test --bench '*'`) stays quick.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use pkgmirror::ecosystem::Ecosystem;
use pkgmirror::storage::Catalogue;
use pkgmirror::storage::browse::{ProjectQuery, ProjectSort};
use rusqlite::{Connection, params};

const PROJECTS: i64 = 100_000;
const PAGE: u64 = 50;
const NOW: i64 = 1_800_000_000;

/// `tool-00042`; every hundredth project is `tool-00007-plugin` (so "plugin" matches 1 %). One in
/// ten, and every plugin, has a file cached: 1000 + i bytes, last read 3600 + i seconds ago.
const SEED: &str = "
    WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?1),
    gen(i, name, cached) AS (
        SELECT i, printf('tool-%05d', i) || CASE WHEN i % 100 = 7 THEN '-plugin' ELSE '' END,
               i % 10 = 0 OR i % 100 = 7
        FROM seq)
    INSERT INTO projects (ecosystem, name, display_name, fetched_at, cached_files, cached_bytes, last_access)
    SELECT 'pypi', name, name, ?2, cached, CASE WHEN cached THEN 1000 + i ELSE 0 END,
           CASE WHEN cached THEN ?2 - 3600 - i END
    FROM gen";

/// One listed file per cached project, so the listing's file counts have rows to count.
const SEED_FILES: &str = "
    INSERT INTO files (project_id, index_id, filename, url, sha256, size)
    SELECT id, ?1, name || '-1.0.tar.gz', 'http://127.0.0.1:9/files/' || name || '-1.0.tar.gz',
           printf('%064x', id), cached_bytes
    FROM projects WHERE cached_files > 0";

fn seeded(path: &Path) -> Catalogue {
    drop(Catalogue::open(path).expect("open and migrate the catalogue"));
    let mut conn = Connection::open(path).expect("open the catalogue");
    let tx = conn.transaction().expect("transaction");
    tx.execute(SEED, params![PROJECTS, NOW]).expect("seed projects");
    let index_id: i64 = tx
        .query_row(
            "INSERT INTO indexes (ecosystem, url, ttl_secs) VALUES ('pypi', 'http://127.0.0.1:9/simple/', 600)
             RETURNING id",
            [],
            |row| row.get(0),
        )
        .expect("seed an index");
    tx.execute(SEED_FILES, params![index_id]).expect("seed files");
    tx.commit().expect("commit");
    Catalogue::open(path).expect("reopen the catalogue")
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let catalogue = seeded(&dir.path().join("catalogue.sqlite3"));
    let cases: [(&str, &str, ProjectSort, u64, u64); 6] = [
        // (name, fragment, sort, page, projects the fragment matches)
        ("by_name_page_1", "", ProjectSort::Name, 1, 100_000),
        (
            "fragment_1_percent_by_name",
            "plugin",
            ProjectSort::Name,
            1,
            1_000,
        ),
        ("by_size_page_1", "", ProjectSort::CachedSize, 1, 100_000),
        ("by_last_access_page_1", "", ProjectSort::LastAccess, 1, 100_000),
        (
            "fragment_matching_nothing",
            "no-such-fragment",
            ProjectSort::Name,
            1,
            0,
        ),
        ("by_name_page_2000", "", ProjectSort::Name, 2_000, 100_000),
    ];
    let mut group = c.benchmark_group("catalogue_search_100000_projects");
    for (name, contains, sort, page, matching) in cases {
        let query = ProjectQuery {
            ecosystem: Ecosystem::Pypi,
            contains,
            sort,
            offset: (page - 1) * PAGE,
            limit: PAGE,
        };
        // Each case answers what the seeding says, so a broken query cannot time well.
        let listing = catalogue.search_projects(&query).expect("search");
        assert_eq!(listing.total, matching, "{name}");
        assert_eq!(listing.projects.len() as u64, matching.min(PAGE), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| catalogue.search_projects(black_box(&query)).expect("search"))
        });
    }
    group.finish();
}

criterion_group!(catalogue_search, benches);
criterion_main!(catalogue_search);
