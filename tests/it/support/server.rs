//! The server under test: the real `pkgmirror` binary on 127.0.0.1:0 with a temp data dir, and
//! the HTTP helpers the tests talk to it with.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub base: String,
    logs: Arc<Mutex<Vec<String>>>,
}

/// How to start a server: CLI args after `serve`, and environment variables.
#[derive(Default, Clone)]
pub struct Launch {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Launch {
    /// A server with these upstream index URLs (main first) and every TTL set to `ttl`.
    pub fn with_upstreams(upstreams: &[&str], ttl: &str) -> Self {
        let mut launch = Self::default();
        for url in upstreams {
            launch.args.extend(["--pypi-upstream".into(), (*url).to_owned()]);
        }
        launch.env("PKGMIRROR__PYPI__INDEX_TTL", ttl);
        let extra_ttls = vec![ttl; upstreams.len().saturating_sub(1)].join(",");
        if !extra_ttls.is_empty() {
            launch.env("PKGMIRROR__PYPI__EXTRA_INDEX_TTLS", &extra_ttls);
        }
        // Short timeouts keep failure tests fast.
        launch.env("PKGMIRROR__PYPI__READ_TIMEOUT", "2s");
        launch.env("PKGMIRROR__PYPI__CONNECT_TIMEOUT", "2s");
        launch
    }

    /// A server whose hex mirror reads the repository at `upstream` (a fake's root URL) and
    /// verifies it with the fixture's test key.
    pub fn with_hex(upstream: &str, ttl: &str) -> Self {
        let mut launch = Self::default();
        launch.hex(upstream, ttl);
        launch
    }

    /// Adds the hex mirror of [`Launch::with_hex`] to this launch.
    pub fn hex(&mut self, upstream: &str, ttl: &str) -> &mut Self {
        self.arg("--hex-upstream")
            .arg(upstream)
            .env("PKGMIRROR__HEX__ENABLED", "true")
            .env("PKGMIRROR__HEX__TTL", ttl)
            .env("PKGMIRROR__HEX__PUBLIC_KEY", super::hex_fixtures::TEST_PUBLIC_KEY)
            .env("PKGMIRROR__PYPI__READ_TIMEOUT", "2s")
            .env("PKGMIRROR__PYPI__CONNECT_TIMEOUT", "2s")
    }

    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(&mut self, arg: &str) -> &mut Self {
        self.args.push(arg.into());
        self
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pkgmirror")
}

impl Server {
    pub fn start(data_dir: &Path, launch: &Launch) -> Server {
        let mut cmd = Command::new(binary());
        cmd.arg("serve");
        // A launch may name its own address (a node that replaces another at the same URL).
        if !launch.args.iter().any(|a| a == "--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(&launch.args)
            // Nothing from the developer's environment may leak into a test.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            // The hex mirror's default upstream is the public one: tests turn it on with a fake.
            .env("PKGMIRROR__HEX__ENABLED", "false")
            .current_dir(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &launch.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn pkgmirror");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = Arc::clone(&logs);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(i) = line.find("listening on http") {
                        let url: String = line[i + "listening on ".len()..]
                            .chars()
                            .take_while(|c| !c.is_whitespace() && *c != '"')
                            .collect();
                        let _ = tx.send(url);
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let base = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "pkgmirror did not start; its output:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Server { child, base, logs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Whether the server logged `needle`, waiting up to five seconds for it: the server's output
    /// is read by another thread, so a line written just before an answer may not be here yet.
    pub fn logged(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends the server a signal by name (`HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// SIGTERM, then wait (bounded) for the exit status; returns it with everything logged.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The log readers end at EOF, right after the exit.
                std::thread::sleep(Duration::from_millis(200));
                return (status, self.logs());
            }
            assert!(Instant::now() < deadline, "pkgmirror did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that shows responses as they are on the wire: no decompression, no redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub const JSON: &str = "application/vnd.pypi.simple.v1+json";
pub const HTML: &str = "application/vnd.pypi.simple.v1+html";
/// What pip sends (JSON first).
pub const PIP_ACCEPT: &str =
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";

pub async fn get(url: &str, accept: &str) -> reqwest::Response {
    client().get(url).header("Accept", accept).send().await.unwrap()
}

pub async fn get_json(url: &str) -> serde_json::Value {
    let response = get(url, JSON).await;
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Sends `GET {path}` byte for byte (no client-side normalization of `..` or escapes) and returns
/// the status and body.
pub fn raw_get(base: &str, path: &str, accept: &str) -> (u16, String) {
    use std::io::Write;
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

// ---------------------------------------------------------------------------------------------
// The binary's other commands, and its data dir

/// The binary, run in `dir` with nothing from the developer's environment (as [`Server::start`]
/// runs it).
pub fn pkgmirror_command(dir: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir);
    cmd
}

/// Runs `pkgmirror token ARGS --data-dir DIR` with `env` (a bucket's settings, say) and returns
/// its stdout; a failure fails the test.
pub fn token_command(dir: &Path, args: &[&str], env: &[(String, String)]) -> String {
    let output = pkgmirror_command(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run pkgmirror token");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
    assert!(
        output.status.success(),
        "pkgmirror token {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// The admin log of the data dir `dir`, oldest first, as (action, outcome).
pub fn stored_admin_log(dir: &Path) -> Vec<(String, String)> {
    let catalogue = rusqlite::Connection::open(dir.join("catalogue.sqlite3")).expect("open the catalogue");
    let mut rows = catalogue
        .prepare("SELECT action, outcome FROM admin_log ORDER BY id")
        .expect("query the admin log");
    rows.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("read the admin log")
        .map(|row| row.expect("an admin log row"))
        .collect()
}

/// Runs `pkgmirror ARGS` in `dir` with `env` and returns (exit code, stdout, stderr).
pub fn run_pkgmirror(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = pkgmirror_command(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run pkgmirror");
    (
        status.code().expect("exit code"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Runs `pkgmirror cache ARGS --data-dir DIR` and returns (exit code, stdout, stderr).
pub fn cache_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let data_dir = dir.to_str().expect("a UTF-8 temp dir");
    let args: Vec<&str> = ["cache"]
        .into_iter()
        .chain(args.iter().copied())
        .chain(["--data-dir", data_dir])
        .collect();
    run_pkgmirror(dir, &args, env)
}

/// Where the local blob store keeps the blob with this sha256 under the data dir `dir`.
pub fn blob_path(dir: &Path, sha: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(&sha[..2])
        .join(&sha[2..4])
        .join(sha)
}

/// How many files the data dir `dir` holds under `blobs/{sub}`.
pub fn blob_files(dir: &tempfile::TempDir, sub: &str) -> usize {
    fn count(path: &Path) -> usize {
        std::fs::read_dir(path).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| if e.path().is_dir() { count(&e.path()) } else { 1 })
                .sum()
        })
    }
    count(&dir.path().join("blobs").join(sub))
}
