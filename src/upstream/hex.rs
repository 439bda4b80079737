//! The hex repository client: conditional GETs against the configured repository, bodies taken
//! byte for byte. Registry files are gzip inside the body and clients verify those exact bytes,
//! so nothing is ever decompressed on the way (no `Accept-Encoding`, no transparent gunzip).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH};
use reqwest::{Response, StatusCode};
use url::Url;

use super::redirect::Follower;
use super::{UpstreamError, header_str, read_capped};
use std::sync::Arc;

use super::pool::UpstreamPool;
use crate::config::{PypiConfig, UpstreamUrl, UpstreamUrls};

/// The answer to a conditional fetch of a repository path.
#[derive(Debug)]
pub enum HexFetched {
    /// 304: the stored copy is still current.
    NotModified,
    /// 404, 403 or 410: the repository has no such file (hex.pm's store answers 403 for a
    /// package that does not exist).
    Missing { status: u16 },
    /// 200: the body is left to the caller, to read whole or to stream.
    Found {
        response: Response,
        etag: Option<String>,
    },
}

#[derive(Clone)]
pub struct HexClient {
    http: Follower,
    /// The repository's URLs; the first is its identity.
    upstream: UpstreamUrls,
    pool: Arc<UpstreamPool>,
    /// The whole of one registry file fetch, body included (`pypi.page_timeout`).
    page_timeout: Duration,
    /// The largest registry file read (`pypi.max_page_size`).
    max_page_size: u64,
}

impl HexClient {
    /// Timeouts and TLS verification follow the `[pypi]` settings: one set of upstream HTTP
    /// settings for the whole mirror.
    pub fn new(
        http_settings: &PypiConfig,
        upstream: UpstreamUrls,
        gates: std::sync::Arc<super::HostGates>,
    ) -> Result<Self, reqwest::Error> {
        // Registry files are gzip inside the body and must be kept byte for byte.
        let builder = || super::client_builder(http_settings).no_gzip();
        let http = Follower::new(builder, http_settings.allow_private_upstreams, gates)?;
        Ok(Self {
            http,
            pool: Arc::new(UpstreamPool::new(upstream.members())),
            upstream,
            page_timeout: http_settings.page_timeout,
            max_page_size: http_settings.max_page_size,
        })
    }

    /// The repository's identity: its first URL.
    pub fn upstream(&self) -> &UpstreamUrl {
        self.upstream.primary()
    }

    /// The repository's members and their health.
    pub fn pool(&self) -> &UpstreamPool {
        &self.pool
    }

    /// The upstream URL of a repository path (`/packages/x`) on the member to ask now,
    /// credentials included.
    pub fn url(&self, path: &str) -> Result<Url, UpstreamError> {
        member_url(&self.pool.best(), path)
    }

    /// Fetches a registry file, conditionally on `etag`, within `pypi.page_timeout` body included
    /// (read it with [`Self::read_body`]).
    pub async fn fetch_registry(&self, path: &str, etag: Option<&str>) -> Result<HexFetched, UpstreamError> {
        self.fetch_within(path, etag, Some(self.page_timeout)).await
    }

    /// Fetches `path`, conditionally on `etag`; the body may take as long as it streams.
    pub async fn fetch(&self, path: &str, etag: Option<&str>) -> Result<HexFetched, UpstreamError> {
        self.fetch_within(path, etag, None).await
    }

    /// `path` from the pool's members in turn (see [`UpstreamPool::run`]).
    async fn fetch_within(
        &self,
        path: &str,
        etag: Option<&str>,
        deadline: Option<Duration>,
    ) -> Result<HexFetched, UpstreamError> {
        self.pool
            .run(|member| async move { self.fetch_from(&member, path, etag, deadline).await })
            .await
    }

    async fn fetch_from(
        &self,
        member: &UpstreamUrl,
        path: &str,
        etag: Option<&str>,
        deadline: Option<Duration>,
    ) -> Result<HexFetched, UpstreamError> {
        let name = member.redacted();
        let mut headers = HeaderMap::new();
        if let Some(etag) = etag.and_then(|etag| HeaderValue::from_str(etag).ok()) {
            headers.insert(IF_NONE_MATCH, etag);
        }
        let response = self
            .http
            .get(&name, member.url(), member_url(member, path)?, headers, deadline)
            .await?;
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(HexFetched::NotModified),
            status @ (StatusCode::NOT_FOUND | StatusCode::FORBIDDEN | StatusCode::GONE) => {
                Ok(HexFetched::Missing {
                    status: status.as_u16(),
                })
            }
            status if status.is_success() => {
                let etag = header_str(response.headers(), ETAG).map(str::to_owned);
                Ok(HexFetched::Found { response, etag })
            }
            status => Err(UpstreamError::Status {
                index: name,
                status: status.as_u16(),
                path: path.to_owned(),
            }),
        }
    }

    /// Asks `member` for a package no repository has: any answer but a failure of its own (a
    /// 404 or 403 is the usual one) says the member works.
    pub async fn probe(&self, member: &UpstreamUrl) -> Result<Duration, UpstreamError> {
        let started = std::time::Instant::now();
        self.fetch_from(
            member,
            "packages/pkgmirror-probe-nonexistent",
            None,
            Some(self.page_timeout),
        )
        .await
        .map(|_| started.elapsed())
    }

    /// Reads a fetched body whole (registry files), refusing more than `pypi.max_page_size` or a
    /// body cut short.
    pub async fn read_body(&self, path: &str, response: Response) -> Result<Bytes, UpstreamError> {
        let member = response.url().clone();
        read_capped(
            response,
            self.max_page_size,
            &super::redact(member.as_str()),
            path,
        )
        .await
    }
}

fn member_url(member: &UpstreamUrl, path: &str) -> Result<Url, UpstreamError> {
    member
        .url()
        .join(path.trim_start_matches('/'))
        .map_err(|e| UpstreamError::Body {
            index: member.redacted(),
            path: path.to_owned(),
            detail: format!("cannot build a URL: {e}"),
        })
}
