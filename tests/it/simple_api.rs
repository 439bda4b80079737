//! The Simple API as clients see it: negotiation, every standards field in both formats from both
//! upstream formats, merging, redirects, bad names, encodings, ETags and HEAD.

use std::io::Read;

use serde_json::json;

use crate::support::fixtures::{html_list, html_project, json_list, json_project, sha, simple_json};
use crate::support::*;
use pkgmirror::ecosystem::Ecosystem;

fn start_with(fake: &FakeIndex, dir: &tempfile::TempDir) -> Server {
    Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"))
}

#[tokio::test]
async fn negotiation_follows_pep_691() {
    let fake = FakeIndex::start();
    fake.json("demo/", &simple_json("demo", &[("demo-1.0.tar.gz", 'a')]));
    let dir = temp_dir();
    let server = start_with(&fake, &dir);
    let url = server.url("/simple/demo/");
    // (Accept, ?format=, expected status, expected Content-Type prefix)
    let cases: &[(Option<&str>, &str, u16, &str)] = &[
        (None, "", 200, "text/html"),
        (Some("*/*"), "", 200, "text/html"),
        (Some(PIP_ACCEPT), "", 200, JSON),
        (
            Some(
                "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01",
            ),
            "",
            200,
            JSON,
        ),
        (
            Some("application/vnd.pypi.simple.v1+json, */*;q=0.1"),
            "",
            200,
            JSON,
        ),
        (
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            "",
            200,
            "text/html",
        ),
        (Some(HTML), "", 200, HTML),
        (Some("application/vnd.pypi.simple.latest+json"), "", 200, JSON),
        (Some("application/vnd.pypi.simple.latest+html"), "", 200, HTML),
        (
            Some("application/vnd.pypi.simple.v1+json;q=0.5, text/html;q=0.9"),
            "",
            200,
            "text/html",
        ),
        (Some("application/json"), "", 406, "application/json"),
        (
            Some("application/vnd.pypi.simple.v1+json;q=0"),
            "",
            406,
            "application/json",
        ),
        (None, "?format=application/vnd.pypi.simple.v1+json", 200, JSON),
        (None, "?format=application/vnd.pypi.simple.v1%2Bjson", 200, JSON),
        (Some(JSON), "?format=text/html", 200, "text/html"),
        (None, "?format=application/xml", 406, "application/json"),
    ];
    for (accept, query, status, content_type) in cases {
        let mut request = client().get(format!("{url}{query}"));
        if let Some(accept) = accept {
            request = request.header("Accept", *accept);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), *status, "Accept {accept:?} {query}");
        assert!(
            header(&response, "content-type").starts_with(content_type),
            "Accept {accept:?} {query}: content-type {}",
            header(&response, "content-type")
        );
        if *status == 200 {
            assert_eq!(header(&response, "vary"), "Accept, Accept-Encoding");
        } else {
            assert_eq!(header(&response, "vary"), "Accept", "a 406 depends on Accept too");
        }
    }
    assert_eq!(fake.hits("demo/"), 1, "one upstream fetch serves every format");
}

#[tokio::test]
async fn every_field_from_a_json_upstream_in_both_formats() {
    let fake = FakeIndex::start();
    fake.json("demo/", &json_project());
    let dir = temp_dir();
    let server = start_with(&fake, &dir);

    let page = get_json(&server.url("/simple/demo/")).await;
    assert_eq!(
        page["meta"]["api-version"], "1.4",
        "sizes and versions present: upstream's 1.4 holds"
    );
    assert_eq!(
        page["meta"]["tracks"],
        json!(["https://other.example/simple/demo/"])
    );
    assert!(
        page["meta"].get("_last-serial").is_none(),
        "upstream private keys are not re-emitted"
    );
    assert_eq!(page["name"], "Demo");
    assert_eq!(
        page["project-status"],
        json!({"status": "deprecated", "reason": "use demo2"})
    );
    assert_eq!(
        page["alternate-locations"],
        json!(["https://mirror.example/simple/demo/"])
    );
    assert_eq!(page["versions"], json!(["1.0", "2.0", "3.0"]));
    let files = page["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    let f0 = &files[0];
    assert_eq!(f0["filename"], "demo-1.0.tar.gz");
    assert_eq!(
        f0["url"], "demo-1.0.tar.gz",
        "file URLs are relative to the mirror's page"
    );
    assert_eq!(f0["hashes"], json!({"sha256": sha('a')}));
    assert_eq!(f0["requires-python"], ">=3.8");
    assert_eq!(f0["yanked"], "broken <build>");
    assert_eq!(f0["size"], 1234);
    assert_eq!(f0["upload-time"], "2024-01-02T03:04:05.123456Z");
    assert_eq!(f0["core-metadata"], false);
    assert_eq!(f0["gpg-sig"], true);
    let f1 = &files[1];
    assert_eq!(f1["url"], "demo-2.0-py3-none-any.whl");
    assert_eq!(f1["hashes"], json!({"sha256": sha('b'), "md5": "c".repeat(32)}));
    assert_eq!(f1["yanked"], true);
    assert_eq!(f1["requires-python"], "<4,>=3.9");
    assert_eq!(
        f1["core-metadata"],
        json!({"sha256": sha('d')}),
        "legacy upstream key read"
    );
    assert_eq!(f1["data-dist-info-metadata"], json!({"sha256": sha('d')}));
    assert_eq!(f1["provenance"], "https://files.example/demo-2.0.provenance");
    assert_eq!(f1["upload-time"], "2024-02-03T04:05:06Z");
    let f2 = &files[2];
    assert_eq!(f2["yanked"], false);
    assert_eq!(f2["core-metadata"], json!({"sha256": sha('f')}));
    assert!(f2.get("upload-time").is_none(), "no upload time is invented");

    let response = get(&server.url("/simple/demo/"), "text/html").await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    for needle in [
        "<meta name=\"pypi:repository-version\" content=\"1.4\">",
        "<meta name=\"pypi:project-status\" content=\"deprecated\">",
        "<meta name=\"pypi:project-status-reason\" content=\"use demo2\">",
        &format!("href=\"demo-1.0.tar.gz#sha256={}\"", sha('a')),
        "data-requires-python=\"&gt;=3.8\"",
        "data-yanked=\"broken &lt;build&gt;\"",
        "data-gpg-sig=\"true\"",
        &format!("data-core-metadata=\"sha256={}\"", sha('d')),
        &format!("data-dist-info-metadata=\"sha256={}\"", sha('d')),
        "data-provenance=\"https://files.example/demo-2.0.provenance\"",
        "data-requires-python=\"&lt;4,&gt;=3.9\"",
        ">demo-2.0.tar.gz</a>",
    ] {
        assert!(html.contains(needle), "HTML lacks {needle}:\n{html}");
    }
    // The wheel is yanked without a reason: the attribute is present and empty.
    let wheel_line = html
        .lines()
        .find(|l| l.contains(">demo-2.0-py3-none-any.whl<"))
        .unwrap();
    assert!(
        wheel_line.contains("data-yanked=\"\"") || wheel_line.contains("data-yanked "),
        "{wheel_line}"
    );
}

#[tokio::test]
async fn every_field_from_an_html_upstream_in_both_formats() {
    let fake = FakeIndex::start();
    fake.html("demo/", &html_project());
    let dir = temp_dir();
    let server = start_with(&fake, &dir);

    let page = get_json(&server.url("/simple/demo/")).await;
    assert_eq!(
        page["meta"]["api-version"], "1.0",
        "no sizes from HTML: 1.1 would be a lie"
    );
    assert_eq!(page["name"], "Demo");
    assert_eq!(
        page["project-status"],
        json!({"status": "archived", "reason": "no longer maintained"})
    );
    assert_eq!(
        page["versions"],
        json!(["1.0", "2.0"]),
        "derived from the filenames"
    );
    let files = page["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["hashes"], json!({"sha256": sha('a')}));
    assert_eq!(files[0]["requires-python"], ">=3.8");
    assert_eq!(files[0]["yanked"], "broken & bad");
    assert_eq!(files[0]["url"], "demo-1.0.tar.gz");
    assert_eq!(files[1]["yanked"], true);
    assert_eq!(files[1]["gpg-sig"], false);
    assert_eq!(files[1]["core-metadata"], json!({"sha256": sha('d')}));
    assert_eq!(files[2]["core-metadata"], true);
    assert_eq!(files[2]["provenance"], "https://files.example/p.json");
    assert!(files[0].get("size").is_none());

    let html = get(&server.url("/simple/demo/"), "text/html")
        .await
        .text()
        .await
        .unwrap();
    for needle in [
        "<meta name=\"pypi:repository-version\" content=\"1.0\">",
        "<meta name=\"pypi:project-status\" content=\"archived\">",
        "data-yanked=\"broken &amp; bad\"",
        "data-core-metadata=\"true\"",
        "data-dist-info-metadata=\"true\"",
        &format!("href=\"demo-2.0.tar.gz#sha256={}\"", sha('c')),
    ] {
        assert!(html.contains(needle), "HTML lacks {needle}:\n{html}");
    }

    // The catalogue keeps the absolute upstream URLs (resolved against the upstream page) for the
    // file route to fetch; the pages only ever show relative ones.
    let dump = pkgmirror::storage::Catalogue::open(&dir.path().join("catalogue.sqlite3"))
        .unwrap()
        .project_files(Ecosystem::Pypi, "demo")
        .unwrap();
    let base = format!("http://{}", fake.addr);
    assert_eq!(dump[1].url, format!("{base}/packages/demo-2.0-py3-none-any.whl"));
    assert_eq!(dump[2].url, format!("{base}/packages/demo-2.0.tar.gz"));
    assert_eq!(dump[0].version.as_deref(), Some("1.0"));
}

#[tokio::test]
async fn a_quarantined_project_serves_no_files() {
    let fake = FakeIndex::start();
    let mut page = simple_json("bad", &[("bad-1.0.tar.gz", 'a')]);
    page["project-status"] = json!({"status": "quarantined", "reason": "malware"});
    fake.json("bad/", &page);
    let dir = temp_dir();
    let server = start_with(&fake, &dir);
    let page = get_json(&server.url("/simple/bad/")).await;
    assert_eq!(page["files"], json!([]));
    assert_eq!(page["project-status"]["status"], "quarantined");
    let html = get(&server.url("/simple/bad/"), "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains("bad-1.0.tar.gz"), "{html}");
}

#[tokio::test]
async fn indexes_merge_main_first_with_union_of_versions_and_projects() {
    let main = FakeIndex::start();
    let extra = FakeIndex::start();
    let mut main_page = simple_json("demo", &[("demo-1.0.tar.gz", 'a')]);
    main_page["versions"] = json!(["1.0"]);
    main.json("demo/", &main_page);
    main.json("", &json_list(&["Demo", "Foo"]));
    extra.html(
        "demo/",
        &format!(
            "<a href=\"/f/demo-1.0.tar.gz#sha256={}\">demo-1.0.tar.gz</a>\n<a href=\"/f/demo-1.1.tar.gz#sha256={}\">demo-1.1.tar.gz</a>",
            sha('b'),
            sha('c')
        ),
    );
    extra.html(
        "extraonly/",
        &format!(
            "<a href=\"/f/extraonly-0.1.tar.gz#sha256={}\">extraonly-0.1.tar.gz</a>",
            sha('d')
        ),
    );
    extra.html("", &html_list(&["foo", "Bar"]));
    let dir = temp_dir();
    let server = Server::start(
        dir.path(),
        &Launch::with_upstreams(&[&main.url(), &extra.url()], "10m"),
    );

    let page = get_json(&server.url("/simple/demo/")).await;
    let files = page["files"].as_array().unwrap();
    let names: Vec<_> = files.iter().map(|f| f["filename"].as_str().unwrap()).collect();
    assert_eq!(names, ["demo-1.0.tar.gz", "demo-1.1.tar.gz"]);
    assert_eq!(
        files[0]["hashes"]["sha256"],
        sha('a'),
        "same filename: the main index wins"
    );
    assert_eq!(page["versions"], json!(["1.0", "1.1"]));

    let only = get_json(&server.url("/simple/extraonly/")).await;
    assert_eq!(only["files"][0]["filename"], "extraonly-0.1.tar.gz");

    let list = get_json(&server.url("/simple/")).await;
    let names: Vec<_> = list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Demo", "Foo", "Bar"]);
    let html = get(&server.url("/simple/"), "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("href=\"bar/\""), "{html}");

    let missing = get(&server.url("/simple/nowhere/"), JSON).await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("'nowhere' was not found on any configured index"),
        "{body}"
    );
}

#[tokio::test]
async fn names_redirect_to_their_normalized_form_and_bad_names_are_refused() {
    let fake = FakeIndex::start();
    fake.json(
        "my-project/",
        &simple_json("My.Project", &[("my_project-1.0.tar.gz", 'a')]),
    );
    let dir = temp_dir();
    let server = start_with(&fake, &dir);
    let c = client();
    let base = &server.base;
    for (path, location) in [
        ("/simple/My.Project/", format!("{base}/simple/my-project/")),
        (
            "/simple/my__project/?format=text/html",
            format!("{base}/simple/my-project/?format=text/html"),
        ),
        ("/simple/my-project", format!("{base}/simple/my-project/")),
        ("/simple/My_Project", format!("{base}/simple/my-project/")),
        ("/simple", format!("{base}/simple/")),
        ("/index/My.Project/", format!("{base}/index/my-project/")),
    ] {
        let response = c.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 301, "{path}");
        assert_eq!(header(&response, "location"), location, "{path}");
    }
    let alias = get(&server.url("/index/my-project/"), JSON).await;
    assert_eq!(alias.status(), 200);

    let long = "a".repeat(300);
    for path in [
        "/simple/../",
        "/simple/..",
        "/simple/a%2fb/",
        "/simple/a%2Fb/",
        &format!("/simple/{long}/"),
        "/simple/caf%C3%A9/",
        "/simple/-x/",
        "/simple/a%00b/",
        "/simple/%2e%2e/",
    ] {
        let (status, body) = raw_get(&server.base, path, JSON);
        assert!(status == 400 || status == 404, "{path}: {status}");
        let body: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert!(
            !body["message"].as_str().unwrap().is_empty(),
            "{path}: a message says why"
        );
    }
    assert_eq!(fake.hits("../"), 0);
    // A bad name in a browser gets an HTML error page.
    let response = c
        .get(server.url("/simple/caf%C3%A9/"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(header(&response, "content-type").starts_with("text/html"));
    assert!(response.text().await.unwrap().contains("invalid project name"));
}

#[tokio::test]
async fn pages_come_compressed_once_with_etags_and_head() {
    let fake = FakeIndex::start();
    fake.json("demo/", &json_project());
    let dir = temp_dir();
    let server = start_with(&fake, &dir);
    let url = server.url("/simple/demo/");
    let c = client();
    let plain = c.get(&url).header("Accept", JSON).send().await.unwrap();
    assert_eq!(header(&plain, "x-cache"), "miss");
    let etag = header(&plain, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    assert!(header(&plain, "content-encoding").is_empty());
    let identity = plain.bytes().await.unwrap();

    let gz = c
        .get(&url)
        .header("Accept", JSON)
        .header("Accept-Encoding", "gzip, deflate")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&gz, "content-encoding"), "gzip");
    assert_eq!(header(&gz, "x-cache"), "hit");
    assert_eq!(header(&gz, "etag"), etag);
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gz.bytes().await.unwrap()[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, identity);

    let zs = c
        .get(&url)
        .header("Accept", JSON)
        .header("Accept-Encoding", "gzip, deflate, zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&zs, "content-encoding"), "zstd");
    assert_eq!(
        zstd::decode_all(&zs.bytes().await.unwrap()[..]).unwrap(),
        identity
    );

    let cached = c
        .get(&url)
        .header("Accept", JSON)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert_eq!(header(&cached, "etag"), etag);
    assert!(cached.bytes().await.unwrap().is_empty());
    let other = c
        .get(&url)
        .header("Accept", "text/html")
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "the HTML representation has its own ETag");

    let head = c.head(&url).header("Accept", JSON).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), identity.len().to_string());
    assert_eq!(header(&head, "etag"), etag);
    assert!(head.bytes().await.unwrap().is_empty());
    let head_list = c.head(server.url("/simple/")).send().await.unwrap();
    assert_eq!(head_list.status(), 404, "no index has a list here");
    assert_eq!(fake.hits("demo/"), 1);
}

/// A known path asked with a method it does not take is 405 with the methods it does take, not
/// a 404 that says the path does not exist.
#[tokio::test]
async fn other_methods_on_known_paths_are_405_with_allow() {
    let fake = FakeIndex::start();
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));
    let c = client();
    for (method, path, allow) in [
        ("POST", "/simple/", "GET, HEAD"),
        ("PUT", "/simple/demo/", "GET, HEAD"),
        ("DELETE", "/simple/demo/demo-1.0.tar.gz", "GET, HEAD"),
        ("POST", "/index/demo/", "GET, HEAD"),
        ("GET", "/cache/list", "DELETE"),
        ("POST", "/health", "GET, HEAD"),
        ("PATCH", "/hex/names", "GET, HEAD"),
        ("POST", "/packages", "GET"),
        ("GET", "/admin/sign-in", "POST"),
    ] {
        let response = c
            .request(method.parse().unwrap(), server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(header(&response, "allow"), allow, "{method} {path}");
    }
    let nowhere = c.post(server.url("/nowhere")).send().await.unwrap();
    assert_eq!(nowhere.status(), 404, "an unknown path is still 404");
}

/// `pypi.extra_index_strategy`: merge (the default) joins every index's files; first-index serves
/// a project from the first index that lists it, and when an earlier index fails it refuses to
/// let a later one decide.
#[tokio::test]
async fn first_index_keeps_an_extra_index_from_adding_to_a_main_project() {
    let (main, extra) = (FakeIndex::start(), FakeIndex::start());
    main.json("demo/", &simple_json("demo", &[("demo-1.0.tar.gz", 'a')]));
    extra.json("demo/", &simple_json("demo", &[("demo-99.0.tar.gz", 'b')]));
    extra.json(
        "only-extra/",
        &simple_json("only-extra", &[("only_extra-1.0.tar.gz", 'c')]),
    );
    let filenames = async |server: &Server, project: &str| {
        let page = get_json(&server.url(&format!("/simple/{project}/"))).await;
        let files = page["files"].as_array().unwrap().iter();
        let names: Vec<String> = files
            .map(|f| f["filename"].as_str().unwrap().to_owned())
            .collect();
        serde_json::Value::from(names)
    };

    let merged = temp_dir();
    let server = Server::start(
        merged.path(),
        &Launch::with_upstreams(&[&main.url(), &extra.url()], "10m"),
    );
    assert_eq!(
        filenames(&server, "demo").await,
        json!(["demo-1.0.tar.gz", "demo-99.0.tar.gz"])
    );
    drop(server);

    let first = temp_dir();
    let mut launch = Launch::with_upstreams(&[&main.url(), &extra.url()], "10m");
    launch.env("PKGMIRROR__PYPI__EXTRA_INDEX_STRATEGY", "first-index");
    let server = Server::start(first.path(), &launch);
    assert_eq!(filenames(&server, "demo").await, json!(["demo-1.0.tar.gz"]));
    assert_eq!(
        filenames(&server, "only-extra").await,
        json!(["only_extra-1.0.tar.gz"]),
        "a project only the extra index has"
    );

    // The main index down and nothing stored: the extra index's 99.0 is not served in its place.
    main.json("other/", &simple_json("other", &[("other-1.0.tar.gz", 'd')]));
    extra.json("other/", &simple_json("other", &[("other-99.0.tar.gz", 'e')]));
    main.set(Behaviour::Status(503));
    let refused = get(
        &server.url("/simple/other/"),
        "application/vnd.pypi.simple.v1+json",
    )
    .await;
    assert_eq!(refused.status(), 502, "{}", refused.text().await.unwrap());
}

/// `pypi.refresh_ahead`: a page asked for near the end of its lifetime is revalidated in the
/// background (conditionally), so a request after its TTL finds it fresh without waiting for the
/// upstream; with 0, nothing is asked ahead.
#[tokio::test]
async fn a_page_asked_for_near_its_ttl_is_revalidated_ahead() {
    for (ahead, revalidated_ahead) in [("0.5", true), ("0", false)] {
        let fake = FakeIndex::start();
        fake.json("demo/", &simple_json("demo", &[("demo-1.0.tar.gz", 'a')]));
        let dir = temp_dir();
        let mut launch = Launch::with_upstreams(&[&fake.url()], "4s");
        launch.env("PKGMIRROR__PYPI__REFRESH_AHEAD", ahead);
        let server = Server::start(dir.path(), &launch);
        let page = server.url("/simple/demo/");
        let started = std::time::Instant::now();
        assert_eq!(header(&get(&page, JSON).await, "x-cache"), "miss");
        assert_eq!(fake.hits("demo/"), 1);

        // In the last half of the 4 s: a hit, and (with refresh_ahead) a conditional request
        // upstream in the background, before the TTL ends.
        tokio::time::sleep(std::time::Duration::from_millis(2600).saturating_sub(started.elapsed())).await;
        assert_eq!(header(&get(&page, JSON).await, "x-cache"), "hit");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if revalidated_ahead {
            assert_eq!(fake.hits("demo/"), 2, "revalidated ahead ({ahead})");
            assert!(
                fake.last_header("demo/", "if-none-match").is_some(),
                "conditionally"
            );
        } else {
            assert_eq!(fake.hits("demo/"), 1, "nothing asked ahead ({ahead})");
        }

        // After the first TTL, with the upstream failing from now on: fresh from the
        // revalidation ahead (a hit), or, without one, the stale copy the failed refresh on the
        // request path leaves.
        fake.set(Behaviour::Status(500));
        tokio::time::sleep(std::time::Duration::from_millis(4600).saturating_sub(started.elapsed())).await;
        let expected = if revalidated_ahead { "hit" } else { "stale" };
        assert_eq!(header(&get(&page, JSON).await, "x-cache"), expected, "({ahead})");
    }
}
