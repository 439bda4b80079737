//! `[pypi]`: the upstream simple indexes with their TTLs, and how the client
//! reaches them.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::values::{MIB, UpstreamUrl, duration, durations, size};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PypiConfig {
    /// The main upstream simple index; `None`: no upstream.
    #[serde(deserialize_with = "optional_upstream")]
    pub index_url: Option<UpstreamUrl>,
    #[serde(deserialize_with = "duration")]
    pub index_ttl: Duration,
    pub extra_index_urls: Vec<UpstreamUrl>,
    /// One per extra index; missing ones default to `index_ttl`.
    #[serde(deserialize_with = "durations")]
    pub extra_index_ttls: Vec<Duration>,
    /// Whether file URLs from pages, and redirects leaving a configured upstream, may lead to
    /// loopback, link-local or private addresses.
    pub allow_private_upstreams: bool,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub read_timeout: Duration,
    /// The whole of one page fetch (registry files included), body and all: a trickling
    /// upstream cannot hold a refresh longer.
    #[serde(deserialize_with = "duration")]
    pub page_timeout: Duration,
    /// How long a request whose stored page has expired waits for the refresh before it gets
    /// the stored copy (`X-Cache: stale`) while the refresh goes on.
    #[serde(deserialize_with = "duration")]
    pub refresh_wait: Duration,
    /// The largest page (or registry file) read from an upstream; a larger one is a 502.
    #[serde(deserialize_with = "size")]
    pub max_page_size: u64,
    pub verify_tls: bool,
    /// Accepted for proxpi compatibility; streaming makes it moot.
    #[serde(deserialize_with = "duration")]
    pub download_timeout: Duration,
}

impl Default for PypiConfig {
    fn default() -> Self {
        Self {
            index_url: None,
            index_ttl: Duration::from_secs(30 * 60),
            extra_index_urls: Vec::new(),
            extra_index_ttls: Vec::new(),
            allow_private_upstreams: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            page_timeout: Duration::from_secs(60),
            refresh_wait: Duration::from_secs(2),
            max_page_size: 64 * MIB,
            verify_tls: true,
            download_timeout: Duration::ZERO,
        }
    }
}

/// One upstream simple index with its time-to-live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    pub url: UpstreamUrl,
    pub ttl: Duration,
}

impl PypiConfig {
    /// The upstream indexes in lookup order: the main index first, then the
    /// extras, each extra with its own TTL or else `index_ttl`.
    pub fn indexes(&self) -> Vec<IndexConfig> {
        let main = self.index_url.iter().map(|url| IndexConfig {
            url: url.clone(),
            ttl: self.index_ttl,
        });
        let extras = self
            .extra_index_urls
            .iter()
            .enumerate()
            .map(|(i, url)| IndexConfig {
                url: url.clone(),
                ttl: self.extra_index_ttls.get(i).copied().unwrap_or(self.index_ttl),
            });
        main.chain(extras).collect()
    }
}

/// Empty string: `None`.
fn optional_upstream<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UpstreamUrl>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{load_ok, none};

    #[test]
    fn extra_index_ttls_default_to_index_ttl() {
        let loaded = load_ok(
            &[
                ("PKGMIRROR__PYPI__INDEX_URL", "https://main.example/"),
                ("PKGMIRROR__PYPI__INDEX_TTL", "10m"),
                (
                    "PKGMIRROR__PYPI__EXTRA_INDEX_URLS",
                    "https://a.example/,https://b.example/",
                ),
                ("PKGMIRROR__PYPI__EXTRA_INDEX_TTLS", "1m"),
            ],
            &none(),
        );
        let indexes = loaded.config.pypi.indexes();
        let got: Vec<(String, u64)> = indexes
            .iter()
            .map(|i| (i.url.to_string(), i.ttl.as_secs()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("https://main.example/".to_owned(), 600),
                ("https://a.example/".to_owned(), 60),
                ("https://b.example/".to_owned(), 600),
            ]
        );
    }
}
