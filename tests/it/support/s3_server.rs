//! A real S3-compatible server for the tests: moto's standalone server (installed into the test
//! venv by tests/run.sh; a test requires `Tool::Moto` first) on 127.0.0.1, one process per test,
//! stopped and started on demand to play an S3 outage.
//!
//! moto keeps everything in memory: after [`S3Server::restart`] the buckets and objects are gone,
//! so a test that restarts it creates its bucket again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};

use super::tools::{self, Tool};

pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "test";
pub const REGION: &str = "us-east-1";

pub struct S3Server {
    child: Option<Child>,
    port: u16,
    /// moto's stderr (its start-up banner and one line per request), for failure messages.
    logs: Arc<Mutex<Vec<String>>>,
}

impl S3Server {
    /// Starts moto on a free port and waits until it answers HTTP.
    pub fn start() -> S3Server {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (child, port) = spawn(0, &logs);
        S3Server {
            child: Some(child),
            port,
            logs,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Kills moto (S3 goes down) and waits until its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "port {} still answers after moto was killed",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts moto again on the same port (stopping it first if it runs). Its data lived in
    /// memory only: every bucket and object is gone.
    pub fn restart(&mut self) {
        self.stop();
        let (child, port) = spawn(self.port, &self.logs);
        assert_eq!(port, self.port, "moto came back on another port");
        self.child = Some(child);
    }

    /// A client for this server: path style, static test credentials, checksums only where the
    /// API requires them (as pkgmirror's own client).
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                ACCESS_KEY,
                SECRET_KEY,
                None,
                None,
                "pkgmirror-tests",
            ))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    pub async fn create_bucket(&self, name: &str) {
        self.client()
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating bucket {name}: {e:?}"));
    }

    /// Every object key in the bucket, sorted.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let mut pages = self
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| panic!("listing bucket {bucket}: {e:?}"));
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        keys.sort();
        keys
    }

    /// The keys of the bucket's incomplete multipart uploads, sorted.
    pub async fn open_uploads(&self, bucket: &str) -> Vec<String> {
        let page = self
            .client()
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("listing uploads in {bucket}: {e:?}"));
        assert_ne!(page.is_truncated(), Some(true), "more open uploads than one page");
        let mut keys: Vec<String> = page
            .uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }

    /// What a spawned pkgmirror (whose environment `Server::start` clears) needs to use `bucket`
    /// here; the backend (`PKGMIRROR__STORAGE__BACKEND`) is the test's to choose.
    pub fn env(&self, bucket: &str) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("PKGMIRROR__STORAGE__S3__BUCKET", bucket),
            ("PKGMIRROR__STORAGE__S3__ENDPOINT", &self.endpoint()),
            ("PKGMIRROR__STORAGE__S3__PATH_STYLE", "true"),
            ("PKGMIRROR__STORAGE__S3__REGION", REGION),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns moto on `port` (0: any free one) and returns it once it answers HTTP, with the port.
fn spawn(port: u16, logs: &Arc<Mutex<Vec<String>>>) -> (Child, u16) {
    let program = tools::path(Tool::Moto);
    let mut child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread_logs = Arc::clone(logs);
    // Reads stderr to the end, so moto never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("Running on http://127.0.0.1:") {
                let port: String = line[i + "Running on http://127.0.0.1:".len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let _ = tx.send(port.parse::<u16>().ok());
            }
            thread_logs.lock().unwrap().push(line);
        }
    });
    let fail = |child: &mut Child, why: &str| -> ! {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "moto_server {why}; its output:\n{}",
            logs.lock().unwrap().join("\n")
        );
    };
    let port = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(port)) => port,
        Ok(None) => fail(&mut child, "printed no port"),
        Err(_) => fail(&mut child, "did not start within 30s"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers_http(port) {
        if let Ok(Some(status)) = child.try_wait() {
            fail(&mut child, &format!("exited with {status}"));
        }
        if Instant::now() > deadline {
            fail(&mut child, &format!("does not answer on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 8];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// A bucket name no other test uses: lower-case letters, digits and hyphens, under 63 characters.
pub fn unique_bucket() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("pkgmirror-test-{}-{n}-{nanos}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Credentials for in-process stores

/// Marks the child process [`in_s3_env`] starts.
const CHILD_MARKER: &str = "PKGMIRROR_TEST_S3_CHILD";

/// The AWS SDK inside `S3BlobStore::connect` takes its credentials from the process environment,
/// and changing the environment of a running, multi-threaded test process is unsound (hence
/// `set_var` being `unsafe` in edition 2024). So a test that builds a store in-process runs again
/// in a child of this test binary whose environment has them from the start (and no other `AWS_*`
/// variable of the developer's):
///
/// ```ignore
/// if !in_s3_env() { return; }  // the parent: the child ran the test, and passed
/// ```
///
/// Returns `true` in the child, which goes on with the test's body, and `false` in the parent
/// once the child passed; if it did not, the parent panics with the child's output. Call it first
/// in the test, before any `.await`: the test is named after the thread libtest runs it on.
pub fn in_s3_env() -> bool {
    if std::env::var_os(CHILD_MARKER).is_some() {
        return true;
    }
    let thread = std::thread::current();
    let test = thread
        .name()
        .filter(|name| name.contains("::"))
        .expect("in_s3_env must be called on the test's own thread (before any .await)");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    let output = cmd
        .env(CHILD_MARKER, "1")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // No profile files of the developer's either.
        .env("AWS_CONFIG_FILE", "/nonexistent/pkgmirror-tests/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/pkgmirror-tests/aws-credentials",
        )
        .stdin(Stdio::null())
        .output()
        .expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} failed in its child process ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    false
}
