//! Pages as real indexes send them, and pages that cannot be read: the mirror reads what the
//! standards let it read, falls back from JSON to HTML on the same index, drops a malformed entry
//! rather than the page, and says on `/health` and in its log what was wrong and where.

use std::time::Duration;

use serde_json::json;

use crate::support::fixtures::sha;
use crate::support::*;

fn html_page(files: &[(&str, char)]) -> String {
    let links: String = files
        .iter()
        .map(|(name, c)| format!("<a href=\"/files/{name}#sha256={}\">{name}</a><br/>\n", sha(*c)))
        .collect();
    format!("<!DOCTYPE html><html><head><title>Links for demo</title></head><body>\n{links}</body></html>")
}

fn filenames(page: &serde_json::Value) -> Vec<String> {
    page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap().to_owned())
        .collect()
}

/// The exact shape that made every project page answer 502: the public index sends its private
/// serial as a string, along with `null`s where a value is absent.
#[tokio::test]
async fn a_serial_sent_as_a_string_and_nulls_are_read() {
    let fake = FakeIndex::start();
    fake.json(
        "six/",
        &json!({
            "meta": {"api-version": "1.1", "_last-serial": "26356948"},
            "name": "six",
            "versions": ["1.16.0", "1.17.0"],
            "files": [
                {"filename": "six-1.16.0.tar.gz", "url": "https://files.example/six-1.16.0.tar.gz",
                 "hashes": {"sha256": sha('a')}, "requires-python": null, "size": "34041",
                 "upload-time": "2021-05-05T14:18:18.379000Z", "yanked": false, "core-metadata": null,
                 "data-dist-info-metadata": null, "provenance": null},
                {"filename": "six-1.17.0-py2.py3-none-any.whl", "url": "https://files.example/six-1.17.0-py2.py3-none-any.whl",
                 "hashes": {"sha256": sha('b')}, "requires-python": ">=2.7, !=3.0.*", "size": 11050,
                 "upload-time": null, "yanked": 0, "core-metadata": {"sha256": sha('c')}},
            ]
        }),
    );
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));
    let response = get(&server.url("/simple/six/"), JSON).await;
    assert_eq!(response.status(), 200, "{}", server.logs());
    let page: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        filenames(&page),
        ["six-1.16.0.tar.gz", "six-1.17.0-py2.py3-none-any.whl"]
    );
    assert_eq!(page["files"][0]["size"], 34041, "a size sent as a string");
    assert_eq!(page["files"][1]["core-metadata"]["sha256"], sha('c'));
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["upstreams"][0]["state"], "up");
    assert_eq!(health["upstreams"][0]["dropped_entries"], 0);
}

#[tokio::test]
async fn a_malformed_entry_costs_that_entry_not_the_page() {
    let fake = FakeIndex::start();
    fake.json(
        "demo/",
        &json!({
            "meta": {"api-version": "1.0"},
            "name": "demo",
            "files": [
                {"filename": "demo-1.0.tar.gz", "url": "/files/demo-1.0.tar.gz", "hashes": {"sha256": sha('a')}},
                {"filename": "demo-1.1.tar.gz", "hashes": {"sha256": sha('b')}},
                "demo-1.2.tar.gz",
                {"filename": "demo-2.0.tar.gz", "url": "/files/demo-2.0.tar.gz", "hashes": {"sha256": sha('c')}},
            ]
        }),
    );
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));
    let response = get(&server.url("/simple/demo/"), JSON).await;
    assert_eq!(response.status(), 200, "{}", server.logs());
    let page: serde_json::Value = response.json().await.unwrap();
    assert_eq!(filenames(&page), ["demo-1.0.tar.gz", "demo-2.0.tar.gz"]);

    let health = get_json(&server.url("/health")).await;
    let upstream = &health["upstreams"][0];
    assert_eq!(upstream["state"], "up");
    assert_eq!(upstream["dropped_entries"], 2);
    assert_eq!(upstream["last_dropped"], "page demo: files[1]: no string `url`");
    assert_eq!(health["status"], "ok");
    let logs = server.logs();
    assert!(
        logs.contains("left malformed entries out of an upstream page")
            && logs.contains("page=\"demo\"")
            && logs.contains("dropped=2"),
        "{logs}"
    );
}

#[tokio::test]
async fn unreadable_json_falls_back_to_html_on_the_same_index() {
    let fake = FakeIndex::start();
    // JSON whose `files` is not a list, as a broken server might send; its HTML is fine.
    fake.negotiated(
        "demo/",
        r#"{"meta": {"api-version": "1.1"}, "name": "demo", "files": "see the html"}"#,
        &html_page(&[("demo-1.0.tar.gz", 'a'), ("demo-2.0.tar.gz", 'b')]),
    );
    fake.negotiated(
        "other/",
        r#"{"name": "other", "files": []}"#,
        &html_page(&[("other-1.0.tar.gz", 'c')]),
    );
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));

    let response = get(&server.url("/simple/demo/"), JSON).await;
    assert_eq!(response.status(), 200, "{}", server.logs());
    assert_eq!(header(&response, "x-cache"), "miss");
    let page: serde_json::Value = response.json().await.unwrap();
    assert_eq!(filenames(&page), ["demo-1.0.tar.gz", "demo-2.0.tar.gz"]);
    assert_eq!(page["files"][1]["hashes"]["sha256"], sha('b'));

    let asked: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|(path, _)| path == "/simple/demo/")
        .map(|(_, headers)| headers["accept"].clone())
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked[0].starts_with("application/vnd.pypi.simple.v1+json"),
        "{asked:?}"
    );
    assert!(
        !asked[1].contains("json"),
        "the second request asks for HTML alone: {asked:?}"
    );

    // The index's JSON is remembered as unusable: the next project is asked for in HTML at once.
    let other = get(&server.url("/simple/other/"), JSON).await;
    assert_eq!(other.status(), 200);
    let other: serde_json::Value = other.json().await.unwrap();
    assert_eq!(filenames(&other), ["other-1.0.tar.gz"]);
    assert_eq!(fake.hits("other/"), 1);
    let accept = fake.last_header("other/", "accept").unwrap();
    assert!(!accept.contains("json"), "{accept}");

    let health = get_json(&server.url("/health")).await;
    let upstream = &health["upstreams"][0];
    assert_eq!(upstream["state"], "up", "it answered, in HTML: {health}");
    let why = upstream["json_unusable"].as_str().unwrap();
    assert!(why.contains("`files` is not an array"), "{why}");
    let logs = server.logs();
    assert!(
        logs.contains("unreadable JSON page; asking the index for HTML") && logs.contains("page=\"demo\""),
        "{logs}"
    );
}

#[tokio::test]
async fn nothing_readable_is_a_502_that_says_why_and_health_says_unreadable() {
    let fake = FakeIndex::start();
    fake.negotiated(
        "demo/",
        r#"{"name": "demo", "files": [1, 2"#,
        "<html><head><meta name=\"pypi:repository-version\" content=\"2.0\"></head></html>",
    );
    // An HTML page that is not UTF-8 cannot be read either.
    fake.file(
        "/simple/latin/",
        "text/html",
        b"<a href=\"x-1.0.tar.gz\">caf\xe9</a>".to_vec(),
    );
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));

    let response = get(&server.url("/simple/latin/"), JSON).await;
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("sent an HTML page pkgmirror cannot read: the body is not UTF-8"),
        "{body}"
    );
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["upstreams"][0]["state"], "unreadable", "{health}");
    assert_eq!(health["status"], "degraded");
    let error = health["upstreams"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("not UTF-8"), "{error}");
    let logs = server.logs();
    assert!(
        logs.contains("upstream failed") && logs.contains("page=\"latin\"") && logs.contains("index="),
        "{logs}"
    );

    // The JSON is cut off and the HTML is of a major version no client may read: both unusable.
    let response = get(&server.url("/simple/demo/"), JSON).await;
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("sent a JSON page pkgmirror cannot read: invalid Simple API JSON: EOF while parsing")
            && body.contains("asked for HTML instead, and that failed too")
            && body.contains("unsupported api-version"),
        "{body}"
    );
}

/// After the TTL, an index answering 200 with something that is not a Simple API page (a
/// maintenance page, HTML cut short, JSON under a content type that does not say so) must not
/// replace the last good copy: the stored page is served stale and the index is `unreadable`.
#[tokio::test]
async fn a_200_that_is_not_an_index_page_never_replaces_the_stored_copy() {
    let good = json!({
        "meta": {"api-version": "1.0"},
        "name": "demo",
        "files": [
            {"filename": "demo-1.0.tar.gz", "url": "/files/demo-1.0.tar.gz", "hashes": {"sha256": sha('a')}},
            {"filename": "demo-2.0.tar.gz", "url": "/files/demo-2.0.tar.gz", "hashes": {"sha256": sha('b')}},
        ]
    });
    let not_pages = [
        (
            "text/html; charset=utf-8",
            "<html><body><h1>Down for maintenance</h1><p>Back soon.</p></body></html>".to_owned(),
        ),
        (
            "text/html",
            "<!DOCTYPE html><html><head><title>Links for demo</title>".to_owned(),
        ),
        // Another body than the stored one, or the index would answer 304 to the stored ETag.
        (
            "application/octet-stream",
            json!({"name": "demo", "files": []}).to_string(),
        ),
    ];
    for (content_type, body) in not_pages {
        let fake = FakeIndex::start();
        fake.json("demo/", &good);
        let dir = temp_dir();
        let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "1s"));
        let url = server.url("/simple/demo/");
        let first = get(&url, JSON).await;
        assert_eq!(header(&first, "x-cache"), "miss");
        let first: serde_json::Value = first.json().await.unwrap();

        fake.page("demo/", content_type, &body);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let answer = get(&url, JSON).await;
        assert_eq!(answer.status(), 200, "{content_type}: {}", server.logs());
        assert_eq!(header(&answer, "x-cache"), "stale", "{content_type}");
        let page: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(filenames(&page), filenames(&first), "{content_type}");
        assert_eq!(fake.hits("demo/"), 2, "{content_type}: the index was asked again");
        let health = get_json(&server.url("/health")).await;
        assert_eq!(
            health["upstreams"][0]["state"], "unreadable",
            "{content_type}: {health}"
        );
        let error = health["upstreams"][0]["last_error"].as_str().unwrap();
        assert!(error.contains("not a Simple API page"), "{content_type}: {error}");
    }
}

/// A project really emptied upstream empties here too: an empty page that says it is a Simple
/// API page (the JSON content type, or PEP 629's meta tag in HTML) is believed.
#[tokio::test]
async fn an_empty_page_that_says_what_it_is_empties_the_project() {
    for (content_type, empty) in [
        (JSON, json!({"meta": {"api-version": "1.0"}, "name": "demo", "files": []}).to_string()),
        (
            "text/html",
            "<!DOCTYPE html><html><head><meta name=\"pypi:repository-version\" content=\"1.0\"></head><body></body></html>"
                .to_owned(),
        ),
    ] {
        let fake = FakeIndex::start();
        fake.html("demo/", &html_page(&[("demo-1.0.tar.gz", 'a')]));
        let dir = temp_dir();
        let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "1s"));
        let url = server.url("/simple/demo/");
        let first: serde_json::Value = get(&url, JSON).await.json().await.unwrap();
        assert_eq!(filenames(&first), ["demo-1.0.tar.gz"]);

        fake.page("demo/", content_type, &empty);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let answer = get(&url, JSON).await;
        assert_eq!(header(&answer, "x-cache"), "miss", "{content_type}");
        let page: serde_json::Value = answer.json().await.unwrap();
        assert!(filenames(&page).is_empty(), "{content_type}: {page}");
        assert!(server.logged("no longer lists any file"), "{}", server.logs());
    }
}
