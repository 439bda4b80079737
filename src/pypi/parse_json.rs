//! PEP 691 JSON pages from an upstream into the model.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de};
use url::Url;

use super::model::{DistFile, PageMeta, ProjectList, ProjectPage, ProjectStatus};
use super::name::{is_safe_filename, normalize, validate_project_name};
use super::parse::{
    ParseError, body_str, check_api_version, https_url, is_fetchable, non_empty, normalize_hash,
    normalize_hashes, take_fragment_hash,
};

// Every field is optional so that a missing one gets a message naming it, and unknown keys are
// ignored (serde's default) as PEP 691 requires.

#[derive(Deserialize, Default)]
struct RawMeta {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    #[serde(rename = "_last-serial")]
    last_serial: Option<u64>,
    tracks: Option<Vec<String>>,
    /// Some servers put PEP 792's status here rather than at the top level.
    #[serde(rename = "project-status")]
    project_status: Option<RawStatus>,
}

#[derive(Deserialize)]
struct RawStatus {
    status: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct RawProject {
    meta: Option<RawMeta>,
    name: Option<String>,
    files: Option<Vec<RawFile>>,
    versions: Option<Vec<String>>,
    #[serde(rename = "project-status")]
    project_status: Option<RawStatus>,
    #[serde(rename = "alternate-locations")]
    alternate_locations: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawFile {
    filename: Option<String>,
    url: Option<String>,
    hashes: Option<BTreeMap<String, String>>,
    #[serde(rename = "requires-python")]
    requires_python: Option<String>,
    yanked: Option<Yanked>,
    #[serde(rename = "core-metadata")]
    core_metadata: Option<CoreMetadata>,
    /// The name PEP 658 first used; PEP 714 renamed it, but older servers still send it.
    #[serde(rename = "data-dist-info-metadata")]
    dist_info_metadata: Option<CoreMetadata>,
    #[serde(rename = "gpg-sig")]
    gpg_sig: Option<bool>,
    size: Option<u64>,
    #[serde(rename = "upload-time")]
    upload_time: Option<String>,
    provenance: Option<String>,
}

#[derive(Deserialize)]
struct RawList {
    meta: Option<RawMeta>,
    projects: Option<Vec<RawListEntry>>,
}

#[derive(Deserialize)]
struct RawListEntry {
    name: Option<String>,
}

/// PEP 592 `yanked`: `false`, `true` or a reason (`""` is yanked without one).
struct Yanked(Option<String>);

impl<'de> Deserialize<'de> for Yanked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct YankedVisitor;
        impl Visitor<'_> for YankedVisitor {
            type Value = Yanked;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean or a string")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Yanked, E> {
                Ok(Yanked(v.then(String::new)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Yanked, E> {
                Ok(Yanked(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Yanked, E> {
                Ok(Yanked(Some(v)))
            }
        }
        deserializer.deserialize_any(YankedVisitor)
    }
}

/// PEP 658/714 `core-metadata`: `false`, `true` or a map of hashes.
struct CoreMetadata(Option<BTreeMap<String, String>>);

impl<'de> Deserialize<'de> for CoreMetadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CoreMetadataVisitor;
        impl<'de> Visitor<'de> for CoreMetadataVisitor {
            type Value = CoreMetadata;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean or a map of hashes")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<CoreMetadata, E> {
                Ok(CoreMetadata(v.then(BTreeMap::new)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CoreMetadata, A::Error> {
                let mut hashes = BTreeMap::new();
                while let Some((name, digest)) = map.next_entry::<String, String>()? {
                    hashes.extend(normalize_hash(name, digest));
                }
                Ok(CoreMetadata(Some(hashes)))
            }
        }
        deserializer.deserialize_any(CoreMetadataVisitor)
    }
}

fn status(raw: RawStatus) -> ProjectStatus {
    ProjectStatus {
        status: raw.status,
        reason: raw.reason,
    }
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

/// Reads a PEP 691 project page. File URLs (and provenance) are resolved against `page_url`.
/// Files with a name unsafe to serve or a non-HTTP(S) URL are left out.
pub fn parse_project_json(body: &[u8], page_url: &Url) -> Result<ProjectPage, ParseError> {
    let raw: RawProject = serde_json::from_str(body_str(body)?)?;
    let mut raw_meta = raw.meta.unwrap_or_default();
    let mut meta = page_meta(&mut raw_meta)?;
    meta.alternate_locations = raw.alternate_locations.unwrap_or_default();
    let name = raw.name.ok_or(ParseError::MissingName)?;
    let raw_files = raw.files.ok_or(ParseError::MissingFiles)?;

    let mut files = Vec::with_capacity(raw_files.len());
    for (index, raw) in raw_files.into_iter().enumerate() {
        let missing = |field| ParseError::FileWithout { index, field };
        let filename = raw.filename.ok_or_else(|| missing("filename"))?;
        let href = raw.url.ok_or_else(|| missing("url"))?;
        if !is_safe_filename(&filename) {
            continue;
        }
        let mut url = page_url.join(&href).map_err(|source| ParseError::BadFileUrl {
            index,
            url: href,
            source,
        })?;
        if !is_fetchable(&url) {
            continue;
        }
        let mut hashes = normalize_hashes(raw.hashes.unwrap_or_default());
        if let Some((name, digest)) = take_fragment_hash(&mut url) {
            hashes.entry(name).or_insert(digest);
        }
        files.push(DistFile {
            filename,
            url: url.into(),
            hashes,
            requires_python: raw.requires_python.and_then(non_empty),
            yanked: raw.yanked.and_then(|y| y.0),
            core_metadata: raw.core_metadata.or(raw.dist_info_metadata).and_then(|c| c.0),
            gpg_sig: raw.gpg_sig,
            size: raw.size,
            upload_time: raw.upload_time,
            provenance: raw.provenance.and_then(|p| https_url(page_url, &p)),
        });
    }

    Ok(ProjectPage {
        name,
        files,
        versions: raw.versions,
        project_status: raw.project_status.or(raw_meta.project_status).map(status),
        meta,
    })
}

/// Reads a PEP 691 project list. Names that are not valid project names are left out (they could
/// not be requested anyway), and so is a name already listed under another spelling.
pub fn parse_list_json(body: &[u8]) -> Result<ProjectList, ParseError> {
    let raw: RawList = serde_json::from_str(body_str(body)?)?;
    let meta = page_meta(&mut raw.meta.unwrap_or_default())?;
    let entries = raw.projects.ok_or(ParseError::MissingProjects)?;
    let mut seen = HashSet::with_capacity(entries.len());
    let mut projects = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let name = entry.name.ok_or(ParseError::ProjectWithoutName { index })?;
        if validate_project_name(&name).is_ok() && seen.insert(normalize(&name)) {
            projects.push(name);
        }
    }
    Ok(ProjectList { projects, meta })
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
        let page = parse_project_json(fixture().as_bytes(), &page_url()).unwrap();
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
        assert_eq!(f.hashes["sha256"], SHA);
        assert_eq!(f.hashes["md5"], "0123456789abcdef0123456789abcdef");
        assert_eq!(f.requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(f.yanked, None);
        assert_eq!(f.core_metadata.as_ref().unwrap()["sha256"], META_SHA);
        assert_eq!(f.gpg_sig, Some(true));
        assert_eq!(f.size, Some(1234));
        assert_eq!(f.upload_time.as_deref(), Some("2024-01-02T03:04:05.123456Z"));
        assert_eq!(
            f.provenance.as_deref(),
            Some("https://index.example/provenance/foo_bar-1.0.json")
        );

        let f = &page.files[1];
        assert_eq!(f.url, "https://index.example/packages/foo_bar-1.1.tar.gz");
        assert_eq!(f.hashes["sha256"], SHA, "hash taken from the URL fragment");
        assert_eq!(f.yanked.as_deref(), Some("broken build"));
        assert_eq!(f.core_metadata, Some(BTreeMap::new()), "legacy key, true");
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
        let page = parse_project_json(body.as_bytes(), &page_url()).unwrap();
        assert_eq!(
            page.project_status,
            Some(ProjectStatus {
                status: "quarantined".into(),
                reason: None
            })
        );
        assert_eq!(page.versions, None);
        let f = &page.files[0];
        assert_eq!(f.core_metadata.as_ref().unwrap()["sha256"], META_SHA);
        assert_eq!(f.yanked.as_deref(), Some(""));
    }

    #[test]
    fn minimal_page_without_meta() {
        let page = parse_project_json(br#"{"name": "foo", "files": []}"#, &page_url()).unwrap();
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
        assert_eq!(
            err(
                r#"{"name": "foo", "files": [{"filename": "foo-1.0.tar.gz", "url": "a", "hashes": {}}, {"filename": "foo-2.0.tar.gz", "hashes": {}}]}"#
            ),
            "`files[1]` has no `url`"
        );
        assert_eq!(
            err(r#"{"name": "foo", "files": [{"url": "a"}]}"#),
            "`files[0]` has no `filename`"
        );
        assert!(
            err(r#"{"name": "foo", "files": [{"filename": "a", "url": "https://x:99999/a"}]}"#)
                .starts_with("`files[0].url` (\"https://x:99999/a\") cannot be resolved")
        );
        let wrong_type = err(r#"{"name": "foo", "files": [{"filename": "a", "url": "a", "yanked": 3}]}"#);
        assert!(
            wrong_type.contains("expected a boolean or a string"),
            "{wrong_type}"
        );
        let not_utf8 = parse_project_json(b"{\"name\": \"\xFF\"}", &page_url()).unwrap_err();
        assert!(matches!(not_utf8, ParseError::NotUtf8 { valid_up_to: 10 }));
    }

    #[test]
    fn project_list() {
        let body = br#"{"meta": {"api-version": "1.1", "_last-serial": 7},
            "projects": [{"name": "Foo.Bar", "_last-serial": 3}, {"name": "foo-bar"}, {"name": "baz"},
                         {"name": "../etc"}]}"#;
        let list = parse_list_json(body).unwrap();
        assert_eq!(list.projects, ["Foo.Bar", "baz"]);
        assert_eq!(list.meta.api_version.as_deref(), Some("1.1"));
        assert_eq!(list.meta.last_serial, Some(7));
        assert_eq!(
            parse_list_json(br#"{"meta": {}}"#).unwrap_err().to_string(),
            "the project list has no `projects` array"
        );
        assert_eq!(
            parse_list_json(br#"{"projects": [{"name": "a"}, {}]}"#)
                .unwrap_err()
                .to_string(),
            "`projects[1]` has no `name`"
        );
        assert!(parse_list_json(br#"{"meta": {"api-version": "3.0"}, "projects": []}"#).is_err());
    }
}
