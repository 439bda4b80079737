//! The pages we serve, from the model: PEP 503 HTML and PEP 691 JSON, with file links relative to
//! the page (`{filename}#sha256=…`) so that they work under any prefix and go through the mirror.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::ser::{Serialize, Serializer};

use super::merge::{first_of_each, keep_marked};
use super::model::{DistFile, Hashes, ProjectList, ProjectPage, hashes_as_map};
use super::name::{normalize, version_from_filename};
use super::parse_api_version;

/// Bytes kept literal in a path segment. Everything else is encoded, which also makes the result
/// safe inside an HTML attribute and keeps a `:` from reading as a URL scheme.
pub(super) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Hash names in the order we prefer to advertise them (strongest common one first).
const HASH_PREFERENCE: [&str; 6] = ["sha256", "sha512", "sha384", "sha224", "sha1", "md5"];

const API_VERSIONS: [&str; 5] = ["1.0", "1.1", "1.2", "1.3", "1.4"];

/// The hash to advertise in a fragment or `data-core-metadata`: the preferred one, else any.
fn best_hash(hashes: &Hashes) -> Option<(&str, &str)> {
    HASH_PREFERENCE
        .iter()
        .find_map(|name| Some((*name, hashes.get(*name)?.as_str())))
        .or_else(|| {
            hashes
                .iter()
                .next()
                .map(|(name, digest)| (name.as_str(), digest.as_str()))
        })
}

fn is_quarantined(page: &ProjectPage) -> bool {
    page.project_status
        .as_ref()
        .is_some_and(|s| s.status.eq_ignore_ascii_case("quarantined"))
}

/// PEP 792: a quarantined project offers no file for download, so it lists none.
fn served_files(page: &ProjectPage) -> &[DistFile] {
    if is_quarantined(page) { &[] } else { &page.files }
}

/// PEP 700 versions derived from the filenames (first seen first, no repeats), for pages whose
/// upstream gave none. The flag says whether the list can be trusted to be complete: every
/// filename gave a version, and there was a filename (a page without files says nothing).
pub(crate) fn derived_versions(page: &ProjectPage) -> (Vec<String>, bool) {
    let project = normalize(&page.name);
    let mut versions = Vec::new();
    let mut complete = !page.files.is_empty();
    for file in &page.files {
        match version_from_filename(&file.filename, &project) {
            Some(version) => versions.push(version),
            None => complete = false,
        }
    }
    let first = first_of_each(&versions, String::as_str);
    keep_marked(&mut versions, &first);
    (versions, complete)
}

fn clamped_api_version(advertised: Option<&str>, lowest_minor: usize) -> &'static str {
    let minor = match advertised.and_then(parse_api_version) {
        Some((1, minor)) => usize::try_from(minor).unwrap_or(usize::MAX),
        _ => 0,
    };
    API_VERSIONS[minor.clamp(lowest_minor, API_VERSIONS.len() - 1)]
}

/// The api-version we may truthfully advertise for `page` (PEP 629/700), in both formats: 1.1 and
/// up need `size` on every listed file and a complete `versions`; above that, what the upstream
/// advertised (1.2 tracks, 1.3 provenance, 1.4 status all pass through), up to what we implement.
pub fn api_version(page: &ProjectPage) -> &'static str {
    api_version_with(page, || page.versions.is_some() || derived_versions(page).1)
}

fn api_version_with(page: &ProjectPage, versions_complete: impl FnOnce() -> bool) -> &'static str {
    let sizes = served_files(page).iter().all(|f| f.size.is_some());
    // Sizes first: pages without versions are mostly HTML ones, which have no sizes either.
    if sizes && versions_complete() {
        clamped_api_version(page.meta.api_version.as_deref(), 1)
    } else {
        API_VERSIONS[0]
    }
}

/// The api-version advertised on the project list: the upstream's, up to what we implement.
pub fn list_api_version(list: &ProjectList) -> &'static str {
    clamped_api_version(list.meta.api_version.as_deref(), 0)
}

/// A capacity that a page almost always fits in, so that the output grows at most once.
fn estimated_len(files: &[DistFile]) -> usize {
    // A little over the JSON form's length (the longer of the two): the keys, the filename twice,
    // every hash, and each optional field with its key.
    let hashes = |hashes: &Hashes| hashes.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>();
    let text = |value: &Option<String>, key: usize| value.as_ref().map_or(0, |v| 2 * v.len() + key);
    files.iter().fold(1024, |len, f| {
        len + 160
            + 2 * f.filename.len()
            + hashes(&f.hashes)
            + f.core_metadata.as_ref().map_or(0, |m| 2 * hashes(m))
            + text(&f.requires_python, 24)
            + text(&f.yanked, 16)
            + text(&f.upload_time, 20)
            + text(&f.provenance, 16)
            + f.size.map_or(0, |_| 28)
    })
}

fn push_percent_encoded(out: &mut String, segment: &str) {
    out.extend(utf8_percent_encode(segment, SEGMENT));
}

/// Escapes text and (double-quoted) attribute values alike.
pub fn push_escaped(out: &mut String, text: &str) {
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        out.push_str(entity);
        start = i + 1;
    }
    out.push_str(&text[start..]);
}

fn push_attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    push_escaped(out, value);
    out.push('"');
}

fn push_meta(out: &mut String, name: &str, content: &str) {
    out.push_str("    <meta name=\"");
    out.push_str(name);
    out.push('"');
    push_attr(out, "content", content);
    out.push_str(">\n");
}

fn push_head_start(out: &mut String, api_version: &str) {
    out.push_str("<!DOCTYPE html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n");
    push_meta(out, "pypi:repository-version", api_version);
}

/// Closes the head with `title`, which also heads the body.
fn push_head_end(out: &mut String, title: &str) {
    out.push_str("    <title>");
    push_escaped(out, title);
    out.push_str("</title>\n  </head>\n  <body>\n    <h1>");
    push_escaped(out, title);
    out.push_str("</h1>\n");
}

/// `sha256=<hex>` (or another hash) when known, `true` when only availability is.
fn push_core_metadata_value(out: &mut String, hashes: &Hashes) {
    match best_hash(hashes) {
        Some((name, digest)) => {
            push_escaped(out, name);
            out.push('=');
            push_escaped(out, digest);
        }
        None => out.push_str("true"),
    }
}

fn push_file_link(out: &mut String, file: &DistFile) {
    out.push_str("    <a href=\"");
    push_percent_encoded(out, &file.filename);
    if let Some((name, digest)) = best_hash(&file.hashes) {
        out.push('#');
        push_escaped(out, name);
        out.push('=');
        push_escaped(out, digest);
    }
    out.push('"');
    if let Some(spec) = &file.requires_python {
        push_attr(out, "data-requires-python", spec);
    }
    if let Some(reason) = &file.yanked {
        push_attr(out, "data-yanked", reason);
    }
    if let Some(hashes) = &file.core_metadata {
        // PEP 714 renamed the attribute; older clients only know the first name.
        for attr in ["data-core-metadata", "data-dist-info-metadata"] {
            out.push(' ');
            out.push_str(attr);
            out.push_str("=\"");
            push_core_metadata_value(out, hashes);
            out.push('"');
        }
    }
    if let Some(sig) = file.gpg_sig {
        push_attr(out, "data-gpg-sig", if sig { "true" } else { "false" });
    }
    if let Some(url) = &file.provenance {
        push_attr(out, "data-provenance", url);
    }
    out.push('>');
    push_escaped(out, &file.filename);
    out.push_str("</a><br>\n");
}

/// The PEP 503 project page (with the PEP 592/629/658/714/740/792/708 additions).
pub fn render_project_html(page: &ProjectPage) -> String {
    let files = served_files(page);
    let mut out = String::with_capacity(estimated_len(files));
    push_head_start(&mut out, api_version(page));
    if let Some(status) = &page.project_status {
        push_meta(&mut out, "pypi:project-status", &status.status);
        if let Some(reason) = &status.reason {
            push_meta(&mut out, "pypi:project-status-reason", reason);
        }
    }
    for url in &page.meta.tracks {
        push_meta(&mut out, "pypi:tracks", url);
    }
    for url in &page.meta.alternate_locations {
        push_meta(&mut out, "pypi:alternate-locations", url);
    }
    push_head_end(&mut out, &format!("Links for {}", page.name));
    for file in files {
        push_file_link(&mut out, file);
    }
    out.push_str("  </body>\n</html>\n");
    out
}

/// The PEP 503 project list; each link is `{normalized name}/`.
pub fn render_list_html(list: &ProjectList) -> String {
    let mut out = String::with_capacity(256 + list.projects.iter().map(|p| 3 * p.len() + 32).sum::<usize>());
    push_head_start(&mut out, list_api_version(list));
    push_head_end(&mut out, "Simple index");
    for name in &list.projects {
        out.push_str("    <a href=\"");
        push_percent_encoded(&mut out, &normalize(name));
        out.push_str("/\">");
        push_escaped(&mut out, name);
        out.push_str("</a><br>\n");
    }
    out.push_str("  </body>\n</html>\n");
    out
}

// JSON views borrowing from the model, so that serializing allocates nothing per file.

/// A file's relative URL, percent-encoded while it is written.
struct RelativeUrl<'a>(&'a str);

impl Serialize for RelativeUrl<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&utf8_percent_encode(self.0, SEGMENT))
    }
}

/// PEP 592: `false`, `true` (no reason) or the reason.
struct Yanked<'a>(Option<&'a str>);

impl Serialize for Yanked<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => serializer.serialize_bool(false),
            Some("") => serializer.serialize_bool(true),
            Some(reason) => serializer.serialize_str(reason),
        }
    }
}

/// PEP 658/714: `false`, `true` (hash unknown) or the hashes.
#[derive(Clone, Copy)]
struct CoreMetadata<'a>(Option<&'a Hashes>);

impl Serialize for CoreMetadata<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => serializer.serialize_bool(false),
            Some(hashes) if hashes.is_empty() => serializer.serialize_bool(true),
            Some(hashes) => hashes_as_map(hashes, serializer),
        }
    }
}

#[derive(serde::Serialize)]
struct JsonFile<'a> {
    filename: &'a str,
    url: RelativeUrl<'a>,
    #[serde(serialize_with = "hashes_as_map")]
    hashes: &'a Hashes,
    #[serde(rename = "requires-python", skip_serializing_if = "Option::is_none")]
    requires_python: Option<&'a str>,
    yanked: Yanked<'a>,
    #[serde(rename = "core-metadata")]
    core_metadata: CoreMetadata<'a>,
    /// The same value under its PEP 658 name, for clients older than PEP 714.
    #[serde(rename = "data-dist-info-metadata")]
    dist_info_metadata: CoreMetadata<'a>,
    #[serde(rename = "gpg-sig", skip_serializing_if = "Option::is_none")]
    gpg_sig: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(rename = "upload-time", skip_serializing_if = "Option::is_none")]
    upload_time: Option<&'a str>,
    provenance: Option<&'a str>,
}

impl<'a> From<&'a DistFile> for JsonFile<'a> {
    fn from(f: &'a DistFile) -> Self {
        let core_metadata = CoreMetadata(f.core_metadata.as_ref());
        JsonFile {
            filename: &f.filename,
            url: RelativeUrl(&f.filename),
            hashes: &f.hashes,
            requires_python: f.requires_python.as_deref(),
            yanked: Yanked(f.yanked.as_deref()),
            core_metadata,
            dist_info_metadata: core_metadata,
            gpg_sig: f.gpg_sig,
            size: f.size,
            upload_time: f.upload_time.as_deref(),
            provenance: f.provenance.as_deref(),
        }
    }
}

struct JsonFiles<'a>(&'a [DistFile]);

impl Serialize for JsonFiles<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(JsonFile::from))
    }
}

#[derive(serde::Serialize)]
struct JsonMeta<'a> {
    #[serde(rename = "api-version")]
    api_version: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tracks: &'a [String],
}

#[derive(serde::Serialize)]
struct JsonStatus<'a> {
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct JsonPage<'a> {
    meta: JsonMeta<'a>,
    name: &'a str,
    files: JsonFiles<'a>,
    versions: &'a [String],
    #[serde(rename = "project-status", skip_serializing_if = "Option::is_none")]
    project_status: Option<JsonStatus<'a>>,
    #[serde(rename = "alternate-locations", skip_serializing_if = "<[_]>::is_empty")]
    alternate_locations: &'a [String],
}

#[derive(serde::Serialize)]
struct JsonListEntry<'a> {
    name: &'a str,
}

#[derive(serde::Serialize)]
struct JsonList<'a> {
    meta: JsonMeta<'a>,
    projects: Vec<JsonListEntry<'a>>,
}

fn to_json_string(value: &impl Serialize, capacity: usize) -> String {
    let mut out = Vec::with_capacity(capacity);
    // Our views serialize only strings, numbers, booleans and string-keyed maps into memory:
    // nothing an input can make fail.
    serde_json::to_writer(&mut out, value).expect("serializing a page view cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// The PEP 691 project page (with the PEP 700/708/714/740/792 keys).
pub fn render_project_json(page: &ProjectPage) -> String {
    let derived;
    let (versions, complete) = match &page.versions {
        Some(versions) => (versions, true),
        None => {
            let complete;
            (derived, complete) = derived_versions(page);
            (&derived, complete)
        }
    };
    let files = served_files(page);
    let doc = JsonPage {
        meta: JsonMeta {
            api_version: api_version_with(page, || complete),
            tracks: &page.meta.tracks,
        },
        name: &page.name,
        files: JsonFiles(files),
        versions,
        project_status: page.project_status.as_ref().map(|s| JsonStatus {
            status: &s.status,
            reason: s.reason.as_deref(),
        }),
        alternate_locations: &page.meta.alternate_locations,
    };
    to_json_string(&doc, estimated_len(files))
}

/// The PEP 691 project list.
pub fn render_list_json(list: &ProjectList) -> String {
    let doc = JsonList {
        meta: JsonMeta {
            api_version: list_api_version(list),
            tracks: &[],
        },
        projects: list.projects.iter().map(|name| JsonListEntry { name }).collect(),
    };
    let capacity = 256 + list.projects.iter().map(|p| p.len() + 12).sum::<usize>();
    to_json_string(&doc, capacity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pypi::model::{PageMeta, ProjectStatus};
    use crate::pypi::parse::Parsed;
    use crate::pypi::parse_html::{parse_list_html, parse_project_html};
    use crate::pypi::parse_json::{parse_list_json, parse_project_json};
    use serde_json::{Value, json};
    use url::Url;

    const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const META_SHA: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const BASE: &str = "https://index.example/simple/foo-bar/";

    /// Where a file of ours is once its relative href is resolved against the page.
    fn served_url(filename: &str) -> String {
        let encoded: String = utf8_percent_encode(filename, SEGMENT).collect();
        Url::parse(BASE).unwrap().join(&encoded).unwrap().into()
    }

    fn file(filename: &str) -> DistFile {
        DistFile {
            hashes: Hashes::from_iter([("sha256".into(), SHA.into())]),
            ..DistFile::bare(filename, &served_url(filename))
        }
    }

    fn sample_page() -> ProjectPage {
        let mut wheel = file("foo_bar-1.0-py3-none-any.whl");
        wheel.requires_python = Some(">=3.8, <4".into());
        wheel.core_metadata = Some(Hashes::from_iter([("sha256".into(), META_SHA.into())]));
        wheel.gpg_sig = Some(true);
        wheel.size = Some(1234);
        wheel.upload_time = Some("2024-01-02T03:04:05.123456Z".into());
        wheel.provenance = Some("https://files.example/provenance/foo_bar-1.0.json".into());
        let mut sdist = file("foo_bar-1.1+local.tar.gz");
        sdist.yanked = Some(String::new());
        sdist.core_metadata = Some(Hashes::new());
        sdist.gpg_sig = Some(false);
        sdist.size = Some(99);
        // Parsers refuse white space and `<>&` in names; what they let through is still escaped.
        let mut odd = file("odd-\"q\"'x'%#?=2.0.zip");
        odd.yanked = Some("broken <b>build</b> & \"more\"\n\u{1}".into());
        odd.hashes.clear();
        odd.size = Some(0);
        ProjectPage {
            name: "Foo.Bar".into(),
            files: vec![wheel, sdist, odd],
            versions: Some(vec!["1.0".into(), "1.1".into(), "2.0".into(), "3.0".into()]),
            project_status: Some(ProjectStatus {
                status: "deprecated".into(),
                reason: Some("use <foo-baz> & \"friends\"".into()),
            }),
            meta: PageMeta {
                api_version: Some("1.4".into()),
                last_serial: Some(42),
                tracks: vec!["https://index.example/simple/foo-bar/".into()],
                alternate_locations: vec!["https://mirror.example/simple/foo-bar/".into()],
            },
        }
    }

    #[test]
    fn html_carries_every_field_escaped() {
        let html = render_project_html(&sample_page());
        for expected in [
            "<!DOCTYPE html>",
            r#"<meta name="pypi:repository-version" content="1.4">"#,
            r#"<meta name="pypi:project-status" content="deprecated">"#,
            r#"<meta name="pypi:project-status-reason" content="use &lt;foo-baz&gt; &amp; &quot;friends&quot;">"#,
            r#"<meta name="pypi:tracks" content="https://index.example/simple/foo-bar/">"#,
            r#"<meta name="pypi:alternate-locations" content="https://mirror.example/simple/foo-bar/">"#,
            "<title>Links for Foo.Bar</title>",
            &format!(
                r#"<a href="foo_bar-1.0-py3-none-any.whl#sha256={SHA}" data-requires-python="&gt;=3.8, &lt;4" data-core-metadata="sha256={META_SHA}" data-dist-info-metadata="sha256={META_SHA}" data-gpg-sig="true" data-provenance="https://files.example/provenance/foo_bar-1.0.json">foo_bar-1.0-py3-none-any.whl</a>"#
            ),
            &format!(
                r#"<a href="foo_bar-1.1%2Blocal.tar.gz#sha256={SHA}" data-yanked="" data-core-metadata="true" data-dist-info-metadata="true" data-gpg-sig="false">foo_bar-1.1+local.tar.gz</a>"#
            ),
            r#"<a href="odd-%22q%22%27x%27%25%23%3F%3D2.0.zip" data-yanked="broken &lt;b&gt;build&lt;/b&gt; &amp; &quot;more&quot;"#,
            ">odd-&quot;q&quot;&#39;x&#39;%#?=2.0.zip</a>",
        ] {
            assert!(html.contains(expected), "missing {expected}\nin\n{html}");
        }
    }

    #[test]
    fn json_carries_every_field() {
        let doc: Value = serde_json::from_str(&render_project_json(&sample_page())).unwrap();
        assert_eq!(
            doc["meta"],
            json!({"api-version": "1.4", "tracks": ["https://index.example/simple/foo-bar/"]})
        );
        assert_eq!(doc["name"], "Foo.Bar");
        assert_eq!(doc["versions"], json!(["1.0", "1.1", "2.0", "3.0"]));
        assert_eq!(
            doc["project-status"],
            json!({"status": "deprecated", "reason": "use <foo-baz> & \"friends\""})
        );
        assert_eq!(
            doc["alternate-locations"],
            json!(["https://mirror.example/simple/foo-bar/"])
        );
        assert_eq!(
            doc["files"][0],
            json!({
                "filename": "foo_bar-1.0-py3-none-any.whl",
                "url": "foo_bar-1.0-py3-none-any.whl",
                "hashes": {"sha256": SHA},
                "requires-python": ">=3.8, <4",
                "yanked": false,
                "core-metadata": {"sha256": META_SHA},
                "data-dist-info-metadata": {"sha256": META_SHA},
                "gpg-sig": true,
                "size": 1234,
                "upload-time": "2024-01-02T03:04:05.123456Z",
                "provenance": "https://files.example/provenance/foo_bar-1.0.json",
            })
        );
        assert_eq!(
            doc["files"][1],
            json!({
                "filename": "foo_bar-1.1+local.tar.gz",
                "url": "foo_bar-1.1%2Blocal.tar.gz",
                "hashes": {"sha256": SHA},
                "yanked": true,
                "core-metadata": true,
                "data-dist-info-metadata": true,
                "gpg-sig": false,
                "size": 99,
                "provenance": null,
            })
        );
        assert_eq!(doc["files"][2]["hashes"], json!({}));
        assert_eq!(doc["files"][2]["yanked"], "broken <b>build</b> & \"more\"\n\u{1}");
        assert_eq!(doc["files"][2]["core-metadata"], false);
        assert_eq!(doc["files"][2]["data-dist-info-metadata"], false);
        assert!(doc.as_object().unwrap().keys().all(|k| !k.starts_with('_')));
        assert!(
            doc["meta"]
                .as_object()
                .unwrap()
                .keys()
                .all(|k| !k.starts_with('_'))
        );
    }

    #[test]
    fn optional_page_keys_are_left_out_when_unknown() {
        let page = ProjectPage {
            name: "foo".into(),
            files: vec![],
            versions: Some(vec![]),
            project_status: None,
            meta: PageMeta::default(),
        };
        let doc: Value = serde_json::from_str(&render_project_json(&page)).unwrap();
        assert_eq!(
            doc,
            json!({"meta": {"api-version": "1.1"}, "name": "foo", "files": [], "versions": []})
        );
        let html = render_project_html(&page);
        assert!(
            !html.contains("pypi:project-status") && !html.contains("<a "),
            "{html}"
        );
    }

    #[test]
    fn html_round_trip_keeps_every_html_field() {
        let page = sample_page();
        let html = render_project_html(&page);
        let parsed = parse_project_html(html.as_bytes(), &Url::parse(BASE).unwrap(), "foo-bar").unwrap();
        assert!(parsed.dropped.is_empty(), "{:?}", parsed.dropped);
        let parsed = parsed.page;
        let mut expected = page.clone();
        // HTML is frozen (PEP 700): sizes, upload times, versions and serials exist only in JSON.
        for f in &mut expected.files {
            f.size = None;
            f.upload_time = None;
        }
        expected.versions = None;
        expected.meta.last_serial = None;
        expected.meta.api_version = Some(api_version(&page).into());
        assert_eq!(parsed, expected);
    }

    #[test]
    fn json_round_trip_keeps_every_field() {
        let mut page = sample_page();
        page.files[0]
            .hashes
            .insert("md5".into(), "0123456789abcdef0123456789abcdef".into());
        let json = render_project_json(&page);
        let parsed = parse_project_json(json.as_bytes(), &Url::parse(BASE).unwrap()).unwrap();
        assert!(parsed.dropped.is_empty(), "{:?}", parsed.dropped);
        let parsed = parsed.page;
        let mut expected = page.clone();
        // `_last-serial` is upstream's private key: not ours to re-emit.
        expected.meta.last_serial = None;
        expected.meta.api_version = Some(api_version(&page).into());
        assert_eq!(parsed, expected);
    }

    #[test]
    fn derived_versions_are_emitted_when_upstream_gave_none() {
        let mut page = sample_page();
        page.versions = None;
        page.files.push(file("foo_bar-1.0.tar.gz"));
        let doc: Value = serde_json::from_str(&render_project_json(&page)).unwrap();
        // The odd file's name does not start with the project's: no version from it.
        assert_eq!(doc["versions"], json!(["1.0", "1.1+local"]));
        assert_eq!(doc["meta"]["api-version"], "1.0", "versions incomplete");
    }

    #[test]
    fn quarantined_projects_list_no_files() {
        let mut page = sample_page();
        page.project_status = Some(ProjectStatus {
            status: "quarantined".into(),
            reason: Some("malware".into()),
        });
        let html = render_project_html(&page);
        assert!(!html.contains("<a "), "{html}");
        assert!(html.contains(r#"<meta name="pypi:project-status" content="quarantined">"#));
        let doc: Value = serde_json::from_str(&render_project_json(&page)).unwrap();
        assert_eq!(doc["files"], json!([]));
        assert_eq!(doc["project-status"]["status"], "quarantined");
    }

    #[test]
    fn api_version_rules() {
        let with = |advertised: Option<&str>, edit: &dyn Fn(&mut ProjectPage)| {
            let mut page = sample_page();
            page.meta.api_version = advertised.map(Into::into);
            edit(&mut page);
            let version = api_version(&page);
            let html = render_project_html(&page);
            let doc: Value = serde_json::from_str(&render_project_json(&page)).unwrap();
            assert_eq!(doc["meta"]["api-version"], version, "JSON advertises the same");
            assert!(html.contains(&format!(
                r#"<meta name="pypi:repository-version" content="{version}">"#
            )));
            version
        };
        let unchanged = |_: &mut ProjectPage| {};
        assert_eq!(with(None, &unchanged), "1.1");
        assert_eq!(with(Some("1.0"), &unchanged), "1.1");
        assert_eq!(with(Some("not a version"), &unchanged), "1.1");
        assert_eq!(with(Some("1.2"), &unchanged), "1.2");
        assert_eq!(with(Some("1.3"), &unchanged), "1.3");
        assert_eq!(with(Some("1.4"), &unchanged), "1.4");
        assert_eq!(with(Some("1.9"), &unchanged), "1.4");
        // Without a size on every file, or without versions, nothing above 1.0 is true.
        assert_eq!(with(Some("1.4"), &|p| p.files[1].size = None), "1.0");
        let derivable = |p: &mut ProjectPage| {
            p.versions = None;
            p.files.pop();
        };
        assert_eq!(with(Some("1.4"), &derivable), "1.4");
        assert_eq!(with(Some("1.4"), &|p| p.versions = None), "1.0");
        let no_files = |p: &mut ProjectPage| {
            p.versions = None;
            p.files.clear();
        };
        assert_eq!(with(Some("1.4"), &no_files), "1.0");
        // A quarantined page lists no file, so none lacks a size.
        assert_eq!(
            with(Some("1.4"), &|p| {
                p.files[1].size = None;
                p.project_status = Some(ProjectStatus {
                    status: "quarantined".into(),
                    reason: None,
                });
            }),
            "1.4"
        );

        let list = |v: Option<&str>| ProjectList {
            projects: vec![],
            meta: PageMeta {
                api_version: v.map(Into::into),
                ..PageMeta::default()
            },
        };
        assert_eq!(list_api_version(&list(None)), "1.0");
        assert_eq!(list_api_version(&list(Some("1.0"))), "1.0");
        assert_eq!(list_api_version(&list(Some("1.2"))), "1.2");
        assert_eq!(list_api_version(&list(Some("1.10"))), "1.4");
    }

    #[test]
    fn strongest_hash_is_advertised() {
        let pick = |pairs: &[(&str, &str)]| {
            let hashes: Hashes = pairs
                .iter()
                .map(|(n, d)| (n.to_string(), d.to_string()))
                .collect();
            best_hash(&hashes).map(|(n, _)| n.to_owned())
        };
        assert_eq!(
            pick(&[("md5", "00"), ("sha256", "11"), ("sha512", "22")]).as_deref(),
            Some("sha256")
        );
        assert_eq!(
            pick(&[("md5", "00"), ("sha512", "22"), ("sha1", "33")]).as_deref(),
            Some("sha512")
        );
        assert_eq!(
            pick(&[("md5", "00"), ("sha224", "22")]).as_deref(),
            Some("sha224")
        );
        assert_eq!(pick(&[("blake2b_256", "00")]).as_deref(), Some("blake2b_256"));
        assert_eq!(pick(&[]), None);

        let mut page = sample_page();
        page.files.truncate(1);
        page.files[0].hashes = Hashes::from_iter([("md5".into(), "00".into())]);
        assert!(render_project_html(&page).contains(r#"href="foo_bar-1.0-py3-none-any.whl#md5=00""#));
        page.files[0].hashes.clear();
        assert!(render_project_html(&page).contains(r#"href="foo_bar-1.0-py3-none-any.whl""#));
    }

    #[test]
    fn project_lists() {
        let list = ProjectList {
            projects: vec!["Foo.Bar".into(), "baz".into(), "A_B".into()],
            meta: PageMeta {
                api_version: Some("1.1".into()),
                last_serial: Some(9),
                ..PageMeta::default()
            },
        };
        let html = render_list_html(&list);
        assert!(html.contains(r#"<meta name="pypi:repository-version" content="1.1">"#));
        assert!(html.contains(r#"<a href="foo-bar/">Foo.Bar</a>"#), "{html}");
        assert!(html.contains(r#"<a href="a-b/">A_B</a>"#), "{html}");
        let doc: Value = serde_json::from_str(&render_list_json(&list)).unwrap();
        assert_eq!(
            doc,
            json!({"meta": {"api-version": "1.1"},
                   "projects": [{"name": "Foo.Bar"}, {"name": "baz"}, {"name": "A_B"}]})
        );

        let expected = ProjectList {
            meta: PageMeta {
                api_version: Some("1.1".into()),
                ..PageMeta::default()
            },
            ..list
        };
        let clean = |page| Parsed {
            page,
            dropped: Vec::new(),
        };
        assert_eq!(parse_list_html(html.as_bytes()).unwrap(), clean(expected.clone()));
        assert_eq!(
            parse_list_json(render_list_json(&expected).as_bytes()).unwrap(),
            clean(expected)
        );
    }
}
