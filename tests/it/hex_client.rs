//! rebar3 resolves, fetches and compiles the fixture hex repository (`hex_fixtures::standard`):
//! first straight from a fake upstream (proving the fixtures are a repository the real client
//! accepts, and that its faults are faults to it), then through the mirror, again from the
//! mirror's cache with the upstream gone, and failing on a tampered tarball and on registry files
//! the mirror cannot verify.
//!
//! rebar3 comes from `tests/run.sh`, which unpacks Debian's escript and names it in
//! `PKGMIRROR_TEST_REBAR3`; without that variable `rebar3` on `PATH` is used, and without either
//! the tests are skipped (see `support::tools::require`).
//!
//! rebar3 runs with an emptied environment: `HOME`, `TMPDIR` and `REBAR_CACHE_DIR` in a temp dir,
//! the repository at `HEX_CDN`, the test key pinned in the project's `rebar.config`, no proxy.
//!
//! What rebar3 3.19 does on the wire, seen with the fake: `GET /packages/{name}` (never
//! `/names`, `/versions` or `/public_key`, and never with `If-None-Match`), then
//! `GET /tarballs/{name}-{version}.tar` with an *empty* `If-None-Match` header when it has no copy.
//! A second project on the same `REBAR_CACHE_DIR` asks for no registry file at all (its package
//! index is cached) and sends `If-None-Match` with the stored ETag for each tarball; on a 304 it
//! logs "Version cached at ... is up to date, reusing it". On any error it logs "Download error,
//! using cached file" and carries on with its own copy, so a second run's success alone proves
//! nothing about the mirror: the tests check the mirror's access log and rebar3's own report.
//! `rebar3 update` asks for `/packages/{name}` of every package it knows and exits 0 even when
//! all of them fail. A `HEX_CDN` ending in `/` makes it ask for `//packages/...`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::hex_fixtures::{HexRepo, HexRepoBuilder, SignWith, release, serve, standard};
use crate::support::rebar3::{Rebar3User, assert_locked};
use crate::support::tools::{Run, Tool, require};
use crate::support::*;

/// The packages `{deps, [{fixbar, "0.1.0"}]}` resolves to.
const RESOLVED: [(&str, &str); 2] = [("fixbar", "0.1.0"), ("fixfoo", "1.1.0")];

/// The repository files a first `rebar3 compile` of the project needs.
const FETCHED: [&str; 4] = [
    "/packages/fixbar",
    "/packages/fixfoo",
    "/tarballs/fixbar-0.1.0.tar",
    "/tarballs/fixfoo-1.1.0.tar",
];

const TAMPERED: &str = "/tarballs/fixfoo-1.1.0.tar";

/// The compiled applications (the resolved dependencies and the project's own) that are missing.
fn missing_beams(project: &Path) -> Vec<PathBuf> {
    let lib = project.join("_build/default/lib");
    RESOLVED
        .iter()
        .map(|(app, _)| *app)
        .chain(["fixapp"])
        .flat_map(|app| {
            [
                lib.join(format!("{app}/ebin/{app}.beam")),
                lib.join(format!("{app}/ebin/{app}.app")),
            ]
        })
        .filter(|path| !path.is_file())
        .collect()
}

/// Asserts that `run` succeeded, built every application and locked the expected versions.
fn assert_compiled(user: &Rebar3User, run: &Run, project: &Path, context: &dyn Fn() -> String) {
    assert!(run.ok(), "rebar3 failed\n{}\n{}", user.transcript(), context());
    let missing = missing_beams(project);
    assert!(
        missing.is_empty(),
        "rebar3 succeeded but did not build {missing:?}\n{}\n{}",
        user.transcript(),
        context()
    );
    assert_locked(user, project, &RESOLVED);
}

/// Asserts that `run` failed and built neither dependency.
fn assert_refused(user: &Rebar3User, run: &Run, project: &Path, fault: &str, context: &dyn Fn() -> String) {
    let lib = project.join("_build/default/lib");
    let built: Vec<PathBuf> = ["fixbar", "fixfoo"]
        .iter()
        .map(|app| lib.join(format!("{app}/ebin/{app}.beam")))
        .filter(|path| path.is_file())
        .collect();
    assert!(
        !run.ok() && run.status.is_some() && built.is_empty(),
        "rebar3 should have failed on {fault} (built: {built:?})\n{}\n{}",
        user.transcript(),
        context()
    );
}

/// `HEX_CDN` for rebar3 straight at `fake`: its root URL without the trailing slash, which rebar3
/// would keep (asking for `//packages/...`, which the fake does not serve).
fn straight(fake: &FakeIndex) -> String {
    fake.root_url().trim_end_matches('/').to_owned()
}

/// The standard repository with one bit flipped in the last data byte of `TAMPERED`.
fn tampered() -> HexRepo {
    let mut repo = standard();
    let tarball = repo.files.get_mut(TAMPERED).unwrap();
    let last_data = tarball.len() - 1024 - 1;
    tarball[last_data] ^= 1;
    repo
}

/// The standard repository's packages, with registry files signed by another key or naming
/// another repository.
fn unverifiable() -> [(&'static str, HexRepo); 2] {
    let packages = || {
        HexRepoBuilder::new()
            .package("fixfoo", vec![release("1.1.0", &[])])
            .package("fixbar", vec![release("0.1.0", &[("fixfoo", "~> 1.0")])])
    };
    [
        (
            "registry files signed by another key",
            packages().sign_with(SignWith::OtherKey).build(),
        ),
        (
            "registry files of the repository 'evil'",
            packages().repository("evil").build(),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The mirror

/// A mirror whose hex upstream is `fake` (its root URL), with registry TTL `ttl` and JSON logs.
fn mirror(dir: &Path, fake: &FakeIndex, ttl: &str) -> Server {
    let mut launch = Launch::with_hex(&fake.root_url(), ttl);
    launch.arg("--log-format").arg("json");
    Server::start(dir, &launch)
}

/// Every request in the mirror's access log, in order: (path, status).
async fn access_log(server: &Server) -> Vec<(String, u64)> {
    // The access line is written after the response: give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|entry| {
            let fields = &entry["fields"];
            Some((fields["path"].as_str()?.to_owned(), fields["status"].as_u64()?))
        })
        .collect()
}

/// The statuses the mirror answered for `path`, in order.
fn statuses(log: &[(String, u64)], path: &str) -> Vec<u64> {
    log.iter().filter(|(p, _)| p == path).map(|(_, s)| *s).collect()
}

/// Asserts that the fake was asked only by the mirror, never by rebar3 itself.
fn assert_only_the_mirror_asked(fake: &FakeIndex) {
    for (path, headers) in fake.requests() {
        let agent = headers.get("user-agent").map_or("", String::as_str);
        assert!(
            !agent.contains("rebar3") && !agent.contains("hex_core"),
            "rebar3 went to the upstream itself for {path} ({agent})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Straight from the fake upstream: the fixtures are a repository rebar3 accepts

#[tokio::test]
async fn rebar3_compiles_the_hex_fixtures_straight_from_a_fake_upstream() {
    let Some(_) = require(Tool::Rebar3) else { return };
    let fake = FakeIndex::start();
    let repo = standard();
    serve(&fake, &repo);
    let mut user = Rebar3User::new();
    let requests = || format!("requests: {:#?}", fake.requests());

    let (first, project) = user.compile(&straight(&fake)).await;
    assert_compiled(&user, &first, &project, &requests);
    let paths: Vec<String> = fake.requests().into_iter().map(|(path, _)| path).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(sorted, FETCHED, "{}", requests());

    // A second project, same cache: no registry file, each tarball revalidated with its ETag.
    let before = paths.len();
    let (second, project) = user.compile(&straight(&fake)).await;
    assert_compiled(&user, &second, &project, &requests);
    let again = fake.requests().split_off(before);
    let mut revalidated: Vec<(String, Option<String>)> = again
        .into_iter()
        .map(|(path, headers)| (path, headers.get("if-none-match").cloned()))
        .collect();
    revalidated.sort();
    let expected: Vec<(String, Option<String>)> = ["/tarballs/fixbar-0.1.0.tar", TAMPERED]
        .iter()
        .map(|path| ((*path).to_owned(), Some(etag_of(repo.file(path)))))
        .collect();
    assert_eq!(revalidated, expected, "{}", requests());
    for path in ["fixbar-0.1.0.tar", "fixfoo-1.1.0.tar"] {
        assert!(
            second
                .stdout
                .contains(&format!("{path} is up to date, reusing it")),
            "rebar3 did not take the 304 for {path}\n{}",
            user.transcript()
        );
    }
}

#[tokio::test]
async fn rebar3_refuses_faulty_hex_fixtures_straight_from_a_fake_upstream() {
    let Some(_) = require(Tool::Rebar3) else { return };
    let [by_other_key, of_evil] = unverifiable();
    for (fault, repo) in [("a tampered tarball", tampered()), by_other_key, of_evil] {
        let fake = FakeIndex::start();
        serve(&fake, &repo);
        let mut user = Rebar3User::new();
        let (run, project) = user.compile(&straight(&fake)).await;
        assert_refused(&user, &run, &project, fault, &|| String::new());
    }
}

// ---------------------------------------------------------------------------------------------
// Through the mirror

#[tokio::test]
async fn rebar3_compiles_through_the_hex_mirror_then_from_its_cache_with_the_upstream_gone() {
    let Some(_) = require(Tool::Rebar3) else { return };
    let fake = FakeIndex::start();
    serve(&fake, &standard());
    let dir = temp_dir();
    // A registry TTL of one second: after the outage every registry file is stale.
    let server = mirror(dir.path(), &fake, "1s");
    let cdn = server.url("/hex");
    let mut user = Rebar3User::new();

    let (first, project) = user.compile(&cdn).await;
    let logs = || format!("=== pkgmirror log\n{}", server.logs());
    assert_compiled(&user, &first, &project, &logs);
    for path in FETCHED {
        assert!(
            fake.hits_of(path) >= 1,
            "the mirror never fetched {path}\n{}",
            logs()
        );
    }
    assert_only_the_mirror_asked(&fake);
    let log = access_log(&server).await;
    for path in FETCHED {
        assert_eq!(statuses(&log, &format!("/hex{path}")), [200], "{}", logs());
    }

    // The upstream goes away and the registry TTL runs out.
    fake.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A fresh project, the same rebar3 cache: rebar3 revalidates each tarball and the mirror,
    // from its own cache, answers 304. (rebar3 would fall back to its cached copy on an error
    // too, so its success alone proves nothing: the 304s and its report of them do.)
    let before = access_log(&server).await.len();
    let (second, project) = user.compile(&cdn).await;
    assert_compiled(&user, &second, &project, &logs);
    let log = access_log(&server).await.split_off(before);
    for tarball in ["fixbar-0.1.0.tar", "fixfoo-1.1.0.tar"] {
        assert_eq!(
            statuses(&log, &format!("/hex/tarballs/{tarball}")),
            [304],
            "the mirror did not answer rebar3's If-None-Match with 304\n{}\n{}",
            user.transcript(),
            logs()
        );
        assert!(
            second
                .stdout
                .contains(&format!("{tarball} is up to date, reusing it")),
            "rebar3 did not take a 304 for {tarball}\n{}\n{}",
            user.transcript(),
            logs()
        );
    }
    assert!(
        !second.stdout.contains("Download error"),
        "rebar3 fell back to its own cache\n{}\n{}",
        user.transcript(),
        logs()
    );

    // rebar3 asks for the registry files again: the mirror serves its stale copies.
    let before = access_log(&server).await.len();
    let update = user.update(&cdn).await;
    let log = access_log(&server).await.split_off(before);
    assert!(
        update.ok() && !update.stdout.contains("Failed to"),
        "rebar3 update failed\n{}\n{}",
        user.transcript(),
        logs()
    );
    for name in ["fixbar", "fixfoo"] {
        assert_eq!(
            statuses(&log, &format!("/hex/packages/{name}")),
            [200],
            "the mirror did not serve its stale /packages/{name}\n{}\n{}",
            user.transcript(),
            logs()
        );
    }
}

#[tokio::test]
async fn rebar3_compiles_through_the_hex_mirror_with_a_trailing_slash_in_hex_cdn() {
    let Some(_) = require(Tool::Rebar3) else { return };
    // rebar3 keeps the slash: it asks for `/hex//packages/fixbar` and so on.
    let fake = FakeIndex::start();
    serve(&fake, &standard());
    let dir = temp_dir();
    let server = mirror(dir.path(), &fake, "10m");
    let mut user = Rebar3User::new();
    let (run, project) = user.compile(&server.url("/hex/")).await;
    assert_compiled(&user, &run, &project, &|| {
        format!("=== pkgmirror log\n{}", server.logs())
    });
    for path in FETCHED {
        assert!(fake.hits_of(path) >= 1, "the mirror never fetched {path}");
    }
}

#[tokio::test]
async fn rebar3_fails_on_a_tampered_tarball_through_the_hex_mirror() {
    let Some(_) = require(Tool::Rebar3) else { return };
    let fake = FakeIndex::start();
    let repo = tampered();
    serve(&fake, &repo);
    let dir = temp_dir();
    let server = mirror(dir.path(), &fake, "10m");
    let mut user = Rebar3User::new();
    let (run, project) = user.compile(&server.url("/hex")).await;
    let logs = || format!("=== pkgmirror log\n{}", server.logs());
    assert_refused(&user, &run, &project, "a tampered tarball", &logs);
    assert!(fake.hits_of(TAMPERED) >= 1, "{}", logs());
    assert_only_the_mirror_asked(&fake);

    // The mirror never hands out the tampered tarball whole: a 502, or a cut connection.
    let response = client().get(server.url(&format!("/hex{TAMPERED}"))).send().await;
    if let Ok(response) = response {
        let status = response.status().as_u16();
        let body = response.bytes().await;
        assert!(
            !(status == 200 && body.as_ref().is_ok_and(|b| **b == *repo.file(TAMPERED))),
            "the mirror served the tampered tarball complete\n{}",
            logs()
        );
    }
}

#[tokio::test]
async fn rebar3_fails_on_registry_files_the_hex_mirror_cannot_verify() {
    let Some(_) = require(Tool::Rebar3) else { return };
    for (fault, repo) in unverifiable() {
        let fake = FakeIndex::start();
        serve(&fake, &repo);
        let dir = temp_dir();
        let server = mirror(dir.path(), &fake, "10m");
        let mut user = Rebar3User::new();
        let (run, project) = user.compile(&server.url("/hex")).await;
        let logs = || format!("=== {fault}\n=== pkgmirror log\n{}", server.logs());
        assert_refused(&user, &run, &project, fault, &logs);
        assert!(fake.hits_of("/packages/fixbar") >= 1, "{}", logs());
        assert_only_the_mirror_asked(&fake);
        let log = access_log(&server).await;
        let answered = statuses(&log, "/hex/packages/fixbar");
        assert!(
            !answered.is_empty() && answered.iter().all(|&s| s == 502),
            "the mirror answered {answered:?} for /hex/packages/fixbar, not 502\n{}",
            logs()
        );
        let response = client()
            .get(server.url("/hex/packages/fixbar"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502, "{}", logs());
    }
}

// ---------------------------------------------------------------------------------------------
// The release policy, with the mirror signing the registry files it changes

/// With `hex.resign_key`, `/packages/fixfoo` goes out without the release a rule holds back,
/// signed by the mirror: rebar3, pinned to the mirror's key, resolves the older release.
#[tokio::test]
async fn rebar3_resolves_around_a_held_back_release_when_the_mirror_re_signs() {
    let Some(_) = require(Tool::Rebar3) else { return };
    const MIRROR_KEY: &str = include_str!("../fixtures/hex/other_key.pem");
    const MIRROR_PUBLIC_KEY: &str = include_str!("../fixtures/hex/other_key.pub.pem");
    let fake = FakeIndex::start();
    serve(&fake, &standard());
    let dir = temp_dir();
    let mut launch = Launch::with_hex(&fake.root_url(), "10m");
    launch
        .env("PKGMIRROR__HEX__RESIGN_KEY", MIRROR_KEY)
        .env("PKGMIRROR__POLICY__RULES", "deny hex fixfoo ==1.1.0; a bad build");
    let server = Server::start(dir.path(), &launch);
    let key = get(&server.url("/hex/public_key"), "*/*")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(key.trim(), MIRROR_PUBLIC_KEY.trim());

    let mut user = Rebar3User::new();
    user.repo_key = MIRROR_PUBLIC_KEY;
    let (run, project) = user.compile(&server.url("/hex")).await;
    assert!(
        run.ok(),
        "{}\n=== pkgmirror log\n{}",
        user.transcript(),
        server.logs()
    );
    let lock = std::fs::read_to_string(project.join("rebar.lock")).unwrap();
    assert!(
        lock.contains("{<<\"fixfoo\">>,{pkg,<<\"fixfoo\">>,<<\"1.0.0\">>}"),
        "{lock}\n{}",
        user.transcript()
    );
    let refused = get(&server.url("/hex/tarballs/fixfoo-1.1.0.tar"), "*/*").await;
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["rule"], "deny hex fixfoo ==1.1.0", "{body}");
}
