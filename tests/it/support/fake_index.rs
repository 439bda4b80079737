//! Fake upstream indexes on 127.0.0.1 that serve fixed pages, count hits, and fail on demand.
//!
//! The fake speaks HTTP/1.1 over raw TCP (one request per connection) so it can do what a
//! well-behaved server library would not: cut a body short, stall, or vanish.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::server::JSON;

/// How the fake answers every request.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    Normal,
    /// Wait this long, then answer normally (keeps concurrent requests overlapping).
    Delay(Duration),
    /// Answer this status with a short body.
    Status(u16),
    /// Send the headers and half the body, then close the connection.
    Truncate,
    /// Accept the request and never answer.
    Stall,
    /// Send the headers and half the body, then wait forever.
    StallMidBody,
    /// Send the headers, then one byte of the body at this interval (no read ever waits long).
    Trickle(Duration),
}

struct Page {
    content_type: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct FakeState {
    pages: Mutex<HashMap<String, Page>>,
    /// Served instead of `pages` to requests whose Accept names no JSON type.
    html_variants: Mutex<HashMap<String, Page>>,
    hits: Mutex<HashMap<String, usize>>,
    /// The request headers of every request, in order: (path, lower-case header map).
    requests: Mutex<Vec<(String, HashMap<String, String>)>>,
    behaviour: Mutex<Option<Behaviour>>,
    /// When set, requests without exactly this Authorization header get 401.
    required_auth: Mutex<Option<String>>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// One request being answered; counted out when dropped.
struct Answering(Arc<FakeState>);

impl Answering {
    fn start(state: &Arc<FakeState>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(Arc::clone(state))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A server on 127.0.0.1 with its own runtime, handing each connection to a handler; it works
/// from inside a test's own runtime too. Dropping it stops it.
pub struct LoopbackServer {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl LoopbackServer {
    pub fn start<F, Fut>(workers: usize, handle: F) -> LoopbackServer
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        Self::start_at("127.0.0.1:0".parse().unwrap(), workers, handle)
    }

    /// [`Self::start`] on `addr` (a port a stopped server had, to bring it back).
    pub fn start_at<F, Fut>(addr: SocketAddr, workers: usize, handle: F) -> LoopbackServer
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap();
        // Bound with std so this works from inside a test's own runtime too.
        let std_listener = std::net::TcpListener::bind(addr).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(std_listener).unwrap()
        };
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream));
            }
        });
        LoopbackServer {
            addr,
            runtime: Some(runtime),
        }
    }

    /// Stops listening: from now on connections are refused.
    pub fn stop(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        // Wait until the port really refuses, so the test's next step sees the outage.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(self.addr).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Reads a request's head: its path as sent and its headers (names in lower case); `None` when
/// the client went away or sent more than 64 KiB of head.
pub async fn read_request_head(stream: &mut TcpStream) -> Option<(String, HashMap<String, String>)> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((path, headers))
}

pub struct FakeIndex {
    pub addr: SocketAddr,
    state: Arc<FakeState>,
    server: LoopbackServer,
}

impl FakeIndex {
    pub fn start() -> FakeIndex {
        Self::start_at("127.0.0.1:0".parse().unwrap())
    }

    /// A fake on `addr` (the port of one that was stopped, to bring an upstream back).
    pub fn start_at(addr: SocketAddr) -> FakeIndex {
        let state = Arc::new(FakeState::default());
        let accept_state = Arc::clone(&state);
        let server = LoopbackServer::start_at(addr, 1, move |stream| {
            serve_connection(stream, Arc::clone(&accept_state))
        });
        FakeIndex {
            addr: server.addr,
            state,
            server,
        }
    }

    /// The root URL, for upstreams served at the root (a hex repository).
    pub fn root_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The index URL to configure: `http://127.0.0.1:PORT/simple/`.
    pub fn url(&self) -> String {
        format!("http://{}/simple/", self.addr)
    }

    /// The index URL with credentials, which the fake then requires.
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        *self.state.required_auth.lock().unwrap() = Some(format!("Basic {token}"));
        format!("http://{user}:{password}@{}/simple/", self.addr)
    }

    /// Serves `body` at `/simple/{path}` (`""` is the project list, `"demo/"` a project).
    pub fn page(&self, path: &str, content_type: &str, body: &str) -> &Self {
        self.file(&format!("/simple/{path}"), content_type, body.as_bytes().to_vec())
    }

    /// Serves `body` at any absolute `path` (e.g. `/files/demo-1.0.tar.gz`), counted in
    /// [`FakeIndex::hits_of`] and failing on demand like the pages.
    pub fn file(&self, path: &str, content_type: &str, body: Vec<u8>) -> &Self {
        self.state.pages.lock().unwrap().insert(
            path.into(),
            Page {
                content_type: content_type.into(),
                body,
            },
        );
        self
    }

    /// Serves `json` at `/simple/{path}` to requests that accept JSON, and `html` to the others,
    /// as a content-negotiating index does.
    pub fn negotiated(&self, path: &str, json: &str, html: &str) -> &Self {
        self.page(path, JSON, json);
        self.state.html_variants.lock().unwrap().insert(
            format!("/simple/{path}"),
            Page {
                content_type: "text/html; charset=utf-8".into(),
                body: html.as_bytes().to_vec(),
            },
        );
        self
    }

    pub fn json(&self, path: &str, body: &serde_json::Value) -> &Self {
        self.page(path, JSON, &body.to_string())
    }

    pub fn html(&self, path: &str, body: &str) -> &Self {
        self.page(path, "text/html; charset=utf-8", body)
    }

    /// Every request so far, in order: its path as sent and its headers (names in lower case).
    pub fn requests(&self) -> Vec<(String, HashMap<String, String>)> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = Some(behaviour);
    }

    /// Requests seen for `/simple/{path}`.
    /// The most requests this fake was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits_of(&format!("/simple/{path}"))
    }

    /// Requests seen for the absolute `path` (e.g. `/files/demo-1.0.tar.gz`).
    pub fn hits_of(&self, path: &str) -> usize {
        self.state.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// A header of the most recent request for `/simple/{path}`.
    pub fn last_header(&self, path: &str, name: &str) -> Option<String> {
        self.last_header_of(&format!("/simple/{path}"), name)
    }

    /// A header of the most recent request for the absolute `path`.
    pub fn last_header_of(&self, full: &str, name: &str) -> Option<String> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(p, _)| *p == full)
            .and_then(|(_, headers)| headers.get(&name.to_ascii_lowercase()).cloned())
    }

    /// Stops listening: from now on connections are refused.
    pub fn stop(self) {
        self.server.stop();
    }
}

pub fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..8]))
}

async fn serve_connection(mut stream: TcpStream, state: Arc<FakeState>) {
    let Some((path, headers)) = read_request_head(&mut stream).await else {
        return;
    };
    let _answering = Answering::start(&state);
    *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    state
        .requests
        .lock()
        .unwrap()
        .push((path.clone(), headers.clone()));
    let behaviour = state
        .behaviour
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(Behaviour::Normal);

    let required = state.required_auth.lock().unwrap().clone();
    if let Some(required) = required
        && headers.get("authorization") != Some(&required)
    {
        return respond(&mut stream, 401, "text/plain", b"credentials required", &[]).await;
    }
    match behaviour {
        Behaviour::Stall => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        Behaviour::Delay(d) => tokio::time::sleep(d).await,
        Behaviour::Status(code) => {
            return respond(&mut stream, code, "text/plain", b"upstream failure", &[]).await;
        }
        Behaviour::Normal | Behaviour::Truncate | Behaviour::StallMidBody | Behaviour::Trickle(_) => {}
    }
    let wants_json = headers.get("accept").is_some_and(|a| a.contains("json"));
    let page = {
        let variants = state.html_variants.lock().unwrap();
        let pages = state.pages.lock().unwrap();
        variants
            .get(&path)
            .filter(|_| !wants_json)
            .or_else(|| pages.get(&path))
            .map(|p| (p.content_type.clone(), p.body.clone()))
    };
    let Some((content_type, body)) = page else {
        return respond(&mut stream, 404, "text/plain", b"not found", &[]).await;
    };
    let etag = etag_of(&body);
    if headers.get("if-none-match") == Some(&etag) {
        return respond(&mut stream, 304, &content_type, b"", &[("ETag", &etag)]).await;
    }
    if matches!(behaviour, Behaviour::Truncate | Behaviour::StallMidBody) {
        // Announce the whole body, send half, then hang up or hang.
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&body[..body.len() / 2]).await;
        let _ = stream.flush().await;
        if behaviour == Behaviour::StallMidBody {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let _ = stream.shutdown().await;
        return;
    }
    if let Behaviour::Trickle(interval) = behaviour {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        for byte in body.chunks(1) {
            if stream.write_all(byte).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(interval).await;
        }
        return;
    }
    respond(&mut stream, 200, &content_type, &body, &[("ETag", &etag)]).await;
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nConnection: close\r\n");
    if status != 304 {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}
