//! `[pypi]`: the upstream simple indexes with their TTLs, and how the client
//! reaches them.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::values::{MIB, NamePattern, UpstreamUrls, duration, durations, size};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PypiConfig {
    /// The main upstream simple index; `None`: no upstream.
    #[serde(deserialize_with = "optional_upstream")]
    pub index_url: Option<UpstreamUrls>,
    #[serde(deserialize_with = "duration")]
    pub index_ttl: Duration,
    /// The main index's name in `/indexes/{name}/simple/` and in `only_from`.
    pub index_name: String,
    pub extra_index_urls: Vec<UpstreamUrls>,
    /// One per extra index; missing ones are `extra-1`, `extra-2`, … by position.
    pub extra_index_names: Vec<String>,
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
    /// The last share of a cached page's lifetime in which a request has it revalidated in the
    /// background (0 to 1; 0: never).
    pub refresh_ahead: f64,
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
    /// Projects whose names match a pattern are served from the named index alone
    /// (`"acme-* = company"`); the first matching rule wins.
    pub only_from: Vec<OnlyFrom>,
}

/// One `pypi.only_from` rule: a project-name pattern and the index it is served from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnlyFrom {
    pub pattern: NamePattern,
    pub index: String,
}

impl OnlyFrom {
    /// Whether a normalized project name matches the pattern.
    pub fn matches(&self, project: &str) -> bool {
        self.pattern.matches(project)
    }
}

impl std::fmt::Display for OnlyFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}", self.pattern, self.index)
    }
}

impl std::str::FromStr for OnlyFrom {
    type Err = String;

    fn from_str(rule: &str) -> Result<Self, String> {
        let Some((pattern, index)) = rule.split_once('=') else {
            return Err(format!(
                "{rule:?}: write a rule as \"PATTERN = INDEX\", e.g. \"acme-* = company\""
            ));
        };
        let index = index.trim();
        let pattern = NamePattern::parse(pattern, crate::ecosystem::Ecosystem::Pypi)
            .map_err(|e| format!("{rule:?}: {e}"))?;
        if !valid_index_name(index) {
            return Err(format!("{rule:?}: {index:?} is not an index name"));
        }
        Ok(Self {
            pattern,
            index: index.to_owned(),
        })
    }
}

impl<'de> Deserialize<'de> for OnlyFrom {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// An index name as paths, scopes and `only_from` spell it: 1-64 lower-case letters, digits, `-`
/// and `_`.
pub fn valid_index_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'))
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
        if !valid_index_name(&name) {
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
            index_name: "main".to_owned(),
            extra_index_urls: Vec::new(),
            extra_index_names: Vec::new(),
            extra_index_ttls: Vec::new(),
            allow_private_upstreams: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            page_timeout: Duration::from_secs(60),
            refresh_wait: Duration::from_secs(2),
            refresh_ahead: 0.2,
            max_page_size: 64 * MIB,
            verify_tls: true,
            download_timeout: Duration::ZERO,
            extra_index_strategy: ExtraIndexStrategy::Merge,
            hosted: Vec::new(),
            max_upload_size: 1024 * MIB,
            only_from: Vec::new(),
        }
    }
}

/// One upstream simple index with its time-to-live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// Its name in `/indexes/{name}/simple/` and `pypi.only_from`.
    pub name: String,
    /// The pool of equivalent URLs; the first is its identity.
    pub urls: UpstreamUrls,
    pub ttl: Duration,
}

impl PypiConfig {
    /// The upstream indexes in lookup order: the main index first, then the
    /// extras, each extra with its own name and TTL or else `extra-N` and `index_ttl`.
    pub fn indexes(&self) -> Vec<IndexConfig> {
        let main = self.index_url.iter().map(|urls| IndexConfig {
            name: self.index_name.clone(),
            urls: urls.clone(),
            ttl: self.index_ttl,
        });
        let extras = self
            .extra_index_urls
            .iter()
            .enumerate()
            .map(|(i, urls)| IndexConfig {
                name: (self.extra_index_names.get(i).cloned()).unwrap_or_else(|| format!("extra-{}", i + 1)),
                urls: urls.clone(),
                ttl: self.extra_index_ttls.get(i).copied().unwrap_or(self.index_ttl),
            });
        main.chain(extras).collect()
    }

    /// Checks what spans keys: every index name valid and used once (upstreams and hosted
    /// indexes share `/indexes/`), every `only_from` rule naming one of them.
    pub(super) fn check_index_names(&self) -> Result<(), (&'static str, String)> {
        if self.extra_index_names.len() > self.extra_index_urls.len() {
            return Err((
                "pypi.extra_index_names",
                format!(
                    "{} names for {} extra index URLs (at most one per extra index)",
                    self.extra_index_names.len(),
                    self.extra_index_urls.len()
                ),
            ));
        }
        let upstreams = self.indexes();
        let names = upstreams
            .iter()
            .map(|i| i.name.as_str())
            .chain(self.hosted.iter().map(|h| h.name.as_str()));
        let mut seen = std::collections::HashSet::new();
        for name in names {
            if !valid_index_name(name) {
                let key = if name == self.index_name {
                    "pypi.index_name"
                } else {
                    "pypi.extra_index_names"
                };
                return Err((
                    key,
                    format!("{name:?}: use 1-64 lower-case letters, digits, '-' or '_'"),
                ));
            }
            if !seen.insert(name) {
                return Err((
                    "pypi.extra_index_names",
                    format!(
                        "{name:?} names two indexes (upstream and hosted names share /indexes/{{name}}/)"
                    ),
                ));
            }
        }
        if let Some(rule) = self.only_from.iter().find(|r| !seen.contains(r.index.as_str())) {
            return Err((
                "pypi.only_from",
                format!(
                    "\"{rule}\": no upstream or hosted index is named {:?}",
                    rule.index
                ),
            ));
        }
        Ok(())
    }
}

/// Empty string: `None`.
fn optional_upstream<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UpstreamUrls>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Text(String),
        List(Vec<String>),
    }
    let text = match Given::deserialize(d)? {
        Given::Text(text) => text,
        Given::List(list) => list.join(" "),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{file_err, load_err, load_ok, none, toml_file, with_file};

    #[test]
    fn an_index_is_a_pool_of_urls_given_as_a_string_or_a_list() {
        let pools = |loaded: crate::config::Loaded| -> Vec<String> {
            loaded
                .config
                .pypi
                .indexes()
                .iter()
                .map(|i| i.urls.redacted())
                .collect()
        };
        let (_dir, path) = toml_file(
            "[pypi]\nindex_url = [\"https://a.example/simple\", \"https://a2.example/simple/\"]\n\
             extra_index_urls = [\"https://b.example/ https://b2.example/\", [\"https://c.example/\"]]\n",
        );
        assert_eq!(
            pools(load_ok(&[], &with_file(&path))),
            [
                "https://a.example/simple/ https://a2.example/simple/",
                "https://b.example/ https://b2.example/",
                "https://c.example/",
            ]
        );
        let loaded = load_ok(
            &[
                (
                    "PKGMIRROR__PYPI__INDEX_URL",
                    "https://a.example/ https://a2.example/",
                ),
                (
                    "PKGMIRROR__HEX__UPSTREAM_URL",
                    "https://h.example/ https://h2.example/",
                ),
            ],
            &none(),
        );
        assert_eq!(loaded.config.hex.upstream_url.members().len(), 2);
        let index = &loaded.config.pypi.indexes()[0];
        assert_eq!(index.urls.members().len(), 2);
        assert_eq!(
            index.urls.cache_key(),
            "https://a.example/",
            "the first member is the identity"
        );
        let (_dir, path) = toml_file("[pypi]\nextra_index_urls = [[]]\n");
        assert!(file_err_at(&path).contains("no URL given"));
        assert!(
            load_err(
                &[(
                    "PKGMIRROR__PYPI__INDEX_URL",
                    "https://a.example/ ftp://b.example/"
                )],
                &none()
            )
            .starts_with("pypi.index_url: only http and https")
        );
    }

    fn file_err_at(path: &std::path::Path) -> String {
        load_err(&[], &with_file(path))
    }

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
    fn indexes_have_names_each_used_once() {
        let names = |loaded: crate::config::Loaded| -> Vec<String> {
            loaded.config.pypi.indexes().into_iter().map(|i| i.name).collect()
        };
        let urls = [
            ("PKGMIRROR__PYPI__INDEX_URL", "https://main.example/"),
            (
                "PKGMIRROR__PYPI__EXTRA_INDEX_URLS",
                "https://a.example/,https://b.example/",
            ),
        ];
        assert_eq!(names(load_ok(&urls, &none())), ["main", "extra-1", "extra-2"]);
        let named = [
            urls[0],
            urls[1],
            ("PKGMIRROR__PYPI__INDEX_NAME", "public"),
            ("PKGMIRROR__PYPI__EXTRA_INDEX_NAMES", "gpu"),
        ];
        assert_eq!(names(load_ok(&named, &none())), ["public", "gpu", "extra-2"]);
        let clash = [urls[0], urls[1], ("PKGMIRROR__PYPI__HOSTED", "extra-2")];
        assert!(load_err(&clash, &none()).contains("\"extra-2\" names two indexes"));
        let bad = [urls[0], ("PKGMIRROR__PYPI__INDEX_NAME", "Main")];
        assert!(load_err(&bad, &none()).starts_with("pypi.index_name: \"Main\""));
        let too_many = [urls[0], ("PKGMIRROR__PYPI__EXTRA_INDEX_NAMES", "a")];
        assert!(load_err(&too_many, &none()).contains("1 names for 0 extra index URLs"));
    }

    #[test]
    fn only_from_rules_name_a_configured_index_and_match_normalized_names() {
        let rules = |loaded: crate::config::Loaded| loaded.config.pypi.only_from;
        let env = [
            ("PKGMIRROR__PYPI__INDEX_URL", "https://main.example/"),
            ("PKGMIRROR__PYPI__HOSTED", "internal"),
            ("PKGMIRROR__PYPI__ONLY_FROM", "Acme_* = main, torch=internal"),
        ];
        let loaded = rules(load_ok(&env, &none()));
        assert_eq!(
            loaded.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["acme-* = main", "torch = internal"]
        );
        let acme = &loaded[0];
        assert!(acme.matches("acme-utils") && acme.matches("acme-"));
        assert!(!acme.matches("acm") && !acme.matches("my-acme-utils"));
        assert!(loaded[1].matches("torch") && !loaded[1].matches("torchvision"));
        let middle: super::OnlyFrom = "a*b*c = x".parse().unwrap();
        assert!(middle.matches("abc") && middle.matches("a-b-x-c") && !middle.matches("acb"));
        assert!(!middle.matches("abcd"));

        let unknown = [env[0], ("PKGMIRROR__PYPI__ONLY_FROM", "acme-* = company")];
        assert!(
            load_err(&unknown, &none()).contains("no upstream or hosted index is named \"company\""),
            "{}",
            load_err(&unknown, &none())
        );
        for bad in ["acme-*", "acme/* = main", "acme = Main"] {
            let e = load_err(&[env[0], ("PKGMIRROR__PYPI__ONLY_FROM", bad)], &none());
            assert!(e.starts_with("pypi.only_from"), "{bad}: {e}");
        }
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
            .map(|i| (i.urls.redacted(), i.ttl.as_secs()))
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
