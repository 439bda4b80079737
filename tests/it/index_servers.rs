//! Other real index servers as the mirror's upstream: pypiserver (a directory of files, HTML
//! pages with absolute-path links), devpi-server (uploads, pages linking `../../+f/...`) and proxpi
//! (a caching proxy, here in front of a fake index). Each hosts the `packages::tree`
//! distributions; the mirror in front of it must list every file with its sha256 in both formats,
//! serve the exact bytes from its own file route, and pip and uv must install the tree through it.
//!
//! The servers come from the venv of `tests/run.sh`, whose `bin` directory
//! `PKGMIRROR_TEST_SERVERS_BIN` names; a test whose server or client is missing is skipped (see
//! `support::tools::require`).
//! They listen on 127.0.0.1 only, keep their data in a temp dir, and can reach nothing else: devpi
//! has no mirror of a public index, pypiserver's fallback redirect is off, proxpi's upstream is a
//! fake index, and any other host goes through a proxy that is not there.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use crate::support::packages::{self, Dist};
use crate::support::sandbox::{Client, install};
use crate::support::tools::{self, Tool, only_loopback, require_all, run_tool};
use crate::support::*;

/// How long a server may take to answer its first request; devpi is the slowest (a few seconds
/// on a loaded machine).
const STARTUP: Duration = Duration::from_secs(60);

/// A port on 127.0.0.1 that was free a moment ago (the servers take a port, not a socket).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A running index server; dropping it kills it (and anything it started) and removes its data.
struct IndexServer {
    child: Child,
    /// The Simple API root to configure upstream of the mirror.
    index: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl IndexServer {
    /// `cmd` with an emptied environment in which nothing but 127.0.0.1 can be reached.
    fn command(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .current_dir(dir)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("HOME", &home)
            .env("TMPDIR", dir);
        only_loopback(&mut cmd);
        cmd
    }

    /// Starts `cmd` (logging to `dir/server.log`) and waits, bounded, until `ready` answers 200.
    async fn start(mut cmd: Command, dir: tempfile::TempDir, ready: &str, index: String) -> IndexServer {
        use std::os::unix::process::CommandExt;
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        // Its own process group, so the drop also ends anything it forked.
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        let mut server = IndexServer {
            child,
            index,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("{ready}: the server exited ({status})\n{}", server.logs());
            }
            let answer = client().get(ready).timeout(Duration::from_secs(5)).send().await;
            if answer.is_ok_and(|r| r.status() == 200) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "{ready} did not answer 200 within {STARTUP:?}\n{}",
                server.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("=== {} log\n{text}", self.index)
    }
}

impl Drop for IndexServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The servers

/// pypiserver serving `dists` from its packages directory, with no fallback to a public index.
async fn pypiserver(dists: &[Dist]) -> IndexServer {
    let dir = temp_dir();
    let packages = dir.path().join("packages");
    std::fs::create_dir(&packages).unwrap();
    for dist in dists {
        std::fs::write(packages.join(&dist.filename), &dist.bytes).unwrap();
    }
    let port = free_port().to_string();
    let mut cmd = IndexServer::command(tools::path(Tool::IndexServer("pypi-server")), dir.path());
    // `-a . -P .`: no authentication at all (nothing is uploaded to it).
    cmd.args([
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--disable-fallback",
    ])
    .args(["--hash-algo", "sha256", "-a", ".", "-P", "."])
    .arg(&packages);
    let base = format!("http://127.0.0.1:{port}");
    IndexServer::start(cmd, dir, &format!("{base}/health"), format!("{base}/simple/")).await
}

/// The devpi index the distributions are uploaded to.
const DEVPI_INDEX: &str = "root/test";

/// devpi-server without a mirror of any public index, with `dists` uploaded to [`DEVPI_INDEX`] as
/// twine uploads them.
async fn devpi(dists: &[Dist]) -> IndexServer {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let mut init = IndexServer::command(tools::path(Tool::IndexServer("devpi-init")), dir.path());
    init.arg("--serverdir").arg(&data).arg("--no-root-pypi");
    let what = format!("devpi-init --serverdir {} --no-root-pypi", data.display());
    let run = run_tool(init, what, STARTUP, "").await;
    assert!(run.ok(), "{}", run.report());

    let port = free_port().to_string();
    let mut cmd = IndexServer::command(tools::path(Tool::IndexServer("devpi-server")), dir.path());
    cmd.arg("--serverdir")
        .arg(&data)
        .args(["--host", "127.0.0.1", "--port", &port])
        // The login-token key is derived with argon2 at startup; its defaults take ~15 s of CPU
        // on a loaded machine, and no token made here outlives the test.
        .args([
            "--argon2-time-cost",
            "1",
            "--argon2-memory-cost",
            "8",
            "--argon2-parallelism",
            "1",
        ]);
    let base = format!("http://127.0.0.1:{port}");
    let server = IndexServer::start(
        cmd,
        dir,
        &format!("{base}/+api"),
        format!("{base}/{DEVPI_INDEX}/+simple/"),
    )
    .await;

    // The root user has an empty password after devpi-init.
    let created = client()
        .put(format!("{base}/{DEVPI_INDEX}"))
        .basic_auth("root", Some(""))
        .header("Content-Type", "application/json")
        .body(r#"{"type": "stage", "bases": [], "volatile": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200, "create {DEVPI_INDEX}\n{}", server.logs());
    for dist in dists {
        let (content_type, body) = upload_form(dist);
        let uploaded = client()
            .post(format!("{base}/{DEVPI_INDEX}/"))
            .basic_auth("root", Some(""))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            uploaded.status(),
            200,
            "upload {}: {}\n{}",
            dist.filename,
            uploaded.text().await.unwrap(),
            server.logs()
        );
    }
    server
}

/// The multipart form of a legacy (twine) upload of `dist`: its core metadata and the file.
fn upload_form(dist: &Dist) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "pkgmirror-test-upload-c0ffee";
    let (filetype, pyversion) = if dist.filename.ends_with(".whl") {
        ("bdist_wheel", "py3")
    } else {
        ("sdist", "source")
    };
    let mut fields = vec![
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("metadata_version", "2.1"),
        ("name", dist.project.as_str()),
        ("version", dist.version.as_str()),
        ("filetype", filetype),
        ("pyversion", pyversion),
        ("sha256_digest", dist.sha256.as_str()),
    ];
    if let Some(spec) = &dist.requires_python {
        fields.push(("requires_python", spec.as_str()));
    }
    let mut body = Vec::new();
    for (name, value) in fields {
        write!(
            body,
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
        .unwrap();
    }
    write!(
        body,
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"{}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n",
        dist.filename
    )
    .unwrap();
    body.extend_from_slice(&dist.bytes);
    write!(body, "\r\n--{BOUNDARY}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// proxpi in front of `fake`, caching files in its temp dir.
async fn proxpi(fake: &FakeIndex) -> IndexServer {
    let dir = temp_dir();
    let port = free_port().to_string();
    let mut cmd = IndexServer::command(tools::path(Tool::IndexServer("flask")), dir.path());
    cmd.args([
        "--app",
        "proxpi.server:app",
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
    ])
    .env("PROXPI_INDEX_URL", fake.url())
    .env("PROXPI_CACHE_DIR", dir.path().join("cache"))
    // A download slower than this is answered with a redirect to the upstream file instead;
    // the test wants proxpi's own copy every time.
    .env("PROXPI_DOWNLOAD_TIMEOUT", "60");
    let base = format!("http://127.0.0.1:{port}");
    IndexServer::start(cmd, dir, &format!("{base}/health"), format!("{base}/index/")).await
}

// ---------------------------------------------------------------------------------------------
// What the upstream sends, and the mirror in front of it

/// The upstream's own page for `project` when asked for `accept`: its Content-Type and body.
async fn upstream_page(upstream: &IndexServer, project: &str, accept: &str) -> (String, String) {
    let url = format!("{}{project}/", upstream.index);
    let response = get(&url, accept).await;
    assert_eq!(response.status(), 200, "GET {url}\n{}", upstream.logs());
    let content_type = header(&response, "content-type").to_owned();
    (content_type, response.text().await.unwrap())
}

/// The file URL of `filename` in a JSON page.
fn json_file_url(page: &Value, filename: &str) -> String {
    let files = page["files"].as_array().expect("a files array");
    let file = files
        .iter()
        .find(|f| f["filename"] == filename)
        .unwrap_or_else(|| panic!("no {filename} in {page}"));
    file["url"].as_str().unwrap().to_owned()
}

/// Every `<a href="...">text</a>` of an HTML page, as (text, href).
fn anchors(html: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for piece in html.split("<a ").skip(1) {
        let Some((tag, rest)) = piece.split_once('>') else {
            continue;
        };
        let Some(href) = tag
            .split_once("href=\"")
            .and_then(|(_, h)| h.split_once('"'))
            .map(|(h, _)| h.replace("&amp;", "&"))
        else {
            continue;
        };
        let text = rest.split_once("</a>").map_or(rest, |(t, _)| t).trim();
        found.push((text.to_owned(), href));
    }
    found
}

/// Starts the mirror with `upstream` as its only index (on 127.0.0.1, so private upstreams are
/// allowed) and checks every project page of `dists` in both formats, and every file's bytes.
/// `requires_python`: whether the upstream's pages carry each file's `requires-python`.
async fn mirror_lists_and_serves(
    upstream: &IndexServer,
    dists: &[Dist],
    requires_python: bool,
    data: &tempfile::TempDir,
) -> Server {
    let mut launch = Launch::with_upstreams(&[&upstream.index], "10m");
    launch.env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    let server = Server::start(data.path(), &launch);
    let context = || format!("=== pkgmirror log\n{}\n{}", server.logs(), upstream.logs());

    let mut projects: BTreeMap<&str, Vec<&Dist>> = BTreeMap::new();
    for dist in dists {
        projects.entry(&dist.project).or_default().push(dist);
    }
    let wanted: Vec<&str> = projects.keys().copied().collect();

    // The project list, in both formats.
    let list = get_json(&server.url("/simple/")).await;
    let mut listed: Vec<String> = list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| packages::normalize(p["name"].as_str().unwrap()))
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, wanted, "{list}\n{}", context());
    let response = get(&server.url("/simple/"), HTML).await;
    assert_eq!(response.status(), 200, "GET /simple/ (HTML)\n{}", context());
    let html = response.text().await.unwrap();
    let mut listed: Vec<String> = anchors(&html)
        .into_iter()
        .map(|(text, _)| packages::normalize(&text))
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, wanted, "{html}\n{}", context());

    for (project, files) in &projects {
        let page_url = server.url(&format!("/simple/{project}/"));
        let page_base = Url::parse(&page_url).unwrap();
        let mut wanted: Vec<&str> = files.iter().map(|d| d.filename.as_str()).collect();
        wanted.sort_unstable();

        // JSON: every file, its sha256 and requires-python, a URL on the mirror.
        let response = get(&page_url, JSON).await;
        assert_eq!(response.status(), 200, "GET {page_url} (JSON)\n{}", context());
        assert!(header(&response, "content-type").starts_with(JSON));
        let page: Value = response.json().await.unwrap();
        assert_eq!(
            packages::normalize(page["name"].as_str().unwrap()),
            *project,
            "{page}"
        );
        let mut listed: Vec<&str> = page["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["filename"].as_str().unwrap())
            .collect();
        listed.sort_unstable();
        assert_eq!(listed, wanted, "{page}\n{}", context());
        let mut json_urls = BTreeMap::new();
        for dist in files {
            let file = page["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["filename"] == dist.filename.as_str())
                .unwrap();
            assert_eq!(file["hashes"]["sha256"], dist.sha256.as_str(), "{file}");
            if requires_python {
                assert_eq!(
                    file.get("requires-python").and_then(Value::as_str),
                    dist.requires_python.as_deref(),
                    "{file}"
                );
            }
            let url = page_base.join(&json_file_url(&page, &dist.filename)).unwrap();
            assert!(
                url.as_str().starts_with(&server.base),
                "{} is not served by the mirror: {url}",
                dist.filename
            );
            json_urls.insert(dist.filename.as_str(), url);
        }

        // HTML: the same files, hashes and URLs.
        let response = get(&page_url, HTML).await;
        assert_eq!(response.status(), 200, "GET {page_url} (HTML)\n{}", context());
        assert!(header(&response, "content-type").starts_with(HTML));
        let html = response.text().await.unwrap();
        let links = anchors(&html);
        let mut listed: Vec<&str> = links.iter().map(|(text, _)| text.as_str()).collect();
        listed.sort_unstable();
        assert_eq!(listed, wanted, "{html}\n{}", context());
        for dist in files {
            let href = &links.iter().find(|(text, _)| *text == dist.filename).unwrap().1;
            let (url, fragment) = href.split_once('#').unwrap_or((href, ""));
            assert_eq!(fragment, format!("sha256={}", dist.sha256), "{html}");
            assert_eq!(
                page_base.join(url).unwrap(),
                json_urls[dist.filename.as_str()],
                "{html}"
            );
        }

        // The bytes, from the mirror's file route.
        for dist in files {
            let url = &json_urls[dist.filename.as_str()];
            let response = client().get(url.as_str()).send().await.unwrap();
            assert_eq!(response.status(), 200, "GET {url}\n{}", context());
            let body = response.bytes().await.unwrap();
            assert!(
                body[..] == dist.bytes[..],
                "GET {url}: not the bytes of {}",
                dist.filename
            );
        }
    }
    server
}

/// pip, then uv, install the tree through `server` (each checks what got installed).
async fn clients_install(server: &Server) {
    let index = server.url("/simple/");
    install(Client::Pip, &index, server).await;
    install(Client::Uv, &index, server).await;
}

// ---------------------------------------------------------------------------------------------
// The tests

#[tokio::test]
async fn pypiserver_upstream() {
    if !require_all(&[Tool::IndexServer("pypi-server"), Tool::Pip, Tool::Uv]) {
        return;
    }
    let dists = packages::tree();
    let upstream = pypiserver(&dists).await;

    // pypiserver speaks HTML alone, links files by absolute path, and carries no requires-python.
    let (content_type, body) = upstream_page(&upstream, "lib-a", PIP_ACCEPT).await;
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(
        body.contains("href=\"/packages/lib_a-2.0-py3-none-any.whl#sha256="),
        "{body}"
    );
    assert!(!body.contains("requires-python"), "{body}");

    let data = temp_dir();
    let server = mirror_lists_and_serves(&upstream, &dists, false, &data).await;
    clients_install(&server).await;
}

#[tokio::test]
async fn devpi_upstream() {
    if !require_all(&[
        Tool::IndexServer("devpi-init"),
        Tool::IndexServer("devpi-server"),
        Tool::Pip,
        Tool::Uv,
    ]) {
        return;
    }
    let dists = packages::tree();
    let upstream = devpi(&dists).await;

    // devpi answers JSON when asked and links files relative to the page, two levels up.
    let (content_type, body) = upstream_page(&upstream, "lib-a", PIP_ACCEPT).await;
    assert!(content_type.starts_with(JSON), "{content_type}");
    let page: Value = serde_json::from_str(&body).unwrap();
    let url = json_file_url(&page, "lib_a-2.0-py3-none-any.whl");
    assert!(url.starts_with("../../+f/"), "{url}");

    let data = temp_dir();
    let server = mirror_lists_and_serves(&upstream, &dists, true, &data).await;
    clients_install(&server).await;
}

#[tokio::test]
async fn proxpi_upstream() {
    if !require_all(&[Tool::IndexServer("flask"), Tool::Pip, Tool::Uv]) {
        return;
    }
    let dists = packages::tree();
    let fake = FakeIndex::start();
    packages::serve(&fake, &dists);
    let upstream = proxpi(&fake).await;

    // proxpi answers JSON when asked and links each file by its bare name, beside the page.
    let (content_type, body) = upstream_page(&upstream, "lib-a", PIP_ACCEPT).await;
    assert!(content_type.starts_with(JSON), "{content_type}");
    let page: Value = serde_json::from_str(&body).unwrap();
    let url = json_file_url(&page, "lib_a-2.0-py3-none-any.whl");
    assert_eq!(url, "lib_a-2.0-py3-none-any.whl");

    let data = temp_dir();
    let server = mirror_lists_and_serves(&upstream, &dists, true, &data).await;
    clients_install(&server).await;
    // The mirror took every file from proxpi: it was never redirected past it to the fake.
    for (path, headers) in fake.requests() {
        let agent = headers.get("user-agent").map_or("", String::as_str);
        assert!(
            !agent.starts_with("pkgmirror/"),
            "the mirror itself fetched {path}"
        );
    }
}
