//! Distribution files: first download streamed and verified, later ones local; single-flight;
//! hash mismatches and cut streams never stored; Range/HEAD/ETag; hostile names.

use std::time::Duration;

use serde_json::json;

use crate::support::fixtures::{payload, sha256_hex};
use crate::support::packages;
use crate::support::*;

/// Lists `filename` on `demo`'s page with the given sha256 and size, served at `/files/{filename}`.
fn publish(fake: &FakeIndex, filename: &str, body: &[u8], listed_sha: &str) {
    fake.file(
        &format!("/files/{filename}"),
        "application/octet-stream",
        body.to_vec(),
    );
    fake.json(
        "demo/",
        &json!({
            "meta": {"api-version": "1.1"},
            "name": "demo",
            "versions": ["1.0"],
            "files": [{
                "filename": filename,
                "url": format!("http://{}/files/{filename}", fake.addr),
                "hashes": {"sha256": listed_sha},
                "size": body.len(),
            }]
        }),
    );
}

fn launch(fake: &FakeIndex) -> Launch {
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch.env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    launch
}

#[tokio::test]
async fn the_first_download_streams_and_later_ones_are_served_locally() {
    let fake = FakeIndex::start();
    let body = payload(3 * 1024 * 1024 + 17, 1);
    let sha = sha256_hex(&body);
    publish(&fake, "demo-1.0.tar.gz", &body, &sha);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    let url = server.url("/simple/demo/demo-1.0.tar.gz");

    let first = client()
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-cache"), "miss");
    assert_eq!(header(&first, "etag"), format!("\"{sha}\""));
    assert_eq!(header(&first, "content-length"), body.len().to_string());
    assert_eq!(header(&first, "content-type"), "application/gzip");
    assert_eq!(
        header(&first, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert!(
        header(&first, "content-encoding").is_empty(),
        "never an encoding on archives"
    );
    assert_eq!(first.bytes().await.unwrap(), body);

    let second = client()
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&second, "x-cache"), "hit");
    assert!(header(&second, "content-encoding").is_empty());
    assert_eq!(header(&second, "etag"), format!("\"{sha}\""));
    assert_eq!(second.bytes().await.unwrap(), body);
    assert_eq!(fake.hits_of("/files/demo-1.0.tar.gz"), 1);
    assert_eq!(blob_files(&dir, "sha256"), 1);
    assert_eq!(blob_files(&dir, "tmp"), 0);

    // Without the upstream, the page (still fresh) and the file are served from the mirror.
    fake.stop();
    let offline = client().get(&url).send().await.unwrap();
    assert_eq!(offline.status(), 200);
    assert_eq!(offline.bytes().await.unwrap(), body);

    tokio::time::sleep(Duration::from_secs(6)).await; // one access-batch flush
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["cache"]["blobs"], 1);
    assert_eq!(health["cache"]["blob_bytes"], body.len());
}

#[tokio::test]
async fn twenty_concurrent_cold_clients_share_one_upstream_fetch() {
    let fake = FakeIndex::start();
    let body = payload(2 * 1024 * 1024, 2);
    let sha = sha256_hex(&body);
    publish(&fake, "demo-1.0-py3-none-any.whl", &body, &sha);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    // Warm the page, then slow the upstream so the twenty file requests overlap.
    get_json(&server.url("/simple/demo/")).await;
    fake.set(Behaviour::Delay(Duration::from_millis(500)));
    let url = server.url("/simple/demo/demo-1.0-py3-none-any.whl");
    let requests = (0..20).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { client().get(&url).send().await.unwrap().bytes().await.unwrap() })
    });
    for result in futures::future::join_all(requests).await {
        assert_eq!(result.unwrap(), body);
    }
    assert_eq!(fake.hits_of("/files/demo-1.0-py3-none-any.whl"), 1);
}

#[tokio::test]
async fn a_file_with_the_wrong_hash_is_never_served_complete_nor_stored() {
    let fake = FakeIndex::start();
    let body = payload(1024 * 1024, 3);
    publish(&fake, "demo-1.0.tar.gz", &body, &sha256_hex(b"other bytes"));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    let url = server.url("/simple/demo/demo-1.0.tar.gz");
    for attempt in 1..=2 {
        let response = client().get(&url).send().await.unwrap();
        // A cut connection (an error here) is what a client must see; bytes, if any, are short.
        if let Ok(got) = response.bytes().await {
            assert!(
                got.len() < body.len(),
                "attempt {attempt}: a complete wrong file was served"
            );
        }
        assert_eq!(
            fake.hits_of("/files/demo-1.0.tar.gz"),
            attempt,
            "nothing cached: each try goes upstream"
        );
    }
    assert_eq!(blob_files(&dir, "sha256"), 0);
    assert_eq!(blob_files(&dir, "tmp"), 0);
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["cache"]["hash_mismatches"], 2);
    assert!(server.logged("hash mismatch"), "{}", server.logs());
}

#[tokio::test]
async fn a_cut_upstream_stream_leaves_nothing_behind() {
    let fake = FakeIndex::start();
    let body = payload(512 * 1024, 4);
    let sha = sha256_hex(&body);
    publish(&fake, "demo-1.0.tar.gz", &body, &sha);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    get_json(&server.url("/simple/demo/")).await;
    fake.set(Behaviour::Truncate);
    let url = server.url("/simple/demo/demo-1.0.tar.gz");
    let cut = client().get(&url).send().await.unwrap();
    assert!(cut.bytes().await.map_or(true, |b| b.len() < body.len()));
    assert_eq!(blob_files(&dir, "sha256"), 0);
    assert_eq!(blob_files(&dir, "tmp"), 0);
    fake.set(Behaviour::Normal);
    let whole = client().get(&url).send().await.unwrap();
    assert_eq!(whole.bytes().await.unwrap(), body);
}

/// A file download whose upstream stops answering is a 504, as the README says, whether it
/// stops before the headers or in the middle of the body; nothing is kept.
#[tokio::test]
async fn a_download_that_times_out_is_a_504() {
    let fake = FakeIndex::start();
    let body = payload(4096, 9);
    publish(&fake, "demo-1.0.tar.gz", &body, &sha256_hex(&body));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    get_json(&server.url("/simple/demo/")).await;
    let url = server.url("/simple/demo/demo-1.0.tar.gz");
    for behaviour in [Behaviour::Stall, Behaviour::StallMidBody] {
        fake.set(behaviour.clone());
        let response = get(&url, "*/*").await;
        assert_eq!(response.status(), 504, "{behaviour:?}");
        let message = response.json::<serde_json::Value>().await.unwrap()["message"].to_string();
        assert!(message.contains("timed out"), "{behaviour:?}: {message}");
    }
    assert_eq!(blob_files(&dir, "sha256"), 0);
}

#[tokio::test]
async fn ranges_head_and_etags_on_files() {
    let fake = FakeIndex::start();
    let body = payload(100_000, 5);
    let sha = sha256_hex(&body);
    publish(&fake, "demo-1.0-py3-none-any.whl", &body, &sha);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    let url = server.url("/simple/demo/demo-1.0-py3-none-any.whl");
    let c = client();

    // A cold Range request waits for the download, then answers the range.
    let cold = c.get(&url).header("Range", "bytes=10-19").send().await.unwrap();
    assert_eq!(cold.status(), 206);
    assert_eq!(header(&cold, "content-range"), "bytes 10-19/100000");
    assert_eq!(cold.bytes().await.unwrap(), body[10..20]);

    let suffix = c
        .get(&url)
        .header("Range", "bytes=-5")
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(suffix.status(), 206);
    assert!(header(&suffix, "content-encoding").is_empty());
    assert_eq!(suffix.bytes().await.unwrap(), body[body.len() - 5..]);

    let open_ended = c.get(&url).header("Range", "bytes=99990-").send().await.unwrap();
    assert_eq!(open_ended.bytes().await.unwrap(), body[99990..]);

    let unsatisfiable = c.get(&url).header("Range", "bytes=200000-").send().await.unwrap();
    assert_eq!(unsatisfiable.status(), 416);

    let head = c.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), "100000");
    assert_eq!(header(&head, "accept-ranges"), "bytes");
    assert_eq!(header(&head, "etag"), format!("\"{sha}\""));
    assert!(head.bytes().await.unwrap().is_empty());

    let cached = c
        .get(&url)
        .header("If-None-Match", format!("\"{sha}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    let changed = c
        .get(&url)
        .header("If-None-Match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(fake.hits_of("/files/demo-1.0-py3-none-any.whl"), 1);
}

/// RFC 9110 edge cases of Range on a stored file: several ranges are ignored (the whole file, 200,
/// no Content-Range), `bytes=0-` is a range like any other (206 with its Content-Range), a range
/// on HEAD is ignored, and so is one whose `If-Range` names other bytes than ours.
#[tokio::test]
async fn multiple_and_whole_file_ranges_follow_rfc_9110() {
    let fake = FakeIndex::start();
    let body = payload(50_000, 9);
    publish(&fake, "demo-1.0.tar.gz", &body, &sha256_hex(&body));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    let url = server.url("/simple/demo/demo-1.0.tar.gz");
    let c = client();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200, "now stored");

    let several = c
        .get(&url)
        .header("Range", "bytes=0-9, 20-29")
        .send()
        .await
        .unwrap();
    assert_eq!(several.status(), 200);
    assert_eq!(header(&several, "content-range"), "");
    assert_eq!(several.bytes().await.unwrap(), body);

    let whole = c.get(&url).header("Range", "bytes=0-").send().await.unwrap();
    assert_eq!(whole.status(), 206);
    assert_eq!(header(&whole, "content-range"), "bytes 0-49999/50000");
    assert_eq!(whole.bytes().await.unwrap(), body);

    let head = c.head(&url).header("Range", "bytes=5-9").send().await.unwrap();
    assert_eq!(head.status(), 200, "Range is defined for GET only");
    assert_eq!(header(&head, "content-range"), "");
    assert_eq!(header(&head, "content-length"), "50000");

    let etag = format!("\"{}\"", sha256_hex(&body));
    let same = c
        .get(&url)
        .header("Range", "bytes=5-9")
        .header("If-Range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 206, "If-Range naming our ETag keeps the range");
    assert_eq!(same.bytes().await.unwrap(), body[5..10]);
    for other in ["\"0123\"", "Sat, 01 Jan 2000 00:00:00 GMT"] {
        let changed = c
            .get(&url)
            .header("Range", "bytes=5-9")
            .header("If-Range", other)
            .send()
            .await
            .unwrap();
        assert_eq!(
            changed.status(),
            200,
            "If-Range {other} does not match: the whole file"
        );
        assert_eq!(changed.bytes().await.unwrap(), body);
    }
}

#[tokio::test]
async fn names_that_try_to_leave_the_tree_never_reach_the_filesystem() {
    let fake = FakeIndex::start();
    let body = payload(1000, 6);
    publish(&fake, "demo-1.0.tar.gz", &body, &sha256_hex(&body));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    for path in [
        "/simple/demo/..%2f..%2fcatalogue.sqlite3",
        "/simple/demo/%2e%2e",
        "/simple/demo/..",
        "/simple/demo/.hidden",
        "/simple/demo/%2Fetc%2Fpasswd",
        "/simple/demo/a%00b.whl",
        "/simple/demo/not-listed-1.0.tar.gz",
        "/simple/demo/demo-1.0.tar.gz%2f",
    ] {
        let (status, body) = raw_get(&server.base, path, "*/*");
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
    }
    assert_eq!(fake.hits_of("/files/demo-1.0.tar.gz"), 0);
    // A non-normalized project name redirects like pages do.
    let response = client()
        .get(server.url("/simple/Demo/demo-1.0.tar.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 301);
    assert_eq!(
        header(&response, "location"),
        server.url("/simple/demo/demo-1.0.tar.gz")
    );
}

#[tokio::test]
async fn file_urls_on_private_addresses_are_refused_by_default() {
    let fake = FakeIndex::start();
    let body = payload(1000, 7);
    publish(&fake, "demo-1.0.tar.gz", &body, &sha256_hex(&body));
    let dir = temp_dir();
    // The index itself is configuration and may be local; the file URLs its pages list may not.
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));
    let response = get(&server.url("/simple/demo/demo-1.0.tar.gz"), "application/json").await;
    assert_eq!(
        response.status(),
        502,
        "a download that cannot start is a clear error"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("loopback, link-local or private"),
        "{body}"
    );
    assert_eq!(fake.hits_of("/files/demo-1.0.tar.gz"), 0);
    assert!(
        server.logged("loopback, link-local or private"),
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn core_metadata_is_served_and_verified() {
    let fake = FakeIndex::start();
    let wheel = payload(5000, 8);
    let metadata = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n".to_vec();
    fake.file(
        "/files/demo-1.0-py3-none-any.whl",
        "application/zip",
        wheel.clone(),
    );
    fake.file(
        "/files/demo-1.0-py3-none-any.whl.metadata",
        "text/plain",
        metadata.clone(),
    );
    fake.file(
        "/files/demo-2.0-py3-none-any.whl.metadata",
        "text/plain",
        b"tampered".to_vec(),
    );
    fake.json(
        "demo/",
        &json!({
            "meta": {"api-version": "1.1"},
            "name": "demo",
            "versions": ["1.0", "2.0"],
            "files": [
                {"filename": "demo-1.0-py3-none-any.whl", "url": format!("http://{}/files/demo-1.0-py3-none-any.whl", fake.addr),
                 "hashes": {"sha256": sha256_hex(&wheel)}, "size": wheel.len(), "core-metadata": {"sha256": sha256_hex(&metadata)}},
                {"filename": "demo-2.0-py3-none-any.whl", "url": format!("http://{}/files/demo-2.0-py3-none-any.whl", fake.addr),
                 "hashes": {"sha256": sha256_hex(&wheel)}, "size": wheel.len(), "core-metadata": {"sha256": sha256_hex(&metadata)}},
                {"filename": "demo-3.0.tar.gz", "url": format!("http://{}/files/demo-3.0.tar.gz", fake.addr),
                 "hashes": {"sha256": sha256_hex(&wheel)}, "size": wheel.len()}
            ]
        }),
    );
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    let url = server.url("/simple/demo/demo-1.0-py3-none-any.whl.metadata");
    let first = client().get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "etag"), format!("\"{}\"", sha256_hex(&metadata)));
    assert_eq!(first.bytes().await.unwrap(), metadata);
    let again = client().get(&url).send().await.unwrap();
    assert_eq!(header(&again, "x-cache"), "hit");
    assert_eq!(fake.hits_of("/files/demo-1.0-py3-none-any.whl.metadata"), 1);

    let tampered = client()
        .get(server.url("/simple/demo/demo-2.0-py3-none-any.whl.metadata"))
        .send()
        .await
        .unwrap();
    assert!(tampered.bytes().await.map_or(true, |b| b != b"tampered"[..]));

    let none = get(
        &server.url("/simple/demo/demo-3.0.tar.gz.metadata"),
        "application/json",
    )
    .await;
    assert_eq!(none.status(), 404);
}

#[tokio::test]
async fn metadata_is_extracted_from_a_cached_wheel_when_the_index_offers_none() {
    let fake = FakeIndex::start();
    let wheel = packages::wheel("demo", "1.0", &["lib-a>=1.0"], Some(">=3.8"));
    let metadata = wheel.metadata.clone().expect("a wheel has METADATA");
    publish(&fake, &wheel.filename, &wheel.bytes, &wheel.sha256);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    let page = get_json(&server.url("/simple/demo/")).await;
    assert_eq!(
        page["files"][0]["core-metadata"], false,
        "nothing to offer before the wheel is cached"
    );
    let not_yet = get(
        &server.url(&format!("/simple/demo/{}.metadata", wheel.filename)),
        "application/json",
    )
    .await;
    assert_eq!(not_yet.status(), 404);

    let downloaded = client()
        .get(server.url(&format!("/simple/demo/{}", wheel.filename)))
        .send()
        .await
        .unwrap();
    assert_eq!(downloaded.bytes().await.unwrap(), wheel.bytes);

    // From now on the page advertises the extracted metadata, in both formats, and serves it.
    let page = get_json(&server.url("/simple/demo/")).await;
    let expected = sha256_hex(&metadata);
    assert_eq!(page["files"][0]["core-metadata"], json!({"sha256": expected}));
    let html = get(&server.url("/simple/demo/"), "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&format!("data-core-metadata=\"sha256={expected}\"")),
        "{html}"
    );
    let served = client()
        .get(server.url(&format!("/simple/demo/{}.metadata", wheel.filename)))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(header(&served, "etag"), format!("\"{expected}\""));
    assert_eq!(served.bytes().await.unwrap(), metadata);
    assert_eq!(
        fake.hits_of(&format!("/files/{}.metadata", wheel.filename)),
        0,
        "never asked upstream"
    );
    assert_eq!(
        fake.hits("demo/"),
        1,
        "re-rendered from the cached snapshot, not refetched"
    );

    // Both the wheel and its extract are evicted: the page still promises the metadata, so the
    // mirror fetches the wheel again and re-extracts instead of answering 404.
    server.kill();
    std::fs::remove_dir_all(dir.path().join("blobs").join("sha256")).unwrap();
    let server = Server::start(dir.path(), &launch(&fake));
    let page = get_json(&server.url("/simple/demo/")).await;
    assert_eq!(page["files"][0]["core-metadata"], json!({"sha256": expected}));
    let again = client()
        .get(server.url(&format!("/simple/demo/{}.metadata", wheel.filename)))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.bytes().await.unwrap(), metadata);
    assert_eq!(
        fake.hits_of(&format!("/files/{}", wheel.filename)),
        2,
        "the wheel was fetched again"
    );
}

#[tokio::test]
async fn after_sigkill_mid_download_committed_files_are_served_and_partial_ones_are_gone() {
    let fake = FakeIndex::start();
    let done = payload(200_000, 9);
    let partial = payload(1_000_000, 10);
    fake.file("/files/demo-1.0.tar.gz", "application/gzip", done.clone());
    fake.file("/files/demo-2.0.tar.gz", "application/gzip", partial.clone());
    let entry = |name: &str, body: &[u8]| {
        json!({"filename": name, "url": format!("http://{}/files/{name}", fake.addr),
               "hashes": {"sha256": sha256_hex(body)}, "size": body.len()})
    };
    fake.json(
        "demo/",
        &json!({"meta": {"api-version": "1.1"}, "name": "demo", "versions": ["1.0", "2.0"],
                "files": [entry("demo-1.0.tar.gz", &done), entry("demo-2.0.tar.gz", &partial)]}),
    );
    let dir = temp_dir();
    let launch = launch(&fake);
    let server = Server::start(dir.path(), &launch);
    let first = client()
        .get(server.url("/simple/demo/demo-1.0.tar.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.bytes().await.unwrap(), done);

    fake.set(Behaviour::StallMidBody);
    let url = server.url("/simple/demo/demo-2.0.tar.gz");
    let hanging = tokio::spawn(async move { client().get(&url).send().await.map(|r| r.status()) });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while blob_files(&dir, "tmp") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the download never started spooling"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    hanging.abort();
    fake.stop();

    let server = Server::start(dir.path(), &launch);
    assert_eq!(
        blob_files(&dir, "tmp"),
        0,
        "the partial spool was removed at start"
    );
    assert_eq!(blob_files(&dir, "sha256"), 1, "only the committed file is stored");
    let again = client()
        .get(server.url("/simple/demo/demo-1.0.tar.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&again, "x-cache"), "hit");
    assert_eq!(again.bytes().await.unwrap(), done);
    let missing = get(&server.url("/simple/demo/demo-2.0.tar.gz"), "application/json").await;
    assert_eq!(missing.status(), 502, "never served from a partial download");
}

#[tokio::test]
async fn a_client_that_leaves_does_not_stop_the_download_for_the_others() {
    let fake = FakeIndex::start();
    let body = payload(3 * 1024 * 1024, 11);
    publish(&fake, "demo-1.0.tar.gz", &body, &sha256_hex(&body));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    get_json(&server.url("/simple/demo/")).await;
    fake.set(Behaviour::Delay(Duration::from_millis(300)));
    let url = server.url("/simple/demo/demo-1.0.tar.gz");
    // The first client reads a little and hangs up; the second stays to the end.
    let leaver = {
        let url = url.clone();
        tokio::spawn(async move {
            let mut response = client().get(&url).send().await.unwrap();
            let _first = response.chunk().await;
            drop(response);
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stayer = client().get(&url).send().await.unwrap();
    leaver.await.unwrap();
    assert_eq!(stayer.bytes().await.unwrap(), body);
    assert_eq!(fake.hits_of("/files/demo-1.0.tar.gz"), 1);
    assert_eq!(
        blob_files(&dir, "sha256"),
        1,
        "stored despite the client that left"
    );
}

#[tokio::test]
async fn a_file_released_after_the_page_was_cached_is_found_by_one_page_refresh() {
    let fake = FakeIndex::start();
    let old = payload(1000, 12);
    publish(&fake, "demo-1.0.tar.gz", &old, &sha256_hex(&old));
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake));
    get_json(&server.url("/simple/demo/")).await;
    // The upstream releases 2.0; the mirror's page (TTL 10 minutes) does not list it yet.
    let new = payload(2000, 13);
    publish(&fake, "demo-2.0.tar.gz", &new, &sha256_hex(&new));
    let response = client()
        .get(server.url("/simple/demo/demo-2.0.tar.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), new);
    assert_eq!(fake.hits("demo/"), 2, "one forced refresh of the page");
    // Names that are still unlisted do not refetch the page again within the interval.
    for name in ["demo-3.0.tar.gz", "demo-4.0.tar.gz"] {
        let missing = get(&server.url(&format!("/simple/demo/{name}")), "application/json").await;
        assert_eq!(missing.status(), 404);
        let body: serde_json::Value = missing.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("is not listed"),
            "{body}"
        );
    }
    assert_eq!(fake.hits("demo/"), 2);
}
