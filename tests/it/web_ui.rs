//! The web UI over HTTP against the real binary: the pages and their security headers, the
//! static assets, search, sort and paging, the project page, admin sign-in (CSRF, token, rate
//! limit) and every admin action with its real effect on the cache, and error pages for browsers.
//! `browser.rs` drives the same UI in Chromium; this file checks what a browser cannot show.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::fixtures::{json_list, payload, sha256_hex};
use crate::support::web::*;
use crate::support::*;

/// The home page's setup snippets, by id.
const SNIPPETS: [&str; 6] = ["pip", "pip-flag", "uv-env", "uv-toml", "poetry", "pdm"];
/// Every admin action, each a form posted to `/admin/{action}`.
const ACTIONS: [&str; 6] = [
    "refresh-project",
    "forget-project",
    "forget-list",
    "forget-all",
    "evict-file",
    "gc",
];

/// GETs `path` until `done` holds for its body (the catalogue records a stored file just after
/// the download's response ends).
async fn eventually(b: &mut Browser, path: &str, what: &str, done: impl Fn(&str) -> bool) -> Page {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page = b.get(path).await;
        if page.status == 200 && done(&page.body) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}; GET {path} answered {}:\n{}",
            page.status,
            page.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Mirrors to test

/// Serves `files` (name, bytes) from `index` and lists them on `project`'s page, named `display`.
fn publish_project(index: &FakeIndex, project: &str, display: &str, files: &[(&str, &[u8])]) {
    let listed: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, body)| {
            index.file(
                &format!("/files/{name}"),
                "application/octet-stream",
                body.to_vec(),
            );
            json!({
                "filename": name,
                "url": format!("http://{}/files/{name}", index.addr),
                "hashes": {"sha256": sha256_hex(body)},
                "size": body.len(),
            })
        })
        .collect();
    index.json(
        &format!("{project}/"),
        &json!({"meta": {"api-version": "1.1"}, "name": display, "files": listed}),
    );
}

/// A server on a fresh data dir with `index` as its upstream and `env` on top.
fn start(index: &FakeIndex, env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let dir = temp_dir();
    let mut launch = Launch::with_upstreams(&[&index.url()], "10m");
    launch.env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    for (key, value) in env {
        launch.env(key, value);
    }
    let server = Server::start(dir.path(), &launch);
    (dir, server)
}

/// GETs a file through the mirror; returns its X-Cache and bytes.
async fn download(server: &Server, path: &str) -> (String, Vec<u8>) {
    let response = client().get(server.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    let cache = header(&response, "x-cache").to_owned();
    (cache, response.bytes().await.unwrap().to_vec())
}

/// The file of the admin tests: `demo-pkg` lists one sdist, and the project list names it.
const ADMIN_FILE: &str = "demo_pkg-1.0.tar.gz";

fn admin_fixture() -> (FakeIndex, Vec<u8>) {
    let index = FakeIndex::start();
    let body = payload(20 * 1024, 40);
    publish_project(&index, "demo-pkg", "demo-pkg", &[(ADMIN_FILE, &body)]);
    index.json("", &json_list(&["demo-pkg"]));
    (index, body)
}

/// Caches the list, demo-pkg's page and its file, each fetched upstream once.
async fn warm(server: &Server, index: &FakeIndex) {
    get_json(&server.url("/simple/")).await;
    get_json(&server.url("/simple/demo-pkg/")).await;
    download(server, &format!("/simple/demo-pkg/{ADMIN_FILE}")).await;
    assert_eq!(
        (
            index.hits(""),
            index.hits("demo-pkg/"),
            index.hits_of(&format!("/files/{ADMIN_FILE}"))
        ),
        (1, 1, 1)
    );
}

// ---------------------------------------------------------------------------------------------
// Home

#[tokio::test]
async fn home_page_is_secure_and_points_clients_at_this_server() {
    let index = FakeIndex::start();
    let body = payload(12 * 1024, 41);
    publish_project(&index, "demo-pkg", "Demo_Pkg", &[("demo_pkg-1.0.tar.gz", &body)]);
    let (_dir, server) = start(&index, &[]);
    let mut b = Browser::new(&server);

    let home = b.get("/").await;
    assert_eq!(home.status, 200);
    assert_ui_page(&home, "home");
    assert!(
        !home.body.contains("id=\"no-upstream\""),
        "an upstream is configured"
    );
    let index_url = format!("{}/simple/", server.base);
    assert!(
        home.body.contains(&format!("<code>{index_url}</code>")),
        "{}",
        home.body
    );
    for id in SNIPPETS {
        let text = snippet(&home.body, id);
        assert!(text.contains(&index_url), "{id}: {text}");
        assert!(
            !text.contains("trusted-host"),
            "pip trusts 127.0.0.1 already: {text}"
        );
    }
    assert_eq!(
        snippet(&home.body, "pip"),
        format!("[global]\nindex-url = {index_url}")
    );
    assert_eq!(
        snippet(&home.body, "uv-toml"),
        format!("[[index]]\nurl = \"{index_url}\"\ndefault = true")
    );
    assert!(home.body.contains("Nothing has been downloaded yet."));

    // A download shows up in the recent downloads, linked to its project.
    get_json(&server.url("/simple/demo-pkg/")).await;
    assert_eq!(
        download(&server, "/simple/demo-pkg/demo_pkg-1.0.tar.gz").await.1,
        body
    );
    let home = eventually(&mut b, "/", "the download is listed", |page| {
        page.contains(">demo_pkg-1.0.tar.gz</td>")
    })
    .await;
    let recent = &home.body[home.body.find("<section id=\"recent\">").unwrap()..];
    let recent = &recent[..recent.find("</section>").unwrap()];
    assert!(
        recent.contains("<td class=\"mono\">demo_pkg-1.0.tar.gz</td>"),
        "{recent}"
    );
    assert_eq!(
        links(recent, "")
            .first()
            .map(|(href, text)| (href.as_str(), text.as_str())),
        Some(("/packages/pypi/demo-pkg", "demo-pkg")),
        "{recent}"
    );
    assert!(!home.body.contains("Nothing has been downloaded yet."));
}

#[tokio::test]
async fn home_page_setup_snippets_use_the_public_url() {
    let index = FakeIndex::start();
    let (_dir, server) = start(
        &index,
        &[
            ("PKGMIRROR__SERVER__PUBLIC_URL", "https://mirror.example.test/"),
            ("PKGMIRROR__SERVER__ADMIN_TOKEN", TOKEN),
        ],
    );
    let home = Browser::new(&server).get("/").await;
    assert_eq!(home.status, 200);
    let address = server.base.trim_start_matches("http://");
    for id in SNIPPETS {
        let text = snippet(&home.body, id);
        assert!(
            text.contains("https://mirror.example.test/simple/"),
            "{id}: {text}"
        );
        assert!(!text.contains(address), "{id} names the listen address: {text}");
        assert!(
            !text.contains("trusted-host"),
            "{id}: https needs no trust: {text}"
        );
    }
    assert_eq!(
        snippet(&home.body, "pip-flag"),
        "pip install --index-url https://mirror.example.test/simple/ <package>"
    );

    // Plain http to a host that is not loopback: pip must be told to trust it.
    let (_dir, server) = start(
        &index,
        &[
            ("PKGMIRROR__SERVER__PUBLIC_URL", "http://mirror.example.test:8080"),
            ("PKGMIRROR__SERVER__ADMIN_TOKEN", TOKEN),
        ],
    );
    let home = Browser::new(&server).get("/").await;
    assert_eq!(
        snippet(&home.body, "pip"),
        "[global]\nindex-url = http://mirror.example.test:8080/simple/\ntrusted-host = mirror.example.test"
    );
    assert!(
        snippet(&home.body, "pip-flag").ends_with(" --trusted-host mirror.example.test <package>"),
        "{}",
        snippet(&home.body, "pip-flag")
    );
}

#[tokio::test]
async fn home_page_without_an_upstream_says_so() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::default());
    let home = Browser::new(&server).get("/").await;
    assert_eq!(home.status, 200);
    assert_ui_page(&home, "home without upstream");
    let banner = text_of(&home.body, "id=\"no-upstream\"");
    assert!(banner.starts_with("No upstream is configured"), "{banner}");
    assert!(!home.body.contains("id=\"healthy\""));
}

// ---------------------------------------------------------------------------------------------
// Static assets

#[tokio::test]
async fn static_assets_are_immutable_under_hashed_names_and_revalidated_under_plain_ones() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::default());
    let home = Browser::new(&server).get("/").await;
    let style = attr_values(&home.body, "<link rel=\"stylesheet\" href=\"")
        .pop()
        .expect("the stylesheet link");
    let script = attr_values(&home.body, "<script src=\"")
        .pop()
        .expect("the script");
    let icon = attr_values(&home.body, "<link rel=\"icon\" type=\"image/svg+xml\" href=\"")
        .pop()
        .expect("the icon link");
    let css_source = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/static/style.css")).unwrap();
    let hash = style
        .strip_prefix("/static/style.")
        .and_then(|rest| rest.strip_suffix(".css"))
        .unwrap_or_else(|| panic!("not a hashed stylesheet name: {style}"));
    assert_eq!(hash.len(), 16, "{style}");
    assert!(hash.bytes().all(|c| c.is_ascii_hexdigit()), "{style}");
    assert_eq!(
        hash,
        &sha256_hex(&css_source)[..16],
        "the name carries the content hash"
    );

    let c = client();
    let hashed = c.get(server.url(&style)).send().await.unwrap();
    assert_eq!(hashed.status(), 200);
    assert_eq!(
        header(&hashed, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert!(header(&hashed, "content-type").starts_with("text/css"));
    assert_eq!(header(&hashed, "x-content-type-options"), "nosniff");
    let etag = header(&hashed, "etag").to_owned();
    assert_eq!(etag, format!("\"{hash}\""));
    assert_eq!(hashed.bytes().await.unwrap(), css_source);

    let again = c
        .get(server.url(&style))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag"), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let changed = c
        .get(server.url(&style))
        .header("If-None-Match", "\"0000000000000000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200, "another ETag gets the bytes");

    let plain = c.get(server.url("/static/style.css")).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(header(&plain, "cache-control"), "no-cache");
    assert_eq!(header(&plain, "etag"), etag);
    assert_eq!(plain.bytes().await.unwrap(), css_source);
    let plain_again = c
        .get(server.url("/static/style.css"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(plain_again.status(), 304);

    let head = c.head(server.url(&style)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
    for (url, content_type) in [(&script, "text/javascript"), (&icon, "image/svg+xml")] {
        let response = c.get(server.url(url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert!(
            header(&response, "content-type").starts_with(content_type),
            "{url}"
        );
        assert!(header(&response, "cache-control").contains("immutable"), "{url}");
    }
    for unknown in [
        "/static/nope.css",
        "/static/style.0000000000000000.css",
        "/static/..%2Fstyle.css",
    ] {
        let response = c.get(server.url(unknown)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{unknown}");
    }
}

// ---------------------------------------------------------------------------------------------
// The package list

#[tokio::test]
async fn package_search_matches_a_normalized_name_fragment() {
    let index = FakeIndex::start();
    publish_project(&index, "demo-pkg", "Demo_Pkg", &[]);
    publish_project(&index, "other-tool", "other-tool", &[]);
    let (_dir, server) = start(&index, &[]);
    for project in ["demo-pkg", "other-tool"] {
        get_json(&server.url(&format!("/simple/{project}/"))).await;
    }
    let mut b = Browser::new(&server);

    let all = b.get("/packages").await;
    assert_ui_page(&all, "packages");
    assert_eq!(text_of(&all.body, "id=\"count\""), "2 projects known");
    assert_eq!(listed(&all), ["Demo_Pkg", "other-tool"]);

    // "Demo_P" normalizes to "demo-p": a substring of demo-pkg only.
    let found = b.get("/packages?q=Demo_P").await;
    assert_eq!(found.status, 200);
    assert_ui_page(&found, "search");
    assert_eq!(
        text_of(&found.body, "id=\"count\""),
        "1 project whose name contains “Demo_P”"
    );
    assert_eq!(
        links(&found.body, "class=\"project-link\""),
        [("/packages/pypi/demo-pkg".to_owned(), "Demo_Pkg".to_owned())]
    );
    assert_eq!(
        attr_values(
            &found.body,
            "id=\"search-q\" name=\"q\" type=\"search\" placeholder=\"Search packages\" value=\""
        ),
        ["Demo_P"]
    );
    // Trimmed, then normalized: "R.T" finds other-tool.
    let spaced = b.get("/packages?q=%20%20R.T%20").await;
    assert_eq!(listed(&spaced), ["other-tool"]);
    assert_eq!(
        text_of(&spaced.body, "id=\"count\""),
        "1 project whose name contains “R.T”"
    );

    let none = b.get("/packages?q=zzz").await;
    assert_eq!(none.status, 200);
    assert_eq!(
        text_of(&none.body, "id=\"count\""),
        "0 projects whose name contains “zzz”"
    );
    assert!(none.body.contains("id=\"no-results\""));
    assert!(listed(&none).is_empty());

    // Markup in a search is shown as text, never as markup.
    let hostile = b.get("/packages?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(hostile.status, 200);
    assert_ui_page(&hostile, "hostile search");
    assert_eq!(
        text_of(&hostile.body, "id=\"count\""),
        "0 projects whose name contains “<script>alert(1)</script>”"
    );
    assert!(!hostile.body.contains("<script>alert"), "{}", hostile.body);
}

#[tokio::test]
async fn package_list_refuses_an_unknown_sort_with_an_html_page() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::default());
    let page = Browser::new(&server).get("/packages?sort=popularity").await;
    assert_error_page(
        &page,
        400,
        "cannot sort by 'popularity': use name, last_access or size",
        "bad sort",
    );
}

#[tokio::test]
async fn package_list_sorts_by_cached_size_and_last_access() {
    let index = FakeIndex::start();
    let small = payload(4 * 1024, 42);
    let (big_a, big_b) = (payload(30 * 1024, 43), payload(30 * 1024, 44));
    publish_project(
        &index,
        "alpha-web",
        "alpha-web",
        &[("alpha_web-1.0.tar.gz", &small)],
    );
    publish_project(
        &index,
        "beta-web",
        "beta-web",
        &[("beta_web-1.0.tar.gz", &big_a), ("beta_web-2.0.tar.gz", &big_b)],
    );
    publish_project(&index, "gamma-web", "gamma-web", &[]);
    let (_dir, server) = start(&index, &[]);
    for project in ["alpha-web", "beta-web", "gamma-web"] {
        get_json(&server.url(&format!("/simple/{project}/"))).await;
    }
    // beta-web's two files first, then, a second later (access times are in seconds), alpha-web's.
    download(&server, "/simple/beta-web/beta_web-1.0.tar.gz").await;
    download(&server, "/simple/beta-web/beta_web-2.0.tar.gz").await;
    let mut b = Browser::new(&server);
    eventually(&mut b, "/packages", "beta-web's files are recorded", |body| {
        body.contains("<td class=\"num\">2</td>")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    download(&server, "/simple/alpha-web/alpha_web-1.0.tar.gz").await;

    let by_size = eventually(&mut b, "/packages?sort=size", "every file is counted", |body| {
        body.contains("<td class=\"num\">2</td>") && body.contains("<td class=\"num\">1</td>")
    })
    .await;
    assert_eq!(listed(&by_size), ["beta-web", "alpha-web", "gamma-web"]);
    assert!(
        by_size
            .body
            .contains("<a href=\"/packages?sort=size\" aria-current=\"true\">cached size</a>"),
        "{}",
        by_size.body
    );
    assert!(
        row_linking(&by_size.body, "beta-web").contains("<td class=\"num\">60.0 KiB</td>"),
        "{}",
        by_size.body
    );
    let by_access = b.get("/packages?sort=last_access").await;
    assert_eq!(listed(&by_access), ["alpha-web", "beta-web", "gamma-web"]);
    assert!(row_linking(&by_access.body, "gamma-web").contains("<td class=\"num optional\">—</td>"));
    let by_name = b.get("/packages?sort=name").await;
    assert_eq!(listed(&by_name), ["alpha-web", "beta-web", "gamma-web"]);
    // A search keeps its sort, and each sort link keeps the search.
    let search = b.get("/packages?q=a-w&sort=last_access").await;
    assert_eq!(listed(&search), ["alpha-web", "beta-web", "gamma-web"]);
    let sort_links = links(&search.body, "");
    for (href, label) in [
        ("/packages?q=a-w", "name"),
        ("/packages?q=a-w&sort=last_access", "last access"),
        ("/packages?q=a-w&sort=size", "cached size"),
    ] {
        assert!(
            sort_links.contains(&(href.to_owned(), label.to_owned())),
            "no link {href}: {sort_links:?}"
        );
    }
}

#[tokio::test]
async fn package_list_pages_fifty_projects_at_a_time() {
    let index = FakeIndex::start();
    let names: Vec<String> = (0..53).map(|i| format!("paged-{i:02}")).collect();
    for name in &names {
        publish_project(&index, name, name, &[]);
    }
    let (_dir, server) = start(&index, &[]);
    for name in &names {
        get_json(&server.url(&format!("/simple/{name}/"))).await;
    }
    let mut b = Browser::new(&server);

    let first = b.get("/packages").await;
    assert_eq!(text_of(&first.body, "id=\"count\""), "53 projects known");
    assert_eq!(listed(&first), names[..50]);
    assert!(first.body.contains("1–50 of 53"), "{}", first.body);
    assert!(!first.body.contains("rel=\"prev\""));
    assert_eq!(
        attr_values(&first.body, "<a rel=\"next\" href=\""),
        ["/packages?page=2"]
    );

    let second = b.get("/packages?page=2").await;
    assert_eq!(second.status, 200);
    assert_eq!(listed(&second), names[50..]);
    assert!(second.body.contains("51–53 of 53"), "{}", second.body);
    assert_eq!(
        attr_values(&second.body, "<a rel=\"prev\" href=\""),
        ["/packages"]
    );
    assert!(!second.body.contains("rel=\"next\""));

    // The pager keeps the search and the sort.
    let sorted = b.get("/packages?q=paged&sort=size").await;
    assert_eq!(listed(&sorted), names[..50], "equal sizes fall back to the name");
    assert_eq!(
        attr_values(&sorted.body, "<a rel=\"next\" href=\""),
        ["/packages?q=paged&sort=size&page=2"]
    );
    let page_zero = b.get("/packages?page=0").await;
    assert_eq!(listed(&page_zero), names[..50], "page 0 is the first page");
}

/// A page past the end says so and links back to the last page with rows; it claims no rows
/// and does not say the catalogue is empty.
#[tokio::test]
async fn a_page_past_the_end_of_the_package_list_does_not_claim_rows_it_lacks() {
    let index = FakeIndex::start();
    let names: Vec<String> = (0..53).map(|i| format!("paged-{i:02}")).collect();
    for name in &names {
        publish_project(&index, name, name, &[]);
    }
    let (_dir, server) = start(&index, &[]);
    for name in &names {
        get_json(&server.url(&format!("/simple/{name}/"))).await;
    }
    let page = Browser::new(&server).get("/packages?page=3").await;
    assert_eq!(page.status, 200);
    assert!(listed(&page).is_empty());
    assert!(!page.body.contains("53–100 of 53"), "{}", page.body);
    assert!(
        !page.body.contains("No project is in the catalogue"),
        "53 projects are: {}",
        page.body
    );
    assert!(page.body.contains("id=\"past-end\""), "{}", page.body);
    assert!(page.body.contains("href=\"/packages?page=2\""), "{}", page.body);
}

/// Page numbers too large to mean anything (they once overflowed the pager) are refused with
/// the UI's error page; the largest allowed one is an empty page past the end.
#[tokio::test]
async fn an_absurd_page_number_gets_an_answer() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::default());
    let mut b = Browser::new(&server);
    for page in ["18446744073709551615", "368934881474191035", "1000001"] {
        let response = b.get(&format!("/packages?page={page}")).await;
        assert_eq!(response.status, 400, "page={page}");
        assert_ui_page(&response, &format!("page={page}"));
        assert!(
            response.body.contains("is not a page number"),
            "{}",
            response.body
        );
    }
    assert_eq!(b.get("/packages?page=1000000").await.status, 200);
}

/// A malformed page number gets the UI's error page (not the extractor's plain-text 400).
#[tokio::test]
async fn a_malformed_page_number_gets_the_ui_error_page() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::default());
    let page = Browser::new(&server).get("/packages?page=abc").await;
    assert_eq!(page.status, 400);
    assert_ui_page(&page, "page=abc");
}

// ---------------------------------------------------------------------------------------------
// The project page

#[tokio::test]
async fn project_page_lists_versions_newest_first_with_cache_state_and_mirror_links() {
    let index = FakeIndex::start();
    let files: Vec<(String, Vec<u8>)> = [
        "demo_pkg-1.0.tar.gz",
        "demo_pkg-1.9.tar.gz",
        "demo_pkg-1.10.tar.gz",
        "demo_pkg-2.0rc1.tar.gz",
        "demo_pkg-2.0-py3-none-any.whl",
        "demo_pkg-2.0.tar.gz",
        "demo_pkg-1.0.post1.tar.gz",
    ]
    .iter()
    .zip(50u8..)
    .map(|(name, seed)| ((*name).to_owned(), payload(2048 + usize::from(seed), seed)))
    .collect();
    let listed_files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    publish_project(&index, "demo-pkg", "Demo_Pkg", &listed_files);
    let (_dir, server) = start(&index, &[]);
    let mut b = Browser::new(&server);

    // Unknown until a client asks the mirror for it.
    let unknown = b.get("/packages/pypi/demo-pkg").await;
    assert_error_page(
        &unknown,
        404,
        "project 'demo-pkg' is not in pkgmirror's catalogue",
        "unknown",
    );
    get_json(&server.url("/simple/demo-pkg/")).await;

    let page = b.get("/packages/pypi/demo-pkg").await;
    assert_eq!(page.status, 200);
    assert_ui_page(&page, "project");
    assert_eq!(text_of(&page.body, "<h1"), "Demo_Pkg");
    assert_eq!(
        texts_after(&page.body, "<h3 id=\"v-"),
        ["2.0", "2.0rc1", "1.10", "1.9", "1.0.post1", "1.0"]
    );
    let downloads = links(&page.body, "class=\"download mono\"");
    assert_eq!(downloads.len(), files.len(), "{downloads:?}");
    for (href, filename) in &downloads {
        assert_eq!(
            *href,
            format!("/simple/demo-pkg/{filename}"),
            "through the mirror"
        );
    }
    // Under 2.0 come its wheel and its sdist, in the order the index lists them.
    let v2 =
        &page.body[page.body.find("<h3 id=\"v-1\">").unwrap()..page.body.find("<h3 id=\"v-2\">").unwrap()];
    assert_eq!(
        links(v2, "class=\"download mono\"")
            .into_iter()
            .map(|(_, f)| f)
            .collect::<Vec<_>>(),
        ["demo_pkg-2.0-py3-none-any.whl", "demo_pkg-2.0.tar.gz"]
    );
    assert_eq!(
        page.body
            .matches("<span class=\"muted\">not cached</span>")
            .count(),
        files.len()
    );
    assert!(!page.body.contains("badge cached"));
    assert!(
        page.body
            .contains("<a href=\"/simple/demo-pkg/\">Simple API page</a>")
    );
    assert!(
        page.body
            .contains("<a href=\"/admin?project=demo-pkg\">Manage its cache</a>")
    );

    // The link downloads through the mirror, which then shows the file as cached.
    let (href, _) = downloads
        .iter()
        .find(|(_, f)| f == "demo_pkg-1.9.tar.gz")
        .unwrap();
    let (cache, bytes) = download(&server, href).await;
    assert_eq!(cache, "miss");
    assert_eq!(bytes, files[1].1);
    assert_eq!(index.hits_of("/files/demo_pkg-1.9.tar.gz"), 1);
    let page = eventually(&mut b, "/packages/pypi/demo-pkg", "1.9 is cached", |body| {
        body.contains("badge cached")
    })
    .await;
    assert!(
        row_linking(&page.body, "demo_pkg-1.9.tar.gz").contains("<span class=\"badge cached\">cached</span>"),
        "{}",
        page.body
    );
    assert_eq!(
        page.body
            .matches("<span class=\"muted\">not cached</span>")
            .count(),
        files.len() - 1
    );
    let summary = &page.body[page.body.find("id=\"project-summary\"").unwrap()..];
    assert!(
        summary.starts_with(&format!(
            "id=\"project-summary\">\n  <div class=\"card\"><span class=\"figure\">{}</span>",
            files.len()
        )),
        "{summary}"
    );
    assert!(
        summary.contains("<span class=\"figure\">1</span><span class=\"label\">cached ("),
        "{summary}"
    );
    let (cache, _) = download(&server, href).await;
    assert_eq!(cache, "hit");
    assert_eq!(index.hits_of("/files/demo_pkg-1.9.tar.gz"), 1);
}

/// Links encode a local version's `+` as `%2B` (the UI's and the Simple API's alike), which
/// actix leaves encoded in the path match: the file route must decode it to find the file.
#[tokio::test]
async fn project_page_file_links_with_a_plus_in_the_name_download_through_the_mirror() {
    let index = FakeIndex::start();
    let body = payload(4096, 60);
    let filename = "demo_pkg-2.1.0+cu118-py3-none-any.whl";
    publish_project(&index, "demo-pkg", "demo-pkg", &[(filename, &body)]);
    let (_dir, server) = start(&index, &[]);
    get_json(&server.url("/simple/demo-pkg/")).await;
    let page = Browser::new(&server).get("/packages/pypi/demo-pkg").await;
    assert_eq!(texts_after(&page.body, "<h3 id=\"v-"), ["2.1.0+cu118"]);
    let downloads = links(&page.body, "class=\"download mono\"");
    assert_eq!(downloads.len(), 1, "{}", page.body);
    assert_eq!(downloads[0].1, filename);
    let response = client().get(server.url(&downloads[0].0)).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {}", downloads[0].0);
    assert_eq!(response.bytes().await.unwrap(), body);
}

#[tokio::test]
async fn project_page_redirects_to_the_normalized_name_and_explains_unknown_or_invalid_names() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::default());
    let mut b = Browser::new(&server);
    for raw in ["Demo_Pkg", "demo.pkg", "DEMO--pkg"] {
        let moved = b.get(&format!("/packages/pypi/{raw}")).await;
        assert_eq!(moved.status, 301, "{raw}");
        assert_eq!(moved.header("location"), "/packages/pypi/demo-pkg", "{raw}");
    }

    let unknown = b.get("/packages/pypi/never-asked").await;
    assert_error_page(
        &unknown,
        404,
        "project 'never-asked' is not in pkgmirror's catalogue",
        "unknown project",
    );
    assert_eq!(
        links(&unknown.body, "id=\"search-link\""),
        [(
            "/packages?q=never-asked".to_owned(),
            "Search the cached packages for “never-asked”".to_owned()
        )]
    );
    let search = b.get("/packages?q=never-asked").await;
    assert_eq!(search.status, 200, "the search link works");

    for invalid in ["-bad", "bad-", "bad%21name", "b%C3%A4d"] {
        let page = b.get(&format!("/packages/pypi/{invalid}")).await;
        assert_error_page(&page, 400, "is not a project name", invalid);
    }
    let other = b.get("/packages/npm/left-pad").await;
    assert_error_page(&other, 404, "pkgmirror has no 'npm' packages", "other ecosystem");
}

// ---------------------------------------------------------------------------------------------
// Admin: signing in

#[tokio::test]
async fn admin_sign_in_needs_the_form_cookie_csrf_and_the_token() {
    let (index, _) = admin_fixture();
    let (_dir, server) = start(&index, &[("PKGMIRROR__SERVER__ADMIN_TOKEN", TOKEN)]);
    let mut b = Browser::new(&server);

    let form = b.get("/admin").await;
    assert_eq!(form.status, 200);
    assert_ui_page(&form, "sign-in form");
    assert!(
        form.body
            .contains("<form id=\"signin\" class=\"signin\" method=\"post\" action=\"/admin/sign-in\">")
    );
    assert!(
        !form.body.contains("<form id=\"gc\""),
        "no actions before signing in"
    );
    let signin_cookie = form.set_cookie("pkgmirror_signin").expect("the sign-in cookie");
    assert!(signin_cookie.contains("HttpOnly"), "{signin_cookie}");
    assert!(signin_cookie.contains("SameSite=Strict"), "{signin_cookie}");
    assert!(
        form.set_cookie("pkgmirror_session").is_none(),
        "no session for a visitor"
    );
    let csrf = csrf_of(&form.body);
    assert_eq!(
        b.cookies.get("pkgmirror_signin"),
        Some(&csrf),
        "double submit: form = cookie"
    );
    // A reload keeps the browser's token.
    assert_eq!(csrf_of(&b.get("/admin").await.body), csrf);

    // A form from elsewhere: a CSRF value that is not the cookie's, or no cookie at all.
    let forged = b
        .post("/admin/sign-in", &[("csrf", &"0".repeat(64)), ("token", TOKEN)])
        .await;
    assert_error_page(&forged, 403, "did not come from this site", "wrong csrf");
    assert!(forged.set_cookie("pkgmirror_session").is_none());
    let mut stranger = Browser::new(&server);
    let no_cookie = stranger
        .post("/admin/sign-in", &[("csrf", &csrf), ("token", TOKEN)])
        .await;
    assert_eq!(no_cookie.status, 403);
    assert!(no_cookie.set_cookie("pkgmirror_session").is_none());
    let still_out = b.get("/admin").await;
    assert!(
        still_out.body.contains("<form id=\"signin\""),
        "the forged sign-in made no session"
    );

    let wrong = b
        .post("/admin/sign-in", &[("csrf", &csrf), ("token", "not-the-token")])
        .await;
    assert_eq!(wrong.status, 403);
    assert_ui_page(&wrong, "wrong token");
    assert_eq!(
        text_of(&wrong.body, "<p class=\"error\" role=\"alert\""),
        "That is not the admin token."
    );
    assert!(
        wrong.body.contains("<form id=\"signin\""),
        "the form again, to retry"
    );
    assert!(wrong.set_cookie("pkgmirror_session").is_none());

    let ok = b
        .post("/admin/sign-in", &[("csrf", &csrf), ("token", TOKEN)])
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), "/admin");
    let session = ok.set_cookie("pkgmirror_session").expect("the session cookie");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Strict"), "{session}");
    assert!(session.contains("Path=/"), "{session}");
    let id = b.cookies.get("pkgmirror_session").expect("kept").clone();
    assert_eq!(id.len(), 64);
    assert!(
        !b.cookies.contains_key("pkgmirror_signin"),
        "the sign-in cookie is dropped"
    );

    let admin = b.get("/admin").await;
    assert_eq!(admin.status, 200);
    assert_ui_page(&admin, "admin");
    for action in ACTIONS.iter().chain(&["sign-out"]) {
        assert!(admin.body.contains(&format!("<form id=\"{action}\"")), "{action}");
    }
    assert!(!admin.body.contains("<form id=\"signin\""));
    assert_ne!(csrf_of(&admin.body), csrf);
    assert!(!admin.body.contains(TOKEN), "the token is never shown");
    let log = admin_log(&admin.body);
    assert_eq!(
        log,
        [
            ("sign-in".to_owned(), String::new(), "ok".to_owned()),
            (
                "sign-in".to_owned(),
                String::new(),
                "failed: wrong token".to_owned()
            ),
        ],
        "forged forms are refused before they count as attempts"
    );
    assert!(
        admin
            .body
            .contains("<td class=\"outcome error\">failed: wrong token</td>"),
        "a failure is marked as one"
    );
}

#[tokio::test]
async fn admin_sign_in_is_rate_limited_per_client_address() {
    let (index, _) = admin_fixture();
    let (_dir, server) = start(&index, &[("PKGMIRROR__SERVER__ADMIN_TOKEN", TOKEN)]);
    let mut b = Browser::new(&server);
    let csrf = csrf_of(&b.get("/admin").await.body);
    for attempt in 1..=5 {
        let wrong = b
            .post("/admin/sign-in", &[("csrf", &csrf), ("token", "guess")])
            .await;
        assert_eq!(wrong.status, 403, "attempt {attempt}: {}", wrong.body);
    }
    let limited = b
        .post("/admin/sign-in", &[("csrf", &csrf), ("token", "guess")])
        .await;
    assert_error_page(
        &limited,
        429,
        "too many failed admin attempts from 127.0.0.1",
        "6th attempt",
    );
    let retry_after: u64 = limited
        .header("retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After: {:?}", limited.header("retry-after")));
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Even the right token waits: the limit must not tell a guess from a hit.
    let right = b
        .post("/admin/sign-in", &[("csrf", &csrf), ("token", TOKEN)])
        .await;
    assert_eq!(right.status, 429);
    assert!(right.set_cookie("pkgmirror_session").is_none());
    assert!(b.get("/admin").await.body.contains("<form id=\"signin\""));
}

/// Wrong bearer tokens on the admin API count against the same per-client allowance as UI
/// sign-ins, are written to the admin log, and once over it are answered 429 without a look at
/// the token, with one log row for the refusals rather than one per request.
#[tokio::test]
async fn admin_api_failures_are_limited_with_the_sign_in_and_logged() {
    let (index, _) = admin_fixture();
    let (_dir, server) = start(&index, &[("PKGMIRROR__SERVER__ADMIN_TOKEN", TOKEN)]);
    // Signed in before the guessing starts: reading the log afterwards is no attempt.
    let mut admin = Browser::new(&server);
    sign_in(&mut admin).await;
    let delete = |token: &str| {
        client()
            .delete(server.url("/cache/demo-pkg"))
            .header("Authorization", format!("Bearer {token}"))
            .send()
    };
    for attempt in 1..=4 {
        assert_eq!(delete("guess").await.unwrap().status(), 401, "attempt {attempt}");
    }
    let unsigned = client().delete(server.url("/cache/list")).send().await.unwrap();
    assert_eq!(unsigned.status(), 401, "no token is a failed attempt too");
    for _ in 0..3 {
        let limited = delete("guess").await.unwrap();
        assert_eq!(limited.status(), 429);
        let retry_after: u64 = header(&limited, "retry-after").parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
    }
    let right = delete(TOKEN).await.unwrap();
    assert_eq!(right.status(), 429, "the limit must not tell a guess from a hit");
    let mut b = Browser::new(&server);
    let csrf = csrf_of(&b.get("/admin").await.body);
    let signin = b
        .post("/admin/sign-in", &[("csrf", &csrf), ("token", TOKEN)])
        .await;
    assert_eq!(signin.status, 429, "one allowance for every admin entry point");

    let log = admin_log(&admin.get("/admin").await.body);
    let failed = ("DELETE /cache/demo-pkg", "failed: wrong token");
    // One row for the run of refusals, whichever entry point they came through.
    let expected = [
        ("DELETE /cache/demo-pkg", "refused: too many failed attempts"),
        ("DELETE /cache/list", "failed: no bearer token"),
        failed,
        failed,
        failed,
        failed,
        ("sign-in", "ok"),
    ];
    let log: Vec<(&str, &str)> = log.iter().map(|(a, _, o)| (a.as_str(), o.as_str())).collect();
    assert_eq!(log, expected);
}

// ---------------------------------------------------------------------------------------------
// Admin: actions

#[tokio::test]
async fn admin_actions_need_a_session_and_its_csrf_token() {
    let (index, body) = admin_fixture();
    let (_dir, server) = start(&index, &[("PKGMIRROR__SERVER__ADMIN_TOKEN", TOKEN)]);
    warm(&server, &index).await;
    let mut admin = Browser::new(&server);
    let csrf = sign_in(&mut admin).await;
    let fields = |csrf: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("project".to_owned(), "demo-pkg".to_owned()),
            ("filename".to_owned(), ADMIN_FILE.to_owned()),
        ]
    };

    // Without a session, even with the session's CSRF token.
    let mut anonymous = Browser::new(&server);
    for action in ACTIONS.iter().chain(&["sign-out", "no-such-action"]) {
        let form = fields(&csrf);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let page = anonymous.post(&format!("/admin/{action}"), &form).await;
        assert_error_page(&page, 403, "you are not signed in", action);
    }
    // With the session but another CSRF token (a form posted from another site).
    let wrong = "f".repeat(64);
    for action in ACTIONS.iter().chain(&["sign-out"]) {
        for token in [wrong.as_str(), ""] {
            let form = fields(token);
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let page = admin.post(&format!("/admin/{action}"), &form).await;
            assert_error_page(&page, 403, "CSRF token does not match your session", action);
        }
    }

    // Nothing happened: every page and the file are still cached, the session still works.
    get_json(&server.url("/simple/")).await;
    get_json(&server.url("/simple/demo-pkg/")).await;
    let (cache, bytes) = download(&server, &format!("/simple/demo-pkg/{ADMIN_FILE}")).await;
    assert_eq!((cache.as_str(), bytes == body), ("hit", true));
    assert_eq!(
        (
            index.hits(""),
            index.hits("demo-pkg/"),
            index.hits_of(&format!("/files/{ADMIN_FILE}"))
        ),
        (1, 1, 1),
        "a refused action had an effect"
    );
    let page = admin.get("/admin").await;
    assert!(page.body.contains("<form id=\"gc\""), "still signed in");
    let log = admin_log(&page.body);
    assert_eq!(log.len(), 1, "only the sign-in is logged: {log:?}");
    assert_eq!(log[0].0, "sign-in");

    // A signed-in admin posting an action that does not exist.
    let unknown = admin.post("/admin/no-such-action", &[("csrf", &csrf)]).await;
    assert_error_page(
        &unknown,
        404,
        "there is no admin action 'no-such-action'",
        "unknown action",
    );
}

#[tokio::test]
async fn admin_actions_take_effect_and_are_logged() {
    let (index, body) = admin_fixture();
    let (_dir, server) = start(&index, &[("PKGMIRROR__SERVER__ADMIN_TOKEN", TOKEN)]);
    warm(&server, &index).await;
    let mut b = Browser::new(&server);
    let csrf = sign_in(&mut b).await;
    let file_path = format!("/simple/demo-pkg/{ADMIN_FILE}");
    let file_hits = || index.hits_of(&format!("/files/{ADMIN_FILE}"));

    // forget-project: the next request for the page goes upstream, once.
    let (page, row) = act(
        &mut b,
        &csrf,
        "forget-project",
        &[("project", "Demo_Pkg")],
        "/admin?project=demo-pkg",
    )
    .await;
    assert_eq!(
        row,
        (
            "forget-project".into(),
            "demo-pkg".into(),
            "ok: page cache cleared".into()
        )
    );
    assert_eq!(
        text_of(&page.body, "<p id=\"flash\" class=\"banner ok\""),
        "forget-project demo-pkg: ok: page cache cleared"
    );
    assert_eq!(
        attr_values(
            &page.body,
            "id=\"forget-name\" name=\"project\" required value=\""
        ),
        ["demo-pkg"],
        "the project is filled in again"
    );
    assert!(
        !b.get("/admin").await.body.contains("id=\"flash\""),
        "a flash shows once"
    );
    assert_eq!(index.hits("demo-pkg/"), 1, "forgetting fetches nothing");
    get_json(&server.url("/simple/demo-pkg/")).await;
    assert_eq!(index.hits("demo-pkg/"), 2);
    get_json(&server.url("/simple/demo-pkg/")).await;
    assert_eq!(index.hits("demo-pkg/"), 2, "cached again");

    // forget-list: only the list.
    let (_, row) = act(&mut b, &csrf, "forget-list", &[], "/admin").await;
    assert_eq!(
        row,
        (
            "forget-list".into(),
            String::new(),
            "ok: project list cache cleared".into()
        )
    );
    get_json(&server.url("/simple/")).await;
    get_json(&server.url("/simple/demo-pkg/")).await;
    assert_eq!((index.hits(""), index.hits("demo-pkg/")), (2, 2));

    // forget-all: the list and every project page.
    let (_, row) = act(&mut b, &csrf, "forget-all", &[], "/admin").await;
    assert!(row.2.starts_with("ok: cached pages cleared: "), "{row:?}");
    get_json(&server.url("/simple/")).await;
    get_json(&server.url("/simple/demo-pkg/")).await;
    assert_eq!((index.hits(""), index.hits("demo-pkg/")), (3, 3));

    // refresh-project: upstream is asked right away, and the refreshed page then serves.
    let (page, row) = act(
        &mut b,
        &csrf,
        "refresh-project",
        &[("project", "demo-pkg")],
        "/admin?project=demo-pkg",
    )
    .await;
    assert!(row.2.starts_with("ok: page refreshed from upstream"), "{row:?}");
    assert_eq!(row.1, "demo-pkg");
    assert!(page.body.contains("<p id=\"flash\" class=\"banner ok\""));
    assert_eq!(index.hits("demo-pkg/"), 4);
    let refreshed = get(&server.url("/simple/demo-pkg/"), JSON).await;
    assert_eq!(header(&refreshed, "x-cache"), "hit");
    assert_eq!(index.hits("demo-pkg/"), 4);
    let (page, row) = act(
        &mut b,
        &csrf,
        "refresh-project",
        &[("project", "-bad-")],
        "/admin",
    )
    .await;
    assert!(
        row.2.starts_with("refused: '-bad-' is not a project name"),
        "{row:?}"
    );
    assert!(
        page.body.contains("<p id=\"flash\" class=\"banner bad\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("<td class=\"outcome error\">refused: "));
    assert_eq!(index.hits("demo-pkg/"), 4);

    // evict-file: its bytes go; the next download fetches them upstream again.
    assert_eq!(download(&server, &file_path).await.0, "hit");
    assert_eq!(file_hits(), 1);
    let (_, row) = act(
        &mut b,
        &csrf,
        "evict-file",
        &[("project", "demo-pkg"), ("filename", ADMIN_FILE)],
        "/admin?project=demo-pkg",
    )
    .await;
    assert_eq!(row.1, format!("demo-pkg/{ADMIN_FILE}"));
    assert_eq!(row.2, "ok: evicted (20.0 KiB)");
    assert_eq!(
        download(&server, &file_path).await,
        ("miss".to_owned(), body.clone())
    );
    assert_eq!(file_hits(), 2);
    let (_, row) = act(
        &mut b,
        &csrf,
        "evict-file",
        &[("project", "demo-pkg"), ("filename", "demo_pkg-9.9.tar.gz")],
        "/admin?project=demo-pkg",
    )
    .await;
    assert!(row.2.starts_with("failed: "), "{row:?}");
    assert!(row.2.contains("is not listed"), "{row:?}");

    // gc.
    let (_, row) = act(&mut b, &csrf, "gc", &[], "/admin").await;
    assert!(row.2.starts_with("ok"), "{row:?}");
    assert!(row.2.contains(" blobs stored; dropped "), "{row:?}");

    let page = b.get("/admin").await;
    let actions: Vec<String> = admin_log(&page.body).into_iter().map(|(a, _, _)| a).collect();
    assert_eq!(
        actions,
        [
            "gc",
            "evict-file",
            "evict-file",
            "refresh-project",
            "refresh-project",
            "forget-all",
            "forget-list",
            "forget-project",
            "sign-in"
        ],
        "every action is logged, newest first"
    );
}

#[tokio::test]
async fn admin_sign_out_ends_the_session() {
    let (index, _) = admin_fixture();
    let (_dir, server) = start(&index, &[("PKGMIRROR__SERVER__ADMIN_TOKEN", TOKEN)]);
    let mut b = Browser::new(&server);
    let csrf = sign_in(&mut b).await;
    let old_session = b.cookies.get("pkgmirror_session").unwrap().clone();

    let out = b.post("/admin/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.header("location"), "/admin");
    let removal = out
        .set_cookie("pkgmirror_session")
        .expect("the cookie is removed");
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert!(!b.cookies.contains_key("pkgmirror_session"));
    assert!(b.get("/admin").await.body.contains("<form id=\"signin\""));

    // A copy of the old cookie is worth nothing now.
    let mut replay = Browser::new(&server);
    replay.cookies.insert("pkgmirror_session".into(), old_session);
    let refused = replay.post("/admin/gc", &[("csrf", &csrf)]).await;
    assert_error_page(&refused, 403, "you are not signed in", "old session");
    assert!(replay.get("/admin").await.body.contains("<form id=\"signin\""));

    let mut again = Browser::new(&server);
    sign_in(&mut again).await;
    let log = admin_log(&again.get("/admin").await.body);
    assert_eq!(
        log.iter()
            .map(|(a, _, o)| (a.as_str(), o.as_str()))
            .collect::<Vec<_>>(),
        [("sign-in", "ok"), ("sign-out", "ok"), ("sign-in", "ok")]
    );
}

#[tokio::test]
async fn admin_without_a_token_admits_loopback_clients() {
    let (index, _) = admin_fixture();
    let (_dir, server) = start(&index, &[]);
    let mut b = Browser::new(&server);
    let page = b.get("/admin").await;
    assert_eq!(page.status, 200);
    assert_ui_page(&page, "admin without token");
    assert!(!page.body.contains("<form id=\"signin\""));
    for action in ACTIONS {
        assert!(page.body.contains(&format!("<form id=\"{action}\"")), "{action}");
    }
    assert!(
        page.body
            .contains("Signed in as 127.0.0.1 (loopback; no admin token set).")
    );
    let session = page.set_cookie("pkgmirror_session").expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let csrf = csrf_of(&page.body);

    // The session carries on: no new cookie, the same token, and its forms work.
    let again = b.get("/admin").await;
    assert!(again.set_cookie("pkgmirror_session").is_none());
    assert_eq!(csrf_of(&again.body), csrf);
    let (_, row) = act(&mut b, &csrf, "gc", &[], "/admin").await;
    assert!(row.2.starts_with("ok"), "{row:?}");
    // Still CSRF-checked.
    let forged = b.post("/admin/gc", &[("csrf", &"0".repeat(64))]).await;
    assert_eq!(forged.status, 403);
    // There is no token to sign in with: the form just leads to the admin page.
    let signin = b.post("/admin/sign-in", &[("csrf", "x"), ("token", "y")]).await;
    assert_eq!(signin.status, 303);
    assert_eq!(signin.header("location"), "/admin");
}

/// Without a token, a loopback view of /admin that never returns the session cookie (a script, a
/// loop) writes nothing to the admin log; a session that is used is logged once, when its cookie
/// first comes back, so page views cannot flush the log.
#[tokio::test]
async fn admin_views_without_a_token_log_one_sign_in_per_session() {
    let (index, _) = admin_fixture();
    let (_dir, server) = start(&index, &[]);
    for _ in 0..5 {
        let page = client().get(server.url("/admin")).send().await.unwrap();
        assert_eq!(page.status(), 200);
    }
    let mut b = Browser::new(&server);
    b.get("/admin").await;
    let again = b.get("/admin").await;
    let log = admin_log(&again.body);
    assert_eq!(
        log,
        [("sign-in".to_owned(), String::new(), "ok".to_owned())],
        "one session, one row"
    );
    let (_, row) = act(&mut b, &csrf_of(&again.body), "gc", &[], "/admin").await;
    assert!(row.2.starts_with("ok"), "{row:?}");
    let log = admin_log(&b.get("/admin").await.body);
    assert_eq!(log.len(), 2, "the action, after the one sign-in: {log:?}");
}

// ---------------------------------------------------------------------------------------------
// Errors of the Simple API, as browsers and tools see them

#[tokio::test]
async fn error_pages_are_html_for_browsers_and_json_for_tools() {
    let index = FakeIndex::start();
    let (_dir, server) = start(&index, &[]);
    let mut b = Browser::new(&server);
    let message = "project 'does-not-exist' was not found on any configured index";

    let page = b.get("/simple/does-not-exist/").await;
    assert_error_page(&page, 404, message, "simple 404 for a browser");
    assert_eq!(text_of(&page.body, "<h1"), "404 Not Found");
    assert!(!page.body.contains("id=\"search-link\""));

    for accept in [JSON, PIP_ACCEPT] {
        let response = get(&server.url("/simple/does-not-exist/"), accept).await;
        assert_eq!(response.status(), 404, "{accept}");
        assert!(
            header(&response, "content-type").starts_with("application/json"),
            "{accept}"
        );
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            error,
            json!({"status": 404, "error": "Not Found", "message": message}),
            "{accept}"
        );
    }

    let page = b.get("/nothing/here").await;
    assert_error_page(&page, 404, "nothing is served at /nothing/here", "unrouted path");
}
