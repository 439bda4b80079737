//! The S3 blob store against a real S3-compatible server (moto, see support/s3_server.rs): the object
//! layout, multipart uploads while bytes arrive, nothing left behind by a mismatch, an abort or a
//! dropped writer, and an outage that fails fast and heals.
//!
//! Each test runs in a child process that has the S3 credentials in its environment (see
//! [`in_s3_env`]), with its own moto and bucket.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pkgmirror::config::S3Config;
use pkgmirror::storage::blob::{
    BlobBody, BlobEntry, BlobError, BlobStore, BlobWriter, ByteRange, S3BlobStore,
};
use sha2::{Digest, Sha256};

use crate::support::s3_server::{S3Server, in_s3_env, unique_bucket};
use crate::support::tools::{Tool, require};

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (all but the last).
const PART_SIZE: u64 = 5 * MIB;
const CHUNK: usize = 256 * 1024;

struct Fixture {
    s3: S3Server,
    bucket: String,
    /// As the store uses it: empty or ending in `/`.
    prefix: String,
    staging: PathBuf,
    store: S3BlobStore,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// moto, a fresh bucket, and a store on it under `prefix` (as configured).
    async fn new(prefix: &str) -> Fixture {
        let s3 = S3Server::start();
        let bucket = unique_bucket();
        s3.create_bucket(&bucket).await;
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("staging");
        let config = S3Config {
            bucket: bucket.clone(),
            prefix: prefix.to_owned(),
            endpoint: s3.endpoint(),
            region: "us-east-1".to_owned(),
            path_style: true,
            part_size: PART_SIZE,
        };
        let store = S3BlobStore::connect(&config, &staging).await.unwrap();
        let trimmed = prefix.trim_matches('/');
        Fixture {
            prefix: if trimmed.is_empty() {
                String::new()
            } else {
                format!("{trimmed}/")
            },
            s3,
            bucket,
            staging,
            store,
            dir,
        }
    }

    /// Another store on the same bucket, under `prefix`.
    async fn store_under(&self, prefix: &str) -> S3BlobStore {
        let config = S3Config {
            bucket: self.bucket.clone(),
            prefix: prefix.to_owned(),
            endpoint: self.s3.endpoint(),
            region: "us-east-1".to_owned(),
            path_style: true,
            part_size: PART_SIZE,
        };
        let staging = self.dir.path().join(format!("staging-{}", unique_bucket()));
        S3BlobStore::connect(&config, &staging).await.unwrap()
    }

    /// Where a blob must land: the local layout's path under the prefix.
    fn key(&self, sha256: &str) -> String {
        format!(
            "{}sha256/{}/{}/{sha256}",
            self.prefix,
            &sha256[..2],
            &sha256[2..4]
        )
    }

    async fn keys(&self) -> Vec<String> {
        self.s3.keys(&self.bucket).await
    }

    async fn open_uploads(&self) -> Vec<String> {
        self.s3.open_uploads(&self.bucket).await
    }

    /// Files left in the staging directory.
    fn staged(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.staging)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// Polls (up to 5 s) until the open uploads are exactly `want`.
    async fn wait_for_uploads(&self, want: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let open = self.open_uploads().await;
            if open == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "open uploads are {open:?}, expected {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes `data` through a new writer in [`CHUNK`]s and commits it under its sha256.
    async fn store_blob(&self, data: &[u8]) -> String {
        let sha = sha256(data);
        let mut writer = self.store.put(Some(&sha)).await.unwrap();
        write_all(&mut *writer, data).await;
        assert_eq!(writer.commit(&sha).await.unwrap(), data.len() as u64);
        sha
    }

    /// The object's bytes and ETag, read past the store with the plain client.
    async fn raw_object(&self, key: &str) -> (Vec<u8>, String) {
        let out = self
            .s3
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetObject {key}: {e:?}"));
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let length = out.content_length();
        let bytes = out.body.collect().await.unwrap().into_bytes().to_vec();
        assert_eq!(length, Some(bytes.len() as i64), "Content-Length of {key}");
        (bytes, etag)
    }
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `len` deterministic, non-repeating bytes (xorshift), so a misplaced part changes the hash.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn write_all(writer: &mut dyn BlobWriter, data: &[u8]) {
    for chunk in data.chunks(CHUNK) {
        writer.write(chunk).await.unwrap();
    }
}

/// A streamed body's (size, range, bytes).
async fn read_body(body: BlobBody) -> (u64, Option<ByteRange>, Vec<u8>) {
    let BlobBody::Stream {
        size,
        range,
        mut stream,
    } = body
    else {
        panic!("the S3 store returned a local file");
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    (size, range, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_blob_round_trip_under_the_prefix() {
    let Some(_) = require(Tool::Moto) else { return };
    if !in_s3_env() {
        return;
    }
    let f = Fixture::new("/mirror/blobs/").await;
    let data = random_bytes(3000, 1);
    let sha = sha256(&data);

    let mut writer = f.store.put(Some(&sha)).await.unwrap();
    write_all(&mut *writer, &data[..1000]).await;
    write_all(&mut *writer, &data[1000..]).await;
    assert_eq!(writer.written(), 3000);
    assert_eq!(writer.digest_so_far(), sha);
    assert!(writer.spool_path().starts_with(&f.staging));
    assert!(f.keys().await.is_empty(), "visible before commit");
    assert_eq!(f.store.get(&sha, None).await.unwrap().map(|b| b.size()), None);
    assert_eq!(writer.commit(&sha).await.unwrap(), 3000);

    assert_eq!(
        f.keys().await,
        [format!("mirror/blobs/sha256/{}/{}/{sha}", &sha[..2], &sha[2..4])]
    );
    assert!(f.staged().is_empty(), "staged files left: {:?}", f.staged());

    let (size, range, bytes) = read_body(f.store.get(&sha, None).await.unwrap().unwrap()).await;
    assert_eq!((size, range), (3000, None));
    assert!(bytes == data, "whole body differs");

    let wanted = ByteRange { start: 10, end: 1999 };
    let (size, range, bytes) = read_body(f.store.get(&sha, Some(wanted)).await.unwrap().unwrap()).await;
    assert_eq!((size, range), (3000, Some(wanted)));
    assert!(bytes == data[10..=1999], "range body differs");

    let absent = sha256(b"absent");
    assert_eq!(f.store.head(&sha).await.unwrap(), Some(3000));
    assert_eq!(f.store.head(&absent).await.unwrap(), None);
    assert!(f.store.get(&absent, None).await.unwrap().is_none());
    assert_eq!(
        f.store.list().await.unwrap(),
        [BlobEntry {
            sha256: sha.clone(),
            size: 3000
        }]
    );
    assert!(matches!(
        f.store.head("../../etc/passwd").await,
        Err(BlobError::InvalidKey(_))
    ));

    // Content-addressed: committing the same bytes again is fine and changes nothing.
    assert_eq!(f.store_blob(&data).await, sha);
    assert_eq!(f.keys().await, [f.key(&sha)]);

    // The empty blob (some packages ship empty files).
    let empty = f.store_blob(b"").await;
    assert_eq!(f.store.head(&empty).await.unwrap(), Some(0));
    let (size, _, bytes) = read_body(f.store.get(&empty, None).await.unwrap().unwrap()).await;
    assert_eq!((size, bytes.len()), (0, 0));
    assert!(f.store.delete(&empty).await.unwrap());

    assert!(f.store.delete(&sha).await.unwrap());
    assert!(!f.store.delete(&sha).await.unwrap());
    assert!(f.store.get(&sha, None).await.unwrap().is_none());
    assert_eq!(f.store.head(&sha).await.unwrap(), None);
    assert!(f.store.list().await.unwrap().is_empty());
    assert!(f.keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blobs_go_up_in_parts() {
    let Some(_) = require(Tool::Moto) else { return };
    if !in_s3_env() {
        return;
    }
    let f = Fixture::new("mirror").await;

    // Announced up front: parts go up while the bytes arrive.
    let data = random_bytes(12 * MIB as usize + 123, 2);
    let sha = sha256(&data);
    let mut writer = f.store.put(Some(&sha)).await.unwrap();
    write_all(&mut *writer, &data).await;
    f.wait_for_uploads(&[f.key(&sha)]).await;
    assert!(f.keys().await.is_empty(), "visible before commit");
    assert_eq!(writer.commit(&sha).await.unwrap(), data.len() as u64);
    assert!(f.open_uploads().await.is_empty());
    assert_eq!(f.keys().await, [f.key(&sha)]);
    let (bytes, etag) = f.raw_object(&f.key(&sha)).await;
    assert_eq!(bytes.len(), data.len());
    assert_eq!(sha256(&bytes), sha);
    // 5 + 5 + 2 MiB.
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "not a 3-part upload: ETag {etag}"
    );
    assert_eq!(f.store.head(&sha).await.unwrap(), Some(data.len() as u64));

    // A range across the first part boundary.
    let wanted = ByteRange {
        start: PART_SIZE - 10,
        end: PART_SIZE + 9,
    };
    let (size, _, bytes) = read_body(f.store.get(&sha, Some(wanted)).await.unwrap().unwrap()).await;
    assert_eq!(size, data.len() as u64);
    assert!(bytes == data[PART_SIZE as usize - 10..PART_SIZE as usize + 10]);

    // Not announced: the whole upload happens at commit.
    // One byte over a part: two parts, the second a single byte.
    let data = random_bytes(PART_SIZE as usize + 1, 3);
    let sha2 = sha256(&data);
    let mut writer = f.store.put(None).await.unwrap();
    write_all(&mut *writer, &data).await;
    assert!(
        f.open_uploads().await.is_empty(),
        "an upload started without a key"
    );
    assert_eq!(writer.commit(&sha2).await.unwrap(), data.len() as u64);
    assert!(f.open_uploads().await.is_empty());
    let (bytes, etag) = f.raw_object(&f.key(&sha2)).await;
    assert_eq!(sha256(&bytes), sha2);
    assert!(
        etag.trim_matches('"').ends_with("-2"),
        "not a 2-part upload: ETag {etag}"
    );

    // Exactly one part, announced: the upload starts at the last byte and completes with it.
    let data = random_bytes(PART_SIZE as usize, 10);
    let sha3 = f.store_blob(&data).await;
    let (bytes, etag) = f.raw_object(&f.key(&sha3)).await;
    assert_eq!(sha256(&bytes), sha3);
    assert!(
        etag.trim_matches('"').ends_with("-1"),
        "not a 1-part upload: ETag {etag}"
    );
    assert!(f.open_uploads().await.is_empty());

    let mut listed = f.store.list().await.unwrap();
    listed.sort_by_key(|e| e.size);
    assert_eq!(
        listed,
        [
            BlobEntry {
                sha256: sha3.clone(),
                size: PART_SIZE
            },
            BlobEntry {
                sha256: sha2.clone(),
                size: PART_SIZE + 1
            },
            BlobEntry {
                sha256: sha.clone(),
                size: 12 * MIB + 123
            },
        ]
    );
    assert!(f.staged().is_empty(), "staged files left: {:?}", f.staged());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_mismatch_leaves_nothing_behind() {
    let Some(_) = require(Tool::Moto) else { return };
    if !in_s3_env() {
        return;
    }
    let f = Fixture::new("mirror").await;
    let wrong = sha256(b"what the index promised");

    // Large: the multipart upload under the announced key is under way when the hash fails.
    let data = random_bytes(7 * MIB as usize, 4);
    let mut writer = f.store.put(Some(&wrong)).await.unwrap();
    write_all(&mut *writer, &data).await;
    f.wait_for_uploads(&[f.key(&wrong)]).await;
    let err = writer.commit(&wrong).await.unwrap_err();
    assert!(
        matches!(&err, BlobError::HashMismatch { expected, actual } if *expected == wrong && *actual == sha256(&data)),
        "{err:?}"
    );
    assert!(f.keys().await.is_empty(), "objects left: {:?}", f.keys().await);
    assert!(
        f.open_uploads().await.is_empty(),
        "uploads left: {:?}",
        f.open_uploads().await
    );
    assert!(f.staged().is_empty(), "staged files left: {:?}", f.staged());

    // Announced wrong but committed under the real hash: the upload under the announced key
    // is dropped and the blob goes up under the real one.
    let mut writer = f.store.put(Some(&wrong)).await.unwrap();
    write_all(&mut *writer, &data).await;
    f.wait_for_uploads(&[f.key(&wrong)]).await;
    let sha = sha256(&data);
    assert_eq!(writer.commit(&sha).await.unwrap(), data.len() as u64);
    assert_eq!(f.keys().await, [f.key(&sha)]);
    assert!(
        f.open_uploads().await.is_empty(),
        "uploads left: {:?}",
        f.open_uploads().await
    );
    assert_eq!(sha256(&f.raw_object(&f.key(&sha)).await.0), sha);
    assert!(f.staged().is_empty(), "staged files left: {:?}", f.staged());
    assert!(f.store.delete(&sha).await.unwrap());

    // Small: a single PutObject would have been the upload.
    let data = b"not what was promised".to_vec();
    let mut writer = f.store.put(Some(&wrong)).await.unwrap();
    write_all(&mut *writer, &data).await;
    let err = writer.commit(&wrong).await.unwrap_err();
    assert!(matches!(err, BlobError::HashMismatch { .. }), "{err:?}");
    assert!(f.keys().await.is_empty(), "objects left: {:?}", f.keys().await);
    assert!(f.open_uploads().await.is_empty());
    assert!(f.staged().is_empty(), "staged files left: {:?}", f.staged());
    assert!(f.store.get(&wrong, None).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_drop_leave_nothing_behind() {
    let Some(_) = require(Tool::Moto) else { return };
    if !in_s3_env() {
        return;
    }
    let f = Fixture::new("").await;
    let data = random_bytes(6 * MIB as usize, 5);
    let sha = sha256(&data);

    // abort() waits for the multipart upload to be aborted.
    let mut writer = f.store.put(Some(&sha)).await.unwrap();
    write_all(&mut *writer, &data).await;
    let spool = writer.spool_path().to_owned();
    assert!(spool.is_file());
    f.wait_for_uploads(&[f.key(&sha)]).await;
    writer.abort().await;
    assert!(f.open_uploads().await.is_empty(), "abort left the upload open");
    assert!(f.keys().await.is_empty());
    assert!(!spool.exists());
    assert!(f.staged().is_empty());

    // Dropped without commit or abort (a cancelled download): the upload goes in the background.
    let mut writer = f.store.put(Some(&sha)).await.unwrap();
    write_all(&mut *writer, &data).await;
    let spool = writer.spool_path().to_owned();
    f.wait_for_uploads(&[f.key(&sha)]).await;
    drop(writer);
    assert!(!spool.exists(), "the dropped writer's spool is left");
    f.wait_for_uploads(&[]).await;
    assert!(f.keys().await.is_empty());
    assert!(f.staged().is_empty());

    // A small one, unannounced.
    let mut writer = f.store.put(None).await.unwrap();
    write_all(&mut *writer, b"abandoned").await;
    let spool = writer.spool_path().to_owned();
    assert!(spool.is_file());
    writer.abort().await;
    assert!(!spool.exists());
    assert!(f.keys().await.is_empty());
    assert!(f.store.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_stages_on_and_heals() {
    let Some(_) = require(Tool::Moto) else { return };
    if !in_s3_env() {
        return;
    }
    let mut f = Fixture::new("mirror").await;
    f.store.health().await.unwrap();
    // health() cleans up its probe.
    assert!(f.keys().await.is_empty(), "probe left: {:?}", f.keys().await);
    let stored = f.store_blob(&random_bytes(1000, 6)).await;

    // A large upload under way when S3 goes down.
    let large = random_bytes(8 * MIB as usize, 7);
    let large_sha = sha256(&large);
    let mut large_writer = f.store.put(Some(&large_sha)).await.unwrap();
    write_all(&mut *large_writer, &large[..6 * MIB as usize]).await;
    f.wait_for_uploads(&[f.key(&large_sha)]).await;

    f.s3.stop();
    let started = Instant::now();
    let err = f.store.get(&stored, None).await.err();
    assert!(matches!(err, Some(BlobError::Unavailable(_))), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "get took {:?}",
        started.elapsed()
    );
    let err = f.store.head(&stored).await.unwrap_err();
    assert!(matches!(err, BlobError::Unavailable(_)), "{err:?}");
    let err = f.store.health().await.unwrap_err();
    assert!(matches!(err, BlobError::Unavailable(_)), "{err:?}");

    // The started upload: the rest still stages, the commit fails and cleans up.
    write_all(&mut *large_writer, &large[6 * MIB as usize..]).await;
    let started = Instant::now();
    let err = large_writer.commit(&large_sha).await.unwrap_err();
    assert!(matches!(err, BlobError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "commit took {:?}",
        started.elapsed()
    );
    assert!(f.staged().is_empty(), "staged files left: {:?}", f.staged());

    // A new blob: bytes stage (the client still gets them), only the commit fails.
    let small = random_bytes(2000, 8);
    let small_sha = sha256(&small);
    let mut writer = f.store.put(Some(&small_sha)).await.unwrap();
    write_all(&mut *writer, &small).await;
    assert_eq!(std::fs::read(writer.spool_path()).unwrap(), small);
    let err = writer.commit(&small_sha).await.unwrap_err();
    assert!(matches!(err, BlobError::Unavailable(_)), "{err:?}");
    assert!(f.staged().is_empty(), "staged files left: {:?}", f.staged());

    // Back (empty: moto keeps nothing over a restart); health() tries even while the store
    // holds off, and its success lets everything else through again at once.
    let port = f.s3.port();
    f.s3.restart();
    assert_eq!(f.s3.port(), port);
    f.s3.create_bucket(&f.bucket).await;
    if let Err(e) = f.store.health().await {
        panic!("unhealthy after the restart: {e}\nmoto's log:\n{}", f.s3.logs());
    }
    assert!(f.store.get(&stored, None).await.unwrap().is_none());
    assert_eq!(f.store_blob(&small).await, small_sha);
    let (_, _, bytes) = read_body(f.store.get(&small_sha, None).await.unwrap().unwrap()).await;
    assert!(bytes == small);
    assert!(f.open_uploads().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_moves_the_object_aside() {
    let Some(_) = require(Tool::Moto) else { return };
    if !in_s3_env() {
        return;
    }
    let f = Fixture::new("mirror").await;
    let data = random_bytes(5000, 9);
    let sha = f.store_blob(&data).await;
    let kept = f.store_blob(b"another blob").await;

    assert!(f.store.quarantine(&sha).await.unwrap());
    let quarantined = format!("mirror/quarantine/{sha}");
    let mut want = vec![f.key(&kept), quarantined.clone()];
    want.sort();
    assert_eq!(f.keys().await, want);
    let (bytes, _) = f.raw_object(&quarantined).await;
    assert!(bytes == data, "quarantined bytes differ");
    assert!(f.store.get(&sha, None).await.unwrap().is_none());
    assert_eq!(f.store.head(&sha).await.unwrap(), None);
    let listed: Vec<String> = f
        .store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.sha256)
        .collect();
    assert_eq!(listed, [kept.as_str()]);
    assert!(!f.store.quarantine(&sha).await.unwrap());
    assert!(f.store.get(&kept, None).await.unwrap().is_some());

    // CopyObject names its source in a header S3 URL-decodes: a prefix with characters that
    // need encoding must still find the object.
    let odd = f.store_under("pypi cache+%41é").await;
    let mut writer = odd.put(Some(&sha)).await.unwrap();
    write_all(&mut *writer, &data).await;
    writer.commit(&sha).await.unwrap();
    assert!(f.keys().await.contains(&format!(
        "pypi cache+%41é/sha256/{}/{}/{sha}",
        &sha[..2],
        &sha[2..4]
    )));
    assert!(odd.quarantine(&sha).await.unwrap());
    assert!(odd.get(&sha, None).await.unwrap().is_none());
    let (bytes, _) = f.raw_object(&format!("pypi cache+%41é/quarantine/{sha}")).await;
    assert!(bytes == data, "quarantined bytes differ");
}
