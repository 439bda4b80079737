//! Loading. Each layer is flattened to dotted leaf keys (`pypi.index_ttl`) so
//! that the source of every key can be reported; the merged keys are then
//! deserialised by config-rs, whose lenient conversions let environment
//! strings fill typed fields, and last come the checks that span keys.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use config::{FileFormat, Map, Source as _, Value, ValueKind};

use super::show::{Shown, leaves};
use super::storage::{MAX_PART_SIZE, MIN_PART_SIZE};
use super::values::format_size;
use super::{Config, StorageBackend};

/// The file read when neither `--config` nor `PKGMIRROR_CONFIG` names one.
const DEFAULT_FILE: &str = "./pkgmirror.toml";
const ENV_PREFIX: &str = "PKGMIRROR__";
const CONFIG_FILE_VAR: &str = "PKGMIRROR_CONFIG";
/// tracing's usual variable; it overrides `log.level` so that the familiar
/// knob works without knowing ours.
const RUST_LOG_VAR: &str = "RUST_LOG";

/// proxpi's variables and the keys they set, so that a proxpi deployment's
/// environment keeps working unchanged.
const PROXPI_VARS: [(&str, &str); 9] = [
    ("PROXPI_INDEX_URL", "pypi.index_url"),
    ("PROXPI_EXTRA_INDEX_URLS", "pypi.extra_index_urls"),
    ("PROXPI_INDEX_TTL", "pypi.index_ttl"),
    ("PROXPI_EXTRA_INDEX_TTLS", "pypi.extra_index_ttls"),
    ("PROXPI_CACHE_SIZE", "storage.max_size"),
    ("PROXPI_CACHE_DIR", "storage.data_dir"),
    ("PROXPI_DOWNLOAD_TIMEOUT", "pypi.download_timeout"),
    ("PROXPI_CONNECT_TIMEOUT", "pypi.connect_timeout"),
    ("PROXPI_READ_TIMEOUT", "pypi.read_timeout"),
];
const PROXPI_NO_VERIFY_VAR: &str = "PROXPI_DISABLE_INDEX_SSL_VERIFICATION";

/// Values given on the command line; `None`/empty: not given.
#[derive(Clone, Debug, Default)]
pub struct CliOverrides {
    pub config_file: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// First: `pypi.index_url`; rest: `pypi.extra_index_urls`.
    pub pypi_upstreams: Vec<String>,
    pub hex_upstream: Option<String>,
    pub log_format: Option<String>,
}

/// Where a key's effective value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    /// The variable's name.
    Env(String),
    /// The flag's name, with its dashes.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(var) => write!(f, "env {var}"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// The configuration and, for every leaf key, where its value came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub sources: BTreeMap<String, Source>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("unknown key {key:?} in {origin}")]
    UnknownKey { key: String, origin: Source },
    #[error("{key}: {reason}{}", from_suffix(origin))]
    Invalid {
        key: String,
        reason: String,
        origin: Source,
    },
    #[error("env {var}: value is not valid UTF-8")]
    NotUnicode { var: String },
}

/// Names a non-default source: with several layers it is otherwise hard to
/// tell which one holds the bad value.
fn from_suffix(origin: &Source) -> String {
    match origin {
        Source::Default => String::new(),
        other => format!(", from {other}"),
    }
}

/// Loads the configuration from the process environment, the config file
/// and `overrides`.
pub fn load(overrides: &CliOverrides) -> Result<Loaded, ConfigError> {
    let mut env = BTreeMap::new();
    for (name, value) in std::env::vars_os() {
        // Variables of other programs may hold anything; only ours must be
        // text.
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                env.insert(name, value);
            }
            Err(_) if is_our_var(&name) => return Err(ConfigError::NotUnicode { var: name }),
            Err(_) => {}
        }
    }
    load_from(&env, overrides)
}

fn is_our_var(name: &str) -> bool {
    name.starts_with("PKGMIRROR") || name.starts_with("PROXPI_") || name == RUST_LOG_VAR
}

/// [`load`] with the environment given as a map.
pub fn load_from(env: &BTreeMap<String, String>, overrides: &CliOverrides) -> Result<Loaded, ConfigError> {
    load_with_default_file(env, overrides, Path::new(DEFAULT_FILE))
}

/// [`load_from`] with the implicit config file's path as a parameter, so
/// tests do not depend on the working directory.
pub(super) fn load_with_default_file(
    env: &BTreeMap<String, String>,
    overrides: &CliOverrides,
    default_file: &Path,
) -> Result<Loaded, ConfigError> {
    let mut layers = Layers::new();

    let file = match (&overrides.config_file, env.get(CONFIG_FILE_VAR)) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(path)) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => default_file.exists().then(|| default_file.to_path_buf()),
    };
    if let Some(path) = file {
        layers.add_file(&path)?;
    }

    for (var, key) in PROXPI_VARS {
        if let Some(value) = env.get(var).filter(|v| !v.is_empty()) {
            layers.set_text(key, value, Source::Env(var.to_owned()))?;
        }
    }
    // proxpi disables verification for any value but these.
    if let Some(value) = env.get(PROXPI_NO_VERIFY_VAR)
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "" | "0" | "no" | "off" | "false"
        )
    {
        let origin = Source::Env(PROXPI_NO_VERIFY_VAR.to_owned());
        layers.set("pypi.verify_tls".to_owned(), Value::new(None, false), origin)?;
    }

    for (var, value) in env {
        if let Some(path) = var.strip_prefix(ENV_PREFIX) {
            let key = path
                .split("__")
                .collect::<Vec<_>>()
                .join(".")
                .to_ascii_lowercase();
            layers.set_text(&key, value, Source::Env(var.clone()))?;
        }
    }
    if let Some(level) = env.get(RUST_LOG_VAR).filter(|v| !v.is_empty()) {
        layers.set_text("log.level", level, Source::Env(RUST_LOG_VAR.to_owned()))?;
    }

    layers.add_flags(overrides)?;
    layers.finish()
}

/// The merged flat key map: each leaf key with the value and the source of
/// the last layer that set it.
struct Layers {
    /// Known leaf keys, each with whether it is a list.
    known: BTreeMap<String, bool>,
    /// Keys that hold tables: `storage`, `storage.s3`, ...
    sections: BTreeSet<&'static str>,
    merged: BTreeMap<String, (Value, Source)>,
}

impl Layers {
    fn new() -> Self {
        let leaves = leaves(&Config::default());
        let known = leaves
            .iter()
            .map(|leaf| (leaf.key(), matches!(leaf.value, Shown::List(_))))
            .collect();
        let sections = leaves
            .iter()
            .flat_map(|leaf| {
                // `storage.s3` is a section, and so is `storage`.
                std::iter::successors(Some(leaf.section), |s| s.rsplit_once('.').map(|(p, _)| p))
            })
            .collect();
        Self {
            known,
            sections,
            merged: BTreeMap::new(),
        }
    }

    fn set(&mut self, key: String, value: Value, origin: Source) -> Result<(), ConfigError> {
        if !self.known.contains_key(&key) {
            return Err(if self.sections.contains(key.as_str()) {
                ConfigError::Invalid {
                    key,
                    reason: "is a section: set the keys inside it".to_owned(),
                    origin,
                }
            } else {
                ConfigError::UnknownKey { key, origin }
            });
        }
        self.merged.insert(key, (value, origin));
        Ok(())
    }

    /// Sets a key from text (a variable or a flag): list keys take
    /// comma-separated items. Other values stay strings, so that an
    /// all-digit token is not turned into a number; config-rs converts them
    /// where a field wants a number or a boolean.
    fn set_text(&mut self, key: &str, text: &str, origin: Source) -> Result<(), ConfigError> {
        let value = if self.known.get(key) == Some(&true) {
            let items: Vec<Value> = text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::new(None, item))
                .collect();
            Value::new(None, items)
        } else {
            Value::new(None, text)
        };
        self.set(key.to_owned(), value, origin)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let file_error = |reason: String| ConfigError::File {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let table = config::File::from_str(&text, FileFormat::Toml)
            .collect()
            .map_err(|e| file_error(one_line_parse_error(&e.to_string())))?;
        self.add_table("", table, &Source::File(path.to_path_buf()))
    }

    fn add_table(
        &mut self,
        prefix: &str,
        table: Map<String, Value>,
        origin: &Source,
    ) -> Result<(), ConfigError> {
        for (name, value) in table {
            let key = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}.{name}")
            };
            match value.kind {
                ValueKind::Table(inner) if !self.known.contains_key(&key) => {
                    self.add_table(&key, inner, origin)?;
                }
                kind => self.set(key, Value::new(None, kind), origin.clone())?,
            }
        }
        Ok(())
    }

    fn add_flags(&mut self, o: &CliOverrides) -> Result<(), ConfigError> {
        let flag = |name: &str| Source::Flag(name.to_owned());
        if let Some(listen) = &o.listen {
            self.set_text("server.listen", listen, flag("--listen"))?;
        }
        if let Some(dir) = &o.data_dir {
            let Some(dir) = dir.to_str() else {
                return Err(ConfigError::Invalid {
                    key: "storage.data_dir".to_owned(),
                    reason: "path is not valid UTF-8".to_owned(),
                    origin: flag("--data-dir"),
                });
            };
            self.set_text("storage.data_dir", dir, flag("--data-dir"))?;
        }
        if let Some((main, extras)) = o.pypi_upstreams.split_first() {
            let origin = flag("--pypi-upstream");
            self.set_text("pypi.index_url", main, origin.clone())?;
            let extras: Vec<Value> = extras.iter().map(|u| Value::new(None, u.as_str())).collect();
            self.set(
                "pypi.extra_index_urls".to_owned(),
                Value::new(None, extras),
                origin.clone(),
            )?;
            // TTLs and names configured elsewhere belong to the replaced
            // extras; the new ones take pypi.index_ttl and `extra-N`.
            for key in ["pypi.extra_index_ttls", "pypi.extra_index_names"] {
                self.set(
                    key.to_owned(),
                    Value::new(None, Vec::<Value>::new()),
                    origin.clone(),
                )?;
            }
        }
        if let Some(url) = &o.hex_upstream {
            self.set_text("hex.upstream_url", url, flag("--hex-upstream"))?;
        }
        if let Some(format) = &o.log_format {
            self.set_text("log.format", format, flag("--log-format"))?;
        }
        Ok(())
    }

    /// Deserialises the merged keys and checks what spans keys.
    fn finish(self) -> Result<Loaded, ConfigError> {
        let mut sources: BTreeMap<String, Source> = self
            .known
            .keys()
            .map(|key| (key.clone(), Source::Default))
            .collect();
        let mut root = Map::new();
        for (key, (value, origin)) in self.merged {
            insert_path(&mut root, &key, value);
            sources.insert(key, origin);
        }
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: key.to_owned(),
            reason,
            // A key inside a list (`pypi.extra_index_urls[1]`) has the list's
            // source.
            origin: sources
                .get(key.split('[').next().unwrap_or(key))
                .cloned()
                .unwrap_or(Source::Default),
        };

        let config: Config = Value::new(None, root).try_deserialize().map_err(|e| match e {
            config::ConfigError::At {
                error,
                key: Some(key),
                ..
            } => invalid(&key, error.to_string()),
            config::ConfigError::Type {
                unexpected,
                expected,
                key: Some(key),
                ..
            } => invalid(&key, format!("invalid type: {unexpected}, expected {expected}")),
            other => invalid("config", other.to_string()),
        })?;

        config
            .log
            .filter()
            .map_err(|reason| invalid("log.level", reason))?;
        let (ttls, urls) = (
            config.pypi.extra_index_ttls.len(),
            config.pypi.extra_index_urls.len(),
        );
        if ttls > urls {
            return Err(invalid(
                "pypi.extra_index_ttls",
                format!("{ttls} TTLs for {urls} extra index URLs (at most one per extra index)"),
            ));
        }
        config
            .pypi
            .check_index_names()
            .map_err(|(key, reason)| invalid(key, reason))?;
        config
            .hex
            .check_hosted()
            .map_err(|(key, reason)| invalid(key, reason))?;
        config
            .server
            .tls_files()
            .map_err(|(key, reason)| invalid(key, reason))?;
        if config.storage.backend != StorageBackend::Local && config.storage.s3.bucket.is_empty() {
            return Err(invalid(
                "storage.s3.bucket",
                format!(
                    "required when storage.backend is {:?}",
                    config.storage.backend.as_str()
                ),
            ));
        }
        if !(0.0..=1.0).contains(&config.pypi.refresh_ahead) {
            return Err(invalid(
                "pypi.refresh_ahead",
                format!(
                    "{} is not a share of a page's lifetime (0 to 1; 0 turns it off)",
                    config.pypi.refresh_ahead
                ),
            ));
        }
        if config.pypi.max_page_size == 0 {
            return Err(invalid(
                "pypi.max_page_size",
                "must be more than 0 bytes".to_owned(),
            ));
        }
        if config.pypi.page_timeout.is_zero() {
            return Err(invalid("pypi.page_timeout", "must be longer than 0s".to_owned()));
        }
        let part_size = config.storage.s3.part_size;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(invalid(
                "storage.s3.part_size",
                format!("{} is outside S3's limits (5MiB to 5GiB)", format_size(part_size)),
            ));
        }
        Ok(Loaded { config, sources })
    }
}

/// Puts `value` at dotted `key` in nested tables. No known key is a prefix
/// of another, so the parts before the last are always tables.
fn insert_path(table: &mut Map<String, Value>, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_owned())
                .or_insert_with(|| Value::new(None, Map::<String, Value>::new()));
            if let ValueKind::Table(inner) = &mut entry.kind {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// The TOML parser's message without its multi-line excerpt of the file,
/// which could show a secret: `TOML parse error at line 3, column 5: ...`.
fn one_line_parse_error(message: &str) -> String {
    let is_excerpt = |line: &str| {
        let t = line.trim_start();
        t.starts_with('|')
            || t.split_once(" |")
                .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
    };
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_excerpt(line))
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::LogFormat;
    use crate::config::test_support::{file_err, load_err, load_ok, none, toml_file, urls, with_file};
    use crate::config::values::MIB;

    #[test]
    fn file_overrides_defaults() {
        let (_dir, path) = toml_file(
            r#"
            [server]
            listen = "0.0.0.0:8080"
            [storage]
            backend = "tiered"
            max_size = 1000
            [storage.s3]
            bucket = "b"
            path_style = true
            [pypi]
            index_url = "https://index.example/simple"
            index_ttl = 60
            extra_index_urls = ["https://extra.example/simple/"]
            [hex]
            enabled = false
            [log]
            format = "json"
            "#,
        );
        let loaded = load_ok(&[], &with_file(&path));
        let c = &loaded.config;
        assert_eq!(c.server.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.storage.backend, StorageBackend::Tiered);
        assert_eq!(c.storage.max_size, 1000);
        assert_eq!(c.storage.s3.bucket, "b");
        assert!(c.storage.s3.path_style);
        assert_eq!(c.pypi.index_url, Some(urls("https://index.example/simple/")));
        assert_eq!(c.pypi.index_ttl, Duration::from_secs(60));
        assert_eq!(
            c.pypi.extra_index_urls,
            vec![urls("https://extra.example/simple/")]
        );
        assert!(!c.hex.enabled);
        assert_eq!(c.log.format, LogFormat::Json);
        // Untouched keys keep their defaults.
        assert_eq!(c.storage.page_cache_size, 256 * MIB);
        assert_eq!(loaded.sources["server.listen"], Source::File(path.clone()));
        assert_eq!(loaded.sources["storage.s3.bucket"], Source::File(path));
        assert_eq!(loaded.sources["pypi.read_timeout"], Source::Default);
    }

    #[test]
    fn config_file_from_env_and_implicit_default() {
        let (_dir, path) = toml_file("[server]\nlisten = \"127.0.0.1:1\"\n");
        let path_text = path.to_str().unwrap();
        let loaded = load_ok(&[("PKGMIRROR_CONFIG", path_text)], &none());
        assert_eq!(loaded.config.server.listen.port(), 1);

        // --config wins over PKGMIRROR_CONFIG.
        let (_dir2, other) = toml_file("[server]\nlisten = \"127.0.0.1:2\"\n");
        let loaded = load_ok(&[("PKGMIRROR_CONFIG", path_text)], &with_file(&other));
        assert_eq!(loaded.config.server.listen.port(), 2);

        // The implicit file is read when it exists.
        let loaded = load_with_default_file(&BTreeMap::new(), &none(), &path).unwrap();
        assert_eq!(loaded.config.server.listen.port(), 1);
        assert_eq!(loaded.sources["server.listen"], Source::File(path));
    }

    #[test]
    fn explicit_missing_config_file_is_an_error() {
        let missing = Path::new("/nonexistent-pkgmirror-test/x.toml");
        let e = load_err(&[], &with_file(missing));
        assert!(
            e.starts_with("config file /nonexistent-pkgmirror-test/x.toml: "),
            "{e}"
        );
        let e = load_err(
            &[("PKGMIRROR_CONFIG", "/nonexistent-pkgmirror-test/x.toml")],
            &none(),
        );
        assert!(
            e.starts_with("config file /nonexistent-pkgmirror-test/x.toml: "),
            "{e}"
        );
    }

    #[test]
    fn toml_syntax_error_is_one_line_without_the_file_excerpt() {
        let e = file_err("[server]\nlisten = \"127.0.0.1:5000\"\nadmin_token = hunter2\n");
        assert!(e.contains("TOML parse error at line 3"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn env_overrides_file() {
        let (_dir, path) = toml_file("[pypi]\nindex_ttl = \"1m\"\nconnect_timeout = \"2s\"\n");
        let loaded = load_ok(&[("PKGMIRROR__PYPI__INDEX_TTL", "10m")], &with_file(&path));
        assert_eq!(loaded.config.pypi.index_ttl, Duration::from_secs(600));
        assert_eq!(loaded.config.pypi.connect_timeout, Duration::from_secs(2));
        assert_eq!(
            loaded.sources["pypi.index_ttl"],
            Source::Env("PKGMIRROR__PYPI__INDEX_TTL".into())
        );
        assert_eq!(loaded.sources["pypi.connect_timeout"], Source::File(path));
    }

    #[test]
    fn env_reaches_nested_sections_and_converts_types() {
        let loaded = load_ok(
            &[
                ("PKGMIRROR__STORAGE__BACKEND", "s3"),
                ("PKGMIRROR__STORAGE__S3__BUCKET", "x"),
                ("PKGMIRROR__STORAGE__S3__PATH_STYLE", "true"),
                ("PKGMIRROR__STORAGE__MAX_SIZE", "500MB"),
                ("PKGMIRROR__PYPI__VERIFY_TLS", "false"),
                ("PKGMIRROR__HEX__TTL", "90"),
            ],
            &none(),
        );
        let c = &loaded.config;
        assert_eq!(c.storage.backend, StorageBackend::S3);
        assert_eq!(c.storage.s3.bucket, "x");
        assert!(c.storage.s3.path_style);
        assert_eq!(c.storage.max_size, 500_000_000);
        assert!(!c.pypi.verify_tls);
        assert_eq!(c.hex.ttl, Duration::from_secs(90));
        assert_eq!(
            loaded.sources["storage.s3.bucket"],
            Source::Env("PKGMIRROR__STORAGE__S3__BUCKET".into())
        );
    }

    #[test]
    fn numeric_env_values_stay_strings() {
        let (_dir, path) = toml_file("[server]\nadmin_token = 12345\n");
        let loaded = load_ok(&[("PKGMIRROR__STORAGE__S3__PREFIX", "007")], &with_file(&path));
        assert_eq!(loaded.config.server.admin_token.expose(), "12345");
        assert_eq!(loaded.config.storage.s3.prefix, "007");
        let loaded = load_ok(&[("PKGMIRROR__SERVER__ADMIN_TOKEN", "000123")], &none());
        assert_eq!(loaded.config.server.admin_token.expose(), "000123");
    }

    #[test]
    fn list_env_values_are_comma_separated() {
        let loaded = load_ok(
            &[
                (
                    "PKGMIRROR__PYPI__EXTRA_INDEX_URLS",
                    "https://a.example/simple, https://b.example/simple/,",
                ),
                ("PKGMIRROR__PYPI__EXTRA_INDEX_TTLS", "5m"),
            ],
            &none(),
        );
        let pypi = &loaded.config.pypi;
        assert_eq!(
            pypi.extra_index_urls,
            vec![
                urls("https://a.example/simple/"),
                urls("https://b.example/simple/")
            ]
        );
        assert_eq!(pypi.extra_index_ttls, vec![Duration::from_secs(300)]);
        // An empty value empties a list set by a lower layer.
        let (_dir, path) = toml_file("[pypi]\nextra_index_urls = [\"https://a.example/\"]\n");
        let loaded = load_ok(&[("PKGMIRROR__PYPI__EXTRA_INDEX_URLS", "")], &with_file(&path));
        assert!(loaded.config.pypi.extra_index_urls.is_empty());
    }

    #[test]
    fn proxpi_variables_map_to_keys() {
        let loaded = load_ok(
            &[
                ("PROXPI_INDEX_URL", "https://index.example/simple/"),
                ("PROXPI_EXTRA_INDEX_URLS", "https://a.example/,https://b.example/"),
                ("PROXPI_INDEX_TTL", "600"),
                ("PROXPI_EXTRA_INDEX_TTLS", "60,120"),
                ("PROXPI_CACHE_SIZE", "1000000"),
                ("PROXPI_CACHE_DIR", "/var/cache/proxpi"),
                ("PROXPI_DOWNLOAD_TIMEOUT", "0.9"),
                ("PROXPI_CONNECT_TIMEOUT", "3.1"),
                ("PROXPI_READ_TIMEOUT", "20"),
                ("PROXPI_DISABLE_INDEX_SSL_VERIFICATION", "1"),
            ],
            &none(),
        );
        let c = &loaded.config;
        assert_eq!(c.pypi.index_url, Some(urls("https://index.example/simple/")));
        assert_eq!(c.pypi.extra_index_urls.len(), 2);
        assert_eq!(c.pypi.index_ttl, Duration::from_secs(600));
        assert_eq!(
            c.pypi.extra_index_ttls,
            vec![Duration::from_secs(60), Duration::from_secs(120)]
        );
        assert_eq!(c.storage.max_size, 1_000_000);
        assert_eq!(c.storage.data_dir, PathBuf::from("/var/cache/proxpi"));
        assert_eq!(c.pypi.download_timeout, Duration::from_millis(900));
        assert_eq!(c.pypi.connect_timeout, Duration::from_millis(3100));
        assert_eq!(c.pypi.read_timeout, Duration::from_secs(20));
        assert!(!c.pypi.verify_tls);
        assert_eq!(
            loaded.sources["pypi.index_ttl"],
            Source::Env("PROXPI_INDEX_TTL".into())
        );
        assert_eq!(
            loaded.sources["pypi.verify_tls"],
            Source::Env("PROXPI_DISABLE_INDEX_SSL_VERIFICATION".into())
        );
    }

    #[test]
    fn proxpi_empty_and_false_values_are_ignored() {
        let loaded = load_ok(
            &[
                ("PROXPI_INDEX_URL", ""),
                ("PROXPI_DISABLE_INDEX_SSL_VERIFICATION", "false"),
            ],
            &none(),
        );
        assert_eq!(loaded.config.pypi.index_url, None);
        assert!(loaded.config.pypi.verify_tls);
        assert_eq!(loaded.sources["pypi.verify_tls"], Source::Default);
        for on in ["true", "yes", "YES"] {
            let loaded = load_ok(&[("PROXPI_DISABLE_INDEX_SSL_VERIFICATION", on)], &none());
            assert!(!loaded.config.pypi.verify_tls, "{on}");
        }
    }

    #[test]
    fn proxpi_is_below_pkgmirror_env_and_above_file() {
        let (_dir, path) =
            toml_file("[pypi]\nindex_ttl = \"1m\"\nread_timeout = \"1s\"\n[storage]\nmax_size = 5\n");
        let loaded = load_ok(
            &[
                ("PROXPI_INDEX_TTL", "600"),
                ("PKGMIRROR__PYPI__INDEX_TTL", "20m"),
                ("PROXPI_READ_TIMEOUT", "7"),
                ("PKGMIRROR__PYPI__VERIFY_TLS", "true"),
                ("PROXPI_DISABLE_INDEX_SSL_VERIFICATION", "1"),
            ],
            &with_file(&path),
        );
        let c = &loaded.config;
        assert_eq!(c.pypi.index_ttl, Duration::from_secs(1200));
        assert_eq!(c.pypi.read_timeout, Duration::from_secs(7));
        assert!(c.pypi.verify_tls);
        assert_eq!(c.storage.max_size, 5);
        assert_eq!(
            loaded.sources["pypi.index_ttl"],
            Source::Env("PKGMIRROR__PYPI__INDEX_TTL".into())
        );
        assert_eq!(
            loaded.sources["pypi.read_timeout"],
            Source::Env("PROXPI_READ_TIMEOUT".into())
        );
        assert_eq!(loaded.sources["storage.max_size"], Source::File(path));
    }

    #[test]
    fn flags_win() {
        let (_dir, path) = toml_file(
            "[server]\nlisten = \"127.0.0.1:1\"\n[hex]\nupstream_url = \"https://file.example/\"\n",
        );
        let overrides = CliOverrides {
            config_file: Some(path),
            listen: Some("[::1]:9000".into()),
            data_dir: Some("/srv/mirror".into()),
            pypi_upstreams: vec!["https://flag.example/simple/".into()],
            hex_upstream: Some("https://hex.example".into()),
            log_format: Some("json".into()),
        };
        let loaded = load_ok(
            &[
                ("PKGMIRROR__SERVER__LISTEN", "127.0.0.1:2"),
                ("PKGMIRROR__STORAGE__DATA_DIR", "/env"),
                ("PROXPI_INDEX_URL", "https://proxpi.example/simple/"),
                ("PKGMIRROR__PYPI__EXTRA_INDEX_URLS", "https://env.example/"),
                ("PKGMIRROR__LOG__FORMAT", "text"),
            ],
            &overrides,
        );
        let c = &loaded.config;
        assert_eq!(c.server.listen, "[::1]:9000".parse().unwrap());
        assert_eq!(c.storage.data_dir, PathBuf::from("/srv/mirror"));
        assert_eq!(c.pypi.index_url, Some(urls("https://flag.example/simple/")));
        // Flags replace the extras too.
        assert!(c.pypi.extra_index_urls.is_empty());
        assert_eq!(c.hex.upstream_url, urls("https://hex.example/"));
        assert_eq!(c.log.format, LogFormat::Json);
        let flag = |f: &str| Source::Flag(f.to_owned());
        assert_eq!(loaded.sources["server.listen"], flag("--listen"));
        assert_eq!(loaded.sources["storage.data_dir"], flag("--data-dir"));
        assert_eq!(loaded.sources["pypi.index_url"], flag("--pypi-upstream"));
        assert_eq!(loaded.sources["pypi.extra_index_urls"], flag("--pypi-upstream"));
        assert_eq!(loaded.sources["hex.upstream_url"], flag("--hex-upstream"));
        assert_eq!(loaded.sources["log.format"], flag("--log-format"));
    }

    #[test]
    fn pypi_upstream_flag_twice() {
        let overrides = CliOverrides {
            pypi_upstreams: vec![
                "https://main.example/simple".into(),
                "https://extra.example/simple".into(),
            ],
            ..CliOverrides::default()
        };
        let loaded = load_ok(&[("PKGMIRROR__PYPI__EXTRA_INDEX_TTLS", "1m,2m")], &overrides);
        let pypi = &loaded.config.pypi;
        assert_eq!(pypi.index_url, Some(urls("https://main.example/simple/")));
        assert_eq!(pypi.extra_index_urls, vec![urls("https://extra.example/simple/")]);
        // The TTLs were for the replaced extras.
        assert!(pypi.extra_index_ttls.is_empty());
        let indexes = pypi.indexes();
        assert_eq!(indexes.len(), 2);
        assert_eq!(indexes[1].ttl, pypi.index_ttl);
    }

    #[test]
    fn more_ttls_than_extra_urls_is_an_error() {
        let e = load_err(
            &[
                ("PKGMIRROR__PYPI__EXTRA_INDEX_URLS", "https://a.example/"),
                ("PKGMIRROR__PYPI__EXTRA_INDEX_TTLS", "1m,2m"),
            ],
            &none(),
        );
        assert!(e.starts_with("pypi.extra_index_ttls: "), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "PKGMIRROR__PYPI__INDEX_TTL",
                "abc",
                r#"pypi.index_ttl: invalid duration "abc" (expected e.g. "30m" or a number of seconds)"#,
            ),
            ("PKGMIRROR__HEX__TTL", "-1", "hex.ttl: invalid duration"),
            (
                "PKGMIRROR__STORAGE__MAX_SIZE",
                "lots",
                "storage.max_size: invalid size \"lots\"",
            ),
            (
                "PKGMIRROR__STORAGE__MAX_SIZE",
                "99999999EiB",
                "storage.max_size: size",
            ),
            (
                "PKGMIRROR__PYPI__INDEX_URL",
                "ftp://u:secret@files.example/",
                r#"pypi.index_url: only http and https URLs are allowed ("ftp://***@files.example/")"#,
            ),
            (
                "PKGMIRROR__PYPI__INDEX_URL",
                "not a url",
                "pypi.index_url: invalid URL",
            ),
            (
                "PKGMIRROR__PYPI__EXTRA_INDEX_URLS",
                "https://a.example/,file:///tmp",
                "pypi.extra_index_urls[1]: only http and https",
            ),
            (
                "PKGMIRROR__HEX__UPSTREAM_URL",
                "repo",
                "hex.upstream_url: invalid URL",
            ),
            (
                "PKGMIRROR__SERVER__LISTEN",
                "x",
                r#"server.listen: invalid socket address "x""#,
            ),
            (
                "PKGMIRROR__SERVER__PUBLIC_URL",
                "https://u:p@m.example/",
                "server.public_url: must not contain credentials",
            ),
            (
                "PKGMIRROR__STORAGE__BACKEND",
                "gcs",
                r#"storage.backend: unknown backend "gcs""#,
            ),
            (
                "PKGMIRROR__STORAGE__S3__PART_SIZE",
                "1MiB",
                "storage.s3.part_size: ",
            ),
            (
                "PKGMIRROR__STORAGE__S3__ENDPOINT",
                "minio:9000",
                "storage.s3.endpoint: ",
            ),
            ("PKGMIRROR__STORAGE__BACKEND", "s3", "storage.s3.bucket: required"),
            (
                "PKGMIRROR__LOG__FORMAT",
                "xml",
                "log.format: unknown format \"xml\"",
            ),
            (
                "PKGMIRROR__LOG__LEVEL",
                "info,x=loud",
                "log.level: invalid filter",
            ),
            ("PKGMIRROR__LOG__LEVEL", " ", "log.level: empty filter"),
            (
                "PKGMIRROR__PYPI__VERIFY_TLS",
                "maybe",
                "pypi.verify_tls: invalid type",
            ),
            (
                "PKGMIRROR__PYPI__INDEX_TLL",
                "1m",
                r#"unknown key "pypi.index_tll" in env PKGMIRROR__PYPI__INDEX_TLL"#,
            ),
            ("PKGMIRROR__PYPI", "x", "pypi: is a section"),
        ];
        for &(var, value, want) in cases {
            let e = load_err(&[(var, value)], &none());
            assert!(e.starts_with(want), "{var}={value}: got {e:?}, want {want:?}…");
            assert!(!e.contains('\n'), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_layer() {
        let e = load_err(&[("PKGMIRROR__PYPI__INDEX_TTL", "abc")], &none());
        assert!(e.ends_with(", from env PKGMIRROR__PYPI__INDEX_TTL"), "{e}");
        let e = load_err(
            &[],
            &CliOverrides {
                listen: Some("nowhere".into()),
                ..CliOverrides::default()
            },
        );
        assert!(
            e.starts_with("server.listen: invalid socket address \"nowhere\""),
            "{e}"
        );
        assert!(e.ends_with(", from flag --listen"), "{e}");
        let e = load_err(&[("RUST_LOG", "x=loud")], &none());
        assert!(e.starts_with("log.level: "), "{e}");
        assert!(e.ends_with(", from env RUST_LOG"), "{e}");
    }

    #[test]
    fn bad_file_values_name_key_and_file() {
        let (_dir, path) = toml_file("[pypi]\nindex_ttl = \"soon\"\n");
        let e = load_err(&[], &with_file(&path));
        assert_eq!(
            e,
            format!(
                "pypi.index_ttl: invalid duration \"soon\" (expected e.g. \"30m\" or a number of seconds), from file {}",
                path.display()
            )
        );
        let e = file_err("[storage]\nmax_size = -3\n");
        assert!(e.starts_with("storage.max_size: invalid size \"-3\""), "{e}");
        let e = file_err("[storage]\nbackend = \"nfs\"\n");
        assert!(e.starts_with("storage.backend: "), "{e}");
        let e = file_err("[server]\nlisten = 5000\n");
        assert!(
            e.starts_with("server.listen: invalid socket address \"5000\""),
            "{e}"
        );
        let e = file_err("[pypi]\nextra_index_urls = [\"gopher://x.example/\"]\n");
        assert!(
            e.starts_with("pypi.extra_index_urls[0]: only http and https"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let (_dir, path) = toml_file("[pypi]\nindex_tll = \"1m\"\n");
        let e = load_err(&[], &with_file(&path));
        assert_eq!(
            e,
            format!("unknown key \"pypi.index_tll\" in file {}", path.display())
        );
        assert!(file_err("[pypy]\nindex_url = \"\"\n").starts_with("unknown key \"pypy.index_url\""));
        assert!(file_err("top = 1\n").starts_with("unknown key \"top\""));
        assert!(file_err("[storage.s4]\nbucket = \"b\"\n").starts_with("unknown key \"storage.s4.bucket\""));
        // A table where a value belongs names the key, not its insides.
        let e = file_err("[server.listen]\nport = 1\n");
        assert!(e.starts_with("server.listen: "), "{e}");
    }

    #[test]
    fn source_display() {
        assert_eq!(Source::Default.to_string(), "default");
        assert_eq!(Source::File("./x.toml".into()).to_string(), "file ./x.toml");
        assert_eq!(
            Source::Env("PKGMIRROR__PYPI__INDEX_TTL".into()).to_string(),
            "env PKGMIRROR__PYPI__INDEX_TTL"
        );
        assert_eq!(Source::Flag("--listen".into()).to_string(), "flag --listen");
    }
}
