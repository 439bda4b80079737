//! The hex repository mirror over HTTP: every route, the registry's TTL, ETag and stale
//! behaviour, verification before caching, the tarball checksum gate, single-flight, the
//! catalogue records and the admin endpoint. The upstream is a fake serving the fixture
//! repository at its root.

use std::time::Duration;

use crate::support::fixtures::{payload, sha256_hex};
use crate::support::hex_fixtures::{
    HexRepo, HexRepoBuilder, SignWith, TEST_PUBLIC_KEY, release, serve, standard,
};
use crate::support::*;
use pkgmirror::ecosystem::Ecosystem;

const OCTETS: &str = "application/octet-stream";

/// A fake serving the standard fixture repository, and a mirror in front of it.
fn mirror(ttl: &str) -> (FakeIndex, HexRepo, tempfile::TempDir, Server) {
    let fake = FakeIndex::start();
    let repo = standard();
    serve(&fake, &repo);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_hex(&fake.root_url(), ttl));
    (fake, repo, dir, server)
}

/// GET `/hex{path}` as a client that would accept any transport encoding.
async fn hex_get(server: &Server, path: &str) -> reqwest::Response {
    client()
        .get(server.url(&format!("/hex{path}")))
        .header("Accept-Encoding", "gzip, deflate, br, zstd")
        .send()
        .await
        .unwrap()
}

async fn hex_get_if(server: &Server, path: &str, etag: &str) -> reqwest::Response {
    client()
        .get(server.url(&format!("/hex{path}")))
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn registry_files_are_served_byte_for_byte_and_cached() {
    let (fake, repo, _dir, server) = mirror("10m");
    for path in ["/names", "/versions", "/packages/fixbar", "//packages/fixfoo"] {
        let upstream_path = path.trim_start_matches('/');
        let upstream_path = format!("/{upstream_path}");
        let response = hex_get(&server, path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), OCTETS);
        assert_eq!(
            header(&response, "content-encoding"),
            "",
            "{path}: never a transport encoding"
        );
        assert_eq!(header(&response, "x-cache"), "miss", "{path}");
        let etag = header(&response, "etag").to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");
        assert_eq!(
            response.bytes().await.unwrap(),
            repo.file(&upstream_path),
            "{path}"
        );
        // Fresh: from the mirror, and 304 for a client that has it.
        let again = hex_get(&server, path).await;
        assert_eq!(header(&again, "x-cache"), "hit");
        assert_eq!(header(&again, "etag"), etag);
        assert_eq!(again.bytes().await.unwrap(), repo.file(&upstream_path));
        let revalidated = hex_get_if(&server, path, &etag).await;
        assert_eq!(revalidated.status(), 304, "{path}");
        assert_eq!(header(&revalidated, "etag"), etag);
        assert_eq!(fake.hits_of(&upstream_path), 1, "{path}: one upstream fetch");
    }
    // HEAD announces the length without a body.
    let head = client()
        .head(server.url("/hex/packages/fixbar"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(&head, "content-length"),
        repo.file("/packages/fixbar").len().to_string()
    );
    assert_eq!(fake.hits_of("/packages/fixbar"), 1);
}

#[tokio::test]
async fn a_stale_registry_file_is_revalidated_with_the_upstream_etag_and_served_when_upstream_fails() {
    let (fake, repo, _dir, server) = mirror("1s");
    let first = hex_get(&server, "/packages/fixbar").await;
    let etag = header(&first, "etag").to_owned();
    assert_eq!(header(&first, "x-cache"), "miss");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let revalidated = hex_get(&server, "/packages/fixbar").await;
    assert_eq!(header(&revalidated, "x-cache"), "hit", "a 304 upstream is a hit");
    assert_eq!(header(&revalidated, "etag"), etag);
    assert_eq!(revalidated.bytes().await.unwrap(), repo.file("/packages/fixbar"));
    assert_eq!(fake.hits_of("/packages/fixbar"), 2);
    assert_eq!(
        fake.last_header_of("/packages/fixbar", "if-none-match"),
        Some(etag_of(repo.file("/packages/fixbar"))),
        "the mirror revalidates with the upstream's own ETag"
    );

    // The upstream fails: the stored copy goes out, marked stale.
    fake.set(Behaviour::Status(503));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = hex_get(&server, "/packages/fixbar").await;
    assert_eq!(stale.status(), 200);
    assert_eq!(header(&stale, "x-cache"), "stale");
    assert_eq!(stale.bytes().await.unwrap(), repo.file("/packages/fixbar"));
    let health = get_json(&server.url("/health")).await;
    let hex = health["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["role"] == "hex")
        .unwrap()
        .clone();
    assert_eq!(hex["state"], "down");
    assert!(hex["last_error"].as_str().unwrap().contains("503"), "{hex}");
    assert_eq!(health["status"], "degraded");
}

#[tokio::test]
async fn cached_files_survive_a_restart_with_the_upstream_down() {
    let fake = FakeIndex::start();
    let repo = standard();
    serve(&fake, &repo);
    let dir = temp_dir();
    let launch = Launch::with_hex(&fake.root_url(), "1s");
    let server = Server::start(dir.path(), &launch);
    let tarball = repo.tarball("fixfoo", "1.1.0");
    assert_eq!(
        hex_get(&server, "/packages/fixfoo").await.bytes().await.unwrap(),
        repo.file("/packages/fixfoo")
    );
    let got = hex_get(&server, "/tarballs/fixfoo-1.1.0.tar").await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), tarball.bytes);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    fake.stop();

    let server = Server::start(dir.path(), &launch);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let registry = hex_get(&server, "//packages/fixfoo").await;
    assert_eq!(registry.status(), 200);
    assert_eq!(header(&registry, "x-cache"), "stale");
    assert_eq!(registry.bytes().await.unwrap(), repo.file("/packages/fixfoo"));
    let sha = sha256_hex(&tarball.bytes);
    let cached = hex_get_if(&server, "//tarballs/fixfoo-1.1.0.tar", &format!("\"{sha}\"")).await;
    assert_eq!(
        cached.status(),
        304,
        "rebar3 revalidates its tarballs with the ETag"
    );
    let cached = hex_get(&server, "/tarballs/fixfoo-1.1.0.tar").await;
    assert_eq!(cached.status(), 200);
    assert_eq!(header(&cached, "etag"), format!("\"{sha}\""));
    assert_eq!(header(&cached, "x-cache"), "hit");
    assert_eq!(cached.bytes().await.unwrap(), tarball.bytes);
    // Nothing cached and nothing upstream: a clear gateway error.
    let never = hex_get(&server, "/packages/fixbaz").await;
    assert_eq!(never.status(), 502);
    assert!(never.text().await.unwrap().contains("could not be reached"));
}

#[tokio::test]
async fn registry_files_that_fail_verification_are_refused_and_never_cached() {
    let cases = [
        (
            HexRepoBuilder::new()
                .package("fixfoo", vec![release("1.0.0", &[])])
                .sign_with(SignWith::OtherKey)
                .build(),
            "signed by another key",
        ),
        (
            HexRepoBuilder::new()
                .package("fixfoo", vec![release("1.0.0", &[])])
                .repository("evil")
                .build(),
            "names the repository 'evil' where 'hexpm' was expected",
        ),
    ];
    for (bad, expected) in cases {
        let fake = FakeIndex::start();
        serve(&fake, &bad);
        let dir = temp_dir();
        let server = Server::start(dir.path(), &Launch::with_hex(&fake.root_url(), "10m"));
        for path in ["/packages/fixfoo", "/names", "/versions"] {
            let response = hex_get(&server, path).await;
            assert_eq!(response.status(), 502, "{path}");
            let message = response.text().await.unwrap();
            assert!(message.contains("fails verification"), "{path}: {message}");
            if path == "/packages/fixfoo" {
                assert!(message.contains(expected), "{message}");
            }
        }
        // Not cached: the next request asks again.
        assert_eq!(hex_get(&server, "/packages/fixfoo").await.status(), 502);
        assert_eq!(fake.hits_of("/packages/fixfoo"), 2);
        // A release only the refused file lists is not served either: nothing vouches for it.
        let tarball = hex_get(&server, "/tarballs/fixfoo-1.0.0.tar").await;
        assert_eq!(tarball.status(), 502);
        assert_eq!(fake.hits_of("/tarballs/fixfoo-1.0.0.tar"), 0);
        // Once the upstream is right, it is served.
        let good = standard();
        serve(&fake, &good);
        let fixed = hex_get(&server, "/packages/fixfoo").await;
        assert_eq!(fixed.status(), 200);
        assert_eq!(fixed.bytes().await.unwrap(), good.file("/packages/fixfoo"));
    }
}

#[tokio::test]
async fn a_truncated_registry_file_is_not_cached() {
    let (fake, repo, _dir, server) = mirror("10m");
    fake.set(Behaviour::Truncate);
    let cut = hex_get(&server, "/packages/fixbar").await;
    assert_eq!(cut.status(), 502);
    let message = cut.text().await.unwrap();
    assert!(message.contains("broken response"), "{message}");
    fake.set(Behaviour::Normal);
    let whole = hex_get(&server, "/packages/fixbar").await;
    assert_eq!(whole.status(), 200);
    assert_eq!(header(&whole, "x-cache"), "miss");
    assert_eq!(whole.bytes().await.unwrap(), repo.file("/packages/fixbar"));
}

#[tokio::test]
async fn missing_packages_are_404_and_remembered_briefly() {
    let (fake, _repo, _dir, server) = mirror("10m");
    for _ in 0..3 {
        let missing = hex_get(&server, "/packages/nosuch").await;
        assert_eq!(missing.status(), 404);
        assert!(
            missing
                .text()
                .await
                .unwrap()
                .contains("has no /packages/nosuch (HTTP 404)")
        );
    }
    assert_eq!(fake.hits_of("/packages/nosuch"), 1, "the 404 is cached");
    // hex.pm's store answers 403 for what it does not have.
    fake.set(Behaviour::Status(403));
    let forbidden = hex_get(&server, "/packages/other").await;
    assert_eq!(forbidden.status(), 404);
    // A release the registry does not list.
    fake.set(Behaviour::Normal);
    let unknown = hex_get(&server, "/tarballs/fixbar-9.9.9.tar").await;
    assert_eq!(unknown.status(), 404);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("package 'fixbar' has no release '9.9.9'")
    );
}

#[tokio::test]
async fn tarballs_are_verified_stored_and_served_with_an_etag() {
    let (fake, repo, dir, server) = mirror("10m");
    for (name, version) in [("fixbar", "0.1.0"), ("fixbaz", "2.0.0-rc.1+build.5")] {
        let tarball = repo.tarball(name, version);
        let sha = sha256_hex(&tarball.bytes);
        // The version's `+` arrives raw or percent-encoded.
        for (i, file) in [
            format!("{name}-{version}.tar"),
            format!("{name}-{}.tar", version.replace('+', "%2B")),
        ]
        .iter()
        .enumerate()
        {
            let response = hex_get(&server, &format!("/tarballs/{file}")).await;
            assert_eq!(response.status(), 200, "{file}");
            assert_eq!(
                header(&response, "etag"),
                format!("\"{sha}\""),
                "rebar3 needs the ETag"
            );
            assert_eq!(header(&response, "content-encoding"), "");
            assert_eq!(header(&response, "x-cache"), if i == 0 { "miss" } else { "hit" });
            assert_eq!(response.bytes().await.unwrap(), tarball.bytes);
        }
        let not_modified = hex_get_if(
            &server,
            &format!("/tarballs/{name}-{version}.tar"),
            &format!("\"{sha}\""),
        )
        .await;
        assert_eq!(not_modified.status(), 304);
        assert_eq!(
            fake.hits_of(&format!("/tarballs/{name}-{version}.tar")),
            1,
            "one upstream fetch"
        );
    }
    // Range and HEAD come from the stored blob.
    let tarball = &repo.tarball("fixbar", "0.1.0").bytes;
    let ranged = client()
        .get(server.url("/hex/tarballs/fixbar-0.1.0.tar"))
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap(), tarball[..100]);
    assert!(blob_files(&dir, "sha256") >= 2);
}

#[tokio::test]
async fn a_tampered_tarball_is_never_served_complete_nor_stored() {
    let fake = FakeIndex::start();
    let mut repo = standard();
    let path = "/tarballs/fixfoo-1.1.0.tar";
    let good = repo.file(path).to_vec();
    let tampered = repo.files.get_mut(path).unwrap();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    serve(&fake, &repo);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_hex(&fake.root_url(), "10m"));
    for attempt in 1..=2 {
        let response = hex_get(&server, path).await;
        if response.status() == 200 {
            // A cut connection (an error here) is what a client must see; bytes, if any, are short.
            if let Ok(got) = response.bytes().await {
                assert!(
                    got.len() < good.len(),
                    "attempt {attempt}: a complete wrong tarball was served"
                );
            }
        } else {
            assert_eq!(response.status(), 502);
        }
        assert_eq!(
            fake.hits_of(path),
            attempt,
            "nothing cached: each try goes upstream"
        );
    }
    // HEAD waits for the whole download, so it gets the verdict as a status.
    let head = client()
        .head(server.url(&format!("/hex{path}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 502);
    assert_eq!(blob_files(&dir, "sha256"), 0);
    assert_eq!(blob_files(&dir, "tmp"), 0);
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["cache"]["hash_mismatches"], 3);
    // The right bytes upstream: served and stored.
    fake.file(path, OCTETS, good.clone());
    let fixed = hex_get(&server, path).await;
    assert_eq!(fixed.status(), 200);
    assert_eq!(fixed.bytes().await.unwrap(), good);
}

#[tokio::test]
async fn concurrent_cold_clients_share_one_upstream_fetch() {
    let (fake, repo, _dir, server) = mirror("10m");
    fake.set(Behaviour::Delay(Duration::from_millis(400)));
    let tarball = repo.tarball("fixfoo", "1.1.0").bytes.clone();
    let requests = (0..12).map(|i| {
        let url = if i % 2 == 0 {
            server.url("/hex/packages/fixfoo")
        } else {
            server.url("/hex/tarballs/fixfoo-1.1.0.tar")
        };
        tokio::spawn(async move {
            let response = client().get(&url).send().await.unwrap();
            (url, response.status(), response.bytes().await.unwrap())
        })
    });
    for result in futures::future::join_all(requests).await {
        let (url, status, body) = result.unwrap();
        assert_eq!(status, 200, "{url}");
        if url.ends_with(".tar") {
            assert_eq!(body, tarball);
        } else {
            assert_eq!(body, repo.file("/packages/fixfoo"));
        }
    }
    assert_eq!(fake.hits_of("/packages/fixfoo"), 1);
    assert_eq!(fake.hits_of("/tarballs/fixfoo-1.1.0.tar"), 1);
}

#[tokio::test]
async fn docs_public_key_and_installs_are_cached_as_blobs() {
    let (fake, _repo, _dir, server) = mirror("10m");
    let docs = payload(100_000, 61);
    fake.file("/docs/fixbar-0.1.0.tar.gz", OCTETS, docs.clone());
    fake.file(
        "/installs/hex-1.x.csv",
        "text/csv",
        b"2.0.6,abc,1.15.0\n".to_vec(),
    );
    fake.file("/installs/1.15.0/hex-2.0.6.ez", OCTETS, b"PK-ez".to_vec());
    for (path, body) in [
        ("/docs/fixbar-0.1.0.tar.gz", docs.as_slice()),
        ("/public_key", TEST_PUBLIC_KEY.as_bytes()),
        ("/installs/hex-1.x.csv", b"2.0.6,abc,1.15.0\n".as_slice()),
        ("/installs/1.15.0/hex-2.0.6.ez", b"PK-ez".as_slice()),
    ] {
        let first = hex_get(&server, path).await;
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(header(&first, "x-cache"), "miss");
        let etag = header(&first, "etag").to_owned();
        assert_eq!(etag, format!("\"{}\"", sha256_hex(body)));
        assert_eq!(first.bytes().await.unwrap(), body, "{path}");
        let second = hex_get(&server, path).await;
        assert_eq!(header(&second, "x-cache"), "hit");
        assert_eq!(second.bytes().await.unwrap(), body);
        assert_eq!(hex_get_if(&server, path, &etag).await.status(), 304);
        assert_eq!(fake.hits_of(path), 1, "{path}");
    }
    assert_eq!(hex_get(&server, "/docs/fixbar-9.0.0.tar.gz").await.status(), 404);
}

#[tokio::test]
async fn organisations_unknown_paths_and_bad_names_are_refused() {
    let (fake, _repo, _dir, server) = mirror("10m");
    let private = hex_get(&server, "/repos/acme/packages/secret").await;
    assert_eq!(private.status(), 404);
    assert!(
        private
            .text()
            .await
            .unwrap()
            .contains("private organisation repositories")
    );
    assert_eq!(fake.hits_of("/repos/acme/packages/secret"), 0);
    for (path, status) in [
        ("/nothing", 404),
        ("/names/extra", 404),
        ("/installs/../../etc/passwd", 404),
        ("/packages/Bad-Name", 400),
        ("/tarballs/fixbar.tar", 400),
        ("/packages/..", 400),
    ] {
        let (got, body) = raw_get(&server.base, &format!("/hex{path}"), "application/json");
        assert_eq!(got, status, "{path}: {body}");
    }
}

#[tokio::test]
async fn the_catalogue_records_hex_releases_beside_pypi() {
    let (_fake, repo, dir, server) = mirror("10m");
    hex_get(&server, "/packages/fixfoo").await.bytes().await.unwrap();
    let tarball = hex_get(&server, "/tarballs/fixfoo-1.1.0.tar")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(tarball, repo.tarball("fixfoo", "1.1.0").bytes);
    let catalogue = pkgmirror::storage::Catalogue::open(&dir.path().join("catalogue.sqlite3")).unwrap();
    let files = catalogue.project_files(Ecosystem::Hex, "fixfoo").unwrap();
    assert_eq!(files.len(), 2);
    let [old, new] = [&files[0], &files[1]];
    assert_eq!(old.filename, "fixfoo-1.0.0.tar");
    assert_eq!(old.yanked.as_deref(), Some("deprecated: use 1.1.0"));
    assert_eq!(old.upload_time.as_deref(), Some("2024-01-01T00:00:00Z"));
    assert_eq!(new.version.as_deref(), Some("1.1.0"));
    assert_eq!(new.yanked, None);
    let fixture = repo.tarball("fixfoo", "1.1.0");
    assert_eq!(
        new.sha256.as_deref(),
        Some(hex::encode(fixture.outer_checksum).as_str())
    );
    assert_eq!(
        new.inner_checksum.as_deref(),
        Some(hex::encode(fixture.inner_checksum).as_str())
    );
    // `cache stats` counts the tarball under hex.
    tokio::time::sleep(Duration::from_secs(6)).await; // one access-batch flush
    let (code, stdout, stderr) = cache_command(dir.path(), &["stats", "--json"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let hex = stats["ecosystems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ecosystem"] == "hex")
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(hex["projects"], 1);
    assert_eq!(hex["files"], 2);
    assert_eq!(hex["blobs"], 1);
    assert_eq!(hex["blob_bytes"], tarball.len());
}

#[tokio::test]
async fn an_admin_forgets_a_package_registry_file() {
    let fake = FakeIndex::start();
    serve(&fake, &standard());
    let dir = temp_dir();
    let mut launch = Launch::with_hex(&fake.root_url(), "10m");
    launch.env("PKGMIRROR__SERVER__ADMIN_TOKEN", "s3cret");
    let server = Server::start(dir.path(), &launch);
    hex_get(&server, "/packages/fixbar").await.bytes().await.unwrap();
    let url = server.url("/cache/hex/fixbar");
    let refused = client().delete(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let bad = client()
        .delete(server.url("/cache/hex/Bad-Name"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let done = client().delete(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(done.status(), 200);
    assert_eq!(
        done.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "success", "data": null})
    );
    let refetched = hex_get(&server, "/packages/fixbar").await;
    assert_eq!(header(&refetched, "x-cache"), "miss");
    assert_eq!(fake.hits_of("/packages/fixbar"), 2);
}

#[tokio::test]
async fn with_the_hex_mirror_off_its_routes_say_so() {
    let fake = FakeIndex::start();
    serve(&fake, &standard());
    let dir = temp_dir();
    let mut launch = Launch::with_hex(&fake.root_url(), "10m");
    launch.env("PKGMIRROR__HEX__ENABLED", "false");
    let server = Server::start(dir.path(), &launch);
    let off = hex_get(&server, "/names").await;
    assert_eq!(off.status(), 404);
    assert!(off.text().await.unwrap().contains("hex.enabled = false"));
    assert_eq!(fake.hits_of("/names"), 0);
}
