//! The mirror in front of real pages: a fake upstream serves the corpus of `tests/fixtures/real`
//! (pages a real index served, and three real wheels) at its own address, once in JSON and once
//! in HTML, and the mirror must pass every file on, let pip list the versions a real index would
//! give, and let pip, uv, poetry and pdm install the real wheels.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use serde_json::Value;
use url::Url;

use crate::support::sandbox::{Client, Sandbox, install_in};
use crate::support::tools::{Tool, require};
use crate::support::*;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real");

fn read(file: &str) -> Vec<u8> {
    let path = Path::new(CORPUS).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn manifest() -> Value {
    serde_json::from_slice(&read("MANIFEST.json")).unwrap()
}

fn projects() -> Vec<String> {
    let projects: Vec<String> = manifest()["projects"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(projects.len() >= 15, "the corpus is missing: {projects:?}");
    projects
}

fn corpus_page(project: &str) -> Value {
    serde_json::from_slice(&read(&format!("{project}.json"))).unwrap()
}

/// A corpus page with its placeholder hosts (in file URLs, and in yanked reasons) made `own`.
fn served_page(file: &str, own: &str) -> String {
    String::from_utf8(read(file))
        .unwrap()
        .replace("https://index.example", own)
        .replace("https://files.example", own)
}

fn fake_origin(fake: &FakeIndex) -> String {
    format!("http://{}", fake.addr)
}

/// PEP 592 `yanked` as a reason (`""` when yanked without one), `None` when not yanked.
fn yanked(value: &Value) -> Option<String> {
    match value {
        Value::Bool(true) => Some(String::new()),
        Value::String(reason) => Some(reason.clone()),
        _ => None,
    }
}

/// filename -> (sha256, yanked) of the files of a PEP 691 page.
type Listing = BTreeMap<String, (Option<String>, Option<String>)>;

fn listing_of_json(page: &Value) -> Listing {
    page["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let sha256 = f["hashes"]["sha256"].as_str().map(str::to_owned);
            (
                f["filename"].as_str().unwrap().to_owned(),
                (sha256, yanked(&f["yanked"])),
            )
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Format {
    Json,
    Html,
}

/// A fake upstream serving every corpus page in `format`, with the content type the real index
/// sent and the placeholder hosts pointing at the fake itself, and the captured files at their
/// real paths.
fn corpus_upstream(format: Format) -> FakeIndex {
    let fake = FakeIndex::start();
    let own = fake_origin(&fake);
    let manifest = manifest();
    let (extension, content_type) = match format {
        Format::Json => ("json", "json_content_type"),
        Format::Html => ("html", "html_content_type"),
    };
    for (project, entry) in manifest["projects"].as_object().unwrap() {
        let body = served_page(&format!("{project}.{extension}"), &own);
        let content_type = entry[content_type].as_str().unwrap();
        fake.file(&format!("/simple/{project}/"), content_type, body.into_bytes());
    }
    for entry in manifest["files"].as_object().unwrap().values() {
        for key in ["path", "metadata_path"] {
            if let Some(path) = entry[key].as_str() {
                let served = path.strip_prefix("files").unwrap();
                fake.file(served, "application/octet-stream", read(path));
            }
        }
    }
    fake
}

/// The mirror in front of `fake`; the fake is on 127.0.0.1, so files from it must be allowed.
fn mirror(data: &Path, fake: &FakeIndex) -> Server {
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch.env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    Server::start(data, &launch)
}

/// Where two listings differ, one line per file.
fn differences(expected: &Listing, served: &Listing) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, entry) in expected {
        match served.get(name) {
            None => lines.push(format!("missing {name}")),
            Some(got) if got != entry => lines.push(format!("{name}: {got:?}, the corpus has {entry:?}")),
            Some(_) => {}
        }
    }
    for name in served.keys().filter(|name| !expected.contains_key(*name)) {
        lines.push(format!("extra {name}"));
    }
    lines
}

/// Every corpus project through the mirror, as JSON and as HTML: the same files with the same
/// sha256 and yanked state as the real page.
async fn the_mirror_serves_every_real_file(format: Format) {
    let fake = corpus_upstream(format);
    let data = temp_dir();
    let server = mirror(data.path(), &fake);
    let mut problems = Vec::new();
    let projects = projects();
    for project in &projects {
        let corpus: Value =
            serde_json::from_str(&served_page(&format!("{project}.json"), &fake_origin(&fake))).unwrap();
        let expected = listing_of_json(&corpus);
        let url = server.url(&format!("/simple/{project}/"));

        let response = get(&url, JSON).await;
        assert_eq!(response.status(), 200, "{format:?} {url}\n{}", server.logs());
        assert!(header(&response, "content-type").starts_with(JSON), "{url}");
        let served: Value = response.json().await.unwrap();
        for line in differences(&expected, &listing_of_json(&served)) {
            problems.push(format!("{project} as JSON: {line}"));
        }

        let response = get(&url, HTML).await;
        assert_eq!(response.status(), 200, "{format:?} {url}\n{}", server.logs());
        let body = response.text().await.unwrap();
        let page = pkgmirror::pypi::parse_project_html(body.as_bytes(), &Url::parse(&url).unwrap(), project)
            .unwrap_or_else(|e| panic!("the mirror's HTML for {project} does not parse: {e}"))
            .page;
        let served: Listing = page
            .files
            .into_iter()
            .map(|f| (f.filename, (f.hashes.get("sha256").cloned(), f.yanked)))
            .collect();
        for line in differences(&expected, &served) {
            problems.push(format!("{project} as HTML: {line}"));
        }

        // Both formats came from one upstream fetch.
        assert_eq!(
            fake.hits(&format!("{project}/")),
            1,
            "{project}\n{}",
            server.logs()
        );
    }
    assert!(
        problems.is_empty(),
        "{format:?} upstream: {} differences; the first ones:\n{}\n=== pkgmirror log\n{}",
        problems.len(),
        problems[..problems.len().min(40)].join("\n"),
        server.logs()
    );
}

#[tokio::test]
async fn the_mirror_serves_every_real_file_from_a_json_upstream() {
    the_mirror_serves_every_real_file(Format::Json).await;
}

#[tokio::test]
async fn the_mirror_serves_every_real_file_from_an_html_upstream() {
    the_mirror_serves_every_real_file(Format::Html).await;
}

/// The version in a file name of `project`, when pip would consider the file on a CPython 3 of
/// minor version `minor` for a pure-Python project: an sdist, or a `none-any` wheel for Python 3.
/// Eggs, installers and platform wheels give none.
fn pip_candidate_version(filename: &str, project: &str, minor: u32) -> Option<String> {
    let normalize = |name: &str| name.replace(['_', '.'], "-").to_ascii_lowercase();
    if let Some(stem) = filename.strip_suffix(".whl") {
        let fields: Vec<&str> = stem.split('-').collect();
        let [name, version, .., python, abi, platform] = fields[..] else {
            return None;
        };
        let py3 = python.split('.').any(|tag| {
            tag == "py3"
                || tag
                    .strip_prefix("py3")
                    .and_then(|m| m.parse::<u32>().ok())
                    .is_some_and(|m| m <= minor)
        });
        return (normalize(name) == project && py3 && abi == "none" && platform == "any")
            .then(|| version.to_owned());
    }
    let stem = [".tar.gz", ".zip", ".tar.bz2"]
        .iter()
        .find_map(|suffix| filename.strip_suffix(suffix))?;
    stem.match_indices('-')
        .find(|(i, _)| normalize(&stem[..*i]) == project)
        .map(|(i, _)| stem[i + 1..].to_owned())
}

/// What `pip index versions` lists from a real page: the final releases with a non-yanked file
/// pip could install on `python` (requires-python included), newest first.
fn expected_pip_versions(project: &str, python: &Version) -> Vec<String> {
    let minor = python.release()[1] as u32;
    let page = corpus_page(project);
    let mut versions = BTreeSet::new();
    for file in page["files"].as_array().unwrap() {
        if yanked(&file["yanked"]).is_some() {
            continue;
        }
        let filename = file["filename"].as_str().unwrap();
        let Some(version) = pip_candidate_version(filename, project, minor) else {
            continue;
        };
        let Ok(version) = Version::from_str(&version) else {
            continue;
        };
        // pip ignores a specifier it cannot read.
        let allowed = file["requires-python"]
            .as_str()
            .and_then(|spec| VersionSpecifiers::from_str(spec).ok())
            .is_none_or(|spec| spec.contains(python));
        if allowed && !version.any_prerelease() {
            versions.insert(version);
        }
    }
    versions.iter().rev().map(ToString::to_string).collect()
}

/// `pip index versions` through the mirror, for real projects asked under their usual spelling.
async fn pip_lists_the_real_versions(format: Format) {
    let Some(interpreter) = require(Tool::Pip) else {
        return;
    };
    let fake = corpus_upstream(format);
    let data = temp_dir();
    let server = mirror(data.path(), &fake);
    let index = server.url("/simple/");
    let mut sandbox = Sandbox::new();
    let mut version = sandbox.command(&interpreter);
    version.args(["-c", "import platform; print(platform.python_version())"]);
    let python = Version::from_str(sandbox.must(version, &server).await.stdout.trim()).unwrap();
    for requested in [
        "six",
        "docopt",
        "typing_extensions",
        "requests",
        "Django",
        "certifi",
    ] {
        let project = requested.replace('_', "-").to_ascii_lowercase();
        let expected = expected_pip_versions(&project, &python);
        assert!(expected.len() > 5, "{project}: {expected:?}");
        let mut pip = sandbox.command(&interpreter);
        pip.args(["-m", "pip", "index", "versions", requested, "--index-url", &index])
            .arg("--cache-dir")
            .arg(sandbox.path("cache/pip"));
        let run = sandbox.must(pip, &server).await;
        let listed: Vec<&str> = run
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("Available versions: "))
            .unwrap_or_else(|| panic!("no versions line:\n{}", run.report()))
            .split(", ")
            .collect();
        assert_eq!(
            listed,
            expected,
            "{format:?} upstream, {requested}:\n{}",
            run.report()
        );
    }
}

#[tokio::test]
async fn pip_lists_the_real_versions_from_a_json_upstream() {
    pip_lists_the_real_versions(Format::Json).await;
}

#[tokio::test]
async fn pip_lists_the_real_versions_from_an_html_upstream() {
    pip_lists_the_real_versions(Format::Html).await;
}

/// `client` installs six, idna and typing-extensions, from their real pages and wheels, through
/// the mirror in front of an upstream of each format; each wheel is fetched upstream once.
async fn installs_the_real_wheels(client: Client) {
    let Some(_) = require(client.tool()) else { return };
    let manifest = manifest();
    let wheels = manifest["files"].as_object().unwrap();
    // The captured wheel of each project, by normalized name, and its version.
    let expected: BTreeMap<String, String> = wheels
        .iter()
        .map(|(project, wheel)| {
            let version = wheel["filename"].as_str().unwrap().split('-').nth(1).unwrap();
            (project.clone(), version.to_owned())
        })
        .collect();
    let requirements: Vec<&str> = expected.keys().map(String::as_str).collect();
    for format in [Format::Json, Format::Html] {
        let fake = corpus_upstream(format);
        let data = temp_dir();
        let server = mirror(data.path(), &fake);
        let mut sandbox = Sandbox::new();
        let installed = install_in(
            &mut sandbox,
            client,
            &server.url("/simple/"),
            &requirements,
            &server,
        )
        .await;
        let versions = installed.versions(&mut sandbox, &server).await;
        // The wheels are real: what they install imports.
        let mut import = sandbox.command(&installed.python);
        import.args(["-c", "import six, idna, typing_extensions"]);
        if let Some(dir) = &installed.pythonpath {
            import.env("PYTHONPATH", dir);
        }
        sandbox.must(import, &server).await;
        let transcript = sandbox.transcript.join("\n\n");
        assert_eq!(versions, expected, "{client:?}, {format:?}\n{transcript}");
        for wheel in wheels.values() {
            let path = wheel["path"].as_str().unwrap().strip_prefix("files").unwrap();
            assert_eq!(
                fake.hits_of(path),
                1,
                "{client:?}, {format:?}: upstream requests for {path}\n{transcript}\n=== pkgmirror log\n{}",
                server.logs()
            );
        }
    }
}

#[tokio::test]
async fn pip_installs_the_real_wheels() {
    installs_the_real_wheels(Client::Pip).await;
}

#[tokio::test]
async fn uv_installs_the_real_wheels() {
    installs_the_real_wheels(Client::Uv).await;
}

#[tokio::test]
async fn poetry_installs_the_real_wheels() {
    installs_the_real_wheels(Client::Poetry).await;
}

#[tokio::test]
async fn pdm_installs_the_real_wheels() {
    installs_the_real_wheels(Client::Pdm).await;
}
