//! The live stage: pkgmirror in front of the real public Python index.
//!
//! Every other test talks to upstreams we wrote; this one checks that the mirror reads what the
//! real index sends. `tests/run.sh` runs it (`PKGMIRROR_LIVE=0` skips it) and passes the index URL
//! in `PKGMIRROR_LIVE_INDEX`, read at run time from pip's own configuration: no index host is
//! written in this repository. It is bounded: a dozen project pages, a few small files, and
//! never the index's root project list (the registry's whole list of names).
//!
//! The mirror reaches the index through a local pass-through that counts the requests and that
//! the test stops, to show that the same installs then work from the mirror's cache alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::sandbox::{Client, Sandbox, install_in};
use crate::support::tools::require_all;
use crate::support::*;

/// Projects whose pages are compared with the upstream's own JSON: dots, underscores and
/// capitals in names, a very large page, yanked files, metadata files, an sdist-only project.
const PAGES: [&str; 12] = [
    "six",
    "zope.interface",
    "typing_extensions",
    "Jinja2",
    "numpy",
    "requests",
    "docopt",
    "ruamel.yaml",
    "certifi",
    "idna",
    "packaging",
    "attrs",
];

/// What every client installs: real packages with dependencies (requests alone brings four).
const INSTALL: [&str; 2] = ["requests", "python-dateutil"];

/// Requests the whole stage may send to the index (pages and metadata through the pass-through).
const MAX_UPSTREAM_REQUESTS: usize = 80;

fn live_index() -> String {
    let url = std::env::var("PKGMIRROR_LIVE_INDEX").unwrap_or_default();
    assert!(
        !url.is_empty(),
        "PKGMIRROR_LIVE_INDEX is not set: the live stage is run by `bash tests/run.sh`, which \
         reads the public index's URL from pip (PKGMIRROR_LIVE=0 skips it)"
    );
    if url.ends_with('/') {
        url
    } else {
        format!("{url}/")
    }
}

// ---------------------------------------------------------------------------------------------
// A pass-through to the live index on 127.0.0.1

/// Forwards `GET /simple/...` to the live index with the request's Accept and If-None-Match, and
/// answers with its status, body and the headers a Simple API client reads. One request per
/// connection; stopping it makes the port refuse.
struct PassThrough {
    server: LoopbackServer,
    requests: Arc<AtomicUsize>,
}

impl PassThrough {
    fn start(index: &str) -> PassThrough {
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let index = index.to_owned();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap();
        let server = LoopbackServer::start(2, move |stream| {
            counter.fetch_add(1, Ordering::SeqCst);
            forward(stream, index.clone(), http.clone())
        });
        PassThrough { server, requests }
    }

    fn url(&self) -> String {
        format!("http://{}/simple/", self.server.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn stop(self) {
        self.server.stop();
    }
}

async fn forward(mut stream: TcpStream, index: String, http: reqwest::Client) {
    let Some((path, headers)) = read_request_head(&mut stream).await else {
        return;
    };
    let relative = path.strip_prefix("/simple/").unwrap_or_default();
    // Never the root list: it is the registry's whole list of names.
    if relative.is_empty() || relative.contains("..") {
        let _ = stream
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    }
    let mut request = http.get(format!("{index}{relative}"));
    for name in ["accept", "if-none-match"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    let Ok(response) = request.send().await else {
        let _ = stream
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    let status = response.status().as_u16();
    let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for name in ["content-type", "etag", "x-pypi-last-serial"] {
        if let Some(value) = response.headers().get(name).and_then(|v| v.to_str().ok()) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let body = response.bytes().await.unwrap_or_default();
    if status != 304 {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Comparing pages

/// (filename, sha256) of every file of a PEP 691 JSON page.
fn json_files(page: &serde_json::Value) -> BTreeSet<(String, String)> {
    page["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files array: {page}"))
        .iter()
        .map(|f| {
            (
                f["filename"].as_str().unwrap().to_owned(),
                f["hashes"]["sha256"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// (filename, sha256) of every link of the mirror's PEP 503 page, read without pkgmirror's own
/// parser: the text of each `<a>` and the `#sha256=` fragment of its href.
fn html_files(page: &str) -> BTreeSet<(String, String)> {
    page.split("<a ")
        .skip(1)
        .map(|link| {
            let sha = link
                .split_once("#sha256=")
                .map(|(_, rest)| rest.chars().take_while(char::is_ascii_hexdigit).collect())
                .unwrap_or_default();
            let text = link
                .split_once('>')
                .and_then(|(_, rest)| rest.split_once("</a>"))
                .map(|(text, _)| text.trim().to_owned())
                .unwrap_or_default();
            (text, sha)
        })
        .collect()
}

/// GET that follows redirects (a non-normalized name redirects, on the mirror and the index).
async fn fetch_text(url: &str, accept: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(url)
        .header("Accept", accept)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

// ---------------------------------------------------------------------------------------------
// The stage

#[tokio::test]
#[ignore = "the live stage against the public index: `bash tests/run.sh` runs it"]
async fn the_public_index_through_the_mirror_then_from_its_cache_alone() {
    if !require_all(&Client::ALL.map(Client::tool)) {
        return;
    }
    let index = live_index();
    let upstream = PassThrough::start(&index);
    let data = temp_dir();
    let server = Server::start(data.path(), &Launch::with_upstreams(&[&upstream.url()], "10m"));

    // 1. Pages: the mirror's, in both formats, list what the index's own JSON lists.
    for project in PAGES {
        let (status, mirror_json) = fetch_text(&server.url(&format!("/simple/{project}/")), JSON).await;
        assert_eq!(status, 200, "{project}: {mirror_json}\n{}", server.logs());
        let mirror_json: serde_json::Value = serde_json::from_str(&mirror_json).unwrap();
        let (status, mirror_html) =
            fetch_text(&server.url(&format!("/simple/{project}/")), "text/html").await;
        assert_eq!(status, 200, "{project}");
        let normalized = mirror_json["name"].as_str().unwrap().to_owned();
        let (status, own) = fetch_text(&format!("{index}{project}/"), JSON).await;
        assert_eq!(status, 200, "{project} upstream");
        let own: serde_json::Value = serde_json::from_str(&own).unwrap();
        let expected = json_files(&own);
        assert!(!expected.is_empty(), "{project}: the index lists no files");
        assert!(
            expected.iter().all(|(_, sha)| sha.len() == 64),
            "{project}: a file without sha256 upstream"
        );
        assert_eq!(
            json_files(&mirror_json),
            expected,
            "{project} ({normalized}): JSON"
        );
        assert_eq!(
            html_files(&mirror_html),
            expected,
            "{project} ({normalized}): HTML"
        );
    }
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["upstreams"][0]["state"], "up", "{health}");
    assert_eq!(health["upstreams"][0]["dropped_entries"], 0, "{health}");

    // 2. Real installs with dependencies, each client through the mirror.
    let mirror = server.url("/simple/");
    let mut versions: Option<BTreeMap<String, String>> = None;
    for client in Client::ALL {
        let mut sandbox = Sandbox::new();
        let installed = install_in(&mut sandbox, client, &mirror, &INSTALL, &server).await;
        let found = installed.versions(&mut sandbox, &server).await;
        assert!(
            INSTALL.iter().all(|r| found.contains_key(*r)) && found.len() >= INSTALL.len() + 4,
            "{client:?} installed {found:?}"
        );
        match &versions {
            None => versions = Some(found),
            Some(first) => assert_eq!(&found, first, "{client:?} installed other versions"),
        }
    }
    let versions = versions.unwrap();
    let asked = upstream.requests();
    assert!(
        asked <= MAX_UPSTREAM_REQUESTS,
        "the live stage sent {asked} requests to the index (bound: {MAX_UPSTREAM_REQUESTS})"
    );
    println!("live stage: {asked} upstream page requests; installed {versions:?}");

    // `pkgmirror warm` on what the clients installed, pinned, for this Python on manylinux
    // x86_64: every page and file is read through the mirror and checked (real pages carry
    // core metadata and PEP 740 provenance, which the mirror fetches and keeps too).
    let pinned: Vec<String> = versions
        .iter()
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    let locks = temp_dir();
    std::fs::write(locks.path().join("requirements.txt"), pinned.join("\n") + "\n").unwrap();
    let python_version = std::process::Command::new(crate::support::tools::python())
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap();
    let python_version = String::from_utf8_lossy(&python_version.stdout).trim().to_owned();
    let root = server.url("/");
    let args = [
        "warm",
        "--server",
        &root,
        "--python-version",
        &python_version,
        "--platform",
        "manylinux*_x86_64",
        "requirements.txt",
    ];
    let (code, out, err) = run_pkgmirror(locks.path(), &args, &[]);
    assert_eq!(code, 0, "{out}{err}\n{}", server.logs());
    assert!(out.contains(", 0 failed"), "{out}");
    println!("live stage: {}", out.lines().next().unwrap_or_default());

    // 3. The index unreachable, the mirror restarted with every page expired: the same installs
    //    come from its cache alone.
    let upstream_url = upstream.url();
    upstream.stop();
    server.kill();
    let server = Server::start(data.path(), &Launch::with_upstreams(&[&upstream_url], "1s"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mirror = server.url("/simple/");
    for client in Client::ALL {
        let mut sandbox = Sandbox::new();
        let installed = install_in(&mut sandbox, client, &mirror, &INSTALL, &server).await;
        let found = installed.versions(&mut sandbox, &server).await;
        assert_eq!(found, versions, "{client:?} offline");
    }
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["upstreams"][0]["state"], "down", "{health}");
    let logs = server.logs();
    assert!(logs.contains("cache=\"stale\""), "{logs}");
}
