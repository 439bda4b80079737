//! HTTP clients for upstream registries. This is the only module that speaks to the network.
//!
//! Error messages name an index by its redacted URL: credentials in a configured URL are sent to
//! the upstream and appear nowhere else (reqwest's own error text includes the URL, so it is
//! stripped with `without_url`).

mod files;
mod health;
mod hex;
mod pool;
mod redirect;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::header::{ACCEPT, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH};
use reqwest::{Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

pub use files::{FileClient, UrlOrigin, redact};
pub use health::{FailureKind, IndexHealth, IndexHealthReport, IndexState};
pub use hex::{HexClient, HexFetched};
pub use pool::{MemberReport, UpstreamPool};

use crate::config::{PypiConfig, UpstreamUrl};
use crate::metrics::{METRICS, UpstreamOutcome, upstream_label};
use redirect::Follower;

/// Which formats a page is asked for in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageRequest {
    /// JSON first, HTML as a fallback (PEP 691): what pkgmirror asks for by default.
    JsonOrHtml,
    /// HTML alone: for an index whose JSON could not be read.
    HtmlOnly,
}

impl PageRequest {
    fn accept(self) -> &'static str {
        match self {
            Self::JsonOrHtml => {
                "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.1, text/html;q=0.01"
            }
            Self::HtmlOnly => "application/vnd.pypi.simple.v1+html, text/html;q=0.01",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("{index} timed out ({detail})")]
    Timeout { index: String, detail: String },
    #[error("{index} could not be reached: {detail}")]
    Connect { index: String, detail: String },
    #[error("{index} answered HTTP {status} for {path}")]
    Status {
        index: String,
        status: u16,
        path: String,
    },
    #[error("refused to fetch {url}: {reason}")]
    Refused { url: String, reason: String },
    #[error("{index} sent a broken response for {path}: {detail}")]
    Body {
        index: String,
        path: String,
        detail: String,
    },
}

impl UpstreamError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
}

/// The format an upstream answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFormat {
    Json,
    Html,
}

/// The answer to a conditional page fetch.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the stored copy is still current.
    NotModified,
    /// 404 or 410: the index does not have this page.
    NotFound,
    Page {
        body: Bytes,
        format: PageFormat,
        etag: Option<String>,
        /// `X-PyPI-Last-Serial`, when sent.
        last_serial: Option<u64>,
        /// The final URL (after redirects, without credentials): relative links resolve against it.
        url: Url,
    },
}

/// A Simple API client shared by every index.
#[derive(Clone)]
pub struct SimpleClient {
    http: Follower,
    /// The whole of one page fetch, body included (`pypi.page_timeout`).
    page_timeout: Duration,
    /// The largest page read (`pypi.max_page_size`).
    max_page_size: u64,
}

impl SimpleClient {
    pub fn new(config: &PypiConfig, gates: Arc<HostGates>) -> Result<Self, reqwest::Error> {
        let builder = || client_builder(config);
        Ok(Self {
            http: Follower::new(builder, config.allow_private_upstreams, gates)?,
            page_timeout: config.page_timeout,
            max_page_size: config.max_page_size,
        })
    }

    /// Fetches `path` (empty for the project list, `{project}/` for a project) from `upstream` in the
    /// formats `request` names, conditionally on `etag`.
    pub async fn fetch_page(
        &self,
        upstream: &UpstreamUrl,
        path: &str,
        etag: Option<&str>,
        request: PageRequest,
    ) -> Result<Fetched, UpstreamError> {
        let name = upstream.redacted();
        let url = upstream.url().join(path).map_err(|e| UpstreamError::Body {
            index: name.clone(),
            path: path.to_owned(),
            detail: format!("cannot build a URL: {e}"),
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(request.accept()));
        // A stored ETag that is no header value cannot be sent: the fetch is then unconditional.
        if let Some(etag) = etag.and_then(|etag| HeaderValue::from_str(etag).ok()) {
            headers.insert(IF_NONE_MATCH, etag);
        }
        let response = self
            .http
            .get(&name, upstream.url(), url, headers, Some(self.page_timeout))
            .await?;
        match response.status() {
            StatusCode::NOT_MODIFIED => return Ok(Fetched::NotModified),
            StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(Fetched::NotFound),
            status if !status.is_success() => {
                return Err(UpstreamError::Status {
                    index: name,
                    status: status.as_u16(),
                    path: path.to_owned(),
                });
            }
            _ => {}
        }
        let headers = response.headers().clone();
        let mut final_url = response.url().clone();
        // Relative hrefs must not inherit credentials into stored URLs.
        let _ = final_url.set_username("");
        let _ = final_url.set_password(None);
        let body = read_capped(response, self.max_page_size, &name, path).await?;
        Ok(Fetched::Page {
            body,
            format: page_format(&headers),
            etag: header_str(&headers, ETAG).map(str::to_owned),
            last_serial: header_str(&headers, "x-pypi-last-serial").and_then(|s| s.parse().ok()),
            url: final_url,
        })
    }
}

impl SimpleClient {
    /// Asks `member` for a project page no index has: any answer but a failure of its own
    /// (a 404 is the usual one) says the member works. Light for any index: never the project
    /// list.
    pub async fn probe(&self, member: &UpstreamUrl) -> Result<Duration, UpstreamError> {
        let started = std::time::Instant::now();
        self.fetch_page(member, PROBE_PROJECT, None, PageRequest::JsonOrHtml)
            .await
            .map(|_| started.elapsed())
    }
}

/// What a probe asks a pool member for: a project no index has.
const PROBE_PROJECT: &str = "pkgmirror-probe-nonexistent/";

/// What every upstream client shares: who is asking, the timeouts, TLS verification.
fn client_builder(config: &PypiConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("pkgmirror/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .danger_accept_invalid_certs(!config.verify_tls)
}

fn header_str<K: reqwest::header::AsHeaderName>(headers: &HeaderMap, key: K) -> Option<&str> {
    headers.get(key).and_then(|v| v.to_str().ok())
}

fn page_format(headers: &HeaderMap) -> PageFormat {
    let content_type = header_str(headers, reqwest::header::CONTENT_TYPE)
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/vnd.pypi.simple.v1+json")
        || content_type.starts_with("application/vnd.pypi.simple.latest+json")
        || content_type.starts_with("application/json")
    {
        PageFormat::Json
    } else {
        PageFormat::Html
    }
}

/// Reads a body to the end, refusing more than `limit` bytes. A connection cut before the end
/// (short of Content-Length, or a broken chunked stream) is an error: a partial page is never used.
/// A request deadline that passes while reading is a timeout.
async fn read_capped(
    response: Response,
    limit: u64,
    index: &str,
    path: &str,
) -> Result<Bytes, UpstreamError> {
    let broken = |detail: String| UpstreamError::Body {
        index: index.to_owned(),
        path: path.to_owned(),
        detail,
    };
    let too_large = || {
        broken(format!(
            "the page is larger than {limit} bytes (pypi.max_page_size)"
        ))
    };
    let expected = response.content_length();
    if expected.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    // Not more up front than a page may have: a Content-Length is the upstream's claim.
    let capacity = expected.map_or(64 * 1024, |len| len.min(limit)) as usize;
    let mut body = BytesMut::with_capacity(capacity);
    let mut stream = body_stream(response);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match e.is_timeout() {
            true => transport_error(index, e),
            false => broken(describe(&e.without_url())),
        })?;
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// At most `limits.upstream_concurrency` requests under way to one upstream host, bodies
/// included; more wait their turn, in order.
#[derive(Debug)]
pub struct HostGates {
    /// 0: no limit.
    limit: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A turn at a host, kept with the response until its body has been read.
#[derive(Clone)]
struct HostTurn {
    _permit: Arc<OwnedSemaphorePermit>,
}

impl HostGates {
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            limit: limit as usize,
            hosts: Mutex::default(),
        })
    }

    async fn turn(&self, host: &str) -> Option<HostTurn> {
        if self.limit == 0 {
            return None;
        }
        let gate = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                hosts
                    .entry(host.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.limit))),
            )
        };
        // The semaphore is never closed.
        gate.acquire_owned().await.ok().map(|permit| HostTurn {
            _permit: Arc::new(permit),
        })
    }
}

/// Sends `request` for `url` once its host has a turn, counting it in the metrics under the
/// URL's host. The turn goes with the response, to [`body_stream`] or to its drop.
async fn send_counted(
    gates: &HostGates,
    request: reqwest::RequestBuilder,
    url: &Url,
) -> reqwest::Result<Response> {
    let host = upstream_label(url);
    let turn = gates.turn(&host).await;
    let started = std::time::Instant::now();
    let mut sent = request.send().await;
    let outcome = match &sent {
        Ok(response) => UpstreamOutcome::Status(response.status().as_u16()),
        Err(e) if e.is_timeout() => UpstreamOutcome::Timeout,
        Err(_) => UpstreamOutcome::Error,
    };
    METRICS.upstream_request(&host, outcome, started.elapsed());
    if let (Ok(response), Some(turn)) = (&mut sent, turn) {
        response.extensions_mut().insert(turn);
    }
    sent
}

/// An upstream response's body as a stream, its bytes counted in the metrics; the host's turn
/// ends with the stream.
pub fn body_stream(mut response: Response) -> impl futures::Stream<Item = reqwest::Result<Bytes>> {
    let received = METRICS.upstream_received(&upstream_label(response.url()));
    let turn = response.extensions_mut().remove::<HostTurn>();
    response.bytes_stream().inspect(move |chunk| {
        let _held = &turn;
        if let Ok(chunk) = chunk {
            received.inc_by(chunk.len() as u64);
        }
    })
}

pub(crate) fn transport_error(index: &str, err: reqwest::Error) -> UpstreamError {
    let err = err.without_url();
    let detail = describe(&err);
    if err.is_timeout() {
        UpstreamError::Timeout {
            index: index.to_owned(),
            detail,
        }
    } else {
        UpstreamError::Connect {
            index: index.to_owned(),
            detail,
        }
    }
}

/// reqwest's top-level message is generic ("error sending request"); the cause says what happened.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How long an index that just failed is left alone while stale copies can be served, so a dead
/// upstream does not add its timeout to every request.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
