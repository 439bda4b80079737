//! `pkgmirror warm` fills a node from lock files the real tools wrote, so that with every
//! upstream gone the same tools install from it.
//!
//! The lock files are made against node A (uv, pylock.toml by `uv export`, poetry, pdm,
//! `uv pip compile --generate-hashes`) and by rebar3 against the hex upstream. A then stops and
//! a fresh node B takes its address, as a replaced mirror keeps its URL (uv.lock and pylock.toml
//! name file URLs, poetry hashes its sources). Only `warm` asks B for anything before the
//! upstreams stop; then uv (from uv.lock and from pylock.toml), pip, poetry, pdm and rebar3
//! install from B.

use std::path::Path;

use crate::support::hex_fixtures::{self, standard};
use crate::support::packages;
use crate::support::rebar3::Rebar3User;
use crate::support::sandbox::{Sandbox, write_project};
use crate::support::tools::{self, Tool, python, require_all};
use crate::support::web::{Browser, admin_log, csrf_of, text_of, texts_after};
use crate::support::*;

/// The files an install of the tree needs (the locks name these and `app`'s sdist).
const NEEDED: [&str; 3] = [
    "app-3.1-py3-none-any.whl",
    "lib_a-1.0-py3-none-any.whl",
    "lib_b-0.5.2.tar.gz",
];

/// A launch of a node at `listen` mirroring both fakes.
fn node(fake: &FakeIndex, hex: &FakeIndex, listen: &str) -> Launch {
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    launch
        .hex(hex.root_url().trim_end_matches('/'), "10m")
        .arg("--listen")
        .arg(listen)
        .env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true");
    launch
}

/// An address nothing listens on yet, that two servers take one after the other. Its port is
/// below Linux's ephemeral range (32768 up), so no outgoing connection of a test running
/// meanwhile is given it as its own port between the two.
fn free_address() -> String {
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    (0..2_000)
        .map(|i| format!("127.0.0.1:{}", 20_000 + (start - 20_000 + i * 7) % 12_000))
        .find(|addr| std::net::TcpListener::bind(addr.as_str()).is_ok())
        .expect("a free port below the ephemeral range")
}

/// `pkgmirror warm --server {server} {files}` in `dir`: its exit code and output.
fn warm(dir: &Path, server: &str, files: &[&str]) -> (i32, String) {
    let args: Vec<&str> = ["warm", "--server", server]
        .into_iter()
        .chain(files.iter().copied())
        .collect();
    let (code, stdout, stderr) = run_pkgmirror(dir, &args, &[]);
    (code, format!("{stdout}{stderr}"))
}

/// Copies the files a project is installed from (its pyproject and lock) into `to`.
fn copy_project(from: &Path, to: &Path, lock: &str) {
    std::fs::create_dir_all(to).unwrap();
    for file in ["pyproject.toml", lock] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

#[tokio::test]
async fn warmed_lock_files_install_with_every_upstream_gone() {
    if !require_all(&[Tool::Uv, Tool::Pip, Tool::Poetry, Tool::Pdm, Tool::Rebar3]) {
        return;
    }
    let dists = packages::tree();
    let fake = FakeIndex::start();
    packages::serve(&fake, &dists);
    let hex = FakeIndex::start();
    let repo = standard();
    hex_fixtures::serve(&hex, &repo);
    let listen = free_address();
    let index = format!("http://{listen}/simple/");

    // Lock files, made by the tools against node A.
    let data_a = temp_dir();
    let a = Server::start(data_a.path(), &node(&fake, &hex, &listen));
    let mut locker = Sandbox::new();
    let locks = locker.path("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let uv_project = locker.path("uv");
    write_project(&uv_project, &["app"], "");
    let mut uv = locker.command(tools::path(Tool::Uv));
    uv.args(["lock", "--default-index", &index, "--python"])
        .arg(python())
        .current_dir(&uv_project);
    locker.must(uv, &a).await;
    // PEP 751: uv writes the same resolution as pylock.toml.
    let mut export = locker.command(tools::path(Tool::Uv));
    export
        .args(["export", "--frozen", "--format", "pylock.toml", "-o"])
        .arg(locks.join("pylock.toml"))
        .current_dir(&uv_project);
    locker.must(export, &a).await;
    let poetry_project = locker.path("poetry");
    write_project(
        &poetry_project,
        &["app"],
        &format!(
            "[tool.poetry]\npackage-mode = false\n\n[[tool.poetry.source]]\n\
             name = \"mirror\"\nurl = \"{index}\"\npriority = \"primary\"\n"
        ),
    );
    let mut poetry = locker.command(tools::path(Tool::Poetry));
    poetry
        .args(["lock", "--no-interaction"])
        .current_dir(&poetry_project);
    locker.must(poetry, &a).await;
    let pdm_project = locker.path("pdm");
    write_project(
        &pdm_project,
        &["app"],
        &format!(
            "[tool.pdm]\ndistribution = false\n\n[[tool.pdm.source]]\nname = \"pypi\"\nurl = \"{index}\"\n"
        ),
    );
    let mut pdm = locker.command(tools::path(Tool::Pdm));
    pdm.args(["lock", "-v"])
        .env("PDM_PYTHON", python())
        .env("PDM_PYPI_URL", &index)
        .current_dir(&pdm_project);
    locker.must(pdm, &a).await;
    std::fs::write(locks.join("requirements.in"), "app\n").unwrap();
    let mut compile = locker.command(tools::path(Tool::Uv));
    compile
        .args([
            "pip",
            "compile",
            "requirements.in",
            "--generate-hashes",
            "--default-index",
            &index,
        ])
        .args(["-o", "requirements.txt", "--python"])
        .arg(python())
        .current_dir(&locks);
    locker.must(compile, &a).await;
    let mut rebar_user = Rebar3User::new();
    let (locked, rebar_project) = rebar_user.compile(hex.root_url().trim_end_matches('/')).await;
    assert!(locked.ok(), "rebar3 compile\n{}", rebar_user.transcript());
    a.kill();
    for (from, lock) in [
        (&uv_project, "uv.lock"),
        (&poetry_project, "poetry.lock"),
        (&pdm_project, "pdm.lock"),
        (&rebar_project, "rebar.lock"),
    ] {
        std::fs::copy(from.join(lock), locks.join(lock)).unwrap();
    }

    // Node B, fresh, at A's address: warm asks it for everything the locks name.
    let data_b = temp_dir();
    let b = Server::start(data_b.path(), &node(&fake, &hex, &listen));
    let file_hits = |file: &str| fake.hits_of(&format!("/files/{file}"));
    let before: Vec<usize> = NEEDED.iter().map(|f| file_hits(f)).collect();
    let lock_files = [
        "uv.lock",
        "pylock.toml",
        "poetry.lock",
        "pdm.lock",
        "requirements.txt",
        "rebar.lock",
    ];
    let (code, out) = warm(&locks, &b.url("/"), &lock_files);
    assert_eq!(code, 0, "warm failed:\n{out}\n=== pkgmirror log\n{}", b.logs());
    assert!(out.contains(", 0 failed"), "{out}");
    // Five lock files name each file; the upstream saw one request for it, from B.
    for (file, before) in NEEDED.iter().zip(before) {
        assert_eq!(file_hits(file) - before, 1, "{file}:\n{out}");
    }
    for tarball in ["/tarballs/fixbar-0.1.0.tar", "/tarballs/fixfoo-1.1.0.tar"] {
        assert_eq!(
            hex.hits_of(tarball),
            2,
            "{tarball}: once by rebar3 for the lock, once by B"
        );
    }

    // A lock file whose hash is not the index's fails warm, naming the file.
    let text = std::fs::read_to_string(locks.join("requirements.txt")).unwrap();
    let app_wheel = dists.iter().find(|d| d.filename == NEEDED[0]).unwrap();
    assert!(text.contains(&app_wheel.sha256), "{text}");
    let last = if app_wheel.sha256.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &app_wheel.sha256[..63]);
    std::fs::write(
        locks.join("requirements-bad.txt"),
        text.replace(&app_wheel.sha256, &wrong),
    )
    .unwrap();
    let (code, out) = warm(&locks, &b.url("/"), &["requirements-bad.txt"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: requirements-bad.txt: app") && out.contains(&format!("sha256:{wrong}")),
        "the failure names the lock file and the hash:\n{out}"
    );

    // Every upstream gone: each tool installs what its lock names from B alone.
    fake.stop();
    hex.stop();
    let mut user = Sandbox::new();

    let project = user.path("uv");
    copy_project(&uv_project, &project, "uv.lock");
    let mut uv = user.command(tools::path(Tool::Uv));
    uv.args(["sync", "--frozen", "--default-index", &index, "--python"])
        .arg(python())
        .current_dir(&project);
    user.must(uv, &b).await;
    user.check_installed(&project.join(".venv/bin/python"), None, &b)
        .await;

    let venv = user.path("pylock-venv");
    let mut create = user.command(tools::path(Tool::Uv));
    create.arg("venv").arg(&venv).arg("--python").arg(python());
    user.must(create, &b).await;
    let mut uv = user.command(tools::path(Tool::Uv));
    uv.args(["pip", "install", "--python"])
        .arg(venv.join("bin/python"))
        .arg("-r")
        .arg(locks.join("pylock.toml"));
    user.must(uv, &b).await;
    user.check_installed(&venv.join("bin/python"), None, &b).await;

    let target = user.path("pip-target");
    let mut pip = user.command(tools::path(Tool::Pip));
    pip.args(["-m", "pip", "install", "--require-hashes", "-r"])
        .arg(locks.join("requirements.txt"))
        .args(["--index-url", &index, "--progress-bar", "off", "--target"])
        .arg(&target)
        .arg("--cache-dir")
        .arg(user.path("cache/pip"));
    user.must(pip, &b).await;
    user.check_installed(&python(), Some(&target), &b).await;

    let project = user.path("poetry");
    copy_project(&poetry_project, &project, "poetry.lock");
    let mut poetry = user.command(tools::path(Tool::Poetry));
    poetry
        .args(["install", "--no-root", "--no-interaction", "-v"])
        .current_dir(&project);
    user.must(poetry, &b).await;
    user.check_installed(&project.join(".venv/bin/python"), None, &b)
        .await;

    let project = user.path("pdm");
    copy_project(&pdm_project, &project, "pdm.lock");
    let mut venv = user.command(python());
    venv.args(["-m", "venv", "--without-pip"])
        .arg(project.join(".venv"));
    user.must(venv, &b).await;
    let mut pdm = user.command(tools::path(Tool::Pdm));
    pdm.args(["install", "-v", "--frozen-lockfile"])
        .env("PDM_PYTHON", project.join(".venv/bin/python"))
        .env("PDM_PYPI_URL", &index)
        .current_dir(&project);
    user.must(pdm, &b).await;
    user.check_installed(&project.join(".venv/bin/python"), None, &b)
        .await;

    let mut rebar_user = Rebar3User::new();
    let project = rebar_user.dir.path().join("project");
    std::fs::create_dir_all(project.join("src")).unwrap();
    for file in [
        "rebar.config",
        "rebar.lock",
        "src/fixapp.app.src",
        "src/fixapp.erl",
    ] {
        std::fs::copy(rebar_project.join(file), project.join(file)).unwrap();
    }
    let run = rebar_user.rebar3("get-deps", &project, &b.url("/hex")).await;
    assert!(
        run.ok(),
        "rebar3 get-deps from B\n{}\n{}",
        rebar_user.transcript(),
        b.logs()
    );
    for app in ["fixbar", "fixfoo"] {
        let unpacked = project.join(format!("_build/default/lib/{app}"));
        let files = std::fs::read_dir(&unpacked).map(|d| d.count()).unwrap_or(0);
        assert!(
            files > 0,
            "{app} fetched into {}\n{}",
            unpacked.display(),
            rebar_user.transcript()
        );
    }
}

/// A pinned, hashed requirements file for the tree, as `pip-compile --generate-hashes` writes.
fn hashed_requirements(dists: &[packages::Dist]) -> String {
    let mut lines = Vec::new();
    for (project, version) in [("app", "3.1"), ("lib-a", "1.0"), ("lib-b", "0.5.2")] {
        let hashes: Vec<String> = dists
            .iter()
            .filter(|d| d.project == project && d.version == version)
            .map(|d| format!(" \\\n    --hash=sha256:{}", d.sha256))
            .collect();
        lines.push(format!("{project}=={version}{}", hashes.concat()));
    }
    lines.join("\n") + "\n"
}

/// Uploads `name` to `/admin/warm` and waits (at most 30 s) for the run to end; returns the
/// admin page then.
async fn warm_from_admin(b: &mut Browser, name: &str, text: &str) -> String {
    let csrf = csrf_of(&b.get("/admin").await.body);
    let started = b
        .post_file(
            "/admin/warm",
            &[("csrf", &csrf)],
            ("lockfile", name, text.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(started.status, 303, "{}", started.body);
    for _ in 0..300 {
        let page = b.get("/admin").await;
        assert!(
            page.body.contains(&format!("<strong>{name}</strong>")),
            "{}",
            page.body
        );
        if text_of(&page.body, "<strong id=\"warm-state\"") == "done" {
            return page.body;
        }
        assert!(
            page.body.contains("data-refresh=\"2000\""),
            "a running run reloads the page:\n{}",
            page.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the warm run of {name} did not end in 30 s");
}

#[tokio::test]
async fn an_uploaded_lock_file_warms_the_cache_from_the_admin_page() {
    let dists = packages::tree();
    let fake = FakeIndex::start();
    packages::serve(&fake, &dists);
    let mut launch = Launch::with_upstreams(&[&fake.url()], "10m");
    // Reads need a token: the run reads with one of its own, revoked when it ends.
    launch
        .env("PKGMIRROR__PYPI__ALLOW_PRIVATE_UPSTREAMS", "true")
        .env("PKGMIRROR__SERVER__ANONYMOUS_READ", "false");
    let data = temp_dir();
    let server = Server::start(data.path(), &launch);
    let mut b = Browser::new(&server);

    let page = warm_from_admin(&mut b, "requirements.txt", &hashed_requirements(&dists)).await;
    assert!(page.contains("0 failed"), "{page}");
    assert!(
        page.contains("<td>6 of 6</td>"),
        "6 files: app's wheel and sdist, lib-a's wheel, lib-b's sdist, the wheels' metadata:\n{page}"
    );
    for file in NEEDED {
        assert_eq!(fake.hits_of(&format!("/files/{file}")), 1, "{file}");
    }
    let log = admin_log(&page);
    assert!(
        log.iter()
            .any(|(action, target, outcome)| action == "warm-finished"
                && target == "requirements.txt"
                && outcome.starts_with("ok: warmed 3 pages and 6 files")),
        "{log:?}"
    );
    let token_rows = texts_after(&page, "<tr><td class=\"mono\">warm-");
    assert_eq!(token_rows.len(), 1, "one token made for the run:\n{page}");
    assert!(
        page.contains("</td><td>revoked</td><td class=\"mono\">read</td>"),
        "the run's read token is revoked once it ends:\n{page}"
    );

    // A wrong hash: the run fails and the page names the file and the hash.
    let app_wheel = dists.iter().find(|d| d.filename == NEEDED[0]).unwrap();
    let last = if app_wheel.sha256.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &app_wheel.sha256[..63]);
    let bad = hashed_requirements(&dists).replace(&app_wheel.sha256, &wrong);
    let page = warm_from_admin(&mut b, "requirements-bad.txt", &bad).await;
    assert!(
        page.contains("requirements-bad.txt: app==3.1: hash mismatch") && page.contains(&wrong),
        "{page}"
    );
    let log = admin_log(&page);
    assert!(
        log.iter()
            .any(|(action, _, outcome)| action == "warm-finished" && outcome.starts_with("failed:")),
        "{log:?}"
    );
}

#[tokio::test]
async fn warm_says_what_it_cannot_read_or_reach() {
    let dir = temp_dir();
    let (code, out) = warm(dir.path(), "http://127.0.0.1:9/", &[]);
    assert_eq!(code, 2, "no file named: {out}");
    std::fs::write(dir.path().join("deps.json"), "{}").unwrap();
    let (code, out) = warm(dir.path(), "http://127.0.0.1:9/", &["deps.json"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("deps.json: cannot tell the format"), "{out}");
    std::fs::write(
        dir.path().join("uv.lock"),
        "version = 1\n[[package]\nname = \"x\"\n",
    )
    .unwrap();
    let (code, out) = warm(dir.path(), "http://127.0.0.1:9/", &["uv.lock"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("uv.lock, line 2"), "{out}");
    // Nothing listens on the server's address: each project fails, naming the lock file.
    std::fs::write(dir.path().join("requirements.txt"), "six==1.16.0\n").unwrap();
    let (code, out) = warm(dir.path(), "http://127.0.0.1:9/", &["requirements.txt"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: requirements.txt: six: "), "{out}");
}
