//! The parsers against real pages: `tests/fixtures/real` holds project pages a real index served,
//! each in JSON and in HTML (captured by `scripts/capture-real-pages`). Every page must parse
//! without dropping anything, the JSON parser must agree with a plain JSON reading of the same
//! body, and a project's two formats must give the same files.

use std::collections::BTreeMap;

use crate::pypi::model::Hashes;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use serde_json::Value;
use url::Url;

use super::model::{DistFile, ProjectPage};
use super::name::normalize;
use super::{parse_project_html, parse_project_json};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real");

fn corpus(file: &str) -> PathBuf {
    Path::new(CORPUS).join(file)
}

fn read(file: &str) -> Vec<u8> {
    std::fs::read(corpus(file)).unwrap_or_else(|e| panic!("{}: {e}", corpus(file).display()))
}

fn manifest() -> Value {
    serde_json::from_slice(&read("MANIFEST.json")).unwrap()
}

/// The corpus's projects (normalized names), from the manifest, after checking that it lists
/// exactly the pages on disk.
fn projects() -> Vec<String> {
    let listed: Vec<String> = manifest()["projects"]
        .as_object()
        .expect("MANIFEST.json has a `projects` object")
        .keys()
        .cloned()
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(CORPUS)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".html").map(str::to_owned))
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk, "MANIFEST.json and the pages on disk disagree");
    listed
}

fn page_url(project: &str) -> Url {
    Url::parse(&format!("https://index.example/simple/{project}/")).unwrap()
}

/// What both formats carry for a file, as compared between them.
#[derive(Debug, PartialEq)]
struct Common<'a> {
    url: &'a str,
    sha256: Option<&'a str>,
    yanked: Option<&'a str>,
    requires_python: Option<&'a str>,
    core_metadata: Option<&'a Hashes>,
    provenance: Option<&'a str>,
}

fn common(file: &DistFile) -> Common<'_> {
    Common {
        url: &file.url,
        sha256: file.hashes.get("sha256").map(String::as_str),
        yanked: file.yanked.as_deref(),
        requires_python: file.requires_python.as_deref(),
        core_metadata: file.core_metadata.as_ref(),
        provenance: file.provenance.as_deref(),
    }
}

/// Parses both pages of `project`, noting every failure and every dropped entry in `problems`.
fn parse_both(project: &str, problems: &mut Vec<String>) -> Option<(ProjectPage, ProjectPage)> {
    let url = page_url(project);
    let json = match parse_project_json(&read(&format!("{project}.json")), &url) {
        Ok(parsed) => {
            for dropped in &parsed.dropped {
                problems.push(format!("{project}.json: dropped {dropped}"));
            }
            Some(parsed.page)
        }
        Err(e) => {
            problems.push(format!("{project}.json does not parse: {e}"));
            None
        }
    };
    let html = match parse_project_html(&read(&format!("{project}.html")), &url, project) {
        Ok(parsed) => {
            for dropped in &parsed.dropped {
                problems.push(format!("{project}.html: dropped {dropped}"));
            }
            Some(parsed.page)
        }
        Err(e) => {
            problems.push(format!("{project}.html does not parse: {e}"));
            None
        }
    };
    json.zip(html)
}

fn differ<T: Debug + PartialEq>(problems: &mut Vec<String>, what: String, left: T, right: T) {
    if left != right {
        problems.push(format!("{what}: {left:?} != {right:?}"));
    }
}

/// The JSON parser's page against a plain reading of the same JSON: nothing lost or changed.
fn check_json_against_raw(project: &str, page: &ProjectPage, problems: &mut Vec<String>) {
    let raw: Value = serde_json::from_slice(&read(&format!("{project}.json"))).unwrap();
    let raw_files = raw["files"].as_array().unwrap();
    differ(
        problems,
        format!("{project}.json: file count"),
        page.files.len(),
        raw_files.len(),
    );
    differ(
        problems,
        format!("{project}.json: name"),
        Some(page.name.as_str()),
        raw["name"].as_str(),
    );
    let raw_versions: Option<Vec<&str>> = raw["versions"]
        .as_array()
        .map(|versions| versions.iter().filter_map(Value::as_str).collect());
    differ(
        problems,
        format!("{project}.json: versions"),
        page.versions
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect()),
        raw_versions,
    );
    // Sent as a number or as a string of digits: either way it is the serial.
    let raw_serial = match &raw["meta"]["_last-serial"] {
        Value::String(s) => s.parse().ok(),
        other => other.as_u64(),
    };
    differ(
        problems,
        format!("{project}.json: _last-serial"),
        page.meta.last_serial,
        raw_serial,
    );
    differ(
        problems,
        format!("{project}.json: api-version"),
        page.meta.api_version.as_deref(),
        raw["meta"]["api-version"].as_str(),
    );
    for (file, raw) in page.files.iter().zip(raw_files) {
        let name = &file.filename;
        let what = |field: &str| format!("{project}.json: {name}: {field}");
        differ(
            problems,
            what("filename"),
            Some(name.as_str()),
            raw["filename"].as_str(),
        );
        differ(
            problems,
            what("url"),
            Some(file.url.as_str()),
            raw["url"].as_str(),
        );
        let raw_hashes: Hashes = serde_json::from_value(raw["hashes"].clone()).unwrap_or_default();
        differ(problems, what("hashes"), &file.hashes, &raw_hashes);
        let raw_yanked = match &raw["yanked"] {
            Value::Bool(true) => Some(""),
            Value::String(reason) => Some(reason.as_str()),
            _ => None,
        };
        differ(problems, what("yanked"), file.yanked.as_deref(), raw_yanked);
        let raw_requires = raw["requires-python"].as_str().filter(|s| !s.trim().is_empty());
        differ(
            problems,
            what("requires-python"),
            file.requires_python.as_deref(),
            raw_requires,
        );
        differ(problems, what("size"), file.size, raw["size"].as_u64());
        differ(
            problems,
            what("upload-time"),
            file.upload_time.as_deref(),
            raw["upload-time"].as_str(),
        );
        differ(
            problems,
            what("core-metadata present"),
            file.core_metadata.is_some(),
            raw.get("core-metadata").is_some_and(|v| v != &Value::Bool(false)),
        );
        differ(
            problems,
            what("provenance present"),
            file.provenance.is_some(),
            raw["provenance"].is_string(),
        );
    }
}

fn by_name(page: &ProjectPage) -> BTreeMap<&str, &DistFile> {
    page.files.iter().map(|f| (f.filename.as_str(), f)).collect()
}

/// The two formats of one project: the same files, each with the same fields.
fn check_formats_agree(project: &str, json: &ProjectPage, html: &ProjectPage, problems: &mut Vec<String>) {
    differ(
        problems,
        format!("{project}: normalized names (JSON, HTML)"),
        normalize(&json.name),
        normalize(&html.name),
    );
    differ(
        problems,
        format!("{project}: name is the project's"),
        normalize(&json.name),
        project.to_owned(),
    );
    let (json_files, html_files) = (by_name(json), by_name(html));
    differ(
        problems,
        format!("{project}.json: distinct filenames"),
        json_files.len(),
        json.files.len(),
    );
    differ(
        problems,
        format!("{project}.html: distinct filenames"),
        html_files.len(),
        html.files.len(),
    );
    for (name, file) in &json_files {
        match html_files.get(name) {
            Some(other) => differ(
                problems,
                format!("{project}: {name} (JSON, HTML)"),
                common(file),
                common(other),
            ),
            None => problems.push(format!(
                "{project}: {name} is in the JSON page, not in the HTML page"
            )),
        }
    }
    for name in html_files.keys().filter(|name| !json_files.contains_key(*name)) {
        problems.push(format!(
            "{project}: {name} is in the HTML page, not in the JSON page"
        ));
    }
    // Hashes HTML carries (the URL fragment) must be among the JSON ones.
    for (name, file) in &html_files {
        if let Some(other) = json_files.get(name) {
            for (hash, digest) in &file.hashes {
                differ(
                    problems,
                    format!("{project}: {name}: {hash} (HTML, JSON)"),
                    Some(digest),
                    other.hashes.get(hash),
                );
            }
        }
    }
}

/// At most this many lines of problems are shown (numpy alone could give thousands).
const SHOWN: usize = 60;

#[test]
fn every_real_page_parses_and_both_formats_agree() {
    let projects = projects();
    let mut problems = Vec::new();
    for project in &projects {
        let Some((json, html)) = parse_both(project, &mut problems) else {
            continue;
        };
        check_json_against_raw(project, &json, &mut problems);
        check_formats_agree(project, &json, &html, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "{} problems over {} real projects; the first ones:\n{}",
        problems.len(),
        projects.len(),
        problems[..problems.len().min(SHOWN)].join("\n")
    );
}

/// The counts of one parsed page, named as in MANIFEST.json.
fn shapes(page: &ProjectPage) -> BTreeMap<&'static str, Value> {
    let count = |keep: &dyn Fn(&DistFile) -> bool| Value::from(page.files.iter().filter(|f| keep(f)).count());
    BTreeMap::from([
        ("files", Value::from(page.files.len())),
        ("yanked", count(&|f| f.yanked.is_some())),
        ("with_metadata", count(&|f| f.core_metadata.is_some())),
        ("with_provenance", count(&|f| f.provenance.is_some())),
        (
            "sdist_only",
            Value::from(!page.files.is_empty() && !page.files.iter().any(|f| f.filename.ends_with(".whl"))),
        ),
    ])
}

#[test]
fn the_corpus_has_the_shapes_its_manifest_names() {
    let manifest = manifest();
    let projects = projects();
    assert!(
        projects.len() >= 15,
        "only {} projects in the corpus",
        projects.len()
    );
    let mut problems = Vec::new();
    let (mut largest, mut sdist_only, mut yanked_with_reason, mut yanked_without) = (0, 0, 0, 0);
    for project in &projects {
        let Some((json, html)) = parse_both(project, &mut problems) else {
            continue;
        };
        let expected = &manifest["projects"][project];
        for (format, page) in [("json", &json), ("html", &html)] {
            for (shape, value) in shapes(page) {
                differ(
                    &mut problems,
                    format!("{project}.{format}: {shape} (parsed, MANIFEST)"),
                    &value,
                    &expected[shape],
                );
            }
        }
        largest = largest.max(json.files.len());
        sdist_only += usize::from(shapes(&json)["sdist_only"] == true);
        yanked_with_reason += json
            .files
            .iter()
            .filter(|f| f.yanked.as_deref().is_some_and(|r| !r.is_empty()))
            .count();
        yanked_without += json
            .files
            .iter()
            .filter(|f| f.yanked.as_deref() == Some(""))
            .count();
    }
    assert!(
        problems.is_empty(),
        "{}",
        problems[..problems.len().min(SHOWN)].join("\n")
    );
    // The shapes the corpus exists for. Metadata and provenance are checked against the manifest
    // above only: the index it was captured from served neither (see its README).
    assert!(
        largest > 1000,
        "no page with over 1000 files (largest: {largest})"
    );
    assert!(sdist_only > 0, "no sdist-only project");
    assert!(yanked_with_reason > 0, "no file yanked with a reason");
    assert!(yanked_without > 0, "no file yanked without a reason");
    let spellings = manifest["projects"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|p| p["requested"].as_str())
        .filter(|requested| {
            requested.contains(['.', '_']) || requested.chars().any(|c| c.is_ascii_uppercase())
        })
        .count();
    assert!(
        spellings >= 3,
        "too few projects requested under a non-normalized spelling"
    );
}

#[test]
fn the_captured_wheels_are_listed_with_their_sha256() {
    use sha2::{Digest, Sha256};
    let manifest = manifest();
    let files = manifest["files"].as_object().expect("MANIFEST.json has `files`");
    assert_eq!(files.len(), 3, "{files:?}");
    for (project, entry) in files {
        let path = entry["path"].as_str().unwrap();
        let bytes = read(path);
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let page = parse_project_json(&read(&format!("{project}.json")), &page_url(project))
            .unwrap()
            .page;
        let url_path = path.strip_prefix("files").unwrap();
        let listed = page
            .files
            .iter()
            .find(|f| f.url == format!("https://files.example{url_path}"))
            .unwrap_or_else(|| panic!("{project}: no file at {url_path}"));
        assert_eq!(listed.filename, entry["filename"].as_str().unwrap());
        assert_eq!(listed.hashes.get("sha256").unwrap(), &sha256, "{path}");
        assert_eq!(listed.size, Some(bytes.len() as u64), "{path}");
        assert_eq!(listed.yanked, None, "{path}");
    }
}
