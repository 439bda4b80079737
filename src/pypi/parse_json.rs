//! PEP 691 JSON pages from an upstream into the model.
//!
//! Read the way PEP 691 asks clients to read: unknown keys (and private `_` keys) are ignored, and
//! so is a known key whose value has a type that cannot mean anything (real servers send numbers
//! as strings, `null` for absent values, `1` for `true`). Only the page's shape (an object with a
//! `name` and a `files` array) is required; a malformed file entry is dropped and reported, never
//! the whole page.

use std::collections::HashSet;

use crate::pypi::model::Hashes;

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use url::Url;

use super::model::{DistFile, PageMeta, ProjectList, ProjectPage, ProjectStatus};
use super::name::{is_safe_filename, normalize, validate_project_name};
use super::parse::{
    ParseError, Parsed, body_str, check_api_version, file_hashes, is_fetchable, non_empty, provenance_url,
    take_fragment_hash,
};

/// Readers for a single value: each takes whatever JSON is there and keeps what it can mean.
/// They never fail, so a value of an unexpected type costs that value alone.
mod lenient {
    use crate::pypi::model::Hashes;

    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    use super::super::model::ProjectStatus;
    use super::super::parse::normalize_hashes;

    /// No real distribution file is larger than this: a bigger `size` is a broken value.
    const MAX_PLAUSIBLE_SIZE: u64 = 1 << 40;

    fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn string_of(value: Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A whole number, also written as a string (`"26356948"`) or as `12.0`; `None` for a negative
    /// or fractional one.
    fn whole_number(value: &Value) -> Option<u64> {
        match value {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 2f64.powi(53))
                    .map(|f| f as u64)
            }),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// `true`/`false`, also as `1`/`0` or `"true"`/`"false"`.
    fn truth(value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => n.as_f64().map(|f| f != 0.0),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// A map's string values; any other value is left out.
    fn string_map(value: Value) -> Option<Hashes> {
        let Value::Object(map) = value else {
            return None;
        };
        Some(
            map.into_iter()
                .filter_map(|(name, digest)| Some((name, string_of(digest)?)))
                .collect(),
        )
    }

    /// A map of hashes, keeping those that are usable.
    fn hash_map(value: Value) -> Option<Hashes> {
        string_map(value).map(normalize_hashes)
    }

    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(string_of(value(d)?))
    }

    /// `"api-version": 1.1` means the string it looks like.
    pub fn version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match value(d)? {
            Value::Number(n) => Some(n.to_string()),
            other => string_of(other),
        })
    }

    pub fn texts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        Ok(match value(d)? {
            Value::Array(items) => Some(items.into_iter().filter_map(string_of).collect()),
            _ => None,
        })
    }

    pub fn serial<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(whole_number(&value(d)?))
    }

    pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(whole_number(&value(d)?).filter(|size| *size <= MAX_PLAUSIBLE_SIZE))
    }

    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(truth(&value(d)?))
    }

    /// A file's `hashes` as sent (string values only): whether each is usable is decided with the
    /// rest of the entry, since a bad one invalidates it.
    pub fn hashes<'de, D: Deserializer<'de>>(d: D) -> Result<Hashes, D::Error> {
        Ok(string_map(value(d)?).unwrap_or_default())
    }

    /// PEP 592 `yanked`: `false`, `true` or a reason (`""` is yanked without one).
    pub fn yanked<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match value(d)? {
            Value::String(reason) => Some(reason),
            other => truth(&other).and_then(|yanked| yanked.then(String::new)),
        })
    }

    /// PEP 658/714 `core-metadata`: `false`, `true` (hash unknown) or a map of hashes. `None` when
    /// absent or unreadable, so that the other key of the pair can stand in.
    pub fn core_metadata<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Hashes>>, D::Error> {
        Ok(match value(d)? {
            map @ Value::Object(_) => hash_map(map).map(Some),
            other => truth(&other).map(|available| available.then(Hashes::new)),
        })
    }

    /// PEP 792 `project-status`: an object with a string `status`.
    pub fn status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ProjectStatus>, D::Error> {
        let Value::Object(mut map) = value(d)? else {
            return Ok(None);
        };
        let status = map.remove("status").and_then(string_of);
        let reason = map.remove("reason").and_then(string_of);
        Ok(status.map(|status| ProjectStatus { status, reason }))
    }

    /// A nested object read with the same leniency; anything else counts as absent.
    pub fn object<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned + Default>(
        d: D,
    ) -> Result<T, D::Error> {
        Ok(T::deserialize(value(d)?).unwrap_or_default())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMeta {
    #[serde(rename = "api-version", deserialize_with = "lenient::version")]
    api_version: Option<String>,
    #[serde(rename = "_last-serial", deserialize_with = "lenient::serial")]
    last_serial: Option<u64>,
    #[serde(deserialize_with = "lenient::texts")]
    tracks: Option<Vec<String>>,
    /// Some servers put PEP 792's status here rather than at the top level.
    #[serde(rename = "project-status", deserialize_with = "lenient::status")]
    project_status: Option<ProjectStatus>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawProject {
    #[serde(deserialize_with = "lenient::object")]
    meta: RawMeta,
    #[serde(deserialize_with = "lenient::text")]
    name: Option<String>,
    /// Each entry is read on its own, so that a malformed one costs only itself.
    files: Option<Files>,
    #[serde(deserialize_with = "lenient::texts")]
    versions: Option<Vec<String>>,
    #[serde(rename = "project-status", deserialize_with = "lenient::status")]
    project_status: Option<ProjectStatus>,
    #[serde(rename = "alternate-locations", deserialize_with = "lenient::texts")]
    alternate_locations: Option<Vec<String>>,
}

/// A file entry's fields, each read leniently.
#[derive(Default)]
struct RawFile {
    filename: Option<String>,
    url: Option<String>,
    hashes: Hashes,
    requires_python: Option<String>,
    yanked: Option<String>,
    core_metadata: Option<Option<Hashes>>,
    /// The name PEP 658 first used; PEP 714 renamed it, but older servers still send it.
    dist_info_metadata: Option<Option<Hashes>>,
    gpg_sig: Option<bool>,
    size: Option<u64>,
    upload_time: Option<String>,
    provenance: Option<String>,
}

/// The keys of a file entry that mean something; any other is skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "kebab-case")]
enum FileKey {
    Filename,
    Url,
    Hashes,
    RequiresPython,
    Yanked,
    CoreMetadata,
    DataDistInfoMetadata,
    GpgSig,
    Size,
    UploadTime,
    Provenance,
    #[serde(other)]
    Other,
}

/// A lenient reader as a type, so that a map's values can be read with it.
macro_rules! lenient_value {
    ($name:ident, $ty:ty, $read:path) => {
        struct $name($ty);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $read(d).map($name)
            }
        }
    };
}
lenient_value!(Text, Option<String>, lenient::text);
lenient_value!(LenientHashes, Hashes, lenient::hashes);
lenient_value!(Yanked, Option<String>, lenient::yanked);
lenient_value!(CoreMetadata, Option<Option<Hashes>>, lenient::core_metadata);
lenient_value!(Flag, Option<bool>, lenient::flag);
lenient_value!(Size, Option<u64>, lenient::size);

/// What a JSON value is, for saying why it is not a file object.
fn described<T: fmt::Display>(what: T) -> Result<RawFile, String> {
    Err(format!("not a file object ({what})"))
}

/// One entry of `files`: its fields, or why it is not a file object. Read straight from the
/// stream (a page can have thousands): no key fails it, and a repeated key's last value counts.
struct FileEntry(Result<RawFile, String>);

impl<'de> Deserialize<'de> for FileEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = FileEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a file object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FileEntry, A::Error> {
                let mut raw = RawFile::default();
                while let Some(key) = map.next_key::<FileKey>()? {
                    match key {
                        FileKey::Filename => raw.filename = map.next_value::<Text>()?.0,
                        FileKey::Url => raw.url = map.next_value::<Text>()?.0,
                        FileKey::Hashes => raw.hashes = map.next_value::<LenientHashes>()?.0,
                        FileKey::RequiresPython => raw.requires_python = map.next_value::<Text>()?.0,
                        FileKey::Yanked => raw.yanked = map.next_value::<Yanked>()?.0,
                        FileKey::CoreMetadata => raw.core_metadata = map.next_value::<CoreMetadata>()?.0,
                        FileKey::DataDistInfoMetadata => {
                            raw.dist_info_metadata = map.next_value::<CoreMetadata>()?.0
                        }
                        FileKey::GpgSig => raw.gpg_sig = map.next_value::<Flag>()?.0,
                        FileKey::Size => raw.size = map.next_value::<Size>()?.0,
                        FileKey::UploadTime => raw.upload_time = map.next_value::<Text>()?.0,
                        FileKey::Provenance => raw.provenance = map.next_value::<Text>()?.0,
                        FileKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(FileEntry(Ok(raw)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<FileEntry, A::Error> {
                IgnoredAny.visit_seq(seq)?;
                Ok(FileEntry(described("an array")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<FileEntry, E> {
                Ok(FileEntry(described("null")))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<FileEntry, E> {
                Ok(FileEntry(described(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileEntry, E> {
                Ok(FileEntry(described(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileEntry, E> {
                Ok(FileEntry(described(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<FileEntry, E> {
                Ok(FileEntry(described(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileEntry, E> {
                Ok(FileEntry(described(format_args!("the string {v:?}"))))
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// `files`: its entries, or the fact that it is not an array.
enum Files {
    Entries(Vec<FileEntry>),
    NotArray,
}

impl<'de> Deserialize<'de> for Files {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FilesVisitor;
        impl<'de> Visitor<'de> for FilesVisitor {
            type Value = Files;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of files")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Files, A::Error> {
                let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(entry) = seq.next_element::<FileEntry>()? {
                    entries.push(entry);
                }
                Ok(Files::Entries(entries))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Files, A::Error> {
                IgnoredAny.visit_map(map)?;
                Ok(Files::NotArray)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Files, E> {
                Ok(Files::NotArray)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Files, E> {
                Ok(Files::NotArray)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Files, E> {
                Ok(Files::NotArray)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Files, E> {
                Ok(Files::NotArray)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Files, E> {
                Ok(Files::NotArray)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Files, E> {
                Ok(Files::NotArray)
            }
        }
        d.deserialize_any(FilesVisitor)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawList {
    #[serde(deserialize_with = "lenient::object")]
    meta: RawMeta,
    projects: Option<Value>,
}

/// The page-level fields of `meta`, after refusing an api-version we do not understand.
fn page_meta(meta: &mut RawMeta) -> Result<PageMeta, ParseError> {
    if let Some(version) = &meta.api_version {
        check_api_version(version)?;
    }
    Ok(PageMeta {
        api_version: meta.api_version.take(),
        last_serial: meta.last_serial,
        tracks: meta.tracks.take().unwrap_or_default(),
        alternate_locations: Vec::new(),
    })
}

/// The entries of a JSON array, or `error` when the value is something else.
fn entries(value: Option<Value>, missing: ParseError, error: ParseError) -> Result<Vec<Value>, ParseError> {
    match value {
        Some(Value::Array(entries)) => Ok(entries),
        Some(_) => Err(error),
        None => Err(missing),
    }
}

/// One file entry into the model, or why it was left out.
fn dist_file(entry: FileEntry, page_url: &Url) -> Result<DistFile, String> {
    let raw = entry.0?;
    let filename = raw.filename.ok_or("no string `filename`")?;
    let href = raw.url.ok_or("no string `url`")?;
    if !is_safe_filename(&filename) {
        return Err(format!("unsafe filename {filename:?}"));
    }
    let mut url = page_url
        .join(&href)
        .map_err(|e| format!("`url` {href:?} cannot be resolved: {e}"))?;
    if !is_fetchable(&url) {
        return Err(format!("`url` {href:?} is not HTTP(S)"));
    }
    let mut hashes = file_hashes(raw.hashes)?;
    if let Some((name, digest)) = take_fragment_hash(&mut url)? {
        hashes.entry(name).or_insert(digest);
    }
    let mut file = DistFile {
        filename,
        url: url.into(),
        hashes,
        requires_python: raw.requires_python.and_then(non_empty),
        yanked: raw.yanked,
        core_metadata: raw.core_metadata.or(raw.dist_info_metadata).flatten(),
        gpg_sig: raw.gpg_sig,
        size: raw.size,
        upload_time: raw.upload_time,
        provenance: raw
            .provenance
            .and_then(|p| provenance_url(page_url, page_url, &p)),
    };
    file.shrink_to_fit();
    Ok(file)
}

/// Reads a PEP 691 project page. File URLs (and provenance) are resolved against `page_url`.
/// Files that are malformed, have a name unsafe to serve or a non-HTTP(S) URL are left out.
pub fn parse_project_json(body: &[u8], page_url: &Url) -> Result<Parsed<ProjectPage>, ParseError> {
    let mut raw: RawProject = serde_json::from_str(body_str(body)?)?;
    let mut meta = page_meta(&mut raw.meta)?;
    meta.alternate_locations = raw.alternate_locations.unwrap_or_default();
    let name = raw.name.ok_or(ParseError::MissingName)?;
    let raw_files = match raw.files {
        Some(Files::Entries(entries)) => entries,
        Some(Files::NotArray) => return Err(ParseError::FilesNotArray),
        None => return Err(ParseError::MissingFiles),
    };

    let mut files = Vec::with_capacity(raw_files.len());
    let mut dropped = Vec::new();
    for (index, entry) in raw_files.into_iter().enumerate() {
        match dist_file(entry, page_url) {
            Ok(file) => files.push(file),
            Err(why) => dropped.push(format!("files[{index}]: {why}")),
        }
    }

    Ok(Parsed {
        page: ProjectPage {
            name,
            files,
            versions: raw.versions,
            project_status: raw.project_status.or(raw.meta.project_status),
            meta,
        },
        dropped,
    })
}

/// Reads a PEP 691 project list. Entries without a valid project name are left out (they could
/// not be requested anyway), and so is a name already listed under another spelling.
pub fn parse_list_json(body: &[u8]) -> Result<Parsed<ProjectList>, ParseError> {
    let mut raw: RawList = serde_json::from_str(body_str(body)?)?;
    let meta = page_meta(&mut raw.meta)?;
    let entries = entries(
        raw.projects,
        ParseError::MissingProjects,
        ParseError::ProjectsNotArray,
    )?;
    let mut seen = HashSet::with_capacity(entries.len());
    let mut projects = Vec::with_capacity(entries.len());
    let mut dropped = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let name = match entry {
            Value::Object(mut fields) => fields.remove("name").and_then(|n| match n {
                Value::String(name) => Some(name),
                _ => None,
            }),
            _ => None,
        };
        match name {
            Some(name) if validate_project_name(&name).is_ok() => {
                if seen.insert(normalize(&name)) {
                    projects.push(name);
                }
            }
            Some(name) => dropped.push(format!("projects[{index}]: invalid project name {name:?}")),
            None => dropped.push(format!("projects[{index}]: no string `name`")),
        }
    }
    Ok(Parsed {
        page: ProjectList { projects, meta },
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const META_SHA: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn page_url() -> Url {
        Url::parse("https://index.example/simple/foo-bar/").unwrap()
    }

    fn fixture() -> String {
        format!(
            r#"{{
  "meta": {{"api-version": "1.4", "_last-serial": 12345, "tracks": ["https://index.example/simple/foo-bar/"], "x-unknown": 1}},
  "name": "Foo.Bar",
  "unknown-top-level": {{"nested": [1, 2]}},
  "project-status": {{"status": "archived", "reason": "moved to foo-baz"}},
  "alternate-locations": ["https://mirror.example/simple/foo-bar/"],
  "versions": ["1.0", "1.1", "2.0"],
  "files": [
    {{
      "filename": "foo_bar-1.0-py3-none-any.whl",
      "url": "https://files.example/packages/foo_bar-1.0-py3-none-any.whl",
      "hashes": {{"SHA256": "{SHA}", "md5": "0123456789ABCDEF0123456789abcdef"}},
      "requires-python": ">=3.8",
      "yanked": false,
      "core-metadata": {{"sha256": "{META_SHA}"}},
      "gpg-sig": true,
      "size": 1234,
      "upload-time": "2024-01-02T03:04:05.123456Z",
      "provenance": "../../provenance/foo_bar-1.0.json",
      "some-future-key": "ignored"
    }},
    {{
      "filename": "foo_bar-1.1.tar.gz",
      "url": "/packages/foo_bar-1.1.tar.gz#sha256={SHA}",
      "hashes": {{}},
      "yanked": "broken build",
      "data-dist-info-metadata": true,
      "gpg-sig": false,
      "size": 99,
      "provenance": "http://insecure.example/p.json"
    }},
    {{
      "filename": "foo_bar-2.0.tar.gz",
      "url": "foo_bar-2.0.tar.gz",
      "hashes": {{"sha256": "{SHA}"}},
      "yanked": "",
      "core-metadata": false,
      "data-dist-info-metadata": {{"sha256": "{META_SHA}"}},
      "requires-python": ""
    }},
    {{"filename": "../evil.tar.gz", "url": "https://files.example/evil.tar.gz", "hashes": {{}}}},
    {{"filename": "local-1.0.tar.gz", "url": "file:///etc/passwd", "hashes": {{}}}}
  ]
}}"#
        )
    }

    #[test]
    fn every_standard_field_is_read() {
        let parsed = parse_project_json(fixture().as_bytes(), &page_url()).unwrap();
        assert_eq!(
            parsed.dropped,
            [
                "files[3]: unsafe filename \"../evil.tar.gz\"",
                "files[4]: `url` \"file:///etc/passwd\" is not HTTP(S)"
            ]
        );
        let page = parsed.page;
        assert_eq!(page.name, "Foo.Bar");
        assert_eq!(page.meta.api_version.as_deref(), Some("1.4"));
        assert_eq!(page.meta.last_serial, Some(12345));
        assert_eq!(page.meta.tracks, ["https://index.example/simple/foo-bar/"]);
        assert_eq!(
            page.meta.alternate_locations,
            ["https://mirror.example/simple/foo-bar/"]
        );
        assert_eq!(
            page.project_status,
            Some(ProjectStatus {
                status: "archived".into(),
                reason: Some("moved to foo-baz".into())
            })
        );
        assert_eq!(
            page.versions.as_deref(),
            Some(&["1.0".into(), "1.1".into(), "2.0".into()][..])
        );
        assert_eq!(page.files.len(), 3, "unsafe name and file: URL skipped");

        let f = &page.files[0];
        assert_eq!(f.filename, "foo_bar-1.0-py3-none-any.whl");
        assert_eq!(
            f.url,
            "https://files.example/packages/foo_bar-1.0-py3-none-any.whl"
        );
        assert_eq!(f.hashes.get("sha256").unwrap(), SHA);
        assert_eq!(f.hashes.get("md5").unwrap(), "0123456789abcdef0123456789abcdef");
        assert_eq!(f.requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(f.yanked, None);
        assert_eq!(f.core_metadata.as_ref().unwrap().get("sha256").unwrap(), META_SHA);
        assert_eq!(f.gpg_sig, Some(true));
        assert_eq!(f.size, Some(1234));
        assert_eq!(f.upload_time.as_deref(), Some("2024-01-02T03:04:05.123456Z"));
        assert_eq!(
            f.provenance.as_deref(),
            Some("https://index.example/provenance/foo_bar-1.0.json")
        );

        let f = &page.files[1];
        assert_eq!(f.url, "https://index.example/packages/foo_bar-1.1.tar.gz");
        assert_eq!(
            f.hashes.get("sha256").unwrap(),
            SHA,
            "hash taken from the URL fragment"
        );
        assert_eq!(f.yanked.as_deref(), Some("broken build"));
        assert_eq!(f.core_metadata, Some(Hashes::new()), "legacy key, true");
        assert_eq!(f.gpg_sig, Some(false));
        assert_eq!(f.provenance, None, "non-https provenance dropped");
        assert_eq!(f.upload_time, None);
        assert_eq!(f.requires_python, None);

        let f = &page.files[2];
        assert_eq!(f.url, "https://index.example/simple/foo-bar/foo_bar-2.0.tar.gz");
        assert_eq!(f.yanked.as_deref(), Some(""), "empty reason is still yanked");
        assert_eq!(f.core_metadata, None, "core-metadata wins over the legacy key");
        assert_eq!(f.gpg_sig, None);
        assert_eq!(f.size, None);
        assert_eq!(f.requires_python, None, "empty specifier");
    }

    #[test]
    fn status_under_meta_and_legacy_metadata_key() {
        let body = format!(
            r#"{{"meta": {{"api-version": "1.0", "project-status": {{"status": "quarantined"}}}},
                "name": "foo", "files": [{{"filename": "foo-1.0.tar.gz", "url": "foo-1.0.tar.gz",
                "hashes": {{}}, "data-dist-info-metadata": {{"SHA256": "{META_SHA}"}}, "yanked": true}}]}}"#
        );
        let page = parse_project_json(body.as_bytes(), &page_url()).unwrap().page;
        assert_eq!(
            page.project_status,
            Some(ProjectStatus {
                status: "quarantined".into(),
                reason: None
            })
        );
        assert_eq!(page.versions, None);
        let f = &page.files[0];
        assert_eq!(f.core_metadata.as_ref().unwrap().get("sha256").unwrap(), META_SHA);
        assert_eq!(f.yanked.as_deref(), Some(""));
    }

    #[test]
    fn minimal_page_without_meta() {
        let page = parse_project_json(br#"{"name": "foo", "files": []}"#, &page_url())
            .unwrap()
            .page;
        assert_eq!(page.meta, PageMeta::default());
        assert!(page.files.is_empty());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |body: &str| {
            parse_project_json(body.as_bytes(), &page_url())
                .unwrap_err()
                .to_string()
        };
        let truncated = &fixture()[..200];
        assert!(err(truncated).contains("EOF while parsing"), "{}", err(truncated));
        assert!(err(truncated).contains("line"), "{}", err(truncated));
        assert_eq!(
            err(r#"{"meta": {"api-version": "2.0"}, "name": "foo", "files": []}"#),
            "unsupported api-version \"2.0\": only major version 1 is understood (PEP 629)"
        );
        assert_eq!(err(r#"{"name": "foo"}"#), "the project page has no `files` array");
        assert_eq!(err(r#"{"files": []}"#), "the project page has no `name`");
        assert_eq!(err(r#"{"name": "foo", "files": {}}"#), "`files` is not an array");
        assert_eq!(
            err(r#"{"name": null, "files": []}"#),
            "the project page has no `name`"
        );
        assert!(err("\"x\"").starts_with("invalid Simple API JSON: invalid type: string"));
        let not_utf8 = parse_project_json(b"{\"name\": \"\xFF\"}", &page_url()).unwrap_err();
        assert!(matches!(not_utf8, ParseError::NotUtf8 { valid_up_to: 10 }));
    }

    /// What real servers send that a strict reader refuses: private keys with string values, numbers
    /// as strings, `null` everywhere, `1`/`0` for booleans, sizes no file can have.
    #[test]
    fn what_real_servers_send_is_read() {
        let body = format!(
            r#"{{"meta": {{"api-version": 1.1, "_last-serial": "26356948", "_private": {{"x": [1]}}, "tracks": null}},
                "name": "six", "versions": ["1.0", 2, null], "project-status": null, "alternate-locations": null,
                "files": [
                  {{"filename": "six-1.0.tar.gz", "url": "six-1.0.tar.gz", "hashes": {{"sha256": "{SHA}", "md5": null}},
                    "requires-python": null, "yanked": 0, "core-metadata": null, "data-dist-info-metadata": null,
                    "gpg-sig": null, "size": "13292", "upload-time": null, "provenance": null, "_x": 1}},
                  {{"filename": "six-1.1.tar.gz", "url": "six-1.1.tar.gz", "hashes": {{}}, "yanked": 1,
                    "size": -5, "core-metadata": "true", "gpg-sig": "false"}},
                  {{"filename": "six-1.2.tar.gz", "url": "six-1.2.tar.gz", "hashes": null, "yanked": null,
                    "size": 12.5, "core-metadata": {{"sha256": "{META_SHA}", "blake2b": 7}}}},
                  {{"filename": "six-1.3.tar.gz", "url": "six-1.3.tar.gz", "hashes": [], "yanked": "false",
                    "size": 1e300, "core-metadata": false, "data-dist-info-metadata": true}},
                  {{"filename": "six-1.4.tar.gz", "url": "six-1.4.tar.gz", "size": "99999999999999999999",
                    "core-metadata": [], "data-dist-info-metadata": {{"sha256": "{META_SHA}"}}}},
                  {{"filename": "six-1.5.tar.gz", "url": "six-1.5.tar.gz", "size": 40.0}},
                  null, "six-1.6.tar.gz", {{"url": "x"}}, {{"filename": "six-1.7.tar.gz", "url": 7}}
                ]}}"#
        );
        let parsed = parse_project_json(body.as_bytes(), &page_url()).unwrap();
        assert_eq!(
            parsed.dropped,
            [
                "files[6]: not a file object (null)",
                "files[7]: not a file object (the string \"six-1.6.tar.gz\")",
                "files[8]: no string `filename`",
                "files[9]: no string `url`",
            ]
        );
        let page = parsed.page;
        assert_eq!(page.meta.api_version.as_deref(), Some("1.1"));
        assert_eq!(page.meta.last_serial, Some(26356948));
        assert!(page.meta.tracks.is_empty());
        assert_eq!(page.versions.as_deref(), Some(&["1.0".to_owned()][..]));
        assert_eq!(page.project_status, None);
        let f = &page.files;
        assert_eq!(f.len(), 6, "{f:#?}");
        assert_eq!(f[0].hashes, Hashes::from_iter([("sha256".into(), SHA.into())]));
        assert_eq!(f[0].size, Some(13292), "a size sent as a string");
        assert_eq!(
            (
                &f[0].yanked,
                &f[0].core_metadata,
                f[0].gpg_sig,
                &f[0].upload_time,
                &f[0].requires_python
            ),
            (&None, &None, None, &None, &None)
        );
        assert_eq!(f[1].yanked.as_deref(), Some(""), "`1` is yanked");
        assert_eq!(f[1].size, None, "negative size dropped, file kept");
        assert_eq!(f[1].core_metadata, Some(Hashes::new()));
        assert_eq!(f[1].gpg_sig, Some(false));
        assert!(f[2].hashes.is_empty());
        assert_eq!(f[2].size, None, "fractional size dropped");
        assert_eq!(
            f[2].core_metadata,
            Some(Hashes::from_iter([("sha256".into(), META_SHA.into())])),
            "a non-string hash value is left out of the map"
        );
        assert_eq!(
            f[3].yanked.as_deref(),
            Some("false"),
            "any string is a reason (PEP 592), as pip reads it"
        );
        assert_eq!(f[3].size, None, "absurd size dropped");
        assert_eq!(f[3].core_metadata, None, "core-metadata: false wins");
        assert_eq!(f[4].size, None, "a size past u64 dropped");
        assert_eq!(
            f[4].core_metadata,
            Some(Hashes::from_iter([("sha256".into(), META_SHA.into())])),
            "an unreadable core-metadata lets the legacy key stand in"
        );
        assert_eq!(f[5].size, Some(40));
    }

    /// The HTML parser's rules for names and hashes hold here too: a hash pip would check that is
    /// no digest of its kind, in `hashes` or in the URL's fragment, drops the entry, and so does a
    /// name with a space or an HTML-significant character.
    #[test]
    fn bad_hashes_and_names_drop_the_entry() {
        let body = format!(
            r#"{{"name": "foo", "files": [
                {{"filename": "foo-1.0.tar.gz", "url": "foo-1.0.tar.gz", "hashes": {{"sha256": "zz"}}}},
                {{"filename": "foo-1.1.tar.gz", "url": "foo-1.1.tar.gz#sha256=abcd", "hashes": {{}}}},
                {{"filename": "foo 1.2.tar.gz", "url": "foo-1.2.tar.gz", "hashes": {{}}}},
                {{"filename": "foo&1.3.tar.gz", "url": "foo-1.3.tar.gz", "hashes": {{}}}},
                {{"filename": "foo-1.4.tar.gz", "url": "foo-1.4.tar.gz",
                  "hashes": {{"SHA256": "{}", "blake2b_256": "zz", "md5": null}}}}
            ]}}"#,
            SHA.to_uppercase()
        );
        let parsed = parse_project_json(body.as_bytes(), &page_url()).unwrap();
        assert_eq!(
            parsed.dropped,
            [
                "files[0]: invalid sha256 hash \"zz\"",
                "files[1]: invalid sha256 hash \"abcd\"",
                "files[2]: unsafe filename \"foo 1.2.tar.gz\"",
                "files[3]: unsafe filename \"foo&1.3.tar.gz\"",
            ]
        );
        let files = &parsed.page.files;
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0].hashes,
            Hashes::from_iter([("sha256".into(), SHA.into())]),
            "a hash pip does not check is only ignored when it is no digest"
        );
    }

    /// A repeated key costs nothing: its last value counts, as in most JSON readers.
    #[test]
    fn a_repeated_key_in_a_file_entry_keeps_the_entry() {
        let body = br#"{"name": "foo", "files": [{"filename": "foo-1.0.tar.gz", "url": 7,
            "url": "foo-1.0.tar.gz", "size": 1, "size": "2", "x": 1, "x": {"y": [1]}}]}"#;
        let parsed = parse_project_json(body, &page_url()).unwrap();
        assert!(parsed.dropped.is_empty(), "{:?}", parsed.dropped);
        let file = &parsed.page.files[0];
        assert_eq!(file.url, "https://index.example/simple/foo-bar/foo-1.0.tar.gz");
        assert_eq!(file.size, Some(2));
    }

    #[test]
    fn project_list() {
        let body = br#"{"meta": {"api-version": "1.1", "_last-serial": 7},
            "projects": [{"name": "Foo.Bar", "_last-serial": 3}, {"name": "foo-bar"}, {"name": "baz"},
                         {"name": "../etc"}]}"#;
        let parsed = parse_list_json(body).unwrap();
        assert_eq!(parsed.dropped, ["projects[3]: invalid project name \"../etc\""]);
        let list = parsed.page;
        assert_eq!(list.projects, ["Foo.Bar", "baz"]);
        assert_eq!(list.meta.api_version.as_deref(), Some("1.1"));
        assert_eq!(list.meta.last_serial, Some(7));
        assert_eq!(
            parse_list_json(br#"{"meta": {}}"#).unwrap_err().to_string(),
            "the project list has no `projects` array"
        );
        let parsed = parse_list_json(br#"{"projects": [{"name": "a"}, {}, 3]}"#).unwrap();
        assert_eq!(parsed.page.projects, ["a"]);
        assert_eq!(
            parsed.dropped,
            ["projects[1]: no string `name`", "projects[2]: no string `name`"]
        );
        assert!(parse_list_json(br#"{"meta": {"api-version": "3.0"}, "projects": []}"#).is_err());
    }
}
