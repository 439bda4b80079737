//! For this module's tests: a real S3-compatible server, moto's standalone server started as
//! tests/it/s3_server.rs starts it (`$PKGMIRROR_TEST_PYTHON -m moto.server` on 127.0.0.1, a free
//! port), and stores on it. Without that Python, or moto in it, the tests that need the server
//! print one line saying so and skip: a bare `cargo test` passes; tests/run.sh always sets it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::{S3BlobStore, client};
use crate::config::S3Config;
use crate::storage::blob::{BlobBody, ByteRange};

/// S3's smallest part (all but the last), which moto enforces too.
pub(super) const PART_SIZE: u64 = 5 * 1024 * 1024;
const REGION: &str = "us-east-1";
/// Where nothing listens (the discard port): every request fails to connect.
const UNREACHABLE: &str = "http://127.0.0.1:9";

/// Static credentials, so the tests never depend on the SDK's chain (or the developer's own).
fn credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "pkgmirror-unit-tests")
}

/// A moto server, killed on drop.
pub(super) struct Moto {
    child: Child,
    port: u16,
    /// Its stderr: the start-up banner and a line per request, for failure messages.
    logs: Arc<Mutex<Vec<String>>>,
}

impl Moto {
    /// Starts moto and waits (boundedly) until it accepts connections; `None`, after printing
    /// why, when there is no moto to start.
    fn start() -> Option<Moto> {
        let Some(python) = std::env::var_os("PKGMIRROR_TEST_PYTHON") else {
            skip("PKGMIRROR_TEST_PYTHON is not set (tests/run.sh sets it)");
            return None;
        };
        let mut child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", python.display()));
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let thread_logs = Arc::clone(&logs);
        // Reads stderr to the end, so moto never blocks on a full pipe; the channel closes when
        // moto exits.
        std::thread::spawn(move || {
            const BANNER: &str = "Running on http://127.0.0.1:";
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find(BANNER) {
                    let digits: String = line[at + BANNER.len()..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    let _ = port_tx.send(digits.parse::<u16>().ok());
                }
                thread_logs.lock().unwrap().push(line);
            }
        });
        let mut moto = Moto { child, port: 0, logs };
        match port_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => moto.port = port,
            Ok(None) => moto.fail("printed no port"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => moto.fail("did not start within 30 s"),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = moto.child.wait();
                // moto itself, or what its server needs, is not installed for that Python.
                let log = moto.log();
                if let Some(missing) = log.lines().find(|l| l.contains("No module named")) {
                    skip(&format!(
                        "moto.server is not importable by {}: {}",
                        python.display(),
                        missing.trim()
                    ));
                    return None;
                }
                moto.fail("exited");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", moto.port)).is_err() {
            if Instant::now() > deadline {
                moto.fail("does not accept connections");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(moto)
    }

    fn log(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    fn fail(&self, why: &str) -> ! {
        panic!("moto {why}; its output:\n{}", self.log());
    }

    pub(super) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A plain client, to look at the bucket past the store.
    pub(super) fn client(&self) -> Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(credentials())
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build();
        Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Says, past libtest's capture, that the running test is skipped and why.
fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "skipping {test}: {why}");
}

/// A store on `endpoint` as `connect` makes it, but with the tests' own credentials.
async fn store(endpoint: &str, bucket: &str, prefix: &str, staging: &Path) -> S3BlobStore {
    let config = S3Config {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        endpoint: endpoint.to_owned(),
        region: REGION.to_owned(),
        path_style: true,
        part_size: PART_SIZE,
    };
    let loader = client::loader(&config).credentials_provider(credentials());
    S3BlobStore::connect_with(loader, &config, Some(staging))
        .await
        .unwrap()
}

/// A store whose bucket cannot be reached: nothing listens at its endpoint.
pub(super) async fn unreachable_store(staging: &Path) -> S3BlobStore {
    store(UNREACHABLE, "unreachable", "mirror", staging).await
}

/// moto, a fresh bucket in it, and a store on that bucket.
pub(super) struct Fixture {
    pub(super) moto: Moto,
    pub(super) bucket: String,
    pub(super) store: S3BlobStore,
    pub(super) staging: PathBuf,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// `None` (the test skips) without moto.
    pub(super) async fn start(prefix: &str) -> Option<Fixture> {
        let moto = Moto::start()?;
        static BUCKETS: AtomicU64 = AtomicU64::new(0);
        let bucket = format!("unit-{}", BUCKETS.fetch_add(1, Ordering::Relaxed));
        moto.client()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating bucket {bucket}: {e:?}"));
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("staging");
        let store = store(&moto.endpoint(), &bucket, prefix, &staging).await;
        Some(Fixture {
            moto,
            bucket,
            store,
            staging,
            dir,
        })
    }

    /// Another store on this server, for `bucket` (which may not exist).
    pub(super) async fn store_for(&self, bucket: &str) -> S3BlobStore {
        let staging = self.dir.path().join(format!("staging-{bucket}"));
        store(&self.moto.endpoint(), bucket, "", &staging).await
    }

    /// Puts `data` at `key`, past the store.
    pub(super) async fn put_object(&self, key: &str, data: &[u8]) {
        self.moto
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(S3Body::from(data.to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutObject {key}: {e:?}"));
    }

    /// Puts `data` where the store keeps the blob it is, past the store; returns its sha256.
    pub(super) async fn put_blob(&self, data: &[u8]) -> String {
        let sha = sha256(data);
        self.put_object(&self.store.inner.keys.blob(&sha).unwrap(), data)
            .await;
        sha
    }

    /// The object at `key`, its bytes and ETag, read past the store.
    pub(super) async fn object(&self, key: &str) -> Option<(Vec<u8>, String)> {
        let read = self
            .moto
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let out = match read {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return None,
            Err(e) => panic!("GetObject {key}: {e:?}"),
        };
        let etag = out.e_tag().unwrap_or_default().trim_matches('"').to_owned();
        Some((out.body.collect().await.unwrap().to_vec(), etag))
    }

    /// Every key in the bucket, sorted.
    pub(super) async fn keys(&self) -> Vec<String> {
        let listed = self
            .moto
            .client()
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("listing {}: {e:?}", self.bucket));
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }

    /// The bucket's open multipart uploads as (key, upload id), sorted.
    pub(super) async fn open_uploads(&self) -> Vec<(String, String)> {
        let listed = self
            .moto
            .client()
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("listing uploads in {}: {e:?}", self.bucket));
        let mut uploads: Vec<(String, String)> = listed
            .uploads()
            .iter()
            .filter_map(|u| Some((u.key()?.to_owned(), u.upload_id()?.to_owned())))
            .collect();
        uploads.sort();
        uploads
    }

    /// The numbers of the parts of `key` that moto stored, in the order it did, waiting (up to
    /// 10 s) until there are `want` of them, as the uploader task sends them on its own time.
    /// Read from moto's request log: its ListParts answer is one the SDK cannot parse.
    pub(super) async fn wait_for_parts(&self, key: &str, want: usize) -> Vec<u32> {
        let request = format!("\"PUT /{}/{key}?", self.bucket);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let parts: Vec<u32> = self
                .moto
                .log()
                .lines()
                .filter(|line| line.contains(&request) && line.contains("\" 200 "))
                .filter_map(|line| {
                    let number = &line[line.find("partNumber=")? + "partNumber=".len()..];
                    let digits = number.find(|c: char| !c.is_ascii_digit())?;
                    number[..digits].parse().ok()
                })
                .collect();
            if parts.len() >= want {
                return parts;
            }
            assert!(
                Instant::now() < deadline,
                "{want} parts of {key} never arrived; moto's log:\n{}",
                self.moto.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Files left in the staging directory.
    pub(super) fn staged(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.staging)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

pub(super) fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `len` deterministic bytes that do not repeat (xorshift), so a misplaced part shows.
pub(super) fn some_bytes(len: usize, seed: u64) -> Vec<u8> {
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

/// A streamed body's (size, range, bytes).
pub(super) async fn read_body(body: BlobBody) -> (u64, Option<ByteRange>, Vec<u8>) {
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
