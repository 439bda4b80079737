//! The blob store's upkeep: LRU eviction under `storage.max_size` (never a download under way),
//! reconciliation at start-up, and the `cache stats|verify|gc` commands with the data dir lock.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::fixtures::{payload, publish, sha256_hex};
use crate::support::*;

const MIB: usize = 1024 * 1024;

fn launch(index: &FakeIndex, max_size: &str) -> Launch {
    let mut launch = Launch::with_upstreams(&[&index.url()], "10m");
    launch.env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    launch.env("PKGMIRROR__STORAGE__MAX_SIZE", max_size);
    launch
}

fn stored(dir: &Path, body: &[u8]) -> bool {
    blob_path(dir, &sha256_hex(body)).is_file()
}

/// GETs a file of `demo` and returns its X-Cache and body.
async fn fetch(server: &Server, name: &str) -> (String, Vec<u8>) {
    let response = client()
        .get(server.url(&format!("/simple/demo/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{name}");
    let cache = header(&response, "x-cache").to_owned();
    (cache, response.bytes().await.unwrap().to_vec())
}

async fn wait_until(what: &str, server: &Server, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}; server log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Access times have a resolution of one second: this makes the next access a later one.
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

fn stats_json(dir: &Path) -> serde_json::Value {
    let (code, out, err) = cache_command(dir, &["stats", "--json"], &[]);
    assert_eq!(code, 0, "stderr: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn eviction_keeps_the_store_under_budget_least_recently_used_first() {
    let fake = FakeIndex::start();
    let (a, b, c) = (payload(MIB, 21), payload(MIB, 22), payload(MIB, 23));
    publish(
        &fake,
        &[
            ("a-1.0.tar.gz", &a, &fake),
            ("b-1.0.tar.gz", &b, &fake),
            ("c-1.0.tar.gz", &c, &fake),
        ],
    );
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake, "2.5MB"));

    assert_eq!(fetch(&server, "a-1.0.tar.gz").await.1, a);
    next_second().await;
    assert_eq!(fetch(&server, "b-1.0.tar.gz").await.1, b);
    next_second().await;
    // A hit makes `a` more recently used than `b`, though it was stored first.
    assert_eq!(
        fetch(&server, "a-1.0.tar.gz").await,
        ("hit".to_owned(), a.clone())
    );
    next_second().await;
    assert_eq!(fetch(&server, "c-1.0.tar.gz").await.1, c);

    wait_until("b is evicted", &server, || !stored(dir.path(), &b)).await;
    assert!(stored(dir.path(), &a) && stored(dir.path(), &c));
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["cache"]["blobs"], 2);
    assert_eq!(health["cache"]["blob_bytes"], 2 * MIB);
    assert_eq!(health["cache"]["max_bytes"], 2_500_000);
    assert_eq!(health["cache"]["evicted_blobs"], 1);
    assert!(health["cache"]["last_eviction"].is_string(), "{health}");
    assert!(health["cache"]["hit_ratio"].as_f64().is_some(), "{health}");
    assert!(
        server.logged(&sha256_hex(&b)),
        "the eviction is logged:\n{}",
        server.logs()
    );

    // The evicted file is fetched again on demand, which in turn evicts the now least recently
    // used one (`a`, last used before `c` was stored).
    assert_eq!(
        fetch(&server, "b-1.0.tar.gz").await,
        ("miss".to_owned(), b.clone())
    );
    assert_eq!(fake.hits_of("/files/b-1.0.tar.gz"), 2);
    wait_until("a is evicted", &server, || !stored(dir.path(), &a)).await;
    assert!(stored(dir.path(), &b) && stored(dir.path(), &c));
}

#[tokio::test]
async fn eviction_never_removes_a_blob_being_downloaded() {
    let index = FakeIndex::start();
    let slow = FakeIndex::start();
    let (x, a) = (payload(MIB, 31), payload(MIB, 32));
    publish(
        &index,
        &[("x-1.0.tar.gz", &x, &slow), ("a-1.0.tar.gz", &a, &index)],
    );
    let dir = temp_dir();
    // Room for one of the two files only; time for x's upstream to take its time.
    let mut launch = launch(&index, "1.5MB");
    launch.env("PKGMIRROR__PYPI__READ_TIMEOUT", "30s");
    let server = Server::start(dir.path(), &launch);

    assert_eq!(fetch(&server, "x-1.0.tar.gz").await.1, x);
    // Lose x's bytes while its catalogue row stays: the next request downloads it again, and
    // meanwhile that row is the least recently used one, the first an eviction pass would take.
    std::fs::remove_file(blob_path(dir.path(), &sha256_hex(&x))).unwrap();
    next_second().await;
    slow.set(Behaviour::Delay(Duration::from_secs(5)));
    let in_flight = {
        let url = server.url("/simple/demo/x-1.0.tar.gz");
        tokio::spawn(async move {
            let response = client().get(&url).send().await.unwrap();
            (response.status(), response.bytes().await.unwrap())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_json(&server.url("/health")).await["cache"]["downloads_in_progress"] != 1 {
        assert!(Instant::now() < deadline, "the download of x did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Storing `a` puts the catalogue over budget while x is still on its way: the pass must pass
    // over x and take `a`.
    assert_eq!(fetch(&server, "a-1.0.tar.gz").await.1, a);
    wait_until("a is evicted", &server, || !stored(dir.path(), &a)).await;
    assert!(
        !in_flight.is_finished(),
        "`a` went only once x's download ended: the pass took x's row while x was downloading"
    );

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, x);
    wait_until("x is stored", &server, || stored(dir.path(), &x)).await;
    // A pass over the finished download finds the store within budget.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(stored(dir.path(), &x), "x was evicted:\n{}", server.logs());
    let evicted_x = server
        .logs()
        .lines()
        .any(|l| l.contains("evicted a blob") && l.contains(&sha256_hex(&x)));
    assert!(!evicted_x, "{}", server.logs());
}

#[tokio::test]
async fn a_restart_adopts_stray_blobs_removes_bad_ones_and_drops_lost_rows() {
    let fake = FakeIndex::start();
    let a = payload(10_000, 41);
    publish(&fake, &[("a-1.0.tar.gz", &a, &fake)]);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake, "20GiB"));
    assert_eq!(fetch(&server, "a-1.0.tar.gz").await.1, a);
    let (status, _) = server.terminate();
    assert!(status.success());

    // A valid blob the catalogue never recorded, a file whose bytes are not what its name says,
    // and a recorded blob whose file is gone.
    let stray = payload(1000, 42);
    let stray_path = blob_path(dir.path(), &sha256_hex(&stray));
    let bad_path = blob_path(dir.path(), &sha256_hex(b"the promised bytes"));
    for (path, bytes) in [(&stray_path, &stray[..]), (&bad_path, b"other bytes")] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    std::fs::remove_file(blob_path(dir.path(), &sha256_hex(&a))).unwrap();

    let server = Server::start(dir.path(), &launch(&fake, "20GiB"));
    let logs = server.logs();
    let reconciled = logs
        .lines()
        .find(|l| l.contains("blob store reconciled"))
        .unwrap_or_else(|| panic!("no reconciliation logged:\n{logs}"));
    for field in ["blobs=2", "adopted=1", "removed=1", "rows_dropped=1"] {
        assert!(reconciled.contains(field), "{field} missing in {reconciled}");
    }
    assert!(stray_path.is_file(), "the valid stray blob is kept");
    assert!(!bad_path.exists(), "the bad one is removed");

    // `cache stats` runs beside the server and counts the adopted blob.
    let stats = stats_json(dir.path());
    assert_eq!(stats["blobs"], 1, "{stats}");
    assert_eq!(stats["blob_bytes"], 1000);
    assert_eq!(stats["unlisted_blobs"], 1, "no page lists the stray blob");
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["cache"]["blobs"], 1);

    // The lost file is downloaded again.
    assert_eq!(
        fetch(&server, "a-1.0.tar.gz").await,
        ("miss".to_owned(), a.clone())
    );
    assert_eq!(fake.hits_of("/files/a-1.0.tar.gz"), 2);
}

#[tokio::test]
async fn cache_verify_quarantines_a_tampered_blob_and_the_server_refetches_it() {
    let fake = FakeIndex::start();
    let (a, b) = (payload(200_000, 51), payload(300_000, 52));
    publish(&fake, &[("a-1.0.tar.gz", &a, &fake), ("b-1.0.tar.gz", &b, &fake)]);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake, "20GiB"));
    fetch(&server, "a-1.0.tar.gz").await;
    fetch(&server, "b-1.0.tar.gz").await;
    server.terminate();

    let sha_a = sha256_hex(&a);
    let mut tampered = a.clone();
    tampered[1000] ^= 0xff;
    std::fs::write(blob_path(dir.path(), &sha_a), &tampered).unwrap();

    let (code, out, err) = cache_command(dir.path(), &["verify"], &[]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("checked 2 blobs (488.3 KiB)"), "{out}");
    assert!(
        out.contains("quarantined 1 blob whose bytes do not match"),
        "{out}"
    );
    assert!(out.lines().any(|l| l.trim() == sha_a), "{out}");
    assert!(
        err.contains("pkgmirror: cache verify: 1 blob did not match its sha256 and was quarantined"),
        "{err}"
    );
    assert!(!blob_path(dir.path(), &sha_a).exists());
    assert_eq!(
        std::fs::read(dir.path().join("blobs/quarantine").join(&sha_a)).unwrap(),
        tampered
    );
    assert_eq!(stats_json(dir.path())["blobs"], 1, "its row is gone too");

    let (code, out, err) = cache_command(dir.path(), &["verify"], &[]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("checked 1 blob (") && out.contains("all blobs match their sha256"),
        "{out}"
    );

    let server = Server::start(dir.path(), &launch(&fake, "20GiB"));
    assert_eq!(
        fetch(&server, "a-1.0.tar.gz").await,
        ("miss".to_owned(), a.clone())
    );
    assert_eq!(fake.hits_of("/files/a-1.0.tar.gz"), 2);
    assert_eq!(
        fetch(&server, "b-1.0.tar.gz").await,
        ("hit".to_owned(), b.clone())
    );
}

#[tokio::test]
async fn cache_stats_prints_a_table_and_json() {
    let fake = FakeIndex::start();
    let (a, b) = (payload(MIB, 61), payload(MIB / 2, 62));
    publish(&fake, &[("a-1.0.tar.gz", &a, &fake), ("b-1.0.tar.gz", &b, &fake)]);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake, "20GiB"));
    fetch(&server, "a-1.0.tar.gz").await;
    fetch(&server, "b-1.0.tar.gz").await;
    assert_eq!(fetch(&server, "b-1.0.tar.gz").await.0, "hit");
    // Shutting down flushes the batched access (the hit).
    server.terminate();

    let (code, out, err) = cache_command(dir.path(), &["stats"], &[]);
    assert_eq!(code, 0, "stderr: {err}");
    let expected = format!(
        "data dir: {}
ecosystem     projects     files     blobs       bytes
pypi                 1         2         2     1.5 MiB
unlisted                                 0         0 B
total                1         2         2     1.5 MiB
budget: 1.5 MiB of 20.0 GiB (storage.max_size)
hit ratio: 33.3% (1 hit from the store, 2 downloads of the blobs stored)
",
        dir.path().display()
    );
    assert_eq!(out, expected);

    let stats = stats_json(dir.path());
    assert_eq!(
        stats,
        json!({
            "data_dir": dir.path(),
            "max_bytes": 20u64 << 30,
            "blobs": 2,
            "blob_bytes": MIB + MIB / 2,
            "hits": 1,
            "hit_ratio": 1.0 / 3.0,
            "ecosystems": [{
                "ecosystem": "pypi", "projects": 1, "files": 2, "blobs": 2, "blob_bytes": MIB + MIB / 2,
            }],
            "unlisted_blobs": 0,
            "unlisted_bytes": 0,
        })
    );

    // A data dir without a catalogue is a mistake, not an empty cache.
    let typo = pkgmirror_command(dir.path())
        .args(["cache", "stats", "--data-dir"])
        .arg(dir.path().join("typo"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&typo.stderr);
    assert_eq!(typo.status.code(), Some(1));
    assert!(err.starts_with("pkgmirror: no catalogue at "), "{err}");
    let (code, _, err) = cache_command(
        dir.path(),
        &["stats"],
        &[("PKGMIRROR__STORAGE__MAX_SIZE", "lots")],
    );
    assert_eq!(code, 2);
    assert!(
        err.starts_with("pkgmirror: bad config: storage.max_size"),
        "{err}"
    );
}

#[tokio::test]
async fn cache_gc_brings_the_store_under_budget_and_drops_orphans() {
    let fake = FakeIndex::start();
    let (a, b, c, lost) = (
        payload(MIB, 71),
        payload(MIB, 72),
        payload(MIB, 73),
        payload(1000, 74),
    );
    publish(
        &fake,
        &[
            ("a-1.0.tar.gz", &a, &fake),
            ("b-1.0.tar.gz", &b, &fake),
            ("c-1.0.tar.gz", &c, &fake),
            ("lost-1.0.tar.gz", &lost, &fake),
        ],
    );
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake, "20GiB"));
    fetch(&server, "lost-1.0.tar.gz").await;
    for name in ["a-1.0.tar.gz", "b-1.0.tar.gz", "c-1.0.tar.gz"] {
        next_second().await;
        fetch(&server, name).await;
    }
    server.terminate();
    std::fs::remove_file(blob_path(dir.path(), &sha256_hex(&lost))).unwrap();

    let budget = [("PKGMIRROR__STORAGE__MAX_SIZE", "2.5MB")];
    let (code, out, err) = cache_command(dir.path(), &["gc"], &budget);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_eq!(
        out,
        "found 3 blobs; adopted 0 without a catalogue row, removed 0 whose bytes did not match their name, dropped 1 catalogue row without a blob
evicted 1 blob (1.0 MiB), least recently used first
now 2.0 MiB of 2.4 MiB (storage.max_size)
"
    );
    assert!(!stored(dir.path(), &a), "the least recently used one goes");
    assert!(stored(dir.path(), &b) && stored(dir.path(), &c));
    assert_eq!(stats_json(dir.path())["blob_bytes"], 2 * MIB);

    let (code, out, _) = cache_command(dir.path(), &["gc"], &budget);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to evict\n"), "{out}");
}

#[tokio::test]
async fn verify_gc_and_a_second_serve_refuse_while_the_server_runs() {
    let fake = FakeIndex::start();
    let a = payload(10_000, 81);
    publish(&fake, &[("a-1.0.tar.gz", &a, &fake)]);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake, "20GiB"));
    fetch(&server, "a-1.0.tar.gz").await;

    for (command, advice) in [
        ("verify", "stop it first, then run pkgmirror cache verify again"),
        ("gc", "stop it first, or leave it be"),
    ] {
        let (code, out, err) = cache_command(dir.path(), &[command], &[]);
        assert_eq!(code, 1, "{command}: {out}");
        assert!(
            err.starts_with("pkgmirror: pkgmirror serve (pid ")
                && err.contains(&format!(
                    ") is running on the data dir {}; ",
                    dir.path().display()
                ))
                && err.contains(advice),
            "{command}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(stats_json(dir.path())["blobs"], 1, "stats may run any time");

    let second = pkgmirror_command(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pkgmirror: pkgmirror serve (pid ")
            && err.contains("is running on the data dir")
            && err.contains("stop it or use another --data-dir"),
        "{err}"
    );

    // Neither disturbed the running server.
    assert_eq!(
        fetch(&server, "a-1.0.tar.gz").await,
        ("hit".to_owned(), a.clone())
    );
    let (status, _) = server.terminate();
    assert!(status.success());
    let (code, out, err) = cache_command(dir.path(), &["gc"], &[]);
    assert_eq!(code, 0, "once the server is gone gc runs: {out}{err}");
}
