//! What `config show` prints: the effective configuration as a TOML file, or
//! each key with the layer it came from; secrets and credentials redacted.
//! [`leaves`] is also the list of known keys that loading checks against.

use std::fmt::Write as _;

use url::Url;

use super::values::{UpstreamUrls, format_duration, format_size};
use super::{Config, Loaded, PolicyRule, Source};

/// A leaf value as rendered: strings, booleans and lists of strings cover
/// every key (durations and sizes render as strings that parse back).
pub(super) enum Shown {
    Str(String),
    Bool(bool),
    List(Vec<String>),
    /// A list of tables, each rendered inline as TOML.
    Tables(Vec<String>),
}

impl Shown {
    fn to_toml(&self) -> String {
        match self {
            Self::Str(s) => toml_string(s),
            Self::Bool(b) => b.to_string(),
            Self::List(items) => {
                let items: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
                format!("[{}]", items.join(", "))
            }
            Self::Tables(tables) => format!("[{}]", tables.join(", ")),
        }
    }
}

pub(super) struct Leaf {
    pub(super) section: &'static str,
    name: &'static str,
    pub(super) value: Shown,
}

impl Leaf {
    pub(super) fn key(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }
}

/// Every leaf key with its redacted value, in file order. This is also the
/// list of known keys: a field missing here cannot be set.
pub(super) fn leaves(c: &Config) -> Vec<Leaf> {
    use Shown::{Bool, List, Str, Tables};
    let leaf = |section, name, value| Leaf { section, name, value };
    let s3 = &c.storage.s3;
    let pypi = &c.pypi;
    let url_or_empty =
        |u: &Option<UpstreamUrls>| Str(u.as_ref().map(UpstreamUrls::redacted).unwrap_or_default());
    vec![
        leaf("server", "listen", Str(c.server.listen.to_string())),
        leaf(
            "server",
            "admin_token",
            Str(c.server.admin_token.shown().to_owned()),
        ),
        leaf(
            "server",
            "public_url",
            Str(c
                .server
                .public_url
                .as_ref()
                .map(Url::to_string)
                .unwrap_or_default()),
        ),
        leaf(
            "server",
            "trusted_proxies",
            List(c.server.trusted_proxies.iter().map(ToString::to_string).collect()),
        ),
        leaf("server", "allow_open_admin", Bool(c.server.allow_open_admin)),
        leaf("server", "anonymous_read", Bool(c.server.anonymous_read)),
        leaf(
            "server",
            "request_body_timeout",
            Str(format_duration(c.server.request_body_timeout)),
        ),
        leaf(
            "server",
            "tls_cert",
            Str(optional_path(c.server.tls_cert.as_deref())),
        ),
        leaf(
            "server",
            "tls_key",
            Str(optional_path(c.server.tls_key.as_deref())),
        ),
        leaf(
            "storage",
            "data_dir",
            Str(c.storage.data_dir.display().to_string()),
        ),
        leaf("storage", "backend", Str(c.storage.backend.as_str().to_owned())),
        leaf("storage", "max_size", Str(format_size(c.storage.max_size))),
        leaf(
            "storage",
            "page_cache_size",
            Str(format_size(c.storage.page_cache_size)),
        ),
        leaf("storage.s3", "bucket", Str(s3.bucket.clone())),
        leaf("storage.s3", "prefix", Str(s3.prefix.clone())),
        leaf("storage.s3", "endpoint", Str(s3.endpoint.clone())),
        leaf("storage.s3", "region", Str(s3.region.clone())),
        leaf("storage.s3", "path_style", Bool(s3.path_style)),
        leaf("storage.s3", "part_size", Str(format_size(s3.part_size))),
        leaf("pypi", "index_url", url_or_empty(&pypi.index_url)),
        leaf("pypi", "index_ttl", Str(format_duration(pypi.index_ttl))),
        leaf("pypi", "index_name", Str(pypi.index_name.clone())),
        leaf(
            "pypi",
            "extra_index_urls",
            List(pypi.extra_index_urls.iter().map(UpstreamUrls::redacted).collect()),
        ),
        leaf("pypi", "extra_index_names", List(pypi.extra_index_names.clone())),
        leaf(
            "pypi",
            "extra_index_ttls",
            List(
                pypi.extra_index_ttls
                    .iter()
                    .copied()
                    .map(format_duration)
                    .collect(),
            ),
        ),
        leaf(
            "pypi",
            "allow_private_upstreams",
            Bool(pypi.allow_private_upstreams),
        ),
        leaf(
            "pypi",
            "connect_timeout",
            Str(format_duration(pypi.connect_timeout)),
        ),
        leaf("pypi", "read_timeout", Str(format_duration(pypi.read_timeout))),
        leaf("pypi", "page_timeout", Str(format_duration(pypi.page_timeout))),
        leaf("pypi", "refresh_wait", Str(format_duration(pypi.refresh_wait))),
        leaf("pypi", "refresh_ahead", Str(pypi.refresh_ahead.to_string())),
        leaf("pypi", "max_page_size", Str(format_size(pypi.max_page_size))),
        leaf("pypi", "verify_tls", Bool(pypi.verify_tls)),
        leaf(
            "pypi",
            "download_timeout",
            Str(format_duration(pypi.download_timeout)),
        ),
        leaf(
            "pypi",
            "extra_index_strategy",
            Str(pypi.extra_index_strategy.as_str().to_owned()),
        ),
        leaf(
            "pypi",
            "hosted",
            List(pypi.hosted.iter().map(|h| h.name.clone()).collect()),
        ),
        leaf("pypi", "max_upload_size", Str(format_size(pypi.max_upload_size))),
        leaf(
            "pypi",
            "only_from",
            List(pypi.only_from.iter().map(ToString::to_string).collect()),
        ),
        leaf(
            "policy",
            "min_release_age",
            Str(format_duration(c.policy.min_release_age)),
        ),
        leaf(
            "policy",
            "exclude_newer",
            Str(c
                .policy
                .exclude_newer
                .map(crate::policy::format_time)
                .unwrap_or_default()),
        ),
        leaf(
            "policy",
            "unknown_upload_time",
            Str(c.policy.unknown_upload_time.as_str().to_owned()),
        ),
        leaf(
            "policy",
            "rules",
            List(c.policy.rules.iter().map(PolicyRule::to_line).collect()),
        ),
        leaf("hex", "enabled", Bool(c.hex.enabled)),
        leaf("hex", "upstream_url", Str(c.hex.upstream_url.redacted())),
        leaf("hex", "ttl", Str(format_duration(c.hex.ttl))),
        leaf("hex", "public_key", Str(c.hex.public_key.clone())),
        leaf("hex", "resign_key", Str(c.hex.resign_key.shown().to_owned())),
        leaf(
            "hex",
            "hosted",
            Tables(
                c.hex
                    .hosted
                    .iter()
                    .map(|h| {
                        format!(
                            "{{ name = {}, signing_key = {}, fallback = {} }}",
                            toml_string(&h.name),
                            toml_string(&h.signing_key.display().to_string()),
                            h.fallback
                        )
                    })
                    .collect(),
            ),
        ),
        leaf("log", "format", Str(c.log.format.as_str().to_owned())),
        leaf("log", "level", Str(c.log.level.clone())),
        leaf(
            "log",
            "access_hit_sample",
            Str(c.log.access_hit_sample.to_string()),
        ),
        leaf(
            "metrics",
            "listen",
            Str(c.metrics.listen.map(|a| a.to_string()).unwrap_or_default()),
        ),
        leaf("metrics", "token", Str(c.metrics.token.shown().to_owned())),
        leaf(
            "limits",
            "requests_per_second",
            Str(c.limits.requests_per_second.to_string()),
        ),
        leaf("limits", "burst", Str(c.limits.burst.to_string())),
        leaf(
            "limits",
            "downloads_per_client",
            Str(c.limits.downloads_per_client.to_string()),
        ),
        leaf(
            "limits",
            "upstream_concurrency",
            Str(c.limits.upstream_concurrency.to_string()),
        ),
        leaf(
            "limits",
            "max_connections",
            Str(c.limits.max_connections.to_string()),
        ),
        leaf(
            "limits",
            "max_header_size",
            Str(format_size(c.limits.max_header_size)),
        ),
    ]
}

fn optional_path(path: Option<&std::path::Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

/// The keys whose values differ between `a` and `b`, as `section.key` (secrets compared by
/// value, though they render alike).
pub fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let mut changed: Vec<String> = leaves(a)
        .iter()
        .zip(leaves(b).iter())
        .filter(|(x, y)| x.value.to_toml() != y.value.to_toml())
        .map(|(x, _)| format!("{}.{}", x.section, x.name))
        .collect();
    let secrets = [
        ("server.admin_token", &a.server.admin_token, &b.server.admin_token),
        ("hex.resign_key", &a.hex.resign_key, &b.hex.resign_key),
        ("metrics.token", &a.metrics.token, &b.metrics.token),
    ];
    for (key, x, y) in secrets {
        if x.expose() != y.expose() && !changed.iter().any(|k| k == key) {
            changed.push(key.to_owned());
        }
    }
    changed
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The effective configuration as a TOML file, secrets and credentials
/// redacted.
pub fn render_toml(config: &Config) -> String {
    let mut out = String::new();
    let mut section = "";
    for leaf in leaves(config) {
        if leaf.section != section {
            if !section.is_empty() {
                out.push('\n');
            }
            section = leaf.section;
            let _ = writeln!(out, "[{section}]");
        }
        let _ = writeln!(out, "{} = {}", leaf.name, leaf.value.to_toml());
    }
    out
}

/// One line per key, `key = value  # source`, redacted.
pub fn render_sources(loaded: &Loaded) -> String {
    let mut out = String::new();
    for leaf in leaves(&loaded.config) {
        let key = leaf.key();
        let source = loaded.sources.get(&key).unwrap_or(&Source::Default);
        let _ = writeln!(out, "{key} = {}  # {source}", leaf.value.to_toml());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CliOverrides;
    use crate::config::test_support::{load_ok, none, toml_file, with_file};

    #[test]
    fn secrets_and_credentials_never_show() {
        let (_dir, path) = toml_file(
            "[server]\nadmin_token = \"hunter2\"\n[pypi]\nindex_url = \"https://alice:s3cr3t@index.example/simple/\"\n",
        );
        let loaded = load_ok(
            &[
                (
                    "PKGMIRROR__PYPI__EXTRA_INDEX_URLS",
                    "https://bob:pa55@extra.example/",
                ),
                ("PKGMIRROR__HEX__UPSTREAM_URL", "https://carol:k3y@hex.example/"),
            ],
            &with_file(&path),
        );
        let c = &loaded.config;
        assert_eq!(c.server.admin_token.expose(), "hunter2");
        assert_eq!(
            c.pypi.index_url.as_ref().map(|u| u.primary().url().as_str()),
            Some("https://alice:s3cr3t@index.example/simple/")
        );
        let outputs = [
            format!("{c:?}"),
            format!("{loaded:?}"),
            render_toml(c),
            render_sources(&loaded),
        ];
        for out in &outputs {
            for secret in ["hunter2", "alice", "s3cr3t", "bob", "pa55", "carol", "k3y"] {
                assert!(!out.contains(secret), "{secret} in {out}");
            }
            assert!(out.contains("***"), "{out}");
        }
        assert!(outputs[2].contains("admin_token = \"***\"\n"), "{}", outputs[2]);
        assert!(
            outputs[3].contains("pypi.index_url = \"https://***@index.example/simple/\"  # file "),
            "{}",
            outputs[3]
        );
    }

    #[test]
    fn render_sources_names_every_layer() {
        let (_dir, path) = toml_file("[storage]\nmax_size = \"1GiB\"\n");
        let overrides = CliOverrides {
            config_file: Some(path.clone()),
            listen: Some("127.0.0.1:7000".into()),
            ..CliOverrides::default()
        };
        let loaded = load_ok(
            &[
                ("PROXPI_READ_TIMEOUT", "9"),
                ("PKGMIRROR__PYPI__INDEX_TTL", "10m"),
                ("RUST_LOG", "debug"),
            ],
            &overrides,
        );
        let text = render_sources(&loaded);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), loaded.sources.len());
        for want in [
            "server.listen = \"127.0.0.1:7000\"  # flag --listen".to_owned(),
            format!("storage.max_size = \"1GiB\"  # file {}", path.display()),
            "pypi.read_timeout = \"9s\"  # env PROXPI_READ_TIMEOUT".to_owned(),
            "pypi.index_ttl = \"10m\"  # env PKGMIRROR__PYPI__INDEX_TTL".to_owned(),
            "log.level = \"debug\"  # env RUST_LOG".to_owned(),
            "hex.ttl = \"30m\"  # default".to_owned(),
            "pypi.extra_index_urls = []  # default".to_owned(),
        ] {
            assert!(lines.contains(&want.as_str()), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn example_file_sets_every_key_to_its_default() {
        let (_dir, path) = toml_file(include_str!("../../pkgmirror.example.toml"));
        let loaded = load_ok(&[], &with_file(&path));
        assert_eq!(render_toml(&loaded.config), render_toml(&Config::default()));
        for (key, source) in &loaded.sources {
            assert_eq!(
                *source,
                Source::File(path.clone()),
                "{key} missing from the example"
            );
        }
    }

    #[test]
    fn render_toml_reads_back_to_the_same_config() {
        let loaded = load_ok(
            &[
                ("PKGMIRROR__PYPI__INDEX_URL", "https://index.example/simple/"),
                ("PKGMIRROR__PYPI__EXTRA_INDEX_URLS", "https://a.example/"),
                ("PKGMIRROR__PYPI__EXTRA_INDEX_TTLS", "1h 2m 3s"),
                ("PKGMIRROR__PYPI__CONNECT_TIMEOUT", "1.5"),
                ("PKGMIRROR__STORAGE__MAX_SIZE", "123456789"),
                ("PKGMIRROR__SERVER__PUBLIC_URL", "https://mirror.example/pkg"),
                (
                    "PKGMIRROR__HEX__PUBLIC_KEY",
                    "-----BEGIN PUBLIC KEY-----\n\"x\"\\\n-----END PUBLIC KEY-----\n",
                ),
                ("PKGMIRROR__LOG__LEVEL", "pkgmirror=debug,warn"),
            ],
            &none(),
        );
        let first = render_toml(&loaded.config);
        let (_dir, path) = toml_file(&first);
        let again = load_ok(&[], &with_file(&path));
        assert_eq!(render_toml(&again.config), first);
        assert_eq!(again.config.hex.public_key, loaded.config.hex.public_key);
        assert_eq!(
            again.config.server.public_url.map(String::from).as_deref(),
            Some("https://mirror.example/pkg/")
        );
    }
}
