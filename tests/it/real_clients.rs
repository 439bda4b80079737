//! Real package tools against the mirror. `tests/run.sh` provides the Python interpreter of a venv
//! in `PKGMIRROR_TEST_PYTHON`; run alone, the tests use `python3`, and are skipped when it has no
//! pip.

use std::process::Command;

use serde_json::json;

use crate::support::fixtures::sha;
use crate::support::tools::{Tool, require};
use crate::support::*;

#[tokio::test]
async fn pip_lists_versions_through_the_mirror() {
    let Some(python) = require(Tool::Pip) else { return };
    let fake = FakeIndex::start();
    fake.json(
        "demo-pkg/",
        &json!({
            "meta": {"api-version": "1.1"},
            "name": "demo-pkg",
            "versions": ["1.0", "2.0", "3.0"],
            "files": [
                {"filename": "demo_pkg-1.0.tar.gz", "url": "https://files.example/demo_pkg-1.0.tar.gz",
                 "hashes": {"sha256": sha('a')}, "size": 1},
                {"filename": "demo_pkg-2.0-py3-none-any.whl", "url": "https://files.example/demo_pkg-2.0-py3-none-any.whl",
                 "hashes": {"sha256": sha('b')}, "size": 1, "requires-python": ">=3"},
                {"filename": "demo_pkg-3.0-py3-none-any.whl", "url": "https://files.example/demo_pkg-3.0-py3-none-any.whl",
                 "hashes": {"sha256": sha('c')}, "size": 1, "yanked": "bad release"},
            ]
        }),
    );
    let dir = temp_dir();
    let server = Server::start(dir.path(), &Launch::with_upstreams(&[&fake.url()], "10m"));
    let index_url = server.url("/simple/");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([
                "-m",
                "pip",
                "index",
                "versions",
                "Demo_Pkg",
                "--index-url",
                &index_url,
            ])
            .args(["--disable-pip-version-check", "--no-cache-dir"])
            .env("PIP_CONFIG_FILE", "/dev/null")
            .output()
            .expect("run pip")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pip failed:\n{stdout}\n{stderr}\n{}",
        server.logs()
    );
    // The yanked 3.0 is not offered to a range; 2.0 is the latest.
    assert!(
        stdout.contains("demo-pkg (2.0)") || stdout.contains("Demo_Pkg (2.0)"),
        "{stdout}"
    );
    assert!(stdout.contains("Available versions: 2.0, 1.0"), "{stdout}");
    assert_eq!(fake.hits("demo-pkg/"), 1);
    // pip asked for the non-normalized name, followed the 301, and took the compressed JSON form.
    let logs = server.logs();
    assert!(
        logs.contains("/simple/demo-pkg/") && logs.contains("status=200"),
        "{logs}"
    );
}
