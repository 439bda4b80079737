//! PEP 740 provenance: pages link each file's provenance at the mirror under an https public URL
//! (and pass the index's https links through otherwise); `{filename}.provenance` serves the
//! index's object, fetched once, from the store from then on, also while the index is down.

use serde_json::json;

use crate::support::fixtures::sha;
use crate::support::*;

/// The object the index serves for `demo-1.0.tar.gz`, byte for byte as a client must get it.
const PROVENANCE: &str =
    r#"{"version": 1, "attestation_bundles": [{"publisher": {"kind": "test"}, "attestations": []}]}"#;

/// `demo`: a file whose provenance the fake serves on its own origin (plain http, as an index
/// inside a network would), one whose provenance is elsewhere over https (never fetched here),
/// and one without provenance.
fn publish(fake: &FakeIndex) {
    fake.file(
        "/provenance/demo-1.0.tar.gz",
        "application/json",
        PROVENANCE.as_bytes().to_vec(),
    );
    let file = |filename: &str, c: char| {
        json!({
            "filename": filename,
            "url": format!("http://{}/files/{filename}", fake.addr),
            "hashes": {"sha256": sha(c)},
            "size": 10,
        })
    };
    let mut files = vec![
        file("demo-1.0.tar.gz", 'a'),
        file("demo-1.0-py3-none-any.whl", 'b'),
        file("demo-2.0.tar.gz", 'c'),
    ];
    files[0]["provenance"] = json!("/provenance/demo-1.0.tar.gz");
    files[1]["provenance"] = json!("https://files.example/provenance/demo-1.0-py3-none-any.whl");
    fake.json(
        "demo/",
        &json!({
            "meta": {"api-version": "1.3"},
            "name": "demo",
            "versions": ["1.0", "2.0"],
            "files": files,
        }),
    );
}

fn launch(fake: &FakeIndex, public_url: Option<&str>) -> Launch {
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch.env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    if let Some(url) = public_url {
        launch
            .env("PKGMIRROR__SERVER__PUBLIC_URL", url)
            .env("PKGMIRROR__SERVER__ALLOW_OPEN_ADMIN", "true");
    }
    launch
}

/// Each file's `provenance` on the JSON page at `path`.
async fn json_links(server: &Server, path: &str) -> Vec<serde_json::Value> {
    let page = get_json(&server.url(path)).await;
    let files = page["files"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {page}"));
    files.iter().map(|f| f["provenance"].clone()).collect()
}

async fn html_page(server: &Server, path: &str) -> String {
    let response = get(&server.url(path), HTML).await;
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.unwrap()
}

/// GET (or HEAD) of a provenance route: status, X-Cache, Content-Type and body.
async fn fetch(server: &Server, method: reqwest::Method, path: &str) -> (u16, String, String, String) {
    let response = client().request(method, server.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let cache = header(&response, "x-cache").to_owned();
    let content_type = header(&response, "content-type").to_owned();
    (status, cache, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn an_https_public_url_serves_provenance_from_the_mirror_once_fetched() {
    let fake = FakeIndex::start();
    publish(&fake);
    let dir = temp_dir();
    let node = launch(&fake, Some("https://mirror.example/pypi/"));
    let server = Server::start(dir.path(), &node);

    let mirror = "https://mirror.example/pypi/simple/demo";
    assert_eq!(
        json_links(&server, "/simple/demo/").await,
        [
            json!(format!("{mirror}/demo-1.0.tar.gz.provenance")),
            json!(format!("{mirror}/demo-1.0-py3-none-any.whl.provenance")),
            json!(null),
        ]
    );
    let html = html_page(&server, "/simple/demo/").await;
    for filename in ["demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl"] {
        let link = format!("data-provenance=\"{mirror}/{filename}.provenance\"");
        assert!(html.contains(&link), "{link} in\n{html}");
    }
    assert_eq!(html.matches("data-provenance").count(), 2, "{html}");
    // The view of one index links its own route.
    assert_eq!(
        json_links(&server, "/indexes/main/simple/demo/").await[0],
        "https://mirror.example/pypi/indexes/main/simple/demo/demo-1.0.tar.gz.provenance"
    );

    let route = "/simple/demo/demo-1.0.tar.gz.provenance";
    let first = fetch(&server, reqwest::Method::GET, route).await;
    assert_eq!(
        first,
        (200, "miss".into(), "application/json".into(), PROVENANCE.into())
    );
    let second = fetch(&server, reqwest::Method::GET, route).await;
    assert_eq!(
        second,
        (200, "hit".into(), "application/json".into(), PROVENANCE.into())
    );
    let head = client().head(server.url(route)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), PROVENANCE.len().to_string());
    // The view's route serves the same stored object.
    let view = fetch(
        &server,
        reqwest::Method::GET,
        "/indexes/main/simple/demo/demo-1.0.tar.gz.provenance",
    )
    .await;
    assert_eq!(
        (view.0, view.1.as_str(), view.3.as_str()),
        (200, "hit", PROVENANCE)
    );
    assert_eq!(fake.hits_of("/provenance/demo-1.0.tar.gz"), 1, "fetched once");

    // An index that offers none: 404, saying so.
    let (status, _, _, body) = fetch(
        &server,
        reqwest::Method::GET,
        "/simple/demo/demo-2.0.tar.gz.provenance",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("the index offers no provenance for 'demo-2.0.tar.gz'"),
        "{body}"
    );

    // The stored object needs no upstream.
    fake.stop();
    let offline = fetch(&server, reqwest::Method::GET, route).await;
    assert_eq!((offline.0, offline.3.as_str()), (200, PROVENANCE));

    // A blob like any other: counted with its file's ecosystem, and checked by `cache verify`.
    let (code, out, err) = cache_command(dir.path(), &["stats", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &stats["blobs"],
            &stats["ecosystems"][0]["blobs"],
            &stats["unlisted_blobs"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{stats}"
    );
    server.terminate();
    let (code, out, err) = cache_command(dir.path(), &["verify"], &[]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("checked 1 blob (") && out.contains("all blobs match their sha256"),
        "{out}"
    );

    // Carried in a bundle, it is served by a node that never reached the index.
    let bundle = dir.path().join("bundle.tar");
    let bundle = bundle.to_str().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (code, out, err) = run_pkgmirror(
        dir.path(),
        &["export", "--out", bundle, "--data-dir", data_dir],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let other = temp_dir();
    let other_dir = other.path().to_str().unwrap();
    let (code, out, err) = run_pkgmirror(other.path(), &["import", bundle, "--data-dir", other_dir], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let offline = Server::start(other.path(), &node);
    assert_eq!(fetch(&offline, reqwest::Method::GET, route).await.3, PROVENANCE);
    assert_eq!(
        json_links(&offline, "/simple/demo/").await[0],
        json!(format!("{mirror}/demo-1.0.tar.gz.provenance"))
    );
}

#[tokio::test]
async fn without_an_https_public_url_only_the_indexs_https_links_pass_through() {
    let fake = FakeIndex::start();
    publish(&fake);
    for public_url in [None, Some("http://mirror.example/")] {
        let dir = temp_dir();
        let server = Server::start(dir.path(), &launch(&fake, public_url));
        let https = "https://files.example/provenance/demo-1.0-py3-none-any.whl";
        // The fake's own link is plain http: a client must not be given it.
        assert_eq!(
            json_links(&server, "/simple/demo/").await,
            [json!(null), json!(https), json!(null)],
            "public URL {public_url:?}"
        );
        let html = html_page(&server, "/simple/demo/").await;
        assert!(html.contains(&format!("data-provenance=\"{https}\"")), "{html}");
        assert_eq!(html.matches("data-provenance").count(), 1, "{html}");
    }
}
