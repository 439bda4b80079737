//! The web UI in a real browser: Debian's Chromium, driven by playwright-core through
//! `tests/browser/ui_flow.mjs`, against the real server with a fake upstream. `tests/run.sh`
//! installs both and sets `PKGMIRROR_TEST_NODE_MODULES`; without them this test is skipped (see
//! `support::tools::require`). Screenshots go to `$PKGMIRROR_TEST_ARTIFACTS` or
//! `test-artifacts/browser`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::support::fixtures::{json_list, payload, publish, simple_json};
use crate::support::hex_fixtures;
use crate::support::tools::{Tool, require};
use crate::support::*;

const TOKEN: &str = "browser-admin-token";
const SCREENSHOTS: [&str; 8] = [
    "01-home.png",
    "01-home-phone.png",
    "02-search.png",
    "03-project.png",
    "04-signin.png",
    "05-admin.png",
    "06-admin-log.png",
    "07-hosted-hex.png",
];

fn artifacts_dir(repo: &Path) -> PathBuf {
    std::env::var_os("PKGMIRROR_TEST_ARTIFACTS")
        .filter(|v| !v.is_empty())
        .map_or_else(|| repo.join("test-artifacts/browser"), PathBuf::from)
}

/// Runs `node script` with `env`, killed after `limit`; returns (exit code, stdout + stderr).
async fn run_node(
    node: &Path,
    script: &Path,
    env: &[(&str, &OsStr)],
    limit: Duration,
) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(node);
    cmd.arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): run `bash tests/run.sh`"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text).await;
        text
    });
    let err = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let code = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.expect("wait for node").code(),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let mut output = String::new();
    for (name, task) in [("stdout", out), ("stderr", err)] {
        let text = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        output.push_str(&format!("--- {name} ---\n{text}"));
    }
    (code, output)
}

#[tokio::test]
async fn the_web_ui_works_in_a_real_browser() {
    let Some(node_modules) = require(Tool::Playwright) else {
        return;
    };
    let Some(chromium) = require(Tool::Chromium) else {
        return;
    };
    let Some(node) = require(Tool::Node) else { return };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let artifacts = artifacts_dir(repo);
    std::fs::create_dir_all(&artifacts).unwrap();
    for name in SCREENSHOTS.iter().chain(&["failure.png"]) {
        let _ = std::fs::remove_file(artifacts.join(name));
    }

    // `demo` with two files (one of them cached below), and a second project the search for
    // "dem" must not turn up as `demo`.
    let index = FakeIndex::start();
    let sdist = payload(64 * 1024, 7);
    let zip = payload(16 * 1024, 8);
    publish(
        &index,
        &[
            ("demo-1.0.tar.gz", &sdist, &index),
            ("demo-1.0.zip", &zip, &index),
        ],
    );
    index.json(
        "other-tool/",
        &simple_json("other-tool", &[("other_tool-2.0.tar.gz", 'b')]),
    );
    index.json("", &json_list(&["demo", "other-tool"]));

    let dir = temp_dir();
    // A hosted hex repository (the team's alone), with one release published to it.
    let hex_config = dir.path().join("team.toml");
    std::fs::write(
        &hex_config,
        format!(
            "[[hex.hosted]]\nname = \"team\"\nsigning_key = \"{}\"\nfallback = false\n",
            repo.join("tests/fixtures/hex/other_key.pem").display()
        ),
    )
    .unwrap();
    let publisher = token_command(
        dir.path(),
        &["create", "--name", "ci", "--scope", "upload:hex:team"],
        &[],
    );
    let mut launch = Launch::with_upstreams(&[&index.url()], "10m");
    launch.env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    launch.env("PKGMIRROR__SERVER__ADMIN_TOKEN", TOKEN);
    launch.arg("--config").arg(hex_config.to_str().unwrap());
    let server = Server::start(dir.path(), &launch);
    let (hex_package, hex_version) = ("fixbar", "0.1.0");
    let published = client()
        .post(server.url("/hex/api/publish"))
        .header("authorization", &publisher)
        .body(
            hex_fixtures::standard()
                .tarball(hex_package, hex_version)
                .bytes
                .clone(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201, "{}", server.logs());

    get_json(&server.url("/simple/")).await;
    get_json(&server.url("/simple/demo/")).await;
    get_json(&server.url("/simple/other-tool/")).await;
    let response = client()
        .get(server.url("/simple/demo/demo-1.0.tar.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), sdist);
    assert_eq!(index.hits("demo/"), 1);

    let (code, output) = run_node(
        &node,
        &repo.join("tests/browser/ui_flow.mjs"),
        &[
            ("BASE_URL", server.base.as_ref()),
            ("ADMIN_TOKEN", TOKEN.as_ref()),
            ("PROJECT", "demo".as_ref()),
            ("SEARCH", "dem".as_ref()),
            ("HEX_PACKAGE", hex_package.as_ref()),
            ("HEX_VERSION", hex_version.as_ref()),
            ("ARTIFACTS", artifacts.as_os_str()),
            ("PKGMIRROR_TEST_NODE_MODULES", node_modules.as_os_str()),
            ("CHROMIUM", chromium.as_os_str()),
        ],
        Duration::from_secs(120),
    )
    .await;
    println!("{output}");
    assert_eq!(
        code,
        Some(0),
        "the browser flow failed (exit {code:?}; screenshots in {}):\n{output}\n--- server log ---\n{}",
        artifacts.display(),
        server.logs()
    );
    for name in SCREENSHOTS {
        let path = artifacts.join(name);
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        assert!(size > 0, "no screenshot {} (or empty)\n{output}", path.display());
    }

    // The admin page's "forget project" really dropped the cached page: the next request goes
    // upstream once, and the one after is served from the cache again.
    let before = index.hits("demo/");
    get_json(&server.url("/simple/demo/")).await;
    assert_eq!(
        index.hits("demo/"),
        before + 1,
        "after forget-project, /simple/demo/ was not fetched from upstream again"
    );
    get_json(&server.url("/simple/demo/")).await;
    assert_eq!(index.hits("demo/"), before + 1);
}
