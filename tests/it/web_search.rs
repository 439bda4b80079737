//! The package list over a catalogue of 100,000 projects: search, both usage sorts and the last
//! page answer what a model of the seeded rows says, and every listing's query plan reads an
//! index in order (no sort step over all matching rows).
//!
//! The catalogue is seeded before the server starts: `Catalogue::open` runs the migrations, then
//! one recursive-CTE insert writes the generated projects with their usage columns set directly,
//! and two projects get real files and blobs whose usage migration 0004's triggers compute.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pkgmirror::ecosystem::Ecosystem;
use pkgmirror::storage::Catalogue;
use pkgmirror::storage::browse::{ProjectQuery, ProjectSort};
use pkgmirror::storage::data_dir::{BLOBS_DIR, CATALOGUE_FILE};
use rusqlite::{Connection, params};

use crate::support::fixtures::{payload, sha256_hex};
use crate::support::web::{Browser, Page, assert_ui_page, listed, row_linking, text_of};
use crate::support::*;

/// Generated projects; with the two special ones the catalogue holds 100,000.
const GENERATED: i64 = 99_998;
const PROJECTS: usize = 100_000;
const PAGE: usize = 50;

/// One project as the listing should show it.
#[derive(Debug, Clone)]
struct Model {
    name: String,
    display: String,
    cached_bytes: i64,
    last_access: Option<i64>,
}

/// Generated project `i` is `tool-00042`; every hundredth (i % 100 == 7) is `tool-00007-plugin`,
/// so "plugin" matches 1 % of the catalogue. One in ten (and every plugin) has files cached:
/// 1000 + i bytes, last read 3600 + i seconds ago.
fn generated(i: i64, now: i64) -> Model {
    let name = if i % 100 == 7 {
        format!("tool-{i:05}-plugin")
    } else {
        format!("tool-{i:05}")
    };
    let cached = i % 10 == 0 || i % 100 == 7;
    Model {
        display: name.clone(),
        name,
        cached_bytes: if cached { 1_000 + i } else { 0 },
        last_access: cached.then_some(now - 3_600 - i),
    }
}

/// The same rows, written by SQLite itself (one statement, so seeding stays fast in debug builds).
const INSERT_GENERATED: &str = "
    WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?1),
    gen(i, name, cached) AS (
        SELECT i, printf('tool-%05d', i) || CASE WHEN i % 100 = 7 THEN '-plugin' ELSE '' END,
               i % 10 = 0 OR i % 100 = 7
        FROM seq)
    INSERT INTO projects (ecosystem, name, display_name, fetched_at, cached_files, cached_bytes, last_access)
    SELECT 'pypi', name, name, ?2, cached, CASE WHEN cached THEN 1000 + i ELSE 0 END,
           CASE WHEN cached THEN ?2 - 3600 - i END
    FROM gen";

/// A project with real file rows and stored blobs: (name, display, files as (filename, size or
/// `None` when not cached), seconds since its blobs were last read).
type Special = (
    &'static str,
    &'static str,
    &'static [(&'static str, Option<usize>)],
    i64,
);

const SPECIALS: [Special; 2] = [
    // The most bytes cached.
    (
        "heavy-hitter",
        "Heavy-Hitter",
        &[
            ("heavy_hitter-1.0.tar.gz", Some(256_000)),
            ("heavy_hitter-2.0.tar.gz", Some(256_000)),
            ("heavy_hitter-3.0.tar.gz", None),
        ],
        100,
    ),
    // Read most recently.
    (
        "fresh-one",
        "fresh-one",
        &[("fresh_one-0.1.tar.gz", Some(1_000))],
        5,
    ),
];

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Seeds `data_dir`'s catalogue (and the blobs of the special projects); returns the model.
fn seed(data_dir: &Path, now: i64) -> Vec<Model> {
    let path = data_dir.join(CATALOGUE_FILE);
    drop(Catalogue::open(&path).expect("open and migrate the catalogue"));
    let mut conn = Connection::open(&path).unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute(INSERT_GENERATED, params![GENERATED, now]).unwrap();
    let index_id: i64 = tx
        .query_row(
            "INSERT INTO indexes (ecosystem, url, ttl_secs) VALUES ('pypi', 'http://127.0.0.1:9/simple/', 600)
             RETURNING id",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let blobs = data_dir.join(BLOBS_DIR).join("sha256");
    let mut model: Vec<Model> = (0..GENERATED).map(|i| generated(i, now)).collect();
    for (seed, (name, display, files, idle)) in (70u8..).zip(SPECIALS) {
        let project_id: i64 = tx
            .query_row(
                "INSERT INTO projects (ecosystem, name, display_name, fetched_at) VALUES ('pypi', ?1, ?2, ?3)
                 RETURNING id",
                params![name, display, now],
                |row| row.get(0),
            )
            .unwrap();
        let mut cached_bytes = 0;
        for (n, (filename, size)) in (0u8..).zip(files) {
            let bytes = payload(size.unwrap_or(100), seed.wrapping_add(n * 16));
            let sha = sha256_hex(&bytes);
            tx.execute(
                "INSERT INTO files (project_id, index_id, filename, version, url, sha256, size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    project_id,
                    index_id,
                    filename,
                    filename.split('-').nth(1).unwrap().trim_end_matches(".tar.gz"),
                    format!("http://127.0.0.1:9/files/{filename}"),
                    sha,
                    bytes.len() as i64
                ],
            )
            .unwrap();
            if size.is_some() {
                // The blob row last: its insert trigger counts it for every project listing it.
                let dir = blobs.join(&sha[..2]).join(&sha[2..4]);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(&sha), &bytes).unwrap();
                tx.execute(
                    "INSERT INTO blobs (sha256, size, store, created_at, last_access, hits)
                     VALUES (?1, ?2, 'local', ?3, ?4, 1)",
                    params![sha, bytes.len() as i64, now - 7_200, now - idle],
                )
                .unwrap();
                cached_bytes += bytes.len() as i64;
            }
        }
        model.push(Model {
            name: name.to_owned(),
            display: display.to_owned(),
            cached_bytes,
            last_access: Some(now - idle),
        });
    }
    tx.commit().unwrap();

    // The seeding holds what the model says, the triggers' figures included.
    let (count, bytes, plugins): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(cached_bytes), sum(instr(name, 'plugin') > 0) FROM projects",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!(count as usize, PROJECTS);
    assert_eq!(bytes, model.iter().map(|m| m.cached_bytes).sum::<i64>());
    assert_eq!(plugins, 1_000);
    let heavy: (i64, i64, Option<i64>) = conn
        .query_row(
            "SELECT cached_files, cached_bytes, last_access FROM projects WHERE name = 'heavy-hitter'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!(heavy, (2, 512_000, Some(now - 100)), "migration 0004's triggers");
    model
}

/// The model's listing: projects whose name contains `fragment`, in `sort` order.
fn expected(model: &[Model], fragment: &str, sort: ProjectSort) -> Vec<Model> {
    let mut rows: Vec<Model> = model
        .iter()
        .filter(|m| m.name.contains(fragment))
        .cloned()
        .collect();
    match sort {
        ProjectSort::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        ProjectSort::CachedSize => {
            rows.sort_by(|a, b| b.cached_bytes.cmp(&a.cached_bytes).then(a.name.cmp(&b.name)))
        }
        // `Option`'s order puts `None` first, so descending puts never-read projects last.
        ProjectSort::LastAccess => {
            rows.sort_by(|a, b| b.last_access.cmp(&a.last_access).then(a.name.cmp(&b.name)))
        }
    }
    rows
}

fn displays(rows: &[Model]) -> Vec<String> {
    rows.iter().map(|m| m.display.clone()).collect()
}

/// The index each sort must read the projects table by.
fn index_for(sort: ProjectSort) -> &'static str {
    match sort {
        ProjectSort::Name => "sqlite_autoindex_projects_1",
        ProjectSort::LastAccess => "projects_by_last_access",
        ProjectSort::CachedSize => "projects_by_cached_bytes",
    }
}

const SORTS: [ProjectSort; 3] = [
    ProjectSort::Name,
    ProjectSort::LastAccess,
    ProjectSort::CachedSize,
];

fn check_query_plans(data_dir: &Path) {
    let catalogue = Catalogue::open(&data_dir.join(CATALOGUE_FILE)).unwrap();
    for sort in SORTS {
        for contains in ["", "plugin"] {
            let plan = catalogue
                .search_plan(&ProjectQuery {
                    ecosystem: Ecosystem::Pypi,
                    contains,
                    sort,
                    offset: 0,
                    limit: PAGE as u64,
                })
                .unwrap();
            println!("query plan, sort={} q={contains:?}:", sort.as_str());
            for step in &plan {
                println!("    {step}");
            }
            let shown = plan.join("; ");
            assert!(!shown.contains("TEMP B-TREE"), "a sort step: {shown}");
            // The step that reads `projects` itself, not the file-count subquery's.
            let read = plan
                .iter()
                .find(|step| step.starts_with("SCAN projects") || step.starts_with("SEARCH projects"))
                .unwrap_or_else(|| panic!("no step reads projects: {shown}"));
            let index = index_for(sort);
            assert!(
                read.contains(&format!("USING INDEX {index}"))
                    || read.contains(&format!("USING COVERING INDEX {index}")),
                "sort={} reads projects without {index}: {shown}",
                sort.as_str()
            );
        }
    }
}

/// GETs a package list page and checks it shows `rows` (the model's page) and `count`.
async fn check_listing(b: &mut Browser, path: &str, count: &str, rows: &[Model]) -> Page {
    let started = Instant::now();
    let page = b.get(path).await;
    println!("GET {path}: {} ms", started.elapsed().as_millis());
    assert_eq!(page.status, 200, "{path}:\n{}", page.body);
    assert_eq!(text_of(&page.body, "id=\"count\""), count, "{path}");
    assert_eq!(listed(&page), displays(rows), "{path}");
    page
}

#[tokio::test]
async fn search_over_100000_projects_reads_indexes_and_pages_to_the_end() {
    let dir = temp_dir();
    let now = unix_now();
    let started = Instant::now();
    let model = seed(dir.path(), now);
    println!(
        "seeded {PROJECTS} projects in {} ms",
        started.elapsed().as_millis()
    );
    check_query_plans(dir.path());

    let server = Server::start(dir.path(), &Launch::default());
    let mut b = Browser::new(&server);

    let by_name = expected(&model, "", ProjectSort::Name);
    let first = check_listing(&mut b, "/packages", "100000 projects known", &by_name[..PAGE]).await;
    assert_ui_page(&first, "100,000 projects");
    assert!(first.body.contains("1–50 of 100000"), "{}", first.body);

    // The last page, and one past it.
    let last = check_listing(
        &mut b,
        "/packages?page=2000",
        "100000 projects known",
        &by_name[PROJECTS - PAGE..],
    )
    .await;
    assert!(last.body.contains("99951–100000 of 100000"), "{}", last.body);
    assert!(
        last.body
            .contains("<a rel=\"prev\" href=\"/packages?page=1999\">")
    );
    assert!(!last.body.contains("rel=\"next\""));
    assert_eq!(
        listed(&last).last().map(String::as_str),
        Some("tool-99997"),
        "the model's last name"
    );

    // Usage sorts: the triggers' projects lead, then the generated ones in the model's order.
    let by_size = expected(&model, "", ProjectSort::CachedSize);
    assert_eq!(by_size[0].name, "heavy-hitter");
    let page = check_listing(
        &mut b,
        "/packages?sort=size",
        "100000 projects known",
        &by_size[..PAGE],
    )
    .await;
    let heavy = row_linking(&page.body, "Heavy-Hitter");
    assert!(
        heavy.contains("<td class=\"num optional\">3</td><td class=\"num\">2</td>"),
        "{heavy}"
    );
    assert!(heavy.contains("<td class=\"num\">500.0 KiB</td>"), "{heavy}");
    assert_eq!(listed(&page)[1], "tool-99990");
    check_listing(
        &mut b,
        "/packages?sort=size&page=2000",
        "100000 projects known",
        &by_size[PROJECTS - PAGE..],
    )
    .await;
    let by_access = expected(&model, "", ProjectSort::LastAccess);
    assert_eq!(
        displays(&by_access[..3]),
        ["fresh-one", "Heavy-Hitter", "tool-00000"]
    );
    check_listing(
        &mut b,
        "/packages?sort=last_access",
        "100000 projects known",
        &by_access[..PAGE],
    )
    .await;

    // A fragment matching 1 %, in each order, to its last page.
    let plugin_count = "1000 projects whose name contains “plugin”";
    for (sort, query) in [
        (ProjectSort::Name, ""),
        (ProjectSort::CachedSize, "&sort=size"),
        (ProjectSort::LastAccess, "&sort=last_access"),
    ] {
        let rows = expected(&model, "plugin", sort);
        assert_eq!(rows.len(), 1_000);
        check_listing(
            &mut b,
            &format!("/packages?q=plugin{query}"),
            plugin_count,
            &rows[..PAGE],
        )
        .await;
        let end = check_listing(
            &mut b,
            &format!("/packages?q=plugin{query}&page=20"),
            plugin_count,
            &rows[1_000 - PAGE..],
        )
        .await;
        assert!(!end.body.contains("rel=\"next\""));
    }
    assert_eq!(
        displays(&expected(&model, "plugin", ProjectSort::CachedSize)[..1]),
        ["tool-99907-plugin"]
    );

    // A fragment as typed: normalized before it is matched.
    let rows = expected(&model, "tool-999", ProjectSort::Name);
    assert_eq!(rows.len(), 98);
    assert_eq!(rows[0].name, "tool-99900");
    check_listing(
        &mut b,
        "/packages?q=Tool_999",
        "98 projects whose name contains “Tool_999”",
        &rows[..PAGE],
    )
    .await;
    // The worst case: nothing matches, so every row is read.
    let none = check_listing(
        &mut b,
        "/packages?q=no-such-fragment",
        "0 projects whose name contains “no-such-fragment”",
        &[],
    )
    .await;
    assert!(none.body.contains("id=\"no-results\""));

    // A seeded project's own page: its files, two of them cached.
    let project = b.get("/packages/pypi/heavy-hitter").await;
    assert_eq!(project.status, 200, "{}", project.body);
    assert_eq!(
        project
            .body
            .matches("<span class=\"badge cached\">cached</span>")
            .count(),
        2
    );
    assert_eq!(
        project
            .body
            .matches("<span class=\"muted\">not cached</span>")
            .count(),
        1
    );
    println!("whole test: {} ms", started.elapsed().as_millis());
}
