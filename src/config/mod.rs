//! Typed settings of pkgmirror and how they are loaded.
//!
//! Layers, later wins: built-in defaults < TOML file < proxpi variables <
//! `PKGMIRROR__SECTION__KEY` variables < command-line flags. Each layer is
//! flattened to dotted leaf keys (`pypi.index_ttl`) so that the source of
//! every key can be reported; the merged keys are then deserialised by
//! config-rs, whose lenient conversions let environment strings fill typed
//! fields. This is the only module of the program that reads environment
//! variables, so everything else can be tested with plain values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use config::{FileFormat, Map, Source as _, Value, ValueKind};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use tracing_subscriber::EnvFilter;
use url::Url;

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

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// S3's limits on a multipart part.
const MIN_PART_SIZE: u64 = 5 * MIB;
const MAX_PART_SIZE: u64 = 5 * GIB;

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/// The whole configuration; `Default` is the built-in defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub pypi: PypiConfig,
    pub hex: HexConfig,
    pub log: LogConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Empty: admin endpoints answer only requests from loopback.
    pub admin_token: Secret,
    /// External base URL for links behind a reverse proxy; ends with `/`.
    #[serde(deserialize_with = "public_url")]
    pub public_url: Option<Url>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            admin_token: Secret::default(),
            public_url: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub backend: StorageBackend,
    /// Bytes.
    #[serde(deserialize_with = "size")]
    pub max_size: u64,
    /// Bytes of the in-memory cache of rendered index pages.
    #[serde(deserialize_with = "size")]
    pub page_cache_size: u64,
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./pkgmirror-data"),
            backend: StorageBackend::Local,
            max_size: 20 * GIB,
            page_cache_size: 256 * MIB,
            s3: S3Config::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    pub prefix: String,
    /// Empty: the provider's default endpoint. Never holds credentials.
    #[serde(deserialize_with = "s3_endpoint")]
    pub endpoint: String,
    pub region: String,
    pub path_style: bool,
    /// Bytes per multipart upload part.
    #[serde(deserialize_with = "size")]
    pub part_size: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: String::new(),
            region: "us-east-1".to_owned(),
            path_style: false,
            part_size: 16 * MIB,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StorageBackend {
    Local,
    S3,
    Tiered,
}

impl StorageBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::S3 => "s3",
            Self::Tiered => "tiered",
        }
    }
}

impl TryFrom<String> for StorageBackend {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "local" => Ok(Self::Local),
            "s3" => Ok(Self::S3),
            "tiered" => Ok(Self::Tiered),
            _ => Err(format!(
                "unknown backend {value:?} (expected local, s3 or tiered)"
            )),
        }
    }
}

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
    pub allow_private_upstreams: bool,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub read_timeout: Duration,
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

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HexConfig {
    pub enabled: bool,
    pub upstream_url: UpstreamUrl,
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
    /// PEM; empty: the built-in hex.pm key.
    pub public_key: String,
}

impl Default for HexConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            upstream_url: "https://repo.hex.pm"
                .parse()
                .expect("the built-in hex URL is valid"),
            ttl: Duration::from_secs(30 * 60),
            public_key: String::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive; `RUST_LOG` replaces it when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

impl LogConfig {
    /// The tracing filter for `level`; loading has already checked it, the
    /// `Result` is for configs built by hand.
    pub fn filter(&self) -> Result<EnvFilter, String> {
        if self.level.trim().is_empty() {
            return Err("empty filter (expected e.g. \"info\" or \"pkgmirror=debug,warn\")".into());
        }
        EnvFilter::try_new(&self.level).map_err(|e| format!("invalid filter {:?}: {e}", self.level))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("unknown format {value:?} (expected text or json)")),
        }
    }
}

// ---------------------------------------------------------------------------
// Secrets and upstream URLs
// ---------------------------------------------------------------------------

/// A string that never shows in `Debug`, `Display` or rendered config.
/// No `PartialEq`: comparing a token must be done in constant time by the
/// caller, on `expose()`.
#[derive(Clone, Default, Deserialize)]
#[serde(from = "String")]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What outputs show instead of the value.
    fn shown(&self) -> &'static str {
        if self.is_empty() { "" } else { "***" }
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() { "\"\"" } else { "***" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An http(s) base URL of an upstream, normalised to end with `/`. It may
/// carry credentials for private indexes; only `url()` shows them.
#[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct UpstreamUrl(Url);

impl UpstreamUrl {
    /// The URL to send requests to, credentials included.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL for humans: `https://***@host/simple/` when it has
    /// credentials.
    pub fn redacted(&self) -> String {
        let bare = self.cache_key();
        if has_credentials(&self.0) {
            bare.replacen("://", "://***@", 1)
        } else {
            bare
        }
    }

    /// The URL without credentials: a stable id for caches, unchanged when
    /// a password is rotated.
    pub fn cache_key(&self) -> String {
        let mut url = self.0.clone();
        // Cannot fail: http(s) URLs always have a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.into()
    }
}

impl FromStr for UpstreamUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_http_url(s).map(Self)
    }
}

impl TryFrom<String> for UpstreamUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

impl fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UpstreamUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn has_credentials(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Parses an http(s) URL and makes its path end with `/`, so that relative
/// joins stay below it. Errors quote the input with credentials hidden.
fn parse_http_url(s: &str) -> Result<Url, String> {
    let shown = redact_raw_url(s);
    let mut url = Url::parse(s.trim()).map_err(|e| format!("invalid URL {shown:?} ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("only http and https URLs are allowed ({shown:?})"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Hides the user-info part of something that may be a URL, for messages
/// about values that did not parse.
fn redact_raw_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Field deserialisers: each error names the value and the expected form;
// config-rs adds the key.
// ---------------------------------------------------------------------------

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        de::Error::custom(format!(
            "invalid socket address {s:?} (expected e.g. \"127.0.0.1:5000\" or \"[::]:5000\")"
        ))
    })
}

/// Empty string: `None`.
fn optional_upstream<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UpstreamUrl>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(de::Error::custom)
}

/// Empty string: `None`. Credentials are refused: this URL goes into links
/// that clients see.
fn public_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    let url = parse_http_url(&s).map_err(de::Error::custom)?;
    if has_credentials(&url) {
        return Err(de::Error::custom(format!(
            "must not contain credentials ({:?})",
            redact_raw_url(&s)
        )));
    }
    Ok(Some(url))
}

/// Empty string: the provider's default. S3 credentials do not belong in
/// the endpoint, where they would show in logs.
fn s3_endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(String::new());
    }
    let url = parse_http_url(&s).map_err(de::Error::custom)?;
    if has_credentials(&url) {
        return Err(de::Error::custom(format!(
            "must not contain credentials ({:?})",
            redact_raw_url(&s)
        )));
    }
    Ok(s.trim().to_owned())
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    #[derive(Deserialize)]
    struct One(#[serde(deserialize_with = "duration")] Duration);
    let all = Vec::<One>::deserialize(d)?;
    Ok(all.into_iter().map(|One(d)| d).collect())
}

fn invalid_duration(raw: &str) -> String {
    format!("invalid duration {raw:?} (expected e.g. \"30m\" or a number of seconds)")
}

/// Parses `"30m"`, `"1h 30m"`, or seconds as used by proxpi (`"600"`,
/// `"3.1"`).
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| invalid_duration(raw));
    }
    humantime::parse_duration(s).map_err(|_| invalid_duration(raw))
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30m\" or a number of seconds")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(invalid_duration(&v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(v).map_err(|_| E::custom(invalid_duration(&v.to_string())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(SizeVisitor)
}

fn invalid_size(raw: &str) -> String {
    format!("invalid size {raw:?} (expected e.g. \"20GiB\", \"500MB\" or a number of bytes)")
}

/// Parses `"20GiB"`, `"500MB"` or a number of bytes.
fn parse_size(raw: &str) -> Result<u64, String> {
    let s = raw.trim();
    match s.parse::<bytesize::ByteSize>() {
        // bytesize saturates on overflow; a saturated value was not meant.
        Ok(size) if size.as_u64() == u64::MAX && s.parse::<u64>().is_err() => {
            Err(format!("size {raw:?} is too large"))
        }
        Ok(size) => Ok(size.as_u64()),
        Err(_) => Err(invalid_size(raw)),
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"20GiB\" or a number of bytes")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(invalid_size(&v.to_string())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_size(v).map_err(E::custom)
    }
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// A leaf value as rendered: strings, booleans and lists of strings cover
/// every key (durations and sizes render as strings that parse back).
enum Shown {
    Str(String),
    Bool(bool),
    List(Vec<String>),
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
        }
    }
}

struct Leaf {
    section: &'static str,
    name: &'static str,
    value: Shown,
}

impl Leaf {
    fn key(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }
}

/// Every leaf key with its redacted value, in file order. This is also the
/// list of known keys: a field missing here cannot be set.
fn leaves(c: &Config) -> Vec<Leaf> {
    use Shown::{Bool, List, Str};
    let leaf = |section, name, value| Leaf { section, name, value };
    let s3 = &c.storage.s3;
    let pypi = &c.pypi;
    let url_or_empty =
        |u: &Option<UpstreamUrl>| Str(u.as_ref().map(UpstreamUrl::redacted).unwrap_or_default());
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
        leaf(
            "pypi",
            "extra_index_urls",
            List(pypi.extra_index_urls.iter().map(UpstreamUrl::redacted).collect()),
        ),
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
        leaf("pypi", "verify_tls", Bool(pypi.verify_tls)),
        leaf(
            "pypi",
            "download_timeout",
            Str(format_duration(pypi.download_timeout)),
        ),
        leaf("hex", "enabled", Bool(c.hex.enabled)),
        leaf("hex", "upstream_url", Str(c.hex.upstream_url.redacted())),
        leaf("hex", "ttl", Str(format_duration(c.hex.ttl))),
        leaf("hex", "public_key", Str(c.hex.public_key.clone())),
        leaf("log", "format", Str(c.log.format.as_str().to_owned())),
        leaf("log", "level", Str(c.log.level.clone())),
    ]
}

fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Exact, so that rendered config reads back to the same number of bytes.
fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", GIB), ("MiB", MIB), ("KiB", 1 << 10)];
    UNITS
        .iter()
        .find(|&&(_, factor)| bytes != 0 && bytes.is_multiple_of(factor))
        .map(|&(unit, factor)| format!("{}{unit}", bytes / factor))
        .unwrap_or_else(|| bytes.to_string())
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

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

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
fn load_with_default_file(
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
            // TTLs configured elsewhere belong to the replaced extras; the
            // new ones take pypi.index_ttl.
            self.set(
                "pypi.extra_index_ttls".to_owned(),
                Value::new(None, Vec::<Value>::new()),
                origin,
            )?;
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
        if config.storage.backend != StorageBackend::Local && config.storage.s3.bucket.is_empty() {
            return Err(invalid(
                "storage.s3.bucket",
                format!(
                    "required when storage.backend is {:?}",
                    config.storage.backend.as_str()
                ),
            ));
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
    use super::*;

    /// The implicit `./pkgmirror.toml` is replaced by a path that does not
    /// exist, so tests do not depend on the working directory.
    const NO_DEFAULT_FILE: &str = "/nonexistent-pkgmirror-test/pkgmirror.toml";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    fn load_env(pairs: &[(&str, &str)], overrides: &CliOverrides) -> Result<Loaded, ConfigError> {
        load_with_default_file(&env(pairs), overrides, Path::new(NO_DEFAULT_FILE))
    }

    fn load_ok(pairs: &[(&str, &str)], overrides: &CliOverrides) -> Loaded {
        load_env(pairs, overrides).unwrap_or_else(|e| panic!("load failed: {e}"))
    }

    fn load_err(pairs: &[(&str, &str)], overrides: &CliOverrides) -> String {
        match load_env(pairs, overrides) {
            Ok(loaded) => panic!("load succeeded: {:?}", loaded.config),
            Err(e) => e.to_string(),
        }
    }

    /// A temporary config file; the directory lives as long as the guard.
    fn toml_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pkgmirror.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn with_file(path: &Path) -> CliOverrides {
        CliOverrides {
            config_file: Some(path.to_path_buf()),
            ..CliOverrides::default()
        }
    }

    fn none() -> CliOverrides {
        CliOverrides::default()
    }

    fn file_err(text: &str) -> String {
        let (_dir, path) = toml_file(text);
        load_err(&[], &with_file(&path))
    }

    fn url(s: &str) -> UpstreamUrl {
        s.parse().unwrap()
    }

    #[test]
    fn defaults() {
        let loaded = load_ok(&[], &none());
        let c = &loaded.config;
        assert_eq!(c.server.listen, "127.0.0.1:5000".parse().unwrap());
        assert!(c.server.admin_token.is_empty());
        assert_eq!(c.server.public_url, None);
        assert_eq!(c.storage.data_dir, PathBuf::from("./pkgmirror-data"));
        assert_eq!(c.storage.backend, StorageBackend::Local);
        assert_eq!(c.storage.max_size, 20 * GIB);
        assert_eq!(c.storage.page_cache_size, 256 * MIB);
        assert_eq!(c.storage.s3.region, "us-east-1");
        assert!(!c.storage.s3.path_style);
        assert_eq!(c.storage.s3.part_size, 16 * MIB);
        assert_eq!(c.pypi.index_url, None);
        assert_eq!(c.pypi.index_ttl, Duration::from_secs(1800));
        assert!(c.pypi.extra_index_urls.is_empty());
        assert!(c.pypi.verify_tls);
        assert!(!c.pypi.allow_private_upstreams);
        assert_eq!(c.pypi.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.pypi.read_timeout, Duration::from_secs(30));
        assert_eq!(c.pypi.download_timeout, Duration::ZERO);
        assert!(c.pypi.indexes().is_empty());
        assert!(c.hex.enabled);
        assert_eq!(c.hex.upstream_url.url().as_str(), "https://repo.hex.pm/");
        assert_eq!(c.hex.ttl, Duration::from_secs(1800));
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.log.level, "info");
        assert!(loaded.sources.values().all(|s| *s == Source::Default));
        assert_eq!(loaded.sources.len(), leaves(c).len());
    }

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
        assert_eq!(c.pypi.index_url, Some(url("https://index.example/simple/")));
        assert_eq!(c.pypi.index_ttl, Duration::from_secs(60));
        assert_eq!(
            c.pypi.extra_index_urls,
            vec![url("https://extra.example/simple/")]
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
            vec![url("https://a.example/simple/"), url("https://b.example/simple/")]
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
        assert_eq!(c.pypi.index_url, Some(url("https://index.example/simple/")));
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
        assert_eq!(c.pypi.index_url, Some(url("https://flag.example/simple/")));
        // Flags replace the extras too.
        assert!(c.pypi.extra_index_urls.is_empty());
        assert_eq!(c.hex.upstream_url, url("https://hex.example/"));
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
        assert_eq!(pypi.index_url, Some(url("https://main.example/simple/")));
        assert_eq!(pypi.extra_index_urls, vec![url("https://extra.example/simple/")]);
        // The TTLs were for the replaced extras.
        assert!(pypi.extra_index_ttls.is_empty());
        let indexes = pypi.indexes();
        assert_eq!(indexes.len(), 2);
        assert_eq!(indexes[1].ttl, pypi.index_ttl);
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
    fn durations_and_sizes_accept_several_forms() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 600 "), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("0.9"), Ok(Duration::from_millis(900)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("inf").is_err());
        assert_eq!(parse_size("20GiB"), Ok(20 * GIB));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size(&u64::MAX.to_string()), Ok(u64::MAX));
        assert!(parse_size("").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(format_size(20 * GIB), "20GiB");
        assert_eq!(format_size(3 * 1024), "3KiB");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(0), "0");
    }

    #[test]
    fn upstream_urls_are_normalised_and_redacted() {
        let u = url("https://user:pw@index.example/simple");
        assert_eq!(u.url().as_str(), "https://user:pw@index.example/simple/");
        assert_eq!(u.redacted(), "https://***@index.example/simple/");
        assert_eq!(u.to_string(), "https://***@index.example/simple/");
        assert_eq!(
            format!("{u:?}"),
            "UpstreamUrl(\"https://***@index.example/simple/\")"
        );
        assert_eq!(u.cache_key(), "https://index.example/simple/");
        let token_only = url("https://token@index.example/simple/");
        assert_eq!(token_only.redacted(), "https://***@index.example/simple/");
        let plain = url("http://index.example:8080/a/b/");
        assert_eq!(plain.redacted(), "http://index.example:8080/a/b/");
        assert_eq!(plain.cache_key(), plain.url().as_str());
        assert!("ftp://x.example/".parse::<UpstreamUrl>().is_err());
        assert_eq!(redact_raw_url("ftp://a:b@c/d@e"), "ftp://***@c/d@e");
        assert_eq!(redact_raw_url("no url"), "no url");
    }

    #[test]
    fn secrets_are_redacted() {
        let secret = Secret::from("hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.to_string(), "***");
        assert_eq!(secret.expose(), "hunter2");
        let empty = Secret::default();
        assert_eq!(format!("{empty:?}"), "\"\"");
        assert_eq!(empty.to_string(), "\"\"");
        assert!(empty.is_empty());
    }

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
            c.pypi.index_url.as_ref().map(|u| u.url().as_str()),
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
    fn source_display() {
        assert_eq!(Source::Default.to_string(), "default");
        assert_eq!(Source::File("./x.toml".into()).to_string(), "file ./x.toml");
        assert_eq!(
            Source::Env("PKGMIRROR__PYPI__INDEX_TTL".into()).to_string(),
            "env PKGMIRROR__PYPI__INDEX_TTL"
        );
        assert_eq!(Source::Flag("--listen".into()).to_string(), "flag --listen");
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
