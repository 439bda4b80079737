//! Property tests over the parsers of upstream Simple API pages ([`parse_project_json`],
//! [`parse_list_json`], [`parse_project_html`], [`parse_list_html`]). Inputs are arbitrary bytes,
//! fragment soup and mutations (`crate::fuzz_support`) of seeds: the pages below, and every
//! `tests/fixtures/real/*.json` and `*.html` (real pages, read at run time when present).
//!
//! What must hold for every input: no panic (proptest fails a case that panics and shrinks it);
//! a refusal is an `Err`; the heap in use while parsing stays within [`HEAP_PER_BYTE`] times the
//! input plus [`FIXED_HEAP`]; and what is accepted is safe to serve: every file has a safe name,
//! an absolute http(s) URL without fragment, lower-case hex hashes under lower-case names, an
//! https provenance (the pages come from an https index); every listed project name is valid and
//! listed once; no api-version but 1.x passes. A JSON page accounts for every entry of its
//! `files`: kept or reported as dropped.
//!
//! `cargo test --lib fuzz` runs a few hundred cases per property (all of them together take about
//! 15 s in a debug build on 2 cores); the long run is `PROPTEST_CASES=20000 cargo test --lib fuzz`
//! (about half an hour, most of it RSA signing in `hex::fuzz::signed_payloads_are_still_checked`).

use std::collections::HashSet;

use crate::pypi::model::Hashes;
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use serde_json::Value;
use url::Url;

use super::model::{DistFile, PageMeta, ProjectList, ProjectPage};
use super::name::{is_safe_filename, normalize, validate_project_name};
use super::parse::{ParseError, Parsed};
use super::{parse_api_version, parse_list_html, parse_list_json, parse_project_html, parse_project_json};
use crate::fuzz_support::{Dictionary, Input, config, fixture_files, inputs, peak_heap};

/// Heap a parse may hold per input byte. Real pages take 4 to 5 (the `Value` tree or the tokens,
/// then the model). The densest inputs are arrays of tiny entries: each `1,` in a JSON `files`
/// array is a `serde_json::Value` (32 bytes, twice that while the array doubles) and then a
/// dropped-entry message of about a hundred bytes, about 200 bytes per input byte in all; each
/// `<a>` in HTML is a link record of about 200 bytes, doubled likewise, about 180 per byte.
/// [`densest_pages_stay_within_the_factor`] measures those shapes. The bound leaves them 2.5
/// times headroom, and catches anything that allocates more per byte or grows faster than the
/// input.
const HEAP_PER_BYTE: usize = 512;

/// Heap that does not grow with the input: the HTML tokenizer's buffers and tables, URL parsing,
/// error messages.
const FIXED_HEAP: usize = 256 * 1024;

/// Real pages larger than this seed mutations cut down (JSON to its first files, HTML to its
/// first bytes): a debug build tokenizes HTML at a few MiB a second, too slow for hundreds of
/// cases of big pages. They are still parsed whole by [`real_pages_parse_within_bounds`].
const MAX_SEED_LEN: usize = 16 * 1024;

/// Real pages up to this size are parsed whole by default; all of them in the long run.
const MAX_WHOLE_LEN: usize = 512 * 1024;

const PAGE_URL: &str = "https://index.example/simple/foo-bar/";
const PROJECT: &str = "foo-bar";

const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn json_project_seed() -> String {
    format!(
        r#"{{"meta": {{"api-version": "1.4", "_last-serial": 12345, "tracks": ["https://index.example/simple/foo-bar/"]}},
  "name": "Foo.Bar",
  "project-status": {{"status": "archived", "reason": "moved"}},
  "alternate-locations": ["https://mirror.example/simple/foo-bar/"],
  "versions": ["1.0", "1.1"],
  "files": [
    {{"filename": "foo_bar-1.0-py3-none-any.whl", "url": "https://files.example/packages/foo_bar-1.0-py3-none-any.whl",
      "hashes": {{"sha256": "{SHA}", "md5": "0123456789ABCDEF0123456789abcdef"}}, "requires-python": ">=3.8",
      "yanked": false, "core-metadata": {{"sha256": "{SHA}"}}, "gpg-sig": true, "size": 1234,
      "upload-time": "2024-01-02T03:04:05.123456Z", "provenance": "../../provenance/foo_bar-1.0.json"}},
    {{"filename": "foo_bar-1.1.tar.gz", "url": "/packages/foo_bar-1.1.tar.gz#sha256={SHA}", "hashes": {{}},
      "yanked": "broken build", "data-dist-info-metadata": true, "size": 99}},
    {{"filename": "foo_bar-1.1.zip", "url": "foo_bar-1.1.zip", "hashes": {{"sha256": "{SHA}"}}, "yanked": ""}}
  ]
}}"#
    )
}

const JSON_LIST_SEED: &str = r#"{"meta": {"api-version": "1.1", "_last-serial": 7},
  "projects": [{"name": "Foo.Bar", "_last-serial": 3}, {"name": "foo-bar"}, {"name": "baz"}, {"name": "q_1"}]}"#;

fn html_project_seed() -> String {
    format!(
        r#"<!DOCTYPE html>
<html><head>
<meta name="pypi:repository-version" content="1.4">
<meta name="pypi:project-status" content="deprecated">
<meta name="pypi:project-status-reason" content="use &quot;foo-baz&quot;">
<meta name="pypi:tracks" content="https://index.example/simple/foo-bar/">
<title>Links for Foo.Bar</title>
</head><body><h1>Links for Foo.Bar</h1>
<a href="https://files.example/packages/foo_bar-1.0-py3-none-any.whl#sha256={SHA}" data-requires-python="&gt;=3.8"
   data-core-metadata="sha256={SHA}" data-gpg-sig="true" data-provenance="../../p/foo_bar-1.0.json">foo_bar-1.0-py3-none-any.whl</a><br/>
<a href="/packages/foo_bar-1.1.tar.gz#md5=0123456789abcdef0123456789abcdef" data-yanked data-dist-info-metadata=true>foo_bar-1.1.tar.gz</a><br/>
<a href="foo_bar-2.0.tar.gz?x=1&amp;y=2" data-yanked="broken &lt;b&gt;">foo_bar-2.0.tar.gz</a>
<a href="sub/foo_bar-3.0%2Blocal.tar.gz"></a>
</body></html>
"#
    )
}

const HTML_LIST_SEED: &str = r#"<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1">
<title>Simple index</title></head><body>
<a href="/simple/foo-bar/">Foo.Bar</a>
<a href="/simple/foo-bar/">foo_bar</a>
<a href="/simple/baz/"> baz </a>
</body></html>
"#;

/// JSON pieces: the Simple API's keys with values of every wrong type, numbers out of every
/// range, escapes that are not characters, a byte-order mark, and openers for deep nesting.
static JSON: Dictionary = Dictionary {
    fragments: &[
        br#""size": "12""#,
        br#""size": 1e400"#,
        br#""size": -1"#,
        br#""size": 12.5"#,
        br#""size": 18446744073709551616"#,
        br#""_last-serial": "12""#,
        br#""_last-serial": -1e-400"#,
        b"null",
        b"true",
        b"1",
        b"-0",
        b"99999999999999999999999999999999999999",
        b"1e999999999",
        b"0.00000000000000000000000000001e-999",
        br#""hashes": {"SHA256": "AB"}"#,
        br#""hashes": {"sha256": 12}"#,
        br#""hashes": {"sha 256": "ab", "": "", "md5": "zz"}"#,
        br#""hashes": null"#,
        br#""hashes": []"#,
        br#""yanked": 1"#,
        br#""yanked": "why""#,
        br#""core-metadata": {"sha256": null}"#,
        br#""core-metadata": "true""#,
        br#""data-dist-info-metadata": {"SHA256": "AB"}"#,
        br#""gpg-sig": "false""#,
        br#""url": "javascript:alert(1)""#,
        br#""url": "//evil.example/x""#,
        br#""url": "https://x:99999/a""#,
        br#""url": "file:///etc/passwd""#,
        br##""url": "#sha256=AB""##,
        br#""url": "\u0000""#,
        br#""filename": "../x.tar.gz""#,
        br#""filename": "a\u0000b.tar.gz""#,
        br#""filename": "a\\b.tar.gz""#,
        br#""filename": """#,
        br#""filename": 1"#,
        br#""provenance": "https://p.example/x""#,
        br#""provenance": "file:///p""#,
        br#""requires-python": "  ""#,
        br#""upload-time": 5"#,
        br#""name": null"#,
        br#""name": "a", "name": "b""#,
        br#""files": {}"#,
        br#""files": [{}, null, 1, "x", []]"#,
        br#""files": [{"filename": "foo-1.0.tar.gz", "url": "foo-1.0.tar.gz"}]"#,
        br#""projects": [1, {"name": "../x"}, {"name": 5}, {"name": "a"}, {"name": "A"}]"#,
        br#""meta": {"api-version": "2.0"}"#,
        br#""meta": {"api-version": 1.1}"#,
        br#""meta": []"#,
        br#""api-version": "1.99999999999999999999999""#,
        br#""project-status": {"status": "quarantined"}"#,
        br#""project-status": "archived""#,
        br#""tracks": "x""#,
        br#""versions": [1, null, "2"]"#,
        br#""alternate-locations": {}"#,
        br#""\ud800""#,
        br#""\udc00\ud800""#,
        br#""\u0000""#,
        b"\"\\",
        b"\xef\xbb\xbf",
        b"\xff",
        b"\xc3\x28",
        b"\xf4\x90\x80\x80",
        b",",
        b":",
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
    ],
    openers: &[b"[", b"{\"a\":", b"[{\"files\":", b"{\"hashes\":"],
    text: true,
};

/// HTML pieces: links with every attribute the parser reads and hrefs of every scheme, `<base>`,
/// the meta tags, raw-text elements and comments that change how the rest tokenizes, character
/// references that are not characters, and openers for deep nesting.
static HTML: Dictionary = Dictionary {
    fragments: &[
        br#"<a href="x-1.tar.gz">"#,
        b"</a>",
        b"<a>",
        b"<a href>",
        br#"<a href="javascript:alert(1)">x-1.tar.gz</a>"#,
        br#"<a href="file:///etc/passwd">passwd</a>"#,
        br#"<a href="//evil.example/x-1.tar.gz">"#,
        br#"<a href="https://x:99999/a">"#,
        br##"<a href="#sha256=AB">"##,
        br#"<a href="x.tar.gz#SHA256=ABCDEF">"#,
        br#"<a href="%2e%2e/x">"#,
        br#"<a href="a/%2F..%5C.tar.gz"></a>"#,
        br#"<a href="x"></a>"#,
        br#"<base href="file:///">"#,
        br#"<base href="https://other.example/root/">"#,
        br#"<base href=":">"#,
        br#"<meta name="pypi:repository-version" content="2.0">"#,
        br#"<meta name="pypi:repository-version" content="1.0">"#,
        br#"<meta name="PYPI:REPOSITORY-VERSION" content="0.1">"#,
        br#"<meta name="pypi:project-status" content="quarantined">"#,
        br#"<meta name="pypi:tracks" content="">"#,
        br#"<meta name="pypi:alternate-locations">"#,
        b"<title>Links for Foo_Bar</title>",
        b"<title>",
        b"</title>",
        b"<h1>",
        b"</h1>",
        b"<script>",
        b"</script>",
        b"<style>",
        b"<textarea>",
        b"<plaintext>",
        b"<xmp>",
        b"<!--",
        b"-->",
        b"<![CDATA[",
        b"]]>",
        b"<!DOCTYPE html>",
        b"<svg>",
        b"<template>",
        b"&amp;",
        b"&#0;",
        b"&#x110000;",
        b"&#xD800;",
        b"&#99999999999999999999;",
        b"&notit;",
        b"&",
        b" data-yanked",
        br#" data-yanked="r&quot;""#,
        br#" data-core-metadata="sha256=AB""#,
        b" data-core-metadata=TRUE",
        b" data-dist-info-metadata=true",
        b" data-gpg-sig=false",
        br#" data-requires-python="&gt;=3""#,
        br#" data-provenance="https://p.example/x""#,
        br#" data-provenance="http://p.example/x""#,
        b"../evil.tar.gz",
        b".hidden.tar.gz",
        b"\"",
        b"'",
        b"=",
        b">",
        b"<",
        b"/",
        b"\0",
        b"\r\n",
        b"\xef\xbb\xbf",
        b"\xef\xbf\xbd",
        b"\xff",
        b"\xc3\x28",
    ],
    openers: &[
        b"<a>",
        b"<div>",
        b"<a href=\"",
        b"<!--",
        b"<title>",
        b"<a href=x ",
    ],
    text: true,
};

/// JSON values of every type, for any place in a page: what a lenient reader must take or skip.
const JSON_VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "1",
    "-1",
    "12.5",
    "1e300",
    "18446744073709551615",
    "18446744073709551616",
    r#""""#,
    r#""12""#,
    r#""true""#,
    r#""  x  ""#,
    r#""../x""#,
    r#""javascript:x""#,
    r#""file:///etc/passwd""#,
    r#""//evil.example/x-1.tar.gz""#,
    r#""x-1.tar.gz#SHA256=AB""#,
    "[]",
    r#"[1, "a", null]"#,
    "{}",
    r#"{"sha256": "AB", "md5": 1}"#,
    r#"{"status": 1, "reason": []}"#,
];

/// The keys the parsers read.
const JSON_KEYS: &[&str] = &[
    "name",
    "files",
    "filename",
    "url",
    "hashes",
    "requires-python",
    "yanked",
    "core-metadata",
    "data-dist-info-metadata",
    "gpg-sig",
    "size",
    "upload-time",
    "provenance",
    "meta",
    "api-version",
    "_last-serial",
    "versions",
    "projects",
    "project-status",
    "tracks",
    "alternate-locations",
    "status",
    "reason",
];

/// Where a position falls among `len` items (`len > 0`): a fraction of the length, as in
/// `crate::fuzz_support`.
fn nth(at: u32, len: usize) -> usize {
    ((len as u64 * u64::from(at)) >> 32) as usize
}

/// An edit of a JSON document at the node a path of positions leads to: the document stays
/// well-formed, and one value gets a type or content its reader may not expect.
#[derive(Clone, Debug)]
enum JsonEdit {
    Replace {
        path: Vec<u32>,
        value: usize,
    },
    SetKey {
        path: Vec<u32>,
        key: usize,
        value: usize,
    },
    Remove {
        path: Vec<u32>,
        at: u32,
    },
}

impl JsonEdit {
    fn apply(&self, doc: &mut Value) {
        let (Self::Replace { path, .. } | Self::SetKey { path, .. } | Self::Remove { path, .. }) = self;
        // The node as a JSON pointer, found by reading, then borrowed once for writing.
        let mut pointer = String::new();
        let mut node = &*doc;
        for &step in path {
            node = match node {
                Value::Array(items) if !items.is_empty() => {
                    let i = nth(step, items.len());
                    pointer.push_str(&format!("/{i}"));
                    &items[i]
                }
                Value::Object(map) if !map.is_empty() => {
                    let (key, child) = map.iter().nth(nth(step, map.len())).unwrap();
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    child
                }
                _ => break,
            };
        }
        let node = doc.pointer_mut(&pointer).unwrap();
        let value = |i: usize| serde_json::from_str::<Value>(JSON_VALUES[i]).unwrap();
        match self {
            Self::Replace { value: v, .. } => *node = value(*v),
            Self::SetKey { key, value: v, .. } => match node {
                Value::Object(map) => {
                    map.insert(JSON_KEYS[*key].to_owned(), value(*v));
                }
                other => *other = serde_json::json!({ JSON_KEYS[*key]: value(*v) }),
            },
            Self::Remove { at, .. } => match node {
                Value::Array(items) if !items.is_empty() => {
                    items.remove(nth(*at, items.len()));
                }
                Value::Object(map) if !map.is_empty() => {
                    let key = map.keys().nth(nth(*at, map.len())).unwrap().clone();
                    map.remove(&key);
                }
                _ => {}
            },
        }
    }
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let path = prop::collection::vec(any::<u32>(), 0..5);
    let value = 0..JSON_VALUES.len();
    prop_oneof![
        (path.clone(), value.clone()).prop_map(|(path, value)| JsonEdit::Replace { path, value }),
        (path.clone(), 0..JSON_KEYS.len(), value).prop_map(|(path, key, value)| JsonEdit::SetKey {
            path,
            key,
            value
        }),
        (path, any::<u32>()).prop_map(|(path, at)| JsonEdit::Remove { path, at }),
    ]
}

/// JSON seeds with edits that keep them well-formed: inputs that get past the JSON syntax and
/// exercise what the parsers make of each value.
fn edited_json(seeds: Arc<Vec<Vec<u8>>>) -> BoxedStrategy<Input> {
    let docs: Arc<Vec<Value>> = Arc::new(
        seeds
            .iter()
            .filter_map(|seed| serde_json::from_slice(seed).ok())
            .collect(),
    );
    (any::<u32>(), prop::collection::vec(json_edit(), 1..6))
        .prop_map(move |(seed, edits)| {
            let mut doc = docs[nth(seed, docs.len())].clone();
            for edit in &edits {
                edit.apply(&mut doc);
            }
            Input(serde_json::to_vec(&doc).unwrap())
        })
        .boxed()
}

fn page_url() -> Url {
    Url::parse(PAGE_URL).unwrap()
}

/// A big JSON page cut down to its first files (still a whole page); an HTML one to its first
/// bytes (HTML has no end that must be reached).
fn cut_down(body: Vec<u8>, json: bool) -> Vec<u8> {
    if body.len() <= MAX_SEED_LEN {
        return body;
    }
    if json && let Ok(mut page) = serde_json::from_slice::<Value>(&body) {
        for key in ["files", "projects"] {
            if let Some(Value::Array(entries)) = page.get_mut(key) {
                entries.truncate(20);
            }
        }
        return serde_json::to_vec(&page).unwrap();
    }
    let mut cut = MAX_SEED_LEN;
    while cut > 0 && (body[cut] & 0xc0) == 0x80 {
        cut -= 1;
    }
    body[..cut].to_vec()
}

/// The inline seeds of a format and the real pages of that format, cut down.
fn seeds(json: bool) -> Arc<Vec<Vec<u8>>> {
    let mut seeds: Vec<Vec<u8>> = if json {
        vec![json_project_seed().into_bytes(), JSON_LIST_SEED.into()]
    } else {
        vec![html_project_seed().into_bytes(), HTML_LIST_SEED.into()]
    };
    let ext = if json { "json" } else { "html" };
    seeds.extend(
        fixture_files("real", ext)
            .into_iter()
            .map(|(_, body)| cut_down(body, json)),
    );
    Arc::new(seeds)
}

fn json_seeds() -> Arc<Vec<Vec<u8>>> {
    static SEEDS: OnceLock<Arc<Vec<Vec<u8>>>> = OnceLock::new();
    SEEDS.get_or_init(|| seeds(true)).clone()
}

fn html_seeds() -> Arc<Vec<Vec<u8>>> {
    static SEEDS: OnceLock<Arc<Vec<Vec<u8>>>> = OnceLock::new();
    SEEDS.get_or_init(|| seeds(false)).clone()
}

/// Runs a parser, checking its heap against the bound and that a refusal says something.
fn parse_checked<T>(
    what: &str,
    input: &[u8],
    parse: impl FnOnce() -> Result<Parsed<T>, ParseError>,
) -> Option<Parsed<T>> {
    let (result, peak) = peak_heap(parse);
    let bound = HEAP_PER_BYTE * input.len() + FIXED_HEAP;
    assert!(
        peak <= bound,
        "{what} held {peak} bytes of heap at once (bound {bound}) for {:?}",
        Input(input.to_vec())
    );
    match result {
        Ok(parsed) => {
            for why in &parsed.dropped {
                assert!(!why.is_empty(), "{what}: an empty drop message");
            }
            Some(parsed)
        }
        Err(e) => {
            assert!(!e.to_string().is_empty(), "{what}: an empty error");
            None
        }
    }
}

fn check_hashes(hashes: &Hashes, what: &str) {
    for (name, digest) in hashes {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
        let digest_ok = !digest.is_empty() && digest.bytes().all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9'));
        assert!(name_ok && digest_ok, "{what}: hash {name:?}={digest:?}");
    }
}

fn check_file(file: &DistFile) {
    let what = &file.filename;
    assert!(is_safe_filename(&file.filename), "unsafe filename {what:?}");
    let url = Url::parse(&file.url).unwrap_or_else(|e| panic!("{what}: url {:?}: {e}", file.url));
    assert!(matches!(url.scheme(), "http" | "https"), "{what}: url {url}");
    assert_eq!(url.fragment(), None, "{what}: url {url}");
    assert_eq!(url.as_str(), file.url, "{what}: url not in normal form");
    check_hashes(&file.hashes, what);
    if let Some(hashes) = &file.core_metadata {
        check_hashes(hashes, what);
    }
    if let Some(provenance) = &file.provenance {
        let url = Url::parse(provenance).unwrap_or_else(|e| panic!("{what}: provenance {provenance:?}: {e}"));
        assert_eq!(url.scheme(), "https", "{what}: provenance {url}");
    }
    if let Some(specifier) = &file.requires_python {
        assert!(!specifier.trim().is_empty(), "{what}: empty requires-python kept");
    }
}

fn check_meta(meta: &PageMeta) {
    if let Some(version) = &meta.api_version {
        assert!(
            parse_api_version(version).is_none_or(|(major, _)| major == 1),
            "api-version {version:?} passed"
        );
    }
}

/// What the mirror would serve from a parsed project page: see the module doc.
fn check_project(page: &ProjectPage) {
    check_meta(&page.meta);
    page.files.iter().for_each(check_file);
}

fn check_list(list: &ProjectList) {
    check_meta(&list.meta);
    let mut seen = HashSet::new();
    for name in &list.projects {
        assert!(
            validate_project_name(name).is_ok(),
            "invalid project {name:?} listed"
        );
        assert!(seen.insert(normalize(name)), "{name:?} listed twice");
    }
}

/// Without the byte-order mark the parsers skip.
fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// The entries of the top-level array `key`, when the body is JSON that `serde_json::Value` reads
/// (numbers out of range, which the parsers may skip unread, make it fail).
fn entry_count(body: &[u8], key: &str) -> Option<usize> {
    let page: Value = serde_json::from_slice(without_bom(body)).ok()?;
    Some(page.get(key)?.as_array()?.len())
}

fn check_json(body: &[u8], url: &Url) {
    check_json_project(body, url);
    if let Some(parsed) = parse_checked("parse_list_json", body, || parse_list_json(body)) {
        check_list(&parsed.page);
        if let Some(entries) = entry_count(body, "projects") {
            // Another spelling of a listed name is left out without a report; nothing else is.
            assert!(parsed.page.projects.len() + parsed.dropped.len() <= entries);
        }
    }
}

fn check_json_project(body: &[u8], url: &Url) {
    if let Some(parsed) = parse_checked("parse_project_json", body, || parse_project_json(body, url)) {
        check_project(&parsed.page);
        if let Some(entries) = entry_count(body, "files") {
            assert_eq!(
                parsed.page.files.len() + parsed.dropped.len(),
                entries,
                "files neither kept nor reported as dropped, from {:?}",
                Input(body.to_vec())
            );
        }
    }
}

fn check_html(body: &[u8], url: &Url, project: &str) {
    check_html_project(body, url, project);
    if let Some(parsed) = parse_checked("parse_list_html", body, || parse_list_html(body)) {
        check_list(&parsed.page);
    }
}

fn check_html_project(body: &[u8], url: &Url, project: &str) {
    if let Some(parsed) = parse_checked("parse_project_html", body, || {
        parse_project_html(body, url, project)
    }) {
        check_project(&parsed.page);
        assert_eq!(
            normalize(&parsed.page.name),
            project,
            "the page's name is not a spelling of the project's"
        );
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn json_pages(input in prop_oneof![inputs(json_seeds(), &JSON), edited_json(json_seeds())]) {
        check_json(&input.0, &page_url());
    }

    #[test]
    fn html_pages(input in inputs(html_seeds(), &HTML)) {
        check_html(&input.0, &page_url(), PROJECT);
    }
}

#[test]
fn the_inline_seeds_parse() {
    let url = page_url();
    let page = parse_project_json(json_project_seed().as_bytes(), &url).unwrap();
    assert_eq!((page.page.files.len(), page.dropped.len()), (3, 0));
    let list = parse_list_json(JSON_LIST_SEED.as_bytes()).unwrap();
    assert_eq!(list.page.projects, ["Foo.Bar", "baz", "q_1"]);
    let page = parse_project_html(html_project_seed().as_bytes(), &url, PROJECT).unwrap();
    assert_eq!(page.page.files.len(), 4);
    let list = parse_list_html(HTML_LIST_SEED.as_bytes()).unwrap();
    assert_eq!(list.page.projects, ["Foo.Bar", "baz"]);
}

/// Every real page (a project page), whole: the same checks, and the same heap bound, as the
/// mutated ones. Pages over [`MAX_WHOLE_LEN`] only in the long run (`PROPTEST_CASES` set): a
/// debug build takes seconds over the biggest.
#[test]
fn real_pages_parse_within_bounds() {
    let all = std::env::var_os("PROPTEST_CASES").is_some();
    let pages = |ext: &str| -> Vec<(String, Vec<u8>)> {
        fixture_files("real", ext)
            .into_iter()
            .filter(|(_, body)| all || body.len() <= MAX_WHOLE_LEN)
            .map(|(name, body)| {
                let stem = name.strip_suffix(ext).unwrap_or(&name).trim_end_matches('.');
                (normalize(stem), body)
            })
            .collect()
    };
    for (project, body) in pages("json") {
        let url = Url::parse(&format!("https://index.example/simple/{project}/")).unwrap();
        check_json_project(&body, &url);
    }
    for (project, body) in pages("html") {
        let url = Url::parse(&format!("https://index.example/simple/{project}/")).unwrap();
        check_html_project(&body, &url, &project);
    }
}

/// The densest pages [`HEAP_PER_BYTE`] was worked out from parse within it, at sizes where the
/// fixed part no longer hides a factor.
#[test]
fn densest_pages_stay_within_the_factor() {
    // Bodies of about 64 KiB: the fixed part is then under 4 bytes per input byte.
    let repeat = |entry: &str| entry.repeat((64 << 10) / entry.len());
    let array = |entry: &str| format!("[{}{entry}]", repeat(&format!("{entry},")));
    let json = [
        format!(r#"{{"name": "a", "files": {}}}"#, array("1")),
        format!(r#"{{"name": "a", "files": {}}}"#, array("{}")),
        format!(r#"{{"name": "a", "files": {}}}"#, array("[]")),
        format!(
            r#"{{"name": "a", "files": {}}}"#,
            array(r#"{"filename":"a","url":"a"}"#)
        ),
        format!(r#"{{"name": "a", "files": [], "versions": {}}}"#, array(r#""""#)),
        format!(r#"{{"projects": {}}}"#, array("{}")),
        format!(r#"{{"projects": {}}}"#, array(r#"{"name":"a"}"#)),
    ];
    let url = page_url();
    for body in &json {
        let (_, peak) = peak_heap(|| parse_project_json(body.as_bytes(), &url));
        let (_, list_peak) = peak_heap(|| parse_list_json(body.as_bytes()));
        let per_byte = peak.max(list_peak) / body.len();
        assert!(
            per_byte <= HEAP_PER_BYTE,
            "{per_byte} bytes per byte for {}",
            &body[..60]
        );
    }
    let html = [
        repeat("<a>"),
        repeat("<a href=a>a</a>"),
        repeat("<a href=a-1.tar.gz>"),
        repeat(r#"<meta name="pypi:tracks" content="">"#),
        // Distinct attribute names, few of them: the tokenizer checks each against those before
        // it, which takes time quadratic in their number.
        format!("<a {}>", (0..3000).map(|i| format!("a{i} ")).collect::<String>()),
        format!("<a href=\"{}\">", repeat("x")),
    ];
    for body in &html {
        let (_, peak) = peak_heap(|| parse_project_html(body.as_bytes(), &url, PROJECT));
        let (_, list_peak) = peak_heap(|| parse_list_html(body.as_bytes()));
        let per_byte = peak.max(list_peak) / body.len();
        assert!(
            per_byte <= HEAP_PER_BYTE,
            "{per_byte} bytes per byte for {}",
            &body[..60]
        );
    }
}
