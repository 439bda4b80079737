//! The mirror on S3 and tiered stores, against a real S3 server (moto): files land in the
//! bucket, the local tier fills and evicts, two nodes share one bucket, S3 going down degrades
//! without failing clients, and `cache verify`/`gc` work on the bucket.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::fixtures::{self, payload, sha256_hex};
use crate::support::s3_server::{S3Server, unique_bucket};
use crate::support::tools::{Tool, require};
use crate::support::*;

/// Lists every `(filename, body)` on `demo`'s page, each served by `fake` at `/files/{filename}`.
fn publish(fake: &FakeIndex, files: &[(&str, &[u8])]) {
    let hosted: Vec<_> = files.iter().map(|(name, body)| (*name, *body, fake)).collect();
    fixtures::publish(fake, &hosted);
}

fn launch(fake: &FakeIndex, s3: &S3Server, bucket: &str, backend: &str) -> Launch {
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch.env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    launch.env("PKGMIRROR__STORAGE__BACKEND", backend);
    for (key, value) in s3.env(bucket) {
        launch.env(&key, &value);
    }
    launch
}

/// The object key of a blob with no prefix configured.
fn blob_key(sha: &str) -> String {
    format!("sha256/{}/{}/{sha}", &sha[..2], &sha[2..4])
}

async fn fetch(server: &Server, filename: &str) -> (u16, String, Vec<u8>) {
    let response = client()
        .get(server.url(&format!("/simple/demo/{filename}")))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let cache = header(&response, "x-cache").to_owned();
    (status, cache, response.bytes().await.expect("body").to_vec())
}

/// Polls `check` every 100 ms for up to `limit`; panics with `what` if it never holds.
async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_writes_both_tiers_evicts_locally_and_fills_from_s3() {
    let Some(_) = require(Tool::Moto) else { return };
    let s3 = S3Server::start();
    let bucket = unique_bucket();
    s3.create_bucket(&bucket).await;
    let fake = FakeIndex::start();
    let first = payload(600_000, 1);
    let second = payload(600_000, 2);
    let (first_sha, second_sha) = (sha256_hex(&first), sha256_hex(&second));
    publish(
        &fake,
        &[("demo-1.0.tar.gz", &first), ("demo-2.0.tar.gz", &second)],
    );
    let dir = temp_dir();
    let mut launch = launch(&fake, &s3, &bucket, "tiered");
    // Room for one file in the local tier.
    launch.env("PKGMIRROR__STORAGE__MAX_SIZE", "1MB");
    launch.env("PKGMIRROR__METRICS__TOKEN", "scrape");
    let server = Server::start(dir.path(), &launch);

    let (status, cache, body) = fetch(&server, "demo-1.0.tar.gz").await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    assert_eq!(body, first);
    assert!(s3.keys(&bucket).await.contains(&blob_key(&first_sha)));
    assert!(blob_path(dir.path(), &first_sha).is_file());

    // The second file pushes the first out of the local tier, not out of S3.
    let (_, _, body) = fetch(&server, "demo-2.0.tar.gz").await;
    assert_eq!(body, second);
    let keys = s3.keys(&bucket).await;
    assert!(keys.contains(&blob_key(&first_sha)) && keys.contains(&blob_key(&second_sha)));
    eventually(
        "eviction from the local tier",
        Duration::from_secs(5),
        async || !blob_path(dir.path(), &first_sha).exists(),
    )
    .await;
    assert!(blob_path(dir.path(), &second_sha).is_file());

    // A local miss is served from S3 (not upstream) and fills the local tier again.
    let (status, cache, body) = fetch(&server, "demo-1.0.tar.gz").await;
    assert_eq!((status, cache.as_str()), (200, "hit"));
    assert_eq!(body, first);
    assert_eq!(fake.hits_of("/files/demo-1.0.tar.gz"), 1);
    eventually("the local tier fill", Duration::from_secs(10), async || {
        blob_path(dir.path(), &first_sha).is_file()
    })
    .await;
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["storage"]["backend"], "tiered");
    assert_eq!(health["storage"]["state"], "ok");
    let tier = &health["storage"]["local_tier"];
    assert_eq!(tier["max_bytes"], 1_000_000);
    assert!(tier["fills"].as_u64() >= Some(1), "{tier}");
    assert!(tier["evicted"].as_u64() >= Some(1), "{tier}");
    assert!(tier["bytes"].as_u64() <= Some(1_000_000), "{tier}");

    // The metrics count the S3 operations and the local tier's work.
    let scrape = client()
        .get(server.url("/metrics"))
        .bearer_auth("scrape")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = crate::metrics::Samples::parse(&scrape);
    let s3_ok = |operation| {
        samples.sum(
            "pkgmirror_s3_operations_total",
            &[("operation", operation), ("outcome", "ok")],
        )
    };
    assert!(s3_ok("PutObject") >= 2.0, "{scrape}");
    assert!(s3_ok("GetObject") >= 1.0, "{scrape}");
    assert!(samples.sum("pkgmirror_local_tier_fills_total", &[("outcome", "ok")]) >= 1.0);
    assert!(samples.sum("pkgmirror_evicted_blobs_total", &[]) >= 1.0);
    assert_eq!(samples.sum("pkgmirror_storage_up", &[("backend", "tiered")]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_bucket_share_files_with_the_upstream_down() {
    let Some(_) = require(Tool::Moto) else { return };
    let s3 = S3Server::start();
    let bucket = unique_bucket();
    s3.create_bucket(&bucket).await;
    let fake = FakeIndex::start();
    let body = payload(300_000, 3);
    let sha = sha256_hex(&body);
    publish(&fake, &[("demo-1.0.tar.gz", &body)]);
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let node_a = Server::start(dir_a.path(), &launch(&fake, &s3, &bucket, "s3"));
    let node_b = Server::start(dir_b.path(), &launch(&fake, &s3, &bucket, "tiered"));
    // Node B learns the project page (and so the file's sha256) while the upstream is up.
    let page = get(
        &node_b.url("/simple/demo/"),
        "application/vnd.pypi.simple.v1+json",
    )
    .await;
    assert_eq!(page.status(), 200);

    let (status, _, got) = fetch(&node_a, "demo-1.0.tar.gz").await;
    assert_eq!((status, got == body), (200, true));
    assert!(s3.keys(&bucket).await.contains(&blob_key(&sha)));

    fake.set(Behaviour::Status(503));
    let (status, cache, got) = fetch(&node_b, "demo-1.0.tar.gz").await;
    assert_eq!((status, cache.as_str()), (200, "hit"));
    assert_eq!(got, body);
    assert_eq!(fake.hits_of("/files/demo-1.0.tar.gz"), 1, "node B went upstream");

    // Node B records what it served from the bucket (accesses are flushed every few seconds).
    eventually("node B recording the blob", Duration::from_secs(15), async || {
        get_json(&node_b.url("/health")).await["cache"]["blobs"] == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_s3_down_the_mirror_degrades_serves_and_recovers() {
    let Some(_) = require(Tool::Moto) else { return };
    let mut s3 = S3Server::start();
    let bucket = unique_bucket();
    s3.create_bucket(&bucket).await;
    let fake = FakeIndex::start();
    let cached = payload(200_000, 4);
    let fresh = payload(700_000, 5);
    publish(
        &fake,
        &[("demo-1.0.tar.gz", &cached), ("demo-2.0.tar.gz", &fresh)],
    );
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake, &s3, &bucket, "tiered"));
    let (_, _, got) = fetch(&server, "demo-1.0.tar.gz").await;
    assert_eq!(got, cached);

    s3.stop();
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["storage"]["state"], "failing");
    let error = health["storage"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&bucket), "{error}");

    // In the local tier: served as before.
    let (status, cache, got) = fetch(&server, "demo-1.0.tar.gz").await;
    assert_eq!((status, cache.as_str(), got == cached), (200, "hit", true));
    // Not cached: streamed from upstream, complete and right, but not kept.
    for _ in 0..2 {
        let (status, cache, got) = fetch(&server, "demo-2.0.tar.gz").await;
        assert_eq!((status, cache.as_str()), (200, "miss"));
        assert_eq!(got, fresh);
    }
    assert_eq!(fake.hits_of("/files/demo-2.0.tar.gz"), 2);
    let health = get_json(&server.url("/health")).await;
    assert!(health["cache"]["served_unstored"].as_u64() >= Some(1), "{health}");
    assert!(server.logged("served without storing"));

    // S3 comes back (moto keeps nothing across a restart, so the bucket is made again).
    s3.restart();
    s3.create_bucket(&bucket).await;
    eventually("/health back to ok", Duration::from_secs(30), async || {
        get_json(&server.url("/health")).await["status"] == "ok"
    })
    .await;
    // The breaker lets requests through again after its back-off; then the file is kept.
    eventually("the file stored again", Duration::from_secs(30), async || {
        fetch(&server, "demo-2.0.tar.gz").await.1 == "hit"
    })
    .await;
    assert!(s3.keys(&bucket).await.contains(&blob_key(&sha256_hex(&fresh))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_pass_through_to_s3() {
    let Some(_) = require(Tool::Moto) else { return };
    let s3 = S3Server::start();
    let bucket = unique_bucket();
    s3.create_bucket(&bucket).await;
    let fake = FakeIndex::start();
    let body = payload(100_000, 6);
    publish(&fake, &[("demo-1.0.tar.gz", &body)]);
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake, &s3, &bucket, "s3"));
    let url = server.url("/simple/demo/demo-1.0.tar.gz");
    assert_eq!(fetch(&server, "demo-1.0.tar.gz").await.2, body);
    // Nothing of it stays on local disk with the s3 backend.
    assert!(!blob_path(dir.path(), &sha256_hex(&body)).exists());

    let ranged = client()
        .get(&url)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .expect("request");
    assert_eq!(ranged.status(), 206);
    assert_eq!(header(&ranged, "content-range"), "bytes 1000-1999/100000");
    assert_eq!(ranged.bytes().await.expect("body").as_ref(), &body[1000..2000]);

    let suffix = client()
        .get(&url)
        .header("Range", "bytes=-10")
        .send()
        .await
        .expect("request");
    assert_eq!(suffix.status(), 206);
    assert_eq!(
        suffix.bytes().await.expect("body").as_ref(),
        &body[body.len() - 10..]
    );

    let beyond = client()
        .get(&url)
        .header("Range", "bytes=100000-")
        .send()
        .await
        .expect("request");
    assert_eq!(beyond.status(), 416);
    assert_eq!(header(&beyond, "content-range"), "bytes */100000");
    assert_eq!(fake.hits_of("/files/demo-1.0.tar.gz"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_cannot_be_used_stops_the_start_with_its_name() {
    let Some(_) = require(Tool::Moto) else { return };
    let s3 = S3Server::start();
    let fake = FakeIndex::start();
    let dir = temp_dir();
    let missing = unique_bucket();
    let mut cmd = Command::new(binary());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PKGMIRROR__STORAGE__BACKEND", "s3")
        .env("PKGMIRROR__PYPI__INDEX_URL", fake.url());
    for (key, value) in s3.env(&missing) {
        cmd.env(key, value);
    }
    let Output { status, stderr, .. } = cmd.output().expect("run pkgmirror");
    let stderr = String::from_utf8_lossy(&stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("bucket '{missing}'")), "{stderr}");
    assert!(stderr.contains(&s3.endpoint()), "{stderr}");
    assert!(stderr.contains("NoSuchBucket"), "{stderr}");
}

/// Runs `pkgmirror cache ARGS` on `dir` with the S3 settings; (exit code, stdout, stderr).
fn cache_command(
    dir: &Path,
    s3: &S3Server,
    bucket: &str,
    backend: &str,
    args: &[&str],
) -> (i32, String, String) {
    let mut env = s3.env(bucket);
    env.push(("PKGMIRROR__STORAGE__BACKEND".into(), backend.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    crate::support::cache_command(dir, args, &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_verify_and_gc_work_on_the_bucket() {
    let Some(_) = require(Tool::Moto) else { return };
    let s3 = S3Server::start();
    let bucket = unique_bucket();
    s3.create_bucket(&bucket).await;
    let fake = FakeIndex::start();
    let good = payload(50_000, 7);
    let damaged = payload(50_000, 8);
    publish(
        &fake,
        &[("demo-1.0.tar.gz", &good), ("demo-2.0.tar.gz", &damaged)],
    );
    let dir = temp_dir();
    let server = Server::start(dir.path(), &launch(&fake, &s3, &bucket, "s3"));
    for (filename, body) in [("demo-1.0.tar.gz", &good), ("demo-2.0.tar.gz", &damaged)] {
        assert_eq!(&fetch(&server, filename).await.2, body);
    }
    let (status, _) = server.terminate();
    assert!(status.success());

    let damaged_sha = sha256_hex(&damaged);
    let stray = payload(10_000, 9);
    let stray_sha = sha256_hex(&stray);
    let bucket_client = s3.client();
    for (key, bytes) in [
        (blob_key(&damaged_sha), b"not what the name says".to_vec()),
        (blob_key(&stray_sha), stray.clone()),
    ] {
        bucket_client
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .expect("put");
    }

    let (code, out, err) = cache_command(dir.path(), &s3, &bucket, "s3", &["verify"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("checked 3 blobs"), "{out}");
    assert!(out.contains(&damaged_sha), "{out}");
    assert!(out.contains("1 blob without a catalogue row"), "{out}");
    let keys = s3.keys(&bucket).await;
    assert!(!keys.contains(&blob_key(&damaged_sha)), "{keys:?}");
    assert!(keys.contains(&format!("quarantine/{damaged_sha}")), "{keys:?}");

    // Without --s3-orphans the stray blob is only reported; with it, it goes.
    let (code, out, err) = cache_command(dir.path(), &s3, &bucket, "s3", &["gc"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("1 blob no catalogue row of this node knows"),
        "{out}"
    );
    assert!(s3.keys(&bucket).await.contains(&blob_key(&stray_sha)));
    let (code, out, err) = cache_command(dir.path(), &s3, &bucket, "s3", &["gc", "--s3-orphans"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deleted 1 blob no catalogue row knows"), "{out}");
    let keys = s3.keys(&bucket).await;
    assert!(!keys.contains(&blob_key(&stray_sha)), "{keys:?}");
    assert!(keys.contains(&blob_key(&sha256_hex(&good))), "{keys:?}");

    let (code, out, err) = cache_command(dir.path(), &s3, &bucket, "s3", &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("checked 1 blob"), "{out}");

    // --s3-orphans means nothing for a local store.
    let (code, _, err) = cache_command(dir.path(), &s3, &bucket, "local", &["gc", "--s3-orphans"]);
    assert_eq!(code, 2, "{err}");
}
