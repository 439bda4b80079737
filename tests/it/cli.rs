//! Runs the built binary: exit codes, stdout and stderr of `config show`.

use std::path::Path;
use std::process::{Command, Output};

/// The binary with none of our variables inherited from the test's
/// environment, run in `dir` so that no stray ./pkgmirror.toml is read.
fn pkgmirror(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pkgmirror"));
    cmd.current_dir(dir);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("PKGMIRROR") || name.starts_with("PROXPI_") || name == "RUST_LOG" {
            cmd.env_remove(&*name);
        }
    }
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    run_output(cmd.output().expect("run pkgmirror"))
}

fn run_output(output: Output) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = output;
    (status.code().expect("exit code"), text(&stdout), text(&stderr))
}

#[test]
fn config_show_sources_names_file_env_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mirror.toml");
    std::fs::write(
        &file,
        "[server]\nadmin_token = \"hunter2\"\n[pypi]\nindex_url = \"https://alice:s3cr3t@index.example/simple\"\nindex_ttl = \"1m\"\n",
    )
    .unwrap();
    let (code, out, err) = run(pkgmirror(dir.path())
        .args(["config", "show", "--sources", "--config"])
        .arg(&file)
        .env("PKGMIRROR__PYPI__INDEX_TTL", "10m")
        .env("PROXPI_READ_TIMEOUT", "12"));
    assert_eq!(code, 0, "stderr: {err}");
    let file_source = format!("# file {}", file.display());
    for want in [
        format!("server.admin_token = \"***\"  {file_source}"),
        format!("pypi.index_url = \"https://***@index.example/simple/\"  {file_source}"),
        "pypi.index_ttl = \"10m\"  # env PKGMIRROR__PYPI__INDEX_TTL".to_owned(),
        "pypi.read_timeout = \"12s\"  # env PROXPI_READ_TIMEOUT".to_owned(),
        "server.listen = \"127.0.0.1:5000\"  # default".to_owned(),
    ] {
        assert!(out.lines().any(|l| l == want), "missing {want:?} in\n{out}");
    }
    for secret in ["hunter2", "alice", "s3cr3t"] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
}

#[test]
fn config_show_prints_toml_and_reads_pkgmirror_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.toml");
    std::fs::write(&file, "[storage]\nmax_size = \"1GiB\"\n").unwrap();
    let (code, out, err) = run(pkgmirror(dir.path())
        .args(["config", "show"])
        .env("PKGMIRROR_CONFIG", &file));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("[storage]\n"), "{out}");
    assert!(out.contains("max_size = \"1GiB\"\n"), "{out}");
}

#[test]
fn bad_config_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pkgmirror.toml"), "[pypi]\nindex_tll = \"1m\"\n").unwrap();
    let (code, out, err) = run(pkgmirror(dir.path()).args(["config", "show"]));
    assert_eq!(code, 2);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "pkgmirror: bad config: unknown key \"pypi.index_tll\" in file ./pkgmirror.toml\n"
    );

    let (code, _, err) = run(pkgmirror(dir.path()).args(["serve", "--config", "missing.toml"]));
    assert_eq!(code, 2);
    assert!(
        err.starts_with("pkgmirror: bad config: config file missing.toml: "),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = run(pkgmirror(empty.path()).args(["serve", "--listen", "x"]));
    assert_eq!(code, 2);
    assert!(
        err.starts_with("pkgmirror: bad config: server.listen: invalid socket address \"x\""),
        "{err}"
    );

    let (code, _, err) = run(pkgmirror(empty.path())
        .arg("serve")
        .env("RUST_LOG", "pkgmirror=loud"));
    assert_eq!(code, 2);
    assert!(err.starts_with("pkgmirror: bad config: log.level: "), "{err}");
    assert!(err.ends_with(", from env RUST_LOG\n"), "{err}");
}

/// Behind a reverse proxy every client can look like loopback, which admits anyone while no admin
/// token is set: with a public URL (a sign of a proxy) the server refuses to start so, unless told.
#[test]
fn a_public_url_without_an_admin_token_needs_consent() {
    let empty = tempfile::tempdir().unwrap();
    let mut child = pkgmirror(empty.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"])
        .env("PKGMIRROR__SERVER__PUBLIC_URL", "https://mirror.example/")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pkgmirror");
    // A server that starts would run forever: give it a bounded while to refuse.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the server started");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, _, err) = run_output(child.wait_with_output().unwrap());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("pkgmirror: bad config: server.admin_token: "),
        "{err}"
    );
    for needed in [
        "server.public_url",
        "server.trusted_proxies",
        "server.allow_open_admin = true",
    ] {
        assert!(err.contains(needed), "{needed}: {err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn usage_errors_exit_2_and_version_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, _) = run(pkgmirror(dir.path()).args(["serve", "--no-such-flag"]));
    assert_eq!(code, 2);
    let (code, _, _) = run(pkgmirror(dir.path()).args(["serve", "--log-format", "xml"]));
    assert_eq!(code, 2);
    let (code, _, _) = run(&mut pkgmirror(dir.path()));
    assert_eq!(code, 2);
    let (code, out, _) = run(pkgmirror(dir.path()).arg("--version"));
    assert_eq!(code, 0);
    assert!(out.starts_with("pkgmirror "), "{out}");
}

#[test]
fn tokens_are_created_shown_once_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let token = |args: &[&str]| {
        let mut cmd = pkgmirror(dir.path());
        cmd.arg("token").args(args).args(["--data-dir", data]);
        run(&mut cmd)
    };
    let (code, created, err) = token(&[
        "create",
        "--name",
        "ci",
        "--scope",
        "upload:internal",
        "--expires",
        "90d",
    ]);
    assert_eq!(code, 0, "{err}");
    let created = created.trim();
    assert!(created.starts_with("pkgm_") && created.len() > 70, "{created}");

    let (code, _, err) = token(&["create", "--name", "ci", "--scope", "read"]);
    assert_eq!(
        (code, err.trim()),
        (2, "pkgmirror: an active token is already named \"ci\"")
    );
    let (code, _, err) = token(&["create", "--name", "x", "--scope", "write"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid scope \"write\""), "{err}");

    let (code, listed, _) = token(&["list", "--json"]);
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["state"], "active");
    assert_eq!(listed[0]["scopes"], serde_json::json!(["upload:internal"]));
    assert!(listed[0]["expires"].as_str().unwrap().starts_with("20"));
    // The secret is shown once: not in the list, not in any file under the data dir.
    let secret = created.rsplit('_').next().unwrap();
    assert!(!listed.to_string().contains(secret));
    for entry in walk(Path::new(data)) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds the secret",
            entry.display()
        );
    }

    assert_eq!(token(&["revoke", "ci"]).0, 0);
    let (code, _, err) = token(&["revoke", "ci"]);
    assert_eq!(code, 2, "{err}");
    let (_, table, _) = token(&["list"]);
    assert!(table.lines().nth(1).unwrap().contains("revoked"), "{table}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
