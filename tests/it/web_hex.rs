//! The hex side of the web UI over HTTP: a hex package's page (SemVer order, retirement,
//! checksums, cache state, download links through the mirror's hex repository) and its 404 and
//! 400 pages, the package list kept per ecosystem (search, sort, paging), and the mix and rebar3
//! setup on the home page, shown only while the hex mirror is on.
//!
//! The catalogue is seeded before the server starts, the way the hex mirror records a verified
//! registry file: one file row per release, keyed by the tarball's outer checksum, and a stored
//! blob (file and row) for the release that is cached.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use pkgmirror::ecosystem::Ecosystem;
use pkgmirror::storage::Catalogue;
use pkgmirror::storage::catalogue::{BlobAccess, FileRecord, ProjectRecord};
use pkgmirror::storage::data_dir::{BLOBS_DIR, CATALOGUE_FILE};

use crate::support::fixtures::{payload, sha256_hex};
use crate::support::web::{
    Browser, Page, assert_error_page, assert_ui_page, attr_values, links, listed, row_linking, snippet,
    text_of, texts_after,
};
use crate::support::*;

const HEX_UPSTREAM: &str = "http://127.0.0.1:9/hex";
const PYPI_UPSTREAM: &str = "http://127.0.0.1:9/simple/";
/// The package whose page is checked.
const PACKAGE: &str = "fixbar";
/// fixbar's releases as the registry lists them (not in order): version, retirement as the
/// catalogue records it, publication time.
const RELEASES: [(&str, Option<&str>, &str); 5] = [
    ("1.2.0", None, "2024-03-01T12:30:00Z"),
    ("0.9.0", Some("deprecated: use 1.2.0"), "2023-01-01T00:00:00Z"),
    ("1.10.0-rc.1", None, "2024-05-01T08:00:00Z"),
    ("2.0.0-rc.1+build.5", None, "2024-07-01T00:00:00Z"),
    ("1.10.0", Some("security"), "2024-06-01T00:00:00Z"),
];
/// The release whose tarball is stored, and how often it was served.
const CACHED: &str = "1.2.0";
const CACHED_HITS: u64 = 3;
const CACHED_LEN: usize = 4096;
/// Hex packages with no release, enough to need a second page.
const FILLERS: usize = 55;
/// fixbar, fix_utils and the fillers.
const HEX_PACKAGES: usize = FILLERS + 2;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A release's tarball (its sha256 is the outer checksum) and inner checksum.
fn tarball(version: &str) -> (Vec<u8>, String) {
    let seed = version
        .bytes()
        .fold(7u8, |acc, b| acc.wrapping_mul(31).wrapping_add(b));
    let len = if version == CACHED { CACHED_LEN } else { 1000 };
    (
        payload(len, seed),
        sha256_hex(format!("inner {version}").as_bytes()),
    )
}

fn project(ecosystem: Ecosystem, name: &str, fetched_at: u64, files: Vec<FileRecord>) -> ProjectRecord {
    ProjectRecord {
        ecosystem,
        name: name.into(),
        display_name: name.into(),
        last_serial: None,
        status: None,
        fetched_at,
        files,
    }
}

/// Seeds `data_dir`: the hex packages (fixbar with its releases, one cached) and two PyPI
/// projects, one of which shares a name fragment with the hex packages.
fn seed(data_dir: &Path, now: u64) {
    let catalogue = Catalogue::open(&data_dir.join(CATALOGUE_FILE)).unwrap();
    let hex_index = catalogue
        .ensure_index(Ecosystem::Hex, HEX_UPSTREAM, 1800)
        .unwrap();
    let files = RELEASES
        .iter()
        .map(|(version, retired, published)| {
            let (bytes, inner) = tarball(version);
            FileRecord {
                index_id: hex_index,
                filename: format!("{PACKAGE}-{version}.tar"),
                version: Some((*version).to_owned()),
                url: format!("{HEX_UPSTREAM}/tarballs/{PACKAGE}-{version}.tar"),
                sha256: Some(sha256_hex(&bytes)),
                size: None,
                requires_python: None,
                yanked: retired.map(str::to_owned),
                upload_time: Some((*published).to_owned()),
                has_metadata: false,
                metadata_sha256: None,
                inner_checksum: Some(inner),
                first_seen: None,
                provenance: None,
            }
        })
        .collect();
    catalogue
        .record_project(&project(Ecosystem::Hex, PACKAGE, now - 120, files))
        .unwrap();
    catalogue
        .record_project(&project(Ecosystem::Hex, "fix_utils", now, vec![]))
        .unwrap();
    for i in 0..FILLERS {
        catalogue
            .record_project(&project(Ecosystem::Hex, &format!("pkg_{i:02}"), now, vec![]))
            .unwrap();
    }

    // The cached release: its bytes where the local store keeps them, then its row.
    let (bytes, _) = tarball(CACHED);
    let sha = sha256_hex(&bytes);
    let dir = data_dir
        .join(BLOBS_DIR)
        .join("sha256")
        .join(&sha[..2])
        .join(&sha[2..4]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&sha), &bytes).unwrap();
    catalogue
        .record_blob(&sha, bytes.len() as u64, "local", now - 600)
        .unwrap();
    catalogue
        .touch_blobs(
            &[BlobAccess {
                sha256: sha,
                at: now - 60,
                hits: CACHED_HITS,
                size: bytes.len() as u64,
            }],
            None,
        )
        .unwrap();

    let pypi_index = catalogue
        .ensure_index(Ecosystem::Pypi, PYPI_UPSTREAM, 600)
        .unwrap();
    for name in ["demo-pkg", "fix-tools"] {
        let filename = format!("{}-1.0.tar.gz", name.replace('-', "_"));
        let file = FileRecord {
            index_id: pypi_index,
            url: format!("http://127.0.0.1:9/files/{filename}"),
            filename,
            version: Some("1.0".into()),
            sha256: Some(sha256_hex(name.as_bytes())),
            size: Some(100),
            requires_python: None,
            yanked: None,
            upload_time: None,
            has_metadata: false,
            metadata_sha256: None,
            inner_checksum: None,
            first_seen: None,
            provenance: None,
        };
        catalogue
            .record_project(&project(Ecosystem::Pypi, name, now, vec![file]))
            .unwrap();
    }
}

/// A server on a freshly seeded data dir with the hex mirror on, with `env` on top. Its
/// upstream is a closed port: the UI reads the catalogue and never goes upstream.
fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let dir = temp_dir();
    seed(dir.path(), unix_now());
    let mut launch = Launch::with_hex("http://127.0.0.1:9/", "10m");
    for (key, value) in env {
        launch.env(key, value);
    }
    let server = Server::start(dir.path(), &launch);
    (dir, server)
}

/// The `(href, label)` of the package list's ecosystem tabs, and the current one's label.
fn tabs(page: &Page) -> (Vec<(String, String)>, String) {
    let start = page
        .body
        .find("<nav class=\"tabs\" id=\"ecosystems\"")
        .unwrap_or_else(|| panic!("no ecosystem tabs:\n{}", page.body));
    let nav = &page.body[start..];
    let nav = &nav[..nav.find("</nav>").unwrap()];
    let current = texts_after(nav, "aria-current=\"page\"");
    assert_eq!(current.len(), 1, "{nav}");
    let all = nav
        .match_indices("<a href=\"")
        .map(|(i, _)| {
            let rest = &nav[i + "<a href=\"".len()..];
            let href = &rest[..rest.find('"').unwrap()];
            let text = &rest[rest.find('>').unwrap() + 1..];
            (
                href.replace("&amp;", "&"),
                text[..text.find("</a>").unwrap()].to_owned(),
            )
        })
        .collect();
    (all, current[0].clone())
}

/// The value of the header search form's hidden ecosystem input, if it has one.
fn search_box_ecosystem(page: &Page) -> Option<String> {
    attr_values(&page.body, "<input type=\"hidden\" name=\"ecosystem\" value=\"")
        .into_iter()
        .next()
}

#[tokio::test]
async fn hex_package_page_lists_releases_newest_first_with_retirement_checksums_and_cache_state() {
    let (_dir, server) = start(&[]);
    let mut b = Browser::new(&server);

    let page = b.get(&format!("/packages/hex/{PACKAGE}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_ui_page(&page, "hex package");
    assert_eq!(text_of(&page.body, "<h1"), PACKAGE);
    assert_eq!(text_of(&page.body, "id=\"ecosystem\""), "Hex package");
    assert!(!page.body.contains("id=\"hex-disabled\""), "the hex mirror is on");
    // Its search box searches hex packages.
    assert_eq!(search_box_ecosystem(&page).as_deref(), Some("hex"));

    // SemVer order, newest first: a pre-release below its release, 1.10 above 1.2.
    let versions: Vec<String> = texts_after(&page.body, "<td class=\"version\"><span class=\"mono\"")
        .into_iter()
        .map(|v| v.trim().to_owned())
        .collect();
    assert_eq!(
        versions,
        ["2.0.0-rc.1+build.5", "1.10.0", "1.10.0-rc.1", "1.2.0", "0.9.0"]
    );
    assert_eq!(
        texts_after(&page.body, "<span class=\"badge retired\""),
        ["retired: security", "retired: deprecated: use 1.2.0"]
    );
    assert_eq!(
        texts_after(&page.body, "<span class=\"badge prerelease\"").len(),
        2,
        "2.0.0-rc.1+build.5 and 1.10.0-rc.1"
    );
    assert!(
        row_linking(&page.body, "fixbar-1.10.0-rc.1.tar").contains("badge prerelease"),
        "{}",
        page.body
    );

    // Every release downloads through the mirror's hex repository, `+` as it is.
    let downloads = links(&page.body, "class=\"download mono\"");
    let expected: Vec<(String, String)> = versions
        .iter()
        .map(|v| {
            (
                format!("/hex/tarballs/{PACKAGE}-{v}.tar"),
                format!("{PACKAGE}-{v}.tar"),
            )
        })
        .collect();
    assert_eq!(downloads, expected);

    // Each row carries its outer (sha256) and inner checksums and its publication time.
    for (version, _, published) in RELEASES {
        let (bytes, inner) = tarball(version);
        let row = row_linking(&page.body, &format!("{PACKAGE}-{version}.tar"));
        assert!(
            row.contains(&format!("<div class=\"sha\">sha256 {}</div>", sha256_hex(&bytes))),
            "{version}: {row}"
        );
        assert!(
            row.contains(&format!("<div class=\"sha\">inner checksum {inner}</div>")),
            "{version}: {row}"
        );
        assert!(
            row.contains(&format!("<time datetime=\"{published}\">")),
            "{version}: {row}"
        );
    }
    let cached = row_linking(&page.body, &format!("{PACKAGE}-{CACHED}.tar"));
    assert!(
        cached.contains("<time datetime=\"2024-03-01T12:30:00Z\">2024-03-01 12:30 UTC</time>"),
        "{cached}"
    );
    assert!(
        cached.contains(
            "<span class=\"badge cached\">cached</span> <span class=\"muted\">3 hits · 4.0 KiB</span>"
        ),
        "{cached}"
    );
    assert_eq!(page.body.matches("badge cached").count(), 1);
    assert_eq!(
        page.body
            .matches("<span class=\"muted\">not cached</span>")
            .count(),
        RELEASES.len() - 1
    );

    // The summary: releases listed, what is cached, when the catalogue recorded the package.
    let summary = &page.body[page.body.find("id=\"package-summary\"").unwrap()..];
    assert!(
        summary.contains("<span class=\"figure\">5</span><span class=\"label\">releases listed</span>"),
        "{summary}"
    );
    assert!(
        summary.contains("<span class=\"figure\">1</span><span class=\"label\">cached (4.0 KiB)</span>"),
        "{summary}"
    );
    assert_eq!(text_of(&page.body, "id=\"recorded\""), "2 min ago");
    assert!(summary.contains("registry file last recorded ("), "{summary}");

    // An unknown package: 404 naming it, with a search of the hex packages.
    let unknown = b.get("/packages/hex/nothere").await;
    assert_error_page(
        &unknown,
        404,
        "hex package 'nothere' is not in pkgmirror's catalogue",
        "unknown hex package",
    );
    assert_eq!(
        links(&unknown.body, "id=\"search-link\""),
        [(
            "/packages?ecosystem=hex&q=nothere".to_owned(),
            "Search the cached packages for “nothere”".to_owned()
        )]
    );
    let search = b.get("/packages?ecosystem=hex&q=nothere").await;
    assert_eq!(search.status, 200, "the search link works");
    assert_eq!(
        text_of(&search.body, "id=\"count\""),
        "0 packages whose name contains “nothere”"
    );
    // A PyPI project is no hex package.
    let other = b.get("/packages/hex/fix_tools").await;
    assert_error_page(&other, 404, "hex package 'fix_tools'", "pypi name under hex");

    // Names hex.pm would refuse: 400.
    for invalid in ["Fixbar", "fix-bar", "9lives", "fix%21bar", "fixb%C3%A4r"] {
        let page = b.get(&format!("/packages/hex/{invalid}")).await;
        assert_error_page(&page, 400, "is not a hex package name", invalid);
    }
    // Other ecosystems are still unknown.
    let npm = b.get("/packages/npm/left-pad").await;
    assert_error_page(&npm, 404, "it mirrors pypi and hex", "other ecosystem");
}

#[tokio::test]
async fn package_list_keeps_each_ecosystem_apart_in_search_sort_and_paging() {
    let (_dir, server) = start(&[]);
    let mut b = Browser::new(&server);

    // PyPI by default: only its projects, and its search box searches PyPI.
    let pypi = b.get("/packages").await;
    assert_eq!(pypi.status, 200);
    assert_ui_page(&pypi, "pypi list");
    assert_eq!(text_of(&pypi.body, "id=\"count\""), "2 projects known");
    assert_eq!(listed(&pypi), ["demo-pkg", "fix-tools"]);
    assert_eq!(search_box_ecosystem(&pypi), None);
    assert_eq!(
        tabs(&pypi),
        (
            vec![
                ("/packages".to_owned(), "PyPI".to_owned()),
                ("/packages?ecosystem=hex".to_owned(), "Hex".to_owned())
            ],
            "PyPI".to_owned()
        )
    );

    // Hex: only its packages, 50 a page, by name.
    let hex = b.get("/packages?ecosystem=hex").await;
    assert_eq!(hex.status, 200, "{}", hex.body);
    assert_ui_page(&hex, "hex list");
    assert_eq!(
        text_of(&hex.body, "id=\"count\""),
        format!("{HEX_PACKAGES} packages known")
    );
    assert_eq!(tabs(&hex).1, "Hex");
    assert_eq!(search_box_ecosystem(&hex).as_deref(), Some("hex"));
    let names = listed(&hex);
    assert_eq!(names.len(), 50);
    assert_eq!(names[..3], ["fix_utils", "fixbar", "pkg_00"]);
    assert!(
        !names.iter().any(|n| n == "fix-tools" || n == "demo-pkg"),
        "{names:?}"
    );
    let row = row_linking(&hex.body, PACKAGE);
    assert!(
        row.contains(&format!(
            "<a class=\"project-link\" href=\"/packages/hex/{PACKAGE}\">"
        )),
        "{row}"
    );
    assert!(
        row.contains("<td class=\"num optional\">5</td><td class=\"num\">1</td>"),
        "{row}"
    );
    assert!(hex.body.contains("<th>Package</th>"), "{}", hex.body);
    assert!(hex.body.contains(">Releases listed</th>"), "{}", hex.body);
    assert!(pypi.body.contains(">Files listed</th>"), "{}", pypi.body);
    assert!(hex.body.contains(&format!("1–50 of {HEX_PACKAGES}")));
    assert_eq!(
        attr_values(&hex.body, "<a rel=\"next\" href=\""),
        ["/packages?ecosystem=hex&page=2"]
    );
    assert!(
        links(&hex.body, "").contains(&(
            "/packages?ecosystem=hex&sort=size".to_owned(),
            "cached size".to_owned()
        )),
        "sorting stays in hex:\n{}",
        hex.body
    );
    let second = b.get("/packages?ecosystem=hex&page=2").await;
    assert_eq!(listed(&second).len(), HEX_PACKAGES - 50);
    assert_eq!(listed(&second).last().map(String::as_str), Some("pkg_54"));
    assert_eq!(
        attr_values(&second.body, "<a rel=\"prev\" href=\""),
        ["/packages?ecosystem=hex"]
    );
    assert!(!second.body.contains("rel=\"next\""));
    let by_size = b.get("/packages?ecosystem=hex&sort=size").await;
    assert_eq!(listed(&by_size)[0], PACKAGE, "the one package with bytes cached");

    // Search within hex: lower-cased, never PyPI-normalized (`_` stays `_`).
    let found = b.get("/packages?ecosystem=hex&q=Fix_U").await;
    assert_eq!(found.status, 200);
    assert_ui_page(&found, "hex search");
    assert_eq!(
        text_of(&found.body, "id=\"count\""),
        "1 package whose name contains “Fix_U”"
    );
    assert_eq!(listed(&found), ["fix_utils"]);
    // The other tab keeps the search.
    assert_eq!(
        tabs(&found).0,
        [
            ("/packages?q=Fix_U".to_owned(), "PyPI".to_owned()),
            ("/packages?ecosystem=hex&q=Fix_U".to_owned(), "Hex".to_owned())
        ]
    );
    let fix = b.get("/packages?ecosystem=hex&q=fix").await;
    assert_eq!(listed(&fix), ["fix_utils", "fixbar"]);
    let dashed = b.get("/packages?ecosystem=hex&q=fix-t").await;
    assert!(listed(&dashed).is_empty());
    assert!(dashed.body.contains("No package whose name contains “fix-t”"));

    // Search within PyPI still normalizes, and finds no hex package.
    assert_eq!(listed(&b.get("/packages?q=fix").await), ["fix-tools"]);
    assert_eq!(listed(&b.get("/packages?q=Fix_T").await), ["fix-tools"]);
    assert_eq!(
        listed(&b.get("/packages?ecosystem=pypi&q=Fix_T").await),
        ["fix-tools"]
    );

    // An ecosystem the mirror does not know: 400.
    let bad = b.get("/packages?ecosystem=npm").await;
    assert_error_page(&bad, 400, "'npm' is not an ecosystem", "unknown ecosystem");
}

#[tokio::test]
async fn home_page_shows_mix_and_rebar3_setup_only_when_the_hex_mirror_is_on() {
    let (_dir, server) = start(&[]);
    let home = Browser::new(&server).get("/").await;
    assert_eq!(home.status, 200);
    assert_ui_page(&home, "home");
    let hex_url = format!("{}/hex", server.base);
    assert!(
        home.body.contains(&format!("<code>{hex_url}</code>")),
        "{}",
        home.body
    );
    assert_eq!(
        snippet(&home.body, "mix"),
        format!("HEX_MIRROR={hex_url} mix deps.get")
    );
    assert_eq!(
        snippet(&home.body, "mix-config"),
        format!("mix hex.config mirror_url {hex_url}")
    );
    assert_eq!(
        snippet(&home.body, "rebar3"),
        format!("HEX_CDN={hex_url} rebar3 get-deps")
    );
    assert_eq!(
        snippet(&home.body, "rebar3-config"),
        format!("{{rebar_packages_cdn, \"{hex_url}\"}}.")
    );
    assert!(home.body.contains("~/.config/rebar3/rebar.config"));
    // The cached tarball is a recent download, linked to its hex package.
    let recent = &home.body[home.body.find("<section id=\"recent\">").unwrap()..];
    let recent = &recent[..recent.find("</section>").unwrap()];
    assert!(
        recent.contains(&format!("<td class=\"mono\">{PACKAGE}-{CACHED}.tar</td>")),
        "{recent}"
    );
    assert_eq!(
        links(recent, ""),
        [(format!("/packages/hex/{PACKAGE}"), PACKAGE.to_owned())]
    );

    // Behind a public URL, the same base as the pip snippets.
    let (_dir, server) = start(&[
        ("PKGMIRROR__SERVER__PUBLIC_URL", "https://mirror.example.test/"),
        ("PKGMIRROR__SERVER__ALLOW_OPEN_ADMIN", "true"),
    ]);
    let home = Browser::new(&server).get("/").await;
    assert_eq!(
        snippet(&home.body, "mix"),
        "HEX_MIRROR=https://mirror.example.test/hex mix deps.get"
    );
    assert_eq!(
        snippet(&home.body, "rebar3-config"),
        "{rebar_packages_cdn, \"https://mirror.example.test/hex\"}."
    );
    assert!(snippet(&home.body, "pip").contains("https://mirror.example.test/simple/"));

    // With the hex mirror off: no hex setup; what the catalogue holds is still browsable.
    let (_dir, server) = start(&[("PKGMIRROR__HEX__ENABLED", "false")]);
    let mut b = Browser::new(&server);
    let home = b.get("/").await;
    assert_eq!(home.status, 200);
    assert_ui_page(&home, "home without hex");
    for id in [
        "hex-setup",
        "setup-mix",
        "setup-mix-config",
        "setup-rebar3",
        "setup-rebar3-config",
    ] {
        assert!(
            !home.body.contains(&format!("id=\"{id}\"")),
            "{id}:\n{}",
            home.body
        );
    }
    for text in ["HEX_MIRROR", "HEX_CDN", "rebar_packages_cdn", "/hex</code>"] {
        assert!(!home.body.contains(text), "{text}:\n{}", home.body);
    }
    assert!(snippet(&home.body, "pip").contains(&format!("{}/simple/", server.base)));
    let page = b.get(&format!("/packages/hex/{PACKAGE}")).await;
    assert_eq!(page.status, 200);
    assert!(
        text_of(&page.body, "id=\"hex-disabled\"").starts_with("The hex mirror is off"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn an_admin_clears_a_hex_registry_file_and_home_shows_the_hex_upstream() {
    let fake = FakeIndex::start();
    for (path, bytes) in &crate::support::hex_fixtures::standard().files {
        fake.file(path, "application/octet-stream", bytes.clone());
    }
    let dir = temp_dir();
    let mut launch = Launch::with_hex(&fake.root_url(), "10m");
    launch.env("PKGMIRROR__SERVER__ADMIN_TOKEN", crate::support::web::TOKEN);
    let server = Server::start(dir.path(), &launch);
    let fetch = || async {
        let response = client()
            .get(server.url("/hex/packages/fixbar"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    };
    fetch().await;
    assert_eq!(fake.hits_of("/packages/fixbar"), 1);

    let mut b = Browser::new(&server);
    let home = b.get("/").await;
    assert!(
        home.body.contains(&format!(
            "Upstream (hex)<br><span class=\"mono muted\">{}</span>",
            fake.root_url()
        )),
        "{}",
        home.body
    );
    let csrf = crate::support::web::sign_in(&mut b).await;
    let admin = b.get("/admin").await;
    assert!(
        admin.body.contains("<form id=\"forget-hex-package\""),
        "{}",
        admin.body
    );

    let (_, refused) = crate::support::web::act(
        &mut b,
        &csrf,
        "forget-hex-package",
        &[("project", "Bad-Name")],
        "/admin",
    )
    .await;
    assert!(
        refused
            .2
            .starts_with("refused: 'Bad-Name' is not a hex package name"),
        "{refused:?}"
    );
    let (_, row) = crate::support::web::act(
        &mut b,
        &csrf,
        "forget-hex-package",
        &[("project", "fixbar")],
        "/admin",
    )
    .await;
    assert_eq!(
        row,
        (
            "forget-hex-package".into(),
            "hex/fixbar".into(),
            "ok: registry file cleared".into()
        )
    );
    assert_eq!(fake.hits_of("/packages/fixbar"), 1, "clearing fetches nothing");
    fetch().await;
    assert_eq!(
        fake.hits_of("/packages/fixbar"),
        2,
        "the next request goes upstream"
    );
    // A forged form (wrong CSRF token) changes nothing.
    let forged = b
        .post(
            "/admin/forget-hex-package",
            &[("csrf", "0".repeat(64).as_str()), ("project", "fixbar")],
        )
        .await;
    assert_eq!(forged.status, 403);
    fetch().await;
    assert_eq!(fake.hits_of("/packages/fixbar"), 2);
}
