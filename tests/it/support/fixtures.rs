//! What fake upstreams serve: pages carrying every standards field, in both upstream formats, and
//! file bodies.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::fake_index::FakeIndex;

pub fn sha(c: char) -> String {
    c.to_string().repeat(64)
}

/// A JSON (PEP 691) project page with every field the checklist names.
pub fn json_project() -> Value {
    json!({
        "meta": {"api-version": "1.4", "_last-serial": 42, "tracks": ["https://other.example/simple/demo/"]},
        "name": "Demo",
        "project-status": {"status": "deprecated", "reason": "use demo2"},
        "alternate-locations": ["https://mirror.example/simple/demo/"],
        "versions": ["1.0", "2.0", "3.0"],
        "some-future-key": {"ignored": true},
        "files": [
            {
                "filename": "demo-1.0.tar.gz",
                "url": "https://files.example/packages/demo-1.0.tar.gz",
                "hashes": {"sha256": sha('a')},
                "requires-python": ">=3.8",
                "yanked": "broken <build>",
                "size": 1234,
                "upload-time": "2024-01-02T03:04:05.123456Z",
                "core-metadata": false,
                "gpg-sig": true
            },
            {
                "filename": "demo-2.0-py3-none-any.whl",
                "url": "../../packages/demo-2.0-py3-none-any.whl",
                "hashes": {"sha256": sha('b'), "md5": "c".repeat(32)},
                "requires-python": "<4,>=3.9",
                "yanked": true,
                "size": 2345,
                "upload-time": "2024-02-03T04:05:06Z",
                "data-dist-info-metadata": {"sha256": sha('d')},
                "provenance": "https://files.example/demo-2.0.provenance"
            },
            {
                "filename": "demo-2.0.tar.gz",
                "url": "https://files.example/packages/demo-2.0.tar.gz",
                "hashes": {"sha256": sha('e')},
                "yanked": false,
                "size": 10,
                "core-metadata": {"sha256": sha('f')},
                "provenance": null
            }
        ]
    })
}

/// A PEP 503 HTML project page with every field HTML can carry.
pub fn html_project() -> String {
    format!(
        r#"<!DOCTYPE html>
<html>
  <head>
    <meta name="pypi:repository-version" content="1.0">
    <meta name="pypi:project-status" content="archived">
    <meta name="pypi:project-status-reason" content="no longer maintained">
    <title>Links for Demo</title>
  </head>
  <body>
    <h1>Links for Demo</h1>
    <a href="https://files.example/packages/demo-1.0.tar.gz#sha256={a}" data-requires-python="&gt;=3.8" data-yanked="broken &amp; bad">demo-1.0.tar.gz</a><br/>
    <a href="../../packages/demo-2.0-py3-none-any.whl#sha256={b}" data-dist-info-metadata="sha256={d}" data-gpg-sig="false" data-yanked="">demo-2.0-py3-none-any.whl</a><br/>
    <a href="/packages/demo-2.0.tar.gz#sha256={c}" data-core-metadata="true" data-provenance="https://files.example/p.json">demo-2.0.tar.gz</a><br/>
  </body>
</html>
"#,
        a = sha('a'),
        b = sha('b'),
        c = sha('c'),
        d = sha('d'),
    )
}

/// A minimal JSON project page: `files` are (filename, sha256 char).
pub fn simple_json(name: &str, files: &[(&str, char)]) -> Value {
    let files: Vec<Value> = files
        .iter()
        .map(|(filename, c)| {
            json!({
                "filename": filename,
                "url": format!("https://files.example/{filename}"),
                "hashes": {"sha256": sha(*c)},
                "size": 100,
            })
        })
        .collect();
    json!({"meta": {"api-version": "1.1"}, "name": name, "files": files, "versions": []})
}

pub fn json_list(names: &[&str]) -> Value {
    let projects: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
    json!({"meta": {"api-version": "1.1"}, "projects": projects})
}

pub fn html_list(names: &[&str]) -> String {
    let links: String = names
        .iter()
        .map(|n| format!("<a href=\"/simple/{}/\">{n}</a>\n", n.to_lowercase()))
        .collect();
    format!("<!DOCTYPE html><html><body>\n{links}</body></html>")
}

/// Deterministic bytes that do not compress to nothing.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lists `files` (name, bytes, the fake that serves them) on `demo`'s page on `index`.
pub fn publish(index: &FakeIndex, files: &[(&str, &[u8], &FakeIndex)]) {
    let mut listed = Vec::new();
    for (name, body, host) in files {
        host.file(
            &format!("/files/{name}"),
            "application/octet-stream",
            body.to_vec(),
        );
        listed.push(json!({
            "filename": name,
            "url": format!("http://{}/files/{name}", host.addr),
            "hashes": {"sha256": sha256_hex(body)},
            "size": body.len(),
        }));
    }
    index.json(
        "demo/",
        &json!({
            "meta": {"api-version": "1.1"},
            "name": "demo",
            "versions": ["1.0"],
            "files": listed,
        }),
    );
}
