//! The value types and forms that several sections share: secrets, upstream
//! URLs, durations and sizes, with the field deserialisers that parse them
//! and the formatting that renders them back. Each deserialiser's error
//! names the value and the expected form; config-rs adds the key.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use url::Url;

pub(super) const MIB: u64 = 1 << 20;
pub(super) const GIB: u64 = 1 << 30;

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
    pub(super) fn shown(&self) -> &'static str {
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

/// One upstream's URLs: equivalent members of a pool, the healthy and quickest asked first
/// (`"https://a.example/simple/ https://b.example/simple/"`, or a list). The first names the
/// upstream in the catalogue and the page store, so its cached pages stay when others are added.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct UpstreamUrls(Vec<UpstreamUrl>);

impl UpstreamUrls {
    /// The first member: the upstream's identity.
    pub fn primary(&self) -> &UpstreamUrl {
        // Never empty: parsing refuses an upstream without a URL.
        &self.0[0]
    }

    pub fn members(&self) -> &[UpstreamUrl] {
        &self.0
    }

    /// The members for humans and `config show`, space-separated, credentials hidden.
    pub fn redacted(&self) -> String {
        self.0
            .iter()
            .map(UpstreamUrl::redacted)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The primary's [`UpstreamUrl::cache_key`].
    pub fn cache_key(&self) -> String {
        self.primary().cache_key()
    }

    fn parse_all<'a>(texts: impl Iterator<Item = &'a str>) -> Result<Self, String> {
        let members = texts
            .flat_map(str::split_whitespace)
            .map(str::parse)
            .collect::<Result<Vec<UpstreamUrl>, _>>()?;
        if members.is_empty() {
            return Err("no URL given".to_owned());
        }
        Ok(Self(members))
    }
}

impl FromStr for UpstreamUrls {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse_all(std::iter::once(s))
    }
}

impl From<UpstreamUrl> for UpstreamUrls {
    fn from(url: UpstreamUrl) -> Self {
        Self(vec![url])
    }
}

/// A string of space-separated URLs, or a list of them.
impl<'de> Deserialize<'de> for UpstreamUrls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Urls;
        impl<'de> de::Visitor<'de> for Urls {
            type Value = UpstreamUrls;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a URL, space-separated URLs, or a list of URLs")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<UpstreamUrls, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<UpstreamUrls, A::Error> {
                let mut texts = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    texts.push(text);
                }
                UpstreamUrls::parse_all(texts.iter().map(String::as_str)).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(Urls)
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

pub(super) fn has_credentials(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Parses an http(s) URL and makes its path end with `/`, so that relative
/// joins stay below it. Errors quote the input with credentials hidden.
pub(super) fn parse_http_url(s: &str) -> Result<Url, String> {
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
pub(super) fn redact_raw_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => s.to_owned(),
    }
}

pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

pub(super) fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
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

pub(super) fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
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

pub(super) fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Exact, so that rendered config reads back to the same number of bytes.
pub(super) fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", GIB), ("MiB", MIB), ("KiB", 1 << 10)];
    UNITS
        .iter()
        .find(|&&(_, factor)| bytes != 0 && bytes.is_multiple_of(factor))
        .map(|&(unit, factor)| format!("{}{unit}", bytes / factor))
        .unwrap_or_else(|| bytes.to_string())
}

/// A project-name pattern: a name in which `*` matches any run of characters, normalized as the
/// ecosystem normalizes names (PEP 503 for PyPI; hex names are lower-case already).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    pub fn parse(text: &str, ecosystem: crate::ecosystem::Ecosystem) -> Result<Self, String> {
        let text = text.trim();
        let valid = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*'));
        if !valid {
            return Err(format!(
                "{text:?}: a project pattern is a name in which '*' matches anything"
            ));
        }
        let normalize = |part: &str| match ecosystem {
            crate::ecosystem::Ecosystem::Pypi => crate::pypi::name::normalize(part),
            crate::ecosystem::Ecosystem::Hex => part.to_ascii_lowercase(),
        };
        Ok(Self(text.split('*').map(normalize).collect::<Vec<_>>().join("*")))
    }

    /// Whether a (normalized) name matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let mut parts: Vec<&str> = parts.collect();
        let Some(last) = parts.pop() else {
            // No `*`: the whole name.
            return rest.is_empty();
        };
        for part in parts {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.ends_with(last)
    }
}

impl std::fmt::Display for NamePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::url;

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
}
