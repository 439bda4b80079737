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
    /// How the extra indexes' files join the main index's.
    pub extra_index_strategy: ExtraIndexStrategy,
    /// Hosted indexes: the team's own packages, uploaded to `/indexes/{name}/`.
    #[serde(deserialize_with = "hosted_indexes")]
    pub hosted: Vec<HostedIndexConfig>,
    /// The largest file an upload may carry.
    #[serde(deserialize_with = "size")]
    pub max_upload_size: u64,
}

/// How a project listed by several upstream indexes is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExtraIndexStrategy {
    /// Every index's files, merged (what pip and proxpi do).
    #[default]
    Merge,
    /// The files of the first index (in order) that lists the project, alone (what uv does).
    FirstIndex,
}

impl ExtraIndexStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Merge => "merge",
            Self::FirstIndex => "first-index",
        }
    }
}

/// One hosted index (`[[pypi.hosted]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostedIndexConfig {
    /// Lower-case letters, digits, `-` and `_`: it is a path segment and a token scope.
    pub name: String,
}

/// `[[pypi.hosted]]` tables with a `name`, or names alone (as the environment and
/// `config show` write them: `PKGMIRROR__PYPI__HOSTED=internal,other`).
fn hosted_indexes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HostedIndexConfig>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Table {
        name: String,
    }
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a table with a name (and nothing else), or a name")]
    enum Entry {
        Name(String),
        Table(Table),
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for entry in Vec::<Entry>::deserialize(d)? {
        let name = match entry {
            Entry::Name(name) | Entry::Table(Table { name }) => name,
        };
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'));
        if !valid {
            return Err(de::Error::custom(format!(
                "hosted index name {name:?}: use 1-64 lower-case letters, digits, '-' or '_'"
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(de::Error::custom(format!("hosted index {name:?} is named twice")));
        }
        out.push(HostedIndexConfig { name });
    }
    Ok(out)
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
            extra_index_strategy: ExtraIndexStrategy::Merge,
            hosted: Vec::new(),
            max_upload_size: 1024 * MIB,
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
    use crate::config::test_support::{file_err, load_err, load_ok, none, toml_file, with_file};

    #[test]
    fn hosted_indexes_are_tables_or_names() {
        let names = |loaded: crate::config::Loaded| -> Vec<String> {
            loaded.config.pypi.hosted.into_iter().map(|h| h.name).collect()
        };
        let (_dir, path) =
            toml_file("[[pypi.hosted]]\nname = \"internal\"\n\n[[pypi.hosted]]\nname = \"gpu\"\n");
        assert_eq!(names(load_ok(&[], &with_file(&path))), ["internal", "gpu"]);
        assert_eq!(
            names(load_ok(
                &[("PKGMIRROR__PYPI__HOSTED", "internal, team_b")],
                &none()
            )),
            ["internal", "team_b"]
        );
        assert!(
            load_err(&[("PKGMIRROR__PYPI__HOSTED", "Internal")], &none())
                .contains("hosted index name \"Internal\"")
        );
        assert!(load_err(&[("PKGMIRROR__PYPI__HOSTED", "a,a")], &none()).contains("named twice"));
        let unknown = file_err("[[pypi.hosted]]\nname = \"x\"\nurl = \"y\"\n");
        assert!(
            unknown.starts_with("pypi.hosted[0]: a table with a name (and nothing else)"),
            "{unknown}"
        );
    }

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
